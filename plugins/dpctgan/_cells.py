"""DP-CTGAN's learned numeric cells: the trees of noisy histograms in the marginals release, and
the cells derived from them (numpy only; no torch, so the plan can use it).

A *binned* number (any number or datetime that is not one-hot over its integer values, see
:mod:`._encoding`) used to be cut into ``numeric_bins`` equal-width bins of its bounds, which
smears a point mass (a capital loss of 0 for 95% of people) over its bin and puts a heavy tail
in the first bin. Instead, its one-way histogram in the marginals release is replaced by a
*tree* of histograms over its public fine grid
(:func:`privsynth_core.privacy.cells.column_grid`, from the bounds alone): level ``l`` counts
the rows in each node of ``tree_groups(grid.size)[l]`` consecutive fine cells; the last level
counts each fine cell. For a nullable column, the top level has one more count: the nulls.

**Sensitivity.** Under add/remove-one-record, a record whose value is present adds 1 to exactly
one node of every level (the nodes of a level partition the fine cells) and nothing to the null
count; a null record adds 1 to the null count of the top level and nothing else. So every level
changes by one count by at most 1: each level is a histogram of L2 sensitivity 1, like the one
it replaces. The release of :mod:`._marginals` then holds ``k1 = (one-way histograms of the
other columns) + (levels over all binned columns)`` histograms, L2 sensitivity ``sqrt(k1)``,
noised at ``dominated_sigma(sigma_1 * sqrt(k1))`` per count: one Gaussian step of noise
multiplier ``sigma_1`` (see :mod:`._plan`).

**Post-processing (free).** :func:`privsynth_core.privacy.cells.estimate_fine` turns the noisy
tree into estimated rows per fine cell; :func:`~privsynth_core.privacy.cells.derive_cells`
makes ``min(numeric_bins, fine cells)`` cells of them (point masses are cells of their own,
the rest cut at equal shares of mass); the column's one-way marginal over its cells is the
estimate summed per cell, with the noisy null count (clipped at 0) as the null slot. The number
of cells is public (it depends on the bounds and ``numeric_bins`` only), so the network's shape
is too; where the cells fall is a mechanism output, stored with the noisy marginals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from privsynth_core.privacy.cells import (
    FineGrid,
    IntArray,
    LearnedCells,
    column_grid,
    count_fine,
    derive_cells,
    estimate_fine,
    tree_counts_of,
    tree_groups,
)
from privsynth_core.schema import ColumnKind, Schema

if TYPE_CHECKING:
    from privsynth_core.table import Table

    from . import DPCTGANParams

Tree = list[IntArray]


def learned_columns(schema: Schema, params: DPCTGANParams) -> tuple[str, ...]:
    """The numbers and datetimes that are binned (not one-hot over their integer values): the
    columns whose cells are learned (none with ``numeric_cells = "equal_width"``). Public: from
    the schema's kinds and bounds and the parameters only."""
    out: list[str] = []
    if params.numeric_cells == "equal_width":
        return ()
    for col in schema.columns:
        if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            continue
        if col.kind is ColumnKind.INTEGER and col.bounds is not None:
            low, high = math.ceil(float(col.bounds[0])), math.floor(float(col.bounds[1]))  # type: ignore[arg-type]
            if high - low + 1 <= params.max_exact_values:
                continue
        out.append(col.name)
    return tuple(out)


def cell_grids(schema: Schema, columns: Sequence[str]) -> dict[str, FineGrid]:
    """The public fine grid of each column in ``columns``."""
    return {name: column_grid(schema.column(name)) for name in columns}


def tree_levels(grids: Mapping[str, FineGrid]) -> dict[str, list[int]]:
    """Each column's tree (fine cells per node, by level, top first); public."""
    return {name: tree_groups(grid.size) for name, grid in grids.items()}


