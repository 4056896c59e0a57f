"""Zero-concentrated DP (zCDP) bookkeeping and its conversion to (epsilon, delta).

MST and AIM are analysed in rho-zCDP (Bun & Steinke 2016): a Gaussian measurement of a histogram
(L2 sensitivity 1 under add/remove-one-record) with noise ``sigma`` costs ``1 / (2 sigma^2)``;
an exponential-mechanism selection with parameter ``epsilon0`` costs ``epsilon0^2 / 8``
(bounded-range analysis, Cesar & Rogers 2021); costs add up. The privacy ledger keeps
(epsilon, delta), so the total rho is converted with the conversion of Canonne, Kamath &
Steinke 2020 ("The Discrete Gaussian for Differential Privacy", Proposition 12 / Corollary 13):

    delta(epsilon) = inf_{alpha > 1}
        exp((alpha - 1)(alpha rho - epsilon)) / (alpha - 1) * (1 - 1/alpha)^alpha

which is never worse than the classic ``epsilon = rho + 2 sqrt(rho ln(1/delta))`` (Bun & Steinke
2016, Proposition 1.3). :func:`rho_for` inverts it: the largest rho whose conversion stays within
the target (epsilon, delta).
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Bisection steps: 100 pin alpha to machine precision; 64 halvings of the outer brackets leave
# them below 1e-18 of their width.
_ALPHA_STEPS = 100
_OUTER_STEPS = 64


#: AIM's split of rho: this share to measurements, the rest to selections (McKenna et al. 2022).
AIM_MEASUREMENT_SHARE = 0.9


def delta_for(rho: float, epsilon: float) -> float:
    """The smallest delta for which rho-zCDP implies (epsilon, delta)-DP (CKS 2020, Cor. 13)."""
    if rho < 0 or epsilon < 0:
        raise ValueError(f"rho and epsilon must be >= 0, got rho={rho}, epsilon={epsilon}")
    if rho == 0:
        return 0.0
    # The exponent is convex in alpha: bisect on its derivative,
    # (2 alpha - 1) rho - epsilon + log(1 - 1/alpha), for the minimising alpha.
    # alpha > 1 strictly; the minimiser nears 1 as rho grows past epsilon (a bracket starting
    # at 1.01 missed it for huge rho and answered a needlessly large delta)
    lo, hi = 1.0 + 1e-9, (epsilon + 1) / (2 * rho) + 2
    for _ in range(_ALPHA_STEPS):
        alpha = (lo + hi) / 2
        derivative = (2 * alpha - 1) * rho - epsilon + math.log1p(-1.0 / alpha)
        if derivative < 0:
            lo = alpha
        else:
            hi = alpha
    alpha = (lo + hi) / 2
    log_delta = (
        (alpha - 1) * (alpha * rho - epsilon)
        + alpha * math.log1p(-1.0 / alpha)
        - math.log(alpha - 1.0)
    )
    # a delta of 1 or more says nothing: exp() of a large exponent (a huge rho against a small
    # epsilon, as the bisections of an epsilon of 1e6 try) would overflow
    return 1.0 if log_delta >= 0 else math.exp(log_delta)


def epsilon_for(rho: float, delta: float) -> float:
    """The smallest epsilon for which rho-zCDP implies (epsilon, delta)-DP."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rho == 0:
        return 0.0
    classic = rho + 2 * math.sqrt(rho * math.log(1 / delta))  # always enough
    # delta_for falls as epsilon grows: the smallest epsilon that passes
    return _boundary(lambda eps: delta_for(rho, eps) <= delta, 0.0, classic, passes_above=True)


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose conversion gives at most (epsilon, delta)."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError(f"need epsilon > 0 and 0 < delta < 1, got ({epsilon}, {delta})")
    # epsilon_for grows with rho: the largest rho that passes
    return _boundary(
        lambda rho: epsilon_for(rho, delta) <= epsilon, 0.0, epsilon + 1.0, passes_above=False
    )


def _boundary(
    passes: Callable[[float], bool], lo: float, hi: float, *, passes_above: bool
) -> float:
    """Bisect a monotone test on ``[lo, hi]``; returns the end of the final bracket that
    passes (so the answer is always on the safe side)."""
    for _ in range(_OUTER_STEPS):
        mid = (lo + hi) / 2
        if passes(mid) == passes_above:
            hi = mid
        else:
            lo = mid
    return hi if passes_above else lo


def gaussian_rho(sigma: float) -> float:
    """zCDP cost of one Gaussian measurement of a histogram (L2 sensitivity 1) with ``sigma``.

    The same for the discrete Gaussian the measurements draw (Canonne, Kamath & Steinke 2020);
    it agrees with OpenDP's privacy map, :func:`privsynth_core.privacy.noise.gaussian_rho`.
    """
    return 1.0 / (2.0 * sigma**2)


def exponential_rho(epsilon0: float) -> float:
    """zCDP cost of one exponential-mechanism selection with parameter ``epsilon0``."""
    return epsilon0**2 / 8.0


class ZCDPBudget:
    """Spends a total rho mechanism by mechanism and refuses to go past it.

    Args:
        rho: the total.
    """

    def __init__(self, rho: float) -> None:
        self.total = rho
        self.spent = 0.0
        self.log: list[tuple[str, float]] = []
        #: rho spent by kind of mechanism (what the fit summary states)
        self.by_kind: dict[str, float] = {}

    @property
    def remaining(self) -> float:
        """Rho not yet spent."""
        return max(self.total - self.spent, 0.0)

    def spend(self, what: str, rho: float, *, kind: str = "other") -> None:
        """Record ``rho`` spent on ``what`` (of kind ``kind``, e.g. ``"selections"``); refuses
        (a bug) to pass the total."""
        if self.spent + rho > self.total:
            raise RuntimeError(
                f"zCDP plan error: {what} would spend rho={rho:.6g} with only "
                f"{self.remaining:.6g} left; this is a bug in privsynth-marginal"
            )
        self.spent += rho
        self.log.append((what, rho))
        self.by_kind[kind] = self.by_kind.get(kind, 0.0) + rho
