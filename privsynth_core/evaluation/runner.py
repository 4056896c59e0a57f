"""Evaluate a synthetic table against the real one: metrics, verdicts, and the report folder.

:func:`evaluate` runs metric plugins (found through the registry: core never names one), adds
reference points to each headline score so the number can be read, turns each headline into a
plain-language verdict, and, given an output folder, writes ``metrics.json``, ``report.html``
and the report sections' files (plots, the Evidently page) atomically.

Reference points (DESIGN §4.6; issue 11):

- the **ceiling**: the score a real holdout gets against the training data (only when a holdout
  is given), or a figure the metric reports itself (``details["ceiling"]``, e.g. TSTR's TRTR);
- the **floor**: the score of a copy of the real data with every column shuffled independently:
  perfect marginals and no joint structure at all.

A reference point that cannot be computed is left out with a note (it never costs the
evaluation), and a score beyond its real-data ceiling is flagged as a sign that the reference is
unreliable. Each fidelity headline names where it falls short most (``Headline.worst``: the
metric's ``details["worst"]`` columns and pairs). The guarantee reported is the ledger's where
the custodian's records allow (:mod:`privsynth_core.privacy.guarantee`).

Everything here reads the real data: the results are **not** covered by the DP guarantee.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ..errors import MetricError, SchemaError
from ..generator import Progress, ProgressCallback
from ..metric import Metric, MetricResult, Verdict
from .results import EvaluationResult, Headline, SkippedMetric

if TYPE_CHECKING:
    from ..schema import Schema
    from ..table import Table

_GROUP_ORDER = {"fidelity": 0, "utility": 1, "privacy": 2}
_GENERIC_TEXT: dict[str, dict[str, str]] = {
    "fidelity": {
        "good": "close to real data",
        "fair": "keeps much of the real structure, with visible gaps",
        "poor": "far from the real data",
    },
    "utility": {
        "good": "models trained on it predict almost as well as models trained on real data",
        "fair": "useful, but clearly below models trained on real data",
        "poor": "models trained on it learn little of the real relationships",
    },
    "privacy": {
        "good": "no measurable leak",
        "fair": "a weak membership signal: look at the nearest-record figures",
        "poor": "training records can be recognised: do not release",
    },
}


def type_frame(frame: pl.DataFrame | Table, schema: Schema, label: str) -> pl.DataFrame:
    """``frame``'s schema columns cast to their kinds, values left as they are.

    Unlike :func:`~privsynth_core.validation.conform`, values outside the domain are kept: an
    unseen category is something an evaluation must see, not hide. A value that does not
    convert to its column's kind is read as missing, row by row, as a fit reads it: one bad
    record never stops an evaluation.

    Raises:
        SchemaError: columns of the schema are missing.
    """
    from ..validation import cast_column, polars_dtype

    if not isinstance(frame, pl.DataFrame):
        frame = frame.frame
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise SchemaError(
            f"the {label} table does not fit the schema: column(s) missing: {', '.join(missing)}"
        )
    typed = {}
    for col in schema.columns:
        series = frame[col.name]
        if series.dtype != polars_dtype(col.kind):
            series, _ = cast_column(series, col)
        typed[col.name] = series
    return pl.DataFrame(typed)


def shuffle_columns(frame: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """A copy of ``frame`` with every column permuted independently: the independence floor."""
    return frame.select(pl.col(n).shuffle(seed=seed + i) for i, n in enumerate(frame.columns))


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a model manifest (see :func:`privsynth_core.privacy.guarantee.load_manifest`).

    Raises:
        InputFileError, GeneratorError: unreadable, or not a valid model manifest.
    """
    from ..privacy.guarantee import load_manifest as load

    return load(path)


