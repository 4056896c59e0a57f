"""Typed registries: lookup, unknown ids listing the valid ones, duplicates refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from privsynth_core import Metric, MetricResult, hookimpl
from privsynth_core.errors import DuplicatePluginError, PluginError, UnknownPluginError
from privsynth_core.plugins import pm
from privsynth_core.registry import Registry, metrics


class _RowCountRatio(Metric):
    """A tiny real metric: synthetic rows / real rows."""

    metric_id = "row_ratio"
    name = "Row count ratio"
    group = "fidelity"
    direction = "higher_is_better"
    description = "synthetic rows / real rows"

    def compute(self, real, synthetic, *, schema, holdout=None, target=None, seed=0):  # type: ignore[no-untyped-def]
        return MetricResult(
            metric_id=self.metric_id,
            name=self.name,
            group="fidelity",
            value=synthetic.height / real.height,
            direction=self.direction,
        )


class _FakePlugin:
    def __init__(self, *classes: type[Metric]) -> None:
        self.classes = classes

    @hookimpl
    def register_metrics(self, register: Callable[[type[Metric]], None]) -> None:
        for cls in self.classes:
            register(cls)


def test_a_registered_plugin_is_found_by_id(fresh_plugins: None) -> None:
    pm.register(_FakePlugin(_RowCountRatio), name="undo-fake")
    entry = metrics().entry("row_ratio")
    assert entry.cls is _RowCountRatio
    assert entry.plugin_name == "undo-fake"
    assert entry.distribution == "(registered in process)"
    assert "row_ratio" in metrics().names()


def test_unknown_id_lists_the_valid_ids(fresh_plugins: None) -> None:
    pm.register(_FakePlugin(_RowCountRatio), name="undo-fake")
    with pytest.raises(UnknownPluginError) as info:
        metrics().get("nope")
    assert "unknown metric 'nope'; available: " in str(info.value)
    assert "row_ratio" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_duplicate_id_is_an_error_not_an_override(fresh_plugins: None) -> None:
    pm.register(_FakePlugin(_RowCountRatio), name="first")
    pm.register(_FakePlugin(_RowCountRatio), name="second")
    with pytest.raises(DuplicatePluginError, match="registered twice"):
        metrics()


def test_registry_refuses_wrong_base_and_bad_ids() -> None:
    registry: Registry[Metric] = Registry("metric", Metric, "metric_id")
    with pytest.raises(PluginError, match="not a subclass of Metric"):
        registry.register(int, plugin_name="p")  # type: ignore[arg-type]

    class BadId(_RowCountRatio):
        metric_id = "Bad Id"

    with pytest.raises(PluginError, match="lowercase"):
        registry.register(BadId, plugin_name="p")


def test_choose_generator_takes_the_best_suited_installed_dp_generator() -> None:
    from privsynth_core.datasets import adult_schema
    from privsynth_core.errors import ConfigError
    from privsynth_core.registry import choose_generator

    # the built-ins declare their suitability; core names none of them
    choice = choose_generator(adult_schema())
    assert choice.generator_id == "dpctgan" and "DP-CTGAN" in choice.why
    assert [r[0] for r in choice.ranking] == ["dpctgan", "dpwgan", "independent"]
    assert "chosen among 3 installed DP generators" in choice.why
    # few released rows: the DP-SGD GANs say they learn little, still above the floor
    few = choose_generator(adult_schema(), noisy_rows=500)
    assert (
        dict((r[0], r[1]) for r in few.ranking)["dpctgan"]
        < dict((r[0], r[1]) for r in choice.ranking)["dpctgan"]
    )
    assert choose_generator(adult_schema(), installed=["independent"]).generator_id == "independent"
    with pytest.raises(ConfigError, match="no differentially private generator"):
        choose_generator(adult_schema(), installed=[])
