"""Utility metric: train on synthetic, test on real (TSTR), beside train on real (TRTR).

For a target column, three model families (logistic/linear regression, gradient boosting,
random forest) are trained once on the synthetic table and once on real training rows, and both
are scored on the same real test rows: the holdout when one is given, otherwise a 30 % split of
the real table that the TRTR models never see. Classification (categorical or boolean target)
reports ROC AUC and accuracy; regression (numeric target) reports R² and MAE. The headline value
is the mean TSTR score (AUC or R²); the TRTR mean is its ceiling. A model family that fails on
the real rows (an error, or a TRTR score far below the best family's) is left out of both means
and named in the notes, so one failed reference model never lowers the ceiling under the score.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from privsynth_core.errors import MetricError
from privsynth_core.metric import Metric, MetricResult

from ._common import (
    check_frames,
    encode,
    is_numeric_kind,
    limit_threads,
    onehot_matrices,
    ordinal_matrix,
    trainable,
)

if TYPE_CHECKING:
    import polars as pl

    from privsynth_core.schema import Schema

TRAIN_MAX_ROWS = 10_000
TEST_MAX_ROWS = 10_000
TEST_SHARE = 0.3


def _models(task: str, seed: int) -> dict[str, Any]:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == "classification":
        return {
            "logistic regression": LogisticRegression(max_iter=500),
            "gradient boosting": HistGradientBoostingClassifier(max_iter=100, random_state=seed),
            "random forest": RandomForestClassifier(
                n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=1
            ),
        }
    return {
        "linear regression (ridge)": Ridge(alpha=1.0),
        "gradient boosting": HistGradientBoostingRegressor(max_iter=100, random_state=seed),
        "random forest": RandomForestRegressor(
            n_estimators=50, min_samples_leaf=2, random_state=seed, n_jobs=1
        ),
    }


class TSTRMetric(Metric):
    """Mean TSTR score over three model families, with TRTR side by side."""

    metric_id = "tstr"
    name = "Train-synthetic-test-real (TSTR) score"
    group = "utility"
    direction = "higher_is_better"
    description = (
        "ML utility: models trained on synthetic vs on real data, scored on real rows "
        "(ROC AUC / R²)"
    )
    needs_target = True
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
    ) -> MetricResult:
        if target is None:
            raise MetricError(
                "tstr needs a target column to predict; pass one (--target COLUMN), or leave "
                "this metric out"
            )
        if target not in schema.names:
            raise MetricError(
                f"target column {target!r} is not in the schema; columns: {', '.join(schema.names)}"
            )
        if len(schema.names) < 2:
            raise MetricError("tstr needs at least one feature column besides the target")
        check_frames(schema, real=real, synthetic=synthetic, holdout=holdout)
        notes: list[str] = []
        real = real.filter(real[target].is_not_null())
        synthetic = synthetic.filter(synthetic[target].is_not_null())
        if holdout is not None:
            test = holdout.filter(holdout[target].is_not_null())
            train_real = real
            notes.append(f"scored on the holdout ({test.height:,} rows)")
        else:
            shuffled = real.sample(fraction=1.0, seed=seed, shuffle=True)
            n_test = max(int(shuffled.height * TEST_SHARE), 1)
            test, train_real = shuffled.head(n_test), shuffled.slice(n_test)
            notes.append(
                f"no holdout given: scored on a {TEST_SHARE:.0%} split of the real table "
                f"({test.height:,} rows) that the TRTR models do not see; the synthetic table "
                f"was made from all real rows, so a holdout gives the fairer TSTR"
            )
        if min(test.height, train_real.height, synthetic.height) < 10:
            raise MetricError("tstr needs at least 10 rows with a target value in each table")
        tables = {}
        for label, frame, limit in (
            ("synthetic", synthetic, TRAIN_MAX_ROWS),
            ("real", train_real, TRAIN_MAX_ROWS),
            ("test", test, TEST_MAX_ROWS),
        ):
            if frame.height > limit:
                frame = frame.sample(n=limit, seed=seed, shuffle=True)
                notes.append(f"{label} rows sampled to {limit:,}")
            tables[label] = frame
        task = "regression" if is_numeric_kind(schema.column(target).kind) else "classification"
        rows, scores = self._score(tables, schema, target, task, seed, notes)
        primary = "ROC AUC" if task == "classification" else "R²"
        kept, reference_notes = _robust_models(scores)
        notes += reference_notes
        tstr = float(np.mean([scores[m][0] for m in kept]))
        trtr = float(np.mean([scores[m][1] for m in kept]))
        second = "accuracy" if task == "classification" else "MAE"
        return MetricResult(
            metric_id=self.metric_id,
            name=f"TSTR {primary} ({target})",
            group=self.group,
            value=tstr,
            direction=self.direction,
            value_range=(0.0, 1.0) if task == "classification" else (float("-inf"), 1.0),
            details={
                "target": target,
                "task": task,
                "score": primary,
                "trtr": trtr,
                "ceiling": trtr,
                "ratio": tstr / trtr if trtr else None,
                "models": kept,
                "reference_notes": reference_notes,
                "table": {
                    "columns": [
                        "model",
                        f"TSTR {primary}",
                        f"TRTR {primary}",
                        f"TSTR {second}",
                        f"TRTR {second}",
                    ],
                    "rows": rows,
                },
            },
            notes=notes,
        )

    @limit_threads
    def _score(
        self,
        tables: dict[str, pl.DataFrame],
        schema: Schema,
        target: str,
        task: str,
        seed: int,
        notes: list[str],
    ) -> tuple[list[list[Any]], dict[str, tuple[float, float | None]]]:
        """Per model family: the display row, and (TSTR, TRTR) primary scores; a TRTR of None
        means the model failed to train on the real rows."""
        from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score

        features = [n for n in schema.names if n != target]
        frames = [tables["synthetic"], tables["real"], tables["test"]]
        enc = encode(schema, frames, columns=[*features, target])
        y_all = [t.pop(target) for t in enc.tables]
        if target in enc.numeric:
            enc.numeric.remove(target)
        else:
            enc.categorical.remove(target)
        dense = onehot_matrices(enc, fit_index=1)
        ordinal = [ordinal_matrix(enc, i) for i in range(3)]
        classes = np.unique(np.concatenate(y_all)) if task == "classification" else None
        rows: list[list[Any]] = []
        scores: dict[str, tuple[float, float | None]] = {}
        chance = 0.5 if task == "classification" else 0.0
        for model_name in _models(task, seed):
            figures: list[tuple[float, float] | None] = []
            for train_index in (0, 1):  # synthetic, then real
                model = _models(task, seed)[model_name]
                x_train = (
                    dense[train_index]
                    if "linear" in model_name or "logistic" in model_name
                    else ordinal[train_index]
                )
                x_test = dense[2] if x_train is dense[train_index] else ordinal[2]
                y_train, y_test = y_all[train_index], y_all[2]
                label = "synthetic" if train_index == 0 else "real"
                try:
                    if task == "regression":
                        model.fit(trainable(x_train), y_train)
                        pred = model.predict(x_test)
                        figures.append(
                            (
                                float(r2_score(y_test, pred)),
                                float(mean_absolute_error(y_test, pred)),
                            )
                        )
                        continue
                    if np.unique(y_train).size < 2:
                        notes.append(
                            f"{model_name}: the {label} training rows hold one class "
                            f"only; scored as chance (AUC 0.5)"
                        )
                        majority = np.full_like(y_test, y_train[0])
                        figures.append((0.5, float(accuracy_score(y_test, majority))))
                        continue
                    model.fit(trainable(x_train), y_train)
                    figures.append(_classification_scores(model, x_test, y_test, classes))
                except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
                    notes.append(
                        f"{model_name} failed to train on the {label} rows "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
                    )
                    figures.append(None)
            synthetic_fig, real_fig = figures
            tstr, tstr2 = synthetic_fig if synthetic_fig is not None else (chance, math.nan)
            trtr, trtr2 = real_fig if real_fig is not None else (math.nan, math.nan)
            rows.append(
                [model_name, round(tstr, 4), round(trtr, 4), round(tstr2, 4), round(trtr2, 4)]
            )
            scores[model_name] = (tstr, None if real_fig is None else trtr)
        return rows, scores


#: A model whose real-data (TRTR) score is this far below the best model's is taken to have
#: failed on this table, not to set its ceiling.
REFERENCE_FAILURE_GAP = 0.1


def _robust_models(scores: dict[str, tuple[float, float | None]]) -> tuple[list[str], list[str]]:
    """The model families whose TRTR reference is sound, and notes on those left out.

    A family that failed to train on the real rows, or scored far below the best family on
    them (by :data:`REFERENCE_FAILURE_GAP`), is left out of *both* means: its TRTR would drag
    the ceiling down until a synthetic table "beats" real data, and keeping its TSTR alone
    would compare different model sets. When every family is suspect, all are kept.
    """
    real = {m: t for m, (_, t) in scores.items() if t is not None and math.isfinite(t)}
    if not real:
        return list(scores), [
            "every model failed to train on the real rows: the TRTR ceiling is not meaningful"
        ]
    best = max(real.values())
    kept = [m for m, t in real.items() if t >= best - REFERENCE_FAILURE_GAP]
    notes = []
    for model, (_, trtr) in scores.items():
        if model in kept:
            continue
        why = (
            "failed to train on the real rows"
            if trtr is None
            else f"scored {trtr:.3f} on real data, far below the best model ({best:.3f})"
        )
        notes.append(f"{model} {why}: left out of both the TSTR score and its TRTR ceiling")
    return kept, notes


def _classification_scores(
    model: Any, x_test: np.ndarray, y_test: np.ndarray, classes: Any
) -> tuple[float, float]:
    """ROC AUC (one-vs-rest macro for several classes) and accuracy on the test rows; classes
    the model never saw in training get probability 0."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    proba = np.zeros((len(y_test), len(classes)))
    position = {c: i for i, c in enumerate(classes)}
    proba[:, [position[c] for c in model.classes_]] = model.predict_proba(x_test)
    accuracy = float(accuracy_score(y_test, np.asarray(classes)[proba.argmax(axis=1)]))
    present = np.unique(y_test)
    if present.size < 2:
        return 0.5, accuracy
    if len(classes) == 2:
        auc = float(roc_auc_score(y_test == classes[1], proba[:, 1]))
    else:
        keep = [position[c] for c in present]
        sub = proba[:, keep]
        sub = sub / np.clip(sub.sum(axis=1, keepdims=True), 1e-12, None)
        auc = float(roc_auc_score(y_test, sub, multi_class="ovr", labels=present))
    return auc, accuracy


UTILITY_METRICS: tuple[type[Metric], ...] = (TSTRMetric,)
