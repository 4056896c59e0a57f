"""DP-CTGAN's numeric encoding: CTGAN's mode-specific normalisation with public bins for modes.

CTGAN encodes a number as a one-hot "mode" of a Gaussian mixture fitted on the data plus a scalar
within that mode. Fitting the mixture reads the private data (DESIGN §4.3), so here the modes are
fixed by the *domain* alone:

- an integer column with at most ``max_exact_values`` possible values (age 16-100, hours 1-99) is
  one-hot over its values: exact, spikes (40 hours) included;
- any other number or datetime (a *binned* one) is one-hot over its cells, plus a scalar in
  [-1, 1] for the position inside the cell (CTGAN's "value within the mode"). The cells are the
  ones learned under DP in the marginals release (:mod:`._cells`: point masses are cells of
  their own, the others cut at equal shares of estimated mass, the position is the value's
  place in the cell's estimated distribution), handed in as ``cells``; a binned column without
  learned cells (``marginals_share = 0``, or a model saved before cells were learned) uses
  ``numeric_bins`` equal-width bins of its bounds.

Both are expressed as a *derived schema* (a categorical column per number, and a continuous
``<name>::offset`` column for binned ones) handed to :class:`privsynth_core.encoding.TableEncoder`,
so the one-hot and null handling is the shared, domain-only encoder's. Nothing here reads data to
build the encoding (the learned cells are a mechanism output); :meth:`CTGANEncoder.encode` only
transforms rows.

Each column also gets *marginal groups*: categories for categoricals, bins for binned numbers,
runs of consecutive values for exact integers (at most ``numeric_bins`` groups), plus the null
slot. Their DP-noised histograms steer the generator (see ``_model``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from privsynth_core.encoding import Span, TableEncoder
from privsynth_core.errors import DomainError
from privsynth_core.privacy.cells import LearnedCells, column_values
from privsynth_core.schema import Column, ColumnKind, Schema
from privsynth_core.validation import datetime_to_micros

from ._cells import CellCoder

OFFSET_SUFFIX = "::offset"


@dataclass(frozen=True)
class NumericLayout:
    """How one number or datetime column is encoded."""

    column: Column
    low: float
    high: float
    exact: bool  # one-hot over integer values (no offset)
    slots: int  # number of values (exact) or bins
    width: float  # bin width (1 for exact; unused with learned cells)
    coder: CellCoder | None = None  # learned cells (binned columns only)


@dataclass(frozen=True)
class MarginalGroup:
    """A column's one-hot span in the encoded row and the marginal group of each slot."""

    column: str
    span: Span
    group_of_slot: tuple[int, ...]
    n_groups: int


