"""privsynth-marginal as users meet it: found through the entry point, cheap to list, clear
errors, and the quality it promises on Adult at epsilon = 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from privsynth_core import ConfigError, PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_frame, adult_schema, load_adult
from privsynth_core.registry import generators, metrics


def test_listed_through_the_entry_point_without_importing_jax() -> None:
    code = (
        "import json, sys\n"
        "from privsynth_ui.cli import main\n"
        "main(['plugins', 'list', '--json'])\n"
        "print(json.dumps(sorted(m for m in ('jax', 'mbi', 'torch') if m in sys.modules)))\n"
    )
    env = {**os.environ, "PRIVSYNTH_LOAD_PLUGINS": "privsynth,privsynth-marginal"}
    out = (
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        .stdout.strip()
        .splitlines()
    )
    listing = json.loads("\n".join(out[:-1]))
    mine = {p["id"]: p for p in listing if p.get("distribution") == "privsynth-marginal"}
    assert set(mine) == {"mst", "aim"}, listing
    assert json.loads(out[-1]) == []  # listing plugins imported none of jax, mbi, torch


def test_zero_delta_is_refused_before_anything_is_spent(
    with_marginal_plugin: None, ledger_home: PrivacyLedger
) -> None:
    table = load_adult(300)
    ledger_home.set_budget(table.fingerprint(), epsilon=5.0, delta=0.0)
    generator = generators().get("mst")()
    with pytest.raises(ConfigError, match="delta > 0"):
        generator.fit(table, budget=PrivacyBudget(1.0, 0.0), ledger=ledger_home)
    assert ledger_home.entries(table.fingerprint()) == []


@pytest.mark.extended  # a whole AIM fit at full size; CI runs it
def test_aim_at_epsilon_1_meets_the_fidelity_target_on_adult(
    with_marginal_plugin: None, ledger_home: PrivacyLedger
) -> None:
    """The issue's target, on a seeded 10,000-row split: 2-way TVD <= 0.10 at epsilon 1.

    TSTR AUC is held to 0.80 here (DP noise varies between runs; the bench measured
    0.87 against the 0.85 target, see bench/README.md).
    """
    frame = adult_frame().sample(fraction=1.0, shuffle=True, seed=3)
    schema = adult_schema()
    train = Table.from_frame(frame.head(10_000), schema, name="adult-train")
    test = Table.from_frame(frame.slice(10_000, 5_000), schema, name="adult-test")
    # The budget leaves room for the released row count (1% of it) besides the training.
    ledger_home.set_budget(train.fingerprint(), epsilon=1.02, delta=1e-5)
    generator = generators().get("aim")()
    summary = generator.fit(train, budget=PrivacyBudget(1.0, 1e-5), ledger=ledger_home)
    assert summary.epsilon is not None and summary.epsilon <= 1.0
    synthetic = generator.sample(10_000, seed=0)
    scores = {
        m: metrics()
        .get(m)()
        .compute(train.frame, synthetic, schema=schema, holdout=test.frame, target="income")
        .value
        for m in ("marginal_2way_tvd", "tstr")
    }
    assert scores["marginal_2way_tvd"] <= 0.10, scores
    assert scores["tstr"] >= 0.80, scores


@pytest.fixture
def ledger_home() -> PrivacyLedger:
    return PrivacyLedger()
