"""An example third-party DP generator: ``joint_histogram``, one noisy histogram of the whole table.

Every column is cut into cells from its public domain alone (its categories; ``bins`` equal-width
bins of its bounds; false/true; plus a null cell for a nullable column), and the table becomes
one histogram over every combination of cells. One record adds one count to one cell, so the
histogram has L1 sensitivity 1 and discrete Laplace noise of scale ``1 / epsilon`` makes it
epsilon-DP (add/remove one record). Rows are drawn from the noisy histogram (negative counts as
0), a number uniformly inside its cell. It keeps every correlation, but only suits tables whose
cells multiply to a small number: ``max_cells`` refuses the others before anything is charged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field

from privsynth_core import Column, ColumnKind, ConfigError, FitSummary, Generator, GeneratorParams
from privsynth_core.privacy.noise import discrete_laplace
from privsynth_core.validation import polars_dtype


class JointHistogramParams(GeneratorParams):
    """Parameters of the joint-histogram generator."""

    bins: int = Field(8, ge=2, le=64, description="cells per numeric column")
    max_cells: int = Field(200_000, ge=2, le=10_000_000, description="largest joint histogram")


def _size(col: Column, bins: int) -> int:
    """Cells of one column: its values, plus one for null when the column may be null (a null
    cell in a column that cannot hold one would, once noise makes it positive, put nulls where
    the schema forbids them)."""
    values = (
        len(col.categories or ())
        if col.kind is ColumnKind.CATEGORICAL
        else 2
        if col.kind is ColumnKind.BOOLEAN
        else bins
    )
    return values + 1 if col.nullable else values


def _encode(col: Column, series: pl.Series, bins: int) -> np.ndarray:
    # (a null in a column declared not nullable never reaches a generator: conforming drops it)
    null = _size(col, bins) - 1
    if col.kind is ColumnKind.CATEGORICAL:
        index = {c: i for i, c in enumerate(col.categories or ())}
        return np.array([index.get(v, null) for v in series.to_list()])
    if col.kind is ColumnKind.BOOLEAN:
        return series.cast(pl.Int64).fill_null(null).to_numpy()
    low, high = (float(b) for b in col.bounds)  # type: ignore[arg-type, union-attr]
    values = series.cast(pl.Float64).to_numpy()
    cells = np.clip(((values - low) / max(high - low, 1e-12) * bins).astype(int), 0, bins - 1)
    return np.where(np.isnan(values), null, cells)


def _decode(col: Column, codes: np.ndarray, bins: int, rng: np.random.Generator) -> pl.Series:
    null = codes == _size(col, bins) - 1 if col.nullable else np.zeros(codes.size, dtype=bool)
    if col.kind is ColumnKind.CATEGORICAL:
        values: Any = np.array([*(col.categories or ()), None], dtype=object)[codes]
    elif col.kind is ColumnKind.BOOLEAN:
        values = np.where(null, None, codes == 1)
    else:
        low, high = (float(b) for b in col.bounds)  # type: ignore[arg-type, union-attr]
        values = low + (codes + rng.uniform(size=codes.size)) * (high - low) / bins
        values = np.where(null, None, np.clip(values, low, high))
        if col.kind is ColumnKind.INTEGER:
            values = np.where(
                null, None, np.clip(np.round(values.astype(float)), np.ceil(low), np.floor(high))
            )
    return pl.Series(
        col.name, values.tolist(), dtype=pl.Float64 if col.kind.is_numeric else None
    ).cast(polars_dtype(col.kind))


class JointHistogramGenerator(Generator):
    """The whole table as one discrete-Laplace-noised histogram (pure epsilon-DP)."""

    generator_id = "joint_histogram"
    description = "One noisy joint histogram over every column's cells (pure epsilon-DP)"
    pure_epsilon = True
    Params = JointHistogramParams

    def _sizes(self, columns: tuple[Column, ...]) -> list[int]:
        return [_size(c, self.params.bins) for c in columns]

    def _check_params(self, table: Any, **_: Any) -> None:
        if any(c.kind is ColumnKind.DATETIME for c in table.schema.columns):
            raise ConfigError("joint_histogram does not handle datetime columns")
        cells = math.prod(self._sizes(table.schema.columns))
        if cells > self.params.max_cells:
            raise ConfigError(
                f"the joint histogram would have {cells:,} cells (max_cells "
                f"{self.params.max_cells:,}): use fewer columns or bins"
            )

    def _fit(self, table: Any, *, budget: Any, progress: Any) -> FitSummary:
        columns, sizes = table.schema.columns, self._sizes(table.schema.columns)
        codes = [_encode(c, table.frame[c.name], self.params.bins) for c in columns]
        counts = np.bincount(np.ravel_multi_index(codes, sizes), minlength=math.prod(sizes))
        noisy = np.clip(discrete_laplace(counts, scale=1.0 / budget.epsilon), 0, None)
        self._weights = (
            noisy / noisy.sum() if noisy.sum() else np.full(noisy.size, 1.0 / noisy.size)
        ).tolist()
        return FitSummary(
            private=True,
            epsilon=budget.epsilon,
            delta=0.0,
            accountant_id="laplace",
            steps=1,
            epochs=1.0,
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        assert self.schema is not None and isinstance(self.params, JointHistogramParams)
        rng = np.random.default_rng(seed)
        sizes = self._sizes(self.schema.columns)
        picks = np.unravel_index(rng.choice(len(self._weights), n_rows, p=self._weights), sizes)
        return pl.DataFrame(
            [
                _decode(c, codes, self.params.bins, rng)
                for c, codes in zip(self.schema.columns, picks, strict=True)
            ]
        )

    def _save_state(self, directory: Path) -> None:
        (directory / "joint.json").write_text(json.dumps(self._weights), encoding="utf-8")

    def _load_state(self, directory: Path) -> None:
        self._weights = json.loads((directory / "joint.json").read_text(encoding="utf-8"))
