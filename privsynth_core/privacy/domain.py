"""Learning a table's domain with differential privacy, and preparing a table for a run.

DESIGN §4.1: the domain (numeric bounds, category lists) is a privacy input. Either it is declared
public, or it is learned here with DP mechanisms whose cost is charged to the ledger:

- **Numeric and datetime bounds**: two stages, each epsilon/2 of the column's share.
  1. A coarse range from a histogram with discrete Laplace noise (scale ``1 / epsilon``) over a
     fixed, data-independent partition of the real line into sign-and-magnitude bins
     (0, ±[2^k, 2^(k+1))). Each record falls into one bin, so the histogram has L1 sensitivity 1
     and the noisy counts are epsilon-DP; picking the outermost bins whose noisy count clears a
     threshold is post-processing. It needs a few dozen records in a bin at epsilon around 1:
     tiny tables should declare their bounds.
  2. The lower and upper bounds are DP quantiles (default 1% and 99%), each with half of the
     remaining epsilon: OpenDP's quantile mechanism (the utility ``-|rank - q n|`` of Smith 2011,
     selected by exact report-noisy-max) over a public grid of :data:`QUANTILE_GRID` evenly spaced
     candidates spanning that range. The bounds are therefore grid points, and *not* the data's
     min and max: a lone outlier does not move them, and values beyond are clamped.
- **Categories**: a count per distinct value with discrete Laplace noise (scale ``1 / epsilon``),
  released only when it exceeds :func:`category_threshold` (stability-based histogram, Korolova
  et al. 2009; Wilson et al. 2020). Comparing a noisy count with a fixed threshold is the same as
  comparing the true count with a noisy one. Releasing a *data-dependent* set of keys is
  (epsilon, delta)-DP, not pure DP: the delta is the chance a value held by one person gets
  through. A rare category is dropped most of the time; its rows become missing for that column.
- Column names and kinds are public metadata. Nullability is not read from the data: in DP mode
  every column is nullable and the generator learns the null rate under its own guarantee.

A partitioned table's domain is learned by the same mechanisms from exact counts summed over
its partitions (:func:`learn_domain_from_partitions`): the quantiles from grid counts, scored as
OpenDP scores them and selected by OpenDP's report-noisy-max (:func:`quantile_from_counts`).

Every count here gets exact integer noise, and every quantile an exact selection, from OpenDP's
samplers and a cryptographic source (:mod:`privsynth_core.privacy.noise`): nothing is floating-point
noise open to the attacks of Mironov (2012), and nothing can be seeded. Limitation an auditor
should know: the table's row count is treated as public, as DP-SGD accounting does.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from ..errors import BudgetExceededError, DomainError, SchemaError
from ..generator import Progress, ProgressCallback
from ..schema import Column, ColumnKind, Schema
from ..table import Table, fingerprint_frame, read_frame
from ..validation import cast_column
from .coupling import replayed
from .histograms import (
    QUANTILE_GRID,
    category_counts,
    magnitude_counts,
    magnitude_edges,
    numeric_values,
)
from .ledger import PrivacyBudget, PrivacyLedger, budget_key
from .noise import discrete_laplace, private_quantile
from .release import SpentPart

DEFAULT_QUANTILES = (0.01, 0.99)
#: OpenDP's scores are usize: counts past ``_USIZE_MAX // denominator`` are capped, as there.
_USIZE_MAX = 2**64 - 1


def dp_coarse_range(values: np.ndarray, *, epsilon: float) -> tuple[float, float]:
    """An epsilon-DP range that holds most of ``values``, from a noisy magnitude histogram.

    Returns the outer edges of the outermost bins whose noisy count clears
    ``ln(50 * n_bins) / epsilon``, a threshold at which the chance that *any* empty bin clears
    it is under ``2 / (1 + e^-epsilon)`` percent (the discrete Laplace tail: 1% to 2%);
    ``(-1, 1)`` when none does. Bins with fewer records than that (outliers) are left out of
    the range, which is the point.
    """
    return coarse_range_from_counts(magnitude_counts(values), epsilon=epsilon)


def coarse_range_from_counts(counts: npt.ArrayLike, *, epsilon: float) -> tuple[float, float]:
    """The release of :func:`dp_coarse_range` from the exact magnitude-histogram ``counts``
    (:func:`~privsynth_core.privacy.histograms.magnitude_counts`, of the whole table or summed
    over its partitions): discrete Laplace noise once, then the threshold (post-processing)."""
    edges = magnitude_edges()
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (edges.size - 1,):
        raise DomainError(f"a magnitude histogram has {edges.size - 1} bins, got {counts.shape}")
    noisy = discrete_laplace(counts, scale=1.0 / epsilon)
    keep = np.flatnonzero(noisy > math.log(50 * counts.size) / epsilon)
    if keep.size == 0:
        return -1.0, 1.0
    return float(edges[keep[0]]), float(edges[keep[-1] + 1])


def dp_quantile(
    values: np.ndarray, q: float, *, lower: float, upper: float, epsilon: float
) -> float:
    """The epsilon-DP ``q``-quantile of ``values`` within [lower, upper] (Smith 2011, on a grid).

    OpenDP's quantile mechanism over :data:`QUANTILE_GRID` evenly spaced candidates from
    ``lower`` to ``upper`` (public: the coarse range): a candidate ``c`` is scored by how far the
    number of values below it is from ``q n``, and one is chosen by exact report-noisy-max,
    epsilon-DP under add/remove-one. Smith's own mechanism draws a point inside the chosen
    interval between data values; that needs floating-point sampling, the grid does not.
    Missing (NaN) values are dropped first: each record has one value, so that is stable.
    """
    if not 0 <= q <= 1:
        raise DomainError(f"quantile must be in [0, 1], got {q}")
    if not upper > lower:
        return lower
    present = np.clip(values[~np.isnan(values)], lower, upper)
    return private_quantile(
        present, q, candidates=np.linspace(lower, upper, QUANTILE_GRID), epsilon=epsilon
    )


def quantile_scores(counts: npt.ArrayLike, *, numerator: int, denominator: int) -> list[int]:
    """OpenDP's quantile scores of each candidate, from the candidates' grid counts.

    ``counts`` is :func:`~privsynth_core.privacy.histograms.grid_counts` of the (clipped)
    values: with ``lt`` the values below a candidate, ``eq`` those equal to it and ``n`` all,
    the score is ``|denominator lt - numerator (n - eq)|`` (lower is better), where
    ``numerator / denominator`` is alpha as OpenDP holds it: the score of OpenDP 0.16's
    ``make_quantile_score_candidates`` for a table of unknown size (checked against it in
    ``tests/core/test_partitions.py``). Exact integers throughout.
    """
    cells = np.asarray(counts, dtype=np.int64)
    if cells.ndim != 1 or cells.size % 2 != 1:
        raise DomainError(f"grid counts have 2 m - 1 entries for m candidates, got {cells.shape}")
    limit = _USIZE_MAX // denominator
    n = int(cells.sum())
    scores, below = [], 0
    for i, eq in enumerate(cells[0::2].tolist()):
        scores.append(abs(denominator * min(below, limit) - numerator * min(n - eq, limit)))
        below += eq + (int(cells[2 * i + 1]) if 2 * i + 1 < cells.size else 0)
    return scores


def quantile_from_counts(
    counts: npt.ArrayLike, alpha: float, *, candidates: npt.ArrayLike, epsilon: float
) -> float:
    """The release of :func:`dp_quantile` from the exact grid ``counts`` of the values
    (:func:`~privsynth_core.privacy.histograms.grid_counts` over ``candidates``, of the whole
    table or summed over its partitions).

    OpenDP's quantile mechanism is its score transformation followed by report-noisy-max on
    the scores; here the scores are computed from the counts (:func:`quantile_scores`, equal
    to the transformation's on the values, alpha's fraction read off the transformation) and
    the same noisy-max measurement selects one, at the smallest noise scale for which the
    composed privacy map gives at most ``epsilon`` (the map of OpenDP's transformation, which
    the counts do not change). Exact selection, OS randomness, no seed.

    Raises:
        ConfigError: ``epsilon`` not finite and > 0, or candidates not strictly increasing.
        DomainError: ``counts`` is not of ``2 m - 1`` entries for ``m`` candidates.
    """
    from ..errors import ConfigError

    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ConfigError(f"epsilon must be a finite number > 0, got {epsilon}")
    grid = np.asarray(candidates, dtype=np.float64).ravel()
    if grid.size == 0 or (np.diff(grid) <= 0).any():
        raise ConfigError("the quantile's candidates must be strictly increasing")
    if np.asarray(counts).size != 2 * grid.size - 1:
        raise DomainError(f"{grid.size} candidates need {2 * grid.size - 1} grid counts")
    numerator, denominator, select = quantile_selection(grid, alpha, epsilon=epsilon)
    scores = quantile_scores(counts, numerator=numerator, denominator=denominator)
    return float(grid[int(select(scores))])


def quantile_selection(
    candidates: npt.ArrayLike, alpha: float, *, epsilon: float
) -> tuple[int, int, Any]:
    """What :func:`quantile_from_counts` selects with: alpha as OpenDP holds it (numerator,
    denominator), and OpenDP's report-noisy-max over the scores of ``candidates``, at the
    smallest scale for which (OpenDP's score transformation, then it) is ``epsilon``-DP."""
    import opendp.prelude as dp

    from .noise import _widened

    dp.enable_features("contrib")
    grid = np.asarray(candidates, dtype=np.float64).ravel()
    scorer = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        candidates=grid.tolist(),
        alpha=float(alpha),
    )
    # alpha as OpenDP holds it (a fraction of its own choosing), read off two one-value
    # tables: a value at the last candidate scores the first one `numerator`, a value at the
    # first scores the last one `denominator - numerator` (public: no row is read).
    numerator = int(scorer([float(grid[-1])])[0])
    denominator = numerator + int(scorer([float(grid[0])])[-1]) if grid.size > 1 else 1

    def selection(scale: float) -> Any:
        return dp.m.make_noisy_max(
            scorer.output_domain, scorer.output_metric, dp.max_divergence(), scale, negate=True
        )

    sensitivity = scorer.map(1)  # type: ignore[no-untyped-call]
    scale = _widened(
        float(selection(1.0).map(sensitivity)) / epsilon,
        lambda s: float(selection(s).map(sensitivity)) <= epsilon,
    )
    return numerator, denominator, selection(scale)


