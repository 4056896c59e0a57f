"""The model store's locks, and the rule that one fit is paid for once.

A fit is identified by its *store key* (:func:`privsynth_core.runs.pipeline.fit_key`: the data,
the fit settings with the seed, the domain). Whoever runs it (a flow on threads or on a Dask
worker, :func:`~privsynth_core.runs.rundir.run_pipeline`, ``privsynth fit``) goes through
:func:`~privsynth_core.runs.pipeline.fit_model`, which:

1. returns the stored model if the entry is complete (paid once, reused for free);
2. otherwise takes an exclusive lock on the entry (:func:`exclusive_lock`, an OS file lock on
   ``.<key>.lock`` beside it) for the whole train-and-save: a second identical fit *waits*,
   then finds the complete model and returns it, uncharged;
3. holding the lock, looks in the ledger for an **open reservation of the same key** (the
   training reservation carries the key in its ``params`` under :data:`FIT_KEY_PARAM`). The lock
   being free while such a reservation is open means its fit died midway (killed, or failed
   after it reserved); training again would pay twice, so it refuses with
   :class:`UnfinishedFitError` naming the reservation and how to resume or close it
   (:func:`check_unfinished`). Only the attempt's own checkpoints may continue under it
   (``privsynth run --resume``).

That last rule is what makes every runner safe, whatever its retry settings: a Prefect retry, or
Dask rescheduling a task whose worker died, reaches step 3 and stops there, with the open
reservation for the custodian to review (``privsynth budget reservations``) and close
(``privsynth budget close ID --note ...``, recorded in the ledger's history).

The same lock serialises the DP domains under ``cache/domains/`` and, held for a whole run, the
run directories (:func:`privsynth_core.runs.rundir.claim_run_dir`). Locks are ``fcntl.flock`` locks:
released by the OS when their process dies, however it dies. They are reliable on local disks
and on file systems with working POSIX locks (NFSv4, most cluster file systems).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BudgetError
from .privacy.ledger import privsynth_home

if TYPE_CHECKING:
    from .privacy.ledger import LedgerEntry, PrivacyLedger

#: The ledger ``params`` field of a training reservation that holds its store key.
FIT_KEY_PARAM = "fit_key"
#: The ledger ``params`` field with the checkpoint folder of the attempt (when it had one).
CHECKPOINTS_PARAM = "checkpoints"
_RESERVATION_FILE = "reservation.json"  # written by CheckpointStore.record_reservation

logger = logging.getLogger("privsynth")

#: A model's folder in the store: ``model/`` (releasable) beside ``fit.json`` (custodian-only).
MODEL_SUBDIR = "model"
FIT_RECORD = "fit.json"


def cache_dir() -> Path:
    """Where cached domains and models live (``$PRIVSYNTH_HOME/cache``)."""
    return privsynth_home() / "cache"


class UnfinishedFitError(BudgetError):
    """An earlier attempt at the same fit reserved its budget and never finished.

    privsynth does not train it again on its own: the attempt may already have read the data,
    and a second training would pay a second time. The message names the open reservations and
    says how to resume the attempt or have the custodian close them.

    Attributes:
        entries: the open reservations.
    """

    def __init__(self, message: str, entries: list[LedgerEntry] | None = None) -> None:
        super().__init__(message)
        self.entries = list(entries or [])

    def __reduce__(self) -> tuple[type[UnfinishedFitError], tuple[str, list[LedgerEntry]]]:
        # Whole across processes (a Dask worker's error travels pickled to the flow).
        return type(self), (str(self), self.entries)


def lock_path(target: str | Path) -> Path:
    """The lock file of a store entry or run directory: ``.<name>.lock`` beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        return f"process {data['pid']} on {data['host']}"
    except (OSError, ValueError, KeyError):
        return "another process"


