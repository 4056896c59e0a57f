"""Backups of the privacy ledger, restoring one, and starting a new ledger on purpose.

A backup is the event log alone (every event verbatim: the payload text is what its hash covers);
restoring verifies the chain, replays it into the tables and records the restore as an event.
Both a restore and a new start only ever go where the ledger is missing, and rename what is left
of the old one aside instead of deleting it.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BudgetError, InputFileError, LedgerAccessError, LedgerIntegrityError
from ..fileio import atomic_write_text
from . import ledger_log as log
from .ledger_log import Event
from .ledger_store import create_database, forget_verified, now, present

BACKUP_FORMAT = "privsynth-ledger-backup"


def backup_text(events: list[Event], *, exported_at: str) -> str:
    """A self-contained backup: every event verbatim (the payload text is what the hash covers)."""
    ledger_id = events[0].data().get("ledger_id", "") if events else ""
    return (
        json.dumps(
            {
                "format": BACKUP_FORMAT,
                "version": 1,
                "ledger_id": ledger_id,
                "exported_at": exported_at,
                "events": [
                    {
                        "seq": e.seq,
                        "kind": e.kind,
                        "payload": e.payload,
                        "created_at": e.created_at,
                        "prev_hash": e.prev_hash,
                        "hash": e.hash,
                    }
                    for e in events
                ],
            },
            indent=1,
        )
        + "\n"
    )


def write_backup(path: Path, events: list[Event], *, where: Path) -> Path:
    """Write the backup of ``events`` (the ledger at ``where``) to ``path``, atomically.

    Raises:
        LedgerIntegrityError: the hash chain is broken (such a backup could not be restored).
        LedgerAccessError: ``path`` cannot be written.
    """
    problems = log.chain_problems(events)
    if problems:
        raise LedgerIntegrityError(
            f"the privacy ledger {where} fails its hash chain "
            f"({problems[0]}); see `privsynth budget verify`"
        )
    try:
        atomic_write_text(path, backup_text(events, exported_at=now()))
    except OSError as exc:
        raise LedgerAccessError(
            f"cannot write the backup {path} ({exc.strerror or exc}); choose a writable path"
        ) from exc
    return path


def read_backup(path: Path) -> list[Event]:
    """The events of a backup file.

    Raises:
        InputFileError: the file is missing, unreadable or not a privsynth ledger backup.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputFileError(
            f"no backup file {path}; give the path of a file written by `privsynth budget export`"
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"cannot read the backup {path} ({exc}); give a file written by "
            f"`privsynth budget export`"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != BACKUP_FORMAT:
        raise InputFileError(
            f"{path} is not a privsynth ledger backup; give a file written by "
            f"`privsynth budget export`"
        )
    try:
        return [
            Event(
                int(e["seq"]),
                str(e["kind"]),
                str(e["payload"]),
                str(e["created_at"]),
                str(e["prev_hash"]),
                str(e["hash"]),
            )
            for e in data["events"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(f"the backup {path} is damaged ({exc}); use another backup") from exc


def set_aside(path: Path) -> list[str]:
    """Rename what is left of a lost ledger (an empty or table-less file, a stray ``-wal``) so a
    new one starts clean and nothing is destroyed; returns the new names."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    moved = []
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            new = old.with_name(f"{old.name}.set-aside-{stamp}")
            try:
                old.rename(new)
            except OSError as exc:
                raise LedgerAccessError(
                    f"cannot move {old} aside ({exc.strerror}); make the folder writable"
                ) from exc
            moved.append(new.name)
    return moved


def start_new(path: Path, *, note: str, by: str) -> None:
    """Create a new, empty ledger where the old one is missing; the genesis event says so.

    Raises:
        BudgetError: a ledger is present at ``path`` (there is nothing to start over).
    """
    if present(path):
        raise BudgetError(
            f"the privacy ledger {path} is present; a new ledger is only started "
            f"where the old one is missing (move it aside first if you mean it)"
        )
    previous = log.read_marker(path)
    moved = set_aside(path)
    if previous is not None:  # the old marker would otherwise be taken for this ledger's
        log.remove_marker(path)
    create_database(
        path,
        {
            "reason": "new-ledger",
            "note": note,
            "by": by,
            "set_aside": moved,
            "previous": None
            if previous is None
            else {
                "ledger_id": previous.ledger_id,
                "events": previous.events,
                "head": previous.head,
            },
        },
    )
    forget_verified(path)


def restore(path: Path, events: list[Event], *, backup: str, accept_loss: bool) -> None:
    """Rebuild a ledger at ``path`` from a backup's events (verified first), then record it.

    Raises:
        LedgerIntegrityError: the backup fails its hash chain or cannot be replayed.
        BudgetError: a ledger is present at ``path``, or the backup is older than what the
            marker there recorded and ``accept_loss`` is False.
    """
    problems = log.chain_problems(events)
    try:
        state = log.replay(events)
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"the events cannot be replayed: {exc}")
    if problems:
        raise LedgerIntegrityError(
            f"the backup {backup} fails verification ({problems[0]}); "
            f"it cannot be restored, use another backup"
        )
    if present(path):
        raise BudgetError(
            f"the privacy ledger {path} is present; a backup is only restored "
            f"into a missing or empty ledger (move this one aside first)"
        )
    marker = log.read_marker(path)
    lost, why = 0, ""
    if marker is not None and marker.ledger_id != state.ledger_id:
        lost = marker.events
        why = (
            f"the backup is of ledger {state.ledger_id}, but the marker here belongs to ledger "
            f"{marker.ledger_id} ({marker.events} events)"
        )
    elif (
        marker is not None
        and marker.events
        and (marker.events > len(events) or events[marker.events - 1].hash != marker.head)
    ):
        lost = max(marker.events - len(events), 1)
        why = (
            f"the backup holds {len(events)} events, but the lost ledger had recorded "
            f"{marker.events} (its marker): restoring it forgets what was spent after it"
        )
    if lost and not accept_loss:
        raise BudgetError(
            f"not restoring {backup}: {why}; restore a newer backup, or accept the "
            f"loss (`--accept-loss`, recorded as an event)"
        )
    moved = set_aside(path)
    if marker is not None:
        log.remove_marker(path)

    def fill(conn: sqlite3.Connection) -> None:
        for event in events:
            log.insert_event(conn, event)
        conn.executemany(
            "INSERT INTO budgets VALUES (?, ?, ?, ?, ?)",
            [(key, *row) for key, row in state.budgets.items()],
        )
        conn.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (entry_id, *row[:6], json.dumps(row[6], default=str), *row[7:])
                for entry_id, row in state.entries.items()
            ],
        )
        conn.executemany(
            "INSERT INTO acknowledgements VALUES (?, ?, ?, ?, ?, ?)",
            [(ack_id, *row) for ack_id, row in state.acks.items()],
        )
        log.append(
            conn,
            "restore",
            {"backup": backup, "events": len(events), "lost": lost, "why": why, "set_aside": moved},
            now(),
            marker=None,
            where=path,
        )

    create_database(path, None, fill)
    forget_verified(path)
