"""Learning the numeric cells under DP, inside MST's and AIM's own zCDP budget.

Before any marginal is measured, a share of rho (``cells_share``, 10% by default) buys, for
every number or datetime whose cells are worth learning (:func:`.discretise.learnable`), a tree
of noisy histograms over a fine public grid of its bounds
(:func:`privsynth_core.privacy.cells.measure_tree_of`): each level is a histogram of sensitivity 1
under add/remove-one-record, noised with the exact discrete Gaussian, ``1 / (2 sigma^2)`` zCDP,
all levels of all columns at one sigma. The cells, point masses and within-cell shapes derived
from it are post-processing (:func:`privsynth_core.privacy.cells.derive_cells`). The cost is
spent through :class:`~.zcdp.ZCDPBudget` like every other measurement, so the fit's epsilon
includes it, and the fit summary states it.

The plan (which columns, how many levels, sigma) depends on the schema, ``bins`` and the share
only: public. What the mechanism outputs (where the cells fall, which values are point masses,
the shapes) is stored in ``model.npz`` and, for the point masses, in the fit summary (listed in
``RELEASE_FIELDS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from privsynth_core import Schema
from privsynth_core.privacy.cells import (
    FineGrid,
    IntArray,
    LearnedCells,
    column_grid,
    count_fine,
    derive_cells,
    estimate_fine,
    measure_tree_of,
    tree_groups,
)

from .discretise import learnable
from .zcdp import ZCDPBudget, gaussian_rho

# Noise a hair above its exact share, so rounding can never overspend (as in .algorithms).
_SAFETY = 1e-9


@dataclass
class CellsPlan:
    """What learning the cells will measure and spend (public: from the schema alone).

    Attributes:
        columns: the learnable columns, in schema order.
        grids: each one's fine grid.
        groups: each one's tree (fine cells per node, by level).
        rho: the rho all of it spends (0 when nothing is learned).
        sigma: the noise of every count (0 when nothing is learned).
    """

    columns: list[str] = field(default_factory=list)
    grids: dict[str, FineGrid] = field(default_factory=dict)
    groups: dict[str, list[int]] = field(default_factory=dict)
    rho: float = 0.0
    sigma: float = 0.0

    @property
    def histograms(self) -> int:
        """How many noisy histograms the plan releases (levels over all columns)."""
        return sum(len(g) for g in self.groups.values())

    def summary(self) -> dict[str, object]:
        """The plan as the fit summary states it (public figures only)."""
        return {
            "rho": self.rho,
            "sigma": round(self.sigma, 6),
            "columns": {
                name: {"fine_cells": self.grids[name].size, "levels": len(self.groups[name])}
                for name in self.columns
            },
        }


def plan_cells(schema: Schema, bins: int, rho: float) -> CellsPlan:
    """The cells plan for ``rho`` (the share of the fit's rho set aside for it)."""
    columns = [c for c in schema.columns if learnable(c, bins)]
    if not columns or rho <= 0:
        return CellsPlan()
    plan = CellsPlan(columns=[c.name for c in columns])
    for column in columns:
        plan.grids[column.name] = grid = column_grid(column)
        plan.groups[column.name] = tree_groups(grid.size)
    plan.rho = rho
    plan.sigma = math.sqrt(plan.histograms / (2 * rho)) * (1 + _SAFETY)
    return plan


def learn_cells(
    plan: CellsPlan, schema: Schema, frame: pl.DataFrame, bins: int, budget: ZCDPBudget
) -> dict[str, LearnedCells]:
    """Measure the plan's trees (the mechanism, charged to ``budget``) and derive each
    column's cells (post-processing)."""
    return learn_cells_from_counts(
        plan, schema, count_fine(frame, grids=plan.grids, schema=schema), bins, budget
    )


def learn_cells_from_counts(
    plan: CellsPlan,
    schema: Schema,
    counts: Mapping[str, IntArray],
    bins: int,
    budget: ZCDPBudget,
) -> dict[str, LearnedCells]:
    """:func:`learn_cells` from the exact fine counts
    (:func:`~privsynth_core.privacy.cells.count_fine`, e.g. summed over a partitioned table's
    parts): the same mechanism, charged the same, on the same counts."""
    learned: dict[str, LearnedCells] = {}
    for name in plan.columns:
        grid, groups = plan.grids[name], plan.groups[name]
        budget.spend(
            f"numeric cells of {name!r} ({len(groups)} histograms)",
            len(groups) * gaussian_rho(plan.sigma),
            kind="numeric cells",
        )
        noisy = measure_tree_of(
            np.asarray(counts[name], dtype=np.int64), sigma=plan.sigma, groups=groups
        )
        estimate = estimate_fine(grid, noisy, sigma=plan.sigma, groups=groups)
        learned[name] = derive_cells(grid, estimate, bins)
    return learned
