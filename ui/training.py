"""Training in the background: one thread per run, live progress, cancel.

A fit can take minutes, longer than a browser request should hang on; it runs in a thread of
its own and reports every :class:`~privsynth_core.generator.Progress` into its
:class:`TrainingJob`, which the page polls. Each user has at most one training at a time, and the
server at most ``max_running`` in all.

Cancelling sets a flag that the progress callback checks: the fit stops at its next progress
report (the end of an epoch) by raising :class:`TrainingCancelled`. By then the data has been
used, so the ledger keeps the run's whole reservation charged: privsynth never refunds a DP
mechanism that touched the data.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from privsynth_core.errors import PrivsynthError
from privsynth_core.generator import Progress

from .workspace import RunRecord

log = logging.getLogger("privsynth.ui")


class TrainingCancelled(PrivsynthError):
    """The user cancelled the training."""


class BusyError(PrivsynthError, RuntimeError):
    """A training is already running for this user, or the server is at its limit."""


@dataclass
class TrainingJob:
    """One training in progress (or just finished)."""

    user: str
    run: RunRecord
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    history: list[Progress] = field(default_factory=list)
    outcome: str = "running"  # running, done, failed, cancelled
    message: str = ""

    def report(self, progress: Progress) -> None:
        """The fit's progress callback: record, then stop here if a cancel was asked for."""
        self.history.append(progress)
        if self.cancel_requested.is_set():
            raise TrainingCancelled(f"training cancelled after epoch {progress.epoch} of "
                                    f"{progress.epochs}")


Work = Callable[[TrainingJob], None]
Finish = Callable[[TrainingJob], None]


class TrainingJobs:
    """The trainings of every user of one app.

    Args:
        max_running: trainings that may run at once, all users together.
    """

    def __init__(self, max_running: int = 2) -> None:
        self.max_running = max_running
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}

    def start(self, user: str, run: RunRecord, work: Work, finish: Finish) -> TrainingJob:
        """Run ``work(job)`` in a thread; ``finish(job)`` records the outcome whatever happens.

        Raises:
            BusyError: the user already trains, or the server is at its limit.
        """
        with self._lock:
            current = self._jobs.get(user)
            if current is not None and not current.finished.is_set():
                raise BusyError(f"you are already training run {current.run.run_id}; wait for "
                                f"it or cancel it first")
            running = sum(not j.finished.is_set() for j in self._jobs.values())
            if running >= self.max_running:
                raise BusyError(f"the server is running {running} trainings, its limit; try "
                                f"again in a little while")
            job = TrainingJob(user, run)
            self._jobs[user] = job
        thread = threading.Thread(target=self._run, args=(job, work, finish),
                                  name=f"privsynth-train-{run.run_id}", daemon=True)
        thread.start()
        return job

    @staticmethod
    def _run(job: TrainingJob, work: Work, finish: Finish) -> None:
        try:
            work(job)
            job.outcome = "done"
        except TrainingCancelled as exc:
            job.outcome, job.message = "cancelled", (
                f"{exc}. The data was already used, so the ledger keeps the run's whole "
                f"reservation charged")
        except PrivsynthError as exc:
            job.outcome, job.message = "failed", str(exc)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("internal error %s in training run %s", reference, job.run.run_id)
            job.outcome, job.message = "failed", f"internal error {reference}"
        finally:
            try:
                finish(job)
            except Exception:
                log.exception("could not record the end of training run %s", job.run.run_id)
            job.finished.set()

    def get(self, user: str) -> TrainingJob | None:
        """The user's latest training, if any since the server started."""
        with self._lock:
            return self._jobs.get(user)

    def running(self) -> list[TrainingJob]:
        """Every training still running, all users."""
        with self._lock:
            return [j for j in self._jobs.values() if not j.finished.is_set()]

    def cancel(self, user: str) -> TrainingJob | None:
        """Ask the user's running training to stop; None if nothing is running."""
        job = self.get(user)
        if job is None or job.finished.is_set():
            return None
        job.cancel_requested.set()
        return job


__all__ = ["BusyError", "TrainingCancelled", "TrainingJob", "TrainingJobs"]
