"""A data custodian's first hour (issue #21): parameters shown without guessing, refusals that
come before anything is charged and blame the right thing, a schema that misses a category,
progress in each generator's own units, and a demo that shows the best generator installed."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import adult_schema
from privsynth_core.generator import Progress
from privsynth_core.plugins import reset_plugins
from privsynth_core.privacy.ledger import LedgerEntry
from privsynth_core.registry import generators, reset_registries
from privsynth_ui.cli import main
from privsynth_ui.cli.generate_cmd import TextProgress

CORPUS = Path(__file__).parents[1] / "bad_inputs"


@pytest.fixture
def adult_files(
    tmp_path: Path,
    adult_raw: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """``adult.csv`` (400 rows) with its public schema and a budget; the current folder."""
    monkeypatch.chdir(tmp_path)
    adult_raw.head(400).write_csv("adult.csv")
    adult_schema().save("schema.yaml")
    assert main(["budget", "set", "adult.csv", "--epsilon", "3", "--delta", "1e-4"]) == 0
    capsys.readouterr()
    return tmp_path


def entries() -> list[LedgerEntry]:
    ledger = PrivacyLedger()
    return [e for d in ledger.datasets() for e in ledger.entries(d.key)]


# -- item 3: a generator's parameters, without passing a wrong one first --------------------


def test_plugins_show_lists_every_parameter_with_type_default_and_meaning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plugins", "show", "dpwgan"]) == 0
    out = capsys.readouterr().out
    for name in generators().get("dpwgan").Params.model_fields:
        assert f"  {name}: " in out
    assert "  epochs: integer in [1, 100,000]; default 100" in out
    assert "  optimizer: one of: rmsprop, adam; default rmsprop" in out
    assert "  sigma: number in (0, 10,000] (or empty); default empty" in out
    assert "planned passes over the data" in out  # the meaning, under each parameter
    assert main(["plugins", "show", "independent", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "generator" and [p["name"] for p in data["parameters"]] == [
        "numeric_cells",
        "bins",
    ]
    assert main(["plugins", "show", "independent"]) == 0
    assert "pure epsilon-DP: its delta is 0" in capsys.readouterr().out


def test_plugins_show_of_an_unknown_id_lists_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plugins", "show", "dpgan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("privsynth: error: unknown plugin 'dpgan'; available: ")
    assert "dpwgan" in err


# -- items 1 and 2: refusals before anything is charged, blaming the right thing -------------


def test_a_refused_pure_epsilon_fit_never_blames_delta(
    adult_files: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # independent is pure epsilon-DP: its delta is 0 and nothing about delta can refuse it.
    assert (
        main(
            [
                "fit",
                "adult.csv",
                "--schema",
                "schema.yaml",
                "--generator",
                "independent",
                "--epsilon",
                "5",
                "-o",
                "model",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "would spend" in err and "delta" not in err.split("left;")[-1]
    assert entries() == []


def test_generator_limits_are_refused_before_anything_is_charged(
    adult_files: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(
            [
                "fit",
                "adult.csv",
                "--schema",
                "schema.yaml",
                "--generator",
                "dpctgan",
                "--epsilon",
                "1",
                "--param",
                'focus_columns=["salary"]',
                "-o",
                "m",
            ]
        )
        == 2
    )
    assert "focus_columns names column(s) not in the schema: salary" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                "adult.csv",
                "--schema",
                "schema.yaml",
                "--generator",
                "dpwgan",
                "--epsilon",
                "1",
                "--delta",
                "0",
                "-o",
                "m",
            ]
        )
        == 2
    )
    assert "DP-SGD needs a delta in (0, 1)" in capsys.readouterr().err
    assert (
        main(
            [
                "fit",
                "adult.csv",
                "--schema",
                str(CORPUS / "schema_missing_column.yaml"),
                "--generator",
                "independent",
                "--epsilon",
                "1",
                "-o",
                "m",
            ]
        )
        == 2
    )
    assert "blood_type" in capsys.readouterr().err
    # Nothing charged (not even the row count), no model written.
    assert entries() == []
    assert PrivacyLedger().open_reservations() == [] and not Path("m").exists()


# -- item 8: a schema that misses a category --------------------------------------------------


@pytest.mark.parametrize("generator", ["independent", "dpwgan"])
def test_a_schema_missing_a_category_is_counted_and_handled_row_by_row(
    generator: str,
    adult_files: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = str(CORPUS / "schema_missing_category.yaml")
    assert main(["data", "validate", "adult.csv", "--schema", schema]) == 1
    out = capsys.readouterr().out
    # Counts only, and what a fit does: read as missing, then the row dropped.
    assert "'workclass':" in out and "not among its categories, read as missing" in out
    assert "row(s) dropped" in out and "Local-gov" not in out
    extra = ["--param", "epochs=2"] if generator == "dpwgan" else []
    assert (
        main(
            [
                "fit",
                "adult.csv",
                "--schema",
                schema,
                "--generator",
                generator,
                "--epsilon",
                "1",
                "-o",
                "model",
                "--quiet",
                *extra,
            ]
        )
        == 0
    )
    assert main(["sample", "model", "-n", "200", "-o", "synthetic.csv"]) == 0
    synthetic = pl.read_csv("synthetic.csv")
    assert set(synthetic["workclass"].drop_nulls()) <= {"Private", "Self-emp-not-inc"}
    assert PrivacyLedger().open_reservations() == []


# -- item 12: progress in each generator's own units, with elapsed time and an estimate -------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_counts_in_the_reports_unit_with_elapsed_time_and_what_is_left() -> None:
    clock, stream = _Clock(), io.StringIO()
    bar = TextProgress(stream, width=10, clock=clock)
    clock.now += 10
    bar(
        Progress(
            epoch=1,
            epochs=4,
            step=3,
            unit="round",
            stage="round 2: selecting",
            losses={"critic": 0.5},
            epsilon=0.4,
        )
    )
    clock.now += 20
    bar(Progress(epoch=4, epochs=4, step=9, unit="round", stage="done"))
    lines = stream.getvalue().splitlines()
    assert lines[0] == (
        "[##--------] round 1/4 (round 2: selecting)  epsilon 0.4  elapsed 0:10, about 0:30 left"
    )
    assert lines[1] == "[##########] round 4/4 (done)  elapsed 0:30"
    assert "critic" not in stream.getvalue()  # losses of real rows never go to a log


def test_losses_are_shown_on_a_terminal_only() -> None:
    stream = _Terminal()
    bar = TextProgress(stream, width=4, clock=_Clock())
    bar(Progress(epoch=1, epochs=2, step=1, losses={"critic": 0.5}))
    bar.close()
    assert "critic 0.5" in stream.getvalue() and "epoch 1/2" in stream.getvalue()


def test_the_non_dp_ctgan_reports_every_epoch(adult_raw: pl.DataFrame) -> None:
    pytest.importorskip("sdv", reason="the sdv extra is not installed")
    from privsynth_core import Table

    table = Table.from_frame(adult_raw.head(300), adult_schema(), name="adult-300")
    seen: list[Progress] = []
    generator = generators().get("ctgan")(epochs=3, batch_size=100, seed=0, device="cpu")
    generator.fit(table, budget=None, progress=seen.append)
    assert [(p.epoch, p.epochs) for p in seen] == [(1, 3), (2, 3), (3, 3)]
    assert all(set(p.losses) == {"generator", "critic"} for p in seen)


# -- item 15: the demo shows the best generator installed, and says why -----------------------


@pytest.fixture
def marginal_plugin() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVSYNTH_LOAD_PLUGINS", "privsynth,privsynth-marginal")
        reset_plugins()
        reset_registries()
        yield
    reset_plugins()
    reset_registries()


def test_the_demo_picks_dpctgan_among_the_built_ins_and_says_aim_would_do_better() -> None:
    from privsynth_ui.cli.demo_cmd import _default_generator

    generator, why = _default_generator()
    assert generator == "dpctgan" and "privsynth-marginal" in why and "AIM" in why


def test_the_demo_picks_aim_when_the_marginal_plugin_is_installed(
    marginal_plugin: None,
) -> None:
    pytest.importorskip("privsynth_marginal")
    from privsynth_ui.cli.demo_cmd import VERDICT_LEGEND, _default_generator

    generator, why = _default_generator()
    assert generator == "aim" and "most faithful" in why
    for level in ("GOOD", "FAIR", "POOR"):
        assert f"{level} = " in VERDICT_LEGEND


def test_the_demo_prints_where_each_headline_falls_short(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from privsynth_ui.cli.demo_cmd import _print_worst

    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "headline": [
                    {"name": "2-way marginal TVD", "worst": ["worst pairs: age × income (0.2)"]},
                    {"name": "DP guarantee (epsilon)", "worst": []},
                ]
            }
        )
    )
    _print_worst(metrics)
    assert capsys.readouterr().out == "  2-way marginal TVD: worst pairs: age × income (0.2)\n"
