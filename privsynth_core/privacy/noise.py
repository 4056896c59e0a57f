"""Noise for DP mechanisms: exact discrete samplers for counts, OS entropy for everything else.

Counts are integers, and the noise added to them is integer noise drawn by OpenDP's exact
samplers from a cryptographically secure source (Canonne, Kamath & Steinke 2020): the discrete
Laplace for pure epsilon-DP and the discrete Gaussian for zCDP. Their privacy is the same as the
continuous mechanisms' at the same scale (``1 / scale`` epsilon per unit of L1 sensitivity for the
discrete Laplace; ``1 / (2 sigma^2)`` rho per unit of L2 sensitivity for the discrete Gaussian),
and unlike numpy's floating-point samplers they are not open to the floating-point attacks of
Mironov (2012).

Selections are exact too: :func:`exponential_choice` (the exponential mechanism, as report-noisy-max
with Gumbel noise) and :func:`private_quantile` (Smith's quantile over a public grid of candidates)
run OpenDP's noisy max, which turns the scores into rationals and samples the noise exactly.

:func:`dominated_sigma` is for a discrete Gaussian that an accountant counts as a *continuous*
one (PLD, PRV, GDP): at equal sigma the discrete one is slightly *less* private, so it is widened
until the continuous mechanism dominates it.

What is left draws from :func:`os_rng`, numpy's PCG64 seeded from the operating system, never
from a user seed: DP-SGD's Gaussian noise on gradients (real-valued, so floating point). See
docs/privacy.md for what remains floating point and why.

OpenDP is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError

# OpenDP's vector samplers take a Python list; larger vectors are noised in chunks of this size
# (each count's noise is independent, so chunking changes nothing but memory).
_CHUNK = 1 << 16


def os_rng() -> np.random.Generator:
    """A numpy generator seeded with 128 bits from the OS: for mechanisms that are not counts."""
    return np.random.default_rng(secrets.randbits(128))


@lru_cache(maxsize=64)
def _measurement(kind: str, scale: float) -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    # 64-bit counts: OpenDP's default Python int is i32, which refuses counts past 2^31 - 1
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    if kind == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale=float(scale))
    return dp.m.make_gaussian(domain, dp.l2_distance(T="i64"), scale=float(scale))


def _noised(kind: str, counts: npt.ArrayLike, scale: float) -> npt.NDArray[np.int64]:
    if not (scale > 0 and np.isfinite(scale)):
        raise ConfigError(f"the noise scale must be a finite number > 0, got {scale}")
    values = np.asarray(counts)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(values)
        if not np.array_equal(rounded, values):
            raise ConfigError("discrete noise is added to integer counts only")
        values = rounded
    flat = values.astype(np.int64).ravel()
    measurement = _measurement(kind, scale)
    out = np.empty(flat.size, dtype=np.int64)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK].tolist()
        out[start : start + len(part)] = measurement(part)
    return out.reshape(values.shape)


def discrete_laplace(counts: npt.ArrayLike, *, scale: float) -> npt.NDArray[np.int64]:
    """``counts`` plus discrete Laplace noise of ``scale`` on every cell (exact, OpenDP).

    Epsilon is ``sensitivity_l1 / scale`` (see :func:`laplace_epsilon`).

    Raises:
        ConfigError: ``scale`` is not a finite positive number, or a count is not an integer.
    """
    return _noised("laplace", counts, scale)


def discrete_gaussian(counts: npt.ArrayLike, *, sigma: float) -> npt.NDArray[np.int64]:
    """``counts`` plus discrete Gaussian noise of ``sigma`` on every cell (exact, OpenDP).

    Rho (zCDP) is ``sensitivity_l2^2 / (2 sigma^2)`` (see :func:`gaussian_rho`).

    Raises:
        ConfigError: ``sigma`` is not a finite positive number, or a count is not an integer.
    """
    return _noised("gaussian", counts, sigma)


def laplace_epsilon(scale: float, *, sensitivity: int = 1) -> float:
    """Epsilon of the discrete Laplace of ``scale`` on counts of L1 ``sensitivity`` (OpenDP map)."""
    return float(_measurement("laplace", scale).map(sensitivity))


def gaussian_rho(sigma: float, *, sensitivity: int = 1) -> float:
    """Rho of the discrete Gaussian of ``sigma`` on counts of L2 ``sensitivity`` (OpenDP map)."""
    return float(_measurement("gaussian", sigma).map(sensitivity))


def dominated_sigma(sigma: float) -> float:
    """The discrete Gaussian's sigma whose privacy is within the continuous Gaussian's of ``sigma``.

    Returns ``sigma + 1 / (12 sigma)``, for counts whose every coordinate moves by at most 1.

    Why not ``sigma`` itself: Canonne, Kamath & Steinke (2020) give the discrete Gaussian the
    same Renyi divergences (hence zCDP) as the continuous one, and its exact (epsilon, delta)
    curve (their Theorem 7), but no dominance. There is none: at epsilon = 0 the discrete
    mechanism's delta (the total variation ``P[Y = 0] = 1 / sum_k exp(-k^2 / (2 sigma^2))``)
    exceeds the continuous one's (``2 Phi(1 / (2 sigma)) - 1``, Balle & Wang 2018) by a factor of
    about ``1 + 1 / (24 sigma^2)``, and deep in the tails by more. An accountant that composes the
    continuous privacy loss distribution (PLD, PRV) or its f-DP curve (GDP) would under-count.
    RDP and zCDP accounting are sound at equal sigma and need none of this.

    The test between the two noisy outputs ``Y`` and ``Y + 1`` is optimal at integer thresholds,
    so the discrete trade-off curve is the polygon through the points
    ``(1 - F(j), F(j - 1))`` (``F`` the discrete CDF), and it lies above the continuous curve
    ``G_mu`` (``mu = 1 / sigma``; convex, so checking the vertices is enough) exactly when every
    step ``Phi^-1(F(j)) - Phi^-1(F(j - 1))`` is at most ``mu``. Those steps all exceed
    ``1 / sigma_d`` and are largest at the centre, where the step is
    ``(1 + 1 / (24 sigma_d^2) + O(sigma_d^-4)) / sigma_d``; widening to
    ``sigma_d = sigma + 1 / (12 sigma)`` brings every step under ``1 / sigma`` (checked to 40
    sigma_d either side, in 60-digit arithmetic, by ``tests/core/test_noise.py``). By the
    composition theorem of f-DP (Dong, Roth & Su 2022), independent coordinates that each meet
    this give a vector release at least as private as the continuous Gaussian mechanism on it,
    under every accountant. The cost is a little more noise: 8% at sigma = 1, 0.05% at 13.

    Raises:
        ConfigError: ``sigma`` is not a finite positive number.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"the noise scale must be a finite number > 0, got {sigma}")
    return sigma + 1.0 / (12.0 * sigma)


