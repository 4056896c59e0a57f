"""Pieces every DP-SGD generator needs, kept in one place because privacy depends on them.

- :class:`PoissonSampler`: the sampling scheme the subsampled-Gaussian accountants assume.
- :func:`resolve_device`: ``cpu`` / ``cuda`` / ``auto`` to a torch device (torch is imported only
  when it is called, so importing this module stays cheap).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    import torch


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
