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
import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from pydantic import Field

from privsynth_core import FitSummary, Generator, GeneratorParams, Progress, hookimpl
from privsynth_core.generator import Suitability, TableProfile
from privsynth_core.privacy.cells import (
    FineGrid,
    column_grid,
    count_fine,
    estimate_fine,
    tree_counts_of,
    tree_groups,
)
from privsynth_core.privacy.histograms import column_histogram, histogram_bounds
from privsynth_core.privacy.noise import discrete_laplace
from privsynth_core.schema import Column, ColumnKind, Schema

if TYPE_CHECKING:
    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback

_STATE_FILE = "histograms.json"
#: The kinds whose histogram is over numbers (bins or fine cells of the bounds).
_NUMERIC = (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME)


class IndependentParams(GeneratorParams):
    """Parameters of the independent-marginals generator (none of them seeds the noise)."""

    numeric_cells: Literal["learned", "equal_width"] = Field(
        "learned",
        description="numbers and datetimes: 'learned' = a noisy tree of histograms over a fine "
        "grid of the bounds (keeps point masses and heavy tails); 'equal_width' = one noisy "
        "histogram over `bins` equal-width bins",
    )
    bins: int = Field(
        32, ge=2, le=1000, description="bins per numeric or datetime column (equal_width only)"
    )


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
    # _fit reads only Table.reduce (one pass): a partitioned table's counts are summed on the
    # cluster.
    fits_from_partitions = True
    Params = IndependentParams

    def __init__(self, params: IndependentParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        # per column: the probability of each bin (or fine cell), then of a null; a learned
        # column also keeps its fine grid (public) to decode from
        self._probabilities: dict[str, list[float]] = {}
        self._grids: dict[str, FineGrid] = {}

    @classmethod
    def suitability(cls, profile: TableProfile) -> Suitability:
        """A floor: every column kept on its own, none of their relationships."""
        return Suitability(
            0.2,
            "independent: a noisy histogram per column (pure epsilon-DP); "
            "keeps no relationship between columns",
        )

    def _learned_grids(self, table: Table) -> dict[str, FineGrid]:
        """The fine grid of every column whose cells are learned (public: from the schema)."""
        if self.params.numeric_cells != "learned":
            return {}
        return {c.name: column_grid(c) for c in table.schema.columns if c.kind in _NUMERIC}

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        assert budget is not None
        columns = table.schema.columns
        scale = len(columns) / budget.epsilon  # per unit of a column's L1 sensitivity
        grids = self._learned_grids(table)
        # The exact counts (private; only their noisy versions leave this method): the table's
        # own for a file, summed over the partitions on the cluster for a partitioned table.
        histograms = table.reduce(
            partial(_exact_counts, schema=table.schema, bins=self.params.bins, grids=grids)
        )
        self._probabilities, self._grids = {}, dict(grids)
        levels: dict[str, int] = {}
        for column in columns:
            null_count = histograms[column.name][-1:]
            present_counts = histograms[column.name][:-1]
            if column.name in grids:
                groups = tree_groups(grids[column.name].size)
                levels[column.name] = len(groups)
                # a present value adds 1 to one count per level, a null 1 to the null count
                column_scale = scale * len(groups)
                tree = [
                    discrete_laplace(counts, scale=column_scale)
                    for counts in tree_counts_of(present_counts, groups)
                ]
                present = estimate_fine(
                    grids[column.name],
                    tree,
                    # the discrete Laplace's standard deviation, about sqrt(2) times its scale
                    sigma=math.sqrt(2.0) * column_scale,
                    groups=groups,
                )
                nulls = discrete_laplace(null_count, scale=column_scale).astype(np.float64)
                noisy = np.concatenate([present, np.clip(nulls, 0.0, None)])
            else:
                # integer noise on integer counts; floats only from here on (post-processing)
                noisy = np.clip(
                    discrete_laplace(histograms[column.name], scale=scale).astype(np.float64),
                    0.0,
                    None,
                )
            self._probabilities[column.name] = _probabilities(noisy, column.nullable)
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
                "numeric_cells": self.params.numeric_cells,
                # public: the fine grid and the tree's depth come from the schema alone
                "learned_cells": {
                    name: {
                        "fine_cells": grids[name].size,
                        "levels": levels[name],
                        "laplace_scale": scale * levels[name],
                    }
                    for name in grids
                },
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
            grid = self._grids.get(column.name)
            if grid is not None and probabilities.size != grid.size + 1:
                raise ValueError(f"the histogram of {column.name!r} does not fit its grid")
            data[column.name] = _decode(column, picks, is_null, rng, self.params.bins, grid)
        return pl.DataFrame(data)

    def _save_state(self, directory: Path) -> None:
        state: dict[str, Any] = {"probabilities": self._probabilities}
        state["grids"] = {
            name: {
                "starts": grid.starts.tolist(),
                "ends": grid.ends.tolist(),
                "integer": grid.integer,
            }
            for name, grid in self._grids.items()
        }
        (directory / _STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def _load_state(self, directory: Path) -> None:
        state = json.loads((directory / _STATE_FILE).read_text(encoding="utf-8"))
        if "probabilities" not in state:  # a model from before learned cells: bins only
            state = {"probabilities": state, "grids": {}}
        self._probabilities = state["probabilities"]
        self._grids = {
            name: FineGrid(
                np.asarray(g["starts"], dtype=np.float64),
                np.asarray(g["ends"], dtype=np.float64),
                bool(g["integer"]),
            )
            for name, g in state["grids"].items()
        }


def _exact_counts(
    frame: pl.DataFrame, *, schema: Schema, bins: int, grids: Mapping[str, FineGrid]
) -> dict[str, np.ndarray]:
    """The exact (private) counts of every column, then its null count: over the fine cells
    for a column in ``grids``, else over its domain (``bins`` equal-width bins for a number).
    Module-level and picklable with its arguments bound, so a partitioned table sums it over
    its partitions in one pass (:meth:`privsynth_core.table.Table.reduce`)."""
    fine = count_fine(frame, grids=grids, schema=schema)
    out: dict[str, np.ndarray] = {}
    for column in schema.columns:
        if column.name in grids:
            nulls = np.array([frame[column.name].null_count()], dtype=np.int64)
            out[column.name] = np.concatenate([fine[column.name], nulls])
        else:
            out[column.name] = column_histogram(frame[column.name], column, bins)
    return out


def _probabilities(noisy: np.ndarray, nullable: bool) -> list[float]:
    """A column's noisy counts (bins or fine cells, then nulls) as probabilities: no nulls
    when the schema allows none, uniform over the values when nothing is left."""
    noisy = np.clip(noisy.astype(np.float64), 0.0, None)
    if not nullable:
        noisy[-1] = 0.0
    if noisy.sum() <= 0:  # all noise: fall back to uniform over the domain
        noisy = np.ones_like(noisy)
        if not nullable:
            noisy[-1] = 0.0
    return [float(x) for x in noisy / noisy.sum()]


def _decode(
    column: Column,
    picks: np.ndarray,
    is_null: np.ndarray,
    rng: np.random.Generator,
    bins: int,
    grid: FineGrid | None = None,
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
    lower, upper = histogram_bounds(column)
    if grid is not None:  # a fine cell, then a value uniformly inside it
        values = grid.draw(np.minimum(picks, grid.size - 1), rng)
    else:
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
