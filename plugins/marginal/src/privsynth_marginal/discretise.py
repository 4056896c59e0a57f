"""Columns to cells and back.

Every column becomes a small set of cells (the attribute of the graphical model):

- categorical: one cell per category; boolean: false, true;
- integer with at most ``bins`` values between its bounds: one cell per value (exact);
- any other number or datetime: ``bins`` cells **learned under DP** (:mod:`.cells`, over
  :mod:`privsynth_core.privacy.cells`): cut where the data's mass lies, a value held by many
  rows a cell of its own, and decoded by the noisy shape of the data inside each cell. The
  learning is a charged mechanism; what it outputs is stored in the model (``model.npz``);
- without learned cells (``cells_share = 0``, or a model saved before they existed): the lower
  and the upper bound are cells of their own and the interval between them is cut into
  ``bins - 2`` equal-width cells, decoded uniformly (consecutive whole numbers for integers);
- a nullable column has one more cell, for null.

Nothing here reads data to build the cells: equal-width cells come from the schema's bounds,
learned ones from the noisy counts handed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from privsynth_core import Column, ColumnKind, Schema
from privsynth_core.privacy.cells import LearnedCells
from privsynth_core.validation import datetime_to_micros, polars_dtype


def _float_bounds(column: Column) -> tuple[float, float]:
    """A numeric column's bounds as floats (datetimes in microseconds since the epoch)."""
    assert column.bounds is not None
    lower, upper = column.bounds
    if isinstance(lower, datetime) and isinstance(upper, datetime):
        # whole microseconds, exactly: seconds * 1e6 in floats can land a fraction off, which
        # moved a value at the bound out of its own cell and decoded one 1 us outside the bounds
        return float(datetime_to_micros(lower)), float(datetime_to_micros(upper))
    return float(lower), float(upper)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ColumnCells:
    """How one column maps to cells.

    Attributes:
        column: the schema column.
        n_values: cells for present values (the null cell, if any, comes after them).
        exact: integers, one cell per value from ``lower``.
        lower, upper: the bounds (floats; datetimes in microseconds).
        edges: for binned numbers, the cut points of the interior cells (``n_values - 1``
            cells between the two bound cells need ``n_values - 1`` edges).
        learned: cells learned under DP (then ``edges`` is unused).
    """

    column: Column
    n_values: int
    exact: bool = False
    lower: float = 0.0
    upper: float = 0.0
    edges: tuple[float, ...] = ()
    learned: LearnedCells | None = None

    @property
    def size(self) -> int:
        """Cells including the null cell."""
        return self.n_values + (1 if self.column.nullable else 0)

    # -- encoding -------------------------------------------------------------------------------

    def encode(self, series: pl.Series) -> np.ndarray:
        """Cell index of every value (nulls to the null cell)."""
        kind = self.column.kind
        nulls = series.is_null().to_numpy()
        codes = np.zeros(series.len(), dtype=np.int64)
        present = series.drop_nulls()
        if kind is ColumnKind.CATEGORICAL:
            assert self.column.categories is not None
            mapping = pl.DataFrame(
                {"value": self.column.categories, "code": np.arange(len(self.column.categories))}
            )
            # polars leaves a join's row order unspecified unless asked
            found = pl.DataFrame({"value": present}).join(
                mapping, on="value", how="left", maintain_order="left"
            )["code"]
            if found.null_count():  # conform() nulls out-of-domain values; a bug if not
                raise ValueError(
                    f"column {self.column.name!r} holds a value outside its "
                    "categories; conform the table to its schema first"
                )
            codes[~nulls] = found.to_numpy()
        elif kind is ColumnKind.BOOLEAN:
            codes[~nulls] = present.cast(pl.Int64).to_numpy()
        else:
            values = _as_float(present, kind)
            codes[~nulls] = self._numeric_codes(values)
        if self.column.nullable:
            codes[nulls] = self.n_values
        elif nulls.any():
            raise ValueError(f"column {self.column.name!r} is not nullable but holds nulls")
        return codes

    def _numeric_codes(self, values: np.ndarray) -> np.ndarray:
        if self.learned is not None:
            return self.learned.encode(values)
        if self.exact:
            return np.clip(np.round(values - self.lower), 0, self.n_values - 1).astype(np.int64)
        interior = 1 + np.searchsorted(np.asarray(self.edges), values, side="right")
        last = self.n_values - 1
        return np.where(
            values <= self.lower,
            0,
            np.where(values >= self.upper, last, np.clip(interior, 1, last - 1)),
        )

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pl.Series:
        """Values for cell indices: categories, or a number drawn uniformly in its cell."""
        name, kind = self.column.name, self.column.kind
        is_null = codes >= self.n_values
        safe = np.minimum(codes, self.n_values - 1)
        if kind is ColumnKind.CATEGORICAL:
            assert self.column.categories is not None
            values = np.asarray(self.column.categories, dtype=object)[safe]
            series = pl.Series(name, values, dtype=pl.String)
        elif kind is ColumnKind.BOOLEAN:
            series = pl.Series(name, safe == 1, dtype=pl.Boolean)
        else:
            series = self._decode_numeric(safe, rng)
        if is_null.any():
            series = series.set(pl.Series(is_null), None)
        return series

    def _decode_numeric(self, codes: np.ndarray, rng: np.random.Generator) -> pl.Series:
        name, kind = self.column.name, self.column.kind
        if self.learned is not None:
            learned = self.learned.decode(codes, rng)
            if kind is ColumnKind.DATETIME:
                return pl.Series(name, learned.astype(np.int64), dtype=pl.Int64).cast(
                    pl.Datetime("us")
                )
            if kind is ColumnKind.INTEGER:
                return pl.Series(name, learned, dtype=pl.Float64).cast(pl.Int64)
            return pl.Series(name, learned, dtype=pl.Float64)
        if self.exact:
            return pl.Series(name, self.lower + codes, dtype=pl.Float64).cast(pl.Int64)
        # cell c covers [starts[c], ends[c]); the bound cells are single points
        first = self.lower + 1 if kind is ColumnKind.INTEGER else self.lower
        starts = np.concatenate([[self.lower], [first], self.edges, [self.upper]])
        ends = np.concatenate([[self.lower], self.edges, [self.upper], [self.upper]])
        lo, hi = starts[codes], ends[codes]
        if kind is ColumnKind.INTEGER:
            # edges of integer columns are whole numbers: cell c holds lo .. hi - 1 (and the
            # bound cells their one value)
            top = np.maximum(hi - 1, lo)
            values = np.floor(lo + rng.uniform(size=codes.size) * (top - lo + 1))
            values = np.minimum(values, top)
            return pl.Series(name, values, dtype=pl.Float64).cast(pl.Int64)
        values = lo + rng.uniform(size=codes.size) * (hi - lo)
        if kind is ColumnKind.DATETIME:
            return pl.Series(name, np.floor(values).astype(np.int64), dtype=pl.Int64).cast(
                pl.Datetime("us")
            )
        return pl.Series(name, values, dtype=pl.Float64)


