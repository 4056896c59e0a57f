"""Shared plumbing of the metric plugins: typed polars frames -> numpy arrays.

Every metric compares frames column by column in the same way, so the encodings live here:

- numeric columns (continuous, integer, datetime as epoch seconds) become float arrays, with NaN
  for a missing value;
- categorical and boolean columns become integer codes over the union of the schema's categories
  and every value seen in any of the frames compared, so a category the real data never had (an
  "unseen" one) gets a code of its own instead of breaking a look-up; a missing value is the
  category ``(missing)``.

numpy is imported here at module level (it is cheap and already loaded by polars); sklearn and
scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import polars as pl

from privsynth_core.errors import MetricError
from privsynth_core.schema import ColumnKind, Schema

MISSING = "(missing)"
THREADS_ENV = "PRIVSYNTH_METRIC_THREADS"
F = TypeVar("F", bound=Callable[..., Any])


def limit_threads(func: F) -> F:
    """Run ``func`` with OpenMP/BLAS pools capped at ``$PRIVSYNTH_METRIC_THREADS`` (default 1).

    Measured on a busy 2-core box: a full 10k-vs-10k evaluation took 106-165 s with the
    libraries' default threads (gradient boosting's OpenMP threads wait on each other when the
    cores are shared) and 27-30 s with one thread. The models here are small: one thread is fast.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=max(int(os.environ.get(THREADS_ENV, "1") or 1), 1)):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def is_numeric_kind(kind: ColumnKind) -> bool:
    """Continuous, integer and datetime columns are compared as numbers."""
    return kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME)


def check_frames(schema: Schema, **frames: pl.DataFrame | None) -> None:
    """Refuse frames that lack a schema column or have no rows.

    Raises:
        MetricError: naming the table and the columns missing.
    """
    for label, frame in frames.items():
        if frame is None:
            continue
        missing = [n for n in schema.names if n not in frame.columns]
        if missing:
            raise MetricError(
                f"the {label} table lacks column(s) {', '.join(missing)}; every table compared "
                f"must have the schema's columns"
            )
        if frame.height == 0:
            raise MetricError(f"the {label} table has no rows; nothing to compare")


def sample_rows(frame: pl.DataFrame, n: int, seed: int) -> tuple[pl.DataFrame, bool]:
    """At most ``n`` rows of ``frame`` (a seeded sample); and whether it was sampled."""
    if frame.height <= n:
        return frame, False
    return frame.sample(n=n, seed=seed, shuffle=True), True


def numeric_values(series: pl.Series) -> np.ndarray:
    """A float64 array of a numeric or datetime column, NaN for nulls."""
    if series.dtype == pl.Date or isinstance(series.dtype, pl.Datetime):
        series = series.cast(pl.Datetime("us")).dt.timestamp("us").cast(pl.Float64) / 1e6
    return series.cast(pl.Float64, strict=False).fill_null(float("nan")).to_numpy()


@dataclass
class Encoded:
    """Several frames encoded the same way (the first is the reference: the real data).

    Attributes:
        numeric: names of the numeric columns.
        categorical: names of the categorical (and boolean) columns.
        labels: per categorical column, the label of each code.
        tables: per frame, column name -> float array (numeric) or int array (codes).
    """

    numeric: list[str]
    categorical: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)
    tables: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """All encoded columns, numeric first."""
        return self.numeric + self.categorical


def encode(schema: Schema, frames: list[pl.DataFrame], columns: list[str] | None = None) -> Encoded:
    """Encode ``frames`` (typed to ``schema``) into aligned numpy arrays."""
    names = columns if columns is not None else schema.names
    numeric = [n for n in names if is_numeric_kind(schema.column(n).kind)]
    categorical = [n for n in names if n not in numeric]
    enc = Encoded(numeric, categorical, tables=[{} for _ in frames])
    for name in numeric:
        for table, frame in zip(enc.tables, frames, strict=True):
            table[name] = numeric_values(frame[name])
    for name in categorical:
        parts = [_as_text(frame[name]) for frame in frames]
        declared = schema.column(name).categories or ()
        seen = pl.concat([p.drop_nulls().unique() for p in parts]).unique().to_list()
        labels = sorted(set(declared) | set(seen))
        if any(p.null_count() for p in parts):
            labels.append(MISSING)
        mapping = {label: code for code, label in enumerate(labels)}
        missing_code = mapping.get(MISSING, -1)
        for table, part in zip(enc.tables, parts, strict=True):
            codes = part.replace_strict(mapping, default=missing_code, return_dtype=pl.Int64)
            table[name] = codes.fill_null(missing_code).to_numpy()
        enc.labels[name] = labels
    return enc


def _as_text(series: pl.Series) -> pl.Series:
    if series.dtype == pl.Boolean:
        return series.cast(pl.String).str.to_lowercase()
    return series.cast(pl.String)


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges of ``n_bins`` quantile bins of ``values`` (ties merged, NaN ignored)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([])
    return np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]))


