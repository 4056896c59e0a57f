"""DP-CTGAN's numeric cells learned under DP (``plugins/dpctgan/_cells.py``), checked directly.

The trees of noisy histograms replace the binned numbers' one-way histograms in the marginals
release: the sensitivity of that release (every histogram moves by one count when a record is
added) is measured on a neighbouring table, the plan and the accountant's history are checked to
cover all ``k'`` histograms in two Gaussian releases, a point mass is shown to survive where
equal-width bins (fitted in the same test, same settings) smear it, and the cells travel with
the model (saved, reloaded identically; a model saved before cells were learned still loads).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from scipy.stats import ks_2samp

from privsynth_core import GeneratorError, PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_schema
from privsynth_core.privacy.cells import column_grid, derive_cells, tree_groups
from privsynth_core.registry import accountants, load_model
from privsynth_plugins.dpctgan import MARGINALS_FILE, DPCTGANGenerator, DPCTGANParams
from privsynth_plugins.dpctgan._cells import (
    CellCoder,
    cell_grids,
    exact_trees,
    learned_columns,
    tree_levels,
)
from privsynth_plugins.dpctgan._marginals import count_marginals, focus_pairs
from privsynth_plugins.dpctgan._model import make_encoder
from privsynth_plugins.dpctgan._plan import composed_epsilon, gdp_mu

TINY = {
    "critic_dim": "32,16",
    "generator_dim": "64",
    "embedding_dim": 8,
    "device": "cpu",
    "seed": 0,
}
BINNED = ("fnlwgt", "capital-gain", "capital-loss")  # Adult's numbers with > 100 values


def _fit(table: Table, ledger: PrivacyLedger, epsilon: float, **params: object) -> DPCTGANGenerator:
    ledger.set_budget(table.fingerprint(), epsilon=100.0, delta=1e-3)
    generator = DPCTGANGenerator(**{**TINY, **params})
    generator.fit(table, budget=PrivacyBudget(epsilon, 1e-5), ledger=ledger)
    return generator


@pytest.fixture(scope="module")
def adult_2k(adult_raw: pl.DataFrame) -> Table:
    return Table.from_frame(adult_raw.sample(2000, seed=5), adult_schema(), name="adult-2k")


def test_every_histogram_of_the_first_release_moves_by_one_count_per_record(
    adult_small: Table,
) -> None:
    """The sensitivity argument of ``_cells``: adding one record (present or null value) adds 1
    to exactly one count of every tree level and to at most one count of every other histogram,
    so the L2 distance is at most sqrt(k1)."""
    params = DPCTGANParams(**TINY)
    schema = adult_small.schema.with_columns(
        [
            c.model_copy(update={"nullable": True}) if c.name == "capital-loss" else c
            for c in adult_small.schema.columns
        ],
        domain=adult_small.schema.domain,
    )
    binned = learned_columns(schema, params)
    assert binned == BINNED
    grids = cell_grids(schema, binned)
    levels = tree_levels(grids)
    others = [c for c in schema.names if c not in binned]
    k1 = len(others) + sum(len(g) for g in levels.values())
    assert k1 == 12 + 3 * 3  # three levels over each 512-cell fine grid

    def histograms(frame: pl.DataFrame) -> list[np.ndarray]:
        trees = exact_trees(Table.from_frame(frame, schema), grids, levels)
        encoder = make_encoder(schema, params)  # the other columns' groups need no cells
        data = torch.from_numpy(encoder.encode(frame))
        one_way = count_marginals([data], encoder, schema.names, (), one_way=others).one_way
        return [level for tree in trees.values() for level in tree] + list(one_way.values())

    base = adult_small.frame.head(300)
    before = histograms(base)
    assert len(before) == k1
    row = base.head(1)
    null = row.with_columns(pl.lit(None, dtype=pl.Int64).alias("capital-loss"))
    for extra in (row, null):
        after = histograms(pl.concat([base, extra]))
        moved = [(a - b) for a, b in zip(after, before, strict=True)]
        for diff in moved:  # at most one count of every histogram, by one
            assert diff.min() >= 0 and diff.max() <= 1 and diff.sum() <= 1
        loss_levels = moved[6:9]  # capital-loss's tree: fnlwgt's and capital-gain's come first
        if extra is row:  # a present value: exactly one count of every level of every tree
            assert all(d.sum() == 1 for d in moved[:9])
        else:  # a null: the null count after the top level, and no other level
            assert loss_levels[0][-1] == 1 and sum(int(d.sum()) for d in loss_levels) == 1
        assert math.sqrt(sum(float((d**2).sum()) for d in moved)) <= math.sqrt(k1)


def test_plan_and_accountant_cover_every_histogram_in_two_releases(
    adult_small: Table, ledger: PrivacyLedger
) -> None:
    budget = PrivacyBudget(2.0, 1e-5)
    generator = _fit(adult_small, ledger, 2.0, batch_size=200, epochs=1, focus_columns="income")
    summary = generator.fit_summary
    assert summary is not None
    plan = generator.make_plan(
        n_rows=summary.noisy_rows or 0,
        schema=adult_small.schema,
        budget=budget,
        accountant="rdp",
    )
    k1 = 12 + sum(len(tree_groups(column_grid(adult_small.schema.column(c)).size)) for c in BINNED)
    k2 = len(focus_pairs(adult_small.schema.names, ["income"]))
    assert [k for _, k in plan.release_steps] == [k1, k2] == [21, 14]
    sigma_m = 1 / (math.sqrt(0.3) * gdp_mu(2.0, 1e-5))
    (s1, _), (s2, _) = plan.release_steps
    # each count gets the noise of one release of all k' histograms ...
    assert s1 * math.sqrt(k1) == pytest.approx(sigma_m * math.sqrt(k1 + k2))
    assert s2 * math.sqrt(k2) == pytest.approx(sigma_m * math.sqrt(k1 + k2))
    # ... and the two releases together cost exactly the Gaussian mechanism of sigma_m
    assert 1 / s1**2 + 1 / s2**2 == pytest.approx(1 / sigma_m**2)
    split = summary.extra["budget_split"]
    assert split["released_histograms"] == k1 + k2
    assert split["numeric_cells"] == list(BINNED)
    history = summary.accountant_state["history"]
    assert history[:2] == [[s1, 1.0, 1], [s2, 1.0, 1]]
    assert len(history) == 3 and history[2][2] == summary.steps
    rdp = accountants().get("rdp")
    assert summary.epsilon == pytest.approx(
        composed_epsilon(rdp, [tuple(h) for h in history], 1e-5), rel=1e-12
    )
    one_step = composed_epsilon(rdp, [(sigma_m, 1.0, 1), tuple(history[2])], 1e-5)
    assert summary.epsilon == pytest.approx(one_step, rel=1e-9)  # same price as one release
    assert summary.epsilon <= budget.epsilon


def test_a_point_mass_survives_where_equal_width_bins_smear_it(
    adult_2k: Table, ledger: PrivacyLedger
) -> None:
    """capital-loss is 0 for about 95% of Adult: equal-width bins decode bin 0 uniformly over
    [0, 250), learned cells keep 0 as a cell of its own. Generator steps read no private data,
    so several per critic step let the tiny generator match the noisy marginals quickly."""
    quick = {"epochs": 5, "batch_size": 500, "generator_steps": 5, "generator_lr": 1e-3}
    ks = {}
    for mode in ("equal_width", "learned"):
        generator = _fit(adult_2k, ledger, 5.0, numeric_cells=mode, **quick)
        out = generator.sample(adult_2k.n_rows, seed=1)
        real = adult_2k.frame["capital-loss"].to_numpy()
        ks[mode] = ks_2samp(out["capital-loss"].to_numpy(), real).statistic
        summary = generator.fit_summary
        assert summary is not None
        if mode == "learned":
            assert 0 in summary.extra["point_masses"]["capital-loss"]
        else:
            assert summary.extra["point_masses"] == {}
    # equal-width bins measured in the same test, same settings (about 0.96 vs 0.1 here)
    assert ks["learned"] < ks["equal_width"] / 2, ks


def test_cells_are_stored_and_reload_identically(
    adult_small: Table, ledger: PrivacyLedger, tmp_path: Path
) -> None:
    generator = _fit(adult_small, ledger, 3.0, batch_size=250, epochs=1)
    assert sorted(generator._cells) == sorted(BINNED)
    generator.save(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / MARGINALS_FILE).read_text(encoding="utf-8"))
    assert stored["format"] == 2 and sorted(stored["cells"]) == sorted(BINNED)
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, DPCTGANGenerator)
    for name, cells in generator._cells.items():
        again = loaded._cells[name]
        for key, value in cells.arrays("").items():
            np.testing.assert_array_equal(again.arrays("")[key], value)
    assert loaded.sample(500, seed=3).equals(generator.sample(500, seed=3))

    stored["cells"]["capital-loss"]["first"] = [3, 1]  # not increasing: a damaged file
    (tmp_path / "m" / MARGINALS_FILE).write_text(json.dumps(stored), encoding="utf-8")
    with pytest.raises(GeneratorError, match="damaged"):
        load_model(tmp_path / "m")


def test_a_model_saved_before_cells_were_learned_still_loads(
    adult_small: Table, ledger: PrivacyLedger, tmp_path: Path
) -> None:
    """Older models stored only the one-way marginals (column -> probabilities) and were
    trained on equal-width bins; they load with those bins and sample as before."""
    generator = _fit(
        adult_small, ledger, 3.0, batch_size=250, epochs=1, numeric_cells="equal_width"
    )
    generator.save(tmp_path / "m")
    path = tmp_path / "m" / MARGINALS_FILE
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["cells"] == {}
    path.write_text(json.dumps(stored["one_way"]), encoding="utf-8")  # the old format
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, DPCTGANGenerator) and loaded._cells == {}
    assert loaded.sample(300, seed=4).equals(generator.sample(300, seed=4))


def test_learned_cells_encode_and_decode_values_back(adult_small: Table) -> None:
    schema = adult_small.schema
    frame = adult_small.frame
    cells = {}
    for name in BINNED:
        grid = column_grid(schema.column(name))
        values = frame[name].cast(pl.Float64).to_numpy()
        estimate = np.bincount(grid.index(values), minlength=grid.size).astype(np.float64)
        cells[name] = derive_cells(grid, estimate, 20)  # exact counts: a test, not a release
    encoder = make_encoder(schema, DPCTGANParams(**TINY), cells)
    assert encoder.numeric["capital-loss"].slots == 20
    back = encoder.decode(encoder.encode(frame))
    for name in BINNED:  # integers: back exactly, up to float32 offsets in wide fine cells
        diff = (back[name] - frame[name]).abs()
        width = float(np.max(cells[name].grid.ends - cells[name].grid.starts)) + 1
        assert diff.max() <= max(1, 1e-5 * width), name
    assert back["capital-loss"].filter(frame["capital-loss"] == 0).max() == 0
    coder = CellCoder(cells["capital-loss"])
    zero = coder.encode(np.array([0.0]))[0]
    assert list(coder.cells.points) == [cells["capital-loss"].first[zero[0]]]
    anywhere = coder.decode(np.repeat(zero, 5), np.linspace(-1, 1, 5))
    assert (anywhere == 0).all()  # a point-mass cell decodes to its value, whatever the offset
