"""torch and Opacus internals of the DPWGAN generator; imported only when a model is fitted or used.

One critic step (:meth:`DPWGANTrainer.critic_step`) is one step of the Poisson-subsampled Gaussian
mechanism:

1. a Poisson batch of real rows and ``round(q * n)`` fake rows ``G(z)`` (no private data) go
   through the critic together, with per-row losses ``-D(x_i)`` and ``D(G(z_j))``;
2. Opacus clips every row's gradient (or, in ghost mode, scales it by its norm) to
   ``max_grad_norm``, sums, adds Gaussian noise of std ``sigma * max_grad_norm`` drawn for each
   parameter with that parameter's own shape, and divides by the *expected* batch size ``q * n``
   (a public constant, not the sampled batch's size). One real record moves the sum by at most
   ``max_grad_norm``: the sensitivity the accountant assumes;
3. the optimizer steps on that; then the critic's weights are clipped to
   ``[-weight_clip, weight_clip]`` (post-processing).

The unclipped gradient Opacus' first backward pass leaves in ``p.grad`` is always overwritten by
the noised sum in (2) before any update reads it. The generator's steps read the critic only
(post-processing) with Opacus' hooks switched off.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from torch import nn

from privsynth_core import GeneratorError
from privsynth_core.encoding import TableEncoder
from privsynth_core.privacy.dpsgd import (
    activate_outputs,
    leave_seeded_phase,
    make_private_critic,
    resolve_device,
    training_session,
)
from privsynth_core.privacy.dpsgd_loop import StepPlan, cpu_state, restore, run_dpsgd
from privsynth_core.privacy.dpsgd_spool import batch_source

if TYPE_CHECKING:
    from privsynth_core import Accountant, Table
    from privsynth_core.generator import ProgressCallback
    from privsynth_core.privacy.checkpoint import CheckpointStore

    from . import DPPlan, DPWGANParams, Layer

SAMPLE_CHUNK_ROWS = 16_384

_ACTIVATIONS: dict[str, Any] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}


def mlp(in_dim: int, layers: Sequence[Layer], out_dim: int) -> nn.Sequential:
    """Linear -> activation [-> Dropout] per layer, then a Linear output. Never BatchNorm."""
    modules: list[nn.Module] = []
    width = in_dim
    for layer in layers:
        modules += [nn.Linear(width, layer.width), _ACTIVATIONS[layer.activation]()]
        if layer.dropout > 0:
            modules.append(nn.Dropout(layer.dropout))
        width = layer.width
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class GeneratorNet(nn.Module):
    """Latent noise -> an encoded row: tanh for scalars, (Gumbel-)softmax for each group."""

    def __init__(self, latent_dim: int, layers: Sequence[Layer], encoder: TableEncoder) -> None:
        super().__init__()
        self.body = mlp(latent_dim, layers, encoder.output_dim)
        self.spans = [(s.start, s.end, s.is_group) for s in encoder.spans]

    def forward(self, z: torch.Tensor, gumbel_tau: float | None = None) -> torch.Tensor:
        """Activated outputs; groups are Gumbel-softmax samples when ``gumbel_tau`` is set,
        else softmax probabilities."""
        raw = self.body(z)
        return activate_outputs(raw, self.spans, gumbel_tau)


def draw_latent(
    n: int, params: DPWGANParams, *, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` latent vectors from the configured distribution."""
    shape = (n, params.latent_dim)
    if params.latent_distribution == "uniform":
        return torch.rand(shape, device=device, generator=generator) * 2 - 1
    return torch.randn(shape, device=device, generator=generator)


def _optimizer(parameters: Any, params: DPWGANParams, lr: float) -> torch.optim.Optimizer:
    if params.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=(0.5, 0.9))
    return torch.optim.RMSprop(parameters, lr=lr)


