"""Faults: a run SIGKILLed mid-training; a plain rerun is refused (never paid twice); the
run is resumed from its checkpoint under its one reservation."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from flowhelpers import (
    read_manifest,
    read_model_manifest,
    read_release,
    run_config,
    set_budget,
    training_entries,
)

from privsynth_core import PrivacyLedger
from privsynth_core.privacy.checkpoint import CheckpointStore
from privsynth_core.registry import accountants
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import SweepConfig
from privsynth_core.runs.rundir import work_dir_for
from privsynth_ui.cli import main

FLOWS_DIR = Path(__file__).parent
LAUNCH_CLI = FLOWS_DIR / "launch_cli.py"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_run_killed_mid_training_is_refused_then_resumed(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    dpsgd_plugin: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    run_dir = tmp_path / "out" / "run"
    config_path = tmp_path / "run.yaml"
    config_path.write_text(
        yaml.safe_dump(
            run_config(
                adult_files,
                run_dir,
                generator=dpsgd_plugin,
                epsilon=1.0,
                delta=1e-5,
                metrics=["tvd"],
                params={"steps": 300, "step_seconds": 0.02, "checkpoint_every": 20},
            )
        )
    )
    store = CheckpointStore(work_dir_for(run_dir) / "checkpoints")

    log = open(tmp_path / "child.log", "wb")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, str(LAUNCH_CLI), "run", str(config_path)],
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
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
    assert _files(tmp_path / "out") <= {".run.work", ".run.lock"} | {
        f".run.work/{f}" for f in _files(work_dir_for(run_dir))
    }
    assert not (pipeline.cache_dir() / "models").exists() or not any(
        p for p in (pipeline.cache_dir() / "models").iterdir() if not p.name.startswith(".")
    )
    # The ledger holds the whole reservation: at least what the killed run spent.
    (entry,) = training_entries(fingerprint)
    assert entry.status == "reserved" and entry.epsilon == 1.0 and entry.delta == 1e-5
    assert [e.entry_id for e in PrivacyLedger().open_reservations()] == [entry.entry_id]
    checkpoint = store.latest()
    assert checkpoint is not None
    taken = accountants().get("rdp")()
    store.restore_accountant(taken)
    steps_ever_taken = taken.steps_taken
    assert steps_ever_taken == checkpoint.step + checkpoint.lost_steps
    assert taken.get_epsilon(delta=1e-5) <= entry.epsilon

    # Running the configuration again without --resume does not train (and pay) a second
    # time: it names the open reservation and the way on, and keeps the checkpoints.
    ledger_before = PrivacyLedger().entries(fingerprint)
    capsys.readouterr()
    assert main(["run", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert f"reservation #{entry.entry_id}" in err
    assert f"privsynth run --resume {run_dir}" in err and "privsynth budget close" in err
    assert PrivacyLedger().entries(fingerprint) == ledger_before
    assert store.latest() is not None and store.latest() == checkpoint

    assert main(["run", "--resume", str(run_dir)]) == 0

    manifest = read_manifest(run_dir)
    fit = read_model_manifest(run_dir)["fit"]
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
    (settled,) = training_entries(fingerprint)
    assert settled.entry_id == entry.entry_id and settled.status == "spent"
    assert settled.epsilon == pytest.approx(fit["epsilon"])
    assert manifest["fit"]["ledger_entry"] == entry.entry_id
    training = next(p for p in read_release(run_dir)["privacy"]["parts"] if p["step"] == "training")
    assert training["epsilon"] == pytest.approx(fit["epsilon"])
    assert PrivacyLedger().open_reservations() == []
    assert not work_dir_for(run_dir).exists()


def test_resume_without_interrupted_run_explains(tmp_path: Path) -> None:
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2


# -- a Dask worker killed mid-sweep ------------------------------------------------------------


PRELOAD = FLOWS_DIR / "dask_preload.py"


def _kill_first_trainer(pids: Path, killed: list[tuple[int, float]]) -> None:
    """SIGKILL the first worker process that starts training (once its reservation is open)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for path in sorted(pids.glob("*")) if pids.exists() else []:
            text = path.read_text()
            if text and PrivacyLedger().open_reservations():
                os.kill(int(path.name), signal.SIGKILL)
                killed.append((int(path.name), float(text)))
                return
        time.sleep(0.05)


def _worker_fault_sweep(
    adult_files: dict[str, Path], tmp_path: Path, generator: str
) -> SweepConfig:
    params = {
        "steps": 400,
        "step_seconds": 0.02,
        "checkpoint_every": 50,
        "pid_dir": str(tmp_path / "pids"),
    }
    return SweepConfig.model_validate(
        {
            "base": {
                "input": str(adult_files["train"]),
                "schema_path": str(adult_files["schema"]),
                "metrics": ["tvd"],
                "rows": 300,
                "delta": 1e-5,
            },
            "grid": {
                "generators": [generator],
                "epsilons": [0.5, 0.8],
                "params": {generator: params},
            },
            "output_dir": tmp_path / "sweep",
        }
    )


