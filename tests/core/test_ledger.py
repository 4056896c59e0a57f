"""The privacy ledger: composition, refusals that write nothing, reservations, real concurrent
processes that can never overspend together; a ledger that never silently starts over, detects
tampering, restores from its backups; sources, open reservations and non-DP acknowledgements."""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from privsynth_core import (
    BudgetExceededError,
    BudgetNotSetError,
    ConfigError,
    LedgerAccessError,
    LedgerCorruptError,
    LedgerIntegrityError,
    LedgerMissingError,
    PrivacyLedger,
)
from privsynth_core.errors import BudgetError
from privsynth_core.privacy.ledger import PrivacyBudget, budget_key

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
    assert ledger.verify() == [] and len(ledger.events()) == 52  # init, budget, 50 entries


# -- a ledger never silently starts over -----------------------------------------------------


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _ledger_with_spending(path: Path) -> PrivacyLedger:
    ledger = PrivacyLedger(path)
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5, label="toy")
    ledger.charge(FP, mechanism="m1", epsilon=0.25, delta=0.0, run_id="r1")
    ledger.charge(FP, mechanism="m2", epsilon=0.25, delta=1e-6, run_id="r2")
    return ledger


@pytest.mark.parametrize("loss", ["deleted", "emptied", "tables dropped"])
def test_ledger_lost_is_refused_not_recreated(tmp_path: Path, loss: str) -> None:
    path = tmp_path / "home" / "ledger.sqlite"
    _ledger_with_spending(path)
    if loss == "deleted":  # the usual "reset"; the hidden marker survives it
        for leftover in path.parent.glob("ledger.sqlite*"):
            leftover.unlink()
    elif loss == "emptied":
        _remove_db(path)
        path.write_bytes(b"")
    else:
        conn = sqlite3.connect(path)
        for table in ("budgets", "entries", "acknowledgements", "events"):
            conn.execute(f"DROP TABLE {table}")
        conn.commit()
        conn.close()
    size = path.stat().st_size if path.exists() else None
    for read_only in (False, True):
        with pytest.raises(LedgerMissingError, match=r"privsynth budget import BACKUP"):
            PrivacyLedger(path, read_only=read_only)
    assert (path.stat().st_size if path.exists() else None) == size  # nothing was created


def test_a_home_that_held_state_refuses_a_missing_ledger(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "runs" / "run-1").mkdir(parents=True)
    with pytest.raises(LedgerMissingError, match=r"runs/"):
        PrivacyLedger(home / "ledger.sqlite")
    assert not (home / "ledger.sqlite").exists()
    (tmp_path / "fresh" / "runs").mkdir(parents=True)  # empty: the web app makes one up front
    PrivacyLedger(tmp_path / "fresh" / "ledger.sqlite").set_budget(FP, epsilon=1, delta=0)


def test_a_partly_truncated_ledger_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    for i in range(20):  # a file of many pages
        ledger.record_non_private(
            FP, mechanism=f"baseline {i}", run_id="r", params={"blob": "x" * 4000}
        )
    assert not path.with_name(path.name + "-wal").exists()  # merged when the last one closed
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    with pytest.raises(LedgerCorruptError, match="privsynth budget import") as caught:
        PrivacyLedger(path)
    assert not isinstance(caught.value, sqlite3.Error)


def test_start_new_is_explicit_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    old_id = _ledger_with_spending(path).ledger_id
    with pytest.raises(BudgetError, match="is present"):
        PrivacyLedger.start_new(path, note="oops")
    _remove_db(path)
    with pytest.raises(ConfigError, match="note"):
        PrivacyLedger.start_new(path, note="  ")
    ledger = PrivacyLedger.start_new(path, note="disk died, no backup", by="custodian")
    genesis = ledger.events()[0].data()
    assert genesis["reason"] == "new-ledger" and genesis["note"] == "disk died, no backup"
    assert genesis["previous"]["ledger_id"] == old_id and genesis["previous"]["events"] == 4
    assert ledger.ledger_id != old_id and ledger.verify() == []
    assert not ledger.has_budget(FP)


