"""The metric contract: compare a real and a synthetic table, return one scored result.

Metrics read the real data, so their results are **not** covered by the DP guarantee: they are
for the data custodian, and every report built from them says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .plugins import Registry, build_registry

if TYPE_CHECKING:
    import polars as pl

    from .schema import Schema

MetricGroup = Literal["fidelity", "utility", "privacy"]
Direction = Literal["higher_is_better", "lower_is_better"]
Verdict = Literal["good", "fair", "poor", "unknown"]


class MetricResult(BaseModel):
    """One metric's outcome.

    Attributes:
        metric_id: the metric's id.
        name: a readable name ("2-way marginal TVD").
        group: fidelity, utility or privacy.
        value: the headline number.
        direction: whether higher or lower is better.
        value_range: the range ``value`` can take, e.g. ``(0, 1)``.
        details: per-column figures and anything a plot needs (JSON-able).
        notes: caveats, e.g. "computed on a 10,000-row sample".
    """

    model_config = ConfigDict(extra="forbid")

    metric_id: str
    name: str
    group: MetricGroup
    value: float
    direction: Direction
    value_range: tuple[float, float] | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Metric(ABC):
    """Base class of metrics.

    Attributes:
        metric_id: lowercase id under which the plugin registers.
        name: readable name.
        group: fidelity, utility or privacy.
        direction: higher_is_better or lower_is_better.
        description: one line shown in listings.
        needs_holdout: the metric refuses to run without a holdout table.
        needs_target: the metric refuses to run without a target column.
        needs_manifest: the metric reads the model manifest;
        :func:`privsynth_core.evaluation.runner.
            evaluate` then passes it to ``compute`` as the keyword ``manifest`` (a dict).
        headline: the score is one of the few shown first in reports, with a plain-language
            verdict and its reference points (real-holdout ceiling, shuffled-columns floor).
        thresholds: ``(good, fair)`` limits of ``value`` in the metric's direction, used for the
            verdict when no reference point decides it (e.g. ``(0.55, 0.6)`` for an attack AUC
            where lower is better); ``None`` when the value alone cannot be judged.
    """

    metric_id: ClassVar[str]
    name: ClassVar[str] = ""
    group: ClassVar[MetricGroup]
    direction: ClassVar[Direction]
    description: ClassVar[str] = ""
    needs_holdout: ClassVar[bool] = False
    needs_target: ClassVar[bool] = False
    needs_manifest: ClassVar[bool] = False
    headline: ClassVar[bool] = False
    thresholds: ClassVar[tuple[float, float] | None] = None

    @abstractmethod
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
        """Score ``synthetic`` against ``real`` (and ``holdout`` when given).

        Raises:
            MetricError: a required input (holdout, target) is missing or unusable.
        """

    def verdict(self, result: MetricResult) -> tuple[Verdict, str] | None:
        """A plain-language verdict on ``result`` (level and sentence), or ``None``.

        Override when the metric knows better than the generic rule (reference points, then
        :attr:`thresholds`) that :func:`privsynth_core.evaluation.runner.evaluate` applies
        otherwise.
        """
        return None


def metrics() -> Registry[Metric]:
    """The registry of metric classes."""
    return build_registry("metric", Metric, "metric_id", "register_metrics")