class DPWGANTrainer:
    """The generator, the DP critic and their optimizers; one method per kind of step.

    Args:
        encoder: the schema's encoder (its layout sizes both networks).
        params: the generator's parameters.
        n_rows: the released row count n̂ (the true size is private).
        noise_multiplier: sigma.
        sample_rate: the Poisson rate q.
        device: where to train.
    """

    def __init__(
        self,
        encoder: TableEncoder,
        params: DPWGANParams,
        *,
        n_rows: int,
        noise_multiplier: float,
        sample_rate: float,
        device: torch.device,
    ) -> None:
        self.params, self.device = params, device
        self.ghost = params.grad_sample_mode == "ghost"
        self.tau = params.gumbel_tau if params.categorical_output == "gumbel_softmax" else None
        self.generator = GeneratorNet(params.latent_dim, params.generator_layers, encoder)
        self.generator.to(device)
        critic = mlp(encoder.output_dim, params.critic_layers, 1).to(device)
        self.expected_batch_size = sample_rate * n_rows
        self.fake_batch_size = max(1, round(self.expected_batch_size))
        self.critic, self.critic_opt = make_private_critic(
            critic,
            lambda ps: _optimizer(ps, params, params.critic_lr),
            noise_multiplier=noise_multiplier,
            max_grad_norm=params.max_grad_norm,
            expected_batch_size=self.expected_batch_size,
            grad_sample_mode=params.grad_sample_mode,
        )
        self.generator_opt = _optimizer(self.generator.parameters(), params, params.generator_lr)
        self.critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        self.generator_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.last_fake: torch.Tensor | None = None
        # The averaged generator is post-processing of the generator's weights: free of cost.
        self.average = copy.deepcopy(self.generator) if params.generator_ema > 0 else None
        self.generator_steps_taken = 0

    def latent(self, n: int) -> torch.Tensor:
        """Latent vectors for training (global, seeded torch RNG)."""
        return draw_latent(n, self.params, device=self.device)

    @contextmanager
    def hooks_off(self) -> Iterator[None]:
        """Opacus' per-sample hooks off, forward *and* backward: for inputs with no private
        data (fake rows), whose gradient needs no clipping."""
        self.critic.disable_hooks()
        try:
            yield
        finally:
            self.critic.enable_hooks()

    def critic_step(self, real: torch.Tensor) -> float:
        """One DP critic step on the Poisson batch ``real`` (encoded rows, possibly empty).

        Real and fake rows go through the critic together, each with its own per-row loss
        (``-D(x)`` for a real row, ``D(G(z))`` for a fake one), and every row's gradient is
        clipped to ``max_grad_norm`` before the sum is noised. Clipping the fake rows too costs no
        privacy (they hold no private data, and one real record still moves the sum by at most
        ``max_grad_norm``) but keeps the two halves of the WGAN loss on the same scale: with only
        the real half clipped, the critic's per-row gradients (often 50x the bound) would leave
        an unclipped fake half that swamps it, and the critic would stop telling them apart.

        Returns:
            The critic loss ``mean D(fake) - mean D(real)``; it reads real rows, so it is for the
            person running the fit only (not DP).
        """
        opt = self.critic_opt
        opt.zero_grad(set_to_none=True)
        self.critic.train()
        with torch.no_grad():
            fake = self.generator(self.latent(self.fake_batch_size), gumbel_tau=self.tau)
        self.last_fake = fake
        n_real = real.shape[0]
        scores = self.critic(torch.cat([real, fake])).squeeze(1)
        per_row = torch.cat([-scores[:n_real], scores[n_real:]])
        if self.ghost:
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

            DPTensorFastGradientClipping(self.critic, opt, per_row, "mean").backward()
        else:
            per_row.mean().backward()  # type: ignore[no-untyped-call]
        # Clip every row, sum, add N(0, (sigma C)^2) per parameter, divide by q * n; the
        # unclipped gradient the backward pass left in p.grad is overwritten here.
        if opt.pre_step():
            opt.original_optimizer.step()
        with torch.no_grad():
            for param in self.critic_params:
                param.clamp_(-self.params.weight_clip, self.params.weight_clip)
        detached = scores.detach()
        real_mean = float(detached[:n_real].mean()) if n_real else 0.0
        return float(detached[n_real:].mean()) - real_mean

    def generator_step(self) -> float:
        """One generator step against the (DP) critic; touches no private data."""
        self.generator.train()
        fake = self.generator(self.latent(self.fake_batch_size), gumbel_tau=self.tau)
        with self.hooks_off():
            loss = -self.critic(fake).mean()
            grads = torch.autograd.grad(loss, self.generator_params)
        for param, grad in zip(self.generator_params, grads, strict=True):
            param.grad = grad
        self.generator_opt.step()
        self.generator_steps_taken += 1
        if self.average is not None:
            # Warm-up (as TensorFlow's ExponentialMovingAverage) so the random initial weights
            # do not linger in the average of a short run.
            t = self.generator_steps_taken
            decay = min(self.params.generator_ema, (1 + t) / (10 + t))
            with torch.no_grad():
                for kept, current in zip(
                    self.average.parameters(), self.generator.parameters(), strict=True
                ):
                    kept.lerp_(current, 1 - decay)
        return float(loss.detach())

    def final_generator(self) -> GeneratorNet:
        """The generator to keep: the weight average if enabled, else the last weights."""
        return self.average if self.average is not None else self.generator

    def generator_steps(self, step: int) -> float | None:
        """One generator step after every ``n_critic`` critic steps (reads no private data)."""
        return self.generator_step() if step % self.params.n_critic == 0 else None

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers and the weight average, on the CPU: a checkpoint."""
        return {
            "critic": cpu_state(self.critic),
            "generator": cpu_state(self.generator),
            "critic_opt": cpu_state(self.critic_opt.original_optimizer),
            "generator_opt": cpu_state(self.generator_opt),
            "average": cpu_state(self.average) if self.average is not None else None,
            "generator_steps": self.generator_steps_taken,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint (see :meth:`state_dict`)."""
        self.critic.load_state_dict(state["critic"])
        self.generator.load_state_dict(state["generator"])
        self.critic_opt.original_optimizer.load_state_dict(state["critic_opt"])
        self.generator_opt.load_state_dict(state["generator_opt"])
        if self.average is not None and state["average"] is not None:
            self.average.load_state_dict(state["average"])
        self.generator_steps_taken = int(state["generator_steps"])


