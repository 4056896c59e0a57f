"""The privacy ledger: one budget per dataset, every DP release of it recorded, never overspent.

Storage is SQLite in WAL mode (``$PRIVSYNTH_HOME/ledger.sqlite``, default ``~/.privsynth``), so the
budget survives restarts and is shared by the CLI, the flows and the UI, also across processes.

Composition rule: **basic sequential composition**. The spent privacy of a dataset is
``(sum of epsilons, sum of deltas)`` over its entries. It holds for any sequence of
(epsilon, delta)-DP mechanisms run on the same data, adaptively chosen or not (Dwork & Roth 2014,
Thm 3.16), so it stays sound when the entries come from different mechanisms and accountants
(DP quantiles for the domain, a noisy histogram, DP-SGD training accounted by RDP or PRV). It is
loose for many small entries (advanced composition or RDP composition would be tighter), which is
why a single training run is accounted as one entry by its own, tighter accountant first.

Every charge runs in one ``BEGIN IMMEDIATE`` transaction that reads the spent total, checks it
against the budget and inserts the entry, so two processes charging the same dataset at once are
serialised by SQLite's write lock and can never overspend together. A charge that would go over
raises :class:`~privsynth_core.errors.BudgetExceededError` and writes nothing.

Long mechanisms (training) **reserve** their whole target before touching the data and
**settle** to what they really spent afterwards: a process killed mid-training leaves the full
reservation counted, so the ledger always holds at least what was really spent.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .errors import BudgetError, BudgetExceededError, BudgetNotSetError, ConfigError

HOME_ENV = "PRIVSYNTH_HOME"
_REL_TOL = 1e-9  # float sums of epsilons may differ in the last bits

EntryStatus = Literal["spent", "reserved", "non-dp"]


def privsynth_home() -> Path:
    """The directory for privsynth's state (``$PRIVSYNTH_HOME``, default ``~/.privsynth``)."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".privsynth")


