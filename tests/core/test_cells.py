"""Numeric cells learned under DP (privsynth_core.privacy.cells): the public grid, the mechanism's
sensitivity and noise, and the cells derived from its output.

The noise is OpenDP's, from the operating system, and cannot be seeded: every test that depends
on it is statistical, with its failure condition many standard deviations away (each says how
many), so a false failure is astronomically rare. Decoding takes a seeded generator (it is
post-processing), so those tests are exact.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime

import numpy as np
import pytest
from scipy.stats import ks_2samp

from privsynth_core.privacy.cells import (
    MAX_FINE,
    FineGrid,
    LearnedCells,
    column_grid,
    derive_cells,
    estimate_fine,
    fine_grid,
    measure_tree,
    tree_counts,
    tree_groups,
)
from privsynth_core.privacy.histograms import histogram_bounds
from privsynth_core.schema import Column, ColumnKind

GRIDS = [
    (0.0, 100_000.0, True),  # a wide integer range: capital gains
    (1.0, 99.0, True),  # few integers: one cell per value
    (-1000.0, 2000.0, True),  # 0 inside: delays
    (0.0, 20_000.0, False),  # a heavy-tailed real: survey weights, wages
    (44.8, 45.1, False),  # a narrow real: a latitude
    (-2.5, 7.25, False),
]


@pytest.mark.parametrize(("lower", "upper", "integer"), GRIDS)
def test_the_fine_grid_partitions_the_bounds_and_comes_from_them_alone(
    lower: float, upper: float, integer: bool
) -> None:
    grid = fine_grid(lower, upper, integer=integer)
    again = fine_grid(lower, upper, integer=integer)
    assert np.array_equal(grid.starts, again.starts) and np.array_equal(grid.ends, again.ends)
    assert 1 < grid.size <= MAX_FINE
    assert grid.starts[0] == lower and grid.ends[-1] == upper
    assert (np.diff(grid.starts) > 0).all() and (grid.ends >= grid.starts).all()
    if integer:  # consecutive whole-number ranges
        assert np.array_equal(grid.starts[1:], grid.ends[:-1] + 1)
        assert (grid.starts == np.round(grid.starts)).all()
    else:  # each interval stops where the next cell starts; a single value is its own cell
        interval = ~grid.single[:-1]
        assert np.array_equal(grid.ends[:-1][interval], grid.starts[1:][interval])
    # every value of the domain falls in the fine cell that holds it
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [[lower, upper], grid.starts, grid.ends, rng.uniform(lower, upper, 5000)]
    )
    if integer:
        values = np.round(values)
    cells = grid.index(values)
    assert (grid.starts[cells] <= values).all()
    if integer:
        assert (values <= grid.ends[cells]).all()
    else:
        single = grid.single[cells]
        assert (values[single] == grid.starts[cells][single]).all()
        last = cells == grid.size - 1
        assert ((values < grid.ends[cells]) | single | last).all()


def test_point_masses_where_real_tables_put_them_have_cells_of_their_own() -> None:
    money = fine_grid(0.0, 100_000.0, integer=True)
    singles = set(money.starts[money.single].tolist())
    assert {0.0, 100_000.0, 10_000.0, 50_000.0} <= singles  # bounds, zero, round values
    assert 99_999.0 in singles  # the geometric ladder from the upper bound reaches one value
    hours = fine_grid(1.0, 99.0, integer=True)
    assert hours.size == 99 and hours.single.all()  # one cell per value
    carat = fine_grid(0.0, 6.0, integer=False)
    assert {0.3, 1.0, 2.5}.issubset(set(carat.starts[carat.single].tolist()))
    # a heavy tail is resolved near the bound: cells of 1e-6 of the span or so
    weights = fine_grid(0.0, 20_000.0, integer=False)
    assert (weights.widths[~weights.single][:5] < 1.0).all()


def test_the_tree_nests_and_each_level_has_sensitivity_one() -> None:
    for size in (2, 8, 99, 406, 512):
        groups = tree_groups(size)
        assert groups[-1] == 1 and len(groups) <= 3
        assert all(a % b == 0 for a, b in itertools.pairwise(groups))
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 406, 3000)
    groups = tree_groups(406)
    before = tree_counts(codes, 406, groups)
    for extra in (0, 17, 405):
        after = tree_counts(np.append(codes, extra), 406, groups)
        for a, b in zip(before, after, strict=True):
            # add one record: one count of each level moves by one (L1 = L2 = 1)
            assert np.abs(b - a).sum() == 1


def test_the_mechanism_adds_unbiased_noise_of_its_sigma() -> None:
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 512, 20_000)
    groups = tree_groups(512)
    exact = tree_counts(codes, 512, groups)
    sigma = 7.0
    noisy = measure_tree(codes, 512, sigma=sigma, groups=groups)
    noise = np.concatenate([n - e for n, e in zip(noisy, exact, strict=True)]).astype(float)
    assert noise.dtype == np.float64 and (noise == np.round(noise)).all()  # integer noise
    # 584 draws: the mean is within 6 standard errors of 0 and the standard deviation within
    # 25% of sigma (each a > 5-sigma event under the discrete Gaussian)
    assert abs(noise.mean()) < 6 * sigma / math.sqrt(noise.size)
    assert abs(noise.std() / sigma - 1) < 0.25


def _spiky(n: int, rng: np.random.Generator) -> np.ndarray:
    """Hours worked: 40 for 45% of the rows, round numbers, a spread."""
    base = np.clip(np.round(rng.normal(38, 12, n)), 1, 99)
    spike = rng.uniform(size=n)
    return np.where(spike < 0.45, 40.0, np.where(spike < 0.55, 50.0, base))


def _learn(values: np.ndarray, grid: FineGrid, sigma: float, cells: int) -> LearnedCells:
    groups = tree_groups(grid.size)
    noisy = measure_tree(grid.index(values), grid.size, sigma=sigma, groups=groups)
    return derive_cells(grid, estimate_fine(grid, noisy, sigma=sigma, groups=groups), cells)


def test_a_value_held_by_many_rows_becomes_a_cell_of_its_own() -> None:
    rng = np.random.default_rng(3)
    values = _spiky(20_000, rng)
    grid = fine_grid(1.0, 99.0, integer=True)
    cells = _learn(values, grid, sigma=30.0, cells=32)
    assert cells.n_cells == 32
    # 40 holds ~9,000 rows and 50 ~2,000 against a threshold of 625: a miss would take a
    # deviation of over 40 sigmas
    assert {40.0, 50.0} <= set(cells.point_masses())
    codes = cells.encode(values)
    for value in (40.0, 50.0):
        cell = cells.encode(np.array([value]))[0]
        assert (cells.decode(np.full(100, cell), np.random.default_rng(0)) == value).all()
        assert set(np.unique(values[codes == cell])) == {value}


def test_heavy_tails_get_cells_that_follow_their_mass() -> None:
    rng = np.random.default_rng(4)
    values = np.clip(rng.lognormal(7.0, 1.0, 20_000), 0, 20_000)  # most below 3,000
    grid = fine_grid(0.0, 20_000.0, integer=False)
    learned = _learn(values, grid, sigma=20.0, cells=32)
    counts = np.bincount(learned.encode(values), minlength=32)
    # equal-width cells would hold 99% of the rows in the first 4 cells; learned cells spread
    # them: no cell holds more than 15% (expected ~3%; the noise on a cell's mass is well
    # under 1%)
    assert counts.max() < 0.15 * values.size
    assert (counts > 0).sum() >= 24
    # decoding with the true cell masses: the shape inside the cells is the noisy fine one
    synthetic = learned.decode(learned.encode(values), np.random.default_rng(5))
    assert ks_2samp(values, synthetic).statistic < 0.04


def test_derived_cells_are_exactly_as_many_as_asked_and_decode_inside_them() -> None:
    grid = fine_grid(0.0, 100_000.0, integer=True)
    rng = np.random.default_rng(6)
    estimate = rng.exponential(10.0, grid.size) * (rng.uniform(size=grid.size) < 0.3)
    for n_cells in (3, 16, 32, 100):
        learned = derive_cells(grid, estimate, n_cells)
        assert learned.n_cells == n_cells and learned.first[0] == 0
        per_cell = np.add.reduceat(learned.weights, learned.first)
        assert np.allclose(per_cell, 1.0)
        codes = np.repeat(np.arange(n_cells), 50)
        values = learned.decode(codes, np.random.default_rng(7))
        assert (values == np.round(values)).all()
        assert np.array_equal(learned.encode(values), codes)
    # an estimate with no mass at all still gives valid cells
    empty = derive_cells(grid, np.zeros(grid.size), 32)
    assert empty.n_cells == 32 and np.allclose(np.add.reduceat(empty.weights, empty.first), 1)


def test_learned_cells_round_trip_through_their_arrays_and_refuse_damage() -> None:
    grid = fine_grid(-2.5, 7.25, integer=False)
    estimate = np.linspace(1.0, 2.0, grid.size)
    learned = derive_cells(grid, estimate, 20)
    arrays = learned.arrays("cells_3_")
    back = LearnedCells.from_arrays(arrays, "cells_3_")
    assert np.array_equal(back.first, learned.first)
    assert np.array_equal(back.weights, learned.weights)
    assert np.array_equal(back.grid.starts, grid.starts) and not back.grid.integer
    broken = {**arrays, "cells_3_first": learned.first[::-1]}
    with pytest.raises(ValueError, match="not valid"):
        LearnedCells.from_arrays(broken, "cells_3_")


def test_an_estimate_from_almost_no_noise_is_the_histogram() -> None:
    grid = fine_grid(1.0, 99.0, integer=True)
    rng = np.random.default_rng(8)
    values = _spiky(5000, rng)
    groups = tree_groups(grid.size)
    exact = tree_counts(grid.index(values), grid.size, groups)
    estimate = estimate_fine(grid, exact, sigma=1e-9, groups=groups)
    assert np.allclose(estimate, exact[-1], atol=1e-3)


@pytest.mark.parametrize(
    "column",
    [
        # DP-learned bounds of dates in 2020-2022 (the domain's coarse range reaches 2^62
        # seconds, clamped to what a datetime holds): the year 1 is -6.2e16 microseconds
        Column(
            name="visit",
            kind=ColumnKind.DATETIME,
            bounds=(datetime(1, 1, 1), datetime(2038, 1, 19, 3, 14, 8)),
        ),
        Column(name="id", kind=ColumnKind.INTEGER, bounds=(0.0, 2.0**62)),  # a 64-bit key
    ],
    ids=["datetime-from-year-1", "integer-to-2^62"],
)
def test_bounds_past_2_to_the_53_are_cut_into_ordered_cells_that_store_and_decode(
    column: Column,
) -> None:
    # Past 2**53 neighbouring whole numbers are not all floats: cutting such a range into
    # whole-number cells once put two cells on one value, and the model then refused to load
    # ("the stored cells are not valid"). Every float there is whole, so it is cut as reals.
    grid = column_grid(column)
    assert (np.diff(grid.starts) > 0).all() and (grid.ends >= grid.starts).all()
    rng = np.random.default_rng(4)
    estimate = rng.exponential(size=grid.size)
    estimate[grid.size // 3] += 50 * estimate.sum()  # a point mass, as a spike would give
    learned = derive_cells(grid, estimate, 16)
    back = LearnedCells.from_arrays(learned.arrays("cells_6_"), "cells_6_")
    codes = np.arange(back.n_cells).repeat(50)
    values = back.decode(codes, rng)
    lower, upper = histogram_bounds(column)
    assert ((values >= lower) & (values <= upper)).all()
    assert (back.encode(values) == codes).all()  # each value inside the cell it was drawn for
