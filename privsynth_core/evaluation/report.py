"""The report-section contract: plugins that add a part to the evaluation report.

The evaluation report (``report.html``) is assembled by :mod:`privsynth_core.evaluation.runner`
from the
metric results plus any number of sections contributed by plugins through the
``register_report_sections`` hook: the built-in plots (distributions, correlation heatmaps) and
the Evidently data-drift report are two such sections. Core never imports a section by name, so
a third party can add one (say, a fairness audit) exactly as the built-ins do.

Sections read the real data. What they produce is therefore **not** covered by the DP guarantee;
the page that embeds them says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..plugins import Registry, build_registry

if TYPE_CHECKING:
    import polars as pl

    from ..metric import MetricResult
    from ..schema import Schema


@dataclass(frozen=True)
class ReportContext:
    """Everything a section may use to render itself.

    Attributes:
        real: the real (training) table, typed to ``schema``.
        synthetic: the synthetic table, typed to ``schema``.
        schema: the columns compared.
        results: the metric results already computed, in run order (a section can reuse their
            ``details``, e.g. the correlation matrices, instead of recomputing them).
        holdout: a real holdout table not used for training, when one was given.
        target: the target column of the utility metrics, when one was given.
        manifest: the model manifest, when one was given.
        seed: seed for any sampling a section does.
    """

    real: pl.DataFrame
    synthetic: pl.DataFrame
    schema: Schema
    results: tuple[MetricResult, ...] = ()
    holdout: pl.DataFrame | None = None
    target: str | None = None
    manifest: dict[str, Any] | None = None
    seed: int = 0

    def result(self, metric_id: str) -> MetricResult | None:
        """The result of ``metric_id`` if that metric ran, else ``None``."""
        for res in self.results:
            if res.metric_id == metric_id:
                return res
        return None


@dataclass
class SectionOutput:
    """What a section rendered.

    Attributes:
        html: an HTML fragment placed in the page under the section's title. The section is
            responsible for escaping anything taken from the data (``html.escape``). To keep the
            page self-contained, embed images as ``data:`` URIs.
        files: paths, relative to the output directory, of the files the section wrote there
            (PNG plots, a linked sub-report); listed in ``metrics.json``.
        notes: caveats shown under the section (e.g. "plotted on a 10,000-row sample").
    """

    html: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ReportSection(ABC):
    """Base class of report sections.

    Attributes:
        section_id: lowercase id under which the plugin registers.
        title: the heading shown in the page and its table of contents.
        description: one line shown in ``privsynth plugins list``.
        order: position in the page (lower first): the built-in summary and fidelity tables
            take 0-19, the distribution plots 20, correlations 30, utility 40, privacy 50,
            and external reports 90.
    """

    section_id: ClassVar[str]
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    order: ClassVar[int] = 60

    @abstractmethod
    def render(self, context: ReportContext, directory: Path) -> SectionOutput:
        """Render the section; write any files into ``directory`` (the report's output folder).

        Called once per report, after every metric has run. ``directory`` is a temporary folder
        that replaces the final output folder in one step when the whole report has succeeded.
        """


def report_sections() -> Registry[ReportSection]:
    """The registry of report-section classes."""
    return build_registry("report-section", ReportSection, "section_id", "register_report_sections")
