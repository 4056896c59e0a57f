"""Noise for DP mechanisms: exact discrete samplers for counts, OS entropy for everything else.

Counts are integers, and the noise added to them is integer noise drawn by OpenDP's exact
samplers from a cryptographically secure source (Canonne, Kamath & Steinke 2020): the discrete
Laplace for pure epsilon-DP and the discrete Gaussian for zCDP. Their privacy is the same as the
continuous mechanisms' at the same scale (``1 / scale`` epsilon per unit of L1 sensitivity for the
discrete Laplace; ``1 / (2 sigma^2)`` rho per unit of L2 sensitivity for the discrete Gaussian),
and unlike numpy's floating-point samplers they are not open to the floating-point attacks of
Mironov (2012).

Mechanisms whose output is not a count (exponential-mechanism choices, DP-SGD's Gaussian noise on
gradients) draw from :func:`os_rng`: numpy's PCG64 seeded from the operating system, never from a
user seed. See docs/privacy.md for what remains floating point and why.

OpenDP is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import secrets
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


def _measurement(kind: str, scale: float) -> Any:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    domain = dp.vector_domain(dp.atom_domain(T=int))
    if kind == "laplace":
        return dp.m.make_laplace(domain, dp.l1_distance(T=int), scale=float(scale))
    return dp.m.make_gaussian(domain, dp.l2_distance(T=int), scale=float(scale))


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
        part = flat[start:start + _CHUNK].tolist()
        out[start:start + len(part)] = measurement(part)
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


__all__ = ["discrete_gaussian", "discrete_laplace", "gaussian_rho", "laplace_epsilon", "os_rng"]
