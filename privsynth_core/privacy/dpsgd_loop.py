"""The DP-SGD training loop every DP-SGD generator runs: the most privacy-critical loop of all.

One copy of the rules (DESIGN §4.2, §4.5), so no plugin can get them wrong:

- every critic step draws a **Poisson** batch over the whole table at the plan's public rate
  ``q`` (:class:`~privsynth_core.privacy.dpsgd.PoissonSampler`, seeded from the OS) and is one
  step of the subsampled Gaussian mechanism, recorded in the accountant;
- training **stops before** a step would take the accountant's epsilon past the target;
- with a checkpoint store (:mod:`privsynth_core.privacy.checkpoint`) the steps are logged (fsynced)
  *before* they are taken, checkpoints hold the networks, optimisers and the accountant, and a
  resumed fit continues from the last checkpoint with an accountant that counts **every step
  ever taken** (steps of the killed attempt after its last checkpoint included): the next step
  is allowed only if that full history stays within the target;
- progress reports carry epochs, steps and epsilon; losses (computed on real rows) go only to the
  person running the fit, never into a manifest.

A plugin supplies a :class:`CriticTrainer` (its networks and one critic step and its generator
steps) and the encoded rows; the loop does the rest.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..generator import ProgressCallback
    from .accountant import Accountant
    from .checkpoint import CheckpointStore
    from .dpsgd import RowBatches

TRAINER_FILE = "trainer.pt"


class CriticTrainer(Protocol):
    """What the loop needs of a DP-SGD GAN: a DP critic step, generator steps, its state."""

    def critic_step(self, real: torch.Tensor) -> float:
        """One DP critic step on the Poisson batch ``real``; return the critic loss."""
        ...

    def generator_steps(self, step: int) -> float | None:
        """The generator's updates after critic step number ``step`` (1-based); return the last
        generator loss, or None when none was due. They read no private data."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers (tensors, moved to the CPU), for a checkpoint."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


@dataclass(frozen=True)
class StepPlan:
    """The public plan of the DP-SGD steps (computed from the released row count, never n).

    Attributes:
        noise_multiplier: sigma.
        sample_rate: the Poisson rate q.
        steps_per_epoch: critic steps in one epoch.
        allowed_steps: the most steps the target allows after whatever the plan releases first.
        epochs: epochs to run (training may stop earlier at ``allowed_steps``).
    """

    noise_multiplier: float
    sample_rate: float
    steps_per_epoch: int
    allowed_steps: int
    epochs: int


@dataclass
class LoopResult:
    """What the loop did.

    Attributes:
        steps: DP-SGD steps in the model (both attempts, when resumed; lost steps excluded).
        epsilon: the accountant's epsilon for every step ever taken (lost ones included).
        accountant_state: the accountant's ``state_dict``.
        seconds: wall time of this attempt's loop (custodian-only).
        resumed_from: the checkpoint's step, 0 for a fresh start.
        lost_steps: steps of a killed attempt after its last checkpoint (counted, not in the
            model).
        extra_state: the plugin's JSON state saved with the checkpoints (e.g. DP-CTGAN's noisy
            marginals), as restored or as given.
    """

    steps: int
    epsilon: float
    accountant_state: dict[str, Any]
    seconds: float
    resumed_from: int = 0
    lost_steps: int = 0
    extra_state: dict[str, Any] = field(default_factory=dict)


@dataclass
class Resumed:
    """A restored attempt: where it stopped, and the plugin state saved with it."""

    step: int
    lost_steps: int
    extra_state: dict[str, Any]
    trainer_file: Path | None


def restore(checkpoints: CheckpointStore | None, accountant: Accountant) -> Resumed | None:
    """Load ``accountant`` with every step ever logged; return the checkpoint to resume from.

    None when there is nothing to resume (no checkpoint store, or an empty one). With logged
    steps but no checkpoint (killed before the first one), the accountant still counts them and
    training starts afresh from step 0.
    """
    if checkpoints is None:
        return None
    checkpoint = checkpoints.restore_accountant(accountant)
    if checkpoint is None:
        return None
    file = checkpoint.directory / TRAINER_FILE
    return Resumed(
        checkpoint.step,
        checkpoint.lost_steps,
        dict(checkpoint.state),
        file if file.is_file() else None,
    )


