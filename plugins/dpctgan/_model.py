"""torch and Opacus internals of DP-CTGAN; imported only when a model is fitted or used.

One critic step (:meth:`DPCTGANTrainer.critic_step`) is one step of the Poisson-subsampled
Gaussian mechanism. The critic sees one batch: the Poisson-sampled real records ``x_i``, each with
the condition ``c_i`` = its own category of a randomly chosen discrete column (a function of that
record only), and ``round(q * n)`` generated rows (a public constant) with conditions drawn from
the already-released noisy marginals. Every row's gradient of its own loss term is clipped to
``max_grad_norm`` by Opacus (ghost clipping by default), the clipped gradients are summed,
Gaussian noise of std ``sigma * max_grad_norm`` of each parameter's shape is added, and the sum is
divided by the *expected* batch size ``q * n``. A real record changes exactly one clipped term, so
the sensitivity is ``max_grad_norm``; the generated rows read no private data (clipping them only
keeps the real and fake halves of the loss on one scale).

The unclipped gradient Opacus' first backward pass leaves in ``p.grad`` is always overwritten by
the noised sum in (2) before any update reads it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from privsynth_core import GeneratorError
from privsynth_core.privacy.dpsgd import (
    BatchSource,
    leave_seeded_phase,
    make_private_critic,
    resolve_device,
    training_session,
)
from privsynth_core.privacy.dpsgd_loop import Resumed, StepPlan, cpu_state, restore, run_dpsgd
from privsynth_core.privacy.dpsgd_spool import SpooledBatchSource, batch_source

from ._cells import cells_from_state, cells_state, learned_columns
from ._encoding import CTGANEncoder
from ._marginals import (
    CellsRelease,
    Conditioner,
    MarginalLoss,
    NoisyMarginals,
    release_with_cells,
)
from ._nets import GeneratorNet, critic_net

if TYPE_CHECKING:
    from collections.abc import Mapping

    from privsynth_core import Accountant, Schema, Table
    from privsynth_core.generator import ProgressCallback
    from privsynth_core.privacy.cells import LearnedCells
    from privsynth_core.privacy.checkpoint import CheckpointStore

    from . import DPCTGANParams
    from ._plan import DPPlan

SAMPLE_CHUNK_ROWS = 16_384


def make_encoder(
    schema: Schema, params: DPCTGANParams, cells: Mapping[str, LearnedCells] | None = None
) -> CTGANEncoder:
    """The encoder of a schema under these parameters, built from the domain and the learned
    cells (a mechanism output; none: equal-width bins)."""
    return CTGANEncoder(
        schema,
        numeric_bins=params.numeric_bins,
        max_exact_values=params.max_exact_values,
        cells=cells,
    )


# -- training ---------------------------------------------------------------------------------


class DPCTGANTrainer:
    """The generator, the DP critic, their optimizers and the conditioner.

    Args:
        encoder: the schema's encoder.
        conditioner: conditional vectors (from the noisy marginals).
        marginal_loss: the generator's marginal-matching loss (None: not used).
        params: the generator's parameters.
        n_rows: the released row count n̂ (the true size is private).
        noise_multiplier: DP-SGD's sigma.
        sample_rate: the Poisson rate q.
        device: where to train.
    """

    def __init__(
        self,
        encoder: CTGANEncoder,
        conditioner: Conditioner,
        marginal_loss: MarginalLoss | None,
        params: DPCTGANParams,
        *,
        n_rows: int,
        noise_multiplier: float,
        sample_rate: float,
        device: torch.device,
    ) -> None:
        self.params, self.device, self.cond = params, device, conditioner
        self.marginal_loss = marginal_loss
        self.ghost = params.grad_sample_mode == "ghost"
        self.generator = GeneratorNet(
            params.embedding_dim + conditioner.dim, params.generator_dim, encoder
        ).to(device)
        critic = critic_net(
            encoder.output_dim + conditioner.dim, params.critic_dim, params.critic_dropout
        ).to(device)
        self.expected_batch_size = sample_rate * n_rows
        # Public constant: tying it to the sampled batch's size would let one record move the
        # fake term too (sensitivity 2C instead of C).
        self.fake_batch_size = max(1, round(self.expected_batch_size))
        self.critic, self.critic_opt = make_private_critic(
            critic,
            lambda ps: torch.optim.Adam(ps, lr=params.critic_lr, betas=(0.5, 0.9)),
            noise_multiplier=noise_multiplier,
            max_grad_norm=params.max_grad_norm,
            expected_batch_size=self.expected_batch_size,
            grad_sample_mode=params.grad_sample_mode,
        )
        self.generator_opt = torch.optim.Adam(
            self.generator.parameters(),
            lr=params.generator_lr,
            betas=(0.5, 0.9),
            weight_decay=params.generator_decay,
        )
        self.critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        self.generator_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.bce = params.critic_loss == "bce"
        # The last critic step's input rows (real first) and real-row count: for audits/tests.
        self.last_batch: torch.Tensor | None = None
        self.last_real_rows = 0
        self.generator_steps_taken = 0

    @contextmanager
    def hooks_off(self) -> Iterator[None]:
        """Opacus' per-sample hooks off, forward *and* backward: for rows with no private data."""
        self.critic.disable_hooks()
        try:
            yield
        finally:
            self.critic.enable_hooks()

    def fake_rows(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generated rows with their conditions: (activated rows, cond, column, category)."""
        cond, col, cat = self.cond.draw(n)
        z = torch.randn(n, self.params.embedding_dim, device=self.device)
        raw = self.generator(torch.cat([z, cond], dim=1))
        return raw, cond, col, cat

    def _real_loss(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-record critic loss on real rows (lower = 'looks real')."""
        return F.softplus(-scores) if self.bce else -scores

    def _fake_loss(self, scores: torch.Tensor) -> torch.Tensor:
        return F.softplus(scores) if self.bce else scores

    def critic_step(self, real: torch.Tensor) -> float:
        """One DP critic step on the Poisson batch ``real`` (encoded rows, possibly empty).

        Real and fake rows go through the critic as one batch and every row's gradient is
        clipped: the fake rows need no clipping for privacy (they read no private data, and their
        number is a public constant), but clipping them too keeps the two halves of the loss on
        the same scale.

        Returns:
            The critic loss; it reads real rows, so it is for the person running the fit only
            (not DP, never stored).
        """
        opt = self.critic_opt
        opt.zero_grad(set_to_none=True)
        self.critic.train()
        with torch.no_grad():
            raw, cond, _, _ = self.fake_rows(self.fake_batch_size)
            fake = torch.cat([self.generator.activate(raw, self.params.gumbel_tau), cond], dim=1)
        m = real.shape[0]
        batch = torch.cat([torch.cat([real, self.cond.from_rows(real)], dim=1), fake], dim=0)
        self.last_batch, self.last_real_rows = batch.detach(), m
        scores = self.critic(batch).squeeze(1)
        per_row = torch.cat([self._real_loss(scores[:m]), self._fake_loss(scores[m:])])
        if self.ghost:
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

            DPTensorFastGradientClipping(self.critic, opt, per_row, "mean").backward()
        else:
            mean_loss: Any = per_row.mean()  # torch's backward is untyped for mypy
            mean_loss.backward()
        # Clip, sum, add noise of std sigma * C, divide by the expected batch size q * n.
        if opt.pre_step():
            opt.original_optimizer.step()
        if not self.bce:
            with torch.no_grad():
                for param in self.critic_params:
                    param.clamp_(-self.params.critic_weight_clip, self.params.critic_weight_clip)
        detached = per_row.detach()
        return float(detached[:m].mean()) + float(detached[m:].mean()) if m else float("nan")

    def generator_step(self) -> float:
        """One generator step against the (DP) critic; reads no private data."""
        self.generator.train()
        raw, cond, col, cat = self.fake_rows(self.fake_batch_size)
        fake = self.generator.activate(raw, self.params.gumbel_tau)
        with self.hooks_off():
            scores = self.critic(torch.cat([fake, cond], dim=1))
            adversarial = F.softplus(-scores).mean() if self.bce else -scores.mean()
            loss = adversarial + self.cond.loss(raw, col, cat)
            if self.marginal_loss is not None:
                loss = loss + self.params.marginal_loss_weight * self.marginal_loss(raw)
            grads = torch.autograd.grad(loss, self.generator_params)
        for param, grad in zip(self.generator_params, grads, strict=True):
            param.grad = grad
        self.generator_opt.step()
        self.generator_steps_taken += 1
        return float(loss.detach())

    def generator_steps(self, step: int) -> float | None:
        """``generator_steps`` generator updates after every critic step (no private data)."""
        loss = None
        for _ in range(self.params.generator_steps):
            loss = self.generator_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers on the CPU: a checkpoint."""
        return {
            "critic": cpu_state(self.critic),
            "generator": cpu_state(self.generator),
            "critic_opt": cpu_state(self.critic_opt.original_optimizer),
            "generator_opt": cpu_state(self.generator_opt),
            "generator_steps": self.generator_steps_taken,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint (see :meth:`state_dict`)."""
        self.critic.load_state_dict(state["critic"])
        self.generator.load_state_dict(state["generator"])
        self.critic_opt.original_optimizer.load_state_dict(state["critic_opt"])
        self.generator_opt.load_state_dict(state["generator_opt"])
        self.generator_steps_taken = int(state["generator_steps"])


def recalibrate_batchnorm(trainer: DPCTGANTrainer, batches: int = 20) -> None:
    """Replace the generator's BatchNorm running averages by exact statistics of its final
    weights (generated rows only: no privacy cost), so that sampling in eval mode -- one row at
    a time if need be -- matches what the critic saw in training."""
    net = trainer.generator
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the passes below
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            trainer.fake_rows(trainer.fake_batch_size)
    for bn in norms:
        bn.momentum = 0.1
    net.eval()


@dataclass
class TrainResult:
    """What :func:`train` hands back to the plugin."""

    generator: GeneratorNet
    marginals: dict[str, list[float]]
    cells: dict[str, LearnedCells]
    n_tables: int
    steps: int
    generator_steps: int
    epsilon: float
    accountant_state: dict[str, Any]
    device: str
    seconds_per_epoch: float
    resumed_from: int = 0
    lost_steps: int = 0


def _marginals_state(
    marginals: NoisyMarginals, cells: Mapping[str, LearnedCells]
) -> dict[str, Any]:
    """The released marginals and cells as JSON (saved with checkpoints, so a resume never
    re-releases)."""
    return {
        "one_way": marginals.one_way,
        "two_way": [[f, o, table] for (f, o), table in marginals.two_way.items()],
        "cells": cells_state(cells),
    }


def _marginals_from(state: dict[str, Any]) -> NoisyMarginals:
    return NoisyMarginals(
        one_way={k: list(v) for k, v in state["one_way"].items()},
        two_way={(f, o): table for f, o, table in state["two_way"]},
    )


def train(
    table: Table,
    params: DPCTGANParams,
    *,
    plan: DPPlan,
    accountant: Accountant,
    target_epsilon: float,
    delta: float,
    progress: ProgressCallback | None,
    max_encoded_bytes: int | None = None,
    checkpoints: CheckpointStore | None = None,
) -> TrainResult:
    """Release the noisy marginals, then train under ``plan`` with the shared DP-SGD loop
    (:func:`privsynth_core.privacy.dpsgd_loop.run_dpsgd`); stop before passing the target.

    The marginals' exact counts are ``table.reduce`` passes (:func:`._marginals.release_with_cells`:
    on a partitioned table, on its cluster), taken before DP-SGD's rows are spooled
    (:func:`privsynth_core.privacy.dpsgd_spool.batch_source`): the spool serves the batches only.
    ``max_encoded_bytes``: the largest encoded table kept whole in memory for the batches
    (default :data:`privsynth_core.privacy.dpsgd.ENCODED_TABLE_MAX_BYTES`); above it, rows are
    encoded batch by batch. With ``checkpoints`` holding an interrupted attempt, training
    resumes from it, reusing the marginals it released.
    """
    device = resolve_device(params.device)
    with training_session(device, num_threads=params.num_threads, seed=params.seed):
        resumed = restore(checkpoints, accountant)
        # The release reads the table through its reduce passes only: no spool yet.
        released = _release(table, params, plan, accountant, checkpoints, resumed)
        with batch_source(
            table, released.encoder, device, max_encoded_bytes=max_encoded_bytes
        ) as source:
            return _train(
                table,
                source,
                released,
                params,
                plan,
                accountant,
                target_epsilon,
                delta,
                progress,
                checkpoints,
                resumed,
            )


def _release(
    table: Table,
    params: DPCTGANParams,
    plan: DPPlan,
    accountant: Accountant,
    checkpoints: CheckpointStore | None,
    resumed: Resumed | None,
) -> CellsRelease:
    """The noisy marginals, the learned cells and the encoder built from them: read back from
    the checkpoint being resumed, else released (and accounted) now; none with no release
    planned (``marginals_share = 0``)."""
    if resumed is not None and "one_way" in resumed.extra_state:
        cells = cells_from_state(
            resumed.extra_state.get("cells", {}), learned_columns(table.schema, params)
        )
        # released once: never again
        return CellsRelease(
            _marginals_from(resumed.extra_state), cells, make_encoder(table.schema, params, cells)
        )
    if not plan.release_steps:
        return CellsRelease(NoisyMarginals(), {}, make_encoder(table.schema, params, {}))
    if checkpoints is not None:  # write-ahead, as every DP step
        for sigma, _ in plan.release_steps:
            checkpoints.log_steps(noise_multiplier=sigma, sample_rate=1.0, num_steps=1)
    released = release_with_cells(table, params, plan.marginal_columns, plan.release_steps)
    for sigma, _ in plan.release_steps:
        accountant.step(noise_multiplier=sigma, sample_rate=1.0)
    return released


def _train(
    table: Table,
    source: BatchSource | SpooledBatchSource,
    released: CellsRelease,
    params: DPCTGANParams,
    plan: DPPlan,
    accountant: Accountant,
    target_epsilon: float,
    delta: float,
    progress: ProgressCallback | None,
    checkpoints: CheckpointStore | None,
    resumed: Resumed | None,
) -> TrainResult:
    device = source.device
    marginals, cells, encoder = released.marginals, released.cells, released.encoder
    loss = (
        MarginalLoss(encoder, marginals, device)
        if marginals.n_tables and params.marginal_loss_weight > 0
        else None
    )
    # Sizes come from the released row count n̂ (q * n̂ is the public expected batch size);
    # only the Poisson sampler reads the table's true size, inside the loop.
    trainer = DPCTGANTrainer(
        encoder,
        Conditioner(encoder, marginals.one_way, device),
        loss,
        params,
        n_rows=table.planning_rows,
        noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate,
        device=device,
    )
    leave_seeded_phase()
    epochs = (
        params.epochs
        if params.epochs is not None
        else math.ceil(plan.allowed_steps / plan.steps_per_epoch)
    )
    loop = run_dpsgd(
        trainer,
        source,
        plan=StepPlan(
            plan.noise_multiplier,
            plan.sample_rate,
            plan.steps_per_epoch,
            plan.allowed_steps,
            epochs,
        ),
        accountant=accountant,
        target_epsilon=target_epsilon,
        delta=delta,
        progress=progress,
        checkpoints=checkpoints,
        resumed=resumed,
        extra_state=_marginals_state(marginals, cells),
    )
    recalibrate_batchnorm(trainer)
    this_attempt = max(loop.steps - loop.resumed_from, 1)
    return TrainResult(
        generator=trainer.generator.to("cpu").eval(),
        marginals=marginals.one_way,
        cells=cells,
        n_tables=marginals.n_tables,
        steps=loop.steps,
        generator_steps=trainer.generator_steps_taken,
        epsilon=loop.epsilon,
        accountant_state=loop.accountant_state,
        device=str(device),
        seconds_per_epoch=loop.seconds / max(this_attempt / plan.steps_per_epoch, 1e-9),
        resumed_from=loop.resumed_from,
        lost_steps=loop.lost_steps,
    )


# -- sampling and loading -----------------------------------------------------------------------


def sample_rows(
    net: GeneratorNet,
    encoder: CTGANEncoder,
    marginals: dict[str, list[float]],
    params: DPCTGANParams,
    n_rows: int,
    *,
    seed: int | None,
) -> pl.DataFrame:
    """``n_rows`` synthetic rows, conditions drawn from the noisy marginals (as CTGAN samples
    from the training frequencies); the same network and seed give the same rows.

    Categories are drawn from the generator's softmax (what argmax of CTGAN's Gumbel-softmax
    samples from), so the output is reproducible from ``seed`` alone.
    """
    seed = seed if seed is not None else secrets.randbits(63)
    torch_rng = torch.Generator().manual_seed(seed)
    decode_rng = np.random.default_rng(seed)
    cond = Conditioner(encoder, marginals, torch.device("cpu"))
    frames = []
    net.eval()
    with torch.no_grad():
        for start in range(0, n_rows, SAMPLE_CHUNK_ROWS):
            count = min(SAMPLE_CHUNK_ROWS, n_rows - start)
            c, _, _ = cond.draw(count, generator=torch_rng)
            z = torch.randn(count, params.embedding_dim, generator=torch_rng)
            out = net.activate(net(torch.cat([z, c], dim=1)), None).numpy()
            frames.append(encoder.decode(out, rng=decode_rng))
    if not frames:
        return encoder.decode(np.zeros((0, encoder.output_dim), dtype=np.float32))
    return pl.concat(frames)


def load_generator(
    path: Path, encoder: CTGANEncoder, marginals: dict[str, list[float]], params: DPCTGANParams
) -> GeneratorNet:
    """Rebuild the generator from saved weights (``torch.load`` of tensors only).

    Raises:
        GeneratorError: the file is missing or does not fit the schema and parameters.
    """
    cond_dim = Conditioner(encoder, marginals, torch.device("cpu")).dim
    net = GeneratorNet(params.embedding_dim + cond_dim, params.generator_dim, encoder)
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise GeneratorError(
            f"cannot load the DP-CTGAN weights {path}: {str(exc).splitlines()[0]}; the model "
            f"directory is damaged or was written for another schema"
        ) from None
    return net.eval()
