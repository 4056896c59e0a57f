"""The bad-input corpus (tests/bad_inputs/CATALOGUE.yaml) through every command that reads each
kind of file: exit code 2, exactly one ``privsynth: error:`` line with what was wrong and what
to do, no traceback, no output file and no ledger entry left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from privsynth_core import PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_schema
from privsynth_core.registry import generators
from privsynth_ui.cli import main

CORPUS = Path(__file__).parents[1] / "bad_inputs"
CATALOGUE: dict[str, Any] = yaml.safe_load((CORPUS / "CATALOGUE.yaml").read_text())


@pytest.fixture
def work(tmp_path: Path, adult_raw: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a good Adult extract (``good.csv``, ``other.csv``) and its
    declared-public schema (``schema.yaml``); the current folder."""
    folder = tmp_path / "work"
    folder.mkdir()
    adult_raw.head(300).write_csv(folder / "good.csv")
    adult_raw.slice(300, 300).write_csv(folder / "other.csv")
    adult_schema().save(folder / "schema.yaml")
    monkeypatch.chdir(folder)
    return folder


def refused(argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; it must refuse with exit 2 and one error line holding ``words``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv}: exit {code}\n{err}"
    assert "Traceback" not in err
    assert err.count("privsynth: error:") == 1, err
    assert sum(line.startswith("privsynth: error: ") for line in err.splitlines()) == 1, err
    for word in words:
        assert word in err, f"{argv}: {word!r} not in {err!r}"
    return err


def assert_nothing_left(folder: Path, before: set[str]) -> None:
    """No new file in the working folder, nothing in the ledger (no entry, no reservation)."""
    assert {p.name for p in folder.iterdir()} == before
    ledger = PrivacyLedger()
    assert ledger.open_reservations() == []
    assert all(ledger.entries(d.key) == [] for d in ledger.datasets())


