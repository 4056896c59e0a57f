"""The exact samplers against their published pmfs, their privacy maps against the published
constants, and the discrete Gaussian's widening against the continuous Gaussian's trade-off curve.

Statistical tests draw fresh OS randomness (nothing can seed these samplers), so each states its
false-failure rate. The chi-square tests pool the tails so that every expected count is at least
20 (where the chi-square approximation of the statistic is good) and reject at p < 1e-7: a
correct sampler fails each about once in ten million runs. Each is paired with a check that the
same draws reject a 10% wrong scale, so the test can fail: with 30,000 draws that check itself
fails (a power shortfall) with probability under 1e-9.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy.stats import chisquare, norm

from privsynth_core import ConfigError
from privsynth_core.privacy.noise import (
    discrete_gaussian,
    discrete_laplace,
    dominated_sigma,
    exponential_choice,
    gaussian_rho,
    laplace_epsilon,
    private_quantile,
)

DRAWS = 30_000
P_REJECT = 1e-7


def laplace_pmf(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """P(k) = (1 - p) / (1 + p) * p^|k|, p = exp(-1 / scale): proportional to exp(-|k| / scale)."""
    p = math.exp(-1.0 / scale)
    return lambda k: (1 - p) / (1 + p) * p ** np.abs(k)


def gaussian_pmf(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    """P(k) proportional to exp(-k^2 / (2 sigma^2)), normalised over |k| <= 60 sigma + 10 (the
    rest weighs under exp(-1800))."""
    support = np.arange(-math.ceil(60 * sigma) - 10, math.ceil(60 * sigma) + 11)
    norm_const = np.exp(-(support**2) / (2 * sigma**2)).sum()
    return lambda k: np.exp(-(np.asarray(k, dtype=np.float64) ** 2) / (2 * sigma**2)) / norm_const


def binned(pmf: Callable[[np.ndarray], np.ndarray], n: int) -> tuple[int, np.ndarray]:
    """``K`` and the cell probabilities of (-inf, -K], -K+1 .. K-1, [K, inf): the largest ``K``
    with every expected count (``n`` times the probability) at least 20."""

    def cells(k: int) -> np.ndarray:
        inner = pmf(np.arange(-k + 1, k))
        tail = (1.0 - inner.sum()) / 2  # symmetric
        return np.concatenate([[tail], inner, [tail]])

    k = 1
    while (n * cells(k + 1)).min() >= 20:
        k += 1
    return k, cells(k)


def chi_square_pvalue(draws: np.ndarray, k: int, probabilities: np.ndarray) -> float:
    clipped = np.clip(draws, -k, k) + k  # -K -> cell 0, K -> cell 2K
    observed = np.bincount(clipped, minlength=2 * k + 1)
    return float(chisquare(observed, probabilities * draws.size).pvalue)


@pytest.mark.parametrize("scale", [0.7, 3.0])
def test_discrete_laplace_draws_follow_the_exact_pmf(scale: float) -> None:
    draws = discrete_laplace(np.zeros(DRAWS, dtype=np.int64), scale=scale)
    assert draws.dtype == np.int64
    k, probabilities = binned(laplace_pmf(scale), DRAWS)
    assert chi_square_pvalue(draws, k, probabilities) > P_REJECT
    k_wrong, wrong = binned(laplace_pmf(scale * 1.1), DRAWS)
    assert chi_square_pvalue(draws, k_wrong, wrong) < P_REJECT


@pytest.mark.parametrize("sigma", [0.9, 4.0])
def test_discrete_gaussian_draws_follow_the_exact_pmf(sigma: float) -> None:
    draws = discrete_gaussian(np.zeros(DRAWS, dtype=np.int64), sigma=sigma)
    assert draws.dtype == np.int64
    k, probabilities = binned(gaussian_pmf(sigma), DRAWS)
    assert chi_square_pvalue(draws, k, probabilities) > P_REJECT
    k_wrong, wrong = binned(gaussian_pmf(sigma * 1.1), DRAWS)
    assert chi_square_pvalue(draws, k_wrong, wrong) < P_REJECT


def test_noise_is_added_to_the_counts_it_is_given_shape_and_all() -> None:
    counts = np.array([[0, 5, 1_000_000], [7, 2**40, 3]], dtype=np.int64)
    noisy = discrete_gaussian(counts, sigma=0.05)  # P[noise != 0] is about 1e-87 per cell
    assert noisy.shape == counts.shape and noisy.dtype == np.int64
    assert np.array_equal(noisy, counts)
    assert np.array_equal(discrete_laplace([3.0, 4.0], scale=0.01), [3, 4])  # 1e-43 per cell


def test_every_call_draws_fresh_noise() -> None:
    # Two draws of 1,000 cells agree with probability (sum_k P(k)^2)^1000 < 0.4^1000.
    a = discrete_laplace(np.zeros(1000, dtype=np.int64), scale=1.0)
    b = discrete_laplace(np.zeros(1000, dtype=np.int64), scale=1.0)
    assert not np.array_equal(a, b)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="integer counts"):
        discrete_laplace([1.5], scale=1.0)
    for scale in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="finite number > 0"):
            discrete_gaussian([1], sigma=scale)
    with pytest.raises(ConfigError, match="finite number > 0"):
        dominated_sigma(0.0)
    with pytest.raises(ConfigError, match="at least one score"):
        exponential_choice([], epsilon0=1.0, sensitivity=1.0)
    with pytest.raises(ConfigError, match="strictly increasing"):
        private_quantile([1.0], 0.5, candidates=[0.0, 0.0, 1.0], epsilon=1.0)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.7, 100.0])
def test_privacy_maps_are_the_continuous_constants(scale: float) -> None:
    # discrete Laplace: epsilon = sensitivity / scale; discrete Gaussian: rho = s^2 / (2 sigma^2)
    # (Canonne, Kamath & Steinke 2020); OpenDP rounds up, by ulps at most.
    assert laplace_epsilon(scale) == pytest.approx(1 / scale, rel=1e-12)
    assert laplace_epsilon(scale, sensitivity=3) == pytest.approx(3 / scale, rel=1e-12)
    assert laplace_epsilon(scale) >= 1 / scale
    assert gaussian_rho(scale) == pytest.approx(1 / (2 * scale**2), rel=1e-12)
    assert gaussian_rho(scale, sensitivity=2) == pytest.approx(4 / (2 * scale**2), rel=1e-12)
    assert gaussian_rho(scale) >= 1 / (2 * scale**2)


def test_exponential_choice_picks_in_proportion_to_exp() -> None:
    # P(i) proportional to exp(epsilon0 q_i / (2 sensitivity)); a huge offset changes nothing.
    scores = np.array([0.0, 1.0, 2.0, 2.5, 4.0]) + 1e9
    epsilon0, sensitivity, draws = 1.5, 1.0, 6000
    picks = np.array(
        [
            exponential_choice(scores, epsilon0=epsilon0, sensitivity=sensitivity)
            for _ in range(draws)
        ]
    )
    weights = np.exp(epsilon0 * (scores - scores.max()) / (2 * sensitivity))
    expected = weights / weights.sum() * draws  # every cell expects at least 70
    observed = np.bincount(picks, minlength=scores.size)
    assert chisquare(observed, expected).pvalue > P_REJECT  # false failure 1e-7


def test_private_quantile_returns_a_candidate_near_the_quantile() -> None:
    values = np.linspace(0.0, 100.0, 2001)
    grid = np.linspace(0.0, 100.0, 401)
    draws = [private_quantile(values, 0.25, candidates=grid, epsilon=2.0) for _ in range(50)]
    assert set(draws) <= set(grid.tolist())
    # A candidate's score is its rank's distance from 0.25 n, with sensitivity 0.75 (20 ranks
    # per unit here). Missing 25 by more than 2 units costs 40 ranks; the exponential
    # mechanism's accuracy bound (Dwork & Roth 2014, Theorem 3.11) puts that at probability
    # under exp(-(40 epsilon / (2 * 0.75) - ln 401)) < 1e-20 per draw.
    assert all(abs(d - 25.0) <= 2.0 for d in draws)


def _probit_steps(sigma: float, mp: Any) -> list[Any]:
    """``Phi^-1(F(j)) - Phi^-1(F(j - 1))`` for ``j`` from ``-40 sigma`` to 0 (the others mirror
    these), ``F`` the CDF of the discrete Gaussian of ``sigma``, in 60-digit arithmetic."""
    k_max = math.ceil(40 * sigma) + 2
    two_s2 = 2 * mp.mpf(sigma) ** 2
    below = mp.fsum(mp.exp(-mp.mpf(k * k) / two_s2) for k in range(k_max + 1, k_max + 400))
    total = 2 * below + mp.fsum(mp.exp(-mp.mpf(k * k) / two_s2) for k in range(-k_max, k_max + 1))

    def probit(p: Any) -> Any:  # Newton's method on log Phi, for p <= 1/2
        x = -mp.sqrt(-2 * mp.log(p)) if p < 0.1 else mp.mpf(0)
        for _ in range(100):
            step = (mp.log(mp.ncdf(x)) - mp.log(p)) * mp.ncdf(x) / mp.npdf(x)
            x -= step
            if abs(step) < mp.mpf(10) ** -50:
                break
        return x

    cdf, g = below, []
    for j in range(-k_max, 0):  # F(j) for j <= -1: all below 1/2
        cdf += mp.exp(-mp.mpf(j * j) / two_s2)
        g.append(probit(cdf / total))
    g.append(-g[-1])  # F(0) = 1 - F(-1), so Phi^-1(F(0)) = -Phi^-1(F(-1))
    return [b - a for a, b in itertools.pairwise(g)]


@pytest.mark.parametrize("sigma", [0.3, 0.5, 1.0, 2.0, 5.0, 13.0])
def test_widened_discrete_gaussian_is_dominated_by_the_continuous_one(sigma: float) -> None:
    """The discrete trade-off curve (vertices at integer thresholds) lies above G_(1/sigma)
    exactly when every probit step of its CDF is at most 1 / sigma (see dominated_sigma)."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    widened = _probit_steps(dominated_sigma(sigma), mp)
    assert max(widened) <= 1 / mp.mpf(sigma)
    # At equal sigma it is not dominated: every step exceeds 1 / sigma, the central one (the
    # largest) by a factor of about 1 + 1 / (24 sigma^2).
    plain = _probit_steps(sigma, mp)
    assert min(plain) > 1 / mp.mpf(sigma) and max(plain) == plain[-1]
    if sigma >= 2:
        assert float(plain[-1] * sigma - 1) == pytest.approx(1 / (24 * sigma**2), rel=0.05)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_discrete_gaussian_total_variation_exceeds_the_continuous_one(sigma: float) -> None:
    """delta at epsilon = 0: P[Y = 0] for the discrete Gaussian (Canonne, Kamath & Steinke 2020,
    Theorem 7) against 2 Phi(1 / (2 sigma)) - 1 for the continuous one (Balle & Wang 2018)."""

    def discrete_tv(s: float) -> float:
        return float(1 / np.exp(-(np.arange(-200, 201) ** 2) / (2 * s * s)).sum())

    continuous = 2 * norm.cdf(1 / (2 * sigma)) - 1
    assert discrete_tv(sigma) > continuous  # the continuous PLD does not dominate
    assert discrete_tv(dominated_sigma(sigma)) <= continuous  # the widened one does
