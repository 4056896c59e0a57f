"""MST and AIM report progress in their own units before each step, so a long fit is never
silent: MST its four stages, AIM its rounds (after a report before the numeric cells are learned
and one before the 1-way measurements)."""

from __future__ import annotations

import polars as pl
import pytest

from privsynth_core import PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_frame, adult_schema
from privsynth_core.generator import Progress
from privsynth_core.registry import generators

pytestmark = pytest.mark.usefixtures("with_marginal_plugin")


@pytest.fixture(scope="module")
def adult_raw() -> pl.DataFrame:
    return adult_frame().head(800)


def fit_with_progress(
    generator_id: str, adult_raw: pl.DataFrame, **params: object
) -> list[Progress]:
    table = Table.from_frame(adult_raw.head(800), adult_schema(), name="adult-800")
    ledger = PrivacyLedger()
    ledger.set_budget(table.budget_key(), epsilon=5, delta=1e-4)
    seen: list[Progress] = []
    generator = generators().get(generator_id)(**params)
    generator.fit(table, budget=PrivacyBudget(2.0, 1e-5), ledger=ledger, progress=seen.append)
    return seen


def test_mst_reports_each_stage_before_it_runs(adult_raw: pl.DataFrame) -> None:
    seen = fit_with_progress("mst", adult_raw, iters=50)
    assert {p.unit for p in seen} == {"stage"}
    # first the numeric cells learned under DP (a charged mechanism, before any marginal),
    # counted in MST's stages like the rest
    assert [(p.epoch, p.epochs) for p in seen] == [(0, 4), (0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert seen[0].stage == "learning the cells of 5 numeric columns"
    assert seen[0].epsilon == 0.0 < seen[1].epsilon  # the cells are charged before the 1-ways
    assert seen[1].stage == "measuring 1-way marginals"
    assert seen[4].stage == "estimating the graphical model"


def test_aim_counts_rounds_not_epochs_and_starts_before_its_first_round(
    adult_raw: pl.DataFrame,
) -> None:
    seen = fit_with_progress("aim", adult_raw, rounds=2, selections=4, iters=50, round_iters=20)
    assert {p.unit for p in seen} == {"round"}
    assert (seen[0].epoch, seen[0].epochs) == (0, 2)
    assert seen[0].stage.startswith("learning the cells of")
    assert (seen[1].epoch, seen[1].epochs, seen[1].stage) == (0, 2, "measuring 1-way marginals")
    assert seen[2].stage.startswith("round 1: selecting and measuring 2 marginals")
    assert (seen[-1].epoch, seen[-1].epochs, seen[-1].stage) == (2, 2, "done")
