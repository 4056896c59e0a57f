"""Privacy metrics: does the synthetic table give away the rows it was trained on?

The empirical ones compare the training rows (``real``) with rows of the same population the
generator never saw (``holdout``): a synthetic table that is no closer to the first than to the
second reveals nothing measurable about membership.

- ``exact_copy_rate``: share of synthetic rows identical to a training row.
- ``dcr``: distance to closest record; the share of synthetic rows closer to the training rows
  than to the holdout rows (ideal 0.5).
- ``nndr``: nearest-neighbour distance ratio (closest / second closest real row), vs training.
- ``mia_distance``: membership-inference attack scoring candidate rows by their distance to the
  nearest synthetic row; ROC AUC over training (members) vs holdout (non-members) rows.
- ``mia_classifier``: a shadow-model-free attack: a classifier learns synthetic vs reference
  (half the holdout); members and the other half of the holdout are scored by it; ROC AUC.
- ``dp_guarantee``: the (epsilon, delta) guarantee from the model manifest: the only figure
  here that is a proof rather than a measurement.

Distances are Euclidean over numerics scaled by their 1st-99th percentile range in the training
data and one-hot categoricals scaled so that two different categories are 1 apart.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from privsynth_core.errors import MetricError
from privsynth_core.metric import Metric, MetricResult, Verdict

from ._common import (
    check_frames,
    encode,
    limit_threads,
    onehot_matrices,
    ordinal_matrix,
    row_keys,
    sample_rows,
    trainable,
)

if TYPE_CHECKING:
    from privsynth_core.schema import Schema

SYNTHETIC_MAX_ROWS = 10_000
NEIGHBOUR_SYNTHETIC_ROWS = 5_000
REAL_MAX_ROWS = 10_000
CANDIDATES_MAX = 5_000
FOREST_MAX_ROWS = 5_000


def _need_holdout(metric_id: str, holdout: pl.DataFrame | None) -> pl.DataFrame:
    if holdout is None:
        raise MetricError(
            f"{metric_id} needs a holdout: real rows from the same source that the generator "
            f"never saw (--holdout FILE); without one it cannot tell memorisation from a good fit"
        )
    return holdout


@limit_threads
def _nearest(reference: np.ndarray, queries: np.ndarray, k: int = 1) -> np.ndarray:
    """Distances from each query row to its ``k`` nearest reference rows (sorted)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(reference))
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(reference)
    distances, _ = nn.kneighbors(queries)
    return np.asarray(distances)


