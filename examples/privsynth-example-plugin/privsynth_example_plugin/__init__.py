"""An example third-party privsynth plugin: the ``mean_gap`` fidelity metric and the
``joint_histogram`` DP generator (:mod:`.joint_histogram`)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from privsynth_core import Generator, Metric, MetricResult, hookimpl
from privsynth_core.schema import ColumnKind, Schema


class MeanGapMetric(Metric):
    """Mean over numeric columns of |mean(real) - mean(synthetic)| / (upper - lower bound)."""

    metric_id = "mean_gap"
    name = "Mean gap of numeric columns"
    group = "fidelity"
    direction = "lower_is_better"
    description = "Average gap between real and synthetic column means, scaled by the domain width"

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
        """Score the synthetic table; 0 means every numeric mean matches exactly."""
        gaps: dict[str, float] = {}
        for col in schema.columns:
            if col.kind not in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER) or col.bounds is None:
                continue
            width = float(col.bounds[1]) - float(col.bounds[0]) or 1.0  # type: ignore[arg-type]
            real_mean = real[col.name].cast(pl.Float64).mean()
            synth_mean = synthetic[col.name].cast(pl.Float64).mean()
            if real_mean is None or synth_mean is None:
                continue
            gaps[col.name] = abs(float(real_mean) - float(synth_mean)) / width  # type: ignore[arg-type]
        value = sum(gaps.values()) / len(gaps) if gaps else 0.0
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group="fidelity",
            value=value,
            direction="lower_is_better",
            value_range=(0.0, 1.0),
            details={"per_column": gaps},
        )


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Contribute the ``mean_gap`` metric."""
    register(MeanGapMetric)


@hookimpl
def register_generators(register: Callable[[type[Generator]], None]) -> None:
    """Contribute the ``joint_histogram`` generator (imported here: numpy and polars only)."""
    from .joint_histogram import JointHistogramGenerator

    register(JointHistogramGenerator)
