"""The built-in metric plugins, checked against values computed independently on small tables."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy.stats import chi2, ks_2samp

from privsynth_core import MetricError, MetricResult
from privsynth_core.datasets import adult_frame, adult_schema
from privsynth_core.evaluation.runner import shuffle_columns, type_frame
from privsynth_core.registry import metrics
from privsynth_core.schema import Column, ColumnKind, Schema

NUM = ColumnKind.INTEGER
CAT = ColumnKind.CATEGORICAL


def _schema(**kinds: ColumnKind) -> Schema:
    return Schema(columns=tuple(Column(name=n, kind=k, nullable=True) for n, k in kinds.items()))


def _compute(
    metric_id: str, real: pl.DataFrame, synthetic: pl.DataFrame, schema: Schema, **kwargs: Any
) -> MetricResult:
    return metrics().get(metric_id)().compute(real, synthetic, schema=schema, **kwargs)


@pytest.fixture(scope="module")
def adult_split() -> dict[str, pl.DataFrame]:
    """Three disjoint 1,500-row Adult samples: train, other (a fresh real sample), holdout."""
    schema = adult_schema()
    raw = adult_frame().sample(fraction=1.0, seed=7, shuffle=True)
    parts = {
        name: type_frame(raw.slice(i * 1500, 1500), schema, name)
        for i, name in enumerate(("train", "other", "holdout"))
    }
    return parts


# -- registration ---------------------------------------------------------------------------------


def test_every_metric_declares_group_direction_and_description() -> None:
    expected = {
        "ks",
        "tvd",
        "chi_square",
        "correlation_diff",
        "marginal_2way_tvd",
        "pmse",
        "detection_auc",
        "tstr",
        "exact_copy_rate",
        "dcr",
        "nndr",
        "mia_distance",
        "mia_classifier",
        "dp_guarantee",
    }
    assert expected <= set(metrics().names())
    for entry in metrics().entries():
        cls = entry.cls
        assert cls.group in ("fidelity", "utility", "privacy"), entry.plugin_id
        assert cls.direction in ("higher_is_better", "lower_is_better"), entry.plugin_id
        assert cls.description and cls.name, entry.plugin_id


def test_importing_the_metric_plugins_loads_no_sklearn_scipy_or_evidently() -> None:
    code = (
        "import sys, privsynth_plugins.metrics, privsynth_plugins.report_plots, "
        "privsynth_plugins.evidently_report; "
        "print([m for m in ('sklearn', 'scipy', 'evidently', 'matplotlib') "
        "if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert out == "[]"


# -- fidelity against hand-computed values ----------------------------------------------------------


def test_tvd_of_two_known_distributions_counts_an_unseen_category() -> None:
    schema = _schema(c=CAT)
    real = pl.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20})
    synthetic = pl.DataFrame({"c": ["a"] * 20 + ["b"] * 30 + ["c"] * 40 + ["d"] * 10})
    result = _compute("tvd", real, synthetic, schema)
    # 0.5 * (|.5-.2| + |.3-.3| + |.2-.4| + |0-.1|) = 0.3
    assert result.value == pytest.approx(0.3)
    assert result.details["per_column"]["c"]["tvd"] == pytest.approx(0.3)
    assert result.value_range == (0.0, 1.0) and result.direction == "lower_is_better"


def test_ks_matches_a_hand_value_and_scipy() -> None:
    schema = _schema(x=ColumnKind.CONTINUOUS)
    hand = _compute(
        "ks",
        pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}),
        pl.DataFrame({"x": [3.0, 4.0, 5.0, 6.0]}),
        schema,
    )
    assert hand.value == pytest.approx(0.5)  # the CDFs differ by 1/2 between 2 and 4
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 800), rng.normal(0.3, 1.2, 600)
    result = _compute("ks", pl.DataFrame({"x": a}), pl.DataFrame({"x": b}), schema)
    assert result.value == pytest.approx(ks_2samp(a, b).statistic)


def test_chi_square_statistic_matches_the_textbook_formula() -> None:
    schema = _schema(c=CAT)
    real = pl.DataFrame({"c": ["x"] * 30 + ["y"] * 70})
    synthetic = pl.DataFrame({"c": ["x"] * 50 + ["y"] * 50})
    result = _compute("chi_square", real, synthetic, schema)
    # expected counts 40/60 in both rows: 2 * (10²/40 + 10²/60) = 25/3, one degree of freedom
    figures = result.details["per_column"]["c"]
    assert figures["chi_square"] == pytest.approx(25 / 3)
    assert figures["pvalue"] == pytest.approx(chi2.sf(25 / 3, 1))
    assert result.value == pytest.approx(chi2.sf(25 / 3, 1))


def test_two_way_tvd_sees_joint_structure_that_marginals_miss() -> None:
    schema = _schema(a=CAT, b=CAT)
    real = pl.DataFrame({"a": ["0", "1"] * 50, "b": ["0", "1"] * 50})  # a == b
    synthetic = pl.DataFrame({"a": ["0", "1"] * 50, "b": ["1", "0"] * 50})  # a != b
    result = _compute("marginal_2way_tvd", real, synthetic, schema)
    assert result.details["one_way_tvd"] == {"a": 0.0, "b": 0.0}
    assert result.value == pytest.approx(1.0)


def test_two_way_tvd_bins_numerics_in_real_deciles() -> None:
    schema = _schema(x=NUM, c=CAT)
    real = pl.DataFrame({"x": list(range(1, 101)), "c": ["k"] * 100})
    synthetic = pl.DataFrame({"x": [500] * 100, "c": ["k"] * 100})
    result = _compute("marginal_2way_tvd", real, synthetic, schema)
    # every synthetic value lands in the real data's top decile, which holds 10 % of real rows
    assert result.details["one_way_tvd"]["x"] == pytest.approx(0.9)
    assert result.value == pytest.approx(0.9)


def test_correlation_diff_uses_pearson_cramers_v_and_correlation_ratio() -> None:
    schema = _schema(x=ColumnKind.CONTINUOUS, y=ColumnKind.CONTINUOUS, c=CAT, d=CAT)
    x = np.arange(60, dtype=float)
    c = ["p", "q", "r"] * 20
    real = pl.DataFrame({"x": x, "y": 2 * x + 1, "c": c, "d": c})
    synthetic = pl.DataFrame({"x": x, "y": -x, "c": c, "d": ["p"] * 30 + ["q"] * 30})
    result = _compute("correlation_diff", real, synthetic, schema)
    cols = result.details["columns"]
    real_m, syn_m = np.array(result.details["real"]), np.array(result.details["synthetic"])
    i, j, k, m = (cols.index(n) for n in ("x", "y", "c", "d"))
    assert real_m[i, j] == pytest.approx(1.0) and syn_m[i, j] == pytest.approx(-1.0)
    assert real_m[k, m] == pytest.approx(1.0)  # Cramér's V of two identical columns
    # c is unrelated to d = p/q halves: each half has 10 of each c value
    assert syn_m[k, m] == pytest.approx(0.0, abs=1e-9)
    # correlation ratio of x given c (p, q, r repeat): group means 28.5, 29.5, 30.5
    eta = math.sqrt(np.var([28.5, 29.5, 30.5]) / np.var(x))
    assert real_m[i, k] == pytest.approx(eta, abs=1e-4)  # details are rounded to 4 places


def test_detection_auc_of_identical_tables_is_half(adult_split: dict[str, pl.DataFrame]) -> None:
    schema = adult_schema()
    train = adult_split["train"]
    same = _compute("detection_auc", train, train, schema)
    assert same.value == pytest.approx(0.5, abs=0.02)
    fresh = _compute("detection_auc", train, adult_split["other"], schema)
    assert fresh.value == pytest.approx(0.5, abs=0.06)
    shuffled = _compute("detection_auc", train, shuffle_columns(train, 1), schema)
    assert shuffled.value > 0.8
    pmse = _compute("pmse", train, adult_split["other"], schema)
    assert 0 <= pmse.value < 0.02 and pmse.value_range == (0.0, 0.25)


def test_metrics_handle_nulls_and_unseen_categories() -> None:
    schema = _schema(x=ColumnKind.CONTINUOUS, n=NUM, c=CAT, t=CAT)
    rng = np.random.default_rng(1)
    size = 200
    real = pl.DataFrame(
        {
            "x": [None if i % 7 == 0 else float(v) for i, v in enumerate(rng.normal(size=size))],
            "n": rng.integers(0, 5, size).tolist(),
            "c": [None if i % 5 == 0 else "abc"[i % 3] for i in range(size)],
            "t": ["yes", "no"] * (size // 2),
        }
    )
    synthetic = real.with_columns(
        pl.Series("c", ["zzz" if i % 4 == 0 else "a" for i in range(size)]),
        pl.Series("x", [None] * size, dtype=pl.Float64),
    )
    for metric_id in (
        "ks",
        "tvd",
        "chi_square",
        "correlation_diff",
        "marginal_2way_tvd",
        "detection_auc",
        "pmse",
        "exact_copy_rate",
    ):
        result = _compute(metric_id, real, synthetic, schema)
        assert math.isfinite(result.value), metric_id
    for metric_id in ("dcr", "nndr", "mia_distance", "mia_classifier"):
        result = _compute(metric_id, real, synthetic, schema, holdout=real.reverse())
        assert math.isfinite(result.value), metric_id
    tstr = _compute("tstr", real, synthetic, schema, target="t")
    assert 0 <= tstr.value <= 1
    assert _compute("ks", real, synthetic, schema).details["per_column"]["x"]["ks"] == 1.0


# -- utility ----------------------------------------------------------------------------------------


def test_tstr_refuses_a_missing_or_unknown_target(adult_split: dict[str, pl.DataFrame]) -> None:
    train = adult_split["train"]
    with pytest.raises(MetricError, match="needs a target column"):
        _compute("tstr", train, train, adult_schema())
    with pytest.raises(MetricError, match="not in the schema"):
        _compute("tstr", train, train, adult_schema(), target="salary")


def test_tstr_of_a_real_sample_matches_trtr_and_of_shuffled_is_chance(
    adult_split: dict[str, pl.DataFrame],
) -> None:
    schema, train = adult_schema(), adult_split["train"]
    kwargs = {"target": "income", "holdout": adult_split["holdout"]}
    real = _compute("tstr", train, adult_split["other"], schema, **kwargs)
    assert real.details["task"] == "classification"
    assert len(real.details["table"]["rows"]) == 3  # three model families
    assert real.value == pytest.approx(real.details["trtr"], abs=0.04)
    assert real.details["trtr"] > 0.8
    shuffled = _compute("tstr", train, shuffle_columns(train, 2), schema, **kwargs)
    assert shuffled.value < 0.62
    regression = _compute("tstr", train, adult_split["other"], schema, target="age")
    assert regression.details["task"] == "regression" and regression.details["score"] == "R²"


# -- privacy ----------------------------------------------------------------------------------------


def test_a_copy_of_the_training_data_is_flagged(adult_split: dict[str, pl.DataFrame]) -> None:
    schema, train, holdout = adult_schema(), adult_split["train"], adult_split["holdout"]
    copy = _compute("exact_copy_rate", train, train, schema, holdout=holdout)
    assert copy.value == 1.0
    assert metrics().get("exact_copy_rate")().verdict(copy)[0] == "poor"
    assert _compute("dcr", train, train, schema, holdout=holdout).value > 0.95
    assert _compute("nndr", train, train, schema, holdout=holdout).value == 0.0
    assert _compute("mia_distance", train, train, schema, holdout=holdout).value > 0.95
    assert _compute("mia_classifier", train, train, schema, holdout=holdout).value > 0.75


def test_a_fresh_real_sample_is_not_flagged(adult_split: dict[str, pl.DataFrame]) -> None:
    schema, train, holdout = adult_schema(), adult_split["train"], adult_split["holdout"]
    other = adult_split["other"]
    rate = _compute("exact_copy_rate", train, other, schema, holdout=holdout)
    assert rate.value < 0.01
    assert _compute("dcr", train, other, schema, holdout=holdout).value == pytest.approx(
        0.5, abs=0.05
    )
    for metric_id in ("mia_distance", "mia_classifier"):
        result = _compute(metric_id, train, other, schema, holdout=holdout)
        assert result.value == pytest.approx(0.5, abs=0.06), metric_id


@pytest.mark.parametrize("metric_id", ["dcr", "nndr", "mia_distance", "mia_classifier"])
def test_attacks_refuse_to_run_without_a_holdout(
    metric_id: str, adult_split: dict[str, pl.DataFrame]
) -> None:
    with pytest.raises(MetricError, match="needs a holdout"):
        _compute(metric_id, adult_split["train"], adult_split["other"], adult_schema())


def test_dp_guarantee_reads_the_manifest() -> None:
    schema = _schema(c=CAT)
    frame = pl.DataFrame({"c": ["a", "b"]})
    metric = metrics().get("dp_guarantee")()
    with pytest.raises(MetricError, match="manifest"):
        metric.compute(frame, frame, schema=schema)
    manifest = {
        "differentially_private": True,
        "generator_id": "dpctgan",
        "privacy": {"epsilon": 0.8, "delta": 1e-6, "accountant": "rdp", "domain": "public"},
    }
    result = metric.compute(frame, frame, schema=schema, manifest=manifest)
    assert result.value == 0.8 and result.details["accountant"] == "rdp"
    assert metric.verdict(result)[0] == "good"
    not_dp = metric.compute(
        frame,
        frame,
        schema=schema,
        manifest={
            "differentially_private": False,
            "privacy": {"label": "NOT differentially private"},
        },
    )
    assert math.isinf(not_dp.value) and metric.verdict(not_dp)[0] == "poor"


# -- speed ------------------------------------------------------------------------------------------


@pytest.mark.extended
def test_every_metric_copes_with_50k_rows_by_40_columns() -> None:
    """50k x 40 (Adult's 15 columns, 25 derived ones): every metric gives a number (its time is
    measured in bench/)."""
    schema = adult_schema()
    base = type_frame(adult_frame(), schema, "adult")
    extra_cols = []
    for i in range(25):
        if i % 2:
            extra_cols.append(Column(name=f"num{i}", kind=ColumnKind.CONTINUOUS, nullable=True))
        else:
            extra_cols.append(Column(name=f"cat{i}", kind=CAT, nullable=True))
    big_schema = Schema(columns=schema.columns + tuple(extra_cols))

    def widen(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
        r = np.random.default_rng(seed)
        n = frame.height
        cols = {
            c.name: (
                frame["age"].cast(pl.Float64) * r.normal(1, 0.2, n)
                if c.kind is ColumnKind.CONTINUOUS
                else pl.Series([f"v{v}" for v in r.integers(0, 12, n)])
            )
            for c in extra_cols
        }
        return frame.with_columns(**cols)

    real = widen(base.sample(50_000, with_replacement=True, seed=1), 1)
    synthetic = widen(base.sample(50_000, with_replacement=True, seed=2), 2)
    holdout = widen(base.sample(20_000, with_replacement=True, seed=3), 3)
    assert real.width == 40
    for entry in metrics().entries():
        if entry.plugin_id == "dp_guarantee":
            continue
        # How long each takes is measured in bench/ (a loaded machine makes a wall-clock
        # assertion flaky); here every metric must cope with the size and give a number.
        result = entry.cls().compute(
            real, synthetic, schema=big_schema, holdout=holdout, target="income"
        )
        assert result.value is None or result.value == result.value, entry.plugin_id
