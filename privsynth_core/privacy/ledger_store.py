"""Opening the privacy ledger's SQLite file: never silently anew, never a raw sqlite3 error.

A ledger path is *missing* when the file does not exist, is empty, or holds no privsynth tables.
A missing ledger is created only where no ledger can have been before: no marker next to it
(:mod:`~privsynth_core.privacy.ledger_log`) and no privsynth state (``cache/``, ``models/``,
``runs/``,
``workspaces/`` with something in them) in its folder. Anywhere else it is refused with
:class:`~privsynth_core.errors.LedgerMissingError`, because a ledger that started over would let
every dataset spend its whole budget again. Starting over on purpose (:func:`start_new`) and
restoring a backup (:func:`restore`) are explicit, and each is recorded as an event.

Every ``sqlite3`` error is turned into a :class:`~privsynth_core.errors.BudgetError` subclass
with a message that says what to do (:func:`sqlite_error`).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import (
    BudgetError,
    LedgerAccessError,
    LedgerCorruptError,
    LedgerIntegrityError,
    LedgerMissingError,
)
from . import ledger_log as log

STATE_DIRS = ("cache", "models", "runs", "workspaces")
HOME_HINT = "set PRIVSYNTH_HOME to a writable folder"
_VERIFIED: set[str] = set()  # ledgers (resolved paths) fully verified by this process


def now() -> str:
    """The current UTC time, as the ledger writes it."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def missing_error(path: Path, why: str) -> LedgerMissingError:
    """The refusal to start a lost ledger over, with the ways out."""
    return LedgerMissingError(
        f"the privacy ledger {path} is missing or empty, but {why}; restore the last backup with "
        f"`privsynth budget import BACKUP` (if no backup exists, `privsynth budget init "
        f"--new-ledger --note WHY` starts a new ledger on purpose and forgets what was spent)"
    )


def sqlite_error(exc: sqlite3.Error, path: Path) -> BudgetError:
    """The privsynth error for a sqlite3 error on the ledger at ``path``."""
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return LedgerCorruptError(
            f"the privacy ledger {path} is damaged ({exc}); move it aside and restore the last "
            f"backup with `privsynth budget import BACKUP`"
        )
    if "locked" in text or "busy" in text:
        return BudgetError(f"the privacy ledger {path} stayed locked by another process; try again")
    if ("unable to open" in text or "no such table" in text) and not _present_quietly(path):
        return missing_error(path, "it was removed or emptied while privsynth was using it")
    if any(word in text for word in ("readonly", "unable to open", "permission", "access")):
        return LedgerAccessError(
            f"cannot use the privacy ledger {path} ({exc}); make it and its folder readable and "
            f"writable, or {HOME_HINT}"
        )
    return BudgetError(f"the privacy ledger {path} failed ({exc}); run `privsynth budget verify`")


def _present_quietly(path: Path) -> bool:
    try:
        return present(path)
    except BudgetError:
        return True  # it is there, just not readable: not a missing ledger


def connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection that never creates or writes the database.

    A WAL database in a read-only folder cannot get its shared-memory index, so the plain
    ``mode=ro`` fails there; ``immutable=1`` then reads the file as it is, which is exact as long
    as no un-merged ``-wal`` file is beside it (SQLite merges it when the last writer closes).
    """
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(
        uri + "?mode=ro", uri=True, timeout=60, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise LedgerAccessError(
            f"cannot read the privacy ledger {path} read-only: it has changes in {wal.name} that "
            f"only a writable folder can merge; open it once with write access"
        )
    return sqlite3.connect(
        uri + "?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False
    )


def tables(conn: sqlite3.Connection) -> set[str]:
    """The names of the tables in a database."""
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def present(path: Path) -> bool:
    """Whether ``path`` holds a ledger (a non-empty file with the privsynth tables).

    Raises:
        LedgerCorruptError, LedgerAccessError: the file is there but cannot be read.
    """
    try:
        if path.stat().st_size == 0:
            return False
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise LedgerAccessError(
            f"cannot read the privacy ledger {path} ({exc.strerror}); "
            f"make it readable, or {HOME_HINT}"
        ) from exc
    try:
        conn = connect_ro(path)
        try:
            return {"budgets", "entries"} <= tables(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path) from exc


def history(path: Path) -> str | None:
    """Why a ledger must have existed at ``path`` (None: a first use, creating one is fine).

    A state folder counts only when something is in it: the web app creates an empty ``runs/``
    for a user before it first opens that user's ledger.
    """
    if log.read_marker(path) is not None:
        return f"its marker {log.marker_path(path).name} shows that a ledger existed here"
    held = [name + "/" for name in STATE_DIRS if _holds_something(path.parent / name)]
    if held:
        return f"its folder holds privsynth state ({', '.join(held)})"
    return None


def _holds_something(folder: Path) -> bool:
    try:
        return folder.is_dir() and any(folder.iterdir())
    except OSError:  # there, but unreadable: count it, a refusal is the safe side
        return True


def _current(conn: sqlite3.Connection) -> bool:
    columns = {r[1] for r in conn.execute("PRAGMA table_info(entries)")}
    return "events" in tables(conn) and {"budget_key", "extract"} <= columns


def migrate(conn: sqlite3.Connection, where: Path) -> None:
    """Bring a ledger to the current schema inside the caller's transaction (idempotent).

    A ledger from before the event log gets one: a genesis event, then one event per budget and
    per entry exactly as they are, so from here on every change is chained to that state.
    """
    if _current(conn):
        return
    for table in ("budgets", "entries"):
        if "fingerprint" in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} RENAME COLUMN fingerprint TO budget_key")
    if "extract" not in {r[1] for r in conn.execute("PRAGMA table_info(entries)")}:
        conn.execute("ALTER TABLE entries ADD COLUMN extract TEXT")
    had_events = "events" in tables(conn)
    for statement in log.TABLE_STATEMENTS:
        conn.execute(statement)
    if had_events:
        return
    stamp = now()
    log.append(
        conn,
        "init",
        {
            "ledger_id": uuid.uuid4().hex,
            "reason": "migrated",
            "by": "",
            "note": "existing budgets and entries recorded as they were",
        },
        stamp,
        marker=None,
        where=where,
    )
    for row in conn.execute(
        "SELECT budget_key, label, epsilon, delta, updated_at FROM budgets "
        "ORDER BY updated_at, budget_key"
    ).fetchall():
        log.append(
            conn,
            "budget",
            dict(zip(("key", *log.BUDGET_FIELDS), row, strict=True)),
            stamp,
            marker=None,
            where=where,
        )
    for row in conn.execute(
        "SELECT entry_id, budget_key, run_id, mechanism, epsilon, delta, "
        "status, params, created_at, extract FROM entries ORDER BY entry_id"
    ).fetchall():
        payload = dict(zip(("entry_id", "key", *log.ENTRY_FIELDS[1:]), row, strict=True))
        payload["params"] = json.loads(row[7])
        log.append(conn, "entry", payload, stamp, marker=None, where=where)


class LedgerStore:
    """The SQLite file of one ledger: opening, connections, write transactions, the marker.

    Args:
        path: the database file.
        read_only: never create, migrate or write anything (SQLite ``mode=ro``).

    Raises:
        LedgerMissingError: the ledger is missing where one existed.
        LedgerIntegrityError: (writing only) the ledger fails its integrity check.
        LedgerCorruptError, LedgerAccessError: the file is damaged or cannot be used.
    """

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self.exists = True
        self._memory: sqlite3.Connection | None = None
        if not present(path):  # (the marker is read first inside history(): see ledger_log)
            why = history(path)
            if why:
                raise missing_error(path, why)
            if read_only:  # a first use: nothing spent, and nothing to create while reading
                self.exists = False
                self._memory = _memory_copy(None, path)
                return
            create_database(path, {"reason": "created", "note": "", "by": ""})
        if read_only:
            try:
                conn = connect_ro(path)
            except sqlite3.Error as exc:
                raise sqlite_error(exc, path) from exc
            try:
                if not _current(conn):  # an old ledger: read a migrated copy, leave the file
                    self._memory = _memory_copy(conn, path)
            except sqlite3.Error as exc:
                raise sqlite_error(exc, path) from exc
            finally:
                conn.close()
            return
        with self.connect() as conn:
            current = _current(conn)
        if not current:
            marker = log.read_marker(path)
            with self.write(refresh=False) as conn:
                if "events" not in tables(conn) and marker is not None and marker.events:
                    raise LedgerIntegrityError(
                        f"the privacy ledger {path} has lost its event log (its marker recorded "
                        f"{marker.events} events); move it aside and restore the last backup "
                        f"with `privsynth budget import BACKUP`"
                    )
                migrate(conn, path)
        self.refresh_marker()
        if str(path.resolve()) not in _VERIFIED:
            problems = self.verify()
            if problems:
                raise LedgerIntegrityError(
                    f"the privacy ledger {path} fails its integrity check ({problems[0]}"
                    f"{f'; {len(problems) - 1} more' if len(problems) > 1 else ''}); nothing "
                    f"was written. See `privsynth budget verify`; to recover, move it aside and "
                    f"restore the last backup with `privsynth budget import BACKUP`"
                )
            _VERIFIED.add(str(path.resolve()))

    @property
    def ledger_id(self) -> str:
        """The id in the ledger's genesis event ("" for a ledger not created yet)."""
        with self.connect() as conn:
            row = conn.execute("SELECT payload FROM events WHERE seq = 1").fetchone()
        return str(json.loads(row[0]).get("ledger_id", "")) if row else ""

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection (autocommit; every sqlite3 error becomes a privsynth error)."""
        if self._memory is not None:
            try:
                yield self._memory
            except sqlite3.Error as exc:
                raise sqlite_error(exc, self.path) from exc
            return
        conn: sqlite3.Connection | None = None
        try:
            if self.read_only:
                conn = connect_ro(self.path)
            else:
                # mode=rw: a ledger deleted while a process holds it open fails loudly instead of
                # being re-created empty by the next connection.
                conn = sqlite3.connect(
                    self.path.resolve().as_uri() + "?mode=rw",
                    uri=True,
                    timeout=60,
                    isolation_level=None,
                )
                conn.execute("PRAGMA busy_timeout=60000")
            yield conn
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path) from exc
        finally:
            if conn is not None:
                conn.close()

    @contextmanager
    def write(self, *, refresh: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its first statement; after the
        commit, the marker is brought up to date."""
        if self.read_only:
            raise LedgerAccessError(
                f"the privacy ledger {self.path} was opened read-only; open "
                f"it without read_only=True to change it"
            )
        with self.connect() as conn:
            _begin_immediate(conn, self.path)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if refresh:
            self.refresh_marker()

    def append(self, conn: sqlite3.Connection, kind: str, payload: dict[str, Any]) -> None:
        """Append one event in the caller's write transaction (its chain link checked first)."""
        log.append(conn, kind, payload, now(), marker=log.read_marker(self.path), where=self.path)

    def refresh_marker(self) -> None:
        """Record the last committed event in the marker.

        Done under the write lock, so no other process commits in between: the head read here is
        committed (the marker is never ahead) and the newest (it never goes backwards).
        """
        marker = log.read_marker(self.path)
        if marker is not None:  # up to date already (the common case on open): no lock needed
            with self.connect() as conn:
                last = conn.execute("SELECT MAX(seq) FROM events").fetchone()
            if last[0] is not None and marker.events >= last[0]:
                return
        with self.connect() as conn:
            _begin_immediate(conn, self.path)
            try:
                first = conn.execute(
                    "SELECT payload, created_at FROM events WHERE seq = 1"
                ).fetchone()
                last = conn.execute(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                marker = log.read_marker(self.path)
                if first is None or last is None:
                    return
                ledger_id = str(json.loads(first[0]).get("ledger_id", ""))
                # A marker of another ledger is evidence (of a replaced database): verify()
                # reports it, so it is never overwritten here.
                if marker is None or (marker.ledger_id == ledger_id and marker.events < last[0]):
                    log.write_marker(
                        self.path,
                        log.Marker(
                            ledger_id, marker.created_at if marker else first[1], last[0], last[1]
                        ),
                    )
            finally:
                conn.execute("ROLLBACK")

    def verify(self) -> list[str]:
        """Every integrity problem (empty when intact); see :func:`ledger_log.verify_events`."""
        if not self.exists:
            return []
        marker = log.read_marker(self.path)  # before the database: it may lag, never lead
        with self.connect() as conn:
            conn.execute("BEGIN")  # one snapshot for the events and the tables
            try:
                events = log.read_events(conn)
                state = log.table_state(conn)
            finally:
                conn.execute("ROLLBACK")
        return log.verify_events(events, state, marker)


def create_database(
    path: Path,
    init: dict[str, Any] | None,
    fill: Callable[[sqlite3.Connection], None] | None = None,
) -> None:
    """Create the ledger's database: with a genesis event whose payload is ``init``, or filled
    by ``fill`` (a restore), in one transaction.

    Raises:
        LedgerAccessError: the folder cannot be created or written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path.resolve().as_uri() + "?mode=rwc", uri=True, timeout=60, isolation_level=None
        )
    except (OSError, sqlite3.Error) as exc:
        raise LedgerAccessError(
            f"cannot create the privacy ledger {path} ({exc}); make its "
            f"folder writable, or {HOME_HINT}"
        ) from exc
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA journal_mode=WAL")
        _begin_immediate(conn, path)
        for statement in log.TABLE_STATEMENTS:
            conn.execute(statement)
        if fill is not None:
            fill(conn)
        # Two processes may create a fresh ledger at once: the second finds the genesis.
        elif conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0:
            log.append(
                conn,
                "init",
                {"ledger_id": uuid.uuid4().hex, **(init or {})},
                now(),
                marker=None,
                where=path,
            )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        error = sqlite_error(exc, path)
        if not isinstance(error, LedgerCorruptError):
            error = LedgerAccessError(
                f"cannot create the privacy ledger {path} ({exc}); make "
                f"its folder writable, or {HOME_HINT}"
            )
        raise error from exc
    finally:
        conn.close()


def _begin_immediate(conn: sqlite3.Connection, path: Path) -> None:
    for attempt in range(50):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.05 * (attempt + 1))  # busy past the timeout: back off, try again
    raise BudgetError(f"the privacy ledger {path} stayed locked by another process; try again")


def _memory_copy(source: sqlite3.Connection | None, path: Path) -> sqlite3.Connection:
    """An in-memory ledger: a migrated copy of ``source``, or empty."""
    memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if source is not None:
        source.backup(memory)
    memory.execute("BEGIN")
    if source is None:
        for statement in log.TABLE_STATEMENTS:
            memory.execute(statement)
    else:
        migrate(memory, path)
    memory.execute("COMMIT")
    return memory


def forget_verified(path: Path) -> None:
    """Make the next open of ``path`` in this process verify it again (it was replaced)."""
    _VERIFIED.discard(str(path.resolve()))