def test_a_read_only_ledger_never_creates_or_writes(tmp_path: Path) -> None:
    fresh = PrivacyLedger(tmp_path / "fresh" / "ledger.sqlite", read_only=True)
    assert fresh.datasets() == [] and fresh.verify() == []
    assert not (tmp_path / "fresh").exists()
    path = tmp_path / "l.sqlite"
    _ledger_with_spending(path)
    reader = PrivacyLedger(path, read_only=True)
    assert reader.status(FP).spent.epsilon == pytest.approx(0.5)
    with pytest.raises(LedgerAccessError, match="read-only"):
        reader.charge(FP, mechanism="m", epsilon=0.1, delta=0.0, run_id="r")


_LEGACY_SCHEMA = """
CREATE TABLE budgets (fingerprint TEXT PRIMARY KEY, label TEXT NOT NULL, epsilon REAL NOT NULL,
    delta REAL NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE entries (entry_id INTEGER PRIMARY KEY AUTOINCREMENT, fingerprint TEXT NOT NULL,
    run_id TEXT NOT NULL, mechanism TEXT NOT NULL, epsilon REAL NOT NULL, delta REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('spent', 'reserved', 'non-dp')), params TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX entries_by_dataset ON entries (fingerprint);
"""


def test_an_old_ledger_is_migrated_with_genesis_events(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_LEGACY_SCHEMA)
    conn.execute(
        "INSERT INTO budgets VALUES (?, 'old', 2.0, 1e-5, '2026-01-01T00:00:00+00:00')", (FP,)
    )
    conn.executemany(
        "INSERT INTO entries VALUES (?, ?, 'r', ?, ?, ?, ?, ?, ?)",
        [
            (1, FP, "old mechanism", 0.5, 0.0, "spent", '{"a": 1}', "2026-01-02T00:00:00+00:00"),
            (2, FP, "old training", 0.75, 1e-6, "reserved", "{}", "2026-01-03T00:00:00+00:00"),
        ],
    )
    conn.commit()
    conn.close()
    reader = PrivacyLedger(path, read_only=True)  # reads a migrated copy, leaves the file be
    assert reader.status(FP).spent.epsilon == pytest.approx(1.25) and reader.verify() == []
    conn = sqlite3.connect(path)
    assert "fingerprint" in {r[1] for r in conn.execute("PRAGMA table_info(entries)")}
    conn.close()
    ledger = PrivacyLedger(path)
    assert [e.kind for e in ledger.events()] == ["init", "budget", "entry", "entry"]
    assert ledger.events()[0].data()["reason"] == "migrated"
    assert ledger.status(FP).spent.epsilon == pytest.approx(1.25)
    assert [e.entry_id for e in ledger.open_reservations(FP)] == [2]
    ledger.settle(2, epsilon=0.5, delta=1e-6)
    assert ledger.entries(FP)[0].params == {"a": 1} and ledger.verify() == []


