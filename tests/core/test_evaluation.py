"""evaluate(): metrics through the registry, reference points, verdicts, and the report folder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from privsynth_core import InputFileError, MetricError, UnknownPluginError, hookimpl
from privsynth_core.datasets import adult_frame, adult_schema
from privsynth_core.evaluation.report import ReportContext, ReportSection, SectionOutput
from privsynth_core.evaluation.results import NOT_DP_NOTICE
from privsynth_core.evaluation.runner import evaluate, shuffle_columns, type_frame
from privsynth_core.metric import Metric, MetricResult
from privsynth_core.plugins import pm
from privsynth_core.registry import reset_registries

ROOT = Path(__file__).parents[2]
FAST = [
    "marginal_2way_tvd",
    "detection_auc",
    "tstr",
    "ks",
    "tvd",
    "exact_copy_rate",
    "mia_distance",
    "dcr",
]


@pytest.fixture(scope="module")
def adult_parts() -> dict[str, pl.DataFrame]:
    """Disjoint 2,000-row Adult samples: the training rows, a second real sample, a holdout."""
    raw = adult_frame().sample(fraction=1.0, seed=11, shuffle=True)
    return {name: raw.slice(i * 2000, 2000) for i, name in enumerate(("train", "other", "holdout"))}


def _verdicts(result: Any) -> dict[str, str]:
    return {h.metric_id: h.verdict for h in result.headlines}


def test_real_vs_real_and_real_vs_shuffled_get_clearly_different_verdicts(
    adult_parts: dict[str, pl.DataFrame],
) -> None:
    schema = adult_schema()
    train = adult_parts["train"]
    kwargs = {
        "schema": schema,
        "holdout": adult_parts["holdout"],
        "target": "income",
        "metric_ids": FAST,
    }
    real = evaluate(train, adult_parts["other"], **kwargs)
    shuffled = evaluate(train, shuffle_columns(type_frame(train, schema, "train"), 5), **kwargs)
    for metric_id in ("marginal_2way_tvd", "detection_auc", "tstr"):
        assert _verdicts(real)[metric_id] == "good", real.verdicts[metric_id]
        assert _verdicts(shuffled)[metric_id] == "poor", shuffled.verdicts[metric_id]
    # The reference points frame the number: ceiling (real holdout) < value-ish < floor.
    tvd = next(h for h in real.headlines if h.metric_id == "marginal_2way_tvd")
    assert tvd.ceiling is not None and tvd.floor is not None
    assert tvd.ceiling < tvd.floor and tvd.value < 0.8 * tvd.floor
    tstr = next(h for h in real.headlines if h.metric_id == "tstr")
    assert tstr.ceiling == real.result("tstr").details["trtr"]  # TRTR is the TSTR ceiling
    # Headlines come fidelity first, then utility, then privacy.
    groups = [h.group for h in real.headlines]
    assert groups == sorted(groups, key=["fidelity", "utility", "privacy"].index)


def test_the_independence_floor_on_full_adult_matches_the_issue() -> None:
    """The issue: a column-shuffled copy of Adult reaches a 2-way TVD of 0.074."""
    schema = adult_schema()
    real = type_frame(adult_frame(), schema, "adult")
    result = evaluate(
        real,
        shuffle_columns(real, 0),
        schema=schema,
        metric_ids=["marginal_2way_tvd"],
        references=False,
    )
    assert result.results[0].value == pytest.approx(0.074, abs=0.004)


def test_default_run_skips_metrics_whose_inputs_are_missing(
    adult_parts: dict[str, pl.DataFrame],
) -> None:
    schema = adult_schema()
    result = evaluate(
        adult_parts["train"].head(300),
        adult_parts["other"].head(300),
        schema=schema,
        references=False,
        metric_ids=None,
    )
    skipped = {s.metric_id: s.reason for s in result.skipped}
    assert "--target" in skipped["tstr"] and "--holdout" in skipped["mia_distance"]
    assert "--manifest" in skipped["dp_guarantee"]
    assert {"marginal_2way_tvd", "ks", "detection_auc"} <= {r.metric_id for r in result.results}


def test_a_named_metric_without_its_input_is_refused(
    adult_parts: dict[str, pl.DataFrame],
) -> None:
    train, other = adult_parts["train"], adult_parts["other"]
    with pytest.raises(MetricError, match="target"):
        evaluate(train, other, schema=adult_schema(), metric_ids=["tstr"])
    with pytest.raises(MetricError, match="holdout"):
        evaluate(train, other, schema=adult_schema(), metric_ids=["dcr"])
    with pytest.raises(MetricError, match="not in the schema"):
        evaluate(train, other, schema=adult_schema(), metric_ids=["ks"], target="salary")
    with pytest.raises(UnknownPluginError, match="marginal_2way_tvd"):
        evaluate(train, other, schema=adult_schema(), metric_ids=["nope"])


def test_report_folder_has_json_page_plots_and_the_not_dp_notice(
    adult_parts: dict[str, pl.DataFrame],
    tmp_path: Path,
) -> None:
    manifest = {
        "differentially_private": True,
        "generator_id": "dpctgan",
        "privacy": {"epsilon": 3.0, "delta": 1e-6, "accountant": "rdp", "domain": "public"},
    }
    out = tmp_path / "report"
    result = evaluate(
        adult_parts["train"].head(800),
        adult_parts["other"].head(800),
        schema=adult_schema(),
        holdout=adult_parts["holdout"].head(800),
        target="income",
        manifest=manifest,
        metric_ids=[*FAST, "correlation_diff", "dp_guarantee"],
        output_dir=out,
    )
    assert result.output_dir == out and not result.section_errors
    data = json.loads(
        (out / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"),
    )
    assert data["notice"] == NOT_DP_NOTICE
    assert data["privacy_guarantee"]["epsilon"] == 3.0
    assert {m["metric_id"] for m in data["metrics"]} >= set(FAST)
    dp = next(h for h in data["headline"] if h["metric_id"] == "dp_guarantee")
    assert dp["verdict"] == "fair" and "ε = 3" in dp["verdict_text"]
    page = (out / "report.html").read_text()
    assert "NOT covered by the differential-privacy guarantee" in page
    assert "Custodian only" in page and "(ε = 3" in page
    assert not re.search(r"""(src|href)=["']https?://""", page), "the page must be offline"
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) >= len(adult_schema().names) + 3  # one per column + heatmaps
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert page.count("data:image/png;base64,") == len(pngs)  # embedded: self-contained
    evidently = out / "evidently_report.html"
    assert evidently.stat().st_size > 100_000 and 'src="evidently_report.html"' in page
    assert set(data["files"]) >= {"report.html", "metrics.json", "evidently_report.html"}
    # The folder is not overwritten by accident, and a refused write leaves it as it was.
    with pytest.raises(InputFileError, match="not empty"):
        evaluate(
            adult_parts["train"].head(50),
            adult_parts["other"].head(50),
            schema=adult_schema(),
            metric_ids=["ks"],
            output_dir=out,
        )
    assert (out / "metrics.json").read_text() == json.dumps(
        json.loads((out / "metrics.json").read_text()), indent=2, ensure_ascii=False
    )
    assert evidently.exists()