@dataclass
class TrainResult:
    """What :func:`train` hands back to the plugin."""

    generator: GeneratorNet
    steps: int
    generator_steps: int
    epsilon: float
    accountant_state: dict[str, Any]
    device: str
    seconds_per_epoch: float
    resumed_from: int = 0
    lost_steps: int = 0


def train(
    table: Table,
    encoder: TableEncoder,
    params: DPWGANParams,
    *,
    plan: DPPlan,
    accountant: Accountant,
    target_epsilon: float,
    delta: float,
    progress: ProgressCallback | None,
    checkpoints: CheckpointStore | None = None,
) -> TrainResult:
    """Fit a DPWGAN on ``table`` under ``plan`` with the shared DP-SGD loop
    (:func:`privsynth_core.privacy.dpsgd_loop.run_dpsgd`): stops before a step would pass the
    target, and resumes from ``checkpoints`` when they hold an interrupted attempt. A
    partitioned table's batches come from its rows spooled to local files
    (:func:`privsynth_core.privacy.dpsgd_spool.batch_source`): the encoder reads the schema
    only, so nothing else needs the rows."""
    device = resolve_device(params.device)
    with training_session(device, num_threads=params.num_threads, seed=params.seed):
        resumed = restore(checkpoints, accountant)
        # The plan's sizes come from the released row count n̂ (q * n̂ is the public expected
        # batch size); only the Poisson sampler reads the table's true size, inside the loop.
        trainer = DPWGANTrainer(
            encoder,
            params,
            n_rows=plan.planning_rows,
            noise_multiplier=plan.noise_multiplier,
            sample_rate=plan.sample_rate,
            device=device,
        )
        leave_seeded_phase()
        with batch_source(table, encoder, device) as source:
            loop = run_dpsgd(
                trainer,
                source,
                plan=StepPlan(
                    plan.noise_multiplier,
                    plan.sample_rate,
                    plan.steps_per_epoch,
                    plan.allowed_steps,
                    params.epochs,
                ),
                accountant=accountant,
                target_epsilon=target_epsilon,
                delta=delta,
                progress=progress,
                checkpoints=checkpoints,
                resumed=resumed,
            )
    net = trainer.final_generator().to("cpu").eval()
    this_attempt = max(loop.steps - loop.resumed_from, 1)
    return TrainResult(
        generator=net,
        steps=loop.steps,
        generator_steps=trainer.generator_steps_taken,
        epsilon=loop.epsilon,
        accountant_state=loop.accountant_state,
        device=str(device),
        seconds_per_epoch=loop.seconds / max(this_attempt / plan.steps_per_epoch, 1e-9),
        resumed_from=loop.resumed_from,
        lost_steps=loop.lost_steps,
    )


def sample_rows(
    net: GeneratorNet,
    encoder: TableEncoder,
    params: DPWGANParams,
    n_rows: int,
    *,
    seed: int | None,
) -> pl.DataFrame:
    """``n_rows`` synthetic rows; the same network and seed give the same rows."""
    seed = seed if seed is not None else secrets.randbits(63)
    latent_rng = torch.Generator().manual_seed(seed)
    decode_rng = np.random.default_rng(seed)
    cpu = torch.device("cpu")
    frames = []
    net.eval()
    with torch.no_grad():
        for start in range(0, n_rows, SAMPLE_CHUNK_ROWS):
            count = min(SAMPLE_CHUNK_ROWS, n_rows - start)
            out = net(draw_latent(count, params, device=cpu, generator=latent_rng)).numpy()
            frames.append(encoder.decode(out, rng=decode_rng))
    if not frames:
        return encoder.decode(np.zeros((0, encoder.output_dim), dtype=np.float32))
    return pl.concat(frames)


def load_generator(path: Path, encoder: TableEncoder, params: DPWGANParams) -> GeneratorNet:
    """Rebuild the generator network from saved weights (``torch.load`` of tensors only).

    Raises:
        GeneratorError: the file is missing or does not fit the schema and parameters.
    """
    net = GeneratorNet(params.latent_dim, params.generator_layers, encoder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise GeneratorError(
            f"cannot load the DPWGAN weights {path}: {str(exc).splitlines()[0]}; the model "
            f"directory is damaged or was written for another schema"
        ) from None
    return net.eval()
