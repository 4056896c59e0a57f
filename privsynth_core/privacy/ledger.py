"""The privacy ledger: one budget per data source, every DP release of it recorded, never
overspent, never forgotten.

Storage is SQLite in WAL mode (``$PRIVSYNTH_HOME/ledger.sqlite``, default ``~/.privsynth``), so the
budget survives restarts and is shared by the CLI, the flows and the UI, also across processes.

**Budget keys.** A budget is kept per *data source*: a custodian-named source id
(``budget_key("nightly-claims", fp)`` -> ``"source:nightly-claims"``) groups the extracts of one
population, so a nightly extract with one more row composes with yesterday's instead of starting
from zero; each entry also records the content fingerprint of the ``extract`` it read. Without a
source id the key is the file's content fingerprint (:func:`budget_key`).

Composition rule: **basic sequential composition**. The spent privacy of a key is
``(sum of epsilons, sum of deltas)`` over its entries. It holds for any sequence of
(epsilon, delta)-DP mechanisms run on the same population, adaptively chosen or not (Dwork & Roth
2014, Thm 3.16), so it stays sound when the entries come from different mechanisms and accountants
(DP quantiles for the domain, a noisy histogram, DP-SGD training accounted by RDP or PRV). It is
loose for many small entries (advanced composition or RDP composition would be tighter), which is
why a single training run is accounted as one entry by its own, tighter accountant first.

Every charge runs in one ``BEGIN IMMEDIATE`` transaction that reads the spent total, checks it
against the budget and inserts the entry, so two processes charging the same key at once are
serialised by SQLite's write lock and can never overspend together. A charge that would go over
raises :class:`~privsynth_core.errors.BudgetExceededError` and writes nothing.

Long mechanisms (training) **reserve** their whole target before touching the data and
**settle** to what they really spent afterwards: a process killed mid-training leaves the full
reservation counted, so the ledger always holds at least what was really spent. Such a
reservation stays open until :meth:`PrivacyLedger.close_reservation` records it as spent in full,
with a note. A **non-DP** run (e.g. the CTGAN baseline) spends no epsilon, yet makes the key's real
loss unbounded: :attr:`DatasetBudget.unbounded` stays True until a custodian acknowledges it
(:meth:`PrivacyLedger.acknowledge_non_dp`).

**Integrity.** Every change also appends, in the same transaction, an event to a hash-chained,
append-only log (:mod:`~privsynth_core.privacy.ledger_log`); :meth:`PrivacyLedger.verify` replays
it and
reports a broken chain, a table that disagrees with it, or a tail cut off (seen against the marker
file next to the database). A ledger is verified when a process first opens it for writing, and
each append checks the link it extends. :meth:`PrivacyLedger.export` writes the log as a backup;
:meth:`PrivacyLedger.restore` rebuilds a lost ledger from one.

**Never silently anew.** A ledger that is missing, emptied or stripped of its tables where one
existed (its marker is there, or its folder holds privsynth state) is refused with
:class:`~privsynth_core.errors.LedgerMissingError` (:mod:`~privsynth_core.privacy.ledger_store`):
restore a
backup, or start a new ledger on purpose with :meth:`PrivacyLedger.start_new`, which says so in
the new ledger's first event.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import (
    BudgetError,
    BudgetExceededError,
    BudgetNotSetError,
    ConfigError,
    LedgerMissingError,
)
from . import ledger_log as log
from .ledger_backup import read_backup, restore, start_new, write_backup
from .ledger_store import LedgerStore, now
from .ledger_types import (
    SOURCE_PREFIX,
    DatasetBudget,
    EntryStatus,
    LedgerEntry,
    PrivacyBudget,
    budget_key,
    over_limit,
    short_key,
    shortfall,
)

HOME_ENV = "PRIVSYNTH_HOME"
_ENTRY_COLUMNS = (
    "entry_id, budget_key, run_id, mechanism, epsilon, delta, status, params, created_at, extract"
)

Event = log.Event

__all__ = [
    "HOME_ENV",
    "SOURCE_PREFIX",
    "DatasetBudget",
    "EntryStatus",
    "Event",
    "LedgerEntry",
    "PrivacyBudget",
    "PrivacyLedger",
    "budget_key",
    "privsynth_home",
    "short_key",
]


def privsynth_home() -> Path:
    """The directory for privsynth's state (``$PRIVSYNTH_HOME``, default ``~/.privsynth``)."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".privsynth")


