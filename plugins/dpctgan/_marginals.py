"""The noisy marginals of DP-CTGAN: their release (the only non-SGD use of private data), the
conditional vectors drawn from them, and the generator loss that pulls towards them.

Released once, before training, with the Gaussian mechanism (:func:`release_with_cells`), in
two steps:

1. a one-way histogram of every column over its marginal groups (categories; runs of values for
   integers one-hot over their values; the null slot), except that a *binned* number's is
   replaced by the levels of its tree of histograms over a fine public grid (:mod:`._cells`),
   from which its cells and its one-way marginal over them are derived: ``k1`` histograms;
2. for each *focus* column (``focus_columns``; none by default), a two-way histogram of it with
   every other column, over the groups the learned cells give: ``k2`` histograms (no second
   step without focus columns).

The exact counts behind both steps come from two :meth:`Table.reduce
<privsynth_core.table.Table.reduce>` passes with the same count functions on either kind of
table (:func:`._cells.exact_trees`, then :func:`._counts.exact_marginals` with the encoder
built from step 1's cells): a partitioned table counts on its cluster's workers, one partition
per task, and only the summed count vectors reach this process; a one-file table counts its
frame. The noise is added here, once, to the sums.

Each record adds one count to at most one cell of each histogram (a tree's levels included: a
value lies in one node per level, a null only in the null count), so step ``i`` has L2
sensitivity ``sqrt(k_i)`` under add/remove-one. With ``k = k1 + k2``, each count gets exact
discrete Gaussian noise (OpenDP, cryptographic source, never seeded) of scale
``dominated_sigma(sigma_m * sqrt(k))``, a hair above ``sigma_m * sqrt(k)``: step ``i`` is the
Gaussian mechanism with noise multiplier ``sigma_i = sigma_m * sqrt(k / k_i)``. Then negative
counts become 0 and each histogram is normalised (uniform if nothing is left); everything built
from them afterwards is post-processing. Step 2's query depends on step 1's output (the cells),
which adaptive composition allows; ``1 / sigma_1^2 + 1 / sigma_2^2 = 1 / sigma_m^2``, so the
pair costs exactly what one release of all ``k`` histograms at ``sigma_m`` would (mu-GDP and
RDP compose Gaussian mechanisms exactly). :func:`release_marginals` is the plain one-step
release over an encoder's groups (no trees); ``numeric_cells = "equal_width"`` goes through
:func:`release_with_cells` with no binned column learned, which is that one-step release.

The plan (:mod:`._plan`) accounts each step as one step of the *continuous* Gaussian mechanism with
its noise multiplier and sample rate 1, composed with DP-SGD by the chosen accountant. For RDP that
is sound at equal scale: the discrete Gaussian has the same Renyi divergences, ``alpha / (2
sigma^2)`` per unit of sensitivity, hence the same zCDP (Canonne, Kamath & Steinke 2020). For PRV,
PLD and GDP it would not be: Canonne, Kamath & Steinke give the discrete Gaussian's exact (epsilon,
delta) curve (their Theorem 7) but no dominance by the continuous one's, and there is none, the
discrete delta being larger at epsilon = 0 (by a factor of about ``1 + 1 / (24 sigma^2)``) and in
the far tails. Widening each coordinate's scale to ``dominated_sigma`` makes every coordinate's
trade-off curve lie above the continuous Gaussian's at ``sigma_i * sqrt(k_i)``; by f-DP composition
(Dong, Roth & Su 2022) the release is then at least as private as the continuous mechanism the plan
counts, under every accountant. See :func:`privsynth_core.privacy.noise.dominated_sigma`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from privsynth_core.privacy.noise import discrete_gaussian, dominated_sigma

from ._cells import (
    cell_grids,
    cells_from_tree,
    exact_trees,
    focus_pairs,
    learned_columns,
    noisy_trees,
    tree_levels,
)
from ._counts import MarginalCounts, count_marginals, exact_marginals
from ._encoding import CTGANEncoder

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from privsynth_core.privacy.cells import LearnedCells
    from privsynth_core.schema import Schema
    from privsynth_core.table import Table

    from . import DPCTGANParams

# re-exported: they live in ._cells and ._counts (no torch), for the plan and the workers
__all__ = ["MarginalCounts", "count_marginals", "focus_pairs"]


@dataclass
class NoisyMarginals:
    """The released histograms, normalised.

    Attributes:
        one_way: column -> probabilities over its marginal groups.
        two_way: ``(focus column, other column)`` -> joint probabilities (rows: focus groups).
    """

    one_way: dict[str, list[float]] = field(default_factory=dict)
    two_way: dict[tuple[str, str], list[list[float]]] = field(default_factory=dict)

    @property
    def n_tables(self) -> int:
        """How many histograms were released."""
        return len(self.one_way) + len(self.two_way)


def noise_scale(sigma_m: float, n_tables: int) -> float:
    """The discrete Gaussian scale of every count: ``dominated_sigma(sigma_m * sqrt(k))``."""
    return dominated_sigma(sigma_m * math.sqrt(n_tables))


def noisy_counts(counts: MarginalCounts, sigma_m: float) -> MarginalCounts:
    """The Gaussian mechanism (noise multiplier ``sigma_m``) on exact ``counts``: every count
    plus exact discrete Gaussian noise of scale :func:`noise_scale` (int64 in, int64 out)."""
    scale = noise_scale(sigma_m, counts.n_tables)
    return MarginalCounts(
        one_way={c: discrete_gaussian(v, sigma=scale) for c, v in counts.one_way.items()},
        two_way={p: discrete_gaussian(v, sigma=scale) for p, v in counts.two_way.items()},
    )


def add_noise(counts: MarginalCounts, sigma_m: float) -> NoisyMarginals:
    """:func:`noisy_counts`, then each histogram clipped at 0 and normalised (post-processing,
    in floats); see the module docstring."""

    released = noisy_counts(counts, sigma_m)
    out = NoisyMarginals()
    for name, one_way in released.one_way.items():
        out.one_way[name] = normalised(one_way).tolist()
    for pair, joint in released.two_way.items():
        out.two_way[pair] = normalised(joint).tolist()
    return out


def normalised(noisy: np.ndarray) -> np.ndarray:
    """Noisy counts clipped at 0 and normalised (uniform if nothing is left)."""
    values = np.clip(noisy.astype(np.float64), 0.0, None)
    total = values.sum()
    return values / total if total > 0 else np.full(noisy.shape, 1.0 / noisy.size)


def release_marginals(
    chunks: Iterable[torch.Tensor],
    encoder: CTGANEncoder,
    columns: Sequence[str],
    focus: Sequence[str],
    sigma_m: float,
) -> NoisyMarginals:
    """The Gaussian mechanism (noise multiplier ``sigma_m``) on the one-way histograms of
    ``columns`` and the two-way histograms of the focus pairs, counted over ``chunks`` (the
    whole table's encoded rows, chunk after chunk); see the module docstring."""
    return add_noise(count_marginals(chunks, encoder, columns, focus), sigma_m)


def release_tables(
    schema: Schema, params: DPCTGANParams, columns: Sequence[str]
) -> tuple[int, int]:
    """``(k1, k2)``: the histograms of the first release (one-way histograms of the columns
    that are not binned, plus every level of every binned column's tree) and of the second
    (the focus pairs). Public: from the schema and the parameters only."""
    binned = [c for c in learned_columns(schema, params) if c in set(columns)]
    levels = tree_levels(cell_grids(schema, binned))
    k1 = len(columns) - len(binned) + sum(len(g) for g in levels.values())
    return k1, len(focus_pairs(list(columns), params.focus_columns))


@dataclass
class CellsRelease:
    """What :func:`release_with_cells` releases: the noisy marginals and the learned cells,
    with the encoder built from them."""

    marginals: NoisyMarginals
    cells: dict[str, LearnedCells]
    encoder: CTGANEncoder


def release_with_cells(
    table: Table,
    params: DPCTGANParams,
    columns: Sequence[str],
    steps: Sequence[tuple[float, int]],
) -> CellsRelease:
    """The noisy marginals with learned numeric cells: two Gaussian releases.

    1. Noise multiplier ``steps[0] = (sigma_1, k1)``: the tree of every binned column
       (:mod:`._cells`) and the one-way histogram of every other column in ``columns``; ``k1``
       histograms, each of L2 sensitivity 1, so ``sqrt(k1)`` together; every count gets
       discrete Gaussian noise of :func:`noise_scale` ``(sigma_1, k1)``. The cells and the
       binned columns' one-way marginals are derived from the trees (post-processing), and the
       encoder is built from the cells.
    2. Noise multiplier ``steps[1] = (sigma_2, k2)`` (only with focus columns): the two-way
       histograms of the focus pairs over the *learned* groups (the query depends on release 1's
       output, which is public by then: adaptive composition), ``k2`` histograms,
       :func:`noise_scale` ``(sigma_2, k2)`` per count.

    The exact counts are two :meth:`Table.reduce <privsynth_core.table.Table.reduce>` passes
    over ``table`` (:func:`._cells.exact_trees`, then :func:`._counts.exact_marginals` with
    the encoder built from release 1's cells): a partitioned table's rows are counted on its
    cluster and only the sums come back, a one-file table's frame by the same functions; the
    noise below is added once, here, to the sums, whichever table it is. The other columns'
    one-way histograms belong to step 1 but are counted in the second pass, over the
    encoder's groups (they do not depend on the cells, so the counts are those of step 1's
    rows). The caller charges both steps (sample rate 1 each).

    Raises:
        ValueError: ``steps`` does not match the histograms counted (a plan for another schema).
    """
    schema = table.schema
    binned = [c for c in learned_columns(schema, params) if c in set(columns)]
    grids = cell_grids(schema, binned)
    levels = tree_levels(grids)
    others = [c for c in columns if c not in set(binned)]
    pairs = focus_pairs(list(columns), params.focus_columns)
    k1 = len(others) + sum(len(g) for g in levels.values())
    expected = [k1] + ([len(pairs)] if pairs else [])
    if [k for _, k in steps] != expected:
        raise ValueError(f"the plan's release has {steps} histograms, the schema {expected}")
    sigma_1 = steps[0][0]
    scale_1 = noise_scale(sigma_1, k1)
    trees = noisy_trees(exact_trees(table, grids, levels), scale_1)
    cells: dict[str, LearnedCells] = {}
    one_way_counts: dict[str, np.ndarray] = {}
    for name in binned:
        cells[name], one_way_counts[name] = cells_from_tree(
            grids[name],
            trees[name],
            scale=scale_1,
            groups=levels[name],
            nullable=schema.column(name).nullable,
            bins=params.numeric_bins,
        )
    encoder = CTGANEncoder(
        schema,
        numeric_bins=params.numeric_bins,
        max_exact_values=params.max_exact_values,
        cells=cells,
    )
    exact = exact_marginals(table, encoder, columns, params.focus_columns, one_way=others)
    for name, counts in exact.one_way.items():
        one_way_counts[name] = discrete_gaussian(counts, sigma=scale_1)
    out = NoisyMarginals()
    for name in columns:  # schema order, as the one-release path
        out.one_way[name] = normalised(one_way_counts[name]).tolist()
    if pairs:
        scale_2 = noise_scale(steps[1][0], len(pairs))
        for pair, joint in exact.two_way.items():
            out.two_way[pair] = normalised(discrete_gaussian(joint, sigma=scale_2)).tolist()
    return CellsRelease(out, cells, encoder)


class Conditioner:
    """CTGAN's conditional vectors over the discrete columns' one-hot groups.

    A conditional vector is the concatenation of every discrete column's one-hot group, all
    zeros except the chosen category of one chosen column.

    Args:
        encoder: the schema's encoder.
        one_way: column -> category probabilities (noisy marginals, DP); columns without one
            are left out; empty: no conditional vectors (``dim == 0``).
        device: where the tensors live.
    """

    def __init__(
        self, encoder: CTGANEncoder, one_way: dict[str, list[float]], device: torch.device
    ) -> None:
        self.spans = [s for s in encoder.discrete_spans if s.column in one_way]
        self.device = device
        self.k = len(self.spans)
        widths = [s.width for s in self.spans]
        self.offsets = np.cumsum([0, *widths])[:-1].tolist()
        self.dim = int(sum(widths))
        data_index = [i for s in self.spans for i in range(s.start, s.end)]
        self.data_index = torch.tensor(data_index, dtype=torch.long, device=device)
        self.block_mask = torch.zeros(max(self.k, 1), max(self.dim, 1), device=device)
        probs = torch.zeros(max(self.k, 1), max(widths, default=1), device=device)
        for j, span in enumerate(self.spans):
            self.block_mask[j, self.offsets[j] : self.offsets[j] + span.width] = 1.0
            probs[j, : span.width] = torch.tensor(one_way[span.column], dtype=torch.float32)
        self.probs = probs
        self.offsets_t = torch.tensor(self.offsets or [0], dtype=torch.long, device=device)

    def from_rows(
        self, rows: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Each row's own category of one uniformly chosen discrete column (real side)."""
        if self.k == 0:
            return rows.new_zeros((rows.shape[0], 0))
        col = torch.randint(self.k, (rows.shape[0],), device=rows.device, generator=generator)
        return rows[:, self.data_index] * self.block_mask[col]

    def draw(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` conditions from the noisy marginals: (vectors, column index, category index)."""
        if self.k == 0:
            empty = torch.zeros(n, dtype=torch.long, device=self.device)
            return torch.zeros(n, 0, device=self.device), empty, empty
        col = torch.randint(self.k, (n,), device=self.device, generator=generator)
        cat = torch.multinomial(self.probs[col], 1, generator=generator).squeeze(1)
        cond = torch.zeros(n, self.dim, device=self.device)
        cond[torch.arange(n, device=self.device), self.offsets_t[col] + cat] = 1.0
        return cond, col, cat

    def loss(self, raw: torch.Tensor, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """CTGAN's conditional loss: cross-entropy of the conditioned group vs its category."""
        total = raw.new_zeros(())
        for j, span in enumerate(self.spans):
            rows = col == j
            if bool(rows.any()):
                total = total + F.cross_entropy(
                    raw[rows, span.start : span.end], cat[rows], reduction="sum"
                )
        return total / max(raw.shape[0], 1)


class MarginalLoss:
    """KL divergence from the noisy marginals to the generator's expected marginals.

    Decoding draws each column of a row independently from its softmax, so for a batch of raw
    outputs the expected one-way marginal of a column is the batch mean of its group
    probabilities, and the expected two-way marginal of two columns is the batch mean of the
    outer product of theirs. The loss is the sum of ``KL(noisy || expected)`` over every
    released table. It reads only DP outputs: post-processing, no privacy cost.
    """

    def __init__(
        self, encoder: CTGANEncoder, marginals: NoisyMarginals, device: torch.device
    ) -> None:
        self.maps: dict[str, tuple[int, int, torch.Tensor]] = {}
        for group in encoder.groups:
            to_group = torch.zeros(group.span.width, group.n_groups, device=device)
            to_group[torch.arange(group.span.width), torch.tensor(group.group_of_slot)] = 1.0
            self.maps[group.column] = (group.span.start, group.span.end, to_group)
        self.one_way = [(c, torch.tensor(p, device=device)) for c, p in marginals.one_way.items()]
        self.two_way = [
            (a, b, torch.tensor(p, device=device)) for (a, b), p in marginals.two_way.items()
        ]

    def _probs(self, raw: torch.Tensor, column: str) -> torch.Tensor:
        start, end, to_group = self.maps[column]
        return torch.softmax(raw[:, start:end], dim=1) @ to_group

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """The loss for a batch of raw generator outputs."""
        probs = {c: self._probs(raw, c) for c in self.maps}
        total = raw.new_zeros(())
        for column, target in self.one_way:
            total = total + _kl(target, probs[column].mean(dim=0))
        for a, b, target in self.two_way:
            total = total + _kl(target, probs[a].T @ probs[b] / raw.shape[0])
        return total


def _kl(target: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    return (target * (torch.log(target + 1e-8) - torch.log(generated + 1e-8))).sum()
