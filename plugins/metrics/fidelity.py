"""Fidelity metrics: how closely the synthetic table reproduces the real one's distributions.

- ``ks``: per numeric column, the Kolmogorov-Smirnov statistic (largest gap between the two
  cumulative distributions).
- ``tvd``: per categorical column, the total variation distance of the category frequencies.
- ``chi_square``: per categorical column, a chi-square test of homogeneity (real vs synthetic
  counts).
- ``correlation_diff``: mean absolute difference of the column-association matrices (Pearson
  for two numbers, Cramér's V for two categoricals, the correlation ratio for a mixed pair).
- ``marginal_2way_tvd``: mean TVD of every 2-way marginal, numerics in 10 quantile bins of the
  real data: the headline fidelity number.
- ``pmse`` and ``detection_auc``: a classifier tries to tell real rows from synthetic ones
  (out-of-fold); its propensity mean squared error and its ROC AUC (0.5: it cannot tell).

Missing values are a category (``(missing)``) in categorical comparisons and are left out of
numeric ones (the null rates are reported in ``details``). Categories the real data never had
keep their own code, so they count fully against the synthetic table.
"""

from __future__ import annotations

import weakref
from itertools import combinations
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from privsynth_core.errors import MetricError
from privsynth_core.metric import Metric, MetricResult, Verdict

from ._associations import association_matrix
from ._common import (
    categorical_mask,
    check_frames,
    discretise,
    distribution,
    encode,
    limit_threads,
    ordinal_matrix,
    row_keys,
    sample_rows,
    trainable,
)

if TYPE_CHECKING:
    from privsynth_core.schema import Schema

DETECTION_MAX_ROWS = 10_000


class KSMetric(Metric):
    """Mean Kolmogorov-Smirnov statistic over the numeric columns."""

    metric_id = "ks"
    name = "Kolmogorov-Smirnov statistic (numeric columns)"
    group = "fidelity"
    direction = "lower_is_better"
    description = "per numeric column, the largest gap between real and synthetic CDFs; mean"
    thresholds = (0.05, 0.1)

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        from scipy.stats import ks_2samp

        check_frames(schema, real=real, synthetic=synthetic)
        enc = encode(schema, [real, synthetic])
        if not enc.numeric:
            raise MetricError("ks needs a numeric or datetime column; the schema has none")
        per_column: dict[str, Any] = {}
        for name in enc.numeric:
            a, b = enc.tables[0][name], enc.tables[1][name]
            fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
            if fa.size == 0 or fb.size == 0:
                stat, pvalue = (0.0, 1.0) if fa.size == fb.size else (1.0, 0.0)
            else:
                res = ks_2samp(fa, fb, method="asymp")
                stat, pvalue = float(res.statistic), float(res.pvalue)
            per_column[name] = {
                "ks": stat,
                "pvalue": pvalue,
                "null_rate_real": float(1 - fa.size / a.size),
                "null_rate_synthetic": float(1 - fb.size / b.size),
            }
        value = float(np.mean([c["ks"] for c in per_column.values()]))
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=value,
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={"per_column": per_column, "table": _per_column_table(per_column, "ks")},
        )


class TVDMetric(Metric):
    """Mean total variation distance over the categorical columns."""

    metric_id = "tvd"
    name = "Total variation distance (categorical columns)"
    group = "fidelity"
    direction = "lower_is_better"
    description = "per categorical column, half the L1 gap between category frequencies; mean"
    thresholds = (0.05, 0.1)

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        check_frames(schema, real=real, synthetic=synthetic)
        enc = encode(schema, [real, synthetic])
        if not enc.categorical:
            raise MetricError("tvd needs at least one categorical or boolean column; none here")
        per_column: dict[str, Any] = {}
        for name in enc.categorical:
            size = len(enc.labels[name])
            p = distribution(enc.tables[0][name], size)
            q = distribution(enc.tables[1][name], size)
            gaps = q - p
            worst = np.argsort(-np.abs(gaps))[:3]
            per_column[name] = {
                "tvd": float(0.5 * np.abs(gaps).sum()),
                "largest_gaps": {
                    enc.labels[name][i]: float(gaps[i]) for i in worst if gaps[i] != 0
                },
            }
        value = float(np.mean([c["tvd"] for c in per_column.values()]))
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=value,
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={"per_column": per_column, "table": _per_column_table(per_column, "tvd")},
        )


