"""Helpers shared by the flow tests (imported by the test modules of this folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from privsynth_core import PrivacyLedger
from privsynth_core.privacy.ledger import LedgerEntry
from privsynth_core.privacy.release import CUSTODIAN_DIR, RELEASE_DIR, RELEASE_MANIFEST
from privsynth_core.table import fingerprint_frame, read_frame

CHEAP_METRICS = ["tvd", "ks", "marginal_2way_tvd"]


def set_budget(path: Path, epsilon: float, delta: float = 1e-4) -> str:
    """Give the dataset in ``path`` a budget in the test's ledger; return its fingerprint."""
    fingerprint = fingerprint_frame(read_frame(path))
    PrivacyLedger().set_budget(fingerprint, epsilon=epsilon, delta=delta, label=path.name)
    return fingerprint


def run_config(adult_files: dict[str, Path], output: Path, **overrides: Any) -> dict[str, Any]:
    """A small run configuration (as a dict) over the Adult training file."""
    data = {
        "input": str(adult_files["train"]),
        "schema_path": str(adult_files["schema"]),
        "generator": "independent",
        "epsilon": 0.5,
        "metrics": CHEAP_METRICS,
        "holdout": str(adult_files["holdout"]),
        "target": "income",
        "output_dir": str(output),
    }
    data.update(overrides)
    return data


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run directory's custodian manifest."""
    path = run_dir / CUSTODIAN_DIR / "manifest.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_release(run_dir: Path) -> dict[str, Any]:
    """A run directory's release manifest (its end-to-end guarantee)."""
    path = run_dir / RELEASE_DIR / RELEASE_MANIFEST
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def read_model_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run's released model."""
    path = run_dir / RELEASE_DIR / "model" / "manifest.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def training_entries(fingerprint: str) -> list[LedgerEntry]:
    """The training entries of a dataset (not its released row count or DP domain)."""
    return [e for e in PrivacyLedger().entries(fingerprint) if e.mechanism.endswith("training")]


def spent_epsilon(fingerprint: str) -> float:
    """What the ledger counts as spent on the dataset (open reservations included)."""
    return PrivacyLedger().status(fingerprint).spent.epsilon


FLOWS_DIR = Path(__file__).parent
#: ``privsynth ARGS`` in a fresh process with the test generators registered (see its docstring).
LAUNCH_CLI = FLOWS_DIR / "launch_cli.py"


def start_cli(
    args: list[str], *, log: Path, env: dict[str, str] | None = None, go: Path | None = None
) -> subprocess.Popen[bytes]:
    """``privsynth ARGS`` in a new process (its own session, output to ``log``)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, str(LAUNCH_CLI), *(["--go", str(go)] if go else []), *args],
            env=env if env is not None else os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def release_together(
    go: Path, processes: list[subprocess.Popen[bytes]], timeout: float = 180
) -> None:
    """Wait until every process is ready, then let them all start at once."""
    deadline = time.monotonic() + timeout
    while len(list(go.parent.glob(go.name + ".ready.*"))) < len(processes):
        for proc in processes:
            assert proc.poll() is None, f"process {proc.pid} exited early ({proc.returncode})"
        assert time.monotonic() < deadline, "the processes never got ready"
        time.sleep(0.05)
    go.touch()