@pytest.mark.parametrize("name", sorted(CATALOGUE["unreadable"]))
def test_an_unreadable_table_is_refused_by_every_command_that_reads_one(
    name: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = str(CORPUS / name)
    words = CATALOGUE["unreadable"][name]
    # A budget for the good table, so a refusal can never be "no budget" in disguise.
    assert main(["budget", "set", "good.csv", "--epsilon", "3", "--delta", "1e-4"]) == 0
    capsys.readouterr()
    before = {p.name for p in work.iterdir()}
    for argv in (
        ["schema", "infer", bad, "-o", "draft.yaml"],
        ["data", "validate", bad, "--schema", "schema.yaml"],
        ["budget", "set", bad, "--epsilon", "1", "--delta", "1e-5"],
        [
            "fit",
            bad,
            "--schema",
            "schema.yaml",
            "--generator",
            "independent",
            "--epsilon",
            "0.5",
            "-o",
            "model",
        ],
        ["evaluate", bad, "good.csv", "--schema", "schema.yaml", "-o", "report", "--quiet"],
        ["evaluate", "good.csv", bad, "--schema", "schema.yaml", "-o", "report", "--quiet"],
    ):
        refused(argv, words, capsys)
    assert_nothing_left(work, before)


@pytest.mark.parametrize("name", sorted(CATALOGUE["uninferable"]))
def test_a_table_whose_schema_cannot_be_inferred_is_refused_with_what_to_do(
    name: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = str(CORPUS / name)
    words = CATALOGUE["uninferable"][name]
    before = {p.name for p in work.iterdir()}
    refused(["schema", "infer", bad, "-o", "draft.yaml"], words, capsys)
    # evaluate without --schema infers one from the real table: the same refusal.
    refused(["evaluate", bad, "good.csv", "-o", "report", "--quiet"], words, capsys)
    assert_nothing_left(work, before)


@pytest.mark.parametrize("name", sorted(CATALOGUE["schemas"]))
def test_a_bad_schema_is_refused_before_anything_is_charged(
    name: str, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = str(CORPUS / name)
    words = CATALOGUE["schemas"][name]
    assert main(["budget", "set", "good.csv", "--epsilon", "3", "--delta", "1e-4"]) == 0
    capsys.readouterr()
    before = {p.name for p in work.iterdir()}
    for argv in (
        ["data", "validate", "good.csv", "--schema", bad],
        [
            "fit",
            "good.csv",
            "--schema",
            bad,
            "--generator",
            "independent",
            "--epsilon",
            "0.5",
            "-o",
            "model",
        ],
        ["evaluate", "good.csv", "other.csv", "--schema", bad, "-o", "report", "--quiet"],
    ):
        refused(argv, words, capsys)
    assert_nothing_left(work, before)


# -- models -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory: pytest.TempPathFactory, adult_raw: pl.DataFrame) -> Path:
    """A real ``independent`` model folder (fitted once, in a ledger of its own)."""
    folder = tmp_path_factory.mktemp("fitted")
    table = Table.from_frame(adult_raw.head(500), adult_schema(), name="adult-500")
    ledger = PrivacyLedger(folder / "ledger.sqlite")
    ledger.set_budget(table.budget_key(), epsilon=3, delta=1e-4)
    generator = generators().get("independent")()
    generator.fit(table, budget=PrivacyBudget(1.0, 0.0), ledger=ledger)
    return generator.save(folder / "model")


def damage(model: Path, patch: dict[str, Any]) -> None:
    """Apply a corpus ``.model.json`` patch to the files of ``model``."""
    for file, edits in patch.items():
        if file == "what":
            continue
        path = model / file
        if edits.get("remove"):
            path.unlink()
        if "replace" in edits:
            path.write_text(edits["replace"], encoding="utf-8")
        if "truncate" in edits:
            path.write_bytes(path.read_bytes()[: edits["truncate"]])
        if "set" in edits or "delete" in edits:
            data = json.loads(path.read_text(encoding="utf-8"))
            for dotted, value in edits.get("set", {}).items():
                *parents, last = dotted.split(".")
                node = data
                for part in parents:
                    node = node[part]
                node[last] = value
            for key in edits.get("delete", []):
                data.pop(key)
            path.write_text(json.dumps(data, indent=2), encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CATALOGUE["models"]))
def test_a_damaged_or_edited_model_is_refused_by_sample_and_evaluate(
    name: str, work: Path, fitted_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = work.parent / "model"
    shutil.copytree(fitted_model, model)
    damage(model, json.loads((CORPUS / name).read_text()))
    words = CATALOGUE["models"][name]
    before = {p.name for p in work.iterdir()}
    refused(["sample", str(model), "-o", "synthetic.csv"], words, capsys)
    refused(
        [
            "evaluate",
            "good.csv",
            "other.csv",
            "--schema",
            "schema.yaml",
            "--manifest",
            str(model),
            "-o",
            "report",
            "--quiet",
        ],
        words,
        capsys,
    )
    assert_nothing_left(work, before)


@pytest.mark.parametrize("name", sorted(CATALOGUE["model_files"]))
def test_a_model_with_damaged_files_is_refused_by_sample(
    name: str, work: Path, fitted_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = work.parent / "model"
    shutil.copytree(fitted_model, model)
    damage(model, json.loads((CORPUS / name).read_text()))
    before = {p.name for p in work.iterdir()}
    refused(["sample", str(model), "-o", "synthetic.csv"], CATALOGUE["model_files"][name], capsys)
    assert_nothing_left(work, before)


def test_the_intact_model_samples_and_evaluates(
    work: Path, fitted_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The control: the same model, undamaged, is accepted by the same commands.
    assert main(["sample", str(fitted_model), "-n", "50", "-o", "synthetic.csv"]) == 0
    assert (
        main(
            [
                "evaluate",
                "good.csv",
                "synthetic.csv",
                "--manifest",
                str(fitted_model),
                "--metrics",
                "tvd,dp_guarantee",
                "-o",
                "report",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "not verified against the ledger" in out  # saved outside the store: unchecked


# -- the corpus itself ----------------------------------------------------------------------


def test_the_corpus_has_at_least_25_refused_kinds_and_lists_every_file() -> None:
    refused_kinds = [
        name
        for group in ("unreadable", "uninferable", "schemas", "models", "model_files")
        for name in CATALOGUE[group]
    ]
    assert len(refused_kinds) >= 25
    listed = set(refused_kinds) | set(CATALOGUE["handled"])
    on_disk = {p.name for p in CORPUS.iterdir()} - {"CATALOGUE.yaml"}
    assert on_disk == listed
