"""Exact counts: the sufficient statistics that count-based mechanisms noise, one frame at a time.

Every count-based release in privsynth has two halves:

1. **exact counts** of the rows (a histogram, category counts, the number of rows): a pure
   function of one frame whose result for a whole table is the *sum* of its results for any
   split of the rows into parts. That is what lets the counts be taken partition by partition
   on a Dask cluster (:mod:`privsynth_core.partitions`) and summed, with no process ever
   holding the table.
2. **the release**: noise added once, centrally, to the summed counts, by the mechanism code of
   :mod:`privsynth_core.privacy.noise` (and the post-processing after it). One machine or many,
   the release function is the same call on the same counts, so the privacy tests of one cover
   both.

This module is the first half: the DP domain's magnitude histogram, category counts and the
quantiles' grid counts (:mod:`privsynth_core.privacy.domain` releases them) and the ``independent``
generator's per-column histograms (:func:`column_histogram`, the bins and null bin that plugin
noises). Sensitivity under add/remove-one: each record adds exactly one count to each histogram
(its bin, or the null bin), so each vector here moves by at most 1 in L1 (and L2) norm; the
row count by exactly 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import numpy.typing as npt
import polars as pl

from ..schema import Column, ColumnKind

IntArray = npt.NDArray[np.int64]

#: L1 sensitivity of every count vector here under add/remove-one (one record, one count).
SENSITIVITY = 1

#: Candidates of each DP quantile: evenly spaced over the coarse range, both ends included, so a
#: bound is within 1/2048 of the range's width of where Smith's continuous mechanism would put it.
QUANTILE_GRID = 2049

_MAX_EXPONENT = 62  # bins up to ±2^63 cover every int64 and every sane float
_MIN_EXPONENT = -20


def magnitude_edges() -> npt.NDArray[np.float64]:
    """The fixed, data-independent sign-and-magnitude bin edges of the DP domain's coarse range:
    0 and ±[2^k, 2^(k+1)) for k from -20 to 62."""
    positive = [2.0**k for k in range(_MIN_EXPONENT, _MAX_EXPONENT + 2)]
    return np.array([-e for e in reversed(positive)] + [0.0] + positive)


def magnitude_counts(values: npt.ArrayLike) -> IntArray:
    """Exact counts of ``values`` (no NaN) per bin of :func:`magnitude_edges`; values beyond the
    outermost edges are counted in the outermost bins."""
    edges = magnitude_edges()
    clipped = np.clip(np.asarray(values, dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    return counts.astype(np.int64)


def category_counts(series: pl.Series) -> dict[str, int]:
    """Exact count of each distinct non-missing value of ``series`` (as text)."""
    present = series.drop_nulls()
    if present.len() == 0:
        return {}
    counts = present.cast(pl.String).value_counts()
    return {str(k): int(n) for k, n in counts.iter_rows()}


def add_category_counts(total: dict[str, int], part: Mapping[str, int]) -> dict[str, int]:
    """``total`` with ``part``'s counts added, key by key (returns ``total``)."""
    for key, n in part.items():
        total[key] = total.get(key, 0) + n
    return total


def numeric_values(series: pl.Series, kind: ColumnKind) -> npt.NDArray[np.float64]:
    """The non-missing values of a typed numeric or datetime column as floats (datetimes in
    seconds since the epoch): what the DP domain's numeric mechanisms read."""
    values = series.drop_nulls()
    if kind is ColumnKind.DATETIME:
        values = values.dt.epoch("us").cast(pl.Float64) / 1e6
    return np.asarray(values.cast(pl.Float64).to_numpy(), dtype=np.float64)


def grid_counts(values: npt.ArrayLike, candidates: npt.ArrayLike) -> IntArray:
    """Exact counts of ``values`` against sorted ``candidates``: what a DP quantile's scores
    need, as a vector that sums across partitions.

    Entry ``2 i`` counts the values equal to candidate ``i``; entry ``2 i + 1`` those strictly
    between candidates ``i`` and ``i + 1`` (``2 m - 1`` entries for ``m`` candidates). The
    values must lie within the candidates' span (the DP domain clips them to its coarse range
    first) and hold no NaN. Each value adds one count, so the vector moves by at most 1 in L1
    norm between neighbouring tables.
    """
    grid = np.asarray(candidates, dtype=np.float64)
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size and (data.min() < grid[0] or data.max() > grid[-1] or np.isnan(data).any()):
        raise ValueError("grid_counts takes values within the candidates' span, and no NaN")
    above = np.searchsorted(grid, data, side="left")  # first candidate >= the value
    exact = (above < grid.size) & (grid[np.minimum(above, grid.size - 1)] == data)
    cells = np.where(exact, 2 * above, 2 * above - 1)
    return np.bincount(cells, minlength=2 * grid.size - 1).astype(np.int64)


def histogram_bounds(column: Column) -> tuple[float, float]:
    """The numeric range a column's domain histogram spans: its bounds (datetimes in
    microseconds since the epoch, the unit of polars' ``Datetime("us")``)."""
    from ..validation import datetime_to_micros

    assert column.bounds is not None
    lower, upper = column.bounds
    if isinstance(lower, datetime) and isinstance(upper, datetime):
        return float(datetime_to_micros(lower)), float(datetime_to_micros(upper))
    return float(lower), float(upper)  # type: ignore[arg-type]


def column_histogram(series: pl.Series, column: Column, bins: int) -> IntArray:
    """Exact counts of a typed column per bin of its domain, then the null count.

    The bins of the ``independent`` generator: the categories in schema order, or
    ``[false, true]``, or ``bins`` equal-width bins between the bounds; the last entry counts
    the missing values (0 when there are none). Values outside the domain are not counted
    (conforming has already clamped them, or made them missing).
    """
    nulls = series.null_count()
    present = series.drop_nulls()
    if column.kind is ColumnKind.CATEGORICAL:
        assert column.categories is not None
        index = {c: i for i, c in enumerate(column.categories)}
        counts = np.zeros(len(index), dtype=np.int64)
        for value, n in present.value_counts().iter_rows():
            if value in index:
                counts[index[value]] += n
    elif column.kind is ColumnKind.BOOLEAN:
        counts = np.array([int((~present).sum()), int(present.sum())], dtype=np.int64)
    else:
        if column.kind is ColumnKind.DATETIME:
            values = present.dt.epoch("us").cast(pl.Float64).to_numpy()
        else:
            values = present.cast(pl.Float64).to_numpy()
        counts, _ = np.histogram(values, bins=bins, range=histogram_bounds(column))
    return np.append(counts, nulls).astype(np.int64)


__all__ = [
    "SENSITIVITY",
    "add_category_counts",
    "category_counts",
    "column_histogram",
    "grid_counts",
    "histogram_bounds",
    "magnitude_counts",
    "magnitude_edges",
    "numeric_values",
]
