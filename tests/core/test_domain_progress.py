"""Learning a DP domain reports its progress column by column, and nothing read off the rows
(issue #20 item 15)."""

from __future__ import annotations

import numpy as np
import polars as pl

from privsynth_core import ColumnKind, PrivacyLedger
from privsynth_core.generator import Progress
from privsynth_core.privacy.domain import learn_domain
from privsynth_core.schema import Column, Schema
from privsynth_core.table import fingerprint_frame

ROWS = 1_537


def _table() -> tuple[pl.DataFrame, Schema]:
    rng = np.random.default_rng(3)
    frame = pl.DataFrame(
        {
            "income": rng.integers(71_234, 71_999, ROWS).astype(str),
            "member": rng.choice(["true", "false"], ROWS),
            "town": rng.choice(["zanzibarq", "ulaanbaatarq"], ROWS),
            "weight": np.round(rng.normal(8_642.5, 3.0, ROWS), 2).astype(str),
        }
    )
    skeleton = Schema(
        domain="public",
        columns=(
            Column(name="income", kind=ColumnKind.INTEGER),
            Column(name="member", kind=ColumnKind.BOOLEAN),
            Column(name="town", kind=ColumnKind.CATEGORICAL),
            Column(name="weight", kind=ColumnKind.CONTINUOUS),
        ),
    )
    return frame, skeleton


def test_learn_domain_reports_each_column_once_with_no_value_from_the_rows(
    ledger: PrivacyLedger,
) -> None:
    frame, skeleton = _table()
    key = fingerprint_frame(frame)
    ledger.set_budget(key, epsilon=10.0, delta=1e-5)
    reports: list[Progress] = []
    schema = learn_domain(
        frame,
        skeleton,
        epsilon=6.0,
        delta=1e-6,
        ledger=ledger,
        fingerprint=key,
        progress=reports.append,
    )
    # One report per column learned (the boolean needs no mechanism), in order, out of 3.
    assert [(p.epoch, p.epochs, p.unit) for p in reports] == [(i, 3, "column") for i in (1, 2, 3)]
    assert [p.stage for p in reports] == [
        f"learned the domain of column {name!r}" for name in ("income", "town", "weight")
    ]
    assert [p.epsilon for p in reports] == [2.0, 4.0, 6.0]
    assert not any(p.losses for p in reports)
    # Nothing read off the rows: no value, no learned bound or category, not the row count.
    shown = " ".join(repr(p) for p in reports)
    learned = [str(v) for c in schema.columns for v in (*(c.bounds or ()), *(c.categories or ()))]
    values = {v for name in frame.columns for v in frame[name].unique().to_list()}
    for text in {*values, *learned, str(ROWS)}:
        assert str(text) not in shown, text
    assert len(ledger.entries(key)) == 3
