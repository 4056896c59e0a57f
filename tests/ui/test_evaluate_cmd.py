"""``privsynth evaluate``: headline table, report folder, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_schema
from privsynth_core.registry import generators
from privsynth_ui.cli import main


@pytest.fixture
def tables(tmp_path: Path, adult_raw: pl.DataFrame) -> Path:
    """real / synthetic / holdout CSVs (disjoint Adult rows), the schema, a DP manifest."""
    raw = adult_raw.sample(fraction=1.0, seed=5, shuffle=True)
    for i, name in enumerate(("real", "synthetic", "holdout")):
        raw.slice(i * 400, 400).write_csv(tmp_path / f"{name}.csv")
    adult_schema().save(tmp_path / "schema.yaml")
    # A real model (saved outside the store, so its guarantee cannot be checked here).
    table = Table.from_frame(raw.slice(0, 400), adult_schema(), name="real")
    ledger = PrivacyLedger()
    ledger.set_budget(table.budget_key(), epsilon=3, delta=1e-4)
    generator = generators().get("independent")()
    generator.fit(table, budget=PrivacyBudget(0.5, 0.0), ledger=ledger)
    generator.save(tmp_path / "model")
    return tmp_path


def test_evaluate_prints_headlines_and_writes_the_report(
    tables: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tables)
    code = main(
        [
            "evaluate",
            "real.csv",
            "synthetic.csv",
            "--holdout",
            "holdout.csv",
            "--target",
            "income",
            "--manifest",
            "model",
            "--metrics",
            "marginal_2way_tvd,tstr,mia_distance,dp_guarantee,ks",
            "-o",
            "out",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "HEADLINE SCORE" in out and "2-way marginal TVD" in out and "TSTR" in out
    assert "report: out/report.html" in out and "NOT covered by the DP guarantee" in out
    assert "strong guarantee" in out  # epsilon 0.5 (+ the row count) from the manifest
    assert "as stated by the model's manifest (not verified against the ledger" in out
    data = json.loads((tables / "out" / "metrics.json").read_text())
    assert {m["metric_id"] for m in data["metrics"]} == {
        "marginal_2way_tvd",
        "tstr",
        "mia_distance",
        "dp_guarantee",
        "ks",
    }
    assert (tables / "out" / "report.html").is_file()


def test_evaluate_refuses_a_named_metric_without_its_input(
    tables: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tables)
    code = main(
        [
            "evaluate",
            "real.csv",
            "synthetic.csv",
            "--schema",
            "schema.yaml",
            "--metrics",
            "tstr",
            "-o",
            "out",
        ]
    )
    assert code == 2
    assert "tstr needs a target column" in capsys.readouterr().err
    assert not (tables / "out").exists()  # nothing half-written
