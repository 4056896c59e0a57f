"""``privsynth accountants compare``: every accountant side by side, approximations labelled."""

from __future__ import annotations

import json

import pytest

from privsynth_core.registry import accountants
from privsynth_ui.cli import main

DELTA = 1e-5


def _rows(out: str) -> dict[str, str]:
    """Table rows of the output, keyed by accountant id."""
    ids = set(accountants().names())
    return {
        line.split()[0]: line
        for line in out.splitlines()
        if line.split()[:1] and line.split()[0] in ids
    }


def test_accountants_compare_prints_every_accountant(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "accountants",
            "compare",
            "--sample-rate",
            "0.04",
            "--noise",
            "1.5",
            "--steps",
            "2250",
            "--delta",
            "1e-5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert sorted(rows) == ["gdp", "pld", "prv", "rdp"]
    # Aligned: every row's epsilon starts in the same column as the header's.
    header = next(line for line in out.splitlines() if line.startswith("ACCOUNTANT"))
    column = header.index("EPSILON")
    for accountant_id, line in rows.items():
        expected = (
            accountants()
            .get(accountant_id)
            .epsilon_for(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=DELTA)
        )
        assert line[column:].split()[0] == f"{expected:.4f}"
    # RDP's number is Opacus' own test vector for this plan.
    assert "7.329" in rows["rdp"]
    assert "(approximation)" in rows["gdp"]
    for accountant_id in ("rdp", "prv", "pld"):
        assert "(approximation)" not in rows[accountant_id]
    assert "(default)" in rows["rdp"]


def test_accountants_compare_epochs_convert_to_steps(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "accountants",
            "compare",
            "--sample-rate",
            "500/32561",
            "--noise",
            "1.0",
            "--epochs",
            "300",
            "--delta",
            "1e-5",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["steps"] == round(300 / (500 / 32561)) == 19_537
    by_id = {r["accountant"]: r for r in report["results"]}
    assert by_id["gdp"]["approximate"] is True
    assert by_id["rdp"]["epsilon"] == accountants().get("rdp").epsilon_for(
        noise_multiplier=1.0, sample_rate=500 / 32561, steps=19_537, delta=DELTA
    )


def test_accountants_compare_rejects_bad_plans(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "accountants",
            "compare",
            "--sample-rate",
            "1.5",
            "--noise",
            "1.0",
            "--steps",
            "10",
            "--delta",
            "1e-5",
        ]
    )
    assert code == 2
    assert "--sample-rate must be in (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --steps and --epochs are exclusive, one is required
        main(
            [
                "accountants",
                "compare",
                "--sample-rate",
                "0.1",
                "--noise",
                "1.0",
                "--steps",
                "10",
                "--epochs",
                "2",
                "--delta",
                "1e-5",
            ]
        )
    with pytest.raises(SystemExit):
        main(
            [
                "accountants",
                "compare",
                "--sample-rate",
                "1/0",
                "--noise",
                "1.0",
                "--steps",
                "10",
                "--delta",
                "1e-5",
            ]
        )
    assert "not a sample rate" in capsys.readouterr().err