class ExactCopyRateMetric(Metric):
    """Share of synthetic rows that equal a training row in every column."""

    metric_id = "exact_copy_rate"
    name = "Exact-copy rate"
    group = "privacy"
    direction = "lower_is_better"
    description = "share of synthetic rows that are exact copies of a training row"

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
        check_frames(schema, real=real, synthetic=synthetic, holdout=holdout)
        train_keys = row_keys(real, schema.names)
        copied = row_keys(synthetic, schema.names).is_in(train_keys.implode())
        rate = float(copied.cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
        details: dict[str, Any] = {"copies": int(copied.sum()), "ideal": 0.0}
        notes = []
        if holdout is not None:
            in_train = row_keys(holdout, schema.names).is_in(train_keys.implode())
            natural = float(in_train.cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
            details["holdout_rate"] = natural
            notes.append(
                f"{natural:.2%} of the holdout rows also occur in the training data: coincidences "
                f"at that rate are expected (few or coarse columns), not evidence of copying"
            )
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=rate,
            direction=self.direction,
            value_range=(0.0, 1.0),
            details=details,
            notes=notes,
        )

    def verdict(self, result: MetricResult) -> tuple[Verdict, str] | None:
        """Judged against the rate at which holdout rows coincide with training rows, if known."""
        natural = result.details.get("holdout_rate")
        base = max(0.001, 1.5 * natural) if natural is not None else 0.001
        if result.value <= base:
            return "good", (
                "no more copies than chance coincidences"
                + (f" (holdout: {natural:.2%})" if natural is not None else "")
            )
        if result.value <= 3 * base:
            return "fair", "somewhat more copies of training rows than chance would give"
        return "poor", "the synthetic table copies training rows: do not release"


class _DistanceMetric(Metric):
    """Shared set-up: equal-size samples of training and holdout rows, distance embedding."""

    group = "privacy"
    needs_holdout = True

    def _embed(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        holdout: pl.DataFrame,
        schema: Schema,
        seed: int,
        n_real: int,
        n_synthetic: int = SYNTHETIC_MAX_ROWS,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        n = min(real.height, holdout.height, n_real)
        train_s, s1 = sample_rows(real, n, seed)
        hold_s, s2 = sample_rows(holdout, n, seed + 1)
        syn_s, s3 = sample_rows(synthetic, n_synthetic, seed + 2)
        notes = (
            [f"training and holdout compared on equal samples of {n:,} rows"] if (s1 or s2) else []
        )
        if s3:
            notes.append(f"synthetic rows sampled to {n_synthetic:,}")
        enc = encode(schema, [train_s, hold_s, syn_s])
        train_x, hold_x, syn_x = onehot_matrices(enc, fit_index=0, scale="range")
        return train_x, hold_x, syn_x, notes

    def _neighbours(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        holdout: pl.DataFrame,
        schema: Schema,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Distances of (sampled) synthetic rows to their 2 nearest training and holdout rows;
        cached for the last inputs, so DCR and NNDR share one search."""
        key = (schema, seed)
        for cached in _NEIGHBOUR_CACHE:
            if (
                cached[0]() is real
                and cached[1]() is synthetic
                and cached[2]() is holdout
                and cached[3] == key
            ):
                return cached[4], cached[5], list(cached[6])
        train_x, hold_x, syn_x, notes = self._embed(
            real, synthetic, holdout, schema, seed, REAL_MAX_ROWS, NEIGHBOUR_SYNTHETIC_ROWS
        )
        d_train, d_hold = _nearest(train_x, syn_x, k=2), _nearest(hold_x, syn_x, k=2)
        _NEIGHBOUR_CACHE[:] = [
            (
                weakref.ref(real),
                weakref.ref(synthetic),
                weakref.ref(holdout),
                key,
                d_train,
                d_hold,
                tuple(notes),
            )
        ]
        return d_train, d_hold, notes


_NEIGHBOUR_CACHE: list[tuple[Any, ...]] = []


class DCRMetric(_DistanceMetric):
    """Share of synthetic rows whose closest real row is a training row rather than a holdout."""

    metric_id = "dcr"
    name = "Distance to closest record: share closer to training"
    direction = "lower_is_better"
    description = "share of synthetic rows closer to training than to holdout rows (0.5 ideal)"
    thresholds = (0.53, 0.6)

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
        holdout = _need_holdout(self.metric_id, holdout)
        check_frames(schema, real=real, synthetic=synthetic, holdout=holdout)
        near_train, near_hold, notes = self._neighbours(real, synthetic, holdout, schema, seed)
        d_train, d_hold = near_train[:, 0], near_hold[:, 0]
        # Ties (e.g. both sets hold the same common row) count half to each side.
        share = float(np.mean((d_train < d_hold) + 0.5 * (d_train == d_hold)))
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=share,
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={
                "ideal": 0.5,
                "median_dcr_train": float(np.median(d_train)),
                "median_dcr_holdout": float(np.median(d_hold)),
                "p05_dcr_train": float(np.quantile(d_train, 0.05)),
                "p05_dcr_holdout": float(np.quantile(d_hold, 0.05)),
                "table": {
                    "columns": ["distance to closest record", "training", "holdout"],
                    "rows": [
                        [
                            "median",
                            round(float(np.median(d_train)), 4),
                            round(float(np.median(d_hold)), 4),
                        ],
                        [
                            "5th percentile",
                            round(float(np.quantile(d_train, 0.05)), 4),
                            round(float(np.quantile(d_hold, 0.05)), 4),
                        ],
                        [
                            "share at distance 0",
                            round(float(np.mean(d_train == 0)), 4),
                            round(float(np.mean(d_hold == 0)), 4),
                        ],
                    ],
                },
            },
            notes=notes,
        )


class NNDRMetric(_DistanceMetric):
    """Nearest-neighbour distance ratio of synthetic rows against training vs holdout rows."""

    metric_id = "nndr"
    name = "Nearest-neighbour distance ratio (5th percentile, vs training)"
    direction = "higher_is_better"
    description = "closest / second-closest real-row distance of synthetic rows, train vs holdout"

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
        holdout = _need_holdout(self.metric_id, holdout)
        check_frames(schema, real=real, synthetic=synthetic, holdout=holdout)
        near_train, near_hold, notes = self._neighbours(real, synthetic, holdout, schema, seed)
        ratios = []
        for d in (near_train, near_hold):
            second = d[:, -1]
            ratios.append(np.where(second > 0, d[:, 0] / np.where(second > 0, second, 1), 1.0))
        train_r, hold_r = ratios
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=float(np.quantile(train_r, 0.05)),
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={
                "holdout_p05": float(np.quantile(hold_r, 0.05)),
                "median_train": float(np.median(train_r)),
                "median_holdout": float(np.median(hold_r)),
                "table": {
                    "columns": ["NNDR", "training", "holdout"],
                    "rows": [
                        [
                            "5th percentile",
                            round(float(np.quantile(train_r, 0.05)), 4),
                            round(float(np.quantile(hold_r, 0.05)), 4),
                        ],
                        [
                            "median",
                            round(float(np.median(train_r)), 4),
                            round(float(np.median(hold_r)), 4),
                        ],
                    ],
                },
            },
            notes=[
                *notes,
                "a value well below the holdout's means synthetic rows sit unusually "
                "close to single training rows",
            ],
        )

    def verdict(self, result: MetricResult) -> tuple[Verdict, str] | None:
        """Judged against the same figure computed on the holdout."""
        hold = result.details["holdout_p05"]
        if hold <= 0:
            return None
        share = result.value / hold
        if share >= 0.9:
            return (
                "good",
                f"synthetic rows sit no closer to training rows than to holdout rows "
                f"(holdout: {hold:.3g})",
            )
        if share >= 0.75:
            return "fair", f"somewhat closer to training rows than to holdout rows ({hold:.3g})"
        return (
            "poor",
            f"synthetic rows sit unusually close to single training rows (holdout: {hold:.3g})",
        )


class MIADistanceMetric(_DistanceMetric):
    """Membership inference: closer to a synthetic row means "was in the training data"."""

    metric_id = "mia_distance"
    name = "Membership-inference attack AUC (distance)"
    direction = "lower_is_better"
    description = "ROC AUC of guessing training membership from distance to the synthetic rows"
    headline = True
    thresholds = (0.55, 0.6)

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

        holdout = _need_holdout(self.metric_id, holdout)
        check_frames(schema, real=real, synthetic=synthetic, holdout=holdout)
        members, non_members, syn_x, notes = self._embed(
            real, synthetic, holdout, schema, seed, CANDIDATES_MAX
        )
        scores = -np.r_[_nearest(syn_x, members)[:, 0], _nearest(syn_x, non_members)[:, 0]]
        labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=float(roc_auc_score(labels, scores)),
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={"ideal": 0.5, "members": len(members)},
            notes=[
                *notes,
                "members: training rows; non-members: holdout rows; 0.5 means the "
                "attack does no better than a coin",
            ],
        )


class MIAClassifierMetric(Metric):
    """Shadow-free membership inference: a classifier of synthetic vs reference rows."""

    metric_id = "mia_classifier"
    name = "Membership-inference attack AUC (classifier)"
    group = "privacy"
    direction = "lower_is_better"
    description = "ROC AUC of a synthetic-vs-reference random forest used as a membership score"
    needs_holdout = True
    thresholds = (0.55, 0.6)

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
        holdout = _need_holdout(self.metric_id, holdout)
        check_frames(schema, real=real, synthetic=synthetic, holdout=holdout)
        return self._attack(real, synthetic, holdout, schema, seed)

    @limit_threads
    def _attack(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        holdout: pl.DataFrame,
        schema: Schema,
        seed: int,
    ) -> MetricResult:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.metrics import roc_auc_score

        if holdout.height < 20:
            raise MetricError("mia_classifier needs a holdout of at least 20 rows")
        # Half the holdout is the attacker's reference data, the other half the non-members.
        hold = holdout.sample(fraction=1.0, seed=seed, shuffle=True)
        half = hold.height // 2
        reference, non_members = hold.head(half), hold.slice(half)
        n = min(non_members.height, real.height, CANDIDATES_MAX)
        members, _ = sample_rows(real, n, seed + 1)
        non_members, _ = sample_rows(non_members, n, seed + 2)
        syn, sampled = sample_rows(synthetic, FOREST_MAX_ROWS, seed + 3)
        reference, _ = sample_rows(reference, FOREST_MAX_ROWS, seed + 4)
        enc = encode(schema, [syn, reference, members, non_members])
        x = [ordinal_matrix(enc, i) for i in range(4)]
        # Fully grown trees: a forest memorises its training rows, which is exactly what lets a
        # copied training row (a member) score high.
        model = RandomForestClassifier(
            n_estimators=60, random_state=seed, n_jobs=1, class_weight="balanced"
        )
        model.fit(
            trainable(np.vstack([x[0], x[1]])), np.r_[np.ones(len(x[0])), np.zeros(len(x[1]))]
        )
        scores = model.predict_proba(np.vstack([x[2], x[3]]))[:, 1]
        labels = np.r_[np.ones(len(x[2])), np.zeros(len(x[3]))]
        notes = [
            f"attacker's reference: {reference.height:,} holdout rows; scored on {n:,} "
            f"members and {n:,} other holdout rows"
        ]
        if sampled:
            notes.append(f"synthetic rows sampled to {FOREST_MAX_ROWS:,}")
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=float(roc_auc_score(labels, scores)),
            direction=self.direction,
            value_range=(0.0, 1.0),
            details={"ideal": 0.5, "members": n},
            notes=notes,
        )


class DPGuaranteeMetric(Metric):
    """The differential-privacy guarantee recorded in the model manifest."""

    metric_id = "dp_guarantee"
    name = "DP guarantee (epsilon)"
    group = "privacy"
    direction = "lower_is_better"
    description = "epsilon, delta, accountant and domain mode from the model manifest"
    needs_manifest = True
    headline = True

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Schema,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
        manifest: dict[str, Any] | None = None,
    ) -> MetricResult:
        if manifest is None:
            raise MetricError(
                "dp_guarantee reads the model manifest; pass it (--manifest MODEL_DIR or "
                "manifest.json), or leave this metric out"
            )
        private = bool(manifest.get("differentially_private"))
        privacy = manifest.get("privacy") or {}
        epsilon = privacy.get("epsilon") if private else None
        if private and not isinstance(epsilon, int | float):
            raise MetricError(
                "the manifest says the model is DP but records no epsilon; "
                "it is not a valid privsynth manifest"
            )
        details = {
            "differentially_private": private,
            "epsilon": epsilon,
            "delta": privacy.get("delta") if private else None,
            "accountant": privacy.get("accountant") if private else None,
            "domain": privacy.get("domain")
            if private
            else (manifest.get("fit") or {}).get("domain_mode"),
            "generator": manifest.get("generator_id"),
            "label": privacy.get("label"),
            # set by the evaluation from the custodian's records and the ledger
            "verified": privacy.get("verified"),
            "source": privacy.get("source"),
            "warning": privacy.get("warning"),
        }
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group=self.group,
            value=float(epsilon) if epsilon is not None else math.inf,
            direction=self.direction,
            value_range=(0.0, math.inf),
            details=details,
            notes=[] if private else ["the model is NOT differentially private: no guarantee"],
        )

    def verdict(self, result: MetricResult) -> tuple[Verdict, str] | None:
        """Strength of the guarantee, in words; a domain inferred from the data voids it."""
        d = result.details
        if not d.get("differentially_private"):
            return "poor", "no guarantee: the model is NOT differentially private"
        eps, delta = d["epsilon"], d["delta"]
        where = f"ε = {eps:.3g}, δ = {delta:.1e} ({d.get('accountant')} accountant)"
        if d.get("verified") is True:
            where += ", checked against the privacy ledger"
        elif d.get("verified") is False:
            where += ", as the model's manifest states it (not checked against the ledger)"
        if d.get("warning"):
            return "poor", f"{where}; but {d['warning']}"
        if d.get("domain") == "inferred":
            return "poor", f"{where}, but the domain was inferred from the data: not end-to-end DP"
        if eps <= 1:
            return "good", f"strong guarantee: {where}, domain {d.get('domain')}"
        if eps <= 10:
            return "fair", f"moderate guarantee: {where}, domain {d.get('domain')}"
        return "poor", f"weak guarantee: {where} is too large to protect individuals"


PRIVACY_METRICS: tuple[type[Metric], ...] = (
    ExactCopyRateMetric,
    DCRMetric,
    NNDRMetric,
    MIADistanceMetric,
    MIAClassifierMetric,
    DPGuaranteeMetric,
)
