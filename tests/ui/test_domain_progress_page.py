"""The page's Fix-the-domain step shows a DP domain's progress column by column (issue #20
item 15): Gradio's progress tracker gets one update per column learned, with the totals and
nothing read off the rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from privsynth_core.schema import Schema
from privsynth_ui import budget_handlers, domain_handlers
from privsynth_ui import data_handlers as data
from privsynth_ui.auth import CUSTODIAN
from privsynth_ui.events import PageEvents
from privsynth_ui.settings import UISettings
from privsynth_ui.training import WebFlows
from privsynth_ui.workspace import Workspace


class Tracker:
    """Records what the handler tells Gradio's progress tracker (gr.Progress is called the
    same way; this one needs no page in a browser to hold it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, value: Any, **kwargs: Any) -> None:
        self.calls.append((value, kwargs))


def test_learning_a_dp_domain_on_the_page_shows_each_column_learned(tmp_path: Path) -> None:
    settings = UISettings(home=tmp_path / "home", failure_delay=0.0)
    ws = Workspace(settings.home, "cora", role=CUSTODIAN)
    rng = np.random.default_rng(4)
    upload = settings.cache_dir / "t" / "wide.csv"
    upload.parent.mkdir(parents=True)
    pl.DataFrame(
        {
            **{f"n{i}": rng.integers(40_100, 40_900, 811) for i in range(3)},
            **{f"c{i}": rng.choice(["quokka", "wombat"], 811) for i in range(2)},
        }
    ).write_csv(upload)
    record = data.add_uploaded(ws, settings, upload, name="t", holdout_share=0.0, exclude="")
    budget_handlers.set_budget(ws, record.dataset_id, 20.0, 1e-5)
    table = domain_handlers.schema_rows(Schema.load(record.draft_schema_path))
    tracker = Tracker()
    PageEvents(settings, WebFlows(settings)).fix_domain(
        ws, record.dataset_id, table, "dp", 10.0, 1e-6, False, progress=tracker
    )
    assert domain_handlers.domain_of(ws, record).fixed
    first, *columns = tracker.calls
    assert first[0] is None  # the phase line, before the first column
    assert [value for value, _ in columns] == [(i, 5) for i in range(1, 6)]
    assert [kw["desc"] for _, kw in columns] == [
        f"Learning the domain with DP: column {i} of 5" for i in range(1, 6)
    ]
    shown = repr(tracker.calls)
    assert not any(word in shown for word in ("quokka", "wombat", "40", "811"))
