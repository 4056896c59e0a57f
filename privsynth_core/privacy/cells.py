"""Numeric cells learned under DP: where a column's mass lies, bought with a small share of budget.

Generators that work on cells (MST, AIM, the marginal-based ones) used to cut a number into
equal-width cells of its public bounds and decode it uniformly inside a cell. That fails on
the columns real tables have: a spike (40 hours a week for half the people, a capital gain of 0
for nine in ten) is smeared over its cell, and a heavy tail (a survey weight, a price, a wage)
puts nearly all rows in the first cell. This module learns the cells from the data, with DP:

1. :func:`fine_grid` cuts the public bounds into up to :data:`MAX_FINE` fine cells **from the
   bounds alone**: one per value for integers with few values; otherwise equal-width cuts, plus
   geometric ladders from each bound and from 0 (so a heavy tail is resolved at every scale),
   plus single-value cells at the bounds, at 0 and at round values (multiples of a power of
   ten), where real tables put point masses.
2. :func:`measure_tree` is the mechanism: a tree of histograms over the fine cells (level
   ``l`` counts the rows in groups of fine cells; the last level, each fine cell), each a count
   vector of L1 and L2 sensitivity 1 under add/remove-one-record, noised with the exact discrete
   Gaussian of :mod:`privsynth_core.privacy.noise` (``1 / (2 sigma^2)`` zCDP per level, so
   ``levels / (2 sigma^2)`` per column). The caller charges it inside its own budget.
3. Everything after that is post-processing of the noisy counts (free): :func:`estimate_fine`
   walks the tree top down, splitting each node's estimate among its children by their noisy
   counts shrunk towards the width of each child (so where the counts are mostly noise, the
   density is taken as flat rather than as noise); :func:`derive_cells` then makes the cells:
   values holding at least one cell's worth of rows become cells of their own (point masses),
   and the rest are cut where the estimated mass reaches equal shares (quantile-like, and
   log-like where the tail is heavy, because the fine grid is). Decoding draws a fine cell by
   the estimated mass inside its cell, then a value uniformly inside that fine cell.

The public bounds stay the only non-private input. The number of cells is fixed by the public
inputs (``min(cells, fine cells)``): which values they hold is the mechanism's output, and so
is everything :class:`LearnedCells` stores. Nothing here takes a seed: the noise is OpenDP's,
from the operating system.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from ..schema import Column, ColumnKind, Schema

#: The most fine cells of one column (a tree of three levels of eight-way splits).
MAX_FINE = 512
#: Children per node of the tree of histograms.
BRANCHING = 8
#: A single value counts as a point mass when its noisy count passes this many sigmas; below,
#: it is taken as empty (noise alone would put a phantom spike on every round value otherwise).
POINT_SIGMAS = 2.0
#: Whole numbers up to this size are exactly floats, one apart (2**53).
WHOLE_EXACT = float(2**53)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FineGrid:
    """A partition of a numeric column's public bounds into fine cells, in increasing order.

    Attributes:
        starts: the smallest value of each fine cell.
        ends: its largest value (integers: inclusive) or where it stops (reals: exclusive;
            equal to the start for a single-value cell).
        integer: values are whole numbers (integer columns; datetimes in microseconds).
    """

    starts: FloatArray
    ends: FloatArray
    integer: bool

    @property
    def size(self) -> int:
        """Number of fine cells."""
        return int(self.starts.size)

    @property
    def single(self) -> npt.NDArray[np.bool_]:
        """Which fine cells hold exactly one value."""
        return np.asarray(self.ends == self.starts)

    @property
    def widths(self) -> FloatArray:
        """How much of the line each fine cell covers (integers: how many values; 0 for a
        single real value)."""
        span = self.ends - self.starts
        return span + 1.0 if self.integer else span

    def index(self, values: FloatArray) -> IntArray:
        """The fine cell of each value (values outside the bounds go to the first or last)."""
        found = np.searchsorted(self.starts, values, side="right") - 1
        return np.clip(found, 0, self.size - 1).astype(np.int64)

    def draw(self, fine: IntArray, rng: np.random.Generator) -> FloatArray:
        """A value uniformly inside each given fine cell: a whole number for an integer grid,
        the value itself for a single-value cell (post-processing: ``rng`` only picks among
        values the cell allows)."""
        lo, hi = self.starts[fine], self.ends[fine]
        v = rng.uniform(size=fine.size)
        if self.integer:
            return np.asarray(np.minimum(np.floor(lo + v * (hi - lo + 1.0)), hi), dtype=np.float64)
        return np.asarray(np.where(hi > lo, lo + v * (hi - lo), lo), dtype=np.float64)


def _ladder(anchor: float, towards: float, steps: int) -> FloatArray:
    """Cut points from ``anchor`` towards ``towards`` at geometric distances (1e-6 of the span
    up to the span): fine near the anchor, coarse far from it."""
    span = towards - anchor
    return np.asarray(anchor + span * np.logspace(-6.0, 0.0, steps), dtype=np.float64)


def _round_step(span: float) -> float:
    """The power of ten that puts about 8 to 80 round values between the bounds."""
    return float(10.0 ** math.floor(math.log10(span / 8.0)))


def fine_grid(
    lower: float,
    upper: float,
    *,
    integer: bool,
    round_values: bool = True,
    max_cells: int = MAX_FINE,
) -> FineGrid:
    """The fine cells of a numeric column, from its public bounds only (see the module
    docstring).

    Args:
        lower, upper: the public bounds.
        integer: whole-number cells (integer columns; datetimes in microseconds). An integer
            column with at most ``max_cells`` values gets one cell per value. Bounds past
            2**53 in magnitude are cut as reals (whole-number cuts a unit apart would collide
            there); the cuts nearer zero may then fall between whole numbers, and the
            generators round or truncate what they decode.
        round_values: single-value cells at multiples of a power of ten (not for datetimes,
            whose microseconds have no round values worth a cell).
        max_cells: the most fine cells.
    """
    if integer:
        lower, upper = float(math.ceil(lower)), float(math.floor(upper))
    if integer and max(abs(lower), abs(upper)) >= WHOLE_EXACT:
        # Past 2**53 neighbouring whole numbers are not all floats, so cuts a unit apart would
        # round onto one value (cells out of order: found with a DP-learned datetime bound after
        # the year 2255, in microseconds). Every float there is whole: cut it as reals.
        integer = False
    if upper <= lower:
        point = np.array([lower])
        return FineGrid(point, point.copy(), integer)
    if integer and upper - lower + 1 <= max_cells:
        values = np.arange(lower, upper + 1, dtype=np.float64)
        return FineGrid(values, values.copy(), True)
    span = upper - lower
    anchors = [lower, upper] + ([0.0] if lower < 0.0 < upper else [])
    # about half the cells equal-width, a quarter on geometric ladders, the rest single values
    cuts = [np.linspace(lower, upper, max_cells // 2 + 1)]
    ladder = max(max_cells // 4 // (2 * len(anchors) - 2), 4)
    for anchor in anchors:
        for end in (lower, upper):
            if end != anchor:
                cuts.append(_ladder(anchor, end, ladder))
    rounds = np.zeros(0)
    if round_values:
        step = _round_step(span)
        decimals = max(0, -math.floor(math.log10(step)))
        # rounded to the step's decimals, so 3 * 0.1 is the 0.3 a CSV holds
        rounds = np.round(
            np.arange(math.ceil(lower / step), math.floor(upper / step) + 1, dtype=np.float64)
            * step,
            decimals,
        )
    points = np.unique(np.concatenate([[lower, upper], anchors, rounds]))
    if integer:
        points = np.unique(np.round(points))
    points = points[(points >= lower) & (points <= upper)]
    edges = np.unique(np.concatenate(cuts))
    if integer:
        edges = np.unique(np.round(edges))
    # interval cells: between consecutive edges, with the single-value cells taken out
    starts: list[float] = []
    ends: list[float] = []
    bounds = np.unique(np.concatenate([edges, points]))
    point_set = set(points.tolist())
    for i, left in enumerate(bounds):
        if left in point_set:
            starts.append(left)
            ends.append(left)
        right = bounds[i + 1] if i + 1 < bounds.size else None
        if right is None:
            break
        lo = (
            left + 1.0
            if integer and left in point_set
            else (float(np.nextafter(left, math.inf)) if left in point_set else left)
        )
        hi = right - 1.0 if integer else right
        if (integer and lo <= hi) or (not integer and lo < hi):
            starts.append(lo)
            ends.append(hi)
    grid = FineGrid(np.asarray(starts), np.asarray(ends), integer)
    return _coarsened(grid, max_cells)


def column_grid(column: Column, max_cells: int = MAX_FINE) -> FineGrid:
    """The public fine grid of a number or datetime column, from its schema bounds alone:
    whole-number cells for integers and datetimes (microseconds since the epoch), round
    values as cells of their own except for datetimes."""
    from .histograms import histogram_bounds

    lower, upper = histogram_bounds(column)
    kind = column.kind
    return fine_grid(
        lower,
        upper,
        integer=kind is not ColumnKind.CONTINUOUS,
        round_values=kind is not ColumnKind.DATETIME,
        max_cells=max_cells,
    )


def column_values(series: pl.Series, kind: ColumnKind) -> FloatArray:
    """The values of a typed number or datetime column as floats in its grid's unit
    (datetimes: microseconds since the epoch); nulls stay null (NaN)."""
    if kind is ColumnKind.DATETIME:
        series = series.dt.epoch("us")
    return np.asarray(series.cast(pl.Float64).to_numpy(), dtype=np.float64)


def count_fine(
    frame: pl.DataFrame, *, grids: Mapping[str, FineGrid], schema: Schema
) -> dict[str, IntArray]:
    """The exact (private) rows per fine cell of each column in ``grids`` (nulls left out).
    Module-level and picklable with its arguments bound, so it runs on each partition of a
    partitioned table (:meth:`privsynth_core.table.Table.reduce`): the partitions' counts add
    up to the table's. Never released: a mechanism (:func:`measure_tree_of`) noises them."""
    out: dict[str, IntArray] = {}
    for name, grid in grids.items():
        values = column_values(frame[name].drop_nulls(), schema.column(name).kind)
        out[name] = fine_counts(grid.index(values), grid.size)
    return out