def _as_float(series: pl.Series, kind: ColumnKind) -> np.ndarray:
    if kind is ColumnKind.DATETIME:
        return series.dt.epoch("us").cast(pl.Float64).to_numpy()
    return series.cast(pl.Float64).to_numpy()


def numeric_bounds(column: Column) -> tuple[float, float]:
    """A number or datetime column's bounds as floats (datetimes in microseconds; integers
    rounded inwards to whole numbers)."""
    lower, upper = _float_bounds(column)
    if column.kind is ColumnKind.INTEGER:
        lower, upper = float(np.ceil(lower)), float(np.floor(upper))
    return lower, upper


def learnable(column: Column, bins: int) -> bool:
    """Whether the column's cells are worth learning: a number or datetime that is neither
    one cell per value (an integer with at most ``bins`` values) nor a single value."""
    if column.kind not in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME):
        return False
    lower, upper = numeric_bounds(column)
    if column.kind is ColumnKind.INTEGER:
        return upper - lower + 1 > bins
    return upper > lower


def column_cells(column: Column, bins: int, learned: LearnedCells | None = None) -> ColumnCells:
    """The cells of one column under a resolution of ``bins`` cells per number (``learned``:
    the cells learned under DP for a learnable number, see :func:`learnable`)."""
    kind = column.kind
    if learned is not None:
        lower, upper = numeric_bounds(column)
        return ColumnCells(
            column, n_values=learned.n_cells, lower=lower, upper=upper, learned=learned
        )
    if kind is ColumnKind.CATEGORICAL:
        assert column.categories is not None
        return ColumnCells(column, n_values=len(column.categories))
    if kind is ColumnKind.BOOLEAN:
        return ColumnCells(column, n_values=2)
    lower, upper = _float_bounds(column)
    if kind is ColumnKind.INTEGER:
        lower, upper = float(np.ceil(lower)), float(np.floor(upper))
        n_integers = int(upper - lower) + 1
        if n_integers <= bins:
            return ColumnCells(column, n_values=n_integers, exact=True, lower=lower, upper=upper)
        # whole-number edges splitting lower+1 .. upper-1 into bins-2 runs
        edges = np.unique(np.round(np.linspace(lower + 1, upper, bins - 1)[1:-1]))
    elif upper <= lower:  # a one-value domain
        return ColumnCells(column, n_values=1, exact=False, lower=lower, upper=upper)
    else:
        edges = np.linspace(lower, upper, bins - 1)[1:-1]
    return ColumnCells(
        column,
        n_values=len(edges) + 3,
        lower=lower,
        upper=upper,
        edges=tuple(float(e) for e in edges),
    )


class Discretiser:
    """Encodes a table to cell indices and decodes cell indices to a table.

    Args:
        schema: the table's schema; every column needs its domain (bounds or categories).
        bins: cells per binned number or datetime (bounds included).
        learned: cells learned under DP, by column name (the others are built from the
            schema alone).
    """

    def __init__(
        self, schema: Schema, bins: int, learned: dict[str, LearnedCells] | None = None
    ) -> None:
        self.schema = schema
        learned = learned or {}
        self.columns = [column_cells(c, bins, learned.get(c.name)) for c in schema.columns]

    @property
    def learned(self) -> dict[str, LearnedCells]:
        """The learned cells, by column name."""
        return {c.column.name: c.learned for c in self.columns if c.learned is not None}

    @property
    def names(self) -> list[str]:
        """Column names, in schema order."""
        return [c.column.name for c in self.columns]

    @property
    def sizes(self) -> list[int]:
        """Cells per column, in schema order."""
        return [c.size for c in self.columns]

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """``(rows, columns)`` int matrix of cell indices."""
        if not self.columns:
            return np.zeros((frame.height, 0), dtype=np.int64)
        return np.stack([c.encode(frame[c.column.name]) for c in self.columns], axis=1)

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
        """A frame with the schema's columns and dtypes from a matrix of cell indices."""
        return pl.DataFrame(
            [
                c.decode(codes[:, i], rng).cast(polars_dtype(c.column.kind))
                for i, c in enumerate(self.columns)
            ]
        )
