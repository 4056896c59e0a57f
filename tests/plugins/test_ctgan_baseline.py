"""The non-DP ``ctgan`` baseline: SDV's CTGAN as is, labelled NOT differentially private
everywhere, saved without pickle and loaded without running stored code."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from privsynth_core import (
    ConfigError,
    GeneratorError,
    PrivacyBudget,
    PrivacyLedger,
    Table,
)
from privsynth_core.datasets import adult_schema
from privsynth_core.registry import generators, load_model
from privsynth_plugins.ctgan_baseline import CTGANGenerator
from privsynth_plugins.ctgan_baseline._state import StateError, dump, load

# The baseline wraps SDV, an optional extra (`privsynth[sdv]`, in the dev install).
pytest.importorskip("sdv", reason="the sdv extra is not installed")


@pytest.fixture(scope="module")
def fitted(
    adult_raw: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CTGANGenerator, Table, PrivacyLedger]:
    table = Table.from_frame(adult_raw.sample(600, seed=5), adult_schema(), name="adult-600")
    ledger = PrivacyLedger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite")
    generator = CTGANGenerator(epochs=1, batch_size=100, seed=0, device="cpu")
    generator.fit(table, budget=None, ledger=ledger)
    return generator, table, ledger


def test_it_says_not_differentially_private_everywhere(
    fitted: tuple[CTGANGenerator, Table, PrivacyLedger], tmp_path: Path
) -> None:
    generator, table, ledger = fitted
    entry = generators().entry("ctgan")
    assert not entry.cls.is_dp and "NOT differentially private" in entry.description
    assert generator.fit_summary is not None and not generator.fit_summary.private
    (record,) = ledger.entries(table.fingerprint())
    assert record.status == "non-dp"
    generator.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["differentially_private"] is False
    assert manifest["privacy"] == {"label": "NOT differentially private"}


def test_a_privacy_budget_is_refused(fitted: tuple[CTGANGenerator, Table, PrivacyLedger]) -> None:
    _, table, ledger = fitted
    with pytest.raises(ConfigError, match="NOT differentially private"):
        CTGANGenerator(epochs=1).fit(table, budget=PrivacyBudget(1.0, 1e-5), ledger=ledger)


def test_batch_size_must_suit_pac() -> None:
    with pytest.raises(ConfigError, match="pac"):
        CTGANGenerator(batch_size=105, pac=10)


def test_saved_without_pickle_and_reloaded_to_the_same_rows(
    fitted: tuple[CTGANGenerator, Table, PrivacyLedger], tmp_path: Path
) -> None:
    generator, _, _ = fitted
    before = generator.sample(300, seed=3)
    generator.save(tmp_path / "model")
    names = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert names == ["manifest.json", "sdv_state.json", "sdv_tensors.pt"]
    assert b"cloudpickle" not in (tmp_path / "model" / "sdv_state.json").read_bytes()
    loaded = load_model(tmp_path / "model")
    assert loaded.sample(300, seed=3).equals(before)
    assert not loaded.sample(300, seed=4).equals(before)


def test_a_state_naming_a_class_outside_the_allow_list_is_refused(
    fitted: tuple[CTGANGenerator, Table, PrivacyLedger], tmp_path: Path
) -> None:
    generator, _, _ = fitted
    generator.save(tmp_path / "model")
    path = tmp_path / "model" / "sdv_state.json"
    text = path.read_text()
    target = '"__object__": "sdv.single_table.ctgan:CTGANSynthesizer"'
    assert target in text
    path.write_text(text.replace(target, '"__object__": "subprocess:Popen"'))
    with pytest.raises(GeneratorError, match="allow-list"):
        load_model(tmp_path / "model")


def test_state_tree_keeps_shared_references_and_refuses_unknown_types() -> None:
    import numpy as np

    shared = np.arange(3.0)
    tree, tensors = dump({"a": shared, "b": [shared, (1, "x", None, float("nan"))]})
    back = load(json.loads(json.dumps(tree)), tensors, skipped={})
    assert back["a"] is back["b"][0] and back["a"].tolist() == [0.0, 1.0, 2.0]
    assert back["b"][1][:3] == (1, "x", None) and np.isnan(back["b"][1][3])
    with pytest.raises(StateError, match="cannot store"):
        dump(object())
