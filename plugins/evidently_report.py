"""The Evidently data-drift and data-summary report, as a section of the evaluation report.

This is the only module of privsynth that imports Evidently (0.7 API: ``Report([...]).run(
current, reference)`` returns a snapshot). The real table is Evidently's *reference* and the
synthetic one its *current* data, so "drift" reads as "the synthetic column departs from the real
one". Evidently's page (about 4 MB, self-contained) is written beside ``report.html`` and linked
and framed from it; a short drift table is shown inline. Evidently is imported inside ``render``
(it takes seconds to import).
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from privsynth_core import hookimpl
from privsynth_core.evaluation.report import ReportContext, ReportSection, SectionOutput
from privsynth_core.schema import ColumnKind

EVIDENTLY_FILE = "evidently_report.html"
MAX_ROWS = 10_000


def _drift_summary(snapshot: Any) -> tuple[str, list[list[Any]]]:
    """The drifted-column count and the per-column drift scores from a snapshot's JSON."""
    data = json.loads(snapshot.json())
    headline, rows = "", []
    for metric in data.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("DriftedColumnsCount") and not headline:
            value = metric.get("value", {})
            headline = (
                f"Evidently flags {int(value.get('count', 0))} column(s) as drifted "
                f"({float(value.get('share', 0)):.0%} of columns)."
            )
        elif kind.endswith("ValueDrift"):
            threshold = config.get("threshold")
            score = metric.get("value")
            rows.append([config.get("column"), config.get("method"), score, threshold])
    return headline, rows


class EvidentlySection(ReportSection):
    """Evidently's DataDriftPreset + DataSummaryPreset on real (reference) vs synthetic."""

    section_id = "evidently"
    title = "Evidently data-drift and data-summary report"
    description = "Evidently's drift and summary presets, real as reference vs synthetic"
    order = 90

    def render(self, context: ReportContext, directory: Path) -> SectionOutput:
        """Run Evidently on (samples of) both tables and link its HTML page."""
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset, DataSummaryPreset

        notes = []
        real, synthetic = context.real, context.synthetic
        if max(real.height, synthetic.height) > MAX_ROWS:
            notes.append(f"run on samples of at most {MAX_ROWS:,} rows of each table")
            real = real.sample(n=min(MAX_ROWS, real.height), seed=context.seed)
            synthetic = synthetic.sample(n=min(MAX_ROWS, synthetic.height), seed=context.seed)
        schema = context.schema
        numeric = [c.name for c in schema.columns if c.kind.is_numeric]
        datetimes = [c.name for c in schema.columns if c.kind is ColumnKind.DATETIME]
        categorical = [
            c.name for c in schema.columns if c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
        ]
        definition = DataDefinition(
            numerical_columns=numeric, categorical_columns=categorical, datetime_columns=datetimes
        )
        reference = Dataset.from_pandas(real.to_pandas(), data_definition=definition)
        current = Dataset.from_pandas(synthetic.to_pandas(), data_definition=definition)
        with warnings.catch_warnings():
            # Evidently's statistical tests warn on empty or constant columns (division by
            # zero); the page shows those columns as they are, so the warnings add nothing.
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = Report([DataDriftPreset(), DataSummaryPreset()]).run(current, reference)
        snapshot.save_html(str(directory / EVIDENTLY_FILE))
        try:
            headline, rows = _drift_summary(snapshot)
        except (ValueError, TypeError, AttributeError):  # the summary is a courtesy only
            headline, rows = "", []
        parts = [
            f"<p>{html.escape(headline)} Reference: the real table; current: the "
            f'synthetic table. <a href="{EVIDENTLY_FILE}">Open the full Evidently report'
            f"</a> (a separate page in this folder; it needs no network).</p>"
        ]
        if rows:
            body = "".join(
                f"<tr><td>{html.escape(str(col))}</td><td>{html.escape(str(method))}</td>"
                f"<td class=num>{_fmt(score)}</td><td class=num>{_fmt(threshold)}</td></tr>"
                for col, method, score, threshold in rows
            )
            parts.append(
                "<details><summary>Evidently's drift score per column</summary><table><tr>"
                "<th>column</th><th>test</th><th>score</th><th>threshold</th></tr>"
                f"{body}</table></details>"
            )
        parts.append(
            f'<iframe class="evidently" src="{EVIDENTLY_FILE}" loading="lazy" '
            f'title="Evidently report"></iframe>'
        )
        return SectionOutput(html="".join(parts), files=[EVIDENTLY_FILE], notes=notes)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else html.escape(str(value))


@hookimpl
def register_report_sections(register: Callable[[type[ReportSection]], None]) -> None:
    """Register the Evidently section."""
    register(EvidentlySection)