@dataclass(frozen=True)
class PrivacyBudget:
    """An (epsilon, delta) pair: a budget, a target, or an amount spent."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (self.epsilon >= 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"epsilon must be a finite number >= 0, got {self.epsilon}")
        if not 0 <= self.delta < 1:
            raise ConfigError(f"delta must be in [0, 1), got {self.delta}")

    def __str__(self) -> str:
        return f"(epsilon={self.epsilon:.4g}, delta={self.delta:.3g})"


@dataclass(frozen=True)
class LedgerEntry:
    """One mechanism run on one dataset."""

    entry_id: int
    fingerprint: str
    run_id: str
    mechanism: str
    epsilon: float
    delta: float
    status: EntryStatus
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""


@dataclass(frozen=True)
class DatasetBudget:
    """A dataset's budget, what has been spent of it, and what is left."""

    fingerprint: str
    label: str
    budget: PrivacyBudget
    spent: PrivacyBudget
    non_private_runs: int

    @property
    def remaining(self) -> PrivacyBudget:
        """Budget minus spent, floored at zero."""
        return PrivacyBudget(
            max(self.budget.epsilon - self.spent.epsilon, 0.0),
            max(self.budget.delta - self.spent.delta, 0.0),
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    fingerprint TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    run_id TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('spent', 'reserved', 'non-dp')),
    params TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_dataset ON entries (fingerprint);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class PrivacyLedger:
    """Persistent privacy bookkeeping for every dataset privsynth has touched.

    Args:
        path: the SQLite file; default ``$PRIVSYNTH_HOME/ledger.sqlite``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else privsynth_home() / "ledger.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement."""
        with self._connect() as conn:
            for attempt in range(50):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError:  # busy past the timeout: back off, try again
                    time.sleep(0.05 * (attempt + 1))
            else:
                raise BudgetError(f"the privacy ledger {self.path} stayed locked; try again")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- budgets --------------------------------------------------------------------------

    def set_budget(
        self, fingerprint: str, *, epsilon: float, delta: float, label: str = ""
    ) -> DatasetBudget:
        """Set (or change) a dataset's total budget.

        Raises:
            BudgetExceededError: the new budget is below what has already been spent.
        """
        budget = PrivacyBudget(epsilon, delta)
        with self._write() as conn:
            spent = self._spent(conn, fingerprint)
            if _over(spent.epsilon, budget.epsilon) or _over(spent.delta, budget.delta):
                raise BudgetExceededError(
                    f"cannot set the budget of dataset {fingerprint[:12]} to {budget}: "
                    f"{spent} has already been spent; a budget can only cover what is spent"
                )
            row = conn.execute(
                "SELECT label FROM budgets WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            label = label or (row[0] if row else "")
            conn.execute(
                "INSERT OR REPLACE INTO budgets VALUES (?, ?, ?, ?, ?)",
                (fingerprint, label, budget.epsilon, budget.delta, _now()),
            )
        return self.status(fingerprint)

    def has_budget(self, fingerprint: str) -> bool:
        """Whether a budget has been set for the dataset."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM budgets WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
        return row is not None

    def status(self, fingerprint: str) -> DatasetBudget:
        """Budget, spent and remaining for one dataset.

        Raises:
            BudgetNotSetError: no budget was ever set for it.
        """
        with self._connect() as conn:
            return self._status(conn, fingerprint)

    def datasets(self) -> list[DatasetBudget]:
        """Every dataset with a budget, in the order their budgets were set or changed."""
        with self._connect() as conn:
            rows = conn.execute("SELECT fingerprint FROM budgets ORDER BY updated_at").fetchall()
            return [self._status(conn, row[0]) for row in rows]

    # -- entries --------------------------------------------------------------------------

    def charge(
        self,
        fingerprint: str,
        *,
        mechanism: str,
        epsilon: float,
        delta: float,
        run_id: str,
        params: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record a DP mechanism that has run (or is about to run) on the dataset.

        Raises:
            BudgetNotSetError: the dataset has no budget.
            BudgetExceededError: the charge would exceed the budget; nothing is written.
        """
        return self._insert(fingerprint, mechanism, epsilon, delta, run_id, params, "spent")

    def reserve(
        self,
        fingerprint: str,
        *,
        mechanism: str,
        epsilon: float,
        delta: float,
        run_id: str,
        params: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Reserve a mechanism's whole target before it runs; :meth:`settle` it afterwards.

        A reservation counts as spent until settled, so a crash can only over-count.
        """
        return self._insert(fingerprint, mechanism, epsilon, delta, run_id, params, "reserved")

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
        with self._write() as conn:
            row = conn.execute(
                "SELECT epsilon, delta, status, params FROM entries WHERE entry_id = ?",
                (entry_id,),
            ).fetchone()
            if row is None or row[2] != "reserved":
                raise BudgetError(f"ledger entry {entry_id} is not an open reservation")
            if _over(spent.epsilon, row[0]) or _over(spent.delta, row[1]):
                raise BudgetError(
                    f"cannot settle entry {entry_id} at {spent}: only "
                    f"(epsilon={row[0]:.4g}, delta={row[1]:.3g}) was reserved"
                )
            merged = {**json.loads(row[3]), **dict(params or {})}
            conn.execute(
                "UPDATE entries SET epsilon = ?, delta = ?, status = 'spent', params = ? "
                "WHERE entry_id = ?",
                (spent.epsilon, spent.delta, json.dumps(merged, default=str), entry_id),
            )
        return self.entry(entry_id)

    def record_non_private(
        self,
        fingerprint: str,
        *,
        mechanism: str,
        run_id: str,
        params: Mapping[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record that a non-DP mechanism (e.g. the CTGAN baseline) ran on the dataset.

        It spends nothing because it is not a DP mechanism at all: its outputs carry no
        guarantee and must not be released. The entry keeps that fact visible in the history.
        """
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO entries (fingerprint, run_id, mechanism, epsilon, delta, status, "
                "params, created_at) VALUES (?, ?, ?, ?, ?, 'non-dp', ?, ?)",
                (fingerprint, run_id, mechanism, math.inf, 1.0,
                 json.dumps(dict(params or {}), default=str), _now()),
            )
            entry_id = cur.lastrowid
        assert entry_id is not None
        return self.entry(entry_id)

    def entry(self, entry_id: int) -> LedgerEntry:
        """One entry by id."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT entry_id, fingerprint, run_id, mechanism, epsilon, delta, status, params, "
                "created_at FROM entries WHERE entry_id = ?",
                (entry_id,),
            ).fetchone()
        if row is None:
            raise BudgetError(f"no ledger entry {entry_id}")
        return _entry(row)

    def entries(self, fingerprint: str) -> list[LedgerEntry]:
        """Every entry for the dataset, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT entry_id, fingerprint, run_id, mechanism, epsilon, delta, status, params, "
                "created_at FROM entries WHERE fingerprint = ? ORDER BY entry_id",
                (fingerprint,),
            ).fetchall()
        return [_entry(row) for row in rows]

    # -- internals ------------------------------------------------------------------------

    def _insert(
        self,
        fingerprint: str,
        mechanism: str,
        epsilon: float,
        delta: float,
        run_id: str,
        params: Mapping[str, Any] | None,
        status: EntryStatus,
    ) -> LedgerEntry:
        amount = PrivacyBudget(epsilon, delta)
        with self._write() as conn:
            current = self._status(conn, fingerprint)
            after_eps = current.spent.epsilon + amount.epsilon
            after_delta = current.spent.delta + amount.delta
            if _over(after_eps, current.budget.epsilon) or _over(
                after_delta, current.budget.delta
            ):
                raise BudgetExceededError(
                    f"{mechanism} would spend {amount} on dataset "
                    f"{current.label or fingerprint[:12]}, but only {current.remaining} of its "
                    f"budget {current.budget} is left; nothing was charged. Lower epsilon/delta, "
                    f"or raise the budget with `privsynth budget set` if the data custodian agrees"
                )
            cur = conn.execute(
                "INSERT INTO entries (fingerprint, run_id, mechanism, epsilon, delta, status, "
                "params, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (fingerprint, run_id, mechanism, amount.epsilon, amount.delta, status,
                 json.dumps(dict(params or {}), default=str), _now()),
            )
            entry_id = cur.lastrowid
        assert entry_id is not None
        return self.entry(entry_id)

    def _spent(self, conn: sqlite3.Connection, fingerprint: str) -> PrivacyBudget:
        row = conn.execute(
            "SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM entries "
            "WHERE fingerprint = ? AND status IN ('spent', 'reserved')",
            (fingerprint,),
        ).fetchone()
        return PrivacyBudget(float(row[0]), min(float(row[1]), 0.999999))

    def _status(self, conn: sqlite3.Connection, fingerprint: str) -> DatasetBudget:
        row = conn.execute(
            "SELECT label, epsilon, delta FROM budgets WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        if row is None:
            raise BudgetNotSetError(
                f"no privacy budget is set for dataset {fingerprint[:12]}; the data custodian "
                f"sets one with `privsynth budget set DATA --epsilon E --delta D`"
            )
        non_dp = conn.execute(
            "SELECT COUNT(*) FROM entries WHERE fingerprint = ? AND status = 'non-dp'",
            (fingerprint,),
        ).fetchone()[0]
        return DatasetBudget(
            fingerprint, row[0], PrivacyBudget(row[1], row[2]), self._spent(conn, fingerprint),
            int(non_dp),
        )


def _over(value: float, limit: float) -> bool:
    return value > limit * (1 + _REL_TOL) + 1e-15


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row[0], fingerprint=row[1], run_id=row[2], mechanism=row[3], epsilon=row[4],
        delta=row[5], status=row[6], params=json.loads(row[7]), created_at=row[8],
    )
