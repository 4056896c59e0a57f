"""The synthesize flow: a complete run directory, retries of flaky I/O, the training cache."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from flowhelpers import read_manifest, run_config, set_budget

from privsynth_core import PrivacyLedger, pipeline
from privsynth_core.config import run_config_from_dict
from privsynth_core.errors import SchemaError
from privsynth_core.runs import work_dir_for


def _task_runs(flow_run_id: Any) -> dict[str, list[Any]]:
    """Task runs of a flow run by task name, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))

    runs: dict[str, list[Any]] = {}
    for run in asyncio.run(read()):
        runs.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
    return runs


def test_synthesize_flaky_input_succeeds_after_retries(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privsynth_flows.synthesize import synthesize

    set_budget(adult_files["train"], epsilon=2)
    real_load = pipeline.load_input
    attempts: list[float] = []

    def flaky_load(config: Any) -> Any:
        # Injected fault: the first two reads fail as a flaky network file system would.
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise OSError(5, "Input/output error (injected)")
        return real_load(config)

    monkeypatch.setattr(pipeline, "load_input", flaky_load)
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    state = synthesize(config, return_state=True)
    assert state.is_completed()
    assert len(attempts) == 3
    # Backoff from PRIVSYNTH_IO_RETRY_DELAYS (0.2, 0.4, ... in the tests).
    assert attempts[1] - attempts[0] >= 0.2 and attempts[2] - attempts[1] >= 0.4
    load_runs = _task_runs(state.state_details.flow_run_id)["load_input"]
    assert load_runs[0].run_count == 3 and load_runs[0].state.is_completed()
    assert (tmp_path / "run" / "manifest.json").is_file()


def test_synthesize_schema_error_is_not_retried(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
) -> None:
    from privsynth_flows.synthesize import synthesize

    bad_schema = tmp_path / "bad.yaml"
    bad_schema.write_text(adult_files["schema"].read_text().replace("name: age", "name: agee"))
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run",
                                             schema_path=str(bad_schema)))
    started = time.perf_counter()
    with pytest.raises(SchemaError, match="agee"):
        synthesize(config)
    assert time.perf_counter() - started < 10
    assert not (tmp_path / "run").exists()


def test_synthesize_rerun_hits_cache_and_spends_nothing(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
    dpsgd_plugin: str,
) -> None:
    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    # A DP-SGD generator that trains for a few seconds, so the saving is visible.
    config = run_config_from_dict(run_config(
        adult_files, tmp_path / "run", generator=dpsgd_plugin, epsilon=1.0, delta=1e-5,
        metrics=["tvd"], params={"steps": 120, "step_seconds": 0.02, "checkpoint_every": 20}))
    ledger = PrivacyLedger()

    started = time.perf_counter()
    first = synthesize(config)
    first_seconds = time.perf_counter() - started
    entries_after_first = ledger.entries(fingerprint)
    assert [e.status for e in entries_after_first] == ["spent"]
    spent = entries_after_first[0].epsilon
    assert 0 < spent <= 1.0
    assert first.manifest["privacy"]["epsilon"] == pytest.approx(spent)

    started = time.perf_counter()
    second = synthesize(config, return_state=True)
    second_seconds = time.perf_counter() - started
    assert second.is_completed()
    assert ledger.entries(fingerprint) == entries_after_first  # nothing charged
    fit_runs = _task_runs(second.state_details.flow_run_id)["fit_model"]
    assert fit_runs[0].state.name == "Cached"
    assert second_seconds < 0.5 * first_seconds, (first_seconds, second_seconds)
    manifest = read_manifest(tmp_path / "run")
    fit_step = next(s for s in manifest["privacy"]["by_step"] if s["step"] == "fit")
    assert fit_step["charged_by_this_run"] is False
    assert manifest["privacy"]["epsilon"] == pytest.approx(spent)
    assert not work_dir_for(tmp_path / "run").exists()