def focus_pairs(columns: Sequence[str], focus: Sequence[str]) -> list[tuple[str, str]]:
    """The two-way tables released for ``focus``: each focus column with every other column,
    each unordered pair once."""
    pairs: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for f in focus:
        for other in columns:
            key = frozenset((f, other))
            if other != f and key not in seen:
                seen.add(key)
                pairs.append((f, other))
    return pairs


def fine_and_null_counts(
    frame: pl.DataFrame, *, schema: Schema, grids: Mapping[str, FineGrid]
) -> dict[str, IntArray]:
    """The exact (private) rows of ``frame`` per fine cell of each binned column in ``grids``,
    followed by the column's null count: ``grids[name].size + 1`` counts per column.

    The first pass of the marginals release, run through :meth:`Table.reduce
    <privsynth_core.table.Table.reduce>`: module-level and picklable with its arguments bound,
    so on a partitioned table it runs on every partition on the workers and the sums come back;
    on one file it runs on the frame. The null count rides at the end of the column's array so
    the keys are exactly the column names (no name can collide with a second key). Never
    released."""
    out: dict[str, IntArray] = {}
    for name, counts in count_fine(frame, grids=grids, schema=schema).items():
        nulls = np.array([frame[name].null_count()], dtype=np.int64)
        out[name] = np.concatenate([np.asarray(counts, dtype=np.int64), nulls])
    return out


def trees_from_counts(
    counts: Mapping[str, IntArray],
    schema: Schema,
    grids: Mapping[str, FineGrid],
    levels: Mapping[str, list[int]],
) -> dict[str, Tree]:
    """Each binned column's exact tree from its summed :func:`fine_and_null_counts`: rows per
    node by level, the top level followed by the null count when the column is nullable."""
    out: dict[str, Tree] = {}
    for name, grid in grids.items():
        fine, nulls = counts[name][: grid.size], counts[name][grid.size :]
        tree = tree_counts_of(np.asarray(fine, dtype=np.int64), levels[name])
        if schema.column(name).nullable:
            tree[0] = np.concatenate([tree[0], np.asarray(nulls, dtype=np.int64)])
        assert tree[-1].size == grid.size
        out[name] = tree
    return out


def exact_trees(
    table: Table, grids: Mapping[str, FineGrid], levels: Mapping[str, list[int]]
) -> dict[str, Tree]:
    """The exact (private) tree of each binned column of ``table``: one
    :meth:`~privsynth_core.table.Table.reduce` of :func:`fine_and_null_counts` (on a
    partitioned table, one pass on the cluster; only the count vectors come back), assembled by
    :func:`trees_from_counts`. Never released."""
    if not grids:  # nothing binned: no pass over the rows
        return {}
    fn = partial(fine_and_null_counts, schema=table.schema, grids=dict(grids))
    return trees_from_counts(table.reduce(fn), table.schema, grids, levels)


def noisy_trees(exact: Mapping[str, Tree], scale: float) -> dict[str, Tree]:
    """Every count of every level plus exact discrete Gaussian noise of ``scale`` (OpenDP, from
    the operating system; never seeded)."""
    from privsynth_core.privacy.noise import discrete_gaussian

    return {
        name: [np.asarray(discrete_gaussian(level, sigma=scale), dtype=np.int64) for level in tree]
        for name, tree in exact.items()
    }


def cells_from_tree(
    grid: FineGrid,
    noisy: Tree,
    *,
    scale: float,
    groups: list[int],
    nullable: bool,
    bins: int,
) -> tuple[LearnedCells, np.ndarray]:
    """A column's cells and its one-way counts over them (then the null slot when nullable)
    from its noisy tree (post-processing)."""
    levels = list(noisy)
    null = 0.0
    if nullable:
        null = max(float(levels[0][-1]), 0.0)
        levels[0] = levels[0][:-1]
    estimate = estimate_fine(grid, levels, sigma=scale, groups=groups)
    cells = derive_cells(grid, estimate, bins)
    per_cell = np.bincount(cells.cell_of_fine(), weights=estimate, minlength=cells.n_cells)
    counts = np.concatenate([per_cell, [null]]) if nullable else per_cell
    return cells, np.asarray(counts, dtype=np.float64)


