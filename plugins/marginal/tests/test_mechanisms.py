"""The DP primitives, by direct measurement: counts, selection frequencies, noise scale.

Nothing here can be seeded (the mechanisms draw from OpenDP's exact samplers and the OS), so each
statistical check states its false-failure rate; all are 1e-7 or below.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from privsynth_marginal.mechanisms import (
    exponential_mechanism,
    gaussian_measure,
    marginal_counts,
)
from scipy.stats import chi2, chisquare

SIZES = [3, 2, 4, 5]


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, s, 3000) for s in SIZES], axis=1)


@pytest.mark.parametrize("clique", [(0,), (3,), (0, 1), (2, 1), (1, 2, 3), (3, 0, 2, 1)])
def test_marginal_counts_equal_a_brute_force_count(
    codes: np.ndarray, clique: tuple[int, ...]
) -> None:
    got = marginal_counts(codes, SIZES, clique)
    shape = [SIZES[i] for i in clique]
    assert got.shape == (int(np.prod(shape)),) and got.dtype == np.int64  # exact noise needs ints
    expected = np.zeros(shape)
    for cell in itertools.product(*(range(s) for s in shape)):
        expected[cell] = np.sum(np.all(codes[:, list(clique)] == cell, axis=1))
    assert np.array_equal(got, expected.ravel())  # C order over the clique as given
    assert got.sum() == codes.shape[0]


def test_marginal_counts_of_an_empty_table() -> None:
    got = marginal_counts(np.zeros((0, 4), dtype=np.int64), SIZES, (0, 3))
    assert np.array_equal(got, np.zeros(15))


@pytest.mark.parametrize(("epsilon0", "sensitivity"), [(1.0, 1.0), (0.5, 2.0), (3.0, 0.5)])
def test_exponential_mechanism_selects_in_proportion_to_exp(
    epsilon0: float, sensitivity: float
) -> None:
    # a constant offset changes nothing, and a huge one must not overflow
    qualities = np.array([0.0, 1.0, 2.0, 2.5, 4.0, -3.0]) + 1e6
    draws = 4000
    chosen = np.array(
        [exponential_mechanism(qualities, epsilon0, sensitivity) for _ in range(draws)]
    )
    weights = np.exp(epsilon0 * (qualities - qualities.max()) / (2 * sensitivity))
    expected = weights / weights.sum() * draws
    observed = np.bincount(chosen, minlength=qualities.size)
    keep = expected >= 20  # the chi-square approximation is good with 20 or more per cell
    rest = (observed[~keep].sum(), expected[~keep].sum())
    obs = np.append(observed[keep], rest[0]) if rest[1] > 0 else observed[keep]
    exp = np.append(expected[keep], rest[1]) if rest[1] > 0 else expected[keep]
    result = chisquare(obs, exp)
    # a correct mechanism fails this with probability 1e-7
    assert result.pvalue > 1e-7, (observed, expected)
    assert result.statistic < chi2.ppf(1 - 1e-7, obs.size - 1)


def test_exponential_mechanism_with_one_candidate_and_none() -> None:
    assert exponential_mechanism(np.array([3.0]), 1.0, 1.0) == 0
    with pytest.raises(ValueError, match="at least one candidate"):
        exponential_mechanism(np.array([]), 1.0, 1.0)


def test_gaussian_noise_is_integer_with_the_asked_scale_and_no_bias() -> None:
    counts = np.arange(40_000, dtype=np.int64)
    sigma = 3.5
    noisy = gaussian_measure(counts, sigma)
    assert noisy.dtype == np.int64  # exact integer noise on integer counts
    noise = (noisy - counts).astype(np.float64)
    n = noise.size
    # The discrete Gaussian of scale 3.5 has mean 0 and variance sigma^2 to within 1e-100
    # (Canonne, Kamath & Steinke 2020). Bounds at 5.5 standard errors: each fails a correct
    # sampler with probability under 4e-8 (mean: se sigma / sqrt(n); std: about sigma /
    # sqrt(2n); 4th standardised moment 3, se about sqrt(24 / n)).
    assert abs(noise.mean()) < 5.5 * sigma / np.sqrt(n)
    assert abs(noise.std() - sigma) < 5.5 * sigma / np.sqrt(2 * n)
    kurtosis = np.mean(noise**4) / noise.var() ** 2
    assert abs(kurtosis - 3) < 5.5 * np.sqrt(24 / n)


def test_gaussian_noise_is_fresh_on_every_measurement() -> None:
    # no seed to pass: two measurements of the same counts differ (they agree on 50 cells with
    # probability below 0.12^50 at sigma 10)
    counts = np.zeros(50, dtype=np.int64)
    assert not np.array_equal(gaussian_measure(counts, 10.0), gaussian_measure(counts, 10.0))
