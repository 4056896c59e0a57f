"""Ancestral sampling from a chain of conditional tables: frequencies, seeds and files."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from privsynth_marginal.sampler import SamplingChain, conditional

N_ROWS = 200_000  # two of the sampler's 100k-row chunks


def _random_table(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    table: np.ndarray = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    return table.reshape(shape)


@pytest.fixture(scope="module")
def chain() -> SamplingChain:
    """Columns 0 (3 cells), 1 (2 cells), 2 (4 cells); drawn 0, 2 | 0, 1 | (0, 2).

    Includes a zero-probability cell, which must never be drawn.
    """
    rng = np.random.default_rng(11)
    p0 = np.array([0.5, 0.3, 0.2])
    p2 = _random_table((3, 4), rng)
    p1 = _random_table((3, 4, 2), rng)
    p2[1] = [0.0, 0.5, 0.0, 0.5]
    return SamplingChain(order=[0, 2, 1], parents=[[], [0], [0, 2]], tables=[p0, p2, p1])


@pytest.fixture(scope="module")
def sample(chain: SamplingChain) -> np.ndarray:
    codes: np.ndarray = chain.sample(N_ROWS, 3, np.random.default_rng(12))
    return codes


def _check_frequencies(observed: np.ndarray, n: int, expected: np.ndarray) -> None:
    """Every share within 5 binomial standard errors (about 6e-7 two-sided per cell)."""
    share = observed / n
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(share - expected) <= 5 * se + 1e-12), (share, expected)


def test_sample_has_the_right_shape_and_cells(sample: np.ndarray) -> None:
    assert sample.shape == (N_ROWS, 3)
    assert sample.dtype == np.int64
    for column, size in enumerate([3, 2, 4]):
        assert set(np.unique(sample[:, column])) <= set(range(size))


def test_root_column_follows_its_table(chain: SamplingChain, sample: np.ndarray) -> None:
    _check_frequencies(np.bincount(sample[:, 0], minlength=3), N_ROWS, chain.tables[0])


def test_each_column_follows_its_conditional_table(
    chain: SamplingChain, sample: np.ndarray
) -> None:
    p2, p1 = chain.tables[1], chain.tables[2]
    for a in range(3):
        rows = sample[sample[:, 0] == a]
        _check_frequencies(np.bincount(rows[:, 2], minlength=4), len(rows), p2[a])
        for c in range(4):
            sub = rows[rows[:, 2] == c]
            if len(sub) == 0:
                assert p2[a, c] == 0.0
                continue
            _check_frequencies(np.bincount(sub[:, 1], minlength=2), len(sub), p1[a, c])
    # the zero-probability cells are never drawn
    assert not np.any((sample[:, 0] == 1) & np.isin(sample[:, 2], [0, 2]))


def test_joint_matches_the_product_of_the_tables(chain: SamplingChain, sample: np.ndarray) -> None:
    p0, p2, p1 = chain.tables
    joint = p0[:, None, None] * p2[:, :, None] * p1  # axes (0, 2, 1)
    counts = np.zeros((3, 4, 2))
    np.add.at(counts, (sample[:, 0], sample[:, 2], sample[:, 1]), 1)
    _check_frequencies(counts, N_ROWS, joint)


def test_same_seed_same_codes_other_seed_other_codes(chain: SamplingChain) -> None:
    a = chain.sample(5000, 3, np.random.default_rng(1))
    b = chain.sample(5000, 3, np.random.default_rng(1))
    c = chain.sample(5000, 3, np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_round_trip_without_pickle(chain: SamplingChain, tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    chain.save(path)
    with np.load(path, allow_pickle=False) as data:  # every entry readable without pickle
        for key in data.files:
            assert data[key].dtype != object
    loaded = SamplingChain.load(path)
    assert loaded.order == chain.order and loaded.parents == chain.parents
    for mine, theirs in zip(loaded.tables, chain.tables, strict=True):
        assert np.array_equal(mine, theirs)
    assert np.array_equal(
        loaded.sample(3000, 3, np.random.default_rng(5)),
        chain.sample(3000, 3, np.random.default_rng(5)),
    )


def test_empty_sample() -> None:
    chain = SamplingChain(order=[0], parents=[[]], tables=[np.array([0.5, 0.5])])
    assert chain.sample(0, 1, np.random.default_rng(0)).shape == (0, 1)


def test_conditional_normalises_rows_and_falls_back_where_there_is_no_mass() -> None:
    joint = np.array(
        [[[2.0, 6.0, 0.0], [0.0, 0.0, 0.0]], [[1.0, -3.0, 1.0], [-1.0, -2.0, 0.0]]]
    )  # (parent a, parent b, column)
    fallback = np.array([0.2, 0.3, 0.5])
    out = conditional(joint, fallback)
    assert out.shape == joint.shape
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out[0, 0], [0.25, 0.75, 0.0])
    np.testing.assert_allclose(out[1, 0], [0.5, 0.0, 0.5])  # negative estimates clipped to 0
    for a, b in itertools.product([0, 1], [1]):  # no (or only negative) mass: the fallback
        np.testing.assert_allclose(out[a, b], fallback)


def test_conditional_of_a_root_is_its_normalised_marginal() -> None:
    out = conditional(np.array([3.0, 1.0, 0.0, 4.0]), np.full(4, 0.25))
    np.testing.assert_allclose(out, [0.375, 0.125, 0.0, 0.5])
    np.testing.assert_allclose(conditional(np.zeros(4), np.full(4, 0.25)), np.full(4, 0.25))