# -- storage (JSON, inside the noisy marginals' file) --------------------------------------------


def cells_state(cells: Mapping[str, LearnedCells]) -> dict[str, dict[str, Any]]:
    """The cells as JSON-ready lists (:meth:`LearnedCells.arrays`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, learned in cells.items():
        out[name] = {key: value.tolist() for key, value in learned.arrays("").items()}
    return out


def cells_from_state(state: Mapping[str, Any], binned: Sequence[str]) -> dict[str, LearnedCells]:
    """Read back :func:`cells_state`.

    Raises:
        ValueError: the state does not describe cells of binned columns (a damaged file).
    """
    out: dict[str, LearnedCells] = {}
    for name, arrays in state.items():
        if name not in binned or not isinstance(arrays, Mapping):
            raise ValueError(f"stored cells for {name!r}, which is not a binned number")
        try:
            out[name] = LearnedCells.from_arrays(arrays, "")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the stored cells {name!r} are not valid ({exc})") from None
    return out


class CellCoder:
    """A binned column's value <-> (cell, offset), over its learned cells.

    The cell is :meth:`LearnedCells.encode`'s; the offset in [-1, 1] is the value's position
    in the cell's estimated distribution: the estimated share of the cell below the value, with
    the mass spread evenly inside each fine cell (integers: each fine cell covers
    ``[start, end + 1)``). Decoding inverts it, so a uniform offset decodes to the estimated
    within-cell shape; a single-value cell (a point mass) decodes to its value whatever the
    offset.
    """

    def __init__(self, cells: LearnedCells) -> None:
        grid = cells.grid
        self.cells = cells
        self.cell = cells.cell_of_fine()
        self.weight = np.asarray(cells.weights, dtype=np.float64)
        cumulative = np.cumsum(self.weight)
        cell_start = np.concatenate([[0.0], cumulative])[cells.first]
        self.before = np.clip(cumulative - self.weight - cell_start[self.cell], 0.0, 1.0)
        self.u_start = self.cell + self.before
        self.lo = grid.starts
        self.hi = grid.ends + (1.0 if grid.integer else 0.0)
        self.last = np.concatenate([cells.first[1:] - 1, [grid.size - 1]])

    @property
    def n_cells(self) -> int:
        """Number of cells (one-hot slots)."""
        return self.cells.n_cells

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cell, offset) of each present value."""
        grid = self.cells.grid
        fine = grid.index(values)
        x = values + 0.5 if grid.integer else values
        width = self.hi[fine] - self.lo[fine]
        t = np.where(width > 0, (x - self.lo[fine]) / np.where(width > 0, width, 1.0), 0.5)
        position = self.before[fine] + self.weight[fine] * np.clip(t, 0.0, 1.0)
        return self.cell[fine], np.clip(position * 2.0 - 1.0, -1.0, 1.0)

    def decode(self, cell: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """A value for each (cell, offset); the inverse of :meth:`encode` up to float error."""
        grid = self.cells.grid
        u = cell + np.clip((offset + 1.0) / 2.0, 0.0, 1.0)
        fine = np.searchsorted(self.u_start, u, side="right") - 1
        fine = np.clip(fine, self.cells.first[cell], self.last[cell])
        w = self.weight[fine]
        t = np.where(w > 0, (u - self.u_start[fine]) / np.where(w > 0, w, 1.0), 0.5)
        x = self.lo[fine] + np.clip(t, 0.0, 1.0) * (self.hi[fine] - self.lo[fine])
        if grid.integer:
            x = np.floor(x)
        return np.asarray(np.clip(x, grid.starts[fine], grid.ends[fine]), dtype=np.float64)
