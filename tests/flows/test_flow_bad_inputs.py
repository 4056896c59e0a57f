"""``privsynth run`` on the bad-input corpus and on plans that must be refused before anything
is reserved: exit code 2, one ``privsynth: error:`` line, no run directory, nothing charged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from flowhelpers import run_config, set_budget

from privsynth_core import PrivacyLedger
from privsynth_ui.cli import main

CORPUS = Path(__file__).parents[1] / "bad_inputs"
CATALOGUE: dict[str, Any] = yaml.safe_load((CORPUS / "CATALOGUE.yaml").read_text())


def run_refused(
    config: dict[str, Any], tmp_path: Path, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert sum(line.startswith("privsynth: error: ") for line in err.splitlines()) == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert not Path(config["output_dir"]).exists()
    ledger = PrivacyLedger()
    assert ledger.open_reservations() == []
    assert not [
        e
        for d in ledger.datasets()
        for e in ledger.entries(d.key)
        if e.mechanism.endswith("training")
    ]


def test_run_refuses_every_unreadable_table(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, words in sorted(CATALOGUE["unreadable"].items()):
        config = run_config(adult_files, tmp_path / "run", input=str(CORPUS / name))
        run_refused(config, tmp_path, words, capsys)


def test_run_refuses_every_bad_schema_before_anything_is_charged(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_budget(adult_files["train"], epsilon=2)
    for name, words in sorted(CATALOGUE["schemas"].items()):
        config = run_config(adult_files, tmp_path / "run", schema_path=str(CORPUS / name))
        run_refused(config, tmp_path, words, capsys)
    assert all(PrivacyLedger().entries(d.key) == [] for d in PrivacyLedger().datasets())


def test_run_refuses_an_output_that_is_not_a_run_and_a_generator_limit(
    prefect_env: dict[str, str],
    adult_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_budget(adult_files["train"], epsilon=2)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("someone's work")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run_config(adult_files, taken)))
    assert main(["run", str(path)]) == 2
    assert "is not a privsynth run directory" in capsys.readouterr().err
    assert (taken / "notes.txt").read_text() == "someone's work"
    config = run_config(
        adult_files, tmp_path / "run", generator="dpctgan", params={"focus_columns": ["salary"]}
    )
    run_refused(config, tmp_path, ["focus_columns", "salary"], capsys)
