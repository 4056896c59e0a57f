"""Pieces every DP-SGD generator needs, kept in one place because privacy depends on them.

- :class:`PoissonSampler`: the sampling scheme the subsampled-Gaussian accountants assume.
- :func:`resolve_device`: ``cpu`` / ``cuda`` / ``auto`` to a torch device.
- :func:`make_private_critic`: a critic wrapped for DP-SGD by Opacus, the same way for every
  generator.
- :class:`BatchSource`: encoded rows by index, without a full encoded copy of a large table.
- :func:`activate_outputs`: a generator network's raw outputs to encoded-row values.

torch and Opacus are imported only inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, GeneratorError

if TYPE_CHECKING:
    import polars as pl
    import torch

# Above this many bytes of encoded float32 rows, training does not keep the encoded table:
# each Poisson batch is encoded as it is drawn, so training memory is bounded by the batch, not
# by the table. Below it, one encoded copy is small and saves re-encoding every step (~35 ms per
# 1,000 rows of a 43-column table on one core).
ENCODED_TABLE_MAX_BYTES = 64 * 2**20
# Rows per chunk of :meth:`BatchSource.chunks` are chosen to keep a chunk near this size.
CHUNK_MAX_BYTES = 32 * 2**20


class PoissonSampler:
    """Poisson sampling over the whole table: each row is in a batch independently with rate q.

    Drawn as ``k ~ Binomial(n, q)`` then a uniform ``k``-subset, which is the same distribution
    (every subset ``S`` has probability ``q^|S| (1-q)^(n-|S|)``) at a fraction of the cost. The
    generator is seeded from the OS and never from a user seed: the batches must stay secret for
    the subsampling amplification the accountant assumes.

    Args:
        n_rows: rows in the private table.
        sample_rate: the Poisson rate q.
    """

    def __init__(self, n_rows: int, sample_rate: float) -> None:
        if n_rows < 1 or not 0 < sample_rate <= 1:
            raise ConfigError(
                f"Poisson sampling needs at least one row and a rate in (0, 1]; got "
                f"{n_rows} rows at rate {sample_rate}"
            )
        self.n_rows, self.sample_rate = n_rows, sample_rate
        self.rng = np.random.default_rng(secrets.randbits(128))

    def draw(self) -> np.ndarray:
        """Indices (sorted) of the rows in the next batch; may be empty."""
        k = int(self.rng.binomial(self.n_rows, self.sample_rate))
        return np.sort(self.rng.choice(self.n_rows, size=k, replace=False))


def resolve_device(choice: str) -> torch.device:
    """The torch device for ``cpu`` / ``cuda`` / ``auto``.

    Raises:
        ConfigError: ``cuda`` was asked for and no CUDA device is available.
    """
    import torch

    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if choice == "cuda":
        raise ConfigError(
            "device 'cuda' was asked for but torch sees no CUDA GPU here; use device=cpu or auto"
        )
    return torch.device("cpu")


def make_private_critic(
    critic: torch.nn.Module,
    optimizer: Callable[[Iterator[torch.nn.Parameter]], torch.optim.Optimizer],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    grad_sample_mode: str,
) -> tuple[Any, Any]:
    """Wrap a critic for DP-SGD with Opacus; return ``(private_critic, dp_optimizer)``.

    - Refuses a module Opacus cannot clip per record (BatchNorm and the like).
    - ``grad_sample_mode="ghost"``: ghost clipping (fast); ``"hooks"`` / ``"functorch"``: per-sample
      gradients materialised.
    - The noise generator is seeded from the OS, never from a user seed: a seed stored in a
      manifest must not let anyone replay the noise.
    - Gradients are averaged by ``expected_batch_size`` (``q * n``, a public constant), never by
      the sampled batch's size, so one record moves a step by at most ``max_grad_norm``.

    Args:
        critic: the critic module (moved to its device already).
        optimizer: builds the underlying optimizer from the wrapped critic's parameters.
        noise_multiplier, max_grad_norm: sigma and the clipping bound C.
        expected_batch_size: q * n.
        grad_sample_mode: ``ghost``, ``hooks`` or ``functorch``.

    Raises:
        GeneratorError: the critic has layers that DP-SGD cannot handle.
    """
    import torch
    from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizer, DPOptimizerFastGradientClipping
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(critic, strict=False)
    if problems:
        raise GeneratorError(f"the critic is not DP-SGD compatible: {problems}")
    ghost = grad_sample_mode == "ghost"
    private: Any
    if ghost:
        private = GradSampleModuleFastGradientClipping(
            critic,
            batch_first=True,
            loss_reduction="mean",
            max_grad_norm=max_grad_norm,
            use_ghost_clipping=True,
        )
    else:
        private = GradSampleModule(
            critic,
            batch_first=True,
            loss_reduction="mean",
            force_functorch=grad_sample_mode == "functorch",
        )
    device = next(critic.parameters()).device
    noise = torch.Generator(device=device)
    noise.manual_seed(secrets.randbits(63))
    optimizer_cls = DPOptimizerFastGradientClipping if ghost else DPOptimizer
    dp_optimizer = optimizer_cls(
        optimizer(private.parameters()),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
        generator=noise,
    )
    return private, dp_optimizer


@contextmanager
def training_session(device: torch.device, *, num_threads: int, seed: int | None) -> Iterator[None]:
    """The torch state a DP-SGD fit runs in, restored afterwards.

    Sets the thread count (one thread is often much faster for small networks on a busy box),
    forks the global RNGs so a fit does not disturb the caller's, seeds them with ``seed`` (the
    initial weights only: the fit calls :func:`leave_seeded_phase` before its first DP step; the
    DP noise and the sampler have their own OS-seeded generators) or with OS entropy, and
    silences Opacus' harmless "full backward hook" warning.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    cuda = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
            torch.manual_seed(seed if seed is not None else secrets.randbits(63))
            yield
    finally:
        torch.set_num_threads(threads)


