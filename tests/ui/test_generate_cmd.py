"""``privsynth fit`` / ``sample`` / ``privacy`` end to end on real Adult rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import PrivacyLedger, Schema
from privsynth_core.datasets import ADULT_SCHEMA_PATH
from privsynth_core.privacy.calibration import noise_for
from privsynth_core.registry import accountants
from privsynth_core.table import fingerprint_frame, read_frame
from privsynth_core.validation import polars_dtype
from privsynth_ui.cli import main

FAST = [
    "--param",
    "epochs=2",
    "--param",
    "batch_size=200",
    "--param",
    "device=cpu",
    "--param",
    "critic_layers=64:leaky_relu",
    "--param",
    "generator_layers=64:relu",
]


@pytest.fixture
def adult_csv(tmp_path: Path, adult_raw: pl.DataFrame, ledger: PrivacyLedger) -> Path:
    path = tmp_path / "adult.csv"
    adult_raw.sample(1200, seed=4).write_csv(path)
    ledger.set_budget(fingerprint_frame(read_frame(path)), epsilon=4.0, delta=1e-4)
    return path


def test_fit_then_sample_csv_and_parquet(
    adult_csv: Path, tmp_path: Path, ledger: PrivacyLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    code = main(
        [
            "fit",
            str(adult_csv),
            "--generator",
            "dpwgan",
            "--epsilon",
            "2",
            "--schema",
            str(ADULT_SCHEMA_PATH),
            "-o",
            str(model),
            *FAST,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "the model spends epsilon=" in captured.out and str(model) in captured.out
    assert "end to end (row count" in captured.out  # the total, with its parts
    assert "epoch 2/2" in captured.err and "epsilon" in captured.err  # the progress bar
    count, entry = ledger.entries(fingerprint_frame(read_frame(adult_csv)))
    assert count.mechanism == "noisy row count" and count.delta == 0
    assert entry.status == "spent" and entry.epsilon <= 2.0
    assert entry.delta == 1e-5  # default: min(1e-5, 1/(10 n̂))
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["privacy"]["epsilon"] == count.epsilon + entry.epsilon
    # Sampling without -n draws the released count n̂, never the table's exact size.
    default = tmp_path / "default.csv"
    assert main(["sample", str(model), "-o", str(default), "--seed", "1"]) == 0
    assert pl.read_csv(default).height == count.params["noisy_rows"]

    csv, parquet = tmp_path / "syn.csv", tmp_path / "syn.parquet"
    assert main(["sample", str(model), "-n", "300", "-o", str(csv), "--seed", "5"]) == 0
    assert main(["sample", str(model), "-n", "300", "-o", str(parquet), "--seed", "5"]) == 0
    schema = Schema.load(ADULT_SCHEMA_PATH)
    from_parquet = pl.read_parquet(parquet)
    assert from_parquet.schema == pl.Schema({c.name: polars_dtype(c.kind) for c in schema.columns})
    from_csv = pl.read_csv(csv, schema=from_parquet.schema)
    assert from_csv.equals(from_parquet)  # same model, same seed, same rows
    assert not list(tmp_path.glob(".*partial"))  # atomic writes leave no debris
    # An existing file is not overwritten without --overwrite; an unknown suffix is refused.
    assert main(["sample", str(model), "-n", "5", "-o", str(csv)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["sample", str(model), "-n", "5", "-o", str(tmp_path / "x.xlsx")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err


def test_fit_refusals_spend_nothing(
    adult_csv: Path, tmp_path: Path, ledger: PrivacyLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = ["--generator", "dpwgan", "--schema", str(ADULT_SCHEMA_PATH)]
    out = str(tmp_path / "m")
    assert main(["fit", str(adult_csv), *schema, "-o", out, *FAST]) == 2
    assert "give the target --epsilon" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                str(adult_csv),
                "--epsilon",
                "1",
                *schema,
                "-o",
                out,
                "--param",
                "critic_layer=64",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "critic_layer" in err and "parameters of dpwgan:" in err
    assert "critic_layers (default" in err
    assert (
        main(["fit", str(adult_csv), "--epsilon", "1", *schema, "-o", out, "--param", "epochs"])
        == 2
    )
    assert "NAME=VALUE" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "file").write_text("x")
    assert main(["fit", str(adult_csv), "--epsilon", "1", *schema, "-o", str(occupied), *FAST]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                str(adult_csv),
                "--epsilon",
                "1",
                "--accountant",
                "nope",
                *schema,
                "-o",
                out,
                *FAST,
            ]
        )
        == 2
    )
    assert "unknown accountant 'nope'" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                str(adult_csv),
                "--epsilon",
                "1",
                "--accountant",
                "gdp",
                *schema,
                "-o",
                out,
                *FAST,
            ]
        )
        == 2
    )
    assert "is an approximation" in capsys.readouterr().err
    assert (
        main(["fit", str(adult_csv), "--epsilon", "1", *schema, "-o", str(Path.cwd()), *FAST]) == 2
    )
    assert "current folder" in capsys.readouterr().err
    assert ledger.entries(fingerprint_frame(read_frame(adult_csv))) == []
    # A plan needs the released row count to be priced: a plan the budget cannot run costs
    # that count (reused by the next attempt), and no training is reserved.
    for _ in range(2):
        assert (
            main(
                [
                    "fit",
                    str(adult_csv),
                    "--epsilon",
                    "0.001",
                    *schema,
                    "-o",
                    out,
                    *FAST,
                    "--param",
                    "sigma=0.5",
                ]
            )
            == 2
        )
        assert "allows 0 training steps" in capsys.readouterr().err
    [count] = ledger.entries(fingerprint_frame(read_frame(adult_csv)))
    assert count.mechanism == "noisy row count"
    assert not Path(out).exists()


def test_fit_without_a_generator_chooses_one_and_says_why(
    adult_csv: Path, tmp_path: Path, ledger: PrivacyLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    # the built-ins only (the suite's default plugins): DP-CTGAN declares itself the best of
    # them; the refusal (no --epsilon) comes after the choice and spends nothing
    schema = ["--schema", str(ADULT_SCHEMA_PATH)]
    assert main(["fit", str(adult_csv), *schema, "-o", str(tmp_path / "m")]) == 2
    captured = capsys.readouterr()
    assert "generator dpctgan: DP-CTGAN" in captured.out
    assert "--generator ID chooses another" in captured.out
    assert "give the target --epsilon" in captured.err
    # a target that is not a column: one message naming the columns, before anything is read
    assert (
        main(
            [
                "fit",
                str(adult_csv),
                *schema,
                "--target",
                "incme",
                "--epsilon",
                "1",
                "-o",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "'incme' is not a column" in err and "income" in err
    # --delta 0 keeps the choice to pure-epsilon generators
    assert main(["fit", str(adult_csv), *schema, "--delta", "0", "-o", str(tmp_path / "m")]) == 2
    assert "generator independent:" in capsys.readouterr().out
    assert ledger.entries(fingerprint_frame(read_frame(adult_csv))) == []


def test_privacy_prices_the_plan_with_every_accountant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "privacy",
        "--generator",
        "dpwgan",
        "--rows",
        "10000",
        "--epochs",
        "5",
        "--batch-size",
        "250",
        "--sigma",
        "1.2",
        "--n-critic",
        "3",
        "--delta",
        "1e-5",
    ]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    q, steps = 250 / 10_000, 5 * 40
    assert report["sample_rate"] == q and report["steps"] == steps
    got = {r["accountant"]: r["value"] for r in report["results"]}
    assert set(got) == set(accountants().names())
    for name, value in got.items():
        expected = (
            accountants()
            .get(name)
            .epsilon_for(noise_multiplier=1.2, sample_rate=q, steps=steps, delta=1e-5)
        )
        assert value == pytest.approx(expected, rel=1e-9)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "200 DP steps" in text and "rdp" in text and "approximation" in text


def test_privacy_with_a_target_gives_the_noise_each_accountant_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(
            [
                "privacy",
                "--generator",
                "dpwgan",
                "--rows",
                "5000",
                "--epochs",
                "2",
                "--batch-size",
                "100",
                "--epsilon",
                "1",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["delta"] == 1e-5 and report["quantity"] == "sigma"
    rdp = accountants().get("rdp")
    sigma = next(r["value"] for r in report["results"] if r["accountant"] == "rdp")
    assert rdp.epsilon_for(noise_multiplier=sigma, sample_rate=0.02, steps=100, delta=1e-5) <= 1.0
    assert main(["privacy", "--generator", "independent", "--rows", "10", "--sigma", "1"]) == 2
    assert "not trained with DP-SGD" in capsys.readouterr().err
    assert (
        main(
            [
                "privacy",
                "--generator",
                "dpwgan",
                "--rows",
                "100",
                "--sigma",
                "1",
                "--param",
                "epochs=0",
            ]
        )
        == 2
    )
    assert "epochs" in capsys.readouterr().err


def test_privacy_prices_dpctgan_with_its_marginals_release(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """DP-CTGAN spends part of the target on noisy marginals: the sigma its plan leaves for
    DP-SGD must be larger than a DP-SGD-only plan of the same steps would need, and a bare
    sigma (which would leave the marginals out) is refused."""
    base = ["privacy", "--generator", "dpctgan", "--rows", "10000", "--epochs", "30"]
    assert main([*base, "--sigma", "1"]) == 2
    assert "cannot be priced honestly" in capsys.readouterr().err
    assert main([*base, "--epsilon", "1", "--json"]) == 2
    assert "--schema" in capsys.readouterr().err
    assert main([*base, "--epsilon", "1", "--schema", str(ADULT_SCHEMA_PATH), "--json"]) == 0
    priced = json.loads(capsys.readouterr().out)
    rdp = next(r for r in priced["results"] if r["accountant"] == "rdp")["value"]
    dpsgd_only = noise_for(
        accountants().get("rdp"),
        target_epsilon=1.0,
        delta=priced["delta"],
        sample_rate=priced["sample_rate"],
        steps=priced["steps"],
    )
    assert rdp > dpsgd_only * 1.01