class ChiSquareMetric(Metric):
    """Chi-square test of homogeneity per categorical column; the mean p-value."""

    metric_id = "chi_square"
    name = "Chi-square test p-value (categorical columns)"
    group = "fidelity"
    direction = "higher_is_better"
    description = "per categorical column, chi-square homogeneity test of real vs synthetic counts"

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        from scipy.stats import chi2_contingency

        check_frames(schema, real=real, synthetic=synthetic)
        enc = encode(schema, [real, synthetic])
        if not enc.categorical:
            raise MetricError("chi_square needs a categorical or boolean column; none here")
        per_column: dict[str, Any] = {}
        for name in enc.categorical:
            size = len(enc.labels[name])
            table = np.vstack([np.bincount(t[name], minlength=size) for t in enc.tables[:2]])
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] < 2:
                stat, pvalue, dof = 0.0, 1.0, 0
            else:
                res = chi2_contingency(table, correction=False)
                stat, pvalue, dof = float(res.statistic), float(res.pvalue), int(res.dof)
            per_column[name] = {"chi_square": stat, "pvalue": pvalue, "dof": dof}
        value = float(np.mean([c["pvalue"] for c in per_column.values()]))
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=value,
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={
                "per_column": per_column,
                "table": _per_column_table(per_column, "chi_square", "pvalue", "dof"),
            },
            notes=[
                "p-values shrink with sample size: on large tables a tiny, harmless "
                "difference is already 'significant'; read the TVD beside it"
            ],
        )


class CorrelationDiffMetric(Metric):
    """Mean absolute difference between the real and synthetic association matrices."""

    metric_id = "correlation_diff"
    name = "Correlation-matrix difference"
    group = "fidelity"
    direction = "lower_is_better"
    description = (
        "mean |real - synthetic| association over column pairs (Pearson, Cramér's V, "
        "correlation ratio)"
    )
    thresholds = (0.05, 0.1)

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        check_frames(schema, real=real, synthetic=synthetic)
        if len(schema.names) < 2:
            raise MetricError("correlation_diff needs at least two columns")
        enc = encode(schema, [real, synthetic])
        columns = enc.columns
        sizes = {n: len(enc.labels[n]) for n in enc.categorical}
        mats = [association_matrix(t, enc.numeric, sizes, columns) for t in enc.tables]
        diff = np.abs(mats[0] - mats[1])
        upper = diff[np.triu_indices(len(columns), k=1)]
        worst = sorted(
            (
                (float(diff[i, j]), columns[i], columns[j])
                for i, j in combinations(range(len(columns)), 2)
            ),
            reverse=True,
        )[:10]
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=float(upper.mean()),
            direction=self.direction,
            value_range=(0.0, 2.0),
            details={
                "columns": columns,
                "real": np.round(mats[0], 4).tolist(),
                "synthetic": np.round(mats[1], 4).tolist(),
                "max_abs_diff": float(upper.max()),
                "table": {
                    "columns": ["column A", "column B", "|difference|"],
                    "rows": [[a, b, round(d, 4)] for d, a, b in worst],
                },
            },
            notes=[
                "Pearson for numeric pairs (signed, so a pair can differ by up to 2), "
                "Cramér's V for categorical pairs, correlation ratio for mixed pairs"
            ],
        )


