"""privsynth-marginal's tests: privsynth's built-ins plus this distribution, a private home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from privsynth_core.plugins import reset_plugins
from privsynth_core.registry import reset_registries

LOAD = "privsynth,privsynth-marginal"


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ledger and state directory."""
    home = tmp_path / "privsynth-home"
    monkeypatch.setenv("PRIVSYNTH_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def with_marginal_plugin() -> Iterator[None]:
    """Load this distribution's entry points (the main suite loads the built-ins only)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVSYNTH_LOAD_PLUGINS", LOAD)
        reset_plugins()
        reset_registries()
        yield
    reset_plugins()
    reset_registries()
