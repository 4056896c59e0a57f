"""Checkpoints that let an interrupted DP training run resume without under-counting its privacy.

The resume protocol, generic over generators (a plugin opts in with
``Generator.supports_checkpoints = True`` and uses ``self.checkpoints`` inside ``_fit``):

1. **One reservation for the whole training.** The first attempt reserves the target
   (epsilon, delta) in the ledger and records the entry in ``reservation.json``. A resumed
   attempt finds that entry still open and continues under it instead of reserving again, so
   the ledger never counts the same training twice, and the killed attempt's spending stays
   covered by the reservation until the run settles.
2. **Write-ahead step log.** Before a block of DP-SGD steps, the plugin calls
   :meth:`CheckpointStore.log_steps`, which appends the block to ``steps.log`` and fsyncs it.
   Steps taken after the last checkpoint are thereby never forgotten.
3. **Atomic checkpoints.** Every so often the plugin calls :meth:`CheckpointStore.save` with
   its weights, its accountant's ``state_dict`` and the step count; the checkpoint directory
   appears whole or not at all.
4. **Restore.** On resume, :meth:`CheckpointStore.restore_accountant` loads the accountant from
   the last checkpoint and then adds every step logged after it (steps whose updates were lost
   with the killed process): the accountant's epsilon covers every step ever taken, and the
   plugin's usual "stop before the next step would exceed the target" rule keeps the whole
   training, both attempts together, within the reservation.

Counting the lost steps over-counts the privacy loss of the released model (their updates
were never released), which is the safe direction.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import atomic_directory, atomic_write_text

if TYPE_CHECKING:
    from .accountant import Accountant
    from .ledger import LedgerEntry, PrivacyBudget, PrivacyLedger

_RESERVATION = "reservation.json"
_LOG = "steps.log"
_LATEST = "latest.json"
_STATE = "state.json"
_KEEP = 2


@dataclass(frozen=True)
class Checkpoint:
    """A saved training state.

    Attributes:
        directory: where the plugin's files (weights) are.
        step: the training step the checkpoint was taken after.
        accountant_state: the accountant's ``state_dict`` at that step.
        state: the plugin's JSON-able extras (epoch, optimiser settings, ...).
        log_position: how many step-log records the accountant state already covers.
        lost_steps: steps logged after the checkpoint (their updates were lost).
    """

    directory: Path
    step: int
    accountant_state: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    log_position: int = 0
    lost_steps: int = 0


class CheckpointStore:
    """The checkpoints, step log and ledger reservation of one training run, in one folder.

    Args:
        directory: the folder (created on first write).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    # -- the ledger reservation ---------------------------------------------------------------

    def open_reservation(
        self, ledger: PrivacyLedger, *, fingerprint: str, budget: PrivacyBudget
    ) -> LedgerEntry | None:
        """The still-open reservation of an interrupted attempt at the same training, if any.

        Returns None (and forgets stale checkpoints) when there is none, when it was already
        settled, or when it was made for another dataset or budget: the caller then reserves
        afresh and training starts from scratch.
        """
        path = self.directory / _RESERVATION
        if not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        from ..errors import BudgetError

        try:
            entry = ledger.entry(int(record["entry_id"]))
        except (BudgetError, KeyError, ValueError):
            entry = None
        if (
            entry is None
            or entry.status != "reserved"
            or entry.fingerprint != fingerprint
            or entry.epsilon != budget.epsilon
            or entry.delta != budget.delta
        ):
            self.clear()
            return None
        return entry

    def record_reservation(self, entry: LedgerEntry) -> None:
        """Remember the ledger entry that covers this training (a fresh start: old state goes)."""
        self.clear()
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.directory / _RESERVATION,
            json.dumps(
                {
                    "entry_id": entry.entry_id,
                    "fingerprint": entry.fingerprint,
                    "epsilon": entry.epsilon,
                    "delta": entry.delta,
                    "run_id": entry.run_id,
                }
            ),
        )

    # -- the write-ahead step log ------------------------------------------------------------

    def log_steps(self, *, noise_multiplier: float, sample_rate: float, num_steps: int) -> None:
        """Record, durably, that ``num_steps`` steps are about to be taken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {
                "noise_multiplier": noise_multiplier,
                "sample_rate": sample_rate,
                "num_steps": num_steps,
            }
        )
        with open(self.directory / _LOG, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def logged(self) -> list[tuple[float, float, int]]:
        """Every step block logged so far, oldest first (a torn last line is ignored)."""
        path = self.directory / _LOG
        if not path.is_file():
            return []
        blocks = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # the process died while writing this line
                continue
            blocks.append(
                (float(rec["noise_multiplier"]), float(rec["sample_rate"]), int(rec["num_steps"]))
            )
        return blocks

    # -- checkpoints ----------------------------------------------------------------------------

    def save(
        self,
        *,
        step: int,
        accountant_state: dict[str, Any],
        state: dict[str, Any] | None = None,
        write: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write a checkpoint atomically; ``write(directory)`` adds the plugin's files.

        Call it after the steps it covers have been logged with :meth:`log_steps`.
        """
        target = self.directory / f"step-{step:09d}"
        with atomic_directory(target, overwrite=True) as tmp:
            if write is not None:
                write(tmp)
            (tmp / _STATE).write_text(
                json.dumps(
                    {
                        "step": step,
                        "accountant_state": accountant_state,
                        "state": state or {},
                        "log_position": len(self.logged()),
                    }
                ),
                encoding="utf-8",
            )
        atomic_write_text(self.directory / _LATEST, json.dumps({"directory": target.name}))
        for old in sorted(self.directory.glob("step-*"))[:-_KEEP]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def latest(self) -> Checkpoint | None:
        """The most recent complete checkpoint, or None."""
        pointer = self.directory / _LATEST
        if not pointer.is_file():
            return None
        directory = self.directory / json.loads(pointer.read_text(encoding="utf-8"))["directory"]
        data = json.loads((directory / _STATE).read_text(encoding="utf-8"))
        position = int(data["log_position"])
        lost = sum(n for _, _, n in self.logged()[position:])
        return Checkpoint(
            directory,
            int(data["step"]),
            data["accountant_state"],
            data.get("state", {}),
            position,
            lost,
        )

    def restore_accountant(self, accountant: Accountant) -> Checkpoint | None:
        """Load ``accountant`` with every step ever taken; return the checkpoint to resume from.

        The accountant gets the last checkpoint's state plus every step logged after it. With
        no checkpoint, it gets every logged step (and None is returned: the weights start
        afresh, but the earlier attempt's steps still count).

        Raises:
            AccountingError: the checkpoint was made with a different accountant.
        """
        checkpoint = self.latest()
        blocks = self.logged()
        if checkpoint is not None:
            accountant.load_state_dict(checkpoint.accountant_state)
            blocks = blocks[checkpoint.log_position :]
        for noise, rate, steps in blocks:
            accountant.step(noise_multiplier=noise, sample_rate=rate, num_steps=steps)
        return checkpoint

    def clear(self) -> None:
        """Forget every checkpoint, the step log and the reservation record."""
        if self.directory.exists():
            shutil.rmtree(self.directory)


__all__ = ["Checkpoint", "CheckpointStore"]
