"""MST and AIM learn their numeric cells under DP, inside their own budget, and say so.

The mechanism itself (grid, tree, noise, derived cells) is tested in the main suite
(tests/core/test_cells.py); here: the plan is public and its charge is the stated formula, the
fit charges it and reports it, and a spike in a real column survives a whole fit (where
equal-width cells smear it). The noise is OpenDP's and cannot be seeded: the statistical
assertions say how far from failing they are.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from privsynth_marginal.cells import learn_cells, plan_cells
from privsynth_marginal.discretise import learnable
from privsynth_marginal.zcdp import ZCDPBudget, gaussian_rho

from privsynth_core import PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_frame, adult_schema
from privsynth_core.generator import TableProfile
from privsynth_core.registry import choose_generator, generators
from privsynth_core.schema import Column, ColumnKind, Schema
from privsynth_ui.cli.generate_cmd import spending_lines

pytestmark = pytest.mark.usefixtures("with_marginal_plugin")

LEARNABLE = ["age", "fnlwgt", "capital-gain", "capital-loss", "hours-per-week"]


def test_the_plan_is_public_and_its_charge_is_the_stated_formula() -> None:
    schema = adult_schema()
    # which columns: numbers with more values than cells (educational-num has 16 <= 32)
    assert [c.name for c in schema.columns if learnable(c, 32)] == LEARNABLE
    plan = plan_cells(schema, 32, rho=0.02)
    again = plan_cells(schema, 32, rho=0.02)  # from the schema alone: the same every time
    assert plan.columns == LEARNABLE and plan.summary() == again.summary()
    assert all(np.array_equal(plan.grids[c].starts, again.grids[c].starts) for c in LEARNABLE)
    # one sigma for every level of every column: H histograms of L2 sensitivity 1 cost
    # H / (2 sigma^2) zCDP, which is the plan's rho (noise a hair above, never below)
    assert plan.histograms == sum(len(plan.groups[c]) for c in LEARNABLE)
    assert plan.sigma == pytest.approx(math.sqrt(plan.histograms / (2 * 0.02)), rel=1e-8)
    assert plan.histograms * gaussian_rho(plan.sigma) <= 0.02
    budget = ZCDPBudget(0.05)
    learned = learn_cells(plan, schema, adult_frame().head(500), 32, budget)
    assert budget.by_kind == {"numeric cells": pytest.approx(0.02, rel=1e-8)}
    assert budget.spent <= 0.02
    # the number of cells is the public min(bins, fine cells), whatever the data
    assert {name: cells.n_cells for name, cells in learned.items()} == {
        name: min(32, plan.grids[name].size) for name in LEARNABLE
    }
    assert plan_cells(schema, 32, rho=0.0).columns == []  # cells_share = 0: nothing learned


#: A few of Adult's columns: a fit compiles a model over them (seconds per column).
FEW = ("hours-per-week", "capital-gain", "income")


def _fit(frame: pl.DataFrame, **params: object) -> tuple[object, dict[str, object]]:
    schema = adult_schema()
    schema = Schema(domain=schema.domain, columns=tuple(schema.column(n) for n in FEW))
    table = Table.from_frame(frame.select(FEW), schema, name="adult-cells")
    ledger = PrivacyLedger()
    ledger.set_budget(table.budget_key(), epsilon=10, delta=1e-4)
    generator = generators().get("mst")(iters=100, **params)
    summary = generator.fit(table, budget=PrivacyBudget(4.0, 1e-5), ledger=ledger)
    return generator, summary.extra


def test_a_spike_survives_a_fit_with_learned_cells_and_not_with_equal_width_ones() -> None:
    frame = adult_frame().head(3000)
    real = float((frame["hours-per-week"].cast(pl.Int64) == 40).mean())  # about 0.47
    learned, extra = _fit(frame)
    # the fit summary states the cells' charge (10% of rho by default) and what they found:
    # 40 hours holds ~1,400 rows against a point-mass threshold of ~94 (a miss: > 20 sigmas)
    use = extra["budget_use"]
    assert use["share"]["numeric cells"] == pytest.approx(0.1, abs=1e-4)
    assert sum(use["rho"].values()) == pytest.approx(extra["rho_spent"])
    assert set(extra["numeric_cells"]["columns"]) == {"hours-per-week", "capital-gain"}
    assert 40 in extra["point_masses"]["hours-per-week"]
    assert 0 in extra["point_masses"]["capital-gain"]
    lines = spending_lines(extra)
    assert any(line.startswith("spent on: numeric cells 10%") for line in lines)
    assert any(
        line.startswith("hours-per-week: point masses learned under DP at") and "40" in line
        for line in lines
    )
    synthetic = learned.sample(5000, seed=0)  # type: ignore[attr-defined]
    share = float((synthetic["hours-per-week"] == 40).mean())
    # a cell of its own: the synthetic share is the noisy one (~0.47 +- a few %)
    assert abs(share - real) < 0.06, (share, real)
    # equal-width cells (cells_share=0) smear 40 over its cell of ~3 values: well under half
    # of its rows keep exactly 40, and nothing is charged for cells
    equal, extra_equal = _fit(frame, cells_share=0.0)
    assert "numeric cells" not in extra_equal["budget_use"]["rho"]
    assert extra_equal["point_masses"] == {}
    smeared = float((equal.sample(5000, seed=0)["hours-per-week"] == 40).mean())  # type: ignore[attr-defined]
    assert smeared < 0.6 * real, (smeared, real)


def _schema(width: int) -> Schema:
    return Schema(
        domain="public",
        columns=tuple(
            Column(name=f"c{i}", kind=ColumnKind.CATEGORICAL, categories=("a", "b"))
            for i in range(width)
        ),
    )


def test_aim_is_chosen_within_its_limits_and_mst_for_wide_tables() -> None:
    choice = choose_generator(adult_schema(), target="income")
    assert choice.generator_id == "aim" and "most faithful" in choice.why
    assert [r[0] for r in choice.ranking][:2] == ["aim", "mst"]
    wide = choose_generator(_schema(70))
    assert wide.generator_id == "mst" and "70" in wide.why
    aim = generators().get("aim")
    assert (
        aim.suitability(TableProfile.of(_schema(40))).score
        > aim.suitability(TableProfile.of(_schema(41))).score
    )


def test_a_target_sets_the_marginal_generators_target_and_is_checked() -> None:
    aim = generators().get("aim")
    assert aim.params_for_target({}, "income") == {"target": "income"}
    assert aim.params_for_target({}, None) == {}
    assert aim.params_for_target({"target": "age"}, "income") == {"target": "age"}
    table = Table.from_frame(adult_frame().head(200), adult_schema(), name="adult-200")
    ledger = PrivacyLedger()
    ledger.set_budget(table.budget_key(), epsilon=10, delta=1e-4)
    from privsynth_core import ConfigError

    with pytest.raises(ConfigError, match="'incme' is not a column"):
        aim(target="incme").fit(table, budget=PrivacyBudget(1.0, 1e-5), ledger=ledger)
    assert ledger.entries(table.budget_key()) == []


def test_a_column_of_nulls_still_gets_the_plans_cells() -> None:
    # nulls are not counted (a null is its own cell): a column of only nulls still gets the
    # plan's cells, all from the public grid
    schema = Schema(
        domain="public",
        columns=(Column(name="x", kind=ColumnKind.CONTINUOUS, nullable=True, bounds=(0.0, 100.0)),),
    )
    plan = plan_cells(schema, 16, rho=1.0)
    frame = pl.DataFrame({"x": pl.Series([None] * 50, dtype=pl.Float64)})
    learned = learn_cells(plan, schema, frame, 16, ZCDPBudget(1.0))
    assert learned["x"].n_cells == 16
    values = learned["x"].decode(np.arange(16), np.random.default_rng(0))
    assert ((values >= 0) & (values <= 100)).all()
