"""The served flows (privsynth_flows.served) an application triggers: a real Prefect runner in a
subprocess, the session's real server, real flow-run processes, real ledgers.

A run of an extract charged to the whole file's key (``budget_key``) through the served
``synthesize`` flow: the flow run in Prefect's API with its task runs and progress, the run
directory of ``privsynth run``, nothing computed from the rows in what Prefect stores; then
``generate`` and ``evaluate`` on it. Cancel stops a training and keeps its reservation open;
stopping the runner cancels what is in flight; a runner that starts marks the runs a dead one
left ``Running`` as crashed.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from flowhelpers import read_manifest, run_config
from served_flows import flow_service as _session_runner

from privsynth_core import PrivacyLedger
from privsynth_core.errors import ConfigError
from privsynth_core.privacy.release import CUSTODIAN_DIR, RELEASE_DIR
from privsynth_core.runs.config import RunConfig, run_config_from_dict
from privsynth_core.runs.sweep import check_grid_budget
from privsynth_core.table import fingerprint_frame, read_frame
from privsynth_flows.progress import read_losses
from privsynth_flows.served import FlowService

flow_service = _session_runner  # the session's runner, as this module's fixture
TINY_WGAN = {
    "batch_size": 200,
    "generator_layers": "16:relu",
    "critic_layers": "16:leaky_relu",
    "latent_dim": 8,
    "n_critic": 2,
}


@pytest.fixture
def split(adult_files: dict[str, Path], tmp_path: Path) -> dict[str, Any]:
    """A whole file (train + holdout rows) with a budget, and its train split as the input."""
    whole = tmp_path / "whole.csv"
    pl.concat(
        [
            pl.read_csv(adult_files["train"], infer_schema=False),
            pl.read_csv(adult_files["holdout"], infer_schema=False),
        ]
    ).write_csv(whole)
    key = fingerprint_frame(read_frame(whole))
    PrivacyLedger().set_budget(key, epsilon=5.0, delta=1e-4, label="whole file")
    return {"key": key, "extract": fingerprint_frame(read_frame(adult_files["train"]))}


def _config_file(adult_files: dict[str, Path], folder: Path, key: str, **settings: Any) -> Path:
    data = run_config(
        adult_files, folder / "run", budget_key=key, metrics=[], target=None, **settings
    )
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _submit(service: FlowService, config: Path, home: Path, losses: Path | None = None) -> str:
    return service.submit(
        "synthesize",
        {
            "config_file": str(config),
            "home": str(home),
            "losses_file": str(losses) if losses else None,
        },
        run_name=f"test-{uuid.uuid4().hex[:6]}",
        tags=["privsynth-test"],
    )


def _wait_for(condition: Any, timeout: float = 300, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_a_budget_key_charges_the_whole_file_and_is_validated(
    adult_files: dict[str, Path], split: dict[str, Any], tmp_path: Path
) -> None:
    config = run_config_from_dict(
        run_config(adult_files, tmp_path / "run", budget_key=split["key"])
    )
    plain = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    # Without the field, the hashes (the model store's keys) are what they always were.
    from privsynth_core.runs.config import _digest, _file_digest

    assert plain.fit_hash() == _digest(
        {
            "schema": _file_digest(plain.schema_path),
            "domain": "public",
            "domain_epsilon": None,
            "domain_delta": 1e-6,
            "generator": "independent",
            "params": plain.params,
            "epsilon": 0.5,
            "delta": None,
            "accountant": "rdp",
            "seed": 0,
            "source": None,
        }
    )
    assert config.fit_hash() != plain.fit_hash() and config.domain_hash() != plain.domain_hash()
    # The budget check counts against the whole file's budget; the extract has none of its own.
    assert check_grid_budget([config], fingerprint=split["extract"], schema_path=None).epsilon > 0
    for bad in ("claims", "source:", "source:no spaces", "ABCDEF", "0" * 63):
        with pytest.raises(ConfigError, match="budget_key"):
            run_config_from_dict(run_config(adult_files, tmp_path / "run", budget_key=bad))
    assert RunConfig.model_validate({**config.model_dump(), "budget_key": "source:claims"})


def test_a_served_run_is_a_flow_run_with_the_run_directory_of_privsynth_run(
    flow_service: FlowService,
    adult_files: dict[str, Path],
    split: dict[str, Any],
    tmp_path: Path,
    privsynth_home: Path,
) -> None:
    config = _config_file(
        adult_files,
        tmp_path,
        split["key"],
        generator="dpwgan",
        epsilon=1.0,
        delta=1e-5,
        params={**TINY_WGAN, "epochs": 2},
    )
    losses = tmp_path / "losses.jsonl"
    flow_run = _submit(flow_service, config, privsynth_home, losses)
    view = flow_service.wait(flow_run, timeout=600)
    assert view.state == "COMPLETED", view.message
    view = flow_service.read(flow_run)
    names = [name for name, _ in view.tasks]
    assert names[:3] == ["load_input", "validate_input", "resolve_domain"]
    assert {"fit_model", "sample_synthetic", "write_report", "publish"} <= set(names)
    assert {kind for _, kind in view.tasks} == {"COMPLETED"}
    assert view.progress is not None and view.progress.fraction == 1.0
    assert (view.progress.unit, view.progress.planned, view.progress.target) == ("epoch", 2, 1.0)
    # The run directory of `privsynth run`: the release apart from the custodian's folder.
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in (run_dir / RELEASE_DIR).iterdir()) == [
        "model",
        "release.json",
        "synthetic.csv",
    ]
    assert {"manifest.json", "schema.yaml", "report"} <= {
        p.name for p in (run_dir / CUSTODIAN_DIR).iterdir()
    }
    manifest = read_manifest(run_dir)
    assert manifest["config"]["budget_key"] == split["key"]
    # Charged to the whole file's budget, recording the extract; the losses stayed here.
    entries = PrivacyLedger().entries(split["key"])
    assert [(e.mechanism, e.status) for e in entries] == [
        ("noisy row count", "spent"),
        ("dpwgan training", "spent"),
    ]
    assert {e.extract for e in entries} == {split["extract"]}
    assert PrivacyLedger().entries(split["extract"]) == []
    rows = read_losses(losses)
    assert rows and set(rows[-1]["losses"]) == {"critic", "generator"}
    # What Prefect stores names files and settings: no hash of the rows, no loss, no size.
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with flow_service.client() as client:
        stored = client.read_flow_run(flow_run)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[stored.id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[stored.id]))
        )
    text = (
        json.dumps(stored.parameters)
        + " ".join(f"{a.description} {a.data}" for a in artifacts)
        + " ".join(log.message for log in logs)
    )
    assert stored.parameters["config_file"] == str(config)
    assert {a.type for a in artifacts} == {"progress", "markdown"}
    assert split["key"] not in text and split["extract"] not in text and "critic" not in text

    # Generate and evaluate: flows of their own on the same run.
    sample = tmp_path / "samples" / "more.csv"
    done = flow_service.wait(
        flow_service.submit(
            "generate",
            {
                "model_dir": str(run_dir / RELEASE_DIR / "model"),
                "rows": 123,
                "seed": 4,
                "destination": str(sample),
                "home": str(privsynth_home),
            },
            run_name="test-generate",
        )
    )
    assert done.state == "COMPLETED" and pl.read_csv(sample).height == 123
    assert PrivacyLedger().status(split["key"]).spent.epsilon == pytest.approx(
        sum(e.epsilon for e in entries)
    )  # post-processing: free
    before = (run_dir / CUSTODIAN_DIR / "report" / "metrics.json").read_text()
    done = flow_service.wait(
        flow_service.submit(
            "evaluate",
            {
                "run_dir": str(run_dir),
                "metrics": ["tvd", "ks"],
                "synthetic": str(sample),
                "target": "income",
                "home": str(privsynth_home),
            },
            run_name="test-evaluate",
        )
    )
    assert done.state == "COMPLETED", done.message
    metrics = json.loads((run_dir / CUSTODIAN_DIR / "report" / "metrics.json").read_text())
    assert metrics != json.loads(before)
    assert {m["metric_id"] for m in metrics["metrics"]} == {"tvd", "ks"}
    assert metrics["inputs"]["synthetic_rows"] == 123


@pytest.mark.extended  # test_app_handlers::test_cancelling_a_training_cancels_its_flow_run_and_keeps_its_reservation
def test_cancel_stops_a_training_and_keeps_its_reservation_open(
    flow_service: FlowService,
    adult_files: dict[str, Path],
    split: dict[str, Any],
    tmp_path: Path,
    privsynth_home: Path,
) -> None:
    config = _config_file(
        adult_files,
        tmp_path,
        split["key"],
        generator="dpwgan",
        epsilon=1.0,
        delta=1e-5,
        params={**TINY_WGAN, "epochs": 20000},
    )
    flow_run = _submit(flow_service, config, privsynth_home)
    started = _wait_for(lambda: flow_service.read(flow_run).progress, what="training progress")
    assert flow_run in flow_service.active("synthesize", tags=["privsynth-test"])
    flow_service.cancel(flow_run)
    view = flow_service.wait(flow_run, timeout=120)
    assert view.state == "CANCELLED"
    assert flow_run not in flow_service.active("synthesize")
    stopped = flow_service.read(flow_run).progress
    assert stopped is not None and started.done <= stopped.done < 20000
    # Its process is gone: the progress no longer moves.
    time.sleep(2)
    assert flow_service.read(flow_run).progress == stopped
    # The data was read: the reservation stays open (never refunded), for the custodian.
    (entry,) = PrivacyLedger().open_reservations(split["key"])
    assert (entry.mechanism, entry.epsilon) == ("dpwgan training", 1.0)
    assert not (tmp_path / "run").exists() and (tmp_path / ".run.work").is_dir()


@pytest.mark.extended  # cancel: test_cancel_stops_a_training_and_keeps_its_reservation_open
def test_a_stopped_runner_cancels_its_runs_and_a_new_one_marks_orphans_crashed(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    split: dict[str, Any],
    tmp_path: Path,
    privsynth_home: Path,
) -> None:
    from prefect.states import Running

    service = FlowService(
        f"test-stop-{uuid.uuid4().hex[:6]}",
        log_path=tmp_path / "runner.log",
        env={"PRIVSYNTH_DISABLED_PLUGINS": "evidently,report-plots"},
    )
    service.start()
    config = _config_file(
        adult_files,
        tmp_path,
        split["key"],
        generator="dpwgan",
        epsilon=1.0,
        delta=1e-5,
        params={**TINY_WGAN, "epochs": 20000},
    )
    flow_run = _submit(service, config, privsynth_home)
    _wait_for(lambda: service.read(flow_run).progress, what="training progress")
    # A quick run that has just completed when the runner stops (its process still exiting).
    (tmp_path / "quick").mkdir()
    quick = _submit(
        service,
        _config_file(adult_files, tmp_path / "quick", split["key"], epsilon=0.2),
        privsynth_home,
    )
    assert service.wait(quick, poll=0.05).state == "COMPLETED"
    service.stop()
    view = service.read(flow_run, details=False)
    assert (view.state, view.message) == ("CANCELLED", "Runner is shutting down.")
    assert service.read(quick, details=False).state == "COMPLETED"  # still true
    # A run its runner could not mark (the machine went down): left Running for good...
    with service.client() as client:
        deployment = client.read_deployment_by_name(f"generate/{service.name}")
        orphan = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={
                "model_dir": str(tmp_path),
                "rows": 1,
                "seed": 0,
                "destination": str(tmp_path / "never.csv"),
            },
            name="orphan",
        )
        client.set_flow_run_state(orphan.id, Running(), force=True)
    # ... until a runner of the same name starts again.
    restarted = FlowService(service.name, log_path=tmp_path / "runner2.log")
    restarted.start()
    try:
        view = restarted.read(str(orphan.id), details=False)
        assert view.state == "CRASHED" and "stopped while it was in flight" in view.message
        assert not (tmp_path / "never.csv").exists()
    finally:
        restarted.stop()
