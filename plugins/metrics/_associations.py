"""Association between two columns of any kinds, for the correlation metric and heatmaps.

Pearson correlation for two numeric columns, Cramér's V for two categorical ones, and the
correlation ratio (eta) for a numeric-categorical pair; each ignores rows where a numeric value
is missing (a missing category is a category of its own).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np


def association_matrix(
    codes: dict[str, np.ndarray], enc_numeric: list[str], sizes: dict[str, int], columns: list[str]
) -> np.ndarray:
    """Pairwise association of ``columns``: Pearson (numeric pairs), Cramér's V (categorical
    pairs), correlation ratio (mixed pairs); the diagonal is 1."""
    n_cols = len(columns)
    out = np.eye(n_cols)
    for i, j in combinations(range(n_cols), 2):
        a, b = columns[i], columns[j]
        a_num, b_num = a in enc_numeric, b in enc_numeric
        if a_num and b_num:
            value = _pearson(codes[a], codes[b])
        elif not a_num and not b_num:
            value = _cramers_v(codes[a], codes[b], sizes[a], sizes[b])
        else:
            num, cat = (a, b) if a_num else (b, a)
            value = _correlation_ratio(codes[cat], codes[num], sizes[cat])
        out[i, j] = out[j, i] = value
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return 0.0
    x, y = x[ok], y[ok]
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def _cramers_v(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> float:
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    r, c = table.shape
    if min(r, c) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / n / (min(r, c) - 1)))


def _correlation_ratio(cat: np.ndarray, num: np.ndarray, k: int) -> float:
    ok = np.isfinite(num)
    cat, num = cat[ok], num[ok]
    if num.size < 3:
        return 0.0
    total = float(((num - num.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    counts = np.bincount(cat, minlength=k)
    sums = np.bincount(cat, weights=num, minlength=k)
    seen = counts > 0
    between = float((sums[seen] ** 2 / counts[seen]).sum() - num.sum() ** 2 / num.size)
    return float(np.sqrt(max(between, 0.0) / total))
