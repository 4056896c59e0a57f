"""The rules of a release, one by one: what a run publishes, what it states, what it logs, and the
custodian's own neighbour check (``privsynth audit --release``) catching a leaky generator.

Runs go through :func:`privsynth_core.runs.rundir.run_pipeline` (the same steps as the Prefect flow,
without an orchestrator), on the embedded Adult data, with real ledgers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from privsynth_core import FitSummary, PrivacyLedger
from privsynth_core.datasets import ADULT_SCHEMA_PATH, adult_frame
from privsynth_core.hookspecs import hookimpl
from privsynth_core.plugins import load_plugins, pm
from privsynth_core.privacy.ledger import budget_key
from privsynth_core.registry import generators, reset_registries
from privsynth_core.runs.config import RunConfig, run_config_from_dict
from privsynth_core.runs.pipeline import validate_input
from privsynth_core.runs.rundir import RunResult, run_pipeline
from privsynth_core.table import fingerprint_frame, read_frame
from privsynth_ui.cli import main

# Block the heavy report sections (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("light_reports")


def _data(tmp_path: Path, n: int = 800) -> Path:
    path = tmp_path / "adult.csv"
    adult_frame(n, seed=5).write_csv(path)
    return path


def _config(data: Path, out: Path, **extra: Any) -> RunConfig:
    return run_config_from_dict(
        {
            "input": str(data),
            "schema_path": str(ADULT_SCHEMA_PATH),
            "generator": "independent",
            "epsilon": 1.0,
            "metrics": ["tvd"],
            "output_dir": str(out),
            **extra,
        }
    )


def _budget(data: Path, epsilon: float = 5.0) -> str:
    key = budget_key(None, fingerprint_frame(read_frame(data)))
    PrivacyLedger().set_budget(key, epsilon=epsilon, delta=1e-4)
    return key


def test_a_run_publishes_a_release_folder_apart_from_the_custodians(tmp_path: Path) -> None:
    data = _data(tmp_path)
    key = _budget(data)
    result = run_pipeline(_config(data, tmp_path / "run"))
    release = sorted(
        p.relative_to(result.release_dir).as_posix()
        for p in result.release_dir.rglob("*")
        if p.is_file()
    )
    assert release == [
        "model/domain.schema.yaml",
        "model/histograms.json",
        "model/manifest.json",
        "release.json",
        "synthetic.csv",
    ]
    custodian = {
        p.relative_to(result.custodian_dir).as_posix()
        for p in result.custodian_dir.rglob("*")
        if p.is_file()
    }
    assert {
        "manifest.json",
        "schema.yaml",
        "report/report.html",
        "report/metrics.json",
    } <= custodian
    # Nothing in the release is computed from the rows outside a charged mechanism: no content
    # or file hash, no exact row count, no timing, no ledger id, no input path.
    text = "\n".join(
        p.read_text(encoding="utf-8")
        for p in result.release_dir.rglob("*")
        if p.suffix in (".json", ".yaml")
    )
    manifest = result.manifest
    for secret in (
        manifest["dataset"]["fingerprint"],
        manifest["dataset"]["input_sha256"],
        str(data),
        "seconds",
        "ledger",
        "run_id",
        "fingerprint",
    ):
        assert secret not in text, secret
    assert f'"rows": {manifest["dataset"]["rows"]}' not in text
    # The custodian's manifest has them, for the custodian.
    assert manifest["dataset"]["rows"] == 800 and manifest["timings_seconds"]
    assert key.startswith(manifest["dataset"]["fingerprint"][:12])
    # The synthetic table has n̂ rows by default: the released count, not the exact 800.
    noisy = manifest["dataset"]["noisy_rows"]
    assert pl.read_csv(result.release_dir / "synthetic.csv").height == noisy


def test_the_release_states_the_end_to_end_total_that_the_ledger_holds(tmp_path: Path) -> None:
    data = _data(tmp_path, 3000)
    key = _budget(data, epsilon=10.0)
    skeleton = tmp_path / "skeleton.yaml"
    from privsynth_core.inference import skeleton as make_skeleton
    from privsynth_core.schema import Schema

    make_skeleton(Schema.load(ADULT_SCHEMA_PATH)).confirm_public().save(skeleton)
    result = run_pipeline(
        _config(data, tmp_path / "run", schema_path=str(skeleton), domain="dp", domain_epsilon=6.0)
    )
    privacy = result.release["privacy"]
    steps = [p["step"] for p in privacy["parts"]]
    assert set(steps) == {"domain", "row count", "training"}
    # Every part is a ledger entry; the stated total is the ledger's to the last digit.
    ids = [p["ledger_entry"] for p in result.manifest["spent"]]
    entries = {e.entry_id: e for e in PrivacyLedger().entries(key)}
    assert sorted(ids) == sorted(entries)
    assert privacy["epsilon"] == math.fsum(entries[i].epsilon for i in ids)
    assert privacy["delta"] == math.fsum(entries[i].delta for i in ids)
    assert privacy["epsilon"] == pytest.approx(6.0 + 1.0 + 0.1)
    assert json.loads((result.release_dir / "model" / "manifest.json").read_text())["privacy"] == {
        k: v for k, v in privacy.items()
    }
    # A second run reuses the domain, the count and the model (the store): nothing more spent.
    again = run_pipeline(
        _config(data, tmp_path / "run2", schema_path=str(skeleton), domain="dp", domain_epsilon=6.0)
    )
    assert again.release["privacy"] == privacy
    assert len(PrivacyLedger().entries(key)) == len(entries)


def test_validation_notes_carry_counts_and_the_values_stay_in_the_custodian_log(
    tmp_path: Path,
) -> None:
    raw = adult_frame(300, seed=2).with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(pl.lit("107"))
        .otherwise(pl.col("age"))
        .alias("age"),
        pl.when(pl.int_range(pl.len()) == 9)
        .then(pl.lit("Atlantis"))
        .otherwise(pl.col("native-country"))
        .alias("native-country"),
    )
    data = tmp_path / "adult.csv"
    raw.write_csv(data)
    log = tmp_path / "validation.log"
    notes = validate_input(_config(data, tmp_path / "run"), log)
    assert "column 'age': 1 value(s) outside the bounds, clamped to them" in notes
    assert any("native-country" in n and "1 value(s) not among" in n for n in notes)
    assert not any("107" in n or "Atlantis" in n for n in notes)
    detail = log.read_text()  # the custodian's own file: the counts and the examples
    assert "107" in detail and "Atlantis" in detail
    assert "column 'age': 1 value(s) outside the bounds, clamped to them" in detail


# -- the custodian's neighbour check catches a leak --------------------------------------------


def _leaky_class() -> type:
    base = generators().get("independent")

    class LeakyCountGenerator(base):  # type: ignore[misc, valid-type]
        """Writes the exact row count into its manifest: the leak the check must catch."""

        generator_id = "leaky_count"

        def _fit(self, table, *, budget, progress) -> FitSummary:  # type: ignore[no-untyped-def]
            summary: FitSummary = super()._fit(table, budget=budget, progress=progress)
            summary.extra["rows_seen"] = table.n_rows
            return summary

    return LeakyCountGenerator


@pytest.fixture
def leaky_plugin() -> Iterator[str]:
    load_plugins()
    cls = _leaky_class()

    class Plugin:
        @hookimpl
        def register_generators(self, register: Callable[[type], None]) -> None:
            register(cls)

    pm.register(Plugin(), name="test-leaky-count")
    reset_registries()
    yield cls.generator_id
    pm.unregister(name="test-leaky-count")
    reset_registries()


def _published(tmp_path: Path, generator: str) -> RunResult:
    data = _data(tmp_path)
    _budget(data)
    return run_pipeline(_config(data, tmp_path / f"run-{generator}", generator=generator))


def test_audit_release_finds_no_leak_in_an_honest_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _published(tmp_path, "independent")
    assert main(["audit", "--release", str(run.run_dir), "-o", str(tmp_path / "check")]) == 0
    assert "no leak" in capsys.readouterr().out
    report = json.loads((tmp_path / "check" / "neighbours.json").read_text())
    assert report["leaks"] == 0 and report["differences"]  # mechanism outputs did differ


def test_audit_release_names_the_field_a_leaky_generator_releases(
    tmp_path: Path,
    leaky_plugin: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _published(tmp_path, leaky_plugin)
    assert main(["audit", "--release", str(run.run_dir), "-o", str(tmp_path / "check")]) == 1
    out = capsys.readouterr().out
    assert "LEAK  model/manifest.json :: fit.extra.rows_seen" in out
    assert "fit.extra.rows_seen" in (tmp_path / "check" / "neighbours.md").read_text()