def dp_bounds(
    values: np.ndarray,
    *,
    epsilon: float,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
) -> tuple[float, float]:
    """Epsilon-DP (lower, upper) bounds of ``values``: coarse range, then two DP quantiles."""
    lo_range, hi_range = dp_coarse_range(values, epsilon=epsilon / 2)
    lower = dp_quantile(values, quantiles[0], lower=lo_range, upper=hi_range, epsilon=epsilon / 4)
    upper = dp_quantile(values, quantiles[1], lower=lo_range, upper=hi_range, epsilon=epsilon / 4)
    if lower > upper:
        lower, upper = upper, lower
    return lower, upper


def category_threshold(*, epsilon: float, delta: float) -> float:
    """The release threshold of the stability-based histogram with discrete Laplace noise.

    A value is released when its noisy count *exceeds* the returned integer ``t``: the smallest
    ``t >= 0`` with ``t >= (ln(1 / delta) - ln(1 + e^-epsilon)) / epsilon``. A value held by one
    person has count 1 and gets through when ``1 + Z > t``, that is ``Z >= t``, with
    probability ``e^(-epsilon t) / (1 + e^-epsilon)`` for the discrete Laplace ``Z`` of scale
    ``1 / epsilon`` (``P[Z = k]`` proportional to ``e^(-epsilon |k|)``; sum the geometric tail),
    which the choice of ``t`` keeps at or under ``delta``.

    The continuous Laplace's threshold ``1 + ln(1 / (2 delta)) / epsilon`` is not enough for
    integer noise: depending on where it falls between two integers it lets through up to
    ``2 delta / (1 + e^-epsilon)`` (1.46 delta at epsilon = 1). OpenDP's own thresholded
    Laplace is not used because its 0.16 privacy map leaves out the mass at the threshold and
    under-states delta by a factor ``e^epsilon`` (opendp/opendp#2922).
    """
    bound = (math.log(1.0 / delta) - math.log1p(math.exp(-epsilon))) / epsilon
    # nudged up so that rounding in ``bound`` can only make the threshold higher, never lower
    return float(max(math.ceil(bound + 1e-9 * max(1.0, abs(bound))), 0))


