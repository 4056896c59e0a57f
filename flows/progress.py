"""A fit's live progress: what may reach Prefect (units, steps, epsilon) and what may not (losses).

The ``fit_model`` task gives the generator a :class:`FitReporter` as its progress callback. It
keeps one Prefect *progress artifact* of the flow run up to date: the bar the Prefect UI shows,
with a one-line description such as ``epoch 3 of 20 · step 120 · epsilon 0.4123 of 1``. Those
figures are the plan's (units and steps planned from the released row count n̂, epsilon from the
accountant over the steps taken): public once n̂ is. **Losses are computed on the real rows**:
they never go into the artifact, a log or a task result; when the caller names a custodian-side
file (``losses_file``, e.g. in the web app's run folder), each report's losses are appended there
as a JSON line, for the custodian's own page.

:func:`parse_progress` reads a description back (the web app shows it while the run goes on).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from privsynth_core.generator import Progress

log = logging.getLogger("privsynth")

#: Seconds between two updates of the artifact (each is one API call); the last one always goes.
MIN_INTERVAL = 0.5
_DESCRIPTION = re.compile(
    r"^(?P<unit>[a-z]+) (?P<done>\d+) of (?P<planned>\d+) · step (?P<step>\d+)"
    r"(?: · epsilon (?P<epsilon>[0-9.e+-]+)(?: of (?P<target>[0-9.e+-]+))?)?$"
)


@dataclass(frozen=True)
class FitProgress:
    """A fit's progress as the artifact states it (no loss: those stay with the custodian)."""

    unit: str
    done: int
    planned: int
    step: int
    epsilon: float | None = None
    target: float | None = None

    @property
    def fraction(self) -> float:
        """How much is done, between 0 and 1."""
        return min(max(self.done / max(self.planned, 1), 0.0), 1.0)

    def describe(self) -> str:
        """The artifact's one-line description (:func:`parse_progress` reads it back)."""
        text = f"{self.unit} {self.done} of {self.planned} · step {self.step}"
        if self.epsilon is not None:
            text += f" · epsilon {self.epsilon:.6g}"
            if self.target is not None:
                text += f" of {self.target:g}"
        return text


def parse_progress(description: str | None) -> FitProgress | None:
    """The progress a :meth:`FitProgress.describe` line states (None for any other text)."""
    found = _DESCRIPTION.match(description or "")
    if found is None:
        return None
    eps, target = found["epsilon"], found["target"]
    return FitProgress(
        found["unit"],
        int(found["done"]),
        int(found["planned"]),
        int(found["step"]),
        float(eps) if eps else None,
        float(target) if target else None,
    )


class FitReporter:
    """The progress callback of a fit run by a flow: a Prefect progress artifact, and the
    losses in a custodian-side file (never in Prefect).

    Args:
        target: the fit's target epsilon (None for a non-DP generator).
        losses_file: where to append the losses (a JSON object per report), or None.
        min_interval: seconds between two artifact updates.
    """

    def __init__(
        self,
        target: float | None,
        losses_file: str | Path | None = None,
        *,
        min_interval: float = MIN_INTERVAL,
    ) -> None:
        self.target = target
        self.losses_file = Path(losses_file) if losses_file else None
        self.min_interval = min_interval
        self._artifact: Any = None
        self._last = -math.inf
        self._broken = False
        self.latest: FitProgress | None = None

    def __call__(self, progress: Progress) -> None:
        """Record one report from the generator."""
        if self.losses_file is not None and progress.losses:
            self._append_losses(progress)
        self.latest = FitProgress(
            progress.unit or "epoch",
            int(progress.epoch),
            int(progress.epochs),
            int(progress.step),
            None if progress.epsilon is None else float(progress.epsilon),
            self.target,
        )
        if time.monotonic() - self._last >= self.min_interval or progress.epoch >= progress.epochs:
            self._publish(self.latest)

    def finish(self) -> None:
        """The fit ended (or the stored model was reused): show the last state, at 100%."""
        if self.latest is None:
            return
        done = self.latest
        self._publish(
            FitProgress(done.unit, done.planned, done.planned, done.step, done.epsilon, done.target)
        )

    def _append_losses(self, progress: Progress) -> None:
        assert self.losses_file is not None
        line = {
            "unit": progress.unit,
            "epoch": progress.epoch,
            "losses": {k: float(v) for k, v in progress.losses.items()},
        }
        self.losses_file.parent.mkdir(parents=True, exist_ok=True)
        with self.losses_file.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def _publish(self, progress: FitProgress) -> None:
        if self._broken:
            return
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        self._last = time.monotonic()
        try:
            if self._artifact is None:
                self._artifact = create_progress_artifact(
                    progress=100 * progress.fraction, description=progress.describe()
                )
            else:
                update_progress_artifact(
                    self._artifact,
                    progress=100 * progress.fraction,
                    description=progress.describe(),
                )
        except Exception as exc:  # progress is a display: never let it stop a paid fit
            self._broken = True
            log.warning(
                "training progress is not shown in Prefect (%s: %s)", type(exc).__name__, exc
            )


def read_losses(path: str | Path) -> list[dict[str, Any]]:
    """The losses a :class:`FitReporter` appended to ``path`` (custodian-only), oldest first."""
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written right now
            continue
    return rows


__all__ = ["FitProgress", "FitReporter", "parse_progress", "read_losses"]
