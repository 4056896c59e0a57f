"""The privacy ledger's event log: an append-only, hash-chained record of every change.

The ``budgets``, ``entries`` and ``acknowledgements`` tables of the ledger are a *view*: each of
their rows was written, in the same transaction, together with an event here that says the same
thing. Event ``n`` carries ``sha256(n, kind, time, hash of event n-1, payload)``, so changing,
inserting or deleting an event breaks the chain, and replaying the events must give the tables
exactly, so editing or deleting a table row shows up as a difference. What a chain cannot show by
itself, a cut-off tail, is caught by the **marker** next to the database
(``.ledger.sqlite.marker``), which records the ledger's id and the event count and last hash it has
seen committed. The marker is written after each commit, under SQLite's write lock, so it may lag
the database after a crash but is never ahead of it.

Backups are the events alone (:mod:`~privsynth_core.privacy.ledger_backup`); the tables are rebuilt
from them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LedgerAccessError, LedgerIntegrityError
from ..fileio import atomic_write_text

GENESIS_HASH = "0" * 64
MARKER_FORMAT = "privsynth-ledger-marker"
MARKER_NAME = ".{name}.marker"
UNREADABLE = "unreadable"  # the ledger id of a marker that exists but cannot be read

# Event kinds that change the tables; "restore" only records that a backup was loaded.
EVENT_KINDS = ("init", "budget", "entry", "settle", "close", "acknowledge", "restore")

# One statement at a time (executescript() would COMMIT the caller's open transaction).
TABLE_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS budgets (budget_key TEXT PRIMARY KEY, label TEXT NOT NULL, "
    "epsilon REAL NOT NULL, delta REAL NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (entry_id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "budget_key TEXT NOT NULL, run_id TEXT NOT NULL, mechanism TEXT NOT NULL, "
    "epsilon REAL NOT NULL, delta REAL NOT NULL, "
    "status TEXT NOT NULL CHECK (status IN ('spent', 'reserved', 'non-dp')), "
    "params TEXT NOT NULL, created_at TEXT NOT NULL, extract TEXT)",
    "CREATE INDEX IF NOT EXISTS entries_by_dataset ON entries (budget_key)",
    "CREATE TABLE IF NOT EXISTS acknowledgements (ack_id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "budget_key TEXT NOT NULL, up_to_entry INTEGER NOT NULL, note TEXT NOT NULL, "
    "acknowledged_by TEXT NOT NULL, created_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
    "payload TEXT NOT NULL, created_at TEXT NOT NULL, prev_hash TEXT NOT NULL, "
    "hash TEXT NOT NULL)",
    # Guards against accidents, not against an attacker (who can drop them): that is the
    # hash chain's job.
    "CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'the privacy ledger events are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'the privacy ledger events are append-only'); END",
)


def canonical(payload: dict[str, Any]) -> str:
    """The one JSON text of a payload that its hash covers (sorted keys, no spaces)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Event:
    """One event of the log, as stored."""

    seq: int
    kind: str
    payload: str
    created_at: str
    prev_hash: str
    hash: str

    @staticmethod
    def make(
        seq: int, kind: str, payload: dict[str, Any], created_at: str, prev_hash: str
    ) -> Event:
        """A new event chained to ``prev_hash``."""
        text = canonical(payload)
        return Event(
            seq,
            kind,
            text,
            created_at,
            prev_hash,
            event_hash(seq, kind, text, created_at, prev_hash),
        )

    def data(self) -> dict[str, Any]:
        """The payload as a dict."""
        value = json.loads(self.payload)
        if not isinstance(value, dict):
            raise ValueError("payload is not an object")
        return value

    def expected_hash(self) -> str:
        """The hash this event's content gives (equal to :attr:`hash` unless it was changed)."""
        return event_hash(self.seq, self.kind, self.payload, self.created_at, self.prev_hash)


def event_hash(seq: int, kind: str, payload: str, created_at: str, prev_hash: str) -> str:
    """SHA-256 over an event's fields and the previous event's hash."""
    text = "\x1f".join((str(seq), kind, created_at, prev_hash, payload))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_events(conn: sqlite3.Connection) -> list[Event]:
    """Every event, in order."""
    rows = conn.execute(
        "SELECT seq, kind, payload, created_at, prev_hash, hash FROM events ORDER BY seq"
    ).fetchall()
    return [Event(*row) for row in rows]


def insert_event(conn: sqlite3.Connection, event: Event) -> None:
    """Store one event as it is (the caller chained it)."""
    conn.execute(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
        (event.seq, event.kind, event.payload, event.created_at, event.prev_hash, event.hash),
    )