# -- integrity -------------------------------------------------------------------------------


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS events_append_only_delete")
    conn.execute("DROP TRIGGER IF EXISTS events_append_only_update")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_every_change_is_an_event_and_the_ledger_verifies(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    entry = ledger.reserve(FP, mechanism="train", epsilon=0.5, delta=1e-6, run_id="r")
    ledger.settle(entry.entry_id, epsilon=0.4, delta=1e-6)
    ledger.record_non_private(FP, mechanism="ctgan", run_id="r2")
    ledger.acknowledge_non_dp(FP, note="baseline for the paper")
    events = ledger.events()
    assert [e.kind for e in events] == ["init", "budget", "entry", "settle", "entry", "acknowledge"]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert ledger.verify() == []
    marker = json.loads((ledger.path.parent / ".ledger.sqlite.marker").read_text())
    assert marker["events"] == len(events) and marker["head"] == events[-1].hash


def test_an_edited_epsilon_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    _tamper(path, "UPDATE entries SET epsilon = 0.01 WHERE entry_id = 1")
    assert ledger.verify() == ["entry 1: epsilon is 0.01 in the tables but 0.25 by the events"]
    assert ledger.status(FP).spent.epsilon == pytest.approx(0.26)  # what the tables now say


def test_a_deleted_entry_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    _tamper(path, "DELETE FROM entries WHERE entry_id = 2")
    assert ledger.verify() == ["entry 2 is recorded by the events but missing from the tables"]


def test_a_deleted_event_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    _tamper(path, "DELETE FROM events WHERE seq = 3")
    problems = ledger.verify()
    assert "event 3 is missing (found event 4 instead)" in problems
    assert "entry 1 is in the tables but no event records it" in problems


def test_a_cut_off_tail_is_detected_by_the_marker(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    _tamper(path, "DELETE FROM events WHERE seq = 4", "DELETE FROM entries WHERE entry_id = 2")
    assert ledger.verify() == [
        "the event log ends at event 3 but the marker recorded 4 events: "
        "events were removed from its end"
    ]
    with pytest.raises(LedgerIntegrityError, match="nothing was written"):
        ledger.charge(FP, mechanism="m3", epsilon=0.1, delta=0.0, run_id="r3")
    assert len(ledger.entries(FP)) == 1


def test_each_append_checks_the_link_it_extends(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    _tamper(
        path,
        "UPDATE events SET payload = replace(payload, '1e-06', '0.0') WHERE seq = 4",
        "UPDATE entries SET delta = 0.0 WHERE entry_id = 2",
    )
    with pytest.raises(LedgerIntegrityError, match="event 4 does not match its hash"):
        ledger.charge(FP, mechanism="m3", epsilon=0.1, delta=0.0, run_id="r3")
    assert len(ledger.events()) == 4
    assert ledger.verify() == ["event 4 (entry) does not match its hash"]


def test_a_tampered_ledger_is_refused_when_a_process_opens_it(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    _ledger_with_spending(path)
    _tamper(path, "UPDATE entries SET epsilon = 0.01 WHERE entry_id = 1")
    code = (
        "import sys; from privsynth_core import PrivacyLedger, LedgerIntegrityError\n"
        "try:\n    PrivacyLedger(sys.argv[1])\n"
        "except LedgerIntegrityError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "fails its integrity check (entry 1: epsilon is 0.01" in out


# -- backups ---------------------------------------------------------------------------------


def _snapshot(ledger: PrivacyLedger) -> tuple[Any, ...]:
    return (ledger.ledger_id, ledger.datasets(), ledger.entries(FP))


def test_export_delete_import_gives_the_same_ledger(tmp_path: Path) -> None:
    path = tmp_path / "home" / "ledger.sqlite"
    ledger = _ledger_with_spending(path)
    ledger.reserve(FP, mechanism="train", epsilon=0.2, delta=0.0, run_id="r3")
    ledger.record_non_private(FP, mechanism="ctgan", run_id="r4")
    before = _snapshot(ledger)
    backup = ledger.export(tmp_path / "backup.json")
    with pytest.raises(BudgetError, match="is present"):
        PrivacyLedger.restore(path, backup)
    _remove_db(path)
    restored = PrivacyLedger.restore(path, backup)
    assert _snapshot(restored) == before and restored.verify() == []
    assert restored.events()[-1].kind == "restore"
    assert [e.entry_id for e in restored.open_reservations()] == [3]
    restored.charge(FP, mechanism="after", epsilon=0.1, delta=0.0, run_id="r5")
    assert restored.entries(FP)[-1].entry_id == 5 and restored.verify() == []


def test_an_older_backup_needs_the_loss_accepted(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = _ledger_with_spending(path)
    backup = ledger.export(tmp_path / "backup.json")
    ledger.charge(FP, mechanism="after the backup", epsilon=0.3, delta=0.0, run_id="r3")
    _remove_db(path)
    with pytest.raises(BudgetError, match="forgets what was spent after it"):
        PrivacyLedger.restore(path, backup)
    restored = PrivacyLedger.restore(path, backup, accept_loss=True)
    assert restored.status(FP).spent.epsilon == pytest.approx(0.5)
    assert restored.events()[-1].data()["lost"] == 1 and restored.verify() == []


def test_a_tampered_backup_is_not_restored(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    backup = _ledger_with_spending(path).export(tmp_path / "backup.json")
    data = json.loads(backup.read_text())
    data["events"][2]["payload"] = data["events"][2]["payload"].replace("0.25", "0.01")
    backup.write_text(json.dumps(data))
    _remove_db(path)
    with pytest.raises(LedgerIntegrityError, match="event 3 .* does not match its hash"):
        PrivacyLedger.restore(path, backup)
    assert not path.exists()


# -- reservations, non-DP runs, sources ------------------------------------------------------


def test_closing_an_open_reservation_spends_it_in_full(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    entry = ledger.reserve(FP, mechanism="train", epsilon=0.6, delta=1e-6, run_id="killed")
    assert ledger.open_reservations() == [entry] and ledger.open_reservations("b" * 64) == []
    closed = ledger.close_reservation(entry.entry_id, note="process was killed", by="ops")
    assert closed.status == "spent" and closed.epsilon == 0.6 and closed.delta == 1e-6
    assert closed.params["closed"] == {"note": "process was killed", "by": "ops"}
    assert ledger.open_reservations() == []
    assert ledger.events()[-1].kind == "close" and ledger.verify() == []
    with pytest.raises(BudgetError, match="not an open reservation"):
        ledger.close_reservation(entry.entry_id, note="again")


def test_a_non_dp_run_is_unbounded_until_acknowledged(ledger: PrivacyLedger) -> None:
    ledger.set_budget(FP, epsilon=1.0, delta=1e-5)
    assert not ledger.status(FP).unbounded
    with pytest.raises(BudgetError, match="nothing to acknowledge"):
        ledger.acknowledge_non_dp(FP, note="nothing")
    ledger.record_non_private(FP, mechanism="ctgan", run_id="r1")
    ledger.record_non_private(FP, mechanism="ctgan", run_id="r2")
    assert ledger.status(FP).unbounded and ledger.status(FP).unacknowledged_non_dp == 2
    with pytest.raises(ConfigError, match="note"):
        ledger.acknowledge_non_dp(FP, note="")
    assert ledger.acknowledge_non_dp(FP, note="baselines, never released", by="c") == 2
    assert not ledger.status(FP).unbounded
    ledger.record_non_private(FP, mechanism="ctgan", run_id="r3")
    assert ledger.status(FP).unacknowledged_non_dp == 1 and ledger.verify() == []


def test_budget_keys_keep_sources_and_fingerprints_apart() -> None:
    assert budget_key(None, FP) == FP
    assert budget_key("claims-2026.v1_a", FP) == "source:claims-2026.v1_a"
    for bad in ("", "a b", "x/y", "s" * 65, "ü"):
        with pytest.raises(ConfigError, match="source id"):
            budget_key(bad, FP)
    with pytest.raises(ConfigError):
        budget_key(None, "source:claims")


def test_extracts_of_one_source_compose_and_sources_stay_apart(ledger: PrivacyLedger) -> None:
    claims, visits = budget_key("claims", "x"), budget_key("visits", "x")
    ledger.set_budget(claims, epsilon=1.0, delta=1e-5, label="claims")
    ledger.set_budget(visits, epsilon=1.0, delta=1e-5)
    monday, tuesday = "1" * 64, "2" * 64  # two extracts: Tuesday's has one more row
    ledger.charge(claims, mechanism="m", epsilon=0.6, delta=0.0, run_id="mon", extract=monday)
    with pytest.raises(BudgetExceededError):
        ledger.charge(claims, mechanism="m", epsilon=0.6, delta=0.0, run_id="tue", extract=tuesday)
    ledger.charge(claims, mechanism="m", epsilon=0.4, delta=0.0, run_id="tue", extract=tuesday)
    ledger.charge(visits, mechanism="m", epsilon=0.6, delta=0.0, run_id="mon", extract=monday)
    assert ledger.status(claims).spent.epsilon == pytest.approx(1.0)
    assert ledger.status(visits).spent.epsilon == pytest.approx(0.6)
    assert [e.extract for e in ledger.entries(claims)] == [monday, tuesday]
    assert ledger.status(claims).source == "claims" and ledger.verify() == []
    with pytest.raises(BudgetNotSetError, match="--source other"):
        ledger.status(budget_key("other", "x"))


def test_one_fit_rule_absorbs_float_rounding_and_nothing_more() -> None:
    left = PrivacyBudget(0.3, 1e-5)
    # 0.1 + 0.2 is 0.30000000000000004: a plan that adds up to what is left fits.
    assert PrivacyBudget(0.1 + 0.2, 1e-5).fits_within(left)
    assert not PrivacyBudget(0.3 * (1 + 1e-6), 1e-5).fits_within(left)
    assert not PrivacyBudget(0.3, 1.1e-5).fits_within(left)
    assert PrivacyBudget(0.0, 0.0).fits_within(PrivacyBudget(0.0, 0.0))