def bin_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each value (``len(edges) + 1`` bins); NaN gets the extra code after them."""
    codes = np.searchsorted(edges, values, side="right")
    codes[~np.isfinite(values)] = len(edges) + 1
    return codes


def discretise(
    enc: Encoded, n_bins: int = 10
) -> tuple[list[dict[str, np.ndarray]], dict[str, int]]:
    """Every column as small integer codes: numerics in ``n_bins`` quantile bins of the first
    frame (the real data); returns the codes per frame and the number of codes per column."""
    out: list[dict[str, np.ndarray]] = [{} for _ in enc.tables]
    sizes: dict[str, int] = {}
    for name in enc.numeric:
        edges = quantile_edges(enc.tables[0][name], n_bins)
        for dst, src in zip(out, enc.tables, strict=True):
            dst[name] = bin_codes(src[name], edges)
        sizes[name] = len(edges) + 2
    for name in enc.categorical:
        for dst, src in zip(out, enc.tables, strict=True):
            dst[name] = src[name]
        sizes[name] = len(enc.labels[name])
    return out, sizes


def distribution(codes: np.ndarray, size: int) -> np.ndarray:
    """Relative frequencies of ``codes`` over ``size`` cells."""
    counts = np.bincount(codes, minlength=size).astype(float)
    return counts / max(codes.size, 1)


def ordinal_matrix(enc: Encoded, index: int) -> np.ndarray:
    """Frame ``index`` as a float matrix for tree models: numerics (NaN kept), then codes."""
    table = enc.tables[index]
    cols = [table[n].astype(float) for n in enc.numeric] + [
        table[n].astype(float) for n in enc.categorical
    ]
    n_rows = len(next(iter(table.values()))) if table else 0
    return np.column_stack(cols) if cols else np.empty((n_rows, 0))


def categorical_mask(enc: Encoded, max_levels: int = 250) -> np.ndarray:
    """Which columns of :func:`ordinal_matrix` a gradient-boosting model may treat as
    categorical (its native support takes at most ``max_levels`` categories)."""
    return np.array(
        [False] * len(enc.numeric) + [len(enc.labels[n]) <= max_levels for n in enc.categorical],
        dtype=bool,
    )


def onehot_matrices(
    enc: Encoded,
    fit_index: int = 0,
    *,
    scale: str = "standard",
    max_levels: int = 50,
    exclude: tuple[str, ...] = (),
) -> list[np.ndarray]:
    """Every frame as a dense numeric matrix, with the transform fitted on frame ``fit_index``.

    Numerics are centred and scaled (``"standard"``: median and standard deviation, for linear
    models; ``"range"``: 1st-99th percentile range, for mixed-type distances), a missing value
    becomes 0 plus a 0/1 indicator column. Categoricals are one-hot over the ``max_levels`` most
    frequent codes of the fitting frame plus one "other" column; with ``"range"`` a one-hot block
    is scaled by 1/sqrt(2), so two different categories lie at distance 1, like two numbers a
    whole range apart.
    """
    fit = enc.tables[fit_index]
    blocks: list[list[np.ndarray]] = [[] for _ in enc.tables]
    for name in enc.numeric:
        if name in exclude:
            continue
        ref = fit[name][np.isfinite(fit[name])]
        if ref.size == 0:
            continue
        if scale == "range":
            low, high = np.quantile(ref, [0.01, 0.99])
            centre, width = low, (high - low) or (np.ptp(ref) or 1.0)
        else:
            centre, width = float(np.median(ref)), float(np.std(ref)) or 1.0
        has_nan = any(not np.isfinite(t[name]).all() for t in enc.tables)
        for out, table in zip(blocks, enc.tables, strict=True):
            col = (table[name] - centre) / width
            nan = ~np.isfinite(col)
            out.append(np.where(nan, 0.0, col))
            if has_nan:
                out.append(nan.astype(float))
    factor = 1 / np.sqrt(2) if scale == "range" else 1.0
    for name in enc.categorical:
        if name in exclude:
            continue
        counts = np.bincount(fit[name], minlength=len(enc.labels[name]))
        keep = np.argsort(-counts, kind="stable")[:max_levels]
        keep = keep[counts[keep] > 0]
        lookup = np.full(len(enc.labels[name]), len(keep))
        lookup[keep] = np.arange(len(keep))
        for out, table in zip(blocks, enc.tables, strict=True):
            onehot = np.zeros((len(table[name]), len(keep) + 1))
            onehot[np.arange(len(table[name])), lookup[table[name]]] = factor
            out.append(onehot)
    return [
        np.column_stack(b) if b else np.zeros((len(next(iter(t.values()))), 1))
        for b, t in zip(blocks, enc.tables, strict=True)
    ]


def row_keys(frame: pl.DataFrame, columns: list[str]) -> pl.Series:
    """One hash per row over ``columns`` (null-aware; equal rows get equal keys)."""
    return frame.select(pl.col(c).cast(pl.String) for c in columns).hash_rows(seed=7)


def trainable(x: np.ndarray) -> np.ndarray:
    """``x`` with all-missing columns set to 0: scikit-learn's histogram binning fails on a
    column with no value at all (e.g. a synthetic column the generator left empty)."""
    empty = ~np.isfinite(x).any(axis=0) if x.size else np.zeros(x.shape[1], dtype=bool)
    if not empty.any():
        return x
    x = x.copy()
    x[:, empty] = 0.0
    return x
