"""The contract every registered generator keeps (run for each id in the registry).

Fit on a real slice of Adult with quick settings, then the checks of
:mod:`privsynth_core.contract` (the same ones a third-party plugin runs on itself): the output
fits the schema exactly, the same seed gives the same rows, a saved and reloaded model gives the
same rows, no pickle is written, the budget is never exceeded and the ledger holds one entry.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from privsynth_core import Generator, PrivacyLedger, Table
from privsynth_core.contract import (
    check_ledger,
    check_output_schema,
    check_save_load,
    check_seeded_sampling,
    fit_for_contract,
)
from privsynth_core.registry import generators


@pytest.fixture(scope="module", params=generators().names())
def fitted(
    request: pytest.FixtureRequest,
    adult_raw: pl.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Generator, Table, PrivacyLedger]:
    """One fit per generator, shared by the checks below (a fit is the slow part)."""
    from privsynth_core.datasets import adult_schema

    table = Table.from_frame(adult_raw.sample(1500, seed=11), adult_schema(), name="adult-1500")
    return fit_for_contract(
        generators().get(request.param), table, tmp_path_factory.mktemp("ledger")
    )


def test_output_respects_the_schema_exactly(fitted: tuple[Generator, Table, PrivacyLedger]) -> None:
    generator, table, _ = fitted
    check_output_schema(generator, table)


def test_same_seed_same_rows(fitted: tuple[Generator, Table, PrivacyLedger]) -> None:
    check_seeded_sampling(fitted[0])


def test_save_load_gives_the_same_rows_without_pickles(
    fitted: tuple[Generator, Table, PrivacyLedger], tmp_path: Path
) -> None:
    check_save_load(fitted[0], tmp_path / "model")


def test_budget_is_never_exceeded_and_the_ledger_has_the_entry(
    fitted: tuple[Generator, Table, PrivacyLedger],
) -> None:
    generator, table, ledger = fitted
    check_ledger(generator, table, ledger)
