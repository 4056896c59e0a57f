"""CTGAN's networks (after ``ctgan.synthesizers.ctgan``), with the critic at pac = 1.

The generator is CTGAN's: residual blocks with BatchNorm (it never sees real data, so mixing rows
in a batch leaks nothing), a Linear to the encoded row, tanh on scalars and Gumbel-softmax on
one-hot groups. The critic is CTGAN's discriminator without ``pac`` and without BatchNorm: one
record in, one score out, so each record's gradient can be clipped on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from privsynth_core.privacy.dpsgd import activate_outputs

if TYPE_CHECKING:
    from ._encoding import CTGANEncoder


class Residual(nn.Module):
    """CTGAN's residual block: ``cat(ReLU(BN(Linear(x))), x)``. BatchNorm is fine here: the
    generator never sees real data."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class GeneratorNet(nn.Module):
    """CTGAN's generator: residual layers on ``[z, cond]``, a Linear to the encoded row.

    Args:
        in_dim: latent dimension plus conditional-vector width.
        widths: residual layer widths.
        encoder: the schema's encoder (output layout and activations).
    """

    def __init__(self, in_dim: int, widths: Sequence[int], encoder: CTGANEncoder) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for width in widths:
            layers.append(Residual(dim, width))
            dim += width
        layers.append(nn.Linear(dim, encoder.output_dim))
        self.seq = nn.Sequential(*layers)
        self.spans = [(s.start, s.end, s.is_group) for s in encoder.spans]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs (logits for groups, pre-tanh for scalars)."""
        out: torch.Tensor = self.seq(x)
        return out

    def activate(self, raw: torch.Tensor, gumbel_tau: float | None) -> torch.Tensor:
        """tanh on scalars; Gumbel-softmax (training) or softmax (sampling) on each group."""
        return activate_outputs(raw, self.spans, gumbel_tau)


def critic_net(in_dim: int, widths: Sequence[int], dropout: float) -> nn.Sequential:
    """CTGAN's discriminator with pac = 1: ``Linear -> LeakyReLU(0.2) -> Dropout`` per layer,
    then a Linear to one score. Never BatchNorm (it mixes records in a batch)."""
    layers: list[nn.Module] = []
    dim = in_dim
    for width in widths:
        layers += [nn.Linear(dim, width), nn.LeakyReLU(0.2)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        dim = width
    layers.append(nn.Linear(dim, 1))
    return nn.Sequential(*layers)
