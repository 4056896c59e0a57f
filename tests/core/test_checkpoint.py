"""The resume protocol: write-ahead step log, atomic checkpoints, one reservation per training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from privsynth_core import (
    FitSummary,
    Generator,
    GeneratorParams,
    PrivacyBudget,
    PrivacyLedger,
    Table,
)
from privsynth_core.errors import AccountingError
from privsynth_core.privacy.checkpoint import CheckpointStore
from privsynth_core.privacy.ledger import LedgerEntry
from privsynth_core.registry import accountants


def _write_weights(directory: Path) -> None:
    (directory / "w.txt").write_text("weights")


def test_restore_counts_steps_logged_after_the_checkpoint(tmp_path: Path) -> None:
    rdp = accountants().get("rdp")
    store = CheckpointStore(tmp_path / "ck")
    acc = rdp()
    for _ in range(3):  # three blocks of 10 steps, a checkpoint after each
        store.log_steps(noise_multiplier=1.1, sample_rate=0.01, num_steps=10)
        acc.step(noise_multiplier=1.1, sample_rate=0.01, num_steps=10)
        store.save(step=acc.steps_taken, accountant_state=acc.state_dict(), write=_write_weights)
    store.log_steps(noise_multiplier=1.1, sample_rate=0.01, num_steps=10)  # then killed
    with open(store.directory / "steps.log", "a") as fh:
        fh.write('{"noise_multiplier": 1.1, "sam')  # a torn line from the kill

    latest = store.latest()
    assert latest is not None and latest.step == 30 and latest.lost_steps == 10
    assert (latest.directory / "w.txt").read_text() == "weights"
    assert len(list(store.directory.glob("step-*"))) == 2  # older checkpoints pruned
    restored = rdp()
    assert store.restore_accountant(restored) is not None
    assert restored.steps_taken == 40
    expected = rdp.epsilon_for(noise_multiplier=1.1, sample_rate=0.01, steps=40, delta=1e-5)
    assert restored.get_epsilon(delta=1e-5) == pytest.approx(expected)


def test_restore_without_checkpoint_still_counts_logged_steps(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck")
    store.log_steps(noise_multiplier=2.0, sample_rate=0.1, num_steps=7)
    acc = accountants().get("rdp")()
    assert store.restore_accountant(acc) is None
    assert acc.steps_taken == 7


def test_restore_refuses_another_accountant(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "ck")
    rdp = accountants().get("rdp")()
    rdp.step(noise_multiplier=1.0, sample_rate=0.1, num_steps=1)
    store.save(step=1, accountant_state=rdp.state_dict())
    with pytest.raises(AccountingError, match="rdp"):
        store.restore_accountant(accountants().get("prv")())


def _training(ledger: PrivacyLedger, fingerprint: str) -> list[LedgerEntry]:
    """The training entries (not the released row count the fit charges first)."""
    return [e for e in ledger.entries(fingerprint) if e.mechanism.endswith("training")]


class _Crash(Exception):
    pass


#: The accountant the test stepper counts its steps with.
ACCOUNTANT = "rdp"


class _Stepper(Generator[GeneratorParams]):
    """Takes `steps` DP-SGD-accounted steps (no data needed), checkpointing every 5."""

    generator_id = "test-stepper"
    supports_checkpoints = True
    crash_at: int | None = None

    def _fit(self, table: Table, *, budget: PrivacyBudget | None, progress: Any) -> FitSummary:
        assert budget is not None and self.checkpoints is not None
        acc = accountants().get(ACCOUNTANT)()
        resumed = self.checkpoints.restore_accountant(acc)
        while acc.steps_taken < 20:
            self.checkpoints.log_steps(noise_multiplier=5.0, sample_rate=0.1, num_steps=5)
            if self.crash_at is not None and acc.steps_taken >= self.crash_at:
                raise _Crash
            acc.step(noise_multiplier=5.0, sample_rate=0.1, num_steps=5)
            self.checkpoints.save(step=acc.steps_taken, accountant_state=acc.state_dict())
        return FitSummary(
            private=True,
            epsilon=acc.get_epsilon(delta=budget.delta),
            delta=budget.delta,
            accountant_id=ACCOUNTANT,
            steps=acc.steps_taken,
            extra={"resumed": resumed is not None},
        )

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        raise NotImplementedError

    def _save_state(self, directory: Path) -> None:
        pass

    def _load_state(self, directory: Path) -> None:
        pass


def test_fit_resumes_under_the_interrupted_reservation(
    adult_small: Table,
    ledger: PrivacyLedger,
    tmp_path: Path,
) -> None:
    fingerprint = adult_small.fingerprint()
    ledger.set_budget(fingerprint, epsilon=2.0, delta=1e-4)
    budget = PrivacyBudget(1.0, 1e-5)
    store = CheckpointStore(tmp_path / "ck")
    first = _Stepper()
    first.crash_at = 10
    with pytest.raises(_Crash):
        first.fit(adult_small, budget=budget, ledger=ledger, checkpoints=store)
    (reserved,) = _training(ledger, fingerprint)
    assert reserved.status == "reserved" and reserved.epsilon == 1.0

    summary = _Stepper().fit(adult_small, budget=budget, ledger=ledger, checkpoints=store)
    (settled,) = _training(ledger, fingerprint)  # reused, not reserved twice
    assert settled.entry_id == reserved.entry_id and settled.status == "spent"
    # 10 steps checkpointed + 5 logged-but-lost + 5 more = 20: the lost block counts.
    assert summary.steps == 20 and summary.extra["resumed"]
    assert settled.epsilon == pytest.approx(summary.epsilon)


def test_fit_with_a_settled_reservation_starts_afresh(
    adult_small: Table,
    ledger: PrivacyLedger,
    tmp_path: Path,
) -> None:
    ledger.set_budget(adult_small.fingerprint(), epsilon=3.0, delta=1e-4)
    store = CheckpointStore(tmp_path / "ck")
    budget = PrivacyBudget(1.0, 1e-5)
    _Stepper().fit(adult_small, budget=budget, ledger=ledger, checkpoints=store)
    again = _Stepper().fit(adult_small, budget=budget, ledger=ledger, checkpoints=store)
    assert again.steps == 20 and not again.extra["resumed"]
    assert [e.status for e in _training(ledger, adult_small.fingerprint())] == ["spent", "spent"]


def test_generator_without_checkpoint_support_ignores_the_store(
    adult_small: Table,
    ledger: PrivacyLedger,
    tmp_path: Path,
) -> None:
    from privsynth_core.registry import generators

    ledger.set_budget(adult_small.fingerprint(), epsilon=2.0, delta=1e-4)
    generator = generators().get("independent")()
    generator.fit(
        adult_small,
        budget=PrivacyBudget(0.5, 0.0),
        ledger=ledger,
        checkpoints=CheckpointStore(tmp_path / "ck"),
    )
    assert generator.checkpoints is None and not (tmp_path / "ck").exists()