def _for_metrics(
    manifest: dict[str, Any] | None, guarantee: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The manifest as metrics read it: its privacy block replaced by the reported guarantee."""
    if manifest is None or guarantee is None or not guarantee.get("differentially_private"):
        return manifest
    return {**manifest, "privacy": guarantee}


def _select(metric_ids: list[str] | None) -> tuple[list[type[Metric]], bool]:
    from ..registry import metrics

    registry = metrics()
    if metric_ids is None:
        return [registry.get(name) for name in registry.names()], False
    return [registry.get(name) for name in metric_ids], True


def _missing_input(cls: type[Metric], holdout: Any, target: Any, manifest: Any) -> str | None:
    if cls.needs_target and target is None:
        return "needs a target column (--target COLUMN)"
    if cls.needs_holdout and holdout is None:
        return "needs a real holdout table (--holdout FILE)"
    if cls.needs_manifest and manifest is None:
        return "needs the model manifest (--manifest MODEL_DIR)"
    return None


def _run(
    metric: Metric,
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    *,
    schema: Schema,
    holdout: pl.DataFrame | None,
    target: str | None,
    manifest: dict[str, Any] | None,
    seed: int,
) -> MetricResult:
    kwargs: dict[str, Any] = {"schema": schema, "holdout": holdout, "target": target, "seed": seed}
    if metric.needs_manifest:
        kwargs["manifest"] = manifest
    return metric.compute(real, synthetic, **kwargs)


def evaluate(
    real: pl.DataFrame | Table,
    synthetic: pl.DataFrame | Table,
    *,
    schema: Schema,
    metric_ids: list[str] | None = None,
    holdout: pl.DataFrame | Table | None = None,
    target: str | None = None,
    manifest: dict[str, Any] | None = None,
    seed: int = 0,
    references: bool = True,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    record: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Score ``synthetic`` against ``real`` with metric plugins; optionally write the report.

    Args:
        real: the real (training) table, raw or typed.
        synthetic: the synthetic table.
        schema: the columns to compare and their kinds.
        metric_ids: metrics to run; ``None`` runs every registered metric whose inputs are
            available and skips the rest (listed in ``skipped``). Named metrics must run.
        holdout: real rows the generator never saw (privacy attacks, the fidelity ceiling).
        target: the column the utility metrics predict.
        manifest: the model manifest; the guarantee reported is the ledger's where the
            custodian's record of the model is found, else the manifest's, marked as not
            verified (:func:`privsynth_core.privacy.guarantee.verified_guarantee`).
        seed: seed of every sample and model.
        references: compute the ceiling and floor of headline scores.
        output_dir: write ``metrics.json``, ``report.html`` and plots there, atomically.
        overwrite: replace a non-empty ``output_dir``.
        record: the custodian's record of the model (a run's ``custodian/manifest.json``);
            default: looked up in the model store by the model's id.
        progress: called before each metric (unit ``metric``; writing the report counts as
            one more) and once at the end.

    Raises:
        MetricError: a named metric cannot run (e.g. no target given), or ``target`` is not a
            column of the schema.
        SchemaError: a table does not fit the schema.
        UnknownPluginError: a named metric is not installed.
    """
    started = time.perf_counter()
    if target is not None and target not in schema.names:
        raise MetricError(
            f"target column {target!r} is not in the schema; columns: {', '.join(schema.names)}"
        )
    real_f = type_frame(real, schema, "real")
    syn_f = type_frame(synthetic, schema, "synthetic")
    hold_f = type_frame(holdout, schema, "holdout") if holdout is not None else None
    from ..privacy.guarantee import verified_guarantee

    guarantee = verified_guarantee(manifest, record)
    # Metrics read the guarantee to report (the ledger's, where known), not the file's.
    manifest_for_metrics = _for_metrics(manifest, guarantee)
    classes, explicit = _select(metric_ids)
    results: list[MetricResult] = []
    headlines: list[Headline] = []
    verdicts: dict[str, tuple[Verdict, str]] = {}
    skipped: list[SkippedMetric] = []
    seconds: dict[str, float] = {}
    shuffled = shuffle_columns(real_f, seed) if references else None
    # The report (plots, Evidently) counts as one more unit: it can take as long as a metric.
    units = len(classes) + (1 if output_dir is not None else 0)

    def report(done: int, stage: str) -> None:
        if progress is not None:
            progress(Progress(epoch=done, epochs=units, step=done, unit="metric", stage=stage))

    for done, cls in enumerate(classes):
        report(done, cls.metric_id)
        reason = _missing_input(cls, hold_f, target, manifest)
        if reason and not explicit:
            skipped.append(SkippedMetric(cls.metric_id, reason))
            continue
        metric = cls()
        tick = time.perf_counter()
        try:
            result = _run(
                metric,
                real_f,
                syn_f,
                schema=schema,
                holdout=hold_f,
                target=target,
                manifest=manifest_for_metrics,
                seed=seed,
            )
        except MetricError as exc:
            if explicit:
                raise
            skipped.append(SkippedMetric(cls.metric_id, str(exc)))
            continue
        results.append(result)
        headline = None
        if metric.headline:
            headline = _headline(
                metric, result, real_f, shuffled, hold_f, schema, target, manifest_for_metrics, seed
            )
            headlines.append(headline)
        verdicts[result.metric_id] = _verdict(metric, result, headline)
        if headline is not None:
            headline.verdict, headline.verdict_text = verdicts[result.metric_id]
        seconds[cls.metric_id] = time.perf_counter() - tick
    headlines.sort(key=lambda h: _GROUP_ORDER.get(h.group, 9))
    seconds["metrics_total"] = time.perf_counter() - started
    evaluation = EvaluationResult(
        results=results,
        headlines=headlines,
        verdicts=verdicts,
        skipped=skipped,
        guarantee=guarantee,
        seconds=seconds,
        inputs={
            "real_rows": real_f.height,
            "synthetic_rows": syn_f.height,
            "holdout_rows": hold_f.height if hold_f is not None else None,
            "columns": schema.names,
            "target": target,
            "seed": seed,
        },
    )
    if output_dir is not None:
        from .report_html import write_report

        report(len(classes), "writing the report")
        write_report(
            evaluation,
            Path(output_dir),
            real=real_f,
            synthetic=syn_f,
            holdout=hold_f,
            schema=schema,
            target=target,
            manifest=manifest_for_metrics,
            seed=seed,
            overwrite=overwrite,
        )
        evaluation.seconds["total"] = time.perf_counter() - started
        # Rewrite metrics.json so it carries the final timings too (still atomic).
        from ..fileio import atomic_write_text

        atomic_write_text(
            Path(output_dir) / "metrics.json",
            json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False),
        )
    if units:
        report(units, "done")
    return evaluation