def dp_categories(values: pl.Series, *, epsilon: float, delta: float) -> tuple[str, ...]:
    """The (epsilon, delta)-DP set of categories whose noisy count exceeds the threshold."""
    return categories_from_counts(category_counts(values), epsilon=epsilon, delta=delta)


def categories_from_counts(
    counts: Mapping[str, int], *, epsilon: float, delta: float
) -> tuple[str, ...]:
    """The release of :func:`dp_categories` from exact per-value ``counts``
    (:func:`~privsynth_core.privacy.histograms.category_counts`, of the whole table or summed
    over its partitions): discrete Laplace noise once per value, then the threshold."""
    if not counts:
        return ()
    keys = sorted(counts)
    noisy = discrete_laplace(
        np.array([counts[k] for k in keys], dtype=np.int64), scale=1.0 / epsilon
    )
    threshold = category_threshold(epsilon=epsilon, delta=delta)
    return tuple(k for k, n in zip(keys, noisy, strict=True) if n > threshold)


def _domain_plan(
    skeleton: Schema, *, epsilon: float, delta: float, ledger: PrivacyLedger, fingerprint: str
) -> tuple[list[Column], float, float]:
    """The columns a DP domain learns (all but booleans) and each one's (epsilon, delta), once
    the whole ``(epsilon, delta)`` is known to fit what is left of ``fingerprint``'s budget
    (checked before the first mechanism runs, so a refusal charges nothing)."""
    needing = [c for c in skeleton.columns if c.kind is not ColumnKind.BOOLEAN]
    n_categorical = sum(c.kind is ColumnKind.CATEGORICAL for c in needing)
    if epsilon <= 0 or (n_categorical and not 0 < delta < 1):
        raise DomainError(
            "learning a domain with DP needs epsilon > 0 (and delta in (0, 1) for "
            "categorical columns)"
        )
    status = ledger.status(fingerprint)
    if not PrivacyBudget(epsilon, delta).fits_within(status.remaining):
        raise BudgetExceededError(
            f"learning the domain would spend (epsilon={epsilon:g}, delta={delta:g}) but only "
            f"{status.remaining} of the budget of {status.label or fingerprint[:12]} is left; "
            f"nothing was charged. Declare the domain public, or lower --domain-epsilon"
        )
    return needing, epsilon / max(len(needing), 1), delta / n_categorical if n_categorical else 0.0


