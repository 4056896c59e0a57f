"""The synthesize flow: a complete run directory, retries of flaky I/O, the model store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from flowhelpers import (
    read_manifest,
    read_model_manifest,
    read_release,
    run_config,
    set_budget,
    spent_epsilon,
    training_entries,
)

from privsynth_core import PrivacyLedger
from privsynth_core.errors import InputFileError, SchemaError
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import run_config_from_dict
from privsynth_core.runs.rundir import work_dir_for


def _task_runs(flow_run_id: Any, *names: str) -> dict[str, list[Any]]:
    """Task runs of a flow run by task name, read back from the server.

    Prefect 3 reports task run states to the server as events, which it writes a moment
    after the flow returns: wait (a bounded while) until each of ``names`` is there in a
    final state, so a read never races the event stream.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    deadline = time.monotonic() + 60
    while True:
        runs: dict[str, list[Any]] = {}
        for run in asyncio.run(read()):
            runs.setdefault(run.name.rsplit("-", 1)[0], []).append(run)
        settled = all(
            name in runs
            and all(run.state is not None and run.state.is_final() for run in runs[name])
            for name in names
        )
        if settled or time.monotonic() > deadline:
            return runs
        time.sleep(0.25)


def test_synthesize_flaky_input_succeeds_after_retries(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privsynth_flows.synthesize import synthesize

    set_budget(adult_files["train"], epsilon=2)
    real_load = pipeline.load_input
    attempts: list[float] = []

    def flaky_load(config: Any, **kwargs: Any) -> Any:
        # Injected fault: the first two reads fail as a flaky network file system would.
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise OSError(5, "Input/output error (injected)")
        return real_load(config, **kwargs)

    monkeypatch.setattr(pipeline, "load_input", flaky_load)
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    state = synthesize(config, return_state=True)
    assert state.is_completed()
    assert len(attempts) == 3
    # Backoff from PRIVSYNTH_IO_RETRY_DELAYS (0.2, 0.4, ... in the tests).
    assert attempts[1] - attempts[0] >= 0.2 and attempts[2] - attempts[1] >= 0.4
    load_runs = _task_runs(state.state_details.flow_run_id, "load_input")["load_input"]
    assert load_runs[0].run_count == 3 and load_runs[0].state.is_completed()
    assert (tmp_path / "run" / "custodian" / "manifest.json").is_file()


def test_synthesize_schema_error_is_not_retried(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from privsynth_flows.synthesize import synthesize

    bad_schema = tmp_path / "bad.yaml"
    bad_schema.write_text(adult_files["schema"].read_text().replace("name: age", "name: agee"))
    config = run_config_from_dict(
        run_config(adult_files, tmp_path / "run", schema_path=str(bad_schema))
    )
    state = synthesize(config, return_state=True)
    assert state.is_failed()
    with pytest.raises(SchemaError, match="agee"):
        state.result()
    (validate,) = _task_runs(state.state_details.flow_run_id, "validate_input")["validate_input"]
    assert validate.run_count == 1  # a user error: never retried
    assert not (tmp_path / "run").exists()


def test_a_damaged_input_fails_at_once_and_a_missing_one_is_retried(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    # What is wrong inside a file (a cut-off gzip) no retry can cure: one attempt, one clear
    # error. A file that is not there (yet) may appear: the load is retried with backoff.
    from privsynth_flows.synthesize import synthesize

    corpus = Path(__file__).parents[1] / "bad_inputs"
    for name, runs, words in [
        ("truncated.csv.gz", 1, "damaged or cut-off gzip"),
        ("no-such-file.csv", 4, "does not exist"),
    ]:
        config = run_config_from_dict(
            run_config(adult_files, tmp_path / "run", input=str(corpus / name))
        )
        state = synthesize(config, return_state=True)
        assert state.is_failed()
        with pytest.raises(InputFileError, match=words):
            state.result()
        (load,) = _task_runs(state.state_details.flow_run_id, "load_input")["load_input"]
        assert load.run_count == runs, name
        assert not (tmp_path / "run").exists()


def test_synthesize_rerun_reuses_the_stored_model_and_spends_nothing(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    dpsgd_plugin: str,
) -> None:
    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=3, delta=1e-4)
    config = run_config_from_dict(
        run_config(
            adult_files,
            tmp_path / "run",
            generator=dpsgd_plugin,
            epsilon=1.0,
            delta=1e-5,
            metrics=["tvd"],
            params={"steps": 120, "checkpoint_every": 20},
        )
    )
    ledger = PrivacyLedger()

    first = synthesize(config)
    (trained,) = training_entries(fingerprint)
    assert trained.status == "spent" and 0 < trained.epsilon <= 1.0
    entries_after_first = ledger.entries(fingerprint)
    assert first.manifest["fit"]["reused_from_store"] is False

    second = synthesize(config, return_state=True)
    assert second.is_completed()
    assert ledger.entries(fingerprint) == entries_after_first  # nothing charged
    manifest = read_manifest(tmp_path / "run")
    assert manifest["fit"]["reused_from_store"] is True
    assert manifest["fit"]["ledger_entry"] == trained.entry_id  # paid by the first run
    assert read_release(tmp_path / "run")["privacy"]["epsilon"] == pytest.approx(
        spent_epsilon(fingerprint)
    )
    assert not work_dir_for(tmp_path / "run").exists()


def test_synthesize_retrains_when_the_stored_model_is_gone(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A store entry that was deleted is not trusted: the model is trained (and paid) again."""
    import shutil

    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=2)
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    synthesize(config)
    shutil.rmtree(pipeline.cache_dir() / "models")
    result = synthesize(config)
    assert len(training_entries(fingerprint)) == 2
    assert (result.release_dir / "model" / "manifest.json").is_file()


def test_synthesize_run_directory_contents(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client

    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=5)
    config = run_config_from_dict(
        run_config(
            adult_files,
            tmp_path / "run",
            name="contents-test",
            domain="dp",
            schema_path=str(adult_files["schema"]),
            domain_epsilon=2.0,
            domain_delta=1e-5,
            rows=500,
            seed=7,
        )
    )
    result = synthesize(config)
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in run_dir.iterdir()) == ["custodian", "release"]
    assert sorted(p.name for p in (run_dir / "release").iterdir()) == [
        "model",
        "release.json",
        "synthetic.csv",
    ]
    assert (run_dir / "custodian" / "report" / "report.html").is_file()
    assert (run_dir / "custodian" / "report" / "metrics.json").is_file()
    manifest = read_manifest(run_dir)
    assert manifest["config"]["seed"] == 7 and manifest["seed"] == 7
    assert manifest["config_hash"] == config.config_hash()
    assert manifest["dataset"]["fingerprint"] == fingerprint
    assert manifest["domain"]["mode"] == "dp"
    entries = PrivacyLedger().entries(fingerprint)
    domain_spent = sum(e.epsilon for e in entries if e.mechanism.startswith("dp "))
    assert domain_spent == pytest.approx(2.0)
    release = read_release(run_dir)
    parts = {p["step"]: p for p in release["privacy"]["parts"]}
    assert parts["training"]["epsilon"] == pytest.approx(0.5)
    # The guarantee covers everything the ledger charged for this release, and only that.
    assert release["privacy"]["epsilon"] == pytest.approx(sum(e.epsilon for e in entries))
    assert read_model_manifest(run_dir)["privacy"]["epsilon"] == pytest.approx(
        release["privacy"]["epsilon"]
    )
    assert manifest["outputs"]["synthetic_sha256"] == pipeline.file_sha256(
        result.release_dir / "synthetic.csv"
    )
    assert {"privsynth", "prefect", "polars"} <= set(manifest["versions"])
    assert len((result.release_dir / "synthetic.csv").read_text().splitlines()) == 501

    async def artifact() -> Any:
        async with get_client() as client:
            return await client.read_latest_artifacts()

    found = [a for a in asyncio.run(artifact()) if a.key == "privsynth-contents-test"]
    assert found, "no markdown artifact for the run"
    text = found[0].data
    assert "not DP, custodian-only" in text and "custodian" in text
    assert f"epsilon = {release['privacy']['epsilon']:.6g}" in text
    assert result.headlines and all(
        h["metric_id"] in (config.metrics or []) for h in result.headlines
    )


def test_evaluate_flow_rescores_a_published_run(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    import json

    from privsynth_flows.synthesize import evaluate, synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=2)
    result = synthesize(run_config_from_dict(run_config(adult_files, tmp_path / "run")))
    manifest_before = (result.custodian_dir / "manifest.json").read_bytes()
    entries_before = PrivacyLedger().entries(fingerprint)
    report = evaluate(result.run_dir, metrics=["ks", "exact_copy_rate"])
    data = json.loads((report / "metrics.json").read_text())
    assert [m["metric_id"] for m in data["metrics"]] == ["ks", "exact_copy_rate"]
    assert (result.custodian_dir / "manifest.json").read_bytes() == manifest_before
    assert PrivacyLedger().entries(fingerprint) == entries_before  # evaluation spends nothing


def test_synthesize_refuses_before_paying_for_a_dp_domain(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from privsynth_core.errors import BudgetExceededError
    from privsynth_flows.synthesize import synthesize

    fingerprint = set_budget(adult_files["train"], epsilon=1.0)
    # The domain (0.5) fits the budget, domain + training (1.3) does not: nothing is spent.
    config = run_config_from_dict(
        run_config(adult_files, tmp_path / "run", domain="dp", domain_epsilon=0.5, epsilon=0.8)
    )
    with pytest.raises(BudgetExceededError, match="nothing was run"):
        synthesize(config)
    assert PrivacyLedger().entries(fingerprint) == []