class PrivacyLedger:
    """Persistent privacy bookkeeping for every data source privsynth has touched.

    Args:
        path: the SQLite file; default ``$PRIVSYNTH_HOME/ledger.sqlite``.
        read_only: open without creating, migrating or writing anything (for inspection, also of
            a ledger on a read-only file or folder); every change then raises.

    Raises:
        LedgerMissingError: the ledger is missing or empty where one existed.
        LedgerIntegrityError: (not read-only) it fails its integrity check; nothing is written.
        LedgerCorruptError, LedgerAccessError: the file is damaged, or cannot be used.
    """

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else privsynth_home() / "ledger.sqlite"
        self.read_only = read_only
        self._store = LedgerStore(self.path, read_only=read_only)

    @property
    def ledger_id(self) -> str:
        """The ledger's id, from its first event ("" while none was created)."""
        return self._store.ledger_id

    # -- budgets --------------------------------------------------------------------------

    def set_budget(
        self, key: str, *, epsilon: float, delta: float, label: str = ""
    ) -> DatasetBudget:
        """Set (or change) the total budget of a budget key (see :func:`budget_key`).

        Raises:
            BudgetExceededError: the new budget is below what has already been spent.
        """
        budget = PrivacyBudget(epsilon, delta)
        with self._store.write() as conn:
            spent = _spent(conn, key)
            if not spent.fits_within(budget):
                raise BudgetExceededError(
                    f"cannot set the budget of {short_key(key)} to {budget}: {spent} has "
                    f"already been spent; a budget can only cover what is spent"
                )
            row = conn.execute("SELECT label FROM budgets WHERE budget_key = ?", (key,)).fetchone()
            label = label or (row[0] if row else "")
            stamp = now()
            conn.execute(
                "INSERT OR REPLACE INTO budgets VALUES (?, ?, ?, ?, ?)",
                (key, label, budget.epsilon, budget.delta, stamp),
            )
            self._store.append(
                conn,
                "budget",
                {
                    "key": key,
                    "label": label,
                    "updated_at": stamp,
                    "epsilon": budget.epsilon,
                    "delta": budget.delta,
                },
            )
        return self.status(key)

    def has_budget(self, key: str) -> bool:
        """Whether a budget has been set for the key."""
        with self._store.connect() as conn:
            row = conn.execute("SELECT 1 FROM budgets WHERE budget_key = ?", (key,)).fetchone()
        return row is not None

    def status(self, key: str) -> DatasetBudget:
        """Budget, spent and remaining for one key.

        Raises:
            BudgetNotSetError: no budget was ever set for it.
        """
        with self._store.connect() as conn:
            return _status(conn, key)

    def datasets(self) -> list[DatasetBudget]:
        """Every key with a budget, in the order their budgets were set or changed."""
        with self._store.connect() as conn:
            rows = conn.execute("SELECT budget_key FROM budgets ORDER BY updated_at").fetchall()
            return [_status(conn, row[0]) for row in rows]

    # -- entries --------------------------------------------------------------------------

    def charge(
        self,
        key: str,
        *,
        mechanism: str,
        epsilon: float,
        delta: float,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        extract: str | None = None,
    ) -> LedgerEntry:
        """Record a DP mechanism that has run (or is about to run) on the key's data.

        Args:
            key: the budget key (:func:`budget_key`).
            extract: the content fingerprint of the data the mechanism read.

        Raises:
            BudgetNotSetError: the key has no budget.
            BudgetExceededError: the charge would exceed the budget; nothing is written.
        """
        return self._insert(
            key, mechanism, PrivacyBudget(epsilon, delta), run_id, params, "spent", extract
        )

    def reserve(
        self,
        key: str,
        *,
        mechanism: str,
        epsilon: float,
        delta: float,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        extract: str | None = None,
    ) -> LedgerEntry:
        """Reserve a mechanism's whole target before it runs; :meth:`settle` it afterwards.

        A reservation counts as spent until settled, so a crash can only over-count.
        """
        return self._insert(
            key, mechanism, PrivacyBudget(epsilon, delta), run_id, params, "reserved", extract
        )

    def settle(
        self,
        entry_id: int,
        *,
        epsilon: float,
        delta: float,
        params: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Turn a reservation into what was really spent (at most the reserved amount).

        Raises:
            BudgetError: the entry is not an open reservation, or the amount exceeds it.
        """
        spent = PrivacyBudget(epsilon, delta)
        with self._store.write() as conn:
            row = _open_reservation(conn, entry_id)
            # (the reserved row may be a non-DP run's infinite epsilon: compare the numbers)
            if over_limit(spent.epsilon, row[0]) or over_limit(spent.delta, row[1]):
                raise BudgetError(
                    f"cannot settle entry {entry_id} at {spent}: only "
                    f"(epsilon={row[0]:.4g}, delta={row[1]:.3g}) was reserved"
                )
            merged = _json({**json.loads(row[2]), **dict(params or {})})
            self._close(conn, "settle", entry_id, spent.epsilon, spent.delta, merged, {})
        return self.entry(entry_id)

    def open_reservations(self, key: str | None = None) -> list[LedgerEntry]:
        """Reservations never settled or closed (all keys, or one), oldest first."""
        where, args = ("AND budget_key = ?", (key,)) if key is not None else ("", ())
        with self._store.connect() as conn:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE status = "
                f"'reserved' {where} ORDER BY entry_id",
                args,
            ).fetchall()
        return [_entry(row) for row in rows]

    def close_reservation(self, entry_id: int, *, note: str, by: str = "") -> LedgerEntry:
        """Record a reservation left open (its process died) as spent at its full reserved
        amount: the only amount the ledger can vouch for. The note says why, as an event.

        Raises:
            ConfigError: the note is empty.
            BudgetError: the entry is not an open reservation.
        """
        note = _note(note)
        with self._store.write() as conn:
            row = _open_reservation(conn, entry_id)
            merged = _json({**json.loads(row[2]), "closed": {"note": note, "by": by}})
            self._close(conn, "close", entry_id, row[0], row[1], merged, {"note": note, "by": by})
        return self.entry(entry_id)

    def record_non_private(
        self,
        key: str,
        *,
        mechanism: str,
        run_id: str,
        params: Mapping[str, Any] | None = None,
        extract: str | None = None,
    ) -> LedgerEntry:
        """Record that a non-DP mechanism (e.g. the CTGAN baseline) ran on the key's data.

        It spends no epsilon because it is not a DP mechanism at all: its outputs carry no
        guarantee and must not be released, and the key stays :attr:`DatasetBudget.unbounded`
        until :meth:`acknowledge_non_dp`. The entry keeps that fact visible in the history.
        """
        return self._insert(key, mechanism, None, run_id, params, "non-dp", extract)

    def acknowledge_non_dp(self, key: str, *, note: str, by: str = "") -> int:
        """Record that a custodian has seen the key's non-DP runs so far (why, in the note).

        Returns:
            How many non-DP runs this acknowledged.

        Raises:
            ConfigError: the note is empty.
            BudgetError: no unacknowledged non-DP run exists for the key.
        """
        note = _note(note)
        with self._store.write() as conn:
            count, up_to = conn.execute(
                "SELECT COUNT(*), MAX(entry_id) FROM entries WHERE budget_key = ? AND status = "
                "'non-dp' AND entry_id > ?",
                (key, _acknowledged(conn, key)),
            ).fetchone()
            if not count:
                raise BudgetError(
                    f"{short_key(key)} has no unacknowledged non-DP run; nothing to acknowledge"
                )
            stamp = now()
            cur = conn.execute(
                "INSERT INTO acknowledgements (budget_key, up_to_entry, note, "
                "acknowledged_by, created_at) VALUES (?, ?, ?, ?, ?)",
                (key, up_to, note, by, stamp),
            )
            self._store.append(
                conn,
                "acknowledge",
                {
                    "ack_id": cur.lastrowid,
                    "key": key,
                    "up_to_entry": up_to,
                    "note": note,
                    "by": by,
                    "created_at": stamp,
                },
            )
        return int(count)

    def entry(self, entry_id: int) -> LedgerEntry:
        """One entry by id."""
        with self._store.connect() as conn:
            row = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE entry_id = ?", (entry_id,)
            ).fetchone()
        if row is None:
            raise BudgetError(f"no ledger entry {entry_id}")
        return _entry(row)

    def entries(self, key: str) -> list[LedgerEntry]:
        """Every entry for the key, oldest first."""
        with self._store.connect() as conn:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE budget_key = ? ORDER BY entry_id",
                (key,),
            ).fetchall()
        return [_entry(row) for row in rows]

    # -- integrity and backups ------------------------------------------------------------

    def events(self) -> list[Event]:
        """The event log, oldest first."""
        with self._store.connect() as conn:
            return log.read_events(conn)

    def verify(self) -> list[str]:
        """Every integrity problem in words; an empty list means the ledger is intact.

        Checks the hash chain, that replaying the events gives exactly the ``budgets``,
        ``entries`` and ``acknowledgements`` tables, and that the log is not shorter than (or
        different from) what the marker next to the database recorded.
        """
        return self._store.verify()

    def export(self, path: str | Path) -> Path:
        """Write a self-contained backup (every event; the tables are rebuilt from them),
        atomically.

        Raises:
            LedgerMissingError: there is no ledger yet.
            LedgerIntegrityError: the hash chain is broken (such a backup could not be restored).
            LedgerAccessError: ``path`` cannot be written.
        """
        if not self._store.exists:
            raise LedgerMissingError(
                f"there is no privacy ledger at {self.path} yet; nothing to export"
            )
        return write_backup(Path(path), self.events(), where=self.path)

    @classmethod
    def restore(
        cls, ledger_path: str | Path | None, backup_path: str | Path, *, accept_loss: bool = False
    ) -> PrivacyLedger:
        """Rebuild a ledger from a backup written by :meth:`export`, after verifying its chain.

        Only a missing or empty ledger is restored into (what is left of it is renamed aside,
        never deleted); the restore itself is recorded as an event.

        Args:
            ledger_path: the ledger to rebuild (None: the default one).
            backup_path: the backup file.
            accept_loss: restore even when the marker shows the lost ledger had recorded more
                than the backup holds (that spending is then forgotten; the event says so).

        Raises:
            InputFileError: the backup is missing or not a ledger backup.
            LedgerIntegrityError: the backup fails verification.
            BudgetError: a ledger is present, or the backup is older than the lost ledger.
        """
        path = Path(ledger_path) if ledger_path is not None else privsynth_home() / "ledger.sqlite"
        restore(
            path, read_backup(Path(backup_path)), backup=str(backup_path), accept_loss=accept_loss
        )
        return cls(path)

    @classmethod
    def start_new(cls, path: str | Path | None = None, *, note: str, by: str = "") -> PrivacyLedger:
        """Start a new, empty ledger where the old one is lost, on purpose: its first event
        records the note, who, and the lost ledger's id and length (from its marker).

        Raises:
            ConfigError: the note is empty.
            BudgetError: a ledger is present there.
        """
        target = Path(path) if path is not None else privsynth_home() / "ledger.sqlite"
        start_new(target, note=_note(note), by=by)
        return cls(target)

    # -- internals ------------------------------------------------------------------------

    def _insert(
        self,
        key: str,
        mechanism: str,
        amount: PrivacyBudget | None,
        run_id: str,
        params: Mapping[str, Any] | None,
        status: EntryStatus,
        extract: str | None,
    ) -> LedgerEntry:
        # A non-DP run has no amount: it is recorded with epsilon=inf, and never checked.
        epsilon, delta = (amount.epsilon, amount.delta) if amount else (math.inf, 1.0)
        params_text = _json(dict(params or {}))
        with self._store.write() as conn:
            if amount is not None:
                current = _status(conn, key)
                after = PrivacyBudget(current.spent.epsilon + epsilon, current.spent.delta + delta)
                if not after.fits_within(current.budget):
                    raise BudgetExceededError(
                        f"{mechanism} would spend {amount} on {current.label or short_key(key)}, "
                        f"but only {current.remaining} of its budget {current.budget} is left; "
                        f"nothing was charged. {shortfall(amount, current.remaining)}"
                    )
            stamp = now()
            cur = conn.execute(
                "INSERT INTO entries (budget_key, run_id, mechanism, epsilon, delta, status, "
                "params, created_at, extract) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, run_id, mechanism, epsilon, delta, status, params_text, stamp, extract),
            )
            entry_id = cur.lastrowid
            self._store.append(
                conn,
                "entry",
                {
                    "entry_id": entry_id,
                    "key": key,
                    "run_id": run_id,
                    "mechanism": mechanism,
                    "epsilon": epsilon,
                    "delta": delta,
                    "status": status,
                    "params": json.loads(params_text),
                    "created_at": stamp,
                    "extract": extract,
                },
            )
        assert entry_id is not None
        return self.entry(entry_id)

    def _close(
        self,
        conn: sqlite3.Connection,
        kind: str,
        entry_id: int,
        epsilon: float,
        delta: float,
        params_text: str,
        extra: dict[str, Any],
    ) -> None:
        conn.execute(
            "UPDATE entries SET epsilon = ?, delta = ?, status = 'spent', params = ? "
            "WHERE entry_id = ?",
            (epsilon, delta, params_text, entry_id),
        )
        self._store.append(
            conn,
            kind,
            {
                "entry_id": entry_id,
                "epsilon": epsilon,
                "delta": delta,
                "params": json.loads(params_text),
                **extra,
            },
        )


def _json(params: dict[str, Any]) -> str:
    return json.dumps(params, default=str)


def _note(note: str) -> str:
    if not note.strip():
        raise ConfigError("a note is required: say why, for whoever reads the ledger later")
    return note.strip()


def _open_reservation(conn: sqlite3.Connection, entry_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT epsilon, delta, params, status FROM entries WHERE entry_id = ?", (entry_id,)
    ).fetchone()
    if row is None or row[3] != "reserved":
        raise BudgetError(
            f"ledger entry {entry_id} is not an open reservation; `privsynth "
            f"budget reservations` lists the open ones"
        )
    return tuple(row)


def _acknowledged(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute(
        "SELECT MAX(up_to_entry) FROM acknowledgements WHERE budget_key = ?", (key,)
    ).fetchone()
    return int(row[0] or 0)


def _spent(conn: sqlite3.Connection, key: str) -> PrivacyBudget:
    row = conn.execute(
        "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM entries "
        "WHERE budget_key = ? AND status IN ('spent', 'reserved')",
        (key,),
    ).fetchone()
    return PrivacyBudget(float(row[0]), min(float(row[1]), 0.999999))


def _status(conn: sqlite3.Connection, key: str) -> DatasetBudget:
    row = conn.execute(
        "SELECT label, epsilon, delta FROM budgets WHERE budget_key = ?", (key,)
    ).fetchone()
    if row is None:
        how = f"--source {key[len(SOURCE_PREFIX) :]}" if key.startswith(SOURCE_PREFIX) else "DATA"
        raise BudgetNotSetError(
            f"no privacy budget is set for {short_key(key)}; the data custodian sets one with "
            f"`privsynth budget set {how} --epsilon E --delta D`"
        )
    non_dp, unacknowledged = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(entry_id > ?), 0) FROM entries WHERE budget_key = ? "
        "AND status = 'non-dp'",
        (_acknowledged(conn, key), key),
    ).fetchone()
    return DatasetBudget(
        key,
        row[0],
        PrivacyBudget(row[1], row[2]),
        _spent(conn, key),
        int(non_dp),
        int(unacknowledged),
    )


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row[0],
        key=row[1],
        run_id=row[2],
        mechanism=row[3],
        epsilon=row[4],
        delta=row[5],
        status=row[6],
        params=json.loads(row[7]),
        created_at=row[8],
        extract=row[9],
    )
