"""Shared fixtures: built-in plugins only, a private PRIVSYNTH_HOME per test, small Adult slices."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

# Only the built-ins (distribution "privsynth"): a developer's other plugins never leak in.
os.environ["PRIVSYNTH_LOAD_PLUGINS"] = "privsynth"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from prefect_fixtures import prefect_env, prefect_server  # noqa: F401 - session fixtures

from privsynth_core import PrivacyLedger, Table
from privsynth_core.datasets import adult_frame, adult_schema
from privsynth_core.plugins import reset_plugins
from privsynth_core.registry import reset_registries


@pytest.fixture(autouse=True)
def privsynth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ledger and state directory."""
    home = tmp_path / "privsynth-home"
    monkeypatch.setenv("PRIVSYNTH_HOME", str(home))
    return home


@pytest.fixture
def ledger(privsynth_home: Path) -> PrivacyLedger:
    """The test's own ledger."""
    return PrivacyLedger()


@pytest.fixture(scope="session")
def adult_raw() -> pl.DataFrame:
    """All 48,842 Adult rows as read from the embedded CSV."""
    return adult_frame()


@pytest.fixture
def adult_small(adult_raw: pl.DataFrame) -> Table:
    """A seeded 1,000-row Adult sample with its declared-public schema."""
    return Table.from_frame(adult_raw.sample(1000, seed=1), adult_schema(), name="adult-1k")


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Reload plugins and registries before and after the test (for tests that change them)."""
    reset_plugins()
    reset_registries()
    yield
    reset_plugins()
    reset_registries()


@pytest.fixture
def light_reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Block the heavy report sections (plots, Evidently) for one test: a report is still
    written, only lighter (they are tested with the metrics)."""
    monkeypatch.setenv("PRIVSYNTH_DISABLED_PLUGINS", "evidently,report-plots")
    reset_plugins()
    reset_registries()
    yield
    reset_plugins()
    reset_registries()