def _coarsened(grid: FineGrid, limit: int) -> FineGrid:
    """Merge the narrowest neighbouring interval cells until at most ``limit`` remain."""
    starts, ends = list(grid.starts), list(grid.ends)
    while len(starts) > limit:
        single = [s == e for s, e in zip(starts, ends, strict=True)]
        widths = [e - s for s, e in zip(starts, ends, strict=True)]
        pairs = [i for i in range(len(starts) - 1) if not single[i] and not single[i + 1]]
        if not pairs:
            break
        i = min(pairs, key=lambda k: widths[k] + widths[k + 1])
        ends[i] = ends[i + 1]
        del starts[i + 1], ends[i + 1]
    return FineGrid(np.asarray(starts), np.asarray(ends), grid.integer)


# -- the mechanism -------------------------------------------------------------------------------


def tree_groups(size: int, branching: int = BRANCHING) -> list[int]:
    """Fine cells per node at each level of the tree over ``size`` fine cells, top level first,
    ending with 1 (the fine cells themselves); each is a multiple of the next, so every node
    lies inside one node of the level above. Public: it depends on the grid alone."""
    levels = max(1, math.ceil(math.log(max(size, 2), branching) - 1e-9))
    split = max(2, math.ceil(size ** (1.0 / levels) - 1e-9))
    return [split ** (levels - level) for level in range(1, levels + 1)]