def append(
    conn: sqlite3.Connection,
    kind: str,
    payload: dict[str, Any],
    created_at: str,
    *,
    marker: Marker | None,
    where: Path,
) -> Event:
    """Append an event after checking the link it extends (inside the caller's transaction).

    Raises:
        LedgerIntegrityError: the last event does not match its hash or its predecessor, or the
            log is shorter than the marker recorded; nothing is appended.
    """
    last_row = conn.execute(
        "SELECT seq, kind, payload, created_at, prev_hash, hash FROM events "
        "ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if last_row is None:
        if kind != "init":
            raise LedgerIntegrityError(
                f"the privacy ledger {where} has no event log; run `privsynth budget verify`"
            )
        return _insert(conn, Event.make(1, kind, payload, created_at, GENESIS_HASH))
    last = Event(*last_row)
    problem = None
    if last.expected_hash() != last.hash:
        problem = f"event {last.seq} does not match its hash"
    elif last.seq > 1:
        before = conn.execute("SELECT hash FROM events WHERE seq = ?", (last.seq - 1,)).fetchone()
        if before is None or before[0] != last.prev_hash:
            problem = f"event {last.seq} does not follow event {last.seq - 1}"
    if problem is None and marker is not None and marker.events > last.seq:
        problem = (
            f"the event log ends at event {last.seq} but its marker recorded {marker.events} events"
        )
    if problem:
        raise LedgerIntegrityError(
            f"the privacy ledger {where} was changed outside privsynth ({problem}); nothing was "
            f"written. See `privsynth budget verify`; to recover, move it aside and restore the "
            f"last backup with `privsynth budget import BACKUP`"
        )
    return _insert(conn, Event.make(last.seq + 1, kind, payload, created_at, last.hash))


def _insert(conn: sqlite3.Connection, event: Event) -> Event:
    insert_event(conn, event)
    return event


# -- replay and comparison ---------------------------------------------------------------------


@dataclass
class State:
    """What the tables hold (or what replaying the events says they must hold)."""

    ledger_id: str = ""
    budgets: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    entries: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    acks: dict[int, tuple[Any, ...]] = field(default_factory=dict)


# Column order of the tuples in State, for the messages of diff_states().
BUDGET_FIELDS = ("label", "epsilon", "delta", "updated_at")
ENTRY_FIELDS = (
    "budget_key",
    "run_id",
    "mechanism",
    "epsilon",
    "delta",
    "status",
    "params",
    "created_at",
    "extract",
)
ACK_FIELDS = ("budget_key", "up_to_entry", "note", "acknowledged_by", "created_at")


def replay(events: list[Event]) -> State:
    """The tables the events describe.

    Raises:
        ValueError: an event cannot be applied (unknown kind, missing field, unknown entry).
    """
    state = State()
    for event in events:
        data = event.data()
        if event.kind == "init":
            state.ledger_id = str(data["ledger_id"])
        elif event.kind == "budget":
            state.budgets[data["key"]] = (
                data["label"],
                float(data["epsilon"]),
                float(data["delta"]),
                data["updated_at"],
            )
        elif event.kind == "entry":
            state.entries[int(data["entry_id"])] = (
                data["key"],
                data["run_id"],
                data["mechanism"],
                float(data["epsilon"]),
                float(data["delta"]),
                data["status"],
                data["params"],
                data["created_at"],
                data["extract"],
            )
        elif event.kind in ("settle", "close"):
            old = state.entries.get(int(data["entry_id"]))
            if old is None or old[5] != "reserved":
                raise ValueError(f"{event.kind} of entry {data['entry_id']}, not a reservation")
            state.entries[int(data["entry_id"])] = (
                *old[:3],
                float(data["epsilon"]),
                float(data["delta"]),
                "spent",
                data["params"],
                *old[7:],
            )
        elif event.kind == "acknowledge":
            state.acks[int(data["ack_id"])] = (
                data["key"],
                int(data["up_to_entry"]),
                data["note"],
                data["by"],
                data["created_at"],
            )
        elif event.kind != "restore":
            raise ValueError(f"unknown event kind {event.kind!r}")
    return state


def table_state(conn: sqlite3.Connection) -> State:
    """What the ledger's tables hold now."""
    state = State()
    for row in conn.execute("SELECT budget_key, label, epsilon, delta, updated_at FROM budgets"):
        state.budgets[row[0]] = tuple(row[1:])
    for row in conn.execute(
        "SELECT entry_id, budget_key, run_id, mechanism, epsilon, delta, "
        "status, params, created_at, extract FROM entries"
    ):
        state.entries[row[0]] = (*row[1:7], json.loads(row[7]), *row[8:])
    for row in conn.execute(
        "SELECT ack_id, budget_key, up_to_entry, note, acknowledged_by, "
        "created_at FROM acknowledgements"
    ):
        state.acks[row[0]] = tuple(row[1:])
    return state


def diff_states(tables: State, events: State) -> list[str]:
    """Every difference between the tables and the replayed events, in words."""
    problems: list[str] = []
    tables_rows: list[
        tuple[str, tuple[str, ...], dict[Any, tuple[Any, ...]], dict[Any, tuple[Any, ...]]]
    ] = [
        ("budget", BUDGET_FIELDS, dict(tables.budgets), dict(events.budgets)),
        ("entry", ENTRY_FIELDS, dict(tables.entries), dict(events.entries)),
        ("acknowledgement", ACK_FIELDS, dict(tables.acks), dict(events.acks)),
    ]
    for what, fields, have, want in tables_rows:
        for key in sorted(set(have) | set(want), key=str):
            if key not in want:
                problems.append(f"{what} {key} is in the tables but no event records it")
            elif key not in have:
                problems.append(
                    f"{what} {key} is recorded by the events but missing from the tables"
                )
            else:
                # Compared as canonical JSON: exact for floats, and NaN equals NaN.
                problems.extend(
                    f"{what} {key}: {name} is {a!r} in the tables but {b!r} by the events"
                    for name, a, b in zip(fields, have[key], want[key], strict=True)
                    if canonical({"v": a}) != canonical({"v": b})
                )
    return problems


def chain_problems(events: list[Event]) -> list[str]:
    """Breaks in the hash chain: gaps, reordering, changed events, a missing genesis."""
    problems: list[str] = []
    if not events:
        return ["the event log is empty"]
    if events[0].kind != "init":
        problems.append(
            f"the event log starts with {events[0].kind!r}, not with the ledger's creation"
        )
    prev_hash = GENESIS_HASH
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            problems.append(f"event {expected_seq} is missing (found event {event.seq} instead)")
        elif event.prev_hash != prev_hash:
            problems.append(f"event {event.seq} does not follow event {event.seq - 1}")
        if event.expected_hash() != event.hash:
            problems.append(f"event {event.seq} ({event.kind}) does not match its hash")
        try:
            event.data()
        except ValueError:
            problems.append(f"event {event.seq} has an unreadable payload")
        prev_hash = event.hash
        if len(problems) > 50:  # one tampering can break every later link; 50 say enough
            problems.append("... (more not shown)")
            break
    return problems


def verify_events(events: list[Event], tables: State | None, marker: Marker | None) -> list[str]:
    """All problems of a log: its chain, its agreement with ``tables`` and with ``marker``."""
    problems = chain_problems(events)
    if marker is not None and events:
        first = events[0].data() if events[0].kind == "init" else {}
        if marker.ledger_id == UNREADABLE:
            problems.append(
                "the marker file next to the database is unreadable (if the rest is "
                "intact, deleting it lets privsynth write it again)"
            )
        elif first.get("ledger_id") and marker.ledger_id != first["ledger_id"]:
            problems.append(
                f"the marker belongs to ledger {marker.ledger_id}, the database to "
                f"ledger {first['ledger_id']}: the database was replaced"
            )
        elif marker.events > len(events):
            problems.append(
                f"the event log ends at event {len(events)} but the marker recorded "
                f"{marker.events} events: events were removed from its end"
            )
        elif marker.events and events[marker.events - 1].hash != marker.head:
            problems.append(f"event {marker.events} differs from the one the marker recorded")
    if tables is not None:
        try:
            problems.extend(diff_states(tables, replay(events)))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"the events cannot be replayed: {exc}")
    return problems


