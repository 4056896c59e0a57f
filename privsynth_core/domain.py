"""Learning a table's domain with differential privacy, and preparing a table for a run.

DESIGN §4.1: the domain (numeric bounds, category lists) is a privacy input. Either it is declared
public, or it is learned here with DP mechanisms whose cost is charged to the ledger:

- **Numeric and datetime bounds**: two stages, each epsilon/2 of the column's share.
  1. A coarse range from a Laplace-noised histogram over a fixed, data-independent partition of
     the real line into sign-and-magnitude bins (0, ±[2^k, 2^(k+1))). Each record falls into one
     bin, so the histogram has L1 sensitivity 1 and the noisy counts are epsilon-DP; picking the
     outermost bins whose noisy count clears a threshold is post-processing. It needs a few dozen
     records in a bin at epsilon around 1: tiny tables should declare their bounds.
  2. The lower and upper bounds are DP quantiles (default 1% and 99%) by the exponential
     mechanism of Smith (2011) over values clamped to that range (utility ``-|rank - q n|``,
     sensitivity 1), each with half of the remaining epsilon. The bounds are therefore *not* the
     data's min and max: a lone outlier does not move them, and values beyond are clamped.
- **Categories**: a Laplace-noised count per distinct value, released only when it clears the
  threshold ``1 + ln(1 / (2 delta)) / epsilon`` (stability-based histogram, Korolova et al. 2009;
  Wilson et al. 2020). Comparing a noisy count with a fixed threshold is the same as comparing the
  true count with a noisy one. Releasing a *data-dependent* set of keys is (epsilon, delta)-DP, not
  pure DP: the delta is the chance a value held by one person gets through. A rare category is
  dropped most of the time; its rows become missing for that column.
- Column names and kinds are public metadata. Nullability is not read from the data: in DP mode
  every column is nullable and the generator learns the null rate under its own guarantee.

Limitations an auditor should know: noise is drawn with numpy's PCG64 in floating point, which is
not hardened against the floating-point attacks of Mironov (2012); the table's row count is
treated as public, as DP-SGD accounting does.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from .errors import BudgetExceededError, DomainError, SchemaError
from .ledger import PrivacyLedger
from .schema import Column, ColumnKind, Schema
from .table import Table, fingerprint_frame, read_frame
from .validation import cast_column

DEFAULT_QUANTILES = (0.01, 0.99)
_MAX_EXPONENT = 62  # bins up to ±2^63 cover every int64 and every sane float
_MIN_EXPONENT = -20


def _magnitude_edges() -> np.ndarray:
    positive = [2.0**k for k in range(_MIN_EXPONENT, _MAX_EXPONENT + 2)]
    return np.array([-e for e in reversed(positive)] + [0.0] + positive)


def dp_coarse_range(
    values: np.ndarray, *, epsilon: float, rng: np.random.Generator
) -> tuple[float, float]:
    """An epsilon-DP range that holds most of ``values``, from a noisy magnitude histogram.

    Returns the outer edges of the outermost bins whose noisy count clears
    ``ln(50 * n_bins) / epsilon``, a threshold at which the chance that *any* empty bin clears
    it is about 1%; ``(-1, 1)`` when none does. Bins with fewer records than that (outliers)
    are left out of the range, which is the point.
    """
    edges = _magnitude_edges()
    clipped = np.clip(values, edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    noisy = counts + rng.laplace(scale=1.0 / epsilon, size=counts.shape)
    keep = np.flatnonzero(noisy > math.log(50 * counts.size) / epsilon)
    if keep.size == 0:
        return -1.0, 1.0
    return float(edges[keep[0]]), float(edges[keep[-1] + 1])


def dp_quantile(
    values: np.ndarray,
    q: float,
    *,
    lower: float,
    upper: float,
    epsilon: float,
    rng: np.random.Generator,
) -> float:
    """The epsilon-DP ``q``-quantile of ``values`` within [lower, upper] (Smith 2011).

    The interval between consecutive sorted (clamped) values is chosen with probability
    proportional to its length times ``exp(-epsilon |rank - q n| / 2)``, then a point uniformly
    inside it.
    """
    if not 0 <= q <= 1:
        raise DomainError(f"quantile must be in [0, 1], got {q}")
    if not upper > lower:
        return lower
    points = np.concatenate([[lower], np.sort(np.clip(values, lower, upper)), [upper]])
    widths = np.diff(points)
    ranks = np.arange(widths.size)
    utility = -np.abs(ranks - q * values.size)
    with np.errstate(divide="ignore"):
        log_weights = np.log(widths) + epsilon * utility / 2.0
    if not np.isfinite(log_weights).any():
        return float(points[round(q * (points.size - 1))])
    log_weights -= log_weights.max()
    weights = np.exp(log_weights)
    index = rng.choice(widths.size, p=weights / weights.sum())
    return float(rng.uniform(points[index], points[index + 1]))


def dp_bounds(
    values: np.ndarray,
    *,
    epsilon: float,
    rng: np.random.Generator,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> tuple[float, float]:
    """Epsilon-DP (lower, upper) bounds of ``values``: coarse range, then two DP quantiles."""
    lo_range, hi_range = dp_coarse_range(values, epsilon=epsilon / 2, rng=rng)
    lower = dp_quantile(values, quantiles[0], lower=lo_range, upper=hi_range,
                        epsilon=epsilon / 4, rng=rng)
    upper = dp_quantile(values, quantiles[1], lower=lo_range, upper=hi_range,
                        epsilon=epsilon / 4, rng=rng)
    if lower > upper:
        lower, upper = upper, lower
    return lower, upper


def category_threshold(*, epsilon: float, delta: float) -> float:
    """The release threshold of the stability-based histogram (Laplace noise, one value each)."""
    return 1.0 + math.log(1.0 / (2.0 * delta)) / epsilon


def dp_categories(
    values: pl.Series, *, epsilon: float, delta: float, rng: np.random.Generator
) -> tuple[str, ...]:
    """The (epsilon, delta)-DP set of categories whose noisy count clears the threshold."""
    counts = values.drop_nulls().value_counts()
    if counts.height == 0:
        return ()
    keys = counts[counts.columns[0]].cast(pl.String).to_list()
    noisy = counts["count"].to_numpy() + rng.laplace(scale=1.0 / epsilon, size=len(keys))
    threshold = category_threshold(epsilon=epsilon, delta=delta)
    return tuple(sorted(k for k, n in zip(keys, noisy, strict=True) if n > threshold))


def _to_float(series: pl.Series, kind: ColumnKind) -> np.ndarray:
    values = series.drop_nulls()
    if kind is ColumnKind.DATETIME:
        values = values.dt.epoch("us").cast(pl.Float64) / 1e6
    return values.cast(pl.Float64).to_numpy()


def learn_domain(
    frame: pl.DataFrame,
    skeleton: Schema,
    *,
    epsilon: float,
    delta: float,
    ledger: PrivacyLedger,
    fingerprint: str,
    run_id: str | None = None,
    seed: int | None = None,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> Schema:
    """Learn the domain of every column of ``skeleton`` from ``frame`` with DP, charging the ledger.

    The total ``epsilon`` is split equally over the columns that need a domain (booleans need
    none); ``delta`` goes to the categorical columns. Each column's mechanism is charged to the
    ledger *before* it runs, as its own entry.

    Args:
        frame: the raw private data.
        skeleton: names and kinds of the columns (bounds and categories are ignored).
        epsilon, delta: the total spent on the domain.
        ledger, fingerprint: where the charges go.
        run_id: ties the entries to a run.
        seed: only for tests; leave None in real use (fresh OS entropy).
        quantiles: the DP quantiles used as numeric bounds.

    Returns:
        A schema with ``domain="dp"`` and every column nullable.

    Raises:
        BudgetExceededError: the dataset's budget cannot cover ``(epsilon, delta)``; nothing is
            charged (the total is checked before the first mechanism runs).
        DomainError: a categorical column has no category frequent enough to release.
    """
    run_id = run_id or uuid.uuid4().hex
    needing = [c for c in skeleton.columns if c.kind is not ColumnKind.BOOLEAN]
    n_categorical = sum(c.kind is ColumnKind.CATEGORICAL for c in needing)
    if epsilon <= 0 or (n_categorical and not 0 < delta < 1):
        raise DomainError("learning a domain with DP needs epsilon > 0 (and delta in (0, 1) for "
                          "categorical columns)")
    status = ledger.status(fingerprint)
    if status.remaining.epsilon < epsilon or status.remaining.delta < delta:
        raise BudgetExceededError(
            f"learning the domain would spend (epsilon={epsilon:g}, delta={delta:g}) but only "
            f"{status.remaining} of the budget of {status.label or fingerprint[:12]} is left; "
            f"nothing was charged. Declare the domain public, or lower --domain-epsilon"
        )
    rng = np.random.default_rng(seed)
    eps_each = epsilon / max(len(needing), 1)
    delta_each = delta / n_categorical if n_categorical else 0.0
    columns = []
    for col in skeleton.columns:
        if col.kind is ColumnKind.BOOLEAN:
            columns.append(Column(name=col.name, kind=col.kind, nullable=True))
            continue
        if col.name not in frame.columns:
            raise SchemaError(f"column {col.name!r} of the schema is not in the data")
        series, _ = cast_column(frame[col.name], col)
        if col.kind is ColumnKind.CATEGORICAL:
            ledger.charge(fingerprint, mechanism=f"dp categories of {col.name!r}",
                          epsilon=eps_each, delta=delta_each, run_id=run_id,
                          params={"mechanism": "laplace stability histogram",
                                  "threshold": category_threshold(epsilon=eps_each,
                                                                  delta=delta_each)})
            categories = dp_categories(series, epsilon=eps_each, delta=delta_each, rng=rng)
            if not categories:
                raise DomainError(
                    f"no category of column {col.name!r} is frequent enough to be released at "
                    f"epsilon={eps_each:.3g} for this column; declare its categories publicly in "
                    f"the schema, exclude it, or give the domain step more epsilon"
                )
            columns.append(Column(name=col.name, kind=col.kind, nullable=True,
                                  categories=categories))
            continue
        ledger.charge(fingerprint, mechanism=f"dp bounds of {col.name!r}", epsilon=eps_each,
                      delta=0.0, run_id=run_id,
                      params={"mechanism": "noisy magnitude histogram + exponential-mechanism "
                              "quantiles", "quantiles": list(quantiles)})
        lower, upper = dp_bounds(_to_float(series, col.kind), epsilon=eps_each, rng=rng,
                                 quantiles=quantiles)
        bounds: tuple[float, float] | tuple[datetime, datetime]
        if col.kind is ColumnKind.INTEGER:
            bounds = (float(math.floor(lower)), float(math.ceil(upper)))
        elif col.kind is ColumnKind.DATETIME:
            epoch = datetime(1970, 1, 1)
            bounds = (epoch + timedelta(seconds=math.floor(lower)),
                      epoch + timedelta(seconds=math.ceil(upper)))
        else:
            bounds = (lower, upper)
        columns.append(Column(name=col.name, kind=col.kind, nullable=True, bounds=bounds))
    return skeleton.with_columns(columns, domain="dp")


DomainChoice = Literal["public", "dp"]


def prepare_table(
    data_path: str | Path,
    *,
    schema_path: str | Path | None = None,
    domain: DomainChoice = "public",
    confirm_public: bool = False,
    domain_epsilon: float | None = None,
    domain_delta: float = 1e-6,
    ledger: PrivacyLedger | None = None,
    run_id: str | None = None,
    max_bytes: int | None = None,
    seed: int | None = None,
) -> Table:
    """Read a private table and give it a domain fit for a DP run.

    Args:
        data_path: CSV or Parquet file.
        schema_path: a schema file. With ``domain="public"`` its domain is used as declared
            (a file still marked ``domain: inferred`` needs ``confirm_public``). With
            ``domain="dp"`` only its names and kinds are used.
        domain: ``"public"`` or ``"dp"``.
        confirm_public: the user confirms that an inferred domain (from ``schema_path`` or, with
            no schema, inferred now) is public; recorded as "public" in the manifest.
        domain_epsilon, domain_delta: the DP domain's cost (``domain="dp"`` only).
        ledger: the ledger to charge; default the user's.
        run_id: ties ledger entries to a run.
        max_bytes: refuse larger input files.
        seed: for tests only.

    Raises:
        InputFileError, SchemaError, DomainError, BudgetNotSetError, BudgetExceededError.
    """
    frame = read_frame(data_path, max_bytes=max_bytes)
    name = Path(data_path).name
    if schema_path is not None:
        schema = Schema.load(schema_path)
    else:
        from .inference import infer_schema

        schema = infer_schema(frame)
    if domain == "dp":
        if domain_epsilon is None:
            raise DomainError("learning the domain with DP needs --domain-epsilon (e.g. 0.1)")
        ledger = ledger or PrivacyLedger()
        schema = learn_domain(frame, schema, epsilon=domain_epsilon, delta=domain_delta,
                              ledger=ledger, fingerprint=fingerprint_frame(frame), run_id=run_id,
                              seed=seed)
    elif domain == "public":
        if schema.domain == "inferred":
            if not confirm_public:
                raise DomainError(
                    "the domain was inferred from the private data and is not private; review "
                    "it and confirm it as public (--confirm-public / `domain: public` in the "
                    "schema file), or learn it with DP (--domain dp --domain-epsilon E)"
                )
            schema = schema.confirm_public()
    else:
        raise DomainError(f"domain must be 'public' or 'dp', got {domain!r}")
    return Table.from_frame(frame, schema, name=name)