def fine_counts(fine_codes: IntArray, size: int) -> IntArray:
    """The exact (private) rows per fine cell. Counts of disjoint sets of rows (a partitioned
    table's parts) add up to the counts of their union."""
    return np.bincount(fine_codes, minlength=size).astype(np.int64)


def tree_counts(fine_codes: IntArray, size: int, groups: list[int]) -> list[IntArray]:
    """The exact (private) counts of every level of the tree: rows per node. Never released:
    :func:`measure_tree` noises them."""
    return tree_counts_of(fine_counts(fine_codes, size), groups)


def tree_counts_of(exact: IntArray, groups: list[int]) -> list[IntArray]:
    """:func:`tree_counts` from the exact rows per fine cell (:func:`fine_counts`)."""
    size = exact.size
    out = []
    for group in groups:
        counts = np.add.reduceat(exact, np.arange(0, size, group)) if group > 1 else exact
        out.append(np.asarray(counts, dtype=np.int64))
    return out


def measure_tree_of(
    exact: IntArray, *, sigma: float, groups: list[int] | None = None
) -> list[IntArray]:
    """:func:`measure_tree` from the exact rows per fine cell (:func:`fine_counts`, e.g.
    summed over a partitioned table's parts): the same mechanism on the same counts."""
    from .noise import discrete_gaussian

    return [
        np.asarray(discrete_gaussian(counts, sigma=sigma), dtype=np.int64)
        for counts in tree_counts_of(exact, groups or tree_groups(exact.size))
    ]