def learn_domain(
    frame: pl.DataFrame,
    skeleton: Schema,
    *,
    epsilon: float,
    delta: float,
    ledger: PrivacyLedger,
    fingerprint: str,
    run_id: str | None = None,
    extract: str | None = None,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
    progress: ProgressCallback | None = None,
) -> Schema:
    """Learn the domain of every column of ``skeleton`` from ``frame`` with DP, charging the ledger.

    The total ``epsilon`` is split equally over the columns that need a domain (booleans need
    none); ``delta`` goes to the categorical columns. Each column's mechanism is charged to the
    ledger *before* it runs, as its own entry. All noise is fresh, exact and from a
    cryptographic source: no argument can seed it (DESIGN §4.9).

    Args:
        frame: the raw private data.
        skeleton: names and kinds of the columns (bounds and categories are ignored).
        epsilon, delta: the total spent on the domain.
        ledger, fingerprint: where the charges go.
        run_id: ties the entries to a run.
        extract: the content fingerprint of the rows read, recorded with each entry.
        quantiles: the DP quantiles used as numeric bounds.
        progress: called once per column learned (booleans need none), as a
            :class:`~privsynth_core.generator.Progress` in ``"column"`` units: how many of
            how many, the epsilon charged so far and the column's name; nothing read off the
            rows (no value, no count) and no clock time.

    Returns:
        A schema with ``domain="dp"`` and every column nullable.

    Raises:
        BudgetExceededError: the dataset's budget cannot cover ``(epsilon, delta)``; nothing is
            charged (the total is checked before the first mechanism runs).
        DomainError: a categorical column has no category frequent enough to release.
    """
    run_id = run_id or uuid.uuid4().hex
    needing, eps_each, delta_each = _domain_plan(
        skeleton, epsilon=epsilon, delta=delta, ledger=ledger, fingerprint=fingerprint
    )
    columns = []
    learned = 0
    for col in skeleton.columns:
        if col.kind is ColumnKind.BOOLEAN:
            columns.append(Column(name=col.name, kind=col.kind, nullable=True))
            continue
        if col.name not in frame.columns:
            raise SchemaError(f"column {col.name!r} of the schema is not in the data")
        series, _ = cast_column(frame[col.name], col)
        _charge_column(
            ledger,
            col,
            key=fingerprint,
            extract=extract,
            epsilon=eps_each,
            delta=delta_each,
            run_id=run_id,
            quantiles=quantiles,
        )
        if col.kind is ColumnKind.CATEGORICAL:
            categories = dp_categories(series, epsilon=eps_each, delta=delta_each)
            if not categories:
                raise DomainError(
                    f"no category of column {col.name!r} is frequent enough to be released at "
                    f"epsilon={eps_each:.3g} for this column; declare its categories publicly in "
                    f"the schema, exclude it, or give the domain step more epsilon"
                )
            columns.append(
                Column(name=col.name, kind=col.kind, nullable=True, categories=categories)
            )
        else:
            lower, upper = dp_bounds(
                numeric_values(series, col.kind), epsilon=eps_each, quantiles=quantiles
            )
            columns.append(_bounded(col, lower, upper))
        learned += 1
        if progress is not None:
            # The column's place and name only: its learned domain stays out of the report.
            progress(
                Progress(
                    epoch=learned,
                    epochs=len(needing),
                    step=learned,
                    epsilon=eps_each * learned,
                    unit="column",
                    stage=f"learned the domain of column {col.name!r}",
                )
            )
    return skeleton.with_columns(columns, domain="dp")