def _run_killing_a_worker(
    sweep_flow: Any, config: SweepConfig, pids: Path
) -> tuple[str, tuple[int, float]]:
    from privsynth_core.errors import GeneratorError

    killed: list[tuple[int, float]] = []
    killer = threading.Thread(target=_kill_first_trainer, args=(pids, killed), daemon=True)
    killer.start()
    with pytest.raises(GeneratorError, match="1 of 2 sweep runs failed") as failure:
        sweep_flow(config)
    killer.join(timeout=5)
    assert killed, "no worker started training"
    return str(failure.value), killed[0]


def _check_worker_fault(
    fingerprint: str,
    tmp_path: Path,
    message: str,
    killed: tuple[int, float],
    capsys: pytest.CaptureFixture[str],
) -> str:
    """The killed cell failed with its open reservation; nothing ran or was charged again."""
    _, epsilon = killed
    entries = training_entries(fingerprint)
    # Two trainings reserved, never a third: the killed cell was not trained again.
    assert sorted(e.epsilon for e in entries if e.status == "reserved") == [epsilon]
    assert len(entries) == 2 and len([e for e in entries if e.status == "spent"]) == 1
    (open_entry,) = PrivacyLedger().open_reservations()
    assert f"open reservation #{open_entry.entry_id}" in message
    assert len(list((tmp_path / "pids").iterdir())) == 2  # two trainings started, no more
    with open(tmp_path / "sweep" / "summary.csv", newline="") as fh:
        rows = {float(r["epsilon"]): r for r in csv.DictReader(fh)}
    failed = rows[epsilon]
    assert failed["status"] == "failed" and f"#{open_entry.entry_id}" in failed["error"]
    assert "privsynth budget close" in failed["error"]
    assert [r["status"] for e, r in rows.items() if e != epsilon] == ["ok"]
    # The custodian sees it in `privsynth budget reservations`, and closes it with a note.
    capsys.readouterr()
    assert main(["budget", "reservations"]) == 0
    assert str(open_entry.entry_id) in capsys.readouterr().out
    return failed["error"]


@pytest.mark.extended  # the store's refusal: tests/core/test_store.py
def test_killed_dask_worker_fails_its_cell_without_rerun(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    dpsgd_plugin: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """privsynth's own local cluster: a task whose worker dies is not rescheduled."""
    import dask
    import distributed  # noqa: F401 - its defaults must be in dask's config before the set()

    from privsynth_flows.runtime import make_task_runner
    from privsynth_flows.sweep import sweep

    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    config = _worker_fault_sweep(adult_files, tmp_path, dpsgd_plugin)
    with dask.config.set({"distributed.worker.preload": [str(PRELOAD)]}):
        flow = sweep.with_options(task_runner=make_task_runner("dask", n_workers=2))
        message, killed = _run_killing_a_worker(flow, config, tmp_path / "pids")
    error = _check_worker_fault(fingerprint, tmp_path, message, killed, capsys)
    assert "KilledWorker" in error


@pytest.mark.extended  # the store's refusal: tests/core/test_store.py
def test_rescheduled_fit_on_an_existing_cluster_is_refused(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    dpsgd_plugin: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cluster privsynth did not start keeps Dask's default (reschedule up to 3 times): the
    rescheduled cell reaches the model store, finds the dead attempt's open reservation, and
    refuses instead of training (and paying) again."""
    import dask
    from distributed import LocalCluster

    from privsynth_flows.runtime import make_task_runner
    from privsynth_flows.sweep import sweep

    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    # The variant without checkpoints: nothing could resume it, so the refusal comes from the
    # model store itself.
    config = _worker_fault_sweep(adult_files, tmp_path, "test-dpsgd-marginals-nockpt")
    with (
        dask.config.set({"distributed.worker.preload": [str(PRELOAD)]}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,  # type: ignore[no-untyped-call]
            dashboard_address=None,
        ) as cluster,
    ):
        assert cluster.scheduler.allowed_failures > 0  # Dask's default: reschedules
        runner = make_task_runner("dask", address=cluster.scheduler_address)
        message, killed = _run_killing_a_worker(
            sweep.with_options(task_runner=runner), config, tmp_path / "pids"
        )
    error = _check_worker_fault(fingerprint, tmp_path, message, killed, capsys)
    assert "does not train it again on its own" in error