def measure_tree(
    fine_codes: IntArray, size: int, *, sigma: float, groups: list[int] | None = None
) -> list[IntArray]:
    """The mechanism: for each level of the tree, the count of rows in each node, plus exact
    discrete Gaussian noise of scale ``sigma`` (OpenDP, from the OS; never seeded).

    Each level is a histogram: one record adds 1 to one count, so each level costs
    ``1 / (2 sigma^2)`` zCDP (add/remove one record) and the tree ``len(groups)`` times that.
    The caller charges it.

    Args:
        fine_codes: the fine cell of every present value (the private data).
        size: the number of fine cells.
        sigma: the noise of every count.
        groups: fine cells per node by level (default :func:`tree_groups`).
    """
    return measure_tree_of(fine_counts(fine_codes, size), sigma=sigma, groups=groups)


# -- post-processing -----------------------------------------------------------------------------


def estimate_fine(
    grid: FineGrid, noisy: list[IntArray], *, sigma: float, groups: list[int] | None = None
) -> FloatArray:
    """Estimated rows in each fine cell from the noisy tree (post-processing; see the module
    docstring): top down, each node's estimate split among its children in proportion to
    ``max(noisy, 0) + kappa * width share``, with ``kappa`` the children's noise scale, so
    that noise-sized counts fall back on a flat density; a single value whose noisy count is
    under :data:`POINT_SIGMAS` sigmas gets nothing."""
    groups = groups or tree_groups(grid.size)
    widths = grid.widths
    single = grid.single
    is_exact = bool(single.all())
    estimate = np.array([max(float(np.clip(noisy[0], 0, None).sum()), 1.0)])
    parent_group = grid.size
    for group, counts in zip(groups, noisy, strict=True):
        nodes = counts.size
        starts = np.arange(nodes) * group
        node_width = np.add.reduceat(widths, starts)
        node_single = np.logical_and.reduceat(single, starts) & (group == 1)
        values = np.clip(counts.astype(np.float64), 0.0, None)
        if not is_exact:  # phantom spikes on empty round values
            values[node_single & (counts < POINT_SIGMAS * sigma)] = 0.0
        parent = (np.arange(nodes) * group) // parent_group
        n_parents = estimate.size
        sum_width = np.bincount(parent, weights=node_width, minlength=n_parents)
        siblings = np.bincount(parent, minlength=n_parents).astype(np.float64)
        prior = np.where(
            sum_width[parent] > 0,
            node_width / np.where(sum_width[parent] > 0, sum_width[parent], 1.0),
            1.0 / siblings[parent],
        )
        kappa = sigma * np.sqrt(siblings[parent])
        weight = values + kappa * prior
        total = np.bincount(parent, weights=weight, minlength=n_parents)
        estimate = estimate[parent] * weight / np.where(total[parent] > 0, total[parent], 1.0)
        parent_group = group
    return np.asarray(estimate, dtype=np.float64)


