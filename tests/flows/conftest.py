"""Flow tests: the session's real Prefect server (``prefect_env``, see tests/prefect_fixtures.py).

Report sections (plots, Evidently) are blocked here: they take most of a report's time and are
tested with the metrics; the flows only need a report to be written and published.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from privsynth_core.datasets import ADULT_SCHEMA_PATH, adult_frame
from privsynth_core.plugins import load_plugins, pm
from privsynth_core.registry import reset_registries

FLOWS_DIR = Path(__file__).parent
PREFECT_BIN = Path(sys.executable).parent / "prefect"
os.environ.setdefault("PRIVSYNTH_IO_RETRY_DELAYS", "0.2,0.4,0.8")


@pytest.fixture(autouse=True)
def _light_reports(light_reports: None) -> None:
    """Every flow test writes its reports without the heavy sections (see the module
    docstring): ``tests/conftest.py``'s fixture, for each test."""


@pytest.fixture
def dpsgd_plugin() -> Iterator[str]:
    """Register the checkpointing test generator in this process; yields its id."""
    if str(FLOWS_DIR) not in sys.path:
        sys.path.insert(0, str(FLOWS_DIR))
    import dpsgd_marginals

    load_plugins()
    pm.register(dpsgd_marginals, name="test-dpsgd")
    reset_registries()
    yield dpsgd_marginals.DPSGDMarginalsGenerator.generator_id
    pm.unregister(name="test-dpsgd")
    reset_registries()


@pytest.fixture(scope="session")
def adult_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2,000-row Adult training file and a disjoint 1,000-row holdout."""
    folder = tmp_path_factory.mktemp("adult")
    frame = adult_frame().sample(fraction=1.0, shuffle=True, seed=3)
    train, holdout = folder / "train.csv", folder / "holdout.csv"
    frame.head(2000).write_csv(train)
    frame.slice(2000, 1000).write_csv(holdout)
    return {"train": train, "holdout": holdout, "schema": ADULT_SCHEMA_PATH}
