"""The generator contract as reusable checks, for privsynth's tests and for plugin authors.

Every generator, built in or third party, must keep the same promises: its output fits the
schema exactly, the same seed gives the same rows, a saved and reloaded model gives the same rows
without any pickle, and a fit never spends more than its target and leaves exactly one ledger
entry. A plugin's own test suite runs them the way privsynth's does::

    generator, table, ledger = fit_for_contract(MyGenerator, my_table, tmp_path)
    check_output_schema(generator, table)
    check_seeded_sampling(generator)
    check_save_load(generator, tmp_path / "model")
    check_ledger(generator, table, ledger)

Failures raise ``AssertionError`` with a message that names the broken promise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from .generator import Generator
from .privacy.count import COUNT_MECHANISM
from .privacy.ledger import PrivacyBudget, PrivacyLedger
from .registry import load_model
from .table import Table
from .validation import polars_dtype

#: Quick settings, applied to whichever of these a generator's Params has.
FAST_SETTINGS: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 100,
    "num_threads": 1,
    "device": "cpu",
    "seed": 0,
}
#: The target of a DP contract fit (the ledger allows more, so overspending would show).
CONTRACT_BUDGET = PrivacyBudget(3.0, 1e-5)
CONTRACT_ROWS = 400


def quick_generator(generator_cls: type[Generator[Any]], **overrides: Any) -> Generator[Any]:
    """An instance with :data:`FAST_SETTINGS` (those its Params has) and ``overrides``."""
    fields = generator_cls.Params.model_fields
    values = {k: v for k, v in FAST_SETTINGS.items() if k in fields}
    return generator_cls(**{**values, **overrides})


def fit_for_contract(
    generator_cls: type[Generator[Any]], table: Table, ledger_dir: Path, **overrides: Any
) -> tuple[Generator[Any], Table, PrivacyLedger]:
    """Fit a quick instance on ``table`` against a fresh ledger in ``ledger_dir``; a DP
    generator targets :data:`CONTRACT_BUDGET` under a larger dataset budget."""
    ledger = PrivacyLedger(Path(ledger_dir) / "contract-ledger.sqlite")
    ledger.set_budget(table.fingerprint(), epsilon=5.0, delta=1e-4)
    generator = quick_generator(generator_cls, **overrides)
    generator.fit(table, budget=CONTRACT_BUDGET if generator.is_dp else None, ledger=ledger)
    return generator, table, ledger


def check_output_schema(
    generator: Generator[Any], table: Table, n_rows: int = CONTRACT_ROWS
) -> None:
    """Sampled rows have exactly the schema's columns, dtypes, nullability, bounds and
    categories, and zero rows have the same schema."""
    out = generator.sample(n_rows, seed=1)
    schema = table.schema
    assert out.columns == schema.names, f"columns {out.columns} != schema {schema.names}"
    assert out.height == n_rows, f"asked for {n_rows} rows, got {out.height}"
    expected = pl.Schema({c.name: polars_dtype(c.kind) for c in schema.columns})
    assert out.schema == expected, f"dtypes {out.schema} != {expected}"
    for col in schema.columns:
        values = out[col.name]
        if not col.nullable:
            assert values.null_count() == 0, f"{col.name}: nulls in a non-nullable column"
        present = values.drop_nulls()
        if col.bounds is not None and len(present):
            lowest, highest = present.min(), present.max()
            assert col.bounds[0] <= lowest and highest <= col.bounds[1], (  # type: ignore[operator]
                f"{col.name}: values {lowest!r}..{highest!r} outside {col.bounds}"
            )
        if col.categories is not None:
            extra = set(present.to_list()) - set(col.categories)
            assert not extra, f"{col.name}: categories outside the domain: {sorted(extra)[:5]}"
    assert generator.sample(0, seed=1).schema == out.schema, "zero rows change the schema"


def check_seeded_sampling(generator: Generator[Any], n_rows: int = CONTRACT_ROWS) -> None:
    """The same seed gives the same rows; another seed gives other rows."""
    first = generator.sample(n_rows, seed=42)
    assert first.equals(generator.sample(n_rows, seed=42)), "same seed, different rows"
    assert not first.equals(generator.sample(n_rows, seed=43)), "different seeds, same rows"


def check_save_load(
    generator: Generator[Any], directory: Path, n_rows: int = CONTRACT_ROWS
) -> None:
    """A saved and reloaded model gives the same rows, and nothing is pickled."""
    directory = Path(directory)
    before = generator.sample(n_rows, seed=7)
    generator.save(directory)
    files = sorted(p.name for p in directory.iterdir())
    assert "manifest.json" in files, f"no manifest in {files}"
    pickles = [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))]
    assert not pickles, f"pickled files written: {pickles}"
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["generator_id"] == generator.generator_id
    assert manifest["differentially_private"] is generator.is_dp
    loaded = load_model(directory)
    assert type(loaded) is type(generator), f"loaded a {type(loaded).__name__}"
    assert loaded.sample(n_rows, seed=7).equals(before), "reloaded model gives other rows"


def check_ledger(
    generator: Generator[Any],
    table: Table,
    ledger: PrivacyLedger,
    budget: PrivacyBudget = CONTRACT_BUDGET,
) -> None:
    """The ledger holds what the fit released, and the manifest states exactly that.

    A DP fit: the released row count (one entry, pure epsilon) and the training (one entry,
    settled at most at its target); the manifest's end-to-end total equals the ledger's sum
    over those entries to the last digit. A non-DP fit: one ``non-dp`` entry, and it says so.
    """
    summary = generator.fit_summary
    assert summary is not None, "not fitted"
    entries = ledger.entries(table.budget_key())
    if generator.is_dp:
        by_mechanism = {e.mechanism: e for e in entries}
        assert len(entries) == 2 and COUNT_MECHANISM in by_mechanism, (
            f"expected the row count and the training in the ledger, found "
            f"{[e.mechanism for e in entries]}"
        )
        entry = next(e for e in entries if e.mechanism != COUNT_MECHANISM)
        assert entry.entry_id == summary.ledger_entry_id
        assert summary.private and summary.epsilon is not None and summary.delta is not None
        assert summary.epsilon <= budget.epsilon and summary.delta <= budget.delta, (
            f"spent ({summary.epsilon}, {summary.delta}) over the target {budget}"
        )
        assert entry.status == "spent", f"ledger entry is {entry.status!r}"
        assert abs(entry.epsilon - summary.epsilon) <= 1e-12 * max(summary.epsilon, 1.0)
        privacy = generator.manifest()["privacy"]
        assert privacy["epsilon"] == math.fsum(e.epsilon for e in entries), (
            "the manifest's end-to-end epsilon is not the ledger's total"
        )
        assert privacy["delta"] == math.fsum(e.delta for e in entries)
        count = by_mechanism[COUNT_MECHANISM]
        assert count.delta == 0 and summary.noisy_rows == count.params["noisy_rows"]
    else:
        assert len(entries) == 1, f"expected one ledger entry, found {len(entries)}"
        (entry,) = entries
        assert entry.entry_id == summary.ledger_entry_id
        assert not summary.private and entry.status == "non-dp"
        assert "not differentially private" in generator.description.lower(), (
            "a non-DP generator's description must say 'not differentially private'"
        )
