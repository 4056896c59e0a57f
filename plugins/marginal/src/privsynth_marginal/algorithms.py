"""MST and AIM (McKenna et al.): which marginals to measure, and with how much noise.

Both spend a total ``rho`` (zCDP) through :class:`~.zcdp.ZCDPBudget`, so the plan can never
overspend; the caller converts what was spent to (epsilon, delta).

- **MST** (McKenna, Miklau & Sheldon 2021): a third of rho measures every 1-way marginal; a
  third selects, with the exponential mechanism, the ``d - 1`` pairs of a maximum spanning tree
  whose weights are how badly the 1-way (independent) model gets each pair wrong; the last
  third measures those pairs. One model estimate.
- **AIM** (McKenna, Mullins, Sheldon & Miklau 2022): 1-way marginals first, then rounds that
  each select the marginal the current model gets most wrong (exponential mechanism, quality =
  weighted L1 error minus the error expected from noise alone), measure it and re-estimate.
  Two departures, both to bound time and memory on a 2-core machine: the number of selections
  is fixed in advance (``selections``, each with an equal share of rho) instead of AIM's
  adaptive noise halving, and each round selects ``selections / rounds`` marginals (one
  exponential mechanism each, without replacement) before re-estimating, because every
  re-estimate with new cliques costs a jax compilation. Candidates whose addition would make the
  model larger than ``max_model_mb`` are dropped, as in AIM. A round whose size limit leaves
  no candidate measures nothing and does not re-estimate (the model's inputs are unchanged), so
  no estimate is spent iterating on the same measurements.

Every noisy count and every selection is drawn exactly by OpenDP from a cryptographic source
(:mod:`.mechanisms`): nothing here takes a seed. The measured counts stay integers until the
noise is on; the estimator gets them as floats.

The data reach both algorithms only as exact marginal counts (:class:`.counts.ExactMarginals`):
from a matrix of cell codes in this process, or counted beforehand in one pass over a
partitioned table (the same integers, so the same mechanisms see the same inputs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from .counts import CodesMarginals, ExactMarginals
from .estimate import Measurement, PGMEstimator
from .junction import model_sizes_mb
from .mechanisms import exponential_mechanism, gaussian_measure
from .zcdp import AIM_MEASUREMENT_SHARE, ZCDPBudget, exponential_rho, gaussian_rho

#: ``progress(done, total, stage)``: units done of ``total`` (MST's stages, AIM's rounds) and
#: what runs next, in a few words.
RoundCallback = Callable[[int, int, str], None]
# Noise a hair above, selection parameters a hair below their exact shares, so that rounding in
# the sum of many costs can never take the total past rho.
_SAFETY = 1e-9


def _sigma(count: int, rho: float) -> float:
    """Noise for ``count`` equal Gaussian measurements sharing ``rho``."""
    return math.sqrt(count / (2 * rho)) * (1 + _SAFETY)


def _epsilon0(count: int, rho: float) -> float:
    """Exponential-mechanism parameter for ``count`` equal selections sharing ``rho``."""
    return math.sqrt(8 * rho / count) * (1 - _SAFETY)


def _as_marginals(data: ExactMarginals | np.ndarray, sizes: Sequence[int]) -> ExactMarginals:
    """The exact marginals of ``data``: given as such, or a matrix of cell codes."""
    return data if isinstance(data, ExactMarginals) else CodesMarginals(data, sizes)


def _measure(
    marginals: ExactMarginals,
    clique: tuple[int, ...],
    sigma: float,
    budget: ZCDPBudget,
) -> Measurement:
    kind = "1-way marginals" if len(clique) == 1 else "selected marginals"
    budget.spend(f"measure {clique}", gaussian_rho(sigma), kind=kind)
    noisy = gaussian_measure(marginals.marginal(clique), sigma)
    # exact integers until the noise is on; float64 holds them exactly (below 2^53)
    return Measurement(clique=clique, noisy=noisy.astype(np.float64), sigma=sigma)


def mst(
    data: ExactMarginals | np.ndarray,
    sizes: Sequence[int],
    budget: ZCDPBudget,
    estimator: PGMEstimator,
    *,
    iters: int,
    progress: RoundCallback | None = None,
    target: int | None = None,
    target_weight: float = 1.0,
) -> list[Measurement]:
    """Run MST; leaves the final model in ``estimator``; returns the measurements.

    ``data`` is the exact marginals (:class:`.counts.ExactMarginals`: every 1-way marginal and
    every pair) or a ``(rows, columns)`` matrix of cell codes.

    With a ``target`` column, the quality of a pair that includes it is multiplied by
    ``target_weight`` (and the selections' sensitivity with it), so the tree gathers around the
    target. Every random draw (measurement noise, selections) is OpenDP's, from the OS: nothing
    here can be seeded.
    """

    def stage(done: int, what: str) -> None:
        if progress is not None:
            progress(done, 4, what)

    marginals = _as_marginals(data, sizes)
    d = len(sizes)
    rho = budget.remaining
    one_way_share = rho / 3 if d > 1 else rho
    sigma1 = _sigma(d, one_way_share)
    stage(0, "measuring 1-way marginals")
    one_way = {i: _measure(marginals, (i,), sigma1, budget) for i in range(d)}
    measurements = list(one_way.values())
    if d > 1:
        estimator.set_independent(measurements)
        stage(1, "selecting a spanning tree of pairs")
        edges = _spanning_tree(
            marginals, sizes, estimator, rho / 3, budget, target=target, target_weight=target_weight
        )
        sigma2 = _sigma(d - 1, budget.remaining)
        stage(2, "measuring the tree's pairs")
        measurements += [_measure(marginals, e, sigma2, budget) for e in edges]
    stage(3, "estimating the graphical model")
    estimator.fit(measurements, iters=iters, warm=False)
    stage(4, "done")
    return measurements


def _spanning_tree(
    marginals: ExactMarginals,
    sizes: Sequence[int],
    independent: PGMEstimator,
    rho: float,
    budget: ZCDPBudget,
    *,
    target: int | None = None,
    target_weight: float = 1.0,
) -> list[tuple[int, int]]:
    d = len(sizes)
    weights = {}
    scale = {
        pair: target_weight if target in pair else 1.0
        for pair in itertools.combinations(range(d), 2)
    }
    sensitivity = max(scale.values(), default=1.0)
    for pair in itertools.combinations(range(d), 2):
        exact = marginals.marginal(pair)
        weights[pair] = scale[pair] * float(
            np.abs(exact - independent.marginal(pair).ravel()).sum()
        )
    epsilon0 = _epsilon0(d - 1, rho)
    component = list(range(d))  # union-find without path compression: d is small

    def root(i: int) -> int:
        while component[i] != i:
            i = component[i]
        return i

    edges: list[tuple[int, int]] = []
    for _ in range(d - 1):
        candidates = [p for p in weights if root(p[0]) != root(p[1])]
        quality = np.array([weights[p] for p in candidates])
        budget.spend("select a tree edge", exponential_rho(epsilon0), kind="selections")
        chosen = candidates[exponential_mechanism(quality, epsilon0, sensitivity)]
        component[root(chosen[0])] = root(chosen[1])
        edges.append(chosen)
    return edges


def aim(
    data: ExactMarginals | np.ndarray,
    sizes: Sequence[int],
    budget: ZCDPBudget,
    estimator: PGMEstimator,
    *,
    selections: int,
    rounds: int,
    max_model_mb: float,
    max_cells: int,
    iters: int,
    round_iters: int,
    progress: RoundCallback | None = None,
    target: int | None = None,
    target_weight: float = 1.0,
) -> list[Measurement]:
    """Run AIM (see the module docstring); leaves the final model in ``estimator``.

    ``data`` is the exact marginals (:class:`.counts.ExactMarginals`: every 1-way marginal and
    every candidate pair, those of at most ``max_cells`` cells) or a matrix of cell codes.

    With a ``target`` column, the workload weighs the pairs that include it ``target_weight``
    times the others. As in :func:`mst`, every random draw is OpenDP's.
    """
    marginals = _as_marginals(data, sizes)
    d = len(sizes)
    rho = budget.remaining
    candidates = _aim_candidates(sizes, max_cells, target=target, target_weight=target_weight)
    selections = min(selections, len(candidates)) if d > 1 else 0
    # AIM's split: 90% of rho to measurements (the d 1-way ones and each selection's, equal
    # noise), 10% to the selections' exponential mechanisms.
    share = AIM_MEASUREMENT_SHARE if selections else 1.0
    sigma = _sigma(d + selections, share * rho)
    epsilon0 = _epsilon0(selections, (1 - share) * rho) if selections else 0.0
    rounds = max(1, min(rounds, selections)) if selections else 0
    if progress is not None:
        progress(0, max(rounds, 1), "measuring 1-way marginals")
    measurements = [_measure(marginals, (i,), sigma, budget) for i in range(d)]
    if rounds:
        estimator.set_independent(measurements)  # the first selections need no estimate
    else:
        estimator.fit(measurements, iters=iters, warm=False)
    measured = {m.clique for m in measurements}
    per_round = [
        selections // rounds + (1 if r < selections % rounds else 0) for r in range(rounds)
    ]
    for r, count in enumerate(per_round, start=1):
        if progress is not None:
            progress(
                r - 1,
                rounds,
                f"round {r}: selecting and measuring {count} marginal"
                f"{'s' if count != 1 else ''}, then estimating",
            )
        cliques = [m.clique for m in measurements]
        size_limit = max_model_mb * (r / rounds)
        pool = {c: w for c, w in candidates.items() if c not in measured}
        pool = _fitting(pool, sizes, cliques, size_limit)
        # the model does not change within a round, so neither do the qualities: computed
        # once per round, not once per selection (the same draws, a round's selections cost
        # one pass over the pool instead of ``count``)
        quality = _qualities(marginals, sizes, pool, estimator, sigma)
        added = 0
        for _ in range(count):
            if not pool:
                break
            chosen = _worst_approximated(pool, quality, epsilon0, budget)
            del quality[chosen]
            measurements.append(_measure(marginals, chosen, sigma, budget))
            measured.add(chosen)
            del pool[chosen]
            added += 1
            cliques.append(chosen)
            if added < count:
                # The cap holds for the model the round ends with, as in published AIM (which
                # filters before every selection): a candidate that no longer fits beside what
                # was just chosen leaves the pool. Post-processing of the round's earlier
                # selections (DP outputs) and of public sizes; a model only grows, so a
                # candidate dropped here would never fit again this round.
                pool = _fitting(pool, sizes, cliques, size_limit)
        # A round that measured nothing new (no candidate fitted under this round's size
        # limit) leaves the model's inputs as they were: re-estimating would only iterate
        # longer on the same measurements. The last round always estimates, with ``iters``.
        if added or r == rounds:
            estimator.fit(measurements, iters=iters if r == rounds else round_iters)
        if progress is not None:
            progress(r, rounds, "done" if r == rounds else f"round {r} done")
    if not rounds and progress is not None:
        progress(1, 1, "done")
    return measurements


def _aim_candidates(
    sizes: Sequence[int], max_cells: int, *, target: int | None = None, target_weight: float = 1.0
) -> dict[tuple[int, ...], float]:
    """The workload's pairs (those of at most ``max_cells`` cells) with their weights.

    The workload is every pair of columns; AIM weights a candidate by its overlap with the
    workload, which for an all-pairs workload is the same for every pair, hence 1. A target
    column (the user's, public) weighs its pairs ``target_weight`` times more.
    """
    return {
        pair: (target_weight if target in pair else 1.0)
        for pair in itertools.combinations(range(len(sizes)), 2)
        if sizes[pair[0]] * sizes[pair[1]] <= max_cells
    }


def _fitting(
    pool: dict[tuple[int, ...], float],
    sizes: Sequence[int],
    cliques: Sequence[tuple[int, ...]],
    size_limit: float,
) -> dict[tuple[int, ...], float]:
    """The candidates of ``pool`` beside which the model over ``cliques`` stays within
    ``size_limit`` MB (public: sizes and earlier selections only)."""
    fits = model_sizes_mb(sizes, cliques, list(pool))
    return {c: w for (c, w), mb in zip(pool.items(), fits, strict=True) if mb <= size_limit}


def _qualities(
    marginals: ExactMarginals,
    sizes: Sequence[int],
    pool: dict[tuple[int, ...], float],
    estimator: PGMEstimator,
    sigma: float,
) -> dict[tuple[int, ...], float]:
    """AIM's quality of every candidate in ``pool`` under the current model (data-dependent:
    only ever used by the exponential mechanism)."""
    out = {}
    for clique, weight in pool.items():
        cells = int(np.prod([sizes[i] for i in clique]))
        error = np.abs(marginals.marginal(clique) - estimator.marginal(clique).ravel()).sum()
        # the L1 error noise alone would leave on a measured marginal (AIM's bias term)
        out[clique] = weight * (float(error) - math.sqrt(2 / math.pi) * sigma * cells)
    return out


def _worst_approximated(
    pool: dict[tuple[int, ...], float],
    quality: dict[tuple[int, ...], float],
    epsilon0: float,
    budget: ZCDPBudget,
) -> tuple[int, ...]:
    """One exponential-mechanism selection among ``pool``'s candidates (sensitivity: the
    largest weight left in the pool)."""
    keys = list(pool)
    budget.spend("select a marginal", exponential_rho(epsilon0), kind="selections")
    scores = np.array([quality[k] for k in keys])
    return keys[exponential_mechanism(scores, epsilon0, max(pool.values()))]
