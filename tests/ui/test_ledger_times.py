"""What an analyst's Overview shows of the ledger carries no time of day (issue #15): the DP
domain charges each column just before its mechanism runs, so the gaps between those entries'
times are how long each column's mechanism ran on the rows, which depends on the data (the
row count, the distinct values of a column) and is protected by no DP guarantee. The ledger
is the custodian's (docs/privacy.md); an analyst sees each entry's date only."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from privsynth_core.schema import Schema
from privsynth_ui import budget_handlers, domain_handlers
from privsynth_ui import data_handlers as data
from privsynth_ui.auth import CUSTODIAN
from privsynth_ui.settings import UISettings
from privsynth_ui.workspace import Workspace


def test_an_analyst_sees_the_date_of_ledger_entries_never_their_time(tmp_path: Path) -> None:
    settings = UISettings(home=tmp_path / "home", failure_delay=0.0)
    cora = Workspace(settings.home, "cora", role=CUSTODIAN)
    ann = Workspace(settings.home, "ann")
    rng = np.random.default_rng(5)
    table = tmp_path / "t.csv"
    pl.DataFrame(
        {"n": rng.integers(40_100, 40_900, 400), "c": rng.choice(["quokka", "wombat"], 400)}
    ).write_csv(table)
    added = {}
    for ws in (cora, ann):
        upload = settings.cache_dir / ws.user / "t.csv"
        upload.parent.mkdir(parents=True)
        shutil.copy(table, upload)
        added[ws.user] = data.add_uploaded(
            ws, settings, upload, name="t", holdout_share=0.0, exclude=""
        )
    assert added["ann"].key == added["cora"].key  # one data source, one ledger for both
    budget_handlers.set_budget(cora, added["cora"].dataset_id, 20.0, 1e-5)
    rows = domain_handlers.schema_rows(Schema.load(added["cora"].draft_schema_path))
    domain_handlers.set_domain(
        cora, added["cora"].dataset_id, rows, mode="dp", epsilon=2.0, delta=1e-6
    )
    custodian_times = [
        row[1] for row in budget_handlers.ledger_rows(cora, added["cora"].dataset_id)
    ]
    analyst_rows = budget_handlers.ledger_rows(ann, added["ann"].dataset_id)
    mechanisms = [row[2] for row in analyst_rows]
    assert "dp bounds of 'n'" in mechanisms and "dp categories of 'c'" in mechanisms
    # The custodian keeps the full time; the analyst gets its date.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", t) for t in custodian_times)
    assert [row[1] for row in analyst_rows] == [t[:10] for t in custodian_times]