def leave_seeded_phase() -> None:
    """Reseed the global torch RNGs (every device) from the OS: call it once the networks are
    initialised and before the first DP step.

    A user's seed may fix the initial weights; it must not fix any draw made while training: the
    latent vectors, dropout masks, Gumbel noise and condition choices of a step are drawn from
    the global RNGs, and how many of them a step draws can depend on the secret Poisson batch
    (dropout over the real rows, conditions per real row). With a known seed, the state of the
    RNGs after a step would then depend on the hidden sampling, and every later draw with it.
    """
    import torch

    torch.manual_seed(secrets.randbits(63))


class RowEncoder(Protocol):
    """What :class:`BatchSource` needs of an encoder: rows to float32 vectors of a fixed width."""

    @property
    def output_dim(self) -> int:
        """Width of one encoded row."""
        ...

    def encode(self, frame: pl.DataFrame) -> npt.NDArray[np.float32]:
        """Encode the rows of ``frame``, one output row per input row."""
        ...


class RowBatches(Protocol):
    """What DP-SGD's loop needs of its rows: their true number (for the Poisson sampler, inside
    the mechanism) and the encoded rows at given row numbers. :class:`BatchSource` and
    :class:`~privsynth_core.privacy.dpsgd_spool.SpooledBatchSource` are such sources."""

    @property
    def n_rows(self) -> int:
        """**Private**: the number of rows."""
        ...

    def get(self, index: npt.NDArray[np.integer[Any]]) -> torch.Tensor:
        """The encoded rows at ``index``, in that order."""
        ...


