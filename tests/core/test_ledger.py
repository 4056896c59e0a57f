"""The privacy ledger: composition, refusals that write nothing, reservations, and real
concurrent processes that can never overspend together."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from privsynth_core import BudgetExceededError, BudgetNotSetError, PrivacyLedger
from privsynth_core.errors import BudgetError

FP = "a" * 64


def test_charges_compose_by_summing(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=2.0, delta=1e-5, label="toy")
    ledger.charge(FP, mechanism="m1", epsilon=0.5, delta=1e-6, run_id="r1")
    ledger.charge(FP, mechanism="m2", epsilon=0.25, delta=0.0, run_id="r1")
    status = ledger.status(FP)
    assert status.spent.epsilon == pytest.approx(0.75)
    assert status.spent.delta == pytest.approx(1e-6)
    assert status.remaining.epsilon == pytest.approx(1.25)
    assert [e.mechanism for e in ledger.entries(FP)] == ["m1", "m2"]


def test_a_charge_over_budget_raises_and_writes_nothing(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    ledger.charge(FP, mechanism="m1", epsilon=0.8, delta=0.0, run_id="r")
    with pytest.raises(BudgetExceededError, match="nothing was charged"):
        ledger.charge(FP, mechanism="m2", epsilon=0.3, delta=0.0, run_id="r")
    with pytest.raises(BudgetExceededError):
        ledger.charge(FP, mechanism="m3", epsilon=0.1, delta=2e-5, run_id="r")
    assert len(ledger.entries(FP)) == 1
    ledger.charge(FP, mechanism="m4", epsilon=0.2, delta=0.0, run_id="r")  # exactly to the top
    assert ledger.status(FP).remaining.epsilon == pytest.approx(0.0, abs=1e-12)


def test_no_budget_means_no_charge(ledger: PrivacyLedger) -> None:
    with pytest.raises(BudgetNotSetError, match="privsynth budget set"):
        ledger.charge(FP, mechanism="m", epsilon=0.1, delta=0.0, run_id="r")


def test_reserve_then_settle_to_what_was_spent(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    entry = ledger.reserve(FP, mechanism="train", epsilon=1.0, delta=1e-5, run_id="r")
    assert ledger.status(FP).remaining.epsilon == 0.0  # a reservation counts as spent
    with pytest.raises(BudgetExceededError):
        ledger.charge(FP, mechanism="other", epsilon=0.01, delta=0.0, run_id="r")
    with pytest.raises(BudgetError, match="only"):
        ledger.settle(entry.entry_id, epsilon=1.5, delta=1e-5)
    settled = ledger.settle(entry.entry_id, epsilon=0.6, delta=1e-5, params={"steps": 10})
    assert settled.status == "spent" and settled.params["steps"] == 10
    assert ledger.status(FP).spent.epsilon == pytest.approx(0.6)
    with pytest.raises(BudgetError, match="not an open reservation"):
        ledger.settle(entry.entry_id, epsilon=0.1, delta=0.0)


def test_budget_cannot_drop_below_spent(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    ledger.charge(FP, mechanism="m", epsilon=0.7, delta=0.0, run_id="r")
    with pytest.raises(BudgetExceededError, match="already been spent"):
        ledger.set_budget(FP, epsilon=0.5, delta=1e-5)
    assert ledger.set_budget(FP, epsilon=3.0, delta=1e-5).remaining.epsilon == pytest.approx(2.3)


def test_non_private_runs_are_recorded_not_counted(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    entry = ledger.record_non_private(FP, mechanism="ctgan", run_id="r")
    assert entry.status == "non-dp" and math.isinf(entry.epsilon)
    status = ledger.status(FP)
    assert status.non_private_runs == 1 and status.spent.epsilon == 0.0


def test_ledger_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    PrivacyLedger(path).set_budget(FP, epsilon=1.0, delta=1e-5)
    PrivacyLedger(path).charge(FP, mechanism="m", epsilon=0.4, delta=0.0, run_id="r")
    assert PrivacyLedger(path).status(FP).spent.epsilon == pytest.approx(0.4)


def _charge_until_refused(path: str, barrier: Any, results: Any) -> None:
    ledger = PrivacyLedger(path)
    barrier.wait()
    accepted = 0
    while True:
        try:
            ledger.charge(FP, mechanism="race", epsilon=0.01, delta=0.0, run_id="race")
        except BudgetExceededError:
            results.put(accepted)
            return
        accepted += 1


def test_concurrent_processes_never_overspend(tmp_path: Path) -> None:
    path = str(tmp_path / "race.sqlite")
    PrivacyLedger(path).set_budget(FP, epsilon=0.5, delta=1e-5)
    context = multiprocessing.get_context("spawn")
    workers = 6
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_charge_until_refused, args=(path, barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    accepted = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    ledger = PrivacyLedger(path)
    assert sum(accepted) == 50, accepted  # 0.5 / 0.01, not one more
    assert len(ledger.entries(FP)) == 50
    assert ledger.status(FP).spent.epsilon == pytest.approx(0.5)
    assert sum(1 for a in accepted if a) >= 2  # the processes really raced