def test_synthesize_cache_miss_when_model_dir_is_gone(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
) -> None:
    """A cached record whose model directory was deleted must not be trusted."""
    import shutil

    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=2)
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    synthesize(config)
    shutil.rmtree(pipeline.cache_dir() / "models")
    result = synthesize(config)
    assert len(PrivacyLedger().entries(fingerprint)) == 2  # trained (and paid) again
    assert (result.run_dir / "model" / "manifest.json").is_file()


def test_synthesize_run_directory_contents(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client

    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=5)
    config = run_config_from_dict(run_config(
        adult_files, tmp_path / "run", name="contents-test", domain="dp",
        schema_path=str(adult_files["schema"]), domain_epsilon=2.0, domain_delta=1e-5,
        rows=500, seed=7))
    result = synthesize(config)
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in run_dir.iterdir()) == ["manifest.json", "model", "report",
                                                         "synthetic.csv"]
    assert (run_dir / "report" / "report.html").is_file()
    assert (run_dir / "report" / "metrics.json").is_file()
    manifest = read_manifest(run_dir)
    assert manifest["config"]["seed"] == 7 and manifest["seed"] == 7
    assert manifest["config_hash"] == config.config_hash()
    assert manifest["dataset"]["fingerprint"] == fingerprint
    assert manifest["domain"]["mode"] == "dp"
    steps = {s["step"]: s for s in manifest["privacy"]["by_step"]}
    entries = PrivacyLedger().entries(fingerprint)
    domain_spent = sum(e.epsilon for e in entries if e.mechanism.startswith("dp "))
    assert steps["domain"]["epsilon"] == pytest.approx(domain_spent) == pytest.approx(2.0)
    assert steps["domain"]["charged_by_this_run"] is True
    assert steps["fit"]["epsilon"] == pytest.approx(0.5)
    assert manifest["privacy"]["epsilon"] == pytest.approx(2.5)
    assert sum(e.epsilon for e in entries) == pytest.approx(2.5)
    assert manifest["outputs"]["synthetic"]["sha256"] == pipeline.file_sha256(
        run_dir / "synthetic.csv")
    assert {"privsynth", "prefect", "polars"} <= set(manifest["versions"])
    assert len((run_dir / "synthetic.csv").read_text().splitlines()) == 501

    async def artifact() -> Any:
        async with get_client() as client:
            return await client.read_latest_artifacts()

    found = [a for a in asyncio.run(artifact()) if a.key == "privsynth-contents-test"]
    assert found, "no markdown artifact for the run"
    text = found[0].data
    assert "not DP, custodian-only" in text and "report.html" in text
    assert "epsilon = 2.5" in text
    assert result.headlines and all(h["metric_id"] in (config.metrics or [])
                                    for h in result.headlines)


def test_evaluate_flow_rescores_a_published_run(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
) -> None:
    import json

    from privsynth_flows.synthesize import evaluate, synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=2)
    result = synthesize(run_config_from_dict(run_config(adult_files, tmp_path / "run")))
    manifest_before = (result.run_dir / "manifest.json").read_bytes()
    report = evaluate(result.run_dir, metrics=["ks", "exact_copy_rate"])
    data = json.loads((report / "metrics.json").read_text())
    assert [m["metric_id"] for m in data["metrics"]] == ["ks", "exact_copy_rate"]
    assert (result.run_dir / "manifest.json").read_bytes() == manifest_before
    assert len(PrivacyLedger().entries(fingerprint)) == 1  # evaluation spends nothing


def test_synthesize_refuses_before_paying_for_a_dp_domain(
    prefect_env: dict[str, str], adult_files: dict[str, Path], tmp_path: Path,
) -> None:
    from privsynth_core.errors import BudgetExceededError
    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=1.0)
    # The domain (0.5) fits the budget, domain + training (1.3) does not: nothing is spent.
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run", domain="dp",
                                             domain_epsilon=0.5, epsilon=0.8))
    with pytest.raises(BudgetExceededError, match="nothing was run"):
        synthesize(config)
    assert PrivacyLedger().entries(fingerprint) == []
