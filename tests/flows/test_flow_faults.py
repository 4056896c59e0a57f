"""Faults: a run SIGKILLed mid-training, then resumed from its checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from flowhelpers import read_manifest, run_config, set_budget

from privsynth_core import PrivacyLedger, pipeline
from privsynth_core.checkpoint import CheckpointStore
from privsynth_core.registry import accountants
from privsynth_core.runs import work_dir_for
from privsynth_ui.cli import main

FLOWS_DIR = Path(__file__).parent
LAUNCHER = """
import sys
sys.path.insert(0, {flows!r})
from privsynth_core.plugins import load_plugins, pm
load_plugins()
import dpsgd_marginals
pm.register(dpsgd_marginals, name="test-dpsgd")
from privsynth_ui.cli import main
sys.exit(main(["run", {config!r}]))
"""


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_run_killed_mid_training_then_resumed(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
    dpsgd_plugin: str,
) -> None:
    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    run_dir = tmp_path / "out" / "run"
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(run_config(
        adult_files, run_dir, generator=dpsgd_plugin, epsilon=1.0, delta=1e-5, metrics=["tvd"],
        params={"steps": 300, "step_seconds": 0.02, "checkpoint_every": 20})))
    store = CheckpointStore(work_dir_for(run_dir) / "checkpoints")

    log = open(tmp_path / "child.log", "wb")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER.format(flows=str(FLOWS_DIR), config=str(config_path))],
        env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Kill once two checkpoints exist and the next block has been logged (mid-block).
        deadline = time.monotonic() + 120
        while True:
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "training never reached a checkpoint"
            latest = store.latest() if (store.directory / "latest.json").exists() else None
            if latest is not None and latest.step >= 40 and latest.lost_steps > 0:
                break
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        log.close()
    assert child.returncode == -signal.SIGKILL

    # No output, whole or partial: the run directory does not exist, no model was saved.
    assert not run_dir.exists()
    assert _files(tmp_path / "out") <= {".run.work"} | {f".run.work/{f}" for f in
                                                          _files(work_dir_for(run_dir))}
    assert not (pipeline.cache_dir() / "models").exists() or not any(
        p for p in (pipeline.cache_dir() / "models").iterdir() if not p.name.startswith("."))
    # The ledger holds the whole reservation: at least what the killed run spent.
    (entry,) = PrivacyLedger().entries(fingerprint)
    assert entry.status == "reserved" and entry.epsilon == 1.0 and entry.delta == 1e-5
    checkpoint = store.latest()
    assert checkpoint is not None
    taken = accountants().get("rdp")()
    store.restore_accountant(taken)
    steps_ever_taken = taken.steps_taken
    assert steps_ever_taken == checkpoint.step + checkpoint.lost_steps
    assert taken.get_epsilon(delta=1e-5) <= entry.epsilon

    assert main(["run", "--resume", str(run_dir)]) == 0

    manifest = read_manifest(run_dir)
    fit = read_manifest(run_dir / "model")["fit"]
    assert fit["extra"]["resumed_from_step"] == checkpoint.step
    assert fit["extra"]["lost_steps_counted"] == checkpoint.lost_steps
    # The accountant covers every step ever taken: the killed attempt's (lost ones included)
    # and the resumed attempt's.
    history = fit["accountant_state"]["history"]
    assert sum(steps for _, _, steps in history) == fit["steps"] >= steps_ever_taken
    final = accountants().get("rdp")()
    final.load_state_dict(fit["accountant_state"])
    assert fit["epsilon"] == pytest.approx(final.get_epsilon(delta=1e-5))
    assert fit["epsilon"] <= 1.0
    # One training, one ledger entry: the reservation was reused and settled, not doubled.
    (settled,) = PrivacyLedger().entries(fingerprint)
    assert settled.entry_id == entry.entry_id and settled.status == "spent"
    assert settled.epsilon == pytest.approx(fit["epsilon"])
    assert manifest["privacy"]["epsilon"] == pytest.approx(fit["epsilon"])
    assert not work_dir_for(run_dir).exists()


def test_resume_without_interrupted_run_explains(tmp_path: Path) -> None:
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
