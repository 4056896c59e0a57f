"""The command line over the flows: run (threads and Dask), sweep, demo; and the core pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from flowhelpers import (
    CHEAP_METRICS,
    read_manifest,
    read_release,
    run_config,
    set_budget,
    training_entries,
)

from privsynth_core import PrivacyLedger
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import run_config_from_dict
from privsynth_core.runs.rundir import run_pipeline
from privsynth_ui.cli import main


def test_cli_run_on_dask_then_cached_rerun(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fingerprint = set_budget(adult_files["train"], epsilon=2)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(run_config(adult_files, tmp_path / "run")))

    # The metric fan-out runs on a local Dask cluster of 2 worker processes.
    assert main(["run", str(config_path), "--task-runner", "dask", "--dask-workers", "2"]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {tmp_path / 'run'}" in out
    assert "custodian/" in out and "(computed on real data: not DP, custodian-only" in out
    assert "guarantee of the release, end to end" in out and "training" in out
    assert "reused from the store" not in out
    report = json.loads((tmp_path / "run" / "custodian" / "report" / "metrics.json").read_text())
    assert {m["metric_id"] for m in report["metrics"]} == set(CHEAP_METRICS)
    entries = PrivacyLedger().entries(fingerprint)

    assert main(["run", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "(the model was reused from the store: this run charged no training)" in out
    assert PrivacyLedger().entries(fingerprint) == entries
    assert len(training_entries(fingerprint)) == 1


def test_cli_sweep_writes_summary(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_budget(adult_files["train"], epsilon=2)
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base": {
                    "input": str(adult_files["train"]),
                    "schema_path": str(adult_files["schema"]),
                    "metrics": CHEAP_METRICS,
                    "rows": 300,
                },
                "grid": {"generators": ["independent"], "epsilons": [0.1, 0.3]},
                "output_dir": "sweep",
            }
        )
    )
    assert main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"summary  {tmp_path / 'sweep' / 'summary.csv'}" in out
    assert (tmp_path / "sweep" / "privacy_utility.png").is_file()
    assert (
        read_manifest(tmp_path / "sweep" / "independent-eps0.3-seed0")["config"]["epsilon"] == 0.3
    )


def test_cli_demo_with_independent(
    prefect_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_dir = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "-o",
                str(out_dir),
                "--rows",
                "1000",
                "--generator",
                "independent",
                "--epsilon",
                "0.5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "no budget was set for the demo dataset" in out and "DEMO budget" in out
    assert f"release/    {out_dir / 'run' / 'release'}" in out
    manifest = read_manifest(out_dir / "run")
    training = next(
        p for p in read_release(out_dir / "run")["privacy"]["parts"] if p["step"] == "training"
    )
    assert training["epsilon"] == 0.5 and manifest["domain"]["mode"] == "public"
    assert manifest["dataset"]["rows"] == 1000


def test_core_pipeline_without_prefect_matches_flow_layout(
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    fingerprint = set_budget(adult_files["train"], epsilon=2)
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    result = run_pipeline(config)
    assert sorted(p.name for p in result.run_dir.iterdir()) == ["custodian", "release"]
    assert set(result.manifest["timings_seconds"]) == {
        "load",
        "validate",
        "domain",
        "fit",
        "sample",
        "evaluate",
        "report",
    }
    (trained,) = training_entries(fingerprint)
    assert trained.epsilon == 0.5
    # The entry names the model store entry it paid for, and that entry names it back.
    stored = pipeline.cache_dir() / "models" / trained.params["fit_key"] / "model"
    assert pipeline.fit_record(stored)["ledger_entry_id"] == trained.entry_id