@dataclass(frozen=True)
class LearnedCells:
    """A numeric column's cells derived from its noisy fine histogram (a mechanism output).

    Attributes:
        grid: the public fine grid.
        first: the first fine cell of each cell (increasing, starting at 0).
        weights: each fine cell's share of its cell (sums to 1 within every cell).
        points: the fine cells made cells of their own for their mass (point masses).
    """

    grid: FineGrid
    first: IntArray
    weights: FloatArray
    points: IntArray

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.first.size)

    def cell_of_fine(self) -> IntArray:
        """The cell of each fine cell."""
        return (np.searchsorted(self.first, np.arange(self.grid.size), side="right") - 1).astype(
            np.int64
        )

    def encode(self, values: FloatArray) -> IntArray:
        """The cell of each value."""
        return self.cell_of_fine()[self.grid.index(values)]

    def decode(self, codes: IntArray, rng: np.random.Generator) -> FloatArray:
        """A value for each cell index: a fine cell drawn by its share, then a value uniformly
        inside it (whole numbers for integer grids; the value itself for a single-value cell)."""
        if codes.size == 0:
            return np.zeros(0)
        # cumulative share within each cell, so one uniform draw per row picks its fine cell
        cumulative = np.cumsum(self.weights)
        before = np.concatenate([[0.0], cumulative])[self.first]
        last = np.concatenate([self.first[1:] - 1, [self.grid.size - 1]])
        u = rng.uniform(size=codes.size)
        targets = before[codes] + u * (cumulative[last[codes]] - before[codes])
        fine = np.searchsorted(cumulative, targets, side="right")
        fine = np.clip(fine, self.first[codes], last[codes])
        return self.grid.draw(fine, rng)

    def point_masses(self) -> list[float]:
        """The values made cells of their own for the rows they hold, in increasing order."""
        return [float(self.grid.starts[i]) for i in self.points]

    def arrays(self, prefix: str) -> dict[str, npt.NDArray[np.generic]]:
        """The arrays to store (``np.savez``), under names starting with ``prefix``."""
        return {
            f"{prefix}starts": self.grid.starts,
            f"{prefix}ends": self.grid.ends,
            f"{prefix}integer": np.array(self.grid.integer),
            f"{prefix}first": self.first,
            f"{prefix}weights": self.weights,
            f"{prefix}points": self.points,
        }

    @classmethod
    def from_arrays(cls, data: Mapping[str, Any], prefix: str) -> LearnedCells:
        """Read back what :meth:`arrays` wrote (from a mapping or an ``np.load`` result).

        Raises:
            ValueError: the arrays do not describe cells (a damaged file).
        """
        get = data.__getitem__
        grid = FineGrid(
            np.asarray(get(f"{prefix}starts"), dtype=np.float64),
            np.asarray(get(f"{prefix}ends"), dtype=np.float64),
            bool(get(f"{prefix}integer")),
        )
        first = np.asarray(get(f"{prefix}first"), dtype=np.int64)
        weights = np.asarray(get(f"{prefix}weights"), dtype=np.float64)
        points = np.asarray(get(f"{prefix}points"), dtype=np.int64)
        if (
            grid.ends.size != grid.size
            or weights.size != grid.size
            or first.size < 1
            or first[0] != 0
            or (np.diff(first) <= 0).any()
            or first[-1] >= grid.size
            or (np.diff(grid.starts) <= 0).any()
            or (weights < 0).any()
            or not np.isin(points, first).all()
        ):
            raise ValueError(f"the stored cells {prefix!r} are not valid")
        return cls(grid, first, weights, points)


