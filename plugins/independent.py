"""The ``independent`` generator: one noisy histogram per column, sampled independently.

A fast, honest baseline. Each column's histogram over its *domain* (bins between the bounds for
numbers and datetimes, the categories, true/false, plus a null bin when the column is nullable)
gets discrete Laplace noise of scale ``k / epsilon`` for ``k`` columns: each record adds one count
to each histogram, so every histogram has L1 sensitivity 1 and the ``k`` of them compose to
``epsilon``-DP (delta = 0). The exact histograms come from
:meth:`privsynth_core.table.Table.column_histograms`; for a partitioned table
(:class:`privsynth_core.partitions.PartitionedTable`) they are the same function summed over the
partitions on a Dask cluster, and noised here once, centrally: ``independent`` fits from
partitions. The noise is exact integer noise from a cryptographic source
(OpenDP, :func:`privsynth_core.privacy.noise.discrete_laplace`), fresh on every fit: no
parameter seeds it, so the manifest cannot replay it. Sampling draws every column on its own
from its noisy histogram (a value uniformly inside a numeric bin), so the output keeps each
column's distribution and **no relationship between columns**: a floor for the joint generators
to beat. Sampling is post-processing, and its ``seed`` only fixes which rows are drawn.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import Field

from privsynth_core import FitSummary, Generator, GeneratorParams, Progress, hookimpl
from privsynth_core.generator import Suitability, TableProfile
from privsynth_core.privacy.noise import discrete_laplace
from privsynth_core.schema import Column, ColumnKind
from privsynth_core.validation import datetime_to_float

if TYPE_CHECKING:
    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback

_STATE_FILE = "histograms.json"


class IndependentParams(GeneratorParams):
    """Parameters of the independent-marginals generator (none of them seeds the noise)."""

    bins: int = Field(32, ge=2, le=1000, description="bins per numeric or datetime column")


def _numeric(series: pl.Series, column: Column) -> np.ndarray:
    if column.kind is ColumnKind.DATETIME:
        return series.dt.epoch("us").cast(pl.Float64).to_numpy()
    return series.cast(pl.Float64).to_numpy()


def _bounds(column: Column) -> tuple[float, float]:
    assert column.bounds is not None
    lower, upper = column.bounds
    if isinstance(lower, datetime) and isinstance(upper, datetime):
        # microseconds since the epoch, the unit of polars' Datetime("us")
        return datetime_to_float(lower) * 1e6, datetime_to_float(upper) * 1e6
    return float(lower), float(upper)  # type: ignore[arg-type]


class IndependentGenerator(Generator[IndependentParams]):
    """Independent DP marginals (pure epsilon-DP): keeps each column, no correlations."""

    generator_id = "independent"
    description = (
        "Independent DP marginals: a histogram per column with exact discrete Laplace noise "
        "(pure epsilon-DP). "
        "Fast baseline; keeps no relationship between columns"
    )
    is_dp = True
    pure_epsilon = True
    # _fit reads only Table.column_histograms: a partitioned table's are summed on the cluster.
    fits_from_partitions = True
    Params = IndependentParams

    def __init__(self, params: IndependentParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._probabilities: dict[str, list[float]] = {}

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability:
        """A floor: every column kept on its own, none of their relationships."""
        return Suitability(
            0.2,
            "independent: a noisy histogram per column (pure epsilon-DP); "
            "keeps no relationship between columns",
        )

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        assert budget is not None
        columns = table.schema.columns
        scale = len(columns) / budget.epsilon
        # The exact histograms (true counts per domain bin, then the null count): the table's
        # own for a file, summed over the partitions on the cluster for a partitioned table.
        histograms = table.column_histograms(self.params.bins)
        self._probabilities = {}
        for column in columns:
            counts = histograms[column.name]
            # integer noise on integer counts; floats only from here on (post-processing)
            noisy = discrete_laplace(counts, scale=scale).astype(np.float64)
            if not column.nullable:
                noisy[-1] = 0.0
            noisy = np.clip(noisy, 0.0, None)
            if noisy.sum() <= 0:  # all noise: fall back to uniform over the domain
                noisy = np.ones_like(noisy)
                if not column.nullable:
                    noisy[-1] = 0.0
            self._probabilities[column.name] = (noisy / noisy.sum()).tolist()
        if progress is not None:
            progress(Progress(epoch=1, epochs=1, step=len(columns), epsilon=budget.epsilon))
        return FitSummary(
            private=True,
            epsilon=budget.epsilon,
            delta=0.0,
            accountant_id="laplace",
            steps=len(columns),
            epochs=1.0,
            extra={
                "mechanism": "discrete Laplace histograms (exact, OpenDP), basic "
                "composition over columns",
                "laplace_scale": scale,
            },
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        assert self.schema is not None
        rng = np.random.default_rng(seed)
        data: dict[str, pl.Series] = {}
        for column in self.schema.columns:
            probabilities = np.asarray(self._probabilities[column.name])
            picks = rng.choice(probabilities.size, size=n_rows, p=probabilities)
            is_null = picks == probabilities.size - 1
            data[column.name] = _decode(column, picks, is_null, rng, self.params.bins)
        return pl.DataFrame(data)

    def _save_state(self, directory: Path) -> None:
        (directory / _STATE_FILE).write_text(json.dumps(self._probabilities), encoding="utf-8")

    def _load_state(self, directory: Path) -> None:
        self._probabilities = json.loads((directory / _STATE_FILE).read_text(encoding="utf-8"))


def _decode(
    column: Column, picks: np.ndarray, is_null: np.ndarray, rng: np.random.Generator, bins: int
) -> pl.Series:
    name = column.name
    if column.kind is ColumnKind.CATEGORICAL:
        assert column.categories is not None
        values = np.array(column.categories, dtype=object)[
            np.minimum(picks, len(column.categories) - 1)
        ]
        return pl.Series(name, values, dtype=pl.String).set(pl.Series(is_null), None)
    if column.kind is ColumnKind.BOOLEAN:
        return pl.Series(name, picks == 1, dtype=pl.Boolean).set(pl.Series(is_null), None)
    lower, upper = _bounds(column)
    width = (upper - lower) / bins
    values = lower + (np.minimum(picks, bins - 1) + rng.uniform(size=picks.size)) * width
    values = np.clip(values, lower, upper)
    if column.kind is ColumnKind.INTEGER:
        series = pl.Series(
            name, np.clip(np.round(values), np.ceil(lower), np.floor(upper)), dtype=pl.Float64
        ).cast(pl.Int64)
    elif column.kind is ColumnKind.DATETIME:
        series = pl.Series(name, values.astype(np.int64), dtype=pl.Int64).cast(pl.Datetime("us"))
    else:
        series = pl.Series(name, values, dtype=pl.Float64)
    return series.set(pl.Series(is_null), None)


@hookimpl
def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
    """Contribute the ``independent`` baseline generator."""
    register(IndependentGenerator)
