"""Scheduled deployments for real: a Prefect server, `privsynth deploy`, a scheduled run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from flowhelpers import read_manifest, read_release, run_config, set_budget

PRIVSYNTH_BIN = Path(sys.executable).parent / "privsynth"
PREFECT_BIN = Path(sys.executable).parent / "prefect"


async def _deployment_runs(name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name]))
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_deploy_interval_schedule_runs_and_completes(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    set_budget(adult_files["train"], epsilon=5)
    config_path = tmp_path / "nightly.yaml"
    config_path.write_text(
        yaml.safe_dump(run_config(adult_files, tmp_path / "nightly", name="nightly-test", rows=300))
    )
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(PRIVSYNTH_BIN),
                "deploy",
                str(config_path),
                "--interval",
                "5",
                "--name",
                "nightly-test",
            ],
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 150
        done: list[Any] = []
        while not done:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(1)
            done = [
                r
                for r in asyncio.run(_deployment_runs("nightly-test"))
                if r.state and r.state.is_completed()
            ]
    finally:
        _stop(proc)
    run = done[0]
    assert run.auto_scheduled, "the run was not created by the schedule"
    assert run.expected_start_time is not None
    manifest = read_manifest(tmp_path / "nightly")
    assert manifest["name"] == "nightly-test"
    training = next(
        p for p in read_release(tmp_path / "nightly")["privacy"]["parts"] if p["step"] == "training"
    )
    assert training["epsilon"] == 0.5


def test_deploy_cron_on_work_pool_registers_schedule(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    async def pool() -> None:
        async with get_client() as client:
            await client.create_work_pool(
                WorkPoolCreate(name="privsynth-test", type="process"), overwrite=True
            )

    asyncio.run(pool())
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(run_config(adult_files, tmp_path / "out")))
    done = subprocess.run(
        [
            str(PRIVSYNTH_BIN),
            "deploy",
            str(config_path),
            "--cron",
            "0 2 * * *",
            "--timezone",
            "Europe/Berlin",
            "--name",
            "cron-test",
            "--work-pool",
            "privsynth-test",
        ],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "registered on work pool 'privsynth-test'" in done.stdout

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_deployment_by_name("synthesize/cron-test")

    deployment = asyncio.run(read())
    schedule = deployment.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert deployment.entrypoint == "privsynth_flows.synthesize.synthesize"
    assert deployment.work_pool_name == "privsynth-test"
    assert deployment.parameters["config"]["generator"] == "independent"


def test_deploy_without_server_explains(tmp_path: Path, adult_files: dict[str, Path]) -> None:
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(run_config(adult_files, tmp_path / "out")))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "empty-prefect-home")
    done = subprocess.run(
        [str(PRIVSYNTH_BIN), "deploy", str(config_path), "--cron", "0 2 * * *"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "prefect server start" in done.stderr and "PREFECT_API_URL" in done.stderr


def test_zombie_run_automation_of_the_docs_is_accepted(prefect_env: dict[str, str]) -> None:
    """The automation docs/flows.md tells operators to create (examples/flows/) is valid."""
    from prefect.automations import Automation

    path = Path(__file__).parents[2] / "examples" / "flows" / "crash-zombie-runs.yaml"
    assert (
        str(path.relative_to(path.parents[2]))
        in (Path(__file__).parents[2] / "docs" / "flows.md").read_text()
    )
    done = subprocess.run(
        [str(PREFECT_BIN), "automation", "create", "--from-file", str(path)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found: Any = Automation.read(name="privsynth - crash zombie flow runs")  # sync here
    assert found.enabled and found.trigger.posture == "Proactive"
    assert found.trigger.within.total_seconds() == 600
    assert [a.type for a in found.actions] == ["change-flow-run-state"]
