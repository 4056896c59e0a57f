"""The guarantee a report states comes from the ledger where the custodian's records allow,
never from an editable file alone; releases stay free of ledger ids."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import adult_schema
from privsynth_core.privacy.guarantee import load_manifest, verified_guarantee
from privsynth_ui.cli import main

# No plots or Evidently page: the guarantee is what these reports are read for.
pytestmark = pytest.mark.usefixtures("light_reports")


@pytest.fixture
def fitted(
    tmp_path: Path,
    adult_raw: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """``privsynth fit`` of ``independent`` at epsilon 0.5 into ``model/`` (through the store),
    with ``real.csv``, ``synthetic.csv`` and ``schema.yaml`` beside it; the current folder."""
    monkeypatch.chdir(tmp_path)
    adult_raw.head(600).write_csv("real.csv")
    adult_schema().save("schema.yaml")
    assert main(["budget", "set", "real.csv", "--epsilon", "3", "--delta", "1e-4"]) == 0
    assert (
        main(
            [
                "fit",
                "real.csv",
                "--schema",
                "schema.yaml",
                "--generator",
                "independent",
                "--epsilon",
                "0.5",
                "-o",
                "model",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["sample", "model", "-n", "300", "-o", "synthetic.csv"]) == 0
    capsys.readouterr()
    return tmp_path


def edit_consistently(manifest_path: Path, epsilon: float) -> None:
    """Change a manifest's training epsilon everywhere it is stated, so that it adds up."""
    data = json.loads(manifest_path.read_text())
    privacy = data["privacy"]
    training = next(p for p in privacy["parts"] if p["step"] == "training")
    training["epsilon"] = data["fit"]["epsilon"] = epsilon
    privacy["epsilon"] = math.fsum(p["epsilon"] for p in privacy["parts"])
    manifest_path.write_text(json.dumps(data, indent=2))


def evaluate_out(argv_tail: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert (
        main(
            [
                "evaluate",
                "real.csv",
                "synthetic.csv",
                "--metrics",
                "tvd,dp_guarantee",
                "--quiet",
                *argv_tail,
            ]
        )
        == 0
    )
    return capsys.readouterr().out


def ledger_total() -> float:
    ledger = PrivacyLedger()
    return math.fsum(e.epsilon for d in ledger.datasets() for e in ledger.entries(d.key))


def test_a_model_from_the_store_is_reported_as_the_ledger_charged_it(
    fitted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = evaluate_out(["--manifest", "model", "-o", "report"], capsys)
    stated = load_manifest("model")["privacy"]["epsilon"]
    assert stated == ledger_total()  # row count + training
    assert f"epsilon={stated:.4g}" in out and "as charged in the privacy ledger (entries #" in out
    assert "WARNING" not in out
    page = Path("report/report.html").read_text()
    assert "as charged in the privacy ledger" in page
    data = json.loads(Path("report/metrics.json").read_text())
    assert data["privacy_guarantee"]["verified"] is True
    # The release itself carries no ledger id: the link lives in the custodian's store record.
    for path in Path("model").rglob("*"):
        if path.suffix in (".json", ".yaml"):
            assert "ledger" not in path.read_text().lower(), path


def test_an_edited_manifest_is_reported_with_the_ledgers_figure_and_a_warning(
    fitted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_consistently(Path("model/manifest.json"), 0.01)  # adds up: only the ledger can tell
    stated = load_manifest("model")["privacy"]["epsilon"]  # 0.01 + the row count's
    out = evaluate_out(["--manifest", "model", "-o", "report"], capsys)
    assert f"epsilon={ledger_total():.4g}" in out and ledger_total() > stated
    assert f"WARNING: the model's manifest states epsilon={stated:.4g}" in out
    assert "edited after the fit" in out
    data = json.loads(Path("report/metrics.json").read_text())
    verdict = next(m["verdict"] for m in data["metrics"] if m["metric_id"] == "dp_guarantee")
    assert verdict[0] == "poor" and "edited" in verdict[1]


def test_without_the_custodians_record_the_guarantee_is_marked_unverified(
    fitted: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another installation (another PRIVSYNTH_HOME) has no record of this model.
    monkeypatch.setenv("PRIVSYNTH_HOME", str(fitted / "elsewhere"))
    edit_consistently(Path("model/manifest.json"), 0.01)
    stated = load_manifest("model")["privacy"]["epsilon"]
    out = evaluate_out(["--manifest", "model", "-o", "report"], capsys)
    assert f"epsilon={stated:.4g}" in out
    assert "as stated by the model's manifest (not verified against the ledger" in out
    page = Path("report/report.html").read_text()
    assert "not verified against the ledger" in page and 'class="guarantee notdp"' in page


def test_a_run_directory_is_checked_against_its_custodian_manifest(
    tmp_path: Path,
    adult_raw: pl.DataFrame,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from privsynth_core.runs.config import run_config_from_dict
    from privsynth_core.runs.rundir import run_pipeline

    monkeypatch.chdir(tmp_path)
    adult_raw.head(600).write_csv("real.csv")
    adult_schema().save("schema.yaml")
    assert main(["budget", "set", "real.csv", "--epsilon", "3", "--delta", "1e-4"]) == 0
    run = run_pipeline(
        run_config_from_dict(
            {
                "input": "real.csv",
                "schema_path": "schema.yaml",
                "generator": "independent",
                "epsilon": 0.5,
                "metrics": ["tvd"],
                "output_dir": "run",
            }
        )
    )
    shutil.copy(run.release_dir / "synthetic.csv", "synthetic.csv")
    capsys.readouterr()
    out = evaluate_out(["--manifest", "run", "-o", "report"], capsys)
    assert "as charged in the privacy ledger" in out and "WARNING" not in out
    edit_consistently(run.release_dir / "model" / "manifest.json", 0.01)
    out = evaluate_out(["--manifest", "run", "-o", "report2"], capsys)
    assert "WARNING" in out and "not the one the run wrote" in out


def test_verified_guarantee_without_a_manifest_or_for_a_non_dp_model() -> None:
    assert verified_guarantee(None) is None
    manifest: dict[str, Any] = {
        "generator_id": "ctgan",
        "differentially_private": False,
        "privacy": {"label": "NOT differentially private"},
    }
    guarantee = verified_guarantee(manifest)
    assert guarantee is not None and guarantee["differentially_private"] is False
