"""The README's "On your own data" commands, run as written on a small table: a README command
that fails (or that no longer exists) fails this test."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import PrivacyLedger
from privsynth_ui.cli import main

README = Path(__file__).parents[2] / "README.md"


def own_data_block() -> list[str]:
    """The commands of the README's first bash block after "On your own data", comments off."""
    text = README.read_text(encoding="utf-8")
    heading = re.search(r"On\s+your\s+own\s+data", text)
    assert heading is not None, "the README lost its 'On your own data' paragraph"
    after = text[heading.end() :]
    block = re.search(r"```bash\n(.*?)```", after, re.S)
    assert block is not None, "the README lost its 'On your own data' command block"
    commands = []
    for line in block.group(1).splitlines():
        command = line.split("#", 1)[0].strip()
        if command:
            commands.append(command)
    return commands


def patients(path: Path, rows: int = 600) -> None:
    """A small patients table whose every category is held by many rows (so a draft's only
    review flags are its bounds, which --round-bounds resolves)."""
    rng = random.Random(4)
    pl.DataFrame(
        {
            "age": [rng.randint(18, 95) for _ in range(rows)],
            "ward": [
                rng.choice(["cardiology", "oncology", "surgery", "maternity"]) for _ in range(rows)
            ],
            "smoker": [rng.choice(["yes", "no"]) for _ in range(rows)],
            "weight": [round(rng.uniform(45, 130), 1) for _ in range(rows)],
            "admitted": [
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(rows)
            ],
        }
    ).write_csv(path)


def test_the_readme_block_parses_into_privsynth_commands() -> None:
    commands = own_data_block()
    assert commands and all(c.startswith("privsynth ") for c in commands)
    assert [shlex.split(c)[1] for c in commands] == [
        "schema",
        "schema",
        "budget",
        "fit",
        "sample",
        "evaluate",
        "budget",
    ]


def test_every_readme_command_runs_as_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    light_reports: None,
) -> None:
    monkeypatch.chdir(tmp_path)
    patients(tmp_path / "patients.csv")
    for command in own_data_block():
        argv = shlex.split(command)[1:]
        if argv[0] == "fit":
            argv += ["--quiet"]
        if argv[0] == "evaluate":
            argv += ["--quiet"]
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"README command failed: {command}\n{captured.err}"
    assert (tmp_path / "model" / "manifest.json").is_file()
    assert (tmp_path / "synthetic.csv").is_file()
    assert (tmp_path / "report" / "report.html").is_file()
    ledger = PrivacyLedger()
    assert ledger.open_reservations() == []
    assert "dpwgan training" in captured.out  # `budget show`, last, lists the fit
