"""What an evaluation found: headline scores, skipped metrics, and ``metrics.json``'s content.

Kept apart from :mod:`.runner` (which computes them) so that :mod:`.report_html`, which renders
them, and the pipeline, which passes them on, need not import the runner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..metric import MetricResult, Verdict

NOT_DP_NOTICE = (
    "This report contains statistics of the real data. It is NOT covered by the differential-"
    "privacy guarantee: keep it with the data custodian. Only the synthetic table and the model "
    "manifest are for release."
)


@dataclass
class Headline:
    """A headline score with its reference points and verdict."""

    metric_id: str
    name: str
    group: str
    value: float
    direction: str
    ceiling: float | None = None
    floor: float | None = None
    ideal: float | None = None
    verdict: Verdict = "unknown"
    verdict_text: str = ""
    #: Where the score falls short most: e.g. ``"worst pairs: age × income (0.21), ..."``
    #: (from the metric's ``details["worst"]``).
    worst: list[str] = field(default_factory=list)
    #: What to know about the reference points (one that could not be computed, a model that
    #: failed, a score beyond its ceiling).
    notes: list[str] = field(default_factory=list)


@dataclass
class SkippedMetric:
    """A metric that did not run, and why."""

    metric_id: str
    reason: str


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` found.

    Attributes:
        results: each metric's result, in registry order.
        headlines: the headline scores with reference points and verdicts.
        verdicts: metric id -> (level, sentence) for every result.
        skipped: metrics that did not run (missing input, not applicable).
        guarantee: the privacy guarantee to report, when a manifest was given: the ledger's
            figures where the custodian's record of the model was found, else the manifest's,
            marked not verified (:func:`privsynth_core.privacy.guarantee.verified_guarantee`).
        inputs: row counts, columns, target, seed.
        seconds: wall time per metric (references included) and in total.
        output_dir: where the report was written, if it was.
        files: files written there, relative to ``output_dir``.
        section_errors: report sections that failed (their error message).
    """

    results: list[MetricResult]
    headlines: list[Headline]
    verdicts: dict[str, tuple[Verdict, str]]
    skipped: list[SkippedMetric]
    guarantee: dict[str, Any] | None
    inputs: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    output_dir: Path | None = None
    files: list[str] = field(default_factory=list)
    section_errors: dict[str, str] = field(default_factory=dict)

    def result(self, metric_id: str) -> MetricResult | None:
        """The result of ``metric_id``, if it ran."""
        return next((r for r in self.results if r.metric_id == metric_id), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (non-finite numbers become ``null``): the content of metrics.json."""
        from .._version import __version__

        data = {
            "privsynth_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "notice": NOT_DP_NOTICE,
            "inputs": self.inputs,
            "privacy_guarantee": self.guarantee,
            "headline": [asdict(h) for h in self.headlines],
            "metrics": [
                {**r.model_dump(mode="python"), "verdict": self.verdicts.get(r.metric_id)}
                for r in self.results
            ],
            "skipped": [asdict(s) for s in self.skipped],
            "seconds": self.seconds,
            "files": self.files,
            "section_errors": self.section_errors,
        }
        return _json_safe(data)  # type: ignore[no-any-return]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
