"""The audit on real generators: the leaky control is caught, the DP generators are not refuted.

Each audit trains on canary-augmented copies of an Adult slice, charged to a throwaway ledger
(the test's own ledger stays empty: audit trainings are not releases).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import ADULT_SCHEMA_PATH, adult_frame
from privsynth_core.plugins import load_plugins, pm
from privsynth_core.privacy.audit import AuditConfig, run_audit
from privsynth_core.registry import reset_registries

sys.path.insert(0, str(Path(__file__).parent))
import leaky_plugin


@pytest.fixture
def leaky() -> Iterator[str]:
    """Register the leaky test generator through the register_generators hook."""
    load_plugins()
    pm.register(leaky_plugin, name="test-leaky")
    reset_registries()
    try:
        yield leaky_plugin.LeakyCopyGenerator.generator_id
    finally:
        pm.unregister(name="test-leaky")
        reset_registries()


def _adult_csv(tmp_path: Path, rows: int) -> str:
    path = tmp_path / "adult.csv"
    adult_frame(rows, seed=5).write_csv(path)
    return str(path)


def test_leaky_generator_is_caught(leaky: str, tmp_path: Path) -> None:
    config = AuditConfig(
        input=_adult_csv(tmp_path, 2000),
        schema_path=str(ADULT_SCHEMA_PATH),
        generator=leaky,
        epsilon=1.0,
        canaries=100,
        # More rows than it trained on, so every training row (every member canary) is in the
        # output. The default, the released noisy n̂, can fall below the training table's size,
        # and then a few member canaries are cut off at random, which blurs the AUC.
        rows=4000,
    )
    result = run_audit(config)
    assert result.claimed_epsilon == 1.0 and result.claimed_delta == 0.0
    assert result.correct == result.guesses == 20
    assert result.epsilon_lower_bound == pytest.approx(result.ceiling)
    assert result.epsilon_lower_bound > 1.0 and result.refuted
    assert result.auc == pytest.approx(1.0)  # a verbatim copy: every member at distance 0
    assert PrivacyLedger().datasets() == []  # nothing charged to the user's ledger


def test_independent_is_not_refuted_at_its_claim(tmp_path: Path) -> None:
    # Two runs pooled (200 canaries): the ceiling is well above the claim, so "not refuted"
    # is a real outcome of a test that could have refuted it.
    config = AuditConfig(
        input=_adult_csv(tmp_path, 2000),
        schema_path=str(ADULT_SCHEMA_PATH),
        generator="independent",
        epsilon=1.0,
        canaries=100,
        runs=2,
    )
    result = run_audit(config)
    assert result.ceiling > 2.5
    assert result.epsilon_lower_bound <= result.claimed_epsilon and not result.refuted
    assert result.claimed_delta == 0.0  # pure epsilon: the exact bound
    assert PrivacyLedger().datasets() == []


@pytest.mark.extended
def test_dpwgan_is_not_refuted_at_its_claim(tmp_path: Path) -> None:
    config = AuditConfig(
        input=_adult_csv(tmp_path, 2000),
        schema_path=str(ADULT_SCHEMA_PATH),
        generator="dpwgan",
        params={"epochs": 5, "num_threads": 1},
        epsilon=1.0,
        delta=1e-5,
        canaries=200,
    )
    result = run_audit(config)
    assert result.ceiling > 1.0
    assert result.epsilon_lower_bound <= result.claimed_epsilon and not result.refuted