def derive_cells(grid: FineGrid, estimate: FloatArray, n_cells: int) -> LearnedCells:
    """The cells of a column from its estimated fine counts (post-processing).

    Exactly ``min(n_cells, grid.size)`` cells: single values holding at least ``1 / n_cells``
    of the rows (at most ``(n_cells - 1) // 2`` of them, the largest) are cells of their own;
    the runs of fine cells between them share the other cells in proportion to their mass
    (at least one each), and each run is cut where its cumulative mass reaches equal shares.
    """
    size = grid.size
    if size <= n_cells:
        every = np.arange(size, dtype=np.int64)
        return LearnedCells(grid, every, np.ones(size), np.zeros(0, dtype=np.int64))
    total = float(estimate.sum())
    single = np.flatnonzero(grid.single & (estimate >= total / n_cells) & (total > 0))
    single = single[np.argsort(-estimate[single], kind="stable")][: (n_cells - 1) // 2]
    points = sorted(single.tolist())
    runs: list[tuple[int, int]] = []
    start = 0
    for p in [*points, size]:
        if p > start:
            runs.append((start, p))
        start = p + 1
    remaining = n_cells - len(points)
    lengths = np.array([b - a for a, b in runs])
    masses = np.array([float(estimate[a:b].sum()) for a, b in runs])
    share = _allocate(remaining, masses, lengths)
    first: list[int] = list(points)
    for (a, b), k in zip(runs, share, strict=True):
        first += _cuts(estimate[a:b], int(k), offset=a)
    first_arr = np.array(sorted(first), dtype=np.int64)
    weights = _within(grid, estimate, first_arr)
    return LearnedCells(grid, first_arr, weights, np.array(points, dtype=np.int64))


def _allocate(cells: int, masses: FloatArray, lengths: IntArray) -> IntArray:
    """``cells`` split among runs: one each, the rest in proportion to mass (highest
    averages, as in seat apportionment), never more than a run's fine cells."""
    share = np.ones(masses.size, dtype=np.int64)
    weights = masses if masses.sum() > 0 else lengths.astype(np.float64)
    for _ in range(cells - int(share.sum())):
        room = share < lengths
        if not room.any():
            break
        share[int(np.argmax(np.where(room, weights / share, -np.inf)))] += 1
    return share


def _cuts(mass: FloatArray, k: int, *, offset: int) -> list[int]:
    """The first fine cell of each of ``k`` cells over a run, cut at equal shares of mass."""
    m = mass.size
    cumulative = np.cumsum(mass)
    total = cumulative[-1] if m else 0.0
    firsts = [offset]
    previous = 0
    for t in range(1, k):
        if total > 0:
            j = int(np.searchsorted(cumulative, total * t / k, side="left")) + 1
        else:
            j = round(m * t / k)
        j = min(max(j, previous + 1), m - (k - t))
        firsts.append(offset + j)
        previous = j
    return firsts


def _within(grid: FineGrid, estimate: FloatArray, first: IntArray) -> FloatArray:
    """Each fine cell's share of its cell: the estimate, or the width where a cell has none."""
    weights = np.clip(estimate, 0.0, None).astype(np.float64)
    widths = grid.widths
    bounds = [*first.tolist(), grid.size]
    for a, b in itertools.pairwise(bounds):
        block = weights[a:b]
        if block.sum() <= 0:
            block = widths[a:b].copy() if widths[a:b].sum() > 0 else np.ones(b - a)
        weights[a:b] = block / block.sum()
    return weights


def point_masses(
    learned: Mapping[str, LearnedCells], schema: Schema
) -> dict[str, list[int | float | str]]:
    """The values that became cells of their own, by column (a mechanism output, for a fit
    summary), as the column writes them: whole numbers for integers, ISO text for datetimes."""
    from datetime import datetime, timedelta

    out: dict[str, list[int | float | str]] = {}
    for name, cells in learned.items():
        kind = schema.column(name).kind
        values: list[int | float | str] = []
        for value in cells.point_masses():
            if kind is ColumnKind.INTEGER:
                values.append(int(value))
            elif kind is ColumnKind.DATETIME:
                values.append(
                    (datetime(1970, 1, 1) + timedelta(microseconds=int(value))).isoformat()
                )
            else:
                values.append(round(float(value), 12))
        out[name] = values
    return out


__all__ = [
    "BRANCHING",
    "MAX_FINE",
    "FineGrid",
    "LearnedCells",
    "column_grid",
    "column_values",
    "count_fine",
    "derive_cells",
    "estimate_fine",
    "fine_counts",
    "fine_grid",
    "measure_tree",
    "measure_tree_of",
    "point_masses",
    "tree_counts",
    "tree_counts_of",
    "tree_groups",
]
