"""Helpers shared by the flow tests (imported by the test modules of this folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from privsynth_core import PrivacyLedger
from privsynth_core.table import fingerprint_frame, read_frame

CHEAP_METRICS = ["tvd", "ks", "marginal_2way_tvd"]


def set_budget(path: Path, epsilon: float, delta: float = 1e-4) -> str:
    """Give the dataset in ``path`` a budget in the test's ledger; return its fingerprint."""
    fingerprint = fingerprint_frame(read_frame(path))
    PrivacyLedger().set_budget(fingerprint, epsilon=epsilon, delta=delta, label=path.name)
    return fingerprint


def run_config(adult_files: dict[str, Path], output: Path, **overrides: Any) -> dict[str, Any]:
    """A small run configuration (as a dict) over the Adult training file."""
    data = {"input": str(adult_files["train"]), "schema_path": str(adult_files["schema"]),
            "generator": "independent", "epsilon": 0.5, "metrics": CHEAP_METRICS,
            "holdout": str(adult_files["holdout"]), "target": "income",
            "output_dir": str(output)}
    data.update(overrides)
    return data


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run directory's manifest."""
    data: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return data
