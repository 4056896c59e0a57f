"""A small, real DP-SGD generator with checkpoint support, for the resume and fault tests.

It learns one softmax distribution per column (the logits of the column's domain bins, like the
``independent`` baseline) by DP-SGD on the negative log-likelihood: Poisson sampling with rate
``q``, each record's gradient clipped to L2 norm ``clip`` across all columns, Gaussian noise of
standard deviation ``sigma * clip`` on the sum, noise calibrated by the run's accountant so the
planned steps meet the target. Training is in blocks of ``checkpoint_every`` steps, each logged
ahead and checkpointed after, following :mod:`privsynth_core.privacy.checkpoint`. ``step_seconds`` slows
every step down so a test can kill the process mid-training, and ``pid_dir`` tells it which
process trains (a file named after the pid, written when training starts). The
``test-dpsgd-marginals-nockpt`` variant trains the same way without checkpoints.

Per-record gradient of column c's NLL w.r.t. its logits: ``p_c - onehot(x_c)``, so the clipped
sum over a batch is ``(sum_i w_i) p - sum_i w_i onehot(x_i)`` with ``w_i = min(1, C / |g_i|)``
and ``|g_i|^2 = sum_c (|p_c|^2 - 2 p_c[x_ic] + 1)``.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from pydantic import Field

from privsynth_core import FitSummary, GeneratorParams, Progress, hookimpl
from privsynth_core.privacy.calibration import noise_for
from privsynth_core.privacy.cells import column_values
from privsynth_core.privacy.dpsgd_generator import DPSGDGenerator
from privsynth_core.privacy.histograms import histogram_bounds
from privsynth_core.registry import accountants
from privsynth_core.schema import Column, ColumnKind
from privsynth_plugins.independent import _decode

if TYPE_CHECKING:
    from privsynth_core import PrivacyBudget, Table
    from privsynth_core.generator import ProgressCallback


class DPSGDMarginalsParams(GeneratorParams):
    """Parameters of the test DP-SGD marginals generator."""

    steps: int = Field(200, ge=1, description="planned DP-SGD steps")
    sample_rate: float = Field(0.05, gt=0, le=1, description="Poisson sampling rate")
    clip: float = Field(1.0, gt=0, description="per-record L2 clipping bound")
    lr: float = Field(2.0, gt=0, description="learning rate")
    bins: int = Field(16, ge=2, description="bins per numeric column")
    checkpoint_every: int = Field(10, ge=1, description="steps per logged block / checkpoint")
    step_seconds: float = Field(0.0, ge=0, description="pause per step (tests only)")
    seed: int | None = Field(None, description="sampling and noise seed (tests only)")
    pid_dir: str | None = Field(
        None, description="folder for a file named after the training process's pid (tests only)"
    )


def _codes(series: pl.Series, column: Column, bins: int) -> tuple[np.ndarray, int]:
    """Bin index of every value (the last bin holds missing values) and the number of bins."""
    if column.kind is ColumnKind.CATEGORICAL:
        assert column.categories is not None
        size = len(column.categories) + 1
        index = {c: i for i, c in enumerate(column.categories)}
        codes = np.array(
            [index.get(v, size - 1) if v is not None else size - 1 for v in series.to_list()]
        )
        return codes, size
    if column.kind is ColumnKind.BOOLEAN:
        values = series.to_list()
        return np.array([2 if v is None else int(v) for v in values]), 3
    lower, upper = histogram_bounds(column)
    values = np.nan_to_num(column_values(series, column.kind), nan=lower)  # nulls come back as NaN
    scaled = np.floor((values - lower) / (upper - lower) * bins)
    codes = np.clip(scaled, 0, bins - 1).astype(int)
    codes[series.is_null().to_numpy()] = bins
    return codes, bins + 1


class DPSGDMarginalsGenerator(DPSGDGenerator[DPSGDMarginalsParams]):
    """Per-column softmax marginals trained with DP-SGD; resumable from checkpoints."""

    generator_id = "test-dpsgd-marginals"
    description = "test-only: per-column marginals trained with DP-SGD, checkpointed"
    is_dp = True
    supports_checkpoints = True
    Params = DPSGDMarginalsParams

    def __init__(self, params: DPSGDMarginalsParams | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._logits: dict[str, list[float]] = {}

    @classmethod
    def dp_plan(cls, *, n_rows: int, params: GeneratorParams) -> tuple[float, int]:
        """The parameters' sample rate and steps, whatever the size."""
        assert isinstance(params, DPSGDMarginalsParams)
        return params.sample_rate, params.steps

    def _fit(
        self,
        table: Table,
        *,
        budget: PrivacyBudget | None,
        progress: ProgressCallback | None,
    ) -> FitSummary:
        assert budget is not None
        p, accountant = self.params, self.accountant_id
        if p.pid_dir is not None:
            Path(p.pid_dir).mkdir(parents=True, exist_ok=True)
            (Path(p.pid_dir) / str(os.getpid())).write_text(str(budget.epsilon), encoding="utf-8")
        acc_cls = accountants().get(accountant)
        acc = acc_cls()
        n, q = table.n_rows, p.sample_rate
        sigma = noise_for(
            acc_cls, target_epsilon=budget.epsilon, delta=budget.delta, sample_rate=q, steps=p.steps
        )
        columns = table.schema.columns
        encoded = [_codes(table.frame[c.name], c, p.bins) for c in columns]
        offsets = np.cumsum([0] + [size for _, size in encoded])
        flat = np.stack([codes + offsets[i] for i, (codes, _) in enumerate(encoded)], axis=1)
        logits = np.zeros(offsets[-1])
        resumed_from, lost = 0, 0
        if self.checkpoints is not None:
            checkpoint = self.checkpoints.restore_accountant(acc)
            if checkpoint is not None:
                logits = np.load(checkpoint.directory / "logits.npy")
                resumed_from, lost = checkpoint.step, checkpoint.lost_steps
        rng = np.random.default_rng(p.seed)
        while acc.steps_taken < p.steps:
            block = min(p.checkpoint_every, p.steps - acc.steps_taken)
            trial = acc_cls()
            trial.history = list(acc.history)
            trial.step(noise_multiplier=sigma, sample_rate=q, num_steps=block)
            if trial.get_epsilon(delta=budget.delta) > budget.epsilon:
                break  # the next block would exceed the target: stop before it
            if self.checkpoints is not None:
                self.checkpoints.log_steps(noise_multiplier=sigma, sample_rate=q, num_steps=block)
            for _ in range(block):
                logits = self._step(logits, flat, offsets, rng, sigma, n)
                if p.step_seconds:
                    time.sleep(p.step_seconds)
            acc.step(noise_multiplier=sigma, sample_rate=q, num_steps=block)
            if self.checkpoints is not None:
                self.checkpoints.save(
                    step=acc.steps_taken,
                    accountant_state=acc.state_dict(),
                    write=partial(_save_logits, logits.copy()),
                )
            if progress is not None:
                progress(
                    Progress(
                        epoch=1,
                        epochs=1,
                        step=acc.steps_taken,
                        epsilon=acc.get_epsilon(delta=budget.delta),
                    )
                )
        self._logits = {
            c.name: logits[offsets[i] : offsets[i + 1]].tolist() for i, c in enumerate(columns)
        }
        return FitSummary(
            private=True,
            epsilon=acc.get_epsilon(delta=budget.delta),
            delta=budget.delta,
            accountant_id=accountant,
            accountant_state=acc.state_dict(),
            steps=acc.steps_taken,
            epochs=acc.steps_taken * q,
            stopped_early=acc.steps_taken < p.steps,
            noise_multiplier=sigma,
            sample_rate=q,
            extra={"resumed_from_step": resumed_from, "lost_steps_counted": lost},
        )

    def _step(
        self,
        logits: np.ndarray,
        flat: np.ndarray,
        offsets: np.ndarray,
        rng: np.random.Generator,
        sigma: float,
        n: int,
    ) -> np.ndarray:
        p = self.params
        assert isinstance(p, DPSGDMarginalsParams)
        probs = np.concatenate([_softmax(logits[a:b]) for a, b in itertools.pairwise(offsets)])
        batch = flat[rng.random(n) < p.sample_rate]
        sq = sum(float(np.sum(probs[a:b] ** 2)) for a, b in itertools.pairwise(offsets))
        norms = np.sqrt(np.maximum(sq - 2 * probs[batch].sum(axis=1) + flat.shape[1], 1e-12))
        weights = np.minimum(1.0, p.clip / norms)
        grad = weights.sum() * probs - np.bincount(
            batch.ravel(), np.repeat(weights, batch.shape[1]), minlength=logits.size
        )
        noisy = (grad + rng.normal(0.0, sigma * p.clip, size=logits.size)) / (p.sample_rate * n)
        return np.asarray(logits - p.lr * noisy, dtype=float)

    def _sample(self, n_rows: int, *, seed: int | None) -> pl.DataFrame:
        assert self.schema is not None and isinstance(self.params, DPSGDMarginalsParams)
        rng = np.random.default_rng(seed)
        data = {}
        for column in self.schema.columns:
            probs = _softmax(np.asarray(self._logits[column.name]))
            if not column.nullable:
                probs[-1] = 0.0
                probs /= probs.sum()
            picks = rng.choice(probs.size, size=n_rows, p=probs)
            data[column.name] = _decode(
                column, picks, picks == probs.size - 1, rng, self.params.bins
            )
        return pl.DataFrame(data)

    def _save_state(self, directory: Path) -> None:
        import json

        (directory / "logits.json").write_text(json.dumps(self._logits), encoding="utf-8")

    def _load_state(self, directory: Path) -> None:
        import json

        self._logits = json.loads((directory / "logits.json").read_text(encoding="utf-8"))


class NoCheckpointMarginalsGenerator(DPSGDMarginalsGenerator):
    """The same training, without checkpoint support (an interrupted fit cannot resume)."""

    generator_id = "test-dpsgd-marginals-nockpt"
    description = "test-only: per-column marginals trained with DP-SGD, no checkpoints"
    supports_checkpoints = False


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return np.asarray(e / e.sum(), dtype=float)


def _save_logits(logits: np.ndarray, directory: Path) -> None:
    np.save(directory / "logits.npy", logits)


@hookimpl
def register_generators(register: Callable[[type[DPSGDGenerator[Any]]], None]) -> None:
    """Contribute the test generators."""
    register(DPSGDMarginalsGenerator)
    register(NoCheckpointMarginalsGenerator)