def _bounded(col: Column, lower: float, upper: float) -> Column:
    """The DP domain's column with released bounds (post-processing: integers widened to whole
    numbers, datetimes to whole seconds within what a datetime holds)."""
    bounds: tuple[float, float] | tuple[datetime, datetime]
    if col.kind is ColumnKind.INTEGER:
        bounds = (float(math.floor(lower)), float(math.ceil(upper)))
    elif col.kind is ColumnKind.DATETIME:
        bounds = (_datetime_at(math.floor(lower)), _datetime_at(math.ceil(upper)))
    else:
        bounds = (lower, upper)
    return Column(name=col.name, kind=col.kind, nullable=True, bounds=bounds)


def _charge_column(
    ledger: PrivacyLedger,
    col: Column,
    *,
    key: str,
    extract: str | None,
    epsilon: float,
    delta: float,
    run_id: str,
    quantiles: tuple[float, float],
) -> None:
    """Charge one column's DP domain mechanism, before it runs (the entries of learn_domain)."""
    if col.kind is ColumnKind.CATEGORICAL:
        ledger.charge(
            key,
            extract=extract,
            mechanism=f"dp categories of {col.name!r}",
            epsilon=epsilon,
            delta=delta,
            run_id=run_id,
            params={
                "mechanism": "discrete laplace stability histogram",
                "threshold": category_threshold(epsilon=epsilon, delta=delta),
            },
        )
    else:
        ledger.charge(
            key,
            extract=extract,
            mechanism=f"dp bounds of {col.name!r}",
            epsilon=epsilon,
            delta=0.0,
            run_id=run_id,
            params={
                "mechanism": "discrete laplace magnitude histogram + report-noisy-max quantiles",
                "quantiles": list(quantiles),
            },
        )