class Marginal2WayTVDMetric(Metric):
    """Mean TVD of all 2-way marginals; numerics in 10 quantile bins of the real data."""

    metric_id = "marginal_2way_tvd"
    name = "2-way marginal TVD"
    group = "fidelity"
    direction = "lower_is_better"
    description = "mean total variation distance over every pair of columns (headline fidelity)"
    headline = True
    thresholds = (0.03, 0.06)
    n_bins: ClassVar[int] = 10

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        check_frames(schema, real=real, synthetic=synthetic)
        enc = encode(schema, [real, synthetic])
        (a_codes, b_codes), sizes = discretise(enc, self.n_bins)
        columns = enc.columns
        one_way = {
            n: float(
                0.5
                * np.abs(
                    distribution(a_codes[n], sizes[n]) - distribution(b_codes[n], sizes[n])
                ).sum()
            )
            for n in columns
        }
        pair_tvd = np.zeros((len(columns), len(columns)))
        for i, j in combinations(range(len(columns)), 2):
            a, b = columns[i], columns[j]
            cells = sizes[a] * sizes[b]
            p = distribution(a_codes[a] * sizes[b] + a_codes[b], cells)
            q = distribution(b_codes[a] * sizes[b] + b_codes[b], cells)
            pair_tvd[i, j] = pair_tvd[j, i] = 0.5 * np.abs(p - q).sum()
        if len(columns) >= 2:
            value = float(pair_tvd[np.triu_indices(len(columns), k=1)].mean())
        else:
            value = one_way[columns[0]]
        worst = sorted(
            (
                (float(pair_tvd[i, j]), columns[i], columns[j])
                for i, j in combinations(range(len(columns)), 2)
            ),
            reverse=True,
        )[:10]
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=value,
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={
                "worst": {
                    "pairs": [[a, b, round(d, 4)] for d, a, b in worst[:3] if d > 0],
                    "columns": _worst_columns(one_way),
                },
                "one_way_tvd": one_way,
                "mean_one_way_tvd": float(np.mean(list(one_way.values()))),
                "columns": columns,
                "pair_tvd": np.round(pair_tvd, 4).tolist(),
                "table": {
                    "columns": ["column A", "column B", "2-way TVD"],
                    "rows": [[a, b, round(d, 4)] for d, a, b in worst],
                },
            },
            notes=[
                f"numeric columns in {self.n_bins} quantile bins of the real data; missing "
                f"values are a bin of their own"
            ],
        )


_PROPENSITY_CACHE: list[tuple[Any, ...]] = []


