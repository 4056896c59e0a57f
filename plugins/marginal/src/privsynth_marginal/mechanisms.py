"""The two DP primitives MST and AIM are built from, on integer-coded tables.

Neighbouring tables differ by adding or removing one record (as everywhere in privsynth), so a
marginal's count vector has L2 (and L1) sensitivity 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def marginal_counts(codes: np.ndarray, sizes: Sequence[int], clique: Sequence[int]) -> np.ndarray:
    """Exact counts of the marginal on columns ``clique`` (flattened, C order)."""
    shape = [sizes[i] for i in clique]
    if codes.shape[0] == 0:
        return np.zeros(int(np.prod(shape)))
    flat = np.ravel_multi_index(tuple(codes[:, i] for i in clique), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).astype(np.float64)


def gaussian_measure(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The Gaussian mechanism: ``counts`` plus N(0, sigma^2) noise on every cell."""
    return counts + rng.normal(0.0, sigma, size=counts.shape)


def exponential_mechanism(
    qualities: np.ndarray, epsilon0: float, sensitivity: float, rng: np.random.Generator
) -> int:
    """Index drawn with probability proportional to ``exp(epsilon0 q / (2 sensitivity))``.

    ``epsilon0``-DP, and ``epsilon0^2 / 8``-zCDP by its bounded range (Cesar & Rogers 2021).
    """
    if qualities.size == 0:
        raise ValueError("the exponential mechanism needs at least one candidate")
    scores = 0.5 * epsilon0 / sensitivity * (qualities - qualities.max())
    weights = np.exp(scores)
    return int(rng.choice(qualities.size, p=weights / weights.sum()))
