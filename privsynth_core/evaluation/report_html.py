"""The evaluation report folder: ``report.html`` (one self-contained page) and ``metrics.json``.

The page is plain HTML with inline CSS: the summary (headline scores, verdicts, the privacy
guarantee), a table per metric group, and the sections contributed by plugins through
``register_report_sections`` (plots, the Evidently report), ordered by their ``order``. It opens
with the notice that it holds statistics of the real data and is not covered by the DP guarantee.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import atomic_directory
from .report import ReportContext, SectionOutput
from .results import NOT_DP_NOTICE, EvaluationResult, Headline

if TYPE_CHECKING:
    import polars as pl

    from ..metric import MetricResult
    from ..schema import Schema

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
margin:0;background:#f4f6f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 60px;background:#fff}
h1{font-size:26px;margin:6px 0 2px}h2{font-size:20px;margin:34px 0 10px;padding-bottom:4px;
border-bottom:2px solid #e2e6ec}h3{font-size:16px;margin:18px 0 6px}
.sub{color:#5b6472;margin:0 0 14px}
.notice{border:3px solid #b42318;background:#fef3f2;color:#7a1a12;padding:12px 16px;
border-radius:6px;font-size:16px;margin:14px 0}
.notice strong{display:block;font-size:18px;margin-bottom:4px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:14px}
th,td{border-bottom:1px solid #e2e6ec;padding:5px 10px;text-align:left;vertical-align:top}
th{background:#f0f3f7;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;font-size:13px}
.good{background:#dcfae6;color:#05603a}.fair{background:#fef0c7;color:#93370d}
.poor{background:#fee4e2;color:#912018}.unknown{background:#eaecf0;color:#344054}
.guarantee{border-left:6px solid #3b6ea8;background:#f0f5fb;padding:10px 14px;margin:10px 0;
font-size:15px}.guarantee.notdp{border-color:#b42318;background:#fef3f2}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:8px}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:10px}
td.nowrap,td.num{white-space:nowrap}
figure{margin:0}figure img{max-width:100%;height:auto;border:1px solid #eef0f3}
figure.wide img{width:100%}.legend,.note{color:#5b6472;font-size:13px}
nav{font-size:14px;margin:8px 0 0}nav a{margin-right:14px}
iframe.evidently{width:100%;height:900px;border:1px solid #d0d5dd;margin-top:8px}
details{margin:4px 0 10px}summary{cursor:pointer;color:#3b6ea8}
.error{color:#912018;font-weight:600}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return html.escape(str(value))


def _chip(level: str, text: str = "") -> str:
    return f'<span class="chip {level}">{level}</span> {html.escape(text)}'


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=num>{_fmt(v)}</td>"
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{_fmt(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _guarantee_html(evaluation: EvaluationResult) -> str:
    g = evaluation.guarantee
    if g is None:
        return (
            '<div class="guarantee notdp"><b>Privacy guarantee: unknown.</b> No model '
            "manifest was given (<code>--manifest</code>), so this report cannot say whether "
            "the synthetic table is differentially private.</div>"
        )
    if not g.get("differentially_private"):
        return (
            '<div class="guarantee notdp"><b>Privacy guarantee: none.</b> The model that '
            "made this table is NOT differentially private "
            f"(generator {_fmt(g.get('generator'))}).</div>"
        )
    source = g.get("source")
    where = f" <b>{html.escape(str(source))}</b>." if source else ""
    warning = (
        f'<p class="error">Warning: {html.escape(str(g["warning"]))}.</p>'
        if g.get("warning")
        else ""
    )
    css = "guarantee" if g.get("verified", True) and not g.get("warning") else "guarantee notdp"
    return (
        f'<div class="{css}"><b>Privacy guarantee:</b> (ε = {_fmt(g.get("epsilon"))}, '
        f"δ = {_fmt(g.get('delta'))})-differential privacy end to end, computed by the "
        f"{_fmt(g.get('accountant'))} accountant; domain: {_fmt(g.get('domain'))}; generator "
        f"{_fmt(g.get('generator'))};{where} It covers the synthetic table and the manifest only "
        f"— not this report.{warning}</div>"
    )


def _summary(evaluation: EvaluationResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(h.name)}<br><span class=note>{h.group} · "
        f"{'lower' if h.direction == 'lower_is_better' else 'higher'} is better</span></td>"
        f"<td class=num><b>{_fmt(h.value)}</b></td><td class=num>{_fmt(h.ceiling)}</td>"
        f"<td class=num>{_fmt(h.floor)}</td><td class=num>{_fmt(h.ideal)}</td>"
        f"<td>{_chip(h.verdict, h.verdict_text)}{_headline_notes(h)}</td></tr>"
        for h in evaluation.headlines
    )
    inputs = evaluation.inputs
    return (
        _guarantee_html(evaluation)
        + "<table><tr><th>headline score</th><th>value</th><th>real holdout<br>(ceiling)</th>"
        "<th>shuffled columns<br>(floor)</th><th>ideal</th><th>verdict</th></tr>"
        + rows
        + "</table>"
        + _VERDICT_LEGEND
        + '<p class="note">Ceiling: the score of a real holdout sample against the training data '
        "(what a perfect generator could hope for; for TSTR, models trained on real data). "
        "Floor: the score of a copy of the real data with every column shuffled independently "
        "— right marginals, no joint structure — so a fidelity score near it says little. "
        f"Compared: {inputs['real_rows']:,} real rows"
        + (
            f" (a uniform sample of the {sample['population_rows']:,} rows of the partitioned "
            f"input's {sample['partitions']:,} partitions)"
            if (sample := inputs.get("real_sample"))
            else ""
        )
        + f", {inputs['synthetic_rows']:,} synthetic rows"
        + (f", {inputs['holdout_rows']:,} holdout rows" if inputs["holdout_rows"] else "")
        + (
            f"; target column <code>{html.escape(str(inputs['target']))}</code>"
            if inputs["target"]
            else ""
        )
        + ".</p>"
    )


def _headline_notes(headline: Headline) -> str:
    """Where a headline score falls short most, and notes on its reference points."""
    lines = [*headline.worst, *headline.notes]
    if not lines:
        return ""
    return "<ul class=note>" + "".join(f"<li>{html.escape(n)}</li>" for n in lines) + "</ul>"


_VERDICT_LEGEND = (
    '<p class="note">Verdicts: <span class="chip good">good</span> close to the real data (most '
    "of the way from independent columns to the real-holdout reference, or within the metric's "
    'good limit); <span class="chip fair">fair</span> useful, with visible gaps; '
    '<span class="chip poor">poor</span> little better than a copy of the real data with every '
    "column shuffled (for privacy metrics: a measurable leak). Each verdict's text says what it "
    "was measured against; the worst columns and pairs are listed under it.</p>"
)


def _group(evaluation: EvaluationResult, group: str, intro: str) -> str:
    results = [r for r in evaluation.results if r.group == group]
    if not results:
        return '<p class="note">No metric of this group ran (see "Skipped metrics").</p>'
    parts = [
        f"<p>{intro}</p>",
        "<table><tr><th>metric</th><th>value</th><th>range</th><th>verdict</th></tr>",
    ]
    for r in results:
        level, text = evaluation.verdicts.get(r.metric_id, ("unknown", ""))
        arrow = "↓ better" if r.direction == "lower_is_better" else "↑ better"
        rng = f"{_fmt(r.value_range[0])} – {_fmt(r.value_range[1])}" if r.value_range else "–"
        parts.append(
            f"<tr><td>{html.escape(r.name)} <span class=note>({r.metric_id}, {arrow})"
            f"</span></td><td class=num><b>{_fmt(r.value)}</b></td>"
            f"<td class=nowrap>{rng}</td>"
            f"<td>{_chip(level, text) if level != 'unknown' else '–'}</td></tr>"
        )
    parts.append("</table>")
    for r in results:
        parts.append(_detail(r, open_=group != "fidelity"))
    return "".join(parts)


def _detail(result: MetricResult, *, open_: bool) -> str:
    table = result.details.get("table")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    if not table and not notes:
        return ""
    body = _table(table["columns"], table["rows"]) if table else ""
    if notes:
        body += f'<ul class="note">{notes}</ul>'
    return (
        f"<details{' open' if open_ else ''}><summary>{html.escape(result.name)}</summary>"
        f"{body}</details>"
    )


def _sections(
    context: ReportContext, directory: Path, errors: dict[str, str]
) -> list[tuple[int, str, str, SectionOutput]]:
    from ..registry import report_sections

    rendered = []
    for entry in report_sections().entries():
        section = entry.cls()
        try:
            output = section.render(context, directory)
        except Exception as exc:  # a plugin section must not cost the user the whole report
            errors[entry.plugin_id] = f"{type(exc).__name__}: {exc}"
            output = SectionOutput(
                html=f'<p class="error">This section failed: '
                f"{html.escape(errors[entry.plugin_id])}</p>"
            )
        rendered.append((section.order, entry.plugin_id, section.title or entry.plugin_id, output))
    return rendered


def render_page(
    evaluation: EvaluationResult, sections: list[tuple[int, str, str, SectionOutput]]
) -> str:
    """The whole report page as one HTML string."""
    from .._version import __version__

    core = [
        (
            10,
            "fidelity",
            "Fidelity: how close are the distributions?",
            _group(
                evaluation,
                "fidelity",
                "Column-by-column and pairwise comparisons of the synthetic "
                "table with the real one.",
            ),
        ),
        (
            40,
            "utility",
            "Utility: do models trained on synthetic data work on real data?",
            _group(
                evaluation,
                "utility",
                "Train on synthetic, test on real (TSTR) beside train on "
                "real, test on real (TRTR), on the same real test rows.",
            ),
        ),
        (
            50,
            "privacy",
            "Privacy: attacks and the guarantee",
            _group(
                evaluation,
                "privacy",
                "Empirical attacks on the synthetic table (they measure; "
                "they do not prove) and the differential-privacy guarantee (a proof).",
            ),
        ),
    ]
    blocks = [(o, sid, title, body) for o, sid, title, body in core]
    for order, sid, title, output in sections:
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in output.notes)
        blocks.append((order, sid, title, output.html + notes))
    blocks.sort(key=lambda b: b[0])
    skipped = "".join(
        f"<li><code>{html.escape(s.metric_id)}</code>: {html.escape(s.reason)}</li>"
        for s in evaluation.skipped
    )
    nav = " ".join(
        f'<a href="#{sid}">{html.escape(title.split(":")[0])}</a>' for _, sid, title, _ in blocks
    )
    body = "".join(
        f'<h2 id="{sid}">{html.escape(title)}</h2>{content}' for _, sid, title, content in blocks
    )
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in evaluation.seconds.items())
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>privsynth evaluation report</title><style>{_CSS}</style></head><body><main>"
        "<h1>privsynth evaluation report</h1>"
        f'<p class="sub">privsynth {html.escape(__version__)} · seed {evaluation.inputs["seed"]}'
        "</p>"
        f'<div class="notice"><strong>Custodian only — NOT for release.</strong>'
        f"{html.escape(NOT_DP_NOTICE)}</div>"
        f"<nav>{nav} <a href='#notes'>Notes</a></nav>"
        f'<h2 id="summary">Summary</h2>{_summary(evaluation)}'
        f"{body}"
        '<h2 id="notes">Notes</h2>'
        + (f"<h3>Skipped metrics</h3><ul>{skipped}</ul>" if skipped else "")
        + f'<p class="note">Wall time: {html.escape(timing)}.</p>'
        f'<div class="notice"><strong>Reminder</strong>{html.escape(NOT_DP_NOTICE)}</div>'
        "</main></body></html>"
    )


def write_report(
    evaluation: EvaluationResult,
    output_dir: Path,
    *,
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame | None,
    schema: Schema,
    target: str | None,
    manifest: dict[str, Any] | None,
    seed: int,
    overwrite: bool = False,
) -> None:
    """Write ``report.html``, ``metrics.json`` and the sections' files into ``output_dir``,
    atomically (the folder appears complete or not at all).

    Raises:
        InputFileError: ``output_dir`` exists and is not empty, and ``overwrite`` is False.
    """
    context = ReportContext(
        real=real,
        synthetic=synthetic,
        schema=schema,
        results=tuple(evaluation.results),
        holdout=holdout,
        target=target,
        manifest=manifest,
        seed=seed,
    )
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        errors: dict[str, str] = {}
        sections = _sections(context, tmp, errors)
        evaluation.section_errors = errors
        evaluation.files = ["report.html", "metrics.json"] + [
            f for *_, out in sections for f in out.files
        ]
        (tmp / "report.html").write_text(render_page(evaluation, sections), encoding="utf-8")
        (tmp / "metrics.json").write_text(
            json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    evaluation.output_dir = output_dir
