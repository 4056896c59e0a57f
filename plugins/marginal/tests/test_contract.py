"""MST and AIM keep privsynth's generator contract (the checks every generator runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from privsynth_core import Generator, PrivacyLedger, Table
from privsynth_core.contract import (
    check_ledger,
    check_output_schema,
    check_save_load,
    check_seeded_sampling,
    fit_for_contract,
)
from privsynth_core.datasets import adult_frame, adult_schema
from privsynth_core.registry import generators

# Quick settings: few iterations (a fit's time is mostly jax compiling the estimator).
QUICK = {"mst": {"iters": 100}, "aim": {"iters": 100, "rounds": 2, "round_iters": 20}}


@pytest.fixture(scope="module", params=["mst", "aim"])
def fitted(
    request: pytest.FixtureRequest,
    with_marginal_plugin: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Generator, Table, PrivacyLedger]:
    table = Table.from_frame(adult_frame().sample(1500, seed=11), adult_schema(), name="adult-1500")
    return fit_for_contract(
        generators().get(request.param),
        table,
        tmp_path_factory.mktemp("ledger"),
        **QUICK[request.param],
    )


def test_output_respects_the_schema_exactly(fitted: tuple[Generator, Table, PrivacyLedger]) -> None:
    check_output_schema(fitted[0], fitted[1])


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
    summary = generator.fit_summary
    assert summary is not None
    # the whole zCDP plan was spent, and converted to the epsilon the ledger holds
    from privsynth_marginal.zcdp import epsilon_for

    assert summary.extra["rho_spent"] == pytest.approx(summary.extra["rho_budget"], rel=1e-6)
    assert summary.epsilon == pytest.approx(epsilon_for(summary.extra["rho_spent"], 1e-5))
    assert summary.epsilon <= 3.0 and summary.epsilon > 2.99


def test_aim_that_runs_out_of_candidates_is_charged_its_whole_plan(
    with_marginal_plugin: None,
    tmp_path: Path,
) -> None:
    """Whether AIM runs out of candidates depends on its selections (the model-size filter is
    applied to what was selected), so the statement and the charge are the planned total, not
    the realised sum: a smaller figure would be data-dependent and no guarantee."""
    from privsynth_marginal.zcdp import epsilon_for

    frame = (
        adult_frame().sample(1000, seed=3).select("age", "workclass", "gender", "race", "income")
    )
    schema = adult_schema()
    schema = schema.with_columns([schema.column(c) for c in frame.columns], domain="public")
    table = Table.from_frame(frame, schema, name="adult-5")
    # a model limit of a hair: no pair fits, every round's pool is empty
    generator, _, ledger = fit_for_contract(
        generators().get("aim"),
        table,
        tmp_path,
        iters=50,
        rounds=2,
        round_iters=10,
        max_model_mb=1e-6,
    )
    summary = generator.fit_summary
    assert summary is not None and summary.extra["measured_marginals"] == [
        [c] for c in frame.columns
    ]
    assert summary.extra["rho_spent"] < 0.95 * summary.extra["rho_budget"]  # it stopped early
    assert summary.epsilon == pytest.approx(epsilon_for(summary.extra["rho_budget"], 1e-5))
    check_ledger(generator, table, ledger)  # the ledger holds the stated (whole) figure
    assert "charged all the same" in summary.extra["budget_use"]["unspent_why"]


def test_the_fit_summary_states_the_bounds_on_time_and_memory(
    fitted: tuple[Generator, Table, PrivacyLedger],
) -> None:
    """Public figures only (the schema's cells and the parameters): the candidate cap, the
    model-size cap and the number of estimates (issue #18)."""
    generator, table, _ = fitted
    summary = generator.fit_summary
    assert summary is not None
    bounds = summary.extra["bounds"]
    d = len(table.schema.columns)
    if generator.generator_id == "aim":
        assert 0 < bounds["candidate_pairs"] <= bounds["all_pairs"] == d * (d - 1) // 2
        assert bounds["max_model_mb"] == 8.0 and bounds["model_estimates_at_most"] == 2
        assert f"candidates capped at {bounds['candidate_pairs']} of" in bounds["statement"]
        assert "max model size 8 MB" in bounds["statement"]
    else:
        assert bounds["candidate_pairs"] == d * (d - 1) // 2 and bounds["model_estimates"] == 1