# -- the marker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """``<ledger>.marker``: the ledger exists, its id, and the last committed event seen."""

    ledger_id: str
    created_at: str
    events: int
    head: str


def marker_path(ledger_path: Path) -> Path:
    """Where the marker of ``ledger_path`` lives: hidden, and not matched by
    ``rm ledger.sqlite*``, the usual way a ledger gets "reset"."""
    return ledger_path.with_name(MARKER_NAME.format(name=ledger_path.name))


def read_marker(ledger_path: Path) -> Marker | None:
    """The marker, or None when there is none (an unreadable one counts as present: the ledger
    existed, and its counts are unknown)."""
    path = marker_path(ledger_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Marker(
            str(data["ledger_id"]), str(data["created_at"]), int(data["events"]), str(data["head"])
        )
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Marker(UNREADABLE, "", 0, "")


def remove_marker(ledger_path: Path) -> None:
    """Delete the marker (before a new ledger or a restore writes its own).

    Raises:
        LedgerAccessError: the folder is not writable.
    """
    try:
        marker_path(ledger_path).unlink(missing_ok=True)
    except OSError as exc:
        raise LedgerAccessError(
            f"cannot replace the privacy ledger's marker next to "
            f"{ledger_path} ({exc.strerror or exc}); make the folder "
            f"writable"
        ) from exc


def write_marker(ledger_path: Path, marker: Marker) -> None:
    """Replace the marker atomically.

    Raises:
        LedgerAccessError: the folder is not writable.
    """
    text = json.dumps(
        {
            "format": MARKER_FORMAT,
            "ledger_id": marker.ledger_id,
            "created_at": marker.created_at,
            "events": marker.events,
            "head": marker.head,
        },
        indent=2,
    )
    try:
        atomic_write_text(marker_path(ledger_path), text + "\n")
    except OSError as exc:
        raise LedgerAccessError(
            f"cannot write the privacy ledger's marker next to {ledger_path} "
            f"({exc.strerror or exc}); make the folder writable"
        ) from exc