def learn_domain_from_partitions(
    spec: str | Path,
    skeleton: Schema,
    *,
    epsilon: float,
    delta: float,
    ledger: PrivacyLedger,
    fingerprint: str,
    run_id: str | None = None,
    executor: Executor | None = None,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
    extract: str | None = None,
) -> Schema:
    """:func:`learn_domain` for a partitioned table, from counts summed over its partitions.

    The same mechanisms at the same costs, charged the same way (one entry per column before
    its first mechanism runs), on exact counts taken in two passes over the partitions on
    ``executor`` (:func:`privsynth_core.partitions.count_partitions`): first every numeric
    column's magnitude histogram and every categorical column's category counts, released by
    :func:`coarse_range_from_counts` and :func:`categories_from_counts` as on one machine;
    then each numeric column's grid counts over its quantiles' candidates (which depend on the
    released coarse range), released by :func:`quantile_from_counts`. No process holds more
    than one partition.

    ``extract`` is the fingerprint of the read that ``fingerprint`` (the budget key) was
    derived from: when given, the first pass must have read that same table, or nothing is
    charged (a row written in between would otherwise be charged to another table's key).

    Raises:
        BudgetExceededError, DomainError: as :func:`learn_domain`.
        InputFileError, SchemaError: a partition cannot be read or lacks a column, or the
            partitions changed since ``extract`` was read or between the two passes.
    """
    from ..errors import InputFileError
    from ..partitions import CountPlan, count_partitions

    run_id = run_id or uuid.uuid4().hex
    needing, eps_each, delta_each = _domain_plan(
        skeleton, epsilon=epsilon, delta=delta, ledger=ledger, fingerprint=fingerprint
    )
    first = count_partitions(spec, skeleton, plan=CountPlan(domain=True), executor=executor)
    if extract is not None and first.fingerprint != extract:
        raise InputFileError(
            f"the partitions of {spec} changed since the run read them; nothing was charged. "
            f"Run it again on a table that is not being written"
        )
    released: dict[str, Column | tuple[float, float]] = {}
    for col in needing:
        _charge_column(
            ledger,
            col,
            key=fingerprint,
            extract=first.fingerprint,
            epsilon=eps_each,
            delta=delta_each,
            run_id=run_id,
            quantiles=quantiles,
        )
        if col.kind is ColumnKind.CATEGORICAL:
            categories = categories_from_counts(
                first.categories.get(col.name, {}), epsilon=eps_each, delta=delta_each
            )
            if not categories:
                raise DomainError(
                    f"no category of column {col.name!r} is frequent enough to be released at "
                    f"epsilon={eps_each:.3g} for this column; declare its categories publicly in "
                    f"the schema, exclude it, or give the domain step more epsilon"
                )
            released[col.name] = Column(
                name=col.name, kind=col.kind, nullable=True, categories=categories
            )
        else:
            released[col.name] = coarse_range_from_counts(
                first.magnitudes[col.name], epsilon=eps_each / 2
            )
    ranges = tuple(
        (name, lo, hi)
        for name, value in released.items()
        if isinstance(value, tuple)
        for lo, hi in [value]
        if hi > lo
    )
    second = count_partitions(
        list(first.files), skeleton, plan=CountPlan(quantile_ranges=ranges), executor=executor
    )
    if second.fingerprint != first.fingerprint:
        raise InputFileError(
            f"the partitions of {spec} changed while the domain was being learned; run it again "
            f"on a table that is not being written"
        )
    columns = []
    for col in skeleton.columns:
        value = released.get(col.name)
        if value is None:  # a boolean: no domain to learn
            columns.append(Column(name=col.name, kind=col.kind, nullable=True))
        elif isinstance(value, Column):
            columns.append(value)
        else:
            lo, hi = value
            if not hi > lo:
                lower = upper = lo
            else:
                grid = np.linspace(lo, hi, QUANTILE_GRID)
                counts = second.quantiles[col.name]
                lower, upper = (
                    quantile_from_counts(counts, q, candidates=grid, epsilon=eps_each / 4)
                    for q in quantiles
                )
            if lower > upper:
                lower, upper = upper, lower
            columns.append(_bounded(col, lower, upper))
    return skeleton.with_columns(columns, domain="dp")


DomainChoice = Literal["public", "dp"]


def checked_schema(schema_path: str | Path | None, domain: DomainChoice = "public") -> Schema:
    """The schema file of a fit, checked for ``domain`` without reading any row.

    The checks :func:`prepare_table` makes first (a partitioned table's fit, which never loads
    its rows into one process, makes them alone): the file is a person's (not an unreviewed
    inferred draft), and a DP-learned domain is used as public only as an earlier run's output.

    Raises:
        DomainError: no schema file, an unreviewed draft, or the wrong mode.
    """
    if domain not in ("public", "dp"):
        raise DomainError(f"domain must be 'public' or 'dp', got {domain!r}")
    if schema_path is None:
        raise DomainError(
            "a fit needs a schema file a person has reviewed: draft one with `privsynth schema "
            "infer DATA -o schema.yaml` (or `--skeleton` for names and kinds only, to learn the "
            "domain with DP), review it, then `privsynth schema confirm schema.yaml`"
        )
    schema = Schema.load(schema_path)
    if schema.domain == "inferred":
        raise DomainError(
            f"{schema_path} was inferred from the private data and has not been reviewed: its "
            f"kinds, bounds and categories are not private. Review it and declare it public with "
            f"`privsynth schema confirm {schema_path}`"
            + (" (for --domain dp only the names and kinds are used)" if domain == "dp" else "")
        )
    if domain == "public" and schema.domain == "dp":
        raise DomainError(
            f"{schema_path} holds a DP-learned domain; use it with --domain "
            f"public only as the saved output of an earlier run"
        )
    return schema