class _Broken(ReportSection):
    section_id = "broken-section"
    title = "A broken section"
    order = 70

    def render(self, context: ReportContext, directory: Path) -> SectionOutput:
        raise RuntimeError("boom")


class _RowCount(ReportSection):
    section_id = "row-count"
    title = "Row counts (third-party section)"
    order = 5
    seen: ClassVar[list[str]] = []

    def render(self, context: ReportContext, directory: Path) -> SectionOutput:
        self.seen.extend(r.metric_id for r in context.results)
        return SectionOutput(html=f"<p>real rows: {context.real.height}</p>")


class _SectionPlugin:
    @hookimpl
    def register_report_sections(self, register: Any) -> None:
        register(_Broken)
        register(_RowCount)


@pytest.fixture
def section_plugin(monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Iterator[None]:
    """The test sections registered in process; the Evidently section blocked to stay quick
    (monkeypatch is set up before, and torn down after, fresh_plugins unblocks it)."""
    from privsynth_core.plugins import load_plugins

    monkeypatch.setenv("PRIVSYNTH_DISABLED_PLUGINS", "evidently")
    load_plugins()
    pm.register(_SectionPlugin(), name="test-sections")
    reset_registries()
    try:
        yield
    finally:
        pm.unregister(name="test-sections")


def test_third_party_sections_appear_and_a_failing_one_costs_only_itself(
    section_plugin: None,
    adult_parts: dict[str, pl.DataFrame],
    tmp_path: Path,
) -> None:
    out = tmp_path / "r"
    result = evaluate(
        adult_parts["train"].head(200),
        adult_parts["other"].head(200),
        schema=adult_schema(),
        metric_ids=["ks"],
        output_dir=out,
    )
    page = (out / "report.html").read_text()
    assert "real rows: 200" in page and "Row counts (third-party section)" in page
    assert "This section failed: RuntimeError: boom" in page
    assert result.section_errors == {"broken-section": "RuntimeError: boom"}
    assert _RowCount.seen == ["ks"]
    assert "Evidently" not in page  # blocked by PRIVSYNTH_DISABLED_PLUGINS


def test_each_fidelity_headline_names_its_worst_columns_and_pairs(
    adult_parts: dict[str, pl.DataFrame],
) -> None:
    schema = adult_schema()
    real = type_frame(adult_parts["train"], schema, "real")
    # A synthetic table that is real rows with one column broken: its headline must say so.
    broken = type_frame(adult_parts["other"], schema, "other").with_columns(
        pl.lit(90, dtype=pl.Int64).alias("age")
    )
    result = evaluate(
        real,
        broken,
        schema=schema,
        holdout=adult_parts["holdout"],
        metric_ids=["marginal_2way_tvd", "detection_auc"],
    )
    heads = {h.metric_id: h for h in result.headlines}
    tvd_lines = heads["marginal_2way_tvd"].worst
    assert tvd_lines[0].startswith("worst pairs: ") and "age" in tvd_lines[0].split(",")[0]
    assert tvd_lines[1].startswith("worst columns: age (")
    assert heads["detection_auc"].worst[0].startswith("worst columns: age (")
    assert heads["marginal_2way_tvd"].verdict == "poor"


def test_evaluate_reports_progress_per_metric(adult_parts: dict[str, pl.DataFrame]) -> None:
    from privsynth_core.generator import Progress

    seen: list[Progress] = []
    evaluate(
        adult_parts["train"],
        adult_parts["other"],
        schema=adult_schema(),
        metric_ids=["tvd", "ks"],
        references=False,
        progress=seen.append,
    )
    assert [(p.epoch, p.epochs, p.unit) for p in seen] == [
        (0, 2, "metric"),
        (1, 2, "metric"),
        (2, 2, "metric"),
    ]
    assert [p.stage for p in seen] == ["tvd", "ks", "done"]


def test_a_failed_reference_model_is_left_out_of_both_means_and_named() -> None:
    from privsynth_plugins.metrics.utility import _robust_models

    # The issue's case: one of three real-data models scored 0.605 while the others ~0.9.
    scores: dict[str, tuple[float, float | None]] = {
        "logistic regression": (0.80, 0.605),
        "gradient boosting": (0.86, 0.91),
        "random forest": (0.85, 0.90),
    }
    kept, notes = _robust_models(scores)
    assert kept == ["gradient boosting", "random forest"]
    assert len(notes) == 1 and notes[0].startswith("logistic regression scored 0.605")
    kept, notes = _robust_models({"a": (0.7, None), "b": (0.8, 0.9)})
    assert kept == ["b"] and "failed to train on the real rows" in notes[0]


class _FlakyReference(Metric):
    """A headline metric whose reference computation fails (as a broken plugin might)."""

    metric_id = "flaky"
    name = "flaky"
    group = "fidelity"
    direction = "lower_is_better"
    headline = True

    def compute(
        self,
        real: pl.DataFrame,
        synthetic: pl.DataFrame,
        *,
        schema: Any,
        holdout: pl.DataFrame | None = None,
        target: str | None = None,
        seed: int = 0,
    ) -> MetricResult:
        if synthetic.height != 7:
            raise MetricError("no reference for you")
        return MetricResult(
            metric_id="flaky",
            name="flaky",
            group="fidelity",
            value=0.2,
            direction="lower_is_better",
        )


def test_a_reference_point_that_cannot_be_computed_is_noted_not_fatal(
    adult_parts: dict[str, pl.DataFrame],
) -> None:
    from privsynth_core.evaluation.runner import _headline

    schema = adult_schema()
    real = type_frame(adult_parts["train"], schema, "real")
    metric = _FlakyReference()
    result = metric.compute(real, real.head(7), schema=schema)
    head = _headline(
        metric, result, real, shuffle_columns(real), real.head(50), schema, None, None, 0
    )
    assert head.ceiling is None and head.floor is None
    assert any("real-holdout ceiling could not be computed" in n for n in head.notes)
    assert any("shuffled-columns floor could not be computed" in n for n in head.notes)


def test_a_score_beyond_its_real_data_ceiling_is_flagged() -> None:
    from privsynth_core.evaluation.results import Headline
    from privsynth_core.evaluation.runner import _verdict

    metric = _FlakyReference()
    result = MetricResult(
        metric_id="flaky", name="flaky", group="fidelity", value=0.01, direction="lower_is_better"
    )
    head = Headline("flaky", "flaky", "fidelity", 0.01, "lower_is_better", ceiling=0.05, floor=0.2)
    level, _ = _verdict(metric, result, head)
    assert level == "good" and "reference is probably unreliable" in head.notes[0]