@limit_threads
def _propensity(
    real: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Out-of-fold probabilities that each row is synthetic (3-fold gradient boosting) on equal
    samples of both tables; cached for the last pair so pMSE and detection AUC share one fit."""
    for cached in _PROPENSITY_CACHE:
        if cached[0]() is real and cached[1]() is synthetic and cached[2] == (schema, seed):
            return cached[3], cached[4], list(cached[5])
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import GroupKFold

    n = min(real.height, synthetic.height, DETECTION_MAX_ROWS)
    if n < 10:
        raise MetricError("a classifier-based metric needs at least 10 rows in each table")
    notes = []
    if max(real.height, synthetic.height) > n:
        notes.append(f"computed on {n:,} sampled rows of each table (equal sizes)")
    a, _ = sample_rows(real, n, seed)
    b, _ = sample_rows(synthetic, n, seed + 1)
    enc = encode(schema, [a, b])
    x = trainable(np.vstack([ordinal_matrix(enc, 0), ordinal_matrix(enc, 1)]))
    y = np.r_[np.zeros(a.height), np.ones(b.height)]
    prob = np.zeros_like(y)
    # Identical rows (a real row and its synthetic twin, or duplicates) share a fold: split
    # apart, the model would learn one twin's label and get the other wrong, pushing the AUC of
    # two identical tables far below 0.5 instead of to it.
    groups = pl.concat([row_keys(a, schema.names), row_keys(b, schema.names)]).to_numpy()
    folds = GroupKFold(n_splits=3, shuffle=True, random_state=seed)
    for train, test in folds.split(x, y, groups):
        # Early stopping keeps the propensities of two alike tables near 0.5 instead of
        # fitting noise (pMSE of two real samples: ~0.03 without it on 1,500 rows, ~0.005 with).
        model = HistGradientBoostingClassifier(
            max_iter=200,
            categorical_features=categorical_mask(enc),
            random_state=seed,
            early_stopping=True,
        )
        model.fit(x[train], y[train])
        prob[test] = model.predict_proba(x[test])[:, 1]
    # Weak references: the cache never keeps a table alive, and a dead one never matches.
    _PROPENSITY_CACHE[:] = [
        (weakref.ref(real), weakref.ref(synthetic), (schema, seed), y, prob, tuple(notes))
    ]
    return y, prob, notes


class PMSEMetric(Metric):
    """Propensity mean squared error of an out-of-fold real-vs-synthetic classifier."""

    metric_id = "pmse"
    name = "Propensity score MSE (pMSE)"
    group = "fidelity"
    direction = "lower_is_better"
    description = "mean squared distance of real-vs-synthetic propensities from 0.5"
    thresholds = (0.02, 0.06)

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        check_frames(schema, real=real, synthetic=synthetic)
        y, prob, notes = _propensity(real, synthetic, schema, seed)
        share = float(y.mean())
        pmse = float(np.mean((prob - share) ** 2))
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=pmse,
            direction=self.direction,
            value_range=(0.0, share * (1 - share)),
            details={"ideal": 0.0, "max": share * (1 - share)},
            notes=[*notes, "propensities from 3-fold out-of-fold gradient boosting"],
        )


class DetectionAUCMetric(Metric):
    """ROC AUC of an out-of-fold classifier telling real rows from synthetic ones."""

    metric_id = "detection_auc"
    name = "Detection ROC AUC (real vs synthetic)"
    group = "fidelity"
    direction = "lower_is_better"
    description = "how well a classifier tells real from synthetic rows (0.5: not at all)"
    headline = True
    thresholds = (0.6, 0.75)

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        from sklearn.metrics import roc_auc_score

        check_frames(schema, real=real, synthetic=synthetic)
        y, prob, notes = _propensity(real, synthetic, schema, seed)
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=float(roc_auc_score(y, prob)),
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={
                "ideal": 0.5,
                # what gives the synthetic rows away most readily: the columns whose
                # distributions differ most
                "worst": {"columns": _worst_columns(_one_way_tvd(real, synthetic, schema))},
            },
            notes=[
                *notes,
                "3-fold out-of-fold gradient boosting; 0.5 means the classifier "
                "cannot tell the tables apart",
            ],
        )

    def verdict(self, result: MetricResult) -> tuple[Verdict, str] | None:
        """Flag an AUC far *below* chance: out of fold, that happens when synthetic rows are
        twins of real rows (the classifier learns each twin's label and gets its pair wrong)."""
        if result.value < 0.4:
            return "fair", (
                "suspiciously below chance: synthetic rows mirror real rows one for "
                "one (copies?); check the privacy section"
            )
        return None


def _one_way_tvd(real: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema) -> dict[str, float]:
    """Per column, the TVD of its distribution (numbers in 10 quantile bins of the real data)."""
    enc = encode(schema, [real, synthetic])
    (a_codes, b_codes), sizes = discretise(enc, Marginal2WayTVDMetric.n_bins)
    return {
        n: float(
            0.5
            * np.abs(distribution(a_codes[n], sizes[n]) - distribution(b_codes[n], sizes[n])).sum()
        )
        for n in enc.columns
    }


def _worst_columns(one_way: dict[str, float], top: int = 3) -> list[list[Any]]:
    """The ``top`` columns whose 1-way distributions differ most (none that match exactly)."""
    ranked = sorted(one_way.items(), key=lambda item: -item[1])[:top]
    return [[name, round(tvd, 4)] for name, tvd in ranked if tvd > 0]


def _per_column_table(per_column: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A display table (columns + rows) of per-column figures, worst first."""
    first = keys[0]
    rows = [[name, *[_round(fig[k]) for k in keys]] for name, fig in per_column.items()]
    reverse = first != "pvalue"
    rows.sort(key=lambda r: r[1], reverse=reverse)
    return {"columns": ["column", *keys], "rows": rows}


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


FIDELITY_METRICS: tuple[type[Metric], ...] = (
    KSMetric,
    TVDMetric,
    ChiSquareMetric,
    CorrelationDiffMetric,
    Marginal2WayTVDMetric,
    PMSEMetric,
    DetectionAUCMetric,
)