def chunk_size(encoder: RowEncoder, rows: int | None) -> int:
    """Rows per chunk of a whole-table pass: ``rows``, or by default about ``CHUNK_MAX_BYTES``
    of encoded rows.

    Raises:
        ValueError: ``rows`` is below 1.
    """
    if rows is None:
        return max(1, CHUNK_MAX_BYTES // (4 * max(encoder.output_dim, 1)))
    if rows < 1:
        raise ValueError(f"chunk rows must be >= 1, got {rows}")
    return rows


class BatchSource:
    """Encoded rows of a table by index, for DP-SGD batches and whole-table passes.

    If the encoded table (float32) fits in ``max_encoded_bytes`` it is encoded once and kept on
    ``device``; otherwise only the frame is kept and rows are encoded when asked for, so memory
    is bounded by the batch (or chunk) instead of growing with the table. Encoding is row by row
    and reads nothing but the schema's domain, so both ways give the same rows.

    Args:
        frame: the private rows, conformed to the encoder's schema.
        encoder: turns rows into float32 vectors (``encode``, ``output_dim``).
        device: where the returned tensors live.
        max_encoded_bytes: the largest encoded table kept whole (0: never keep it; None:
            :data:`ENCODED_TABLE_MAX_BYTES`).
    """

    def __init__(
        self,
        frame: pl.DataFrame,
        encoder: RowEncoder,
        device: torch.device,
        *,
        max_encoded_bytes: int | None = None,
    ) -> None:
        import torch

        limit = ENCODED_TABLE_MAX_BYTES if max_encoded_bytes is None else max_encoded_bytes
        self.frame, self.encoder, self.device = frame, encoder, device
        self.n_rows = frame.height
        self.data: torch.Tensor | None = None
        if frame.height * encoder.output_dim * 4 <= limit:
            self.data = torch.from_numpy(encoder.encode(frame)).to(device)

    @property
    def holds_table(self) -> bool:
        """Whether the whole table is kept encoded (else rows are encoded on demand)."""
        return self.data is not None

    def get(self, index: npt.NDArray[np.integer[Any]]) -> torch.Tensor:
        """The encoded rows at ``index`` (row numbers in the frame), in that order."""
        import torch

        if self.data is not None:
            return self.data[torch.from_numpy(np.asarray(index, dtype=np.int64)).to(self.device)]
        rows = self.frame[np.asarray(index, dtype=np.int64)]
        return torch.from_numpy(self.encoder.encode(rows)).to(self.device)

    def chunk_rows(self) -> int:
        """Rows per chunk of :meth:`chunks` by default (about ``CHUNK_MAX_BYTES`` encoded)."""
        return chunk_size(self.encoder, None)

    def chunks(self, rows: int | None = None) -> Iterator[torch.Tensor]:
        """The whole table encoded, as consecutive chunks of at most ``rows`` rows.

        Raises:
            ValueError: ``rows`` is below 1.
        """
        import torch

        size = chunk_size(self.encoder, rows)
        for start in range(0, self.n_rows, size):
            if self.data is not None:
                yield self.data[start : start + size]
            else:
                part = self.frame.slice(start, size)
                yield torch.from_numpy(self.encoder.encode(part)).to(self.device)


def activate_outputs(
    raw: torch.Tensor, spans: list[tuple[int, int, bool]], gumbel_tau: float | None
) -> torch.Tensor:
    """A generator's raw outputs as encoded-row values: tanh on scalar spans; on one-hot group
    spans, Gumbel-softmax samples (training, ``gumbel_tau`` set) or softmax probabilities.

    Args:
        raw: ``(batch, encoded width)`` network outputs.
        spans: ``(start, end, is_group)`` of every span of the encoded row, in order.
        gumbel_tau: Gumbel-softmax temperature, or None for plain softmax.
    """
    import torch
    import torch.nn.functional as F

    parts = []
    for start, end, is_group in spans:
        block = raw[:, start:end]
        if not is_group:
            parts.append(torch.tanh(block))
        elif gumbel_tau is not None:
            parts.append(F.gumbel_softmax(block, tau=gumbel_tau, hard=False, dim=1))
        else:
            parts.append(torch.softmax(block, dim=1))
    return torch.cat(parts, dim=1)