def _reference(
    metric: Metric,
    real: pl.DataFrame,
    other: pl.DataFrame,
    what: str,
    notes: list[str],
    **kwargs: Any,
) -> float | None:
    """One reference score, or None (with a note saying why) when it cannot be computed."""
    try:
        value = _run(metric, real, other, **kwargs).value
    except Exception as exc:  # a reference point must never cost the user the evaluation
        notes.append(
            f"the {what} could not be computed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); judged without it"
        )
        return None
    if not math.isfinite(value):
        notes.append(f"the {what} has no finite value; judged without it")
        return None
    return float(value)


def _headline(
    metric: Metric,
    result: MetricResult,
    real: pl.DataFrame,
    shuffled: pl.DataFrame | None,
    holdout: pl.DataFrame | None,
    schema: Schema,
    target: str | None,
    manifest: dict[str, Any] | None,
    seed: int,
) -> Headline:
    """The headline entry of ``result`` with its reference points (see the module docstring)."""
    head = Headline(
        result.metric_id,
        result.name,
        result.group,
        result.value,
        result.direction,
        ideal=result.details.get("ideal"),
        worst=_worst(result.details.get("worst")),
    )
    head.notes += [str(n) for n in result.details.get("reference_notes", [])]
    ceiling = result.details.get("ceiling")
    if isinstance(ceiling, int | float) and math.isfinite(ceiling):
        head.ceiling = float(ceiling)
    # Privacy scores are judged against chance (their ideal), not against shuffled copies.
    if shuffled is None or result.group == "privacy":
        return head
    if head.ceiling is None and holdout is not None and not metric.needs_holdout:
        head.ceiling = _reference(
            metric,
            real,
            holdout,
            "real-holdout ceiling",
            head.notes,
            schema=schema,
            holdout=None,
            target=target,
            manifest=manifest,
            seed=seed,
        )
    head.floor = _reference(
        metric,
        real,
        shuffled,
        "shuffled-columns floor",
        head.notes,
        schema=schema,
        holdout=holdout,
        target=target,
        manifest=manifest,
        seed=seed,
    )
    return head


def _worst(worst: Any) -> list[str]:
    """``details["worst"]`` (``{"pairs": [[a, b, value], ...], "columns": [[c, value], ...]}``)
    as lines for people."""
    if not isinstance(worst, dict):
        return []
    lines = []
    for what, items in worst.items():
        shown = []
        for item in items or []:
            *names, value = item
            shown.append(f"{' × '.join(str(n) for n in names)} ({value:.3g})")
        if shown:
            lines.append(f"worst {what}: {', '.join(shown)}")
    return lines


def _verdict(
    metric: Metric, result: MetricResult, headline: Headline | None
) -> tuple[Verdict, str]:
    """The metric's own verdict, else one from the reference points, else from thresholds."""
    own = metric.verdict(result)
    if own is not None:
        return own
    value, group = result.value, result.group
    texts = _GENERIC_TEXT.get(group, _GENERIC_TEXT["fidelity"])
    if not math.isfinite(value):
        return "unknown", "no finite value"
    sign = 1.0 if result.direction == "higher_is_better" else -1.0
    floor = headline.floor if headline else None
    ceiling = headline.ceiling if headline else None
    if floor is not None:
        gap = sign * (ceiling - floor) if ceiling is not None else None
        if sign * (value - floor) <= 0.05 * (gap if gap and gap > 0 else abs(floor) or 1e-9):
            return "poor", (
                f"{texts['poor']}: no better than a copy of the real data with "
                f"every column shuffled independently ({floor:.3g})"
            )
        if gap is not None and gap > 0:
            share = sign * (value - floor) / gap
            level: Verdict = "good" if share >= 0.8 else "fair" if share >= 0.5 else "poor"
            if share >= 1:
                if share > 1.05 and headline is not None:
                    headline.notes.append(
                        f"the score is better than the real-data reference ({value:.3g} vs "
                        f"{ceiling:.3g}); a synthetic table rarely beats real data, so the "
                        f"reference is probably unreliable here (a small holdout, or a "
                        f"reference model that did poorly): read it with care"
                    )
                return level, (
                    f"{texts[level]}: as good as the real-data reference "
                    f"({ceiling:.3g}; shuffled columns: {floor:.3g})"
                )
            return level, (
                f"{texts[level]}: {share:.0%} of the way from independent columns "
                f"({floor:.3g}) to real data ({ceiling:.3g})"
            )
    if metric.thresholds is not None:
        good, fair = metric.thresholds
        level = (
            "good"
            if sign * value >= sign * good
            else "fair"
            if sign * value >= sign * fair
            else "poor"
        )
        limits = "≤" if sign < 0 else "≥"
        return level, f"{texts[level]} (good {limits} {good:g}, fair {limits} {fair:g})"
    return "unknown", "no reference point to judge this value by"