@contextmanager
def exclusive_lock(target: str | Path, *, what: str) -> Iterator[None]:
    """Hold the exclusive OS lock of ``target`` (waiting for it if another process holds it).

    The lock is ``fcntl.flock`` on :func:`lock_path`; it is released when the block ends, or by
    the OS when the process dies. Locks of different open files conflict also within one
    process, so two threads wait for each other too.

    Args:
        target: the store entry or run directory the lock guards.
        what: what it guards, for the "waiting" message.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("waiting for %s: %s holds it", what, _holder(fd))
            fcntl.flock(fd, fcntl.LOCK_EX)
        # Who holds it, for whoever waits next (advisory: the lock itself is the flock).
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        yield
    finally:
        os.close(fd)


def open_fit_reservations(
    ledger: PrivacyLedger, budget_key: str, store_key: str
) -> list[LedgerEntry]:
    """The open training reservations of the fit with ``store_key``, oldest first."""
    return [
        entry
        for entry in ledger.open_reservations(budget_key)
        if entry.params.get(FIT_KEY_PARAM) == store_key
    ]


def resumable_entry(checkpoint_dir: str | Path | None) -> int | None:
    """The ledger entry that the checkpoints in ``checkpoint_dir`` were taken under, if any."""
    if checkpoint_dir is None:
        return None
    path = Path(checkpoint_dir) / _RESERVATION_FILE
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["entry_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_dir_of(checkpoint_dir: str | Path) -> Path | None:
    """The run directory whose work area holds ``checkpoint_dir`` (``.<name>.work/...``)."""
    work = Path(checkpoint_dir).parent
    if work.name.startswith(".") and work.name.endswith(".work") and len(work.name) > 6:
        return work.parent / work.name[1 : -len(".work")]
    return None


def describe_reservations(entries: list[LedgerEntry]) -> str:
    """What the custodian does about open reservations, in words (review, resume, close)."""
    lines = []
    for entry in entries:
        lines.append(
            f"ledger reservation #{entry.entry_id} ({entry.mechanism}, epsilon="
            f"{entry.epsilon:.4g}, delta={entry.delta:.3g}, run {entry.run_id[:12]}, "
            f"reserved {entry.created_at}) is still open"
        )
        checkpoints = entry.params.get(CHECKPOINTS_PARAM)
        run_dir = run_dir_of(checkpoints) if checkpoints else None
        if run_dir is not None and resumable_entry(checkpoints) == entry.entry_id:
            lines.append(
                f"  its checkpoints are kept: resume it with `privsynth run --resume {run_dir}`"
            )
    if len(entries) == 1:
        how = f'closes it with `privsynth budget close {entries[0].entry_id} --note "..."`'
    else:
        how = (
            f'closes each with `privsynth budget close ID --note "..."` (IDs '
            f"{', '.join(str(e.entry_id) for e in entries)})"
        )
    lines.append(
        f"review with `privsynth budget reservations`; once reviewed, the data custodian "
        f"{how} (it stays counted in full, with the note in the ledger's history), and "
        f"the fit can run again"
    )
    return "\n".join(lines)


def check_unfinished(
    ledger: PrivacyLedger,
    budget_key: str,
    store_key: str,
    *,
    checkpoint_dir: str | Path | None = None,
) -> None:
    """Refuse to train a fit whose earlier attempt left its reservation open.

    Call it holding the entry's lock (:func:`exclusive_lock`): then no live process is
    training this fit, and an open reservation of its key belongs to one that died. The one
    exception is the attempt's own resume: ``checkpoint_dir`` holds checkpoints taken under that
    reservation, and training continues under it (no second reservation).

    Raises:
        UnfinishedFitError: an open reservation of ``store_key`` that is not being resumed.
    """
    entries = open_fit_reservations(ledger, budget_key, store_key)
    resumed = resumable_entry(checkpoint_dir)
    if len(entries) == 1 and entries[0].entry_id == resumed:
        return
    if entries:
        raise UnfinishedFitError(
            f"this model (store key {store_key[:12]}) was being trained before and that attempt "
            f"never finished; privsynth does not train it again on its own, since the attempt "
            f"may already have read the data and a second training would pay twice:\n"
            + describe_reservations(entries),
            entries,
        )


__all__ = [
    "CHECKPOINTS_PARAM",
    "FIT_KEY_PARAM",
    "UnfinishedFitError",
    "check_unfinished",
    "describe_reservations",
    "exclusive_lock",
    "lock_path",
    "open_fit_reservations",
    "resumable_entry",
    "run_dir_of",
]
