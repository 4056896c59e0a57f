"""One fit, one payment: identical runs at once, another PREFECT_HOME, and the CLI all go
through privsynth's model store and ledger (real processes, the session's Prefect server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from flowhelpers import (
    read_manifest,
    release_together,
    run_config,
    set_budget,
    start_cli,
    training_entries,
)

from privsynth_core import PrivacyLedger
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import run_config_from_dict
from privsynth_core.runs.sweep import check_grid_budget
from privsynth_ui.cli import main

PRIVSYNTH_BIN = Path(sys.executable).parent / "privsynth"


def _leftovers(folder: Path) -> list[str]:
    """Temporary siblings and work areas a run should not leave behind."""
    return sorted(
        p.name for p in folder.rglob("*") if p.name.endswith((".partial", ".old", ".work"))
    )


def test_two_identical_runs_at_once_train_and_charge_once(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    dpsgd_plugin: str,
) -> None:
    """Three processes released together: two runs of one configuration (one run directory)
    and a third with the same fit published elsewhere. One trains and pays; the others wait
    and reuse its model; nobody deletes anybody's work area."""
    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    params = {"steps": 300, "step_seconds": 0.02, "checkpoint_every": 50}
    configs = []
    for name in ("same", "same", "elsewhere"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                run_config(
                    adult_files,
                    tmp_path / "out" / name,
                    generator=dpsgd_plugin,
                    epsilon=1.0,
                    delta=1e-5,
                    metrics=["tvd"],
                    params=params,
                )
            )
        )
        configs.append(path)
    go = tmp_path / "go"
    procs = [
        start_cli(["run", str(path)], log=tmp_path / f"run{i}.log", go=go)
        for i, path in enumerate(configs)
    ]
    try:
        release_together(go, procs)
        codes = [proc.wait(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    logs = [(tmp_path / f"run{i}.log").read_text(errors="replace") for i in range(3)]
    assert codes == [0, 0, 0], "\n\n".join(log[-3000:] for log in logs)

    # One training, reserved once and settled; nothing left open.
    (trained,) = training_entries(fingerprint)
    assert trained.status == "spent"
    assert PrivacyLedger().open_reservations() == []
    # Every run names that one entry; exactly one of the three paid for it.
    manifests = [read_manifest(tmp_path / "out" / name) for name in ("same", "elsewhere")]
    assert {m["fit"]["ledger_entry"] for m in manifests} == {trained.entry_id}
    reused = [("reused from the store" in log) for log in logs]
    assert sorted(reused) == [False, True, True], logs
    # They really ran at once: one waited for the run directory, one for the model.
    joined = "\n".join(logs)
    assert "waiting for the run directory" in joined and "waiting for the model" in joined
    assert _leftovers(tmp_path / "out") == []
    assert not any(pipeline.cache_dir().rglob("*.partial"))


def test_another_prefect_home_and_the_cli_reuse_the_paid_model(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Whether a fit is paid for is the model store's and the ledger's answer, not Prefect's:
    a run with another PREFECT_HOME (no result storage in common), the sweep's budget check
    and `privsynth fit` all find the model and charge nothing."""
    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=2)
    data = run_config(adult_files, tmp_path / "first")
    synthesize(run_config_from_dict(data))
    paid = PrivacyLedger().entries(fingerprint)
    (trained,) = training_entries(fingerprint)

    other_home = tmp_path / "other-prefect-home"
    config_path = tmp_path / "again.yaml"
    config_path.write_text(yaml.safe_dump({**data, "output_dir": str(tmp_path / "again")}))
    env = {**os.environ, "PREFECT_HOME": str(other_home)}
    proc = subprocess.run(
        [str(PRIVSYNTH_BIN), "run", str(config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(the model was reused from the store: this run charged no training)" in proc.stdout
    assert other_home.is_dir()  # it did use the other home
    assert PrivacyLedger().entries(fingerprint) == paid
    assert read_manifest(tmp_path / "again")["fit"]["ledger_entry"] == trained.entry_id

    # The sweep's (and a run's) budget pre-check counts the stored model as paid.
    config = run_config_from_dict(data)
    domain = pipeline.cache_dir() / "domains" / pipeline.domain_key(config, fingerprint)
    cost = check_grid_budget(
        [config], fingerprint=fingerprint, schema_path=domain / pipeline.SCHEMA_FILE
    )
    assert cost.epsilon == 0.0

    # `privsynth fit` with the same data and settings copies the paid model out.
    capsys.readouterr()
    model = tmp_path / "cli-model"
    assert (
        main(
            [
                "fit",
                str(adult_files["train"]),
                "--schema",
                str(adult_files["schema"]),
                "--generator",
                "independent",
                "--epsilon",
                "0.5",
                "-o",
                str(model),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "reused the independent model" in out and f"#{trained.entry_id}" in out
    assert "nothing was trained or charged now" in out
    assert (model / "manifest.json").is_file()
    assert PrivacyLedger().entries(fingerprint) == paid
    assert main(["sample", str(model), "-n", "50", "-o", str(tmp_path / "s.csv")]) == 0


def test_cli_fits_at_once_train_and_charge_once(
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    """Two `privsynth fit` processes with the same settings, released together."""
    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    go = tmp_path / "go"
    args = [
        "fit",
        str(adult_files["train"]),
        "--schema",
        str(adult_files["schema"]),
        "--generator",
        "test-dpsgd-marginals",
        "--epsilon",
        "1",
        "--delta",
        "1e-5",
        "--param",
        "steps=200",
        "--param",
        "step_seconds=0.02",
        "--quiet",
    ]
    procs = [
        start_cli([*args, "-o", str(tmp_path / f"model{i}")], log=tmp_path / f"fit{i}.log", go=go)
        for i in range(2)
    ]
    try:
        release_together(go, procs)
        codes = [proc.wait(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    logs = [(tmp_path / f"fit{i}.log").read_text(errors="replace") for i in range(2)]
    assert codes == [0, 0], "\n\n".join(logs)
    (trained,) = training_entries(fingerprint)
    assert trained.status == "spent"
    assert sorted("reused the" in log for log in logs) == [False, True]
    assert "waiting for the model" in "\n".join(logs)
    assert (tmp_path / "model0" / "manifest.json").read_bytes() == (
        tmp_path / "model1" / "manifest.json"
    ).read_bytes()