def prepare_table(
    data_path: str | Path,
    *,
    schema_path: str | Path | None,
    domain: DomainChoice = "public",
    domain_epsilon: float | None = None,
    domain_delta: float = 1e-6,
    ledger: PrivacyLedger | None = None,
    run_id: str | None = None,
    max_bytes: int | None = None,
    source: str | None = None,
    parent_key: str | None = None,
    progress: ProgressCallback | None = None,
) -> Table:
    """Read a private table and give it a domain fit for a DP run.

    The schema file is always a person's: a domain is never read off the rows unseen.

    Args:
        data_path: CSV or Parquet file.
        schema_path: the schema file. With ``domain="public"`` its domain is used as declared
            (``domain: public``: written by hand, or an inferred draft a person reviewed and
            confirmed with ``privsynth schema confirm``). With ``domain="dp"`` only its names,
            kinds and formats are used, and they must have been reviewed too (a confirmed
            skeleton or schema): one added row must not be able to change a column's kind.
        domain: ``"public"`` or ``"dp"``.
        domain_epsilon, domain_delta: the DP domain's cost (``domain="dp"`` only).
        ledger: the ledger to charge; default the user's.
        run_id: ties ledger entries to a run.
        max_bytes: refuse larger input files.
        source: the data source the file is an extract of (its budget is the source's).
        parent_key: the budget key of the source the file was split from (see
            :attr:`Table.parent_key`), when the caller knows it.
        progress: with ``domain="dp"``, called once per column learned (see
            :func:`learn_domain`).

    Raises:
        InputFileError, SchemaError, DomainError, BudgetNotSetError, BudgetExceededError.
    """
    schema = checked_schema(schema_path, domain)
    frame = read_frame(data_path, max_bytes=max_bytes)
    name = Path(data_path).name
    spent: list[SpentPart] = []
    if domain == "dp":
        if domain_epsilon is None:
            raise DomainError("learning the domain with DP needs --domain-epsilon (e.g. 0.1)")
        ledger = ledger or PrivacyLedger()
        run_id = run_id or uuid.uuid4().hex
        extract = fingerprint_frame(frame)
        key = parent_key or budget_key(source, extract)
        first = max((e.entry_id for e in ledger.entries(key)), default=0)
        schema = replayed(
            "dp domain",
            lambda: learn_domain(
                frame,
                schema,
                epsilon=domain_epsilon,
                delta=domain_delta,
                ledger=ledger,
                fingerprint=key,
                run_id=run_id,
                extract=extract,
                progress=progress,
            ),
        )
        spent = [
            SpentPart("domain", e.mechanism, e.epsilon, e.delta, e.entry_id)
            for e in ledger.entries(key)
            if e.entry_id > first and e.run_id == run_id and e.status == "spent"
        ]
    table = Table.from_frame(frame, schema, name=name, source=source)
    table.parent_key = parent_key
    table.spent = spent
    return table


_EPOCH = datetime(1970, 1, 1)
# The seconds of datetime.min and datetime.max: a DP bound far out (the coarse range's
# power-of-two bins reach 2^62 seconds) is post-processed to the representable range.
_FIRST_SECOND = (datetime.min - _EPOCH).total_seconds()
_LAST_SECOND = (datetime.max.replace(microsecond=0) - _EPOCH).total_seconds()


def _datetime_at(seconds: float) -> datetime:
    """The datetime ``seconds`` after the epoch, clamped to what a datetime can hold."""
    return _EPOCH + timedelta(seconds=min(max(seconds, _FIRST_SECOND), _LAST_SECOND))
