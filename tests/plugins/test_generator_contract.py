"""The contract every registered generator keeps (run for each id in the registry).

Fit on a real slice of Adult with quick settings, then: the output fits the schema exactly, the
same seed gives the same rows, a saved and reloaded model gives the same rows, no pickle is
written, the budget is never exceeded and the ledger holds one entry for the fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from privsynth_core import Generator, PrivacyBudget, PrivacyLedger, Table
from privsynth_core.registry import generators
from privsynth_core.validation import polars_dtype

# Quick settings, applied to whichever of these a generator's Params has.
FAST: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 100,
    "num_threads": 1,
    "device": "cpu",
    "seed": 0,
}
BUDGET = PrivacyBudget(3.0, 1e-5)
N_SAMPLE = 400


def _make(generator_id: str) -> Generator:
    cls = generators().get(generator_id)
    return cls(**{k: v for k, v in FAST.items() if k in cls.Params.model_fields})


@pytest.fixture(scope="module", params=generators().names())
def fitted(
    request: pytest.FixtureRequest, adult_raw: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Generator, Table, PrivacyLedger]:
    """One fit per generator, shared by the checks below (a fit is the slow part)."""
    from privsynth_core.datasets import adult_schema

    table = Table.from_frame(adult_raw.sample(1500, seed=11), adult_schema(), name="adult-1500")
    ledger = PrivacyLedger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite")
    ledger.set_budget(table.fingerprint(), epsilon=5.0, delta=1e-4)
    generator = _make(request.param)
    budget = BUDGET if generator.is_dp else None
    generator.fit(table, budget=budget, ledger=ledger)
    return generator, table, ledger


def test_output_respects_the_schema_exactly(fitted: tuple[Generator, Table, PrivacyLedger]) -> None:
    generator, table, _ = fitted
    out = generator.sample(N_SAMPLE, seed=1)
    schema = table.schema
    assert out.columns == schema.names and out.height == N_SAMPLE
    assert out.schema == pl.Schema({c.name: polars_dtype(c.kind) for c in schema.columns})
    for col in schema.columns:
        values = out[col.name]
        if not col.nullable:
            assert values.null_count() == 0, col.name
        present = values.drop_nulls()
        if col.bounds is not None and len(present):
            assert col.bounds[0] <= present.min() and present.max() <= col.bounds[1], col.name
        if col.categories is not None:
            assert set(present.to_list()) <= set(col.categories), col.name
    assert generator.sample(0, seed=1).schema == out.schema


def test_same_seed_same_rows(fitted: tuple[Generator, Table, PrivacyLedger]) -> None:
    generator, _, _ = fitted
    first = generator.sample(N_SAMPLE, seed=42)
    assert first.equals(generator.sample(N_SAMPLE, seed=42))
    assert not first.equals(generator.sample(N_SAMPLE, seed=43))


def test_save_load_gives_the_same_rows_without_pickles(
    fitted: tuple[Generator, Table, PrivacyLedger], tmp_path: Path
) -> None:
    generator, _, _ = fitted
    before = generator.sample(N_SAMPLE, seed=7)
    generator.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert "manifest.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["generator_id"] == generator.generator_id
    assert manifest["differentially_private"] is generator.is_dp
    loaded = Generator.load(tmp_path / "model")
    assert type(loaded) is type(generator)
    assert loaded.sample(N_SAMPLE, seed=7).equals(before)


def test_budget_is_never_exceeded_and_the_ledger_has_the_entry(
    fitted: tuple[Generator, Table, PrivacyLedger],
) -> None:
    generator, table, ledger = fitted
    summary = generator.fit_summary
    assert summary is not None
    (entry,) = ledger.entries(table.fingerprint())
    assert entry.entry_id == summary.ledger_entry_id
    if generator.is_dp:
        assert summary.private and summary.epsilon is not None and summary.delta is not None
        assert summary.epsilon <= BUDGET.epsilon and summary.delta <= BUDGET.delta
        assert entry.status == "spent"
        assert entry.epsilon == pytest.approx(summary.epsilon, rel=1e-12)
        spent = ledger.status(table.fingerprint()).spent
        assert spent.epsilon <= BUDGET.epsilon and spent.delta <= BUDGET.delta
    else:
        assert not summary.private and entry.status == "non-dp"
        assert "not differentially private" in generator.description.lower()