def _float_vector() -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.vector_domain(dp.atom_domain(T=float, nan=False))


@lru_cache(maxsize=64)
def _noisy_max(scale: float) -> Any:
    import opendp.prelude as dp

    return dp.m.make_noisy_max(
        _float_vector(),
        dp.linf_distance(T=float, monotonic=False),
        dp.zero_concentrated_divergence(),
        scale=scale,
    )


def exponential_choice(scores: npt.ArrayLike, *, epsilon0: float, sensitivity: float) -> int:
    """The exponential mechanism: an index drawn with probability proportional to
    ``exp(epsilon0 * score / (2 * sensitivity))``, exactly (OpenDP's report-noisy-max).

    The scores may move by up to ``sensitivity`` each, in any direction, between neighbouring
    tables. The choice is ``epsilon0``-DP and, by its bounded range, ``epsilon0^2 / 8``-zCDP
    (Cesar & Rogers 2021): OpenDP's Gumbel noise of scale ``2 sensitivity / epsilon0`` is that
    mechanism, and its privacy map is checked to give no more than ``epsilon0^2 / 8``.

    Raises:
        ConfigError: no scores, a NaN score, or ``epsilon0`` / ``sensitivity`` not finite and > 0.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or np.isnan(values).any():
        raise ConfigError("the exponential mechanism needs at least one score, and no NaN")
    if not (epsilon0 > 0 and sensitivity > 0 and math.isfinite(epsilon0 * sensitivity)):
        raise ConfigError(
            f"epsilon0 and sensitivity must be finite and > 0, got {epsilon0}, {sensitivity}"
        )
    rho = epsilon0**2 / 8.0
    scale = _widened(
        2.0 * sensitivity / epsilon0, lambda s: float(_noisy_max(s).map(float(sensitivity))) <= rho
    )
    return int(_noisy_max(scale)(values.tolist()))


def private_quantile(
    values: npt.ArrayLike, alpha: float, *, candidates: npt.ArrayLike, epsilon: float
) -> float:
    """The epsilon-DP ``alpha``-quantile of ``values`` among sorted public ``candidates``.

    OpenDP's quantile (Smith 2011's utility, minus the distance of a candidate's rank from
    ``alpha n``, selected by exact report-noisy-max), under add/remove-one neighbours with the
    table's size unknown. The noise scale is the smallest OpenDP accepts for ``epsilon``.

    Raises:
        ConfigError: ``epsilon`` not finite and > 0, candidates not strictly increasing, or a
            NaN value.
    """
    import opendp.prelude as dp

    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a finite number > 0, got {epsilon}")
    grid = np.asarray(candidates, dtype=np.float64).ravel()
    if grid.size == 0 or (np.diff(grid) <= 0).any():
        raise ConfigError("the quantile's candidates must be strictly increasing")
    data = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(data).any():
        raise ConfigError("a DP quantile cannot take NaN values; drop them first")

    built: dict[float, Any] = {}

    def quantile(scale: float) -> Any:
        if scale not in built:  # each build copies the candidates into OpenDP
            built[scale] = dp.m.make_private_quantile(
                _float_vector(),
                dp.symmetric_distance(),
                dp.max_divergence(),
                candidates=grid.tolist(),
                alpha=float(alpha),
                scale=scale,
            )
        return built[scale]

    # epsilon is proportional to 1 / scale: solve at scale 1
    scale = _widened(
        float(quantile(1.0).map(1)) / epsilon, lambda s: float(quantile(s).map(1)) <= epsilon
    )
    return float(quantile(scale)(data.tolist()))


def _widened(scale: float, fits: Callable[[float], bool]) -> float:
    """``scale``, or a hair more: OpenDP rounds its privacy maps up, so the exact scale for a
    target can map a few ulps above it."""
    for _ in range(64):
        if fits(scale):
            return scale
        scale *= 1 + 1e-12
    raise RuntimeError(f"OpenDP's privacy map does not fall with the noise scale ({scale})")


__all__ = [
    "discrete_gaussian",
    "discrete_laplace",
    "dominated_sigma",
    "exponential_choice",
    "gaussian_rho",
    "laplace_epsilon",
    "os_rng",
    "private_quantile",
]
