"""The two DP primitives MST and AIM are built from, on integer-coded tables.

Neighbouring tables differ by adding or removing one record (as everywhere in privsynth), so a
marginal's count vector has L2 (and L1) sensitivity 1.

Both draw from OpenDP's exact samplers and a cryptographic source, never from a seed: the
measurements add discrete Gaussian noise to integer counts (Canonne, Kamath & Steinke 2020: the
same zCDP, ``1 / (2 sigma^2)``, as the continuous Gaussian), and the selections run the
exponential mechanism as report-noisy-max with exactly sampled Gumbel noise (its bounded-range
zCDP, ``epsilon0^2 / 8``, is OpenDP's own privacy map). Neither is open to the floating-point
attacks of Mironov (2012). Everything here is zCDP, so no dominance by a continuous privacy loss
distribution is needed (contrast DP-CTGAN's marginals).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from privsynth_core.privacy.noise import discrete_gaussian, exponential_choice


def marginal_counts(codes: np.ndarray, sizes: Sequence[int], clique: Sequence[int]) -> np.ndarray:
    """Exact counts (int64) of the marginal on columns ``clique`` (flattened, C order)."""
    shape = [sizes[i] for i in clique]
    if codes.shape[0] == 0:
        return np.zeros(int(np.prod(shape)), dtype=np.int64)
    flat = np.ravel_multi_index(tuple(codes[:, i] for i in clique), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).astype(np.int64)


def gaussian_measure(counts: np.ndarray, sigma: float) -> np.ndarray:
    """The Gaussian mechanism: integer ``counts`` plus exact discrete Gaussian noise of scale
    ``sigma`` on every cell (int64; ``1 / (2 sigma^2)``-zCDP at sensitivity 1)."""
    return discrete_gaussian(counts, sigma=sigma)


def exponential_mechanism(qualities: np.ndarray, epsilon0: float, sensitivity: float) -> int:
    """Index drawn with probability proportional to ``exp(epsilon0 q / (2 sensitivity))``.

    ``epsilon0``-DP, and ``epsilon0^2 / 8``-zCDP by its bounded range (Cesar & Rogers 2021).

    Raises:
        ValueError: no candidates.
    """
    if qualities.size == 0:
        raise ValueError("the exponential mechanism needs at least one candidate")
    return exponential_choice(qualities, epsilon0=epsilon0, sensitivity=sensitivity)