class CTGANEncoder:
    """Encode tables for DP-CTGAN from the schema only; decode generator output back.

    Args:
        schema: the table's schema (every column needs a domain).
        numeric_bins: bins per binned number, and most marginal groups per number.
        max_exact_values: integer columns with at most this many values are one-hot exact.
        cells: learned cells of binned columns (a mechanism output, see :mod:`._cells`); a
            binned column not in it gets equal-width bins.

    Raises:
        DomainError: a column lacks a domain, or a derived name collides with a column.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        numeric_bins: int,
        max_exact_values: int,
        cells: Mapping[str, LearnedCells] | None = None,
    ) -> None:
        self.schema = schema
        self.cells = dict(cells or {})
        self.numeric: dict[str, NumericLayout] = {}
        derived: list[Column] = []
        names = set(schema.names)
        for col in schema.columns:
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                derived.append(col)
                continue
            layout = self._layout(col, numeric_bins, max_exact_values, self.cells.get(col.name))
            self.numeric[col.name] = layout
            derived.append(
                Column(
                    name=col.name,
                    kind=ColumnKind.CATEGORICAL,
                    nullable=col.nullable,
                    categories=tuple(str(i) for i in range(layout.slots)),
                )
            )
            if not layout.exact:
                offset = col.name + OFFSET_SUFFIX
                if offset in names:
                    raise DomainError(f"column name {offset!r} is reserved by dpctgan; rename it")
                derived.append(Column(name=offset, kind=ColumnKind.CONTINUOUS, bounds=(-1.0, 1.0)))
        self.inner = TableEncoder(schema.with_columns(derived, domain=schema.domain))
        self.spans = self.inner.spans
        self.output_dim = self.inner.output_dim
        self.groups = [self._group(span, numeric_bins) for span in self.inner.onehot_spans]

    @staticmethod
    def _layout(
        col: Column, bins: int, max_exact: int, cells: LearnedCells | None
    ) -> NumericLayout:
        if col.bounds is None:
            raise DomainError(
                f"column {col.name!r} has no bounds; declare them or learn them with DP"
            )
        lower, upper = col.bounds
        if col.kind is ColumnKind.DATETIME:
            low, high = float(datetime_to_micros(lower)), float(datetime_to_micros(upper))  # type: ignore[arg-type]
        else:
            low, high = float(lower), float(upper)  # type: ignore[arg-type]
        if col.kind is ColumnKind.INTEGER:
            low, high = float(math.ceil(low)), float(math.floor(high))
            if low > high:
                raise DomainError(f"column {col.name!r}: its bounds contain no integer")
            values = int(high - low) + 1
            if values <= max_exact:
                return NumericLayout(col, low, high, True, values, 1.0)
        if cells is not None:
            return NumericLayout(col, low, high, False, cells.n_cells, 1.0, CellCoder(cells))
        width = (high - low) / bins if high > low else 1.0
        return NumericLayout(col, low, high, False, bins, width)

    def _group(self, span: Span, bins: int) -> MarginalGroup:
        layout = self.numeric.get(span.column)
        labels = len(span.labels)
        size = 1 if layout is None or not layout.exact else math.ceil(layout.slots / bins)
        groups = [i // size for i in range(labels)]
        n_groups = (groups[-1] + 1) if groups else 0
        if span.null_slot:
            groups.append(n_groups)
            n_groups += 1
        return MarginalGroup(span.column, span, tuple(groups), n_groups)

    @property
    def discrete_spans(self) -> list[Span]:
        """One-hot spans of the schema's categorical and boolean columns (CTGAN's discrete
        columns, the ones conditional vectors cover)."""
        return [s for s in self.inner.onehot_spans if s.column not in self.numeric]

    # -- rows <-> vectors ---------------------------------------------------------------------

    def encode(self, frame: pl.DataFrame) -> npt.NDArray[np.float32]:
        """Encode a conformed frame (the schema's columns and dtypes)."""
        exprs: list[pl.Expr | pl.Series] = []
        for col in self.schema.columns:
            layout = self.numeric.get(col.name)
            if layout is None:
                exprs.append(pl.col(col.name))
                continue
            if layout.coder is not None:
                exprs.extend(_learned_series(frame[col.name], col, layout.coder))
                continue
            x = pl.col(col.name)
            x = (x.dt.epoch("us") if col.kind is ColumnKind.DATETIME else x).cast(pl.Float64)
            position = ((x - layout.low) / layout.width).clip(0.0, layout.slots - 1e-9)
            slot = position.floor() if not layout.exact else position.round()
            slot = slot.clip(0, layout.slots - 1).cast(pl.Int64)
            exprs.append(slot.cast(pl.String).alias(col.name))
            if not layout.exact:
                offset = ((position - slot) * 2.0 - 1.0).clip(-1.0, 1.0).fill_null(0.0)
                exprs.append(offset.alias(col.name + OFFSET_SUFFIX))
        return self.inner.encode(frame.select(exprs))

    def decode(
        self, array: npt.NDArray[np.floating], *, rng: np.random.Generator | None = None
    ) -> pl.DataFrame:
        """Generator output -> a frame with the schema's columns and exact dtypes."""
        derived = self.inner.decode(array, rng=rng)
        out: list[pl.Series] = []
        for col in self.schema.columns:
            layout = self.numeric.get(col.name)
            if layout is None:
                out.append(derived[col.name])
                continue
            slot = derived[col.name].cast(pl.Int64).cast(pl.Float64)
            if layout.coder is not None:
                offset = derived[col.name + OFFSET_SUFFIX]
                present = slot.is_not_null().to_numpy()
                decoded = np.full(slot.len(), np.nan)
                decoded[present] = layout.coder.decode(
                    slot.to_numpy()[present].astype(np.int64),
                    offset.fill_null(0.0).cast(pl.Float64).to_numpy()[present],
                )
                values = pl.Series(col.name, decoded).fill_nan(None)
            elif layout.exact:
                values = slot + layout.low
            else:
                offset = derived[col.name + OFFSET_SUFFIX]
                values = layout.low + (slot + (offset + 1.0) / 2.0) * layout.width
            values = values.clip(layout.low, layout.high)
            if col.kind is ColumnKind.CONTINUOUS:
                out.append(values.alias(col.name))
                continue
            whole = values.round().clip(layout.low, layout.high).cast(pl.Int64)
            if col.kind is ColumnKind.DATETIME:
                whole = whole.cast(pl.Datetime("us"))
            out.append(whole.alias(col.name))
        return pl.DataFrame(out)


def _learned_series(series: pl.Series, col: Column, coder: CellCoder) -> list[pl.Series]:
    """A binned column's cell (as text, null for null) and offset series over learned cells."""
    values = column_values(series, col.kind)
    present = ~np.isnan(values)
    cell, offset = coder.encode(values[present])
    slots = np.full(values.size, None, dtype=object)
    slots[present] = cell.astype(str)
    offsets = np.zeros(values.size)
    offsets[present] = offset
    return [
        pl.Series(col.name, slots.tolist(), dtype=pl.String),
        pl.Series(col.name + OFFSET_SUFFIX, offsets, dtype=pl.Float64),
    ]
