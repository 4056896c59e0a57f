"""The zCDP -> (epsilon, delta) conversion against published bounds and the exact Gaussian curve.

A Gaussian mechanism with L2 sensitivity 1 and noise sigma is exactly rho = 1/(2 sigma^2)-zCDP,
and its exact (epsilon, delta) curve is known in closed form (Balle & Wang 2018, Theorem 8). A
sound conversion can never claim less epsilon than that curve, and a tight one stays close.
"""

from __future__ import annotations

import math

import pytest
from privsynth_marginal.zcdp import (
    ZCDPBudget,
    delta_for,
    epsilon_for,
    exponential_rho,
    gaussian_rho,
    rho_for,
)
from scipy.stats import norm

from privsynth_core.privacy import noise


def exact_gaussian_delta(sigma: float, epsilon: float) -> float:
    """Balle & Wang (2018), Theorem 8, sensitivity 1."""
    return float(
        norm.cdf(1 / (2 * sigma) - epsilon * sigma)
        - math.exp(epsilon) * norm.cdf(-1 / (2 * sigma) - epsilon * sigma)
    )


def exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if exact_gaussian_delta(sigma, mid) <= delta else (mid, hi)
    return hi


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 10.0, 30.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-9])
def test_conversion_is_sound_and_tight_on_the_gaussian_mechanism(
    sigma: float, delta: float
) -> None:
    exact = exact_gaussian_epsilon(sigma, delta)
    converted = epsilon_for(gaussian_rho(sigma), delta)
    assert converted >= exact  # never claims more privacy than the mechanism has
    assert converted <= 1.3 * exact  # and gives little away


# up to the rho of an epsilon of 1e6 (a "no privacy" budget a benchmark sets): no overflow,
# and the minimising order alpha, which nears 1 there, is still found
@pytest.mark.parametrize("rho", [1e-4, 0.01, 0.0306, 0.5, 2.0, 10.0, 1e3, 1e6])
@pytest.mark.parametrize("delta", [1e-3, 1e-5, 1e-10])
def test_never_worse_than_the_classic_bun_steinke_bound(rho: float, delta: float) -> None:
    classic = rho + 2 * math.sqrt(rho * math.log(1 / delta))  # Bun & Steinke 2016, Prop. 1.3
    assert epsilon_for(rho, delta) <= classic
    assert delta_for(rho, epsilon_for(rho, delta)) <= delta * (1 + 1e-9)


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 3.0, 10.0, 1e3, 1e6])
def test_rho_for_is_the_largest_rho_within_the_target(epsilon: float) -> None:
    rho = rho_for(epsilon, 1e-5)
    assert epsilon_for(rho, 1e-5) <= epsilon
    assert epsilon_for(rho * 1.001, 1e-5) > epsilon


def test_delta_falls_as_epsilon_grows() -> None:
    deltas = [delta_for(0.1, e) for e in (0.5, 1.0, 2.0, 4.0)]
    assert deltas == sorted(deltas, reverse=True) and deltas[-1] < 1e-6
    assert delta_for(0.0, 1.0) == 0.0


def test_mechanism_costs() -> None:
    assert gaussian_rho(10.0) == pytest.approx(0.005)
    assert exponential_rho(0.2) == pytest.approx(0.005)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 3.0, 41.0, 1e4])
def test_gaussian_cost_is_opendps_privacy_map_of_the_discrete_gaussian(sigma: float) -> None:
    # the measurements draw OpenDP's discrete Gaussian; the plan charges 1 / (2 sigma^2) for it
    assert gaussian_rho(sigma) == pytest.approx(noise.gaussian_rho(sigma), rel=1e-12)


@pytest.mark.parametrize(("epsilon0", "sensitivity"), [(0.1, 1.0), (1.0, 1.0), (2.0, 3.5)])
def test_selection_cost_bounds_opendps_privacy_map(epsilon0: float, sensitivity: float) -> None:
    # OpenDP's Gumbel noisy max at the scale the mechanism uses maps to epsilon0^2 / 8 at most
    import opendp.prelude as dp

    dp.enable_features("contrib")
    noisy_max = dp.m.make_noisy_max(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.linf_distance(T=float, monotonic=False),
        dp.zero_concentrated_divergence(),
        scale=2 * sensitivity / epsilon0,
    )
    assert noisy_max.map(sensitivity) == pytest.approx(exponential_rho(epsilon0), rel=1e-9)


def test_budget_refuses_to_overspend() -> None:
    budget = ZCDPBudget(1.0)
    budget.spend("a", 0.6)
    with pytest.raises(RuntimeError, match="would spend"):
        budget.spend("b", 0.5)
    assert budget.spent == pytest.approx(0.6) and budget.remaining == pytest.approx(0.4)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="delta"):
        epsilon_for(0.1, 0.0)
    with pytest.raises(ValueError):
        rho_for(0.0, 1e-5)