def more_steps_allowed(
    accountant: Accountant,
    *,
    noise_multiplier: float,
    sample_rate: float,
    target_epsilon: float,
    delta: float,
    cap: int,
) -> int:
    """The most further steps (at most ``cap``) that keep ``accountant``'s whole history, plus
    them, at or under ``target_epsilon``."""
    history = list(accountant.history)

    def fits(steps: int) -> bool:
        trial = [*history, (noise_multiplier, sample_rate, steps)]
        return bool(type(accountant)._epsilon(trial, delta) <= target_epsilon)

    if cap < 1 or not fits(1):
        return 0
    if fits(cap):
        return cap
    low, high = 1, cap
    while high - low > 1:  # invariant: fits(low), not fits(high)
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def run_dpsgd(
    trainer: CriticTrainer,
    source: RowBatches,
    *,
    plan: StepPlan,
    accountant: Accountant,
    target_epsilon: float,
    delta: float,
    progress: ProgressCallback | None = None,
    checkpoints: CheckpointStore | None = None,
    resumed: Resumed | None = None,
    extra_state: dict[str, Any] | None = None,
    checkpoint_every: int | None = None,
) -> LoopResult:
    """Train ``trainer`` with DP-SGD under ``plan``; stop before a step would pass the target.

    Args:
        trainer: the plugin's networks and steps.
        source: the encoded private rows (the Poisson sampler draws from its true size, inside
            the mechanism).
        plan: the public step plan.
        accountant: holds everything released so far in this fit (e.g. noisy marginals), and,
            when resumed, every step of the earlier attempt (:func:`restore`).
        target_epsilon, delta: the fit's target.
        progress: called once per epoch.
        checkpoints: where to log steps ahead and save checkpoints (None: no checkpoints).
        resumed: the restored checkpoint (its trainer state is loaded here).
        extra_state: the plugin's JSON state to save with every checkpoint.
        checkpoint_every: steps between checkpoints (default: one epoch).
    """
    from ..generator import Progress
    from .dpsgd import PoissonSampler

    sigma, q = plan.noise_multiplier, plan.sample_rate
    done = 0
    if resumed is not None:
        if resumed.trainer_file is not None:
            import torch

            trainer.load_state_dict(
                torch.load(resumed.trainer_file, map_location="cpu", weights_only=True)
            )
            done = resumed.step
        extra_state = resumed.extra_state or extra_state
    planned = plan.epochs * plan.steps_per_epoch
    if checkpoints is None:
        total = min(plan.allowed_steps, planned)
    else:
        # A resumable fit's accountant may hold an earlier attempt's steps (lost ones too, and
        # releases repeated after a kill): only what still fits the target with all of them may
        # be taken, whatever the plan assumed.
        total = done + more_steps_allowed(
            accountant,
            noise_multiplier=sigma,
            sample_rate=q,
            target_epsilon=target_epsilon,
            delta=delta,
            cap=max(planned - done, 0),
        )
    every = max(1, checkpoint_every or plan.steps_per_epoch)
    sampler = PoissonSampler(source.n_rows, q)
    started = time.perf_counter()
    step = done
    losses: list[float] = []
    generator_loss = float("nan")
    while step < total:
        block = min(every - step % every, total - step)
        if checkpoints is not None:
            # Write-ahead: these steps count even if the process dies in the middle of them.
            checkpoints.log_steps(noise_multiplier=sigma, sample_rate=q, num_steps=block)
        for _ in range(block):
            losses.append(trainer.critic_step(source.get(sampler.draw())))
            accountant.step(noise_multiplier=sigma, sample_rate=q)
            step += 1
            after = trainer.generator_steps(step)
            if after is not None:
                generator_loss = after
            if progress is not None and (step % plan.steps_per_epoch == 0 or step == total):
                progress(
                    Progress(
                        epoch=-(-step // plan.steps_per_epoch),
                        epochs=plan.epochs,
                        step=step,
                        losses={"critic": float(np.mean(losses)), "generator": generator_loss},
                        epsilon=accountant.get_epsilon(delta=delta),
                    )
                )
                losses = []
        if checkpoints is not None:
            save_checkpoint(checkpoints, trainer, step, accountant, extra_state or {})
    return LoopResult(
        steps=step,
        epsilon=accountant.get_epsilon(delta=delta),
        accountant_state=accountant.state_dict(),
        seconds=time.perf_counter() - started,
        resumed_from=resumed.step if resumed is not None else 0,
        lost_steps=resumed.lost_steps if resumed is not None else 0,
        extra_state=dict(extra_state or {}),
    )


def save_checkpoint(
    checkpoints: CheckpointStore,
    trainer: CriticTrainer,
    step: int,
    accountant: Accountant,
    extra_state: dict[str, Any],
) -> None:
    """A checkpoint after ``step`` steps: the trainer's tensors, the accountant, the extras."""
    import torch

    state = trainer.state_dict()

    def write(directory: Path) -> None:
        torch.save(state, directory / TRAINER_FILE)

    checkpoints.save(
        step=step, accountant_state=accountant.state_dict(), state=extra_state, write=write
    )


def cpu_state(module_or_optimizer: Any) -> dict[str, Any]:
    """A ``state_dict`` with every tensor detached and on the CPU (checkpoints load anywhere)."""
    import torch

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().clone()
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(move(v) for v in value)
        return value

    result: dict[str, Any] = move(module_or_optimizer.state_dict())
    return result


__all__ = [
    "TRAINER_FILE",
    "CriticTrainer",
    "LoopResult",
    "Resumed",
    "StepPlan",
    "cpu_state",
    "more_steps_allowed",
    "restore",
    "run_dpsgd",
    "save_checkpoint",
]
