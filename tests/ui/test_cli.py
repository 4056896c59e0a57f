"""The command line: fast help, and the schema / budget / validate workflow end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from privsynth_core import PrivacyLedger
from privsynth_core.table import fingerprint_frame, read_frame
from privsynth_ui.cli import main


def test_help_imports_no_heavy_library() -> None:
    # Speed is measured in bench/ (a loaded machine makes wall-clock assertions flaky); what
    # makes `--help` fast is that none of the heavy libraries is imported, and that is checked.
    code = (
        "import sys; from privsynth_ui.cli import build_parser; build_parser().format_help(); "
        "print([m for m in ('torch', 'opacus', 'sdv', 'evidently', 'gradio', 'prefect', "
        "'jax', 'opendp') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert result.stdout.strip() == "[]"
    subprocess.run(
        [sys.executable, "-m", "privsynth_ui.cli", "--help"],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_schema_infer_confirm_validate_flow(
    tmp_path: Path, adult_raw: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "adult.csv"
    adult_raw.head(2000).write_csv(data)
    schema_path = tmp_path / "schema.yaml"
    assert main(["schema", "infer", str(data), "-o", str(schema_path)]) == 0
    assert "domain INFERRED" in capsys.readouterr().out
    assert yaml.safe_load(schema_path.read_text())["domain"] == "inferred"
    # The draft's min/max bounds and rare categories are listed, and nothing is confirmed
    # until a person decides about them.
    capsys.readouterr()
    assert main(["schema", "confirm", str(schema_path)]) == 2
    err = capsys.readouterr().err
    assert "'age': the bounds [17.0, 90.0] are the data's own min and max" in err
    assert "rare categor" in err and "round public limits would be [10.0, 90.0]" in err
    assert yaml.safe_load(schema_path.read_text())["domain"] == "inferred"
    assert main(["schema", "confirm", str(schema_path), "--round-bounds", "--accept-flagged"]) == 0
    confirmed = yaml.safe_load(schema_path.read_text())
    assert confirmed["domain"] == "public" and "review" not in confirmed
    age = next(c for c in confirmed["columns"] if c["name"] == "age")
    assert age["bounds"] == [10, 90]
    assert main(["data", "validate", str(data), "--schema", str(schema_path)]) == 0
    # Rows outside the confirmed domain are all reported at once.
    bad = tmp_path / "bad.csv"
    adult_raw.head(50).with_columns(
        pl.lit("150").alias("age"), pl.lit("Atlantis").alias("native-country")
    ).write_csv(bad)
    capsys.readouterr()
    assert main(["data", "validate", str(bad), "--schema", str(schema_path)]) == 1
    out = capsys.readouterr().out
    # Counts, and what a fit does with each (no value of the rows unless asked for).
    assert "3 problem(s)" in out and "'age': 50 value(s) outside the bounds, clamped" in out
    assert "'native-country': 50 value(s) not among its categories, read as missing" in out
    assert "50 row(s) dropped" in out and "Atlantis" not in out
    assert main(["data", "validate", str(bad), "--schema", str(schema_path), "--show-values"]) == 1
    assert "'Atlantis'" in capsys.readouterr().out


def test_budget_set_and_show(
    tmp_path: Path, adult_raw: pl.DataFrame, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "adult.csv"
    adult_raw.head(300).write_csv(data)
    assert main(["budget", "show"]) == 0
    assert "no budgets set yet" in capsys.readouterr().out
    assert main(["budget", "set", str(data), "--epsilon", "2", "--delta", "1e-5"]) == 0
    fingerprint = fingerprint_frame(read_frame(data))
    PrivacyLedger().charge(
        fingerprint, mechanism="test mechanism", epsilon=0.5, delta=0.0, run_id="run-xyz"
    )
    capsys.readouterr()
    assert main(["budget", "show", str(data)]) == 0
    out = capsys.readouterr().out
    assert "spent (epsilon=0.5" in out and "remaining (epsilon=1.5" in out
    assert "test mechanism" in out
    assert main(["budget", "show"]) == 0
    assert "adult.csv" in capsys.readouterr().out
    # A budget below what is spent is refused with a readable error.
    assert main(["budget", "set", str(data), "--epsilon", "0.1", "--delta", "1e-5"]) == 2
    assert "already been spent" in capsys.readouterr().err
