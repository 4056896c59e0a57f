"""MST and AIM on a table with known dependencies, at a budget so large that noise is negligible.

Columns: A uniform, B a copy of A, C uniform and independent of A, D a copy of C. With almost no
noise, MST's spanning tree must contain (A, B) and (C, D), and AIM must measure those first; both
must spend their whole rho and never more. Each model estimate compiles a jax program (seconds),
so the number of fits is kept small.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from privsynth_marginal.algorithms import _aim_candidates, aim, mst
from privsynth_marginal.estimate import PGMEstimator
from privsynth_marginal.junction import model_size_mb
from privsynth_marginal.mechanisms import marginal_counts
from privsynth_marginal.zcdp import ZCDPBudget, rho_for

N_ROWS = 2000
ITERS = 1000  # compilation, not iterations, dominates a fit's time
NAMES = ["A", "B", "C", "D"]


def copies_table(sizes: tuple[int, int], seed: int) -> tuple[np.ndarray, list[int]]:
    """Codes of (A, B = A, C, D = C) with A and C uniform on ``sizes``."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, sizes[0], N_ROWS)
    c = rng.integers(0, sizes[1], N_ROWS)
    return np.stack([a, a, c, c], axis=1), [sizes[0], sizes[0], sizes[1], sizes[1]]


def huge_budget() -> ZCDPBudget:
    return ZCDPBudget(rho_for(1e4, 1e-5))


def assert_spent_exactly(budget: ZCDPBudget) -> None:
    """All of rho, never more. The plan's noise is a deliberate 1e-9 (relative) above its exact
    share, so rounding can never overspend: that leaves about 2e-9 of rho unspent."""
    assert budget.spent <= budget.total
    assert budget.spent == pytest.approx(budget.total, rel=1e-8)


def test_mst_picks_the_copies_and_spends_its_rho() -> None:
    codes, sizes = copies_table((3, 4), seed=0)
    budget = huge_budget()
    estimator = PGMEstimator(NAMES, sizes)
    calls: list[tuple[int, int, str]] = []
    measurements = mst(
        codes,
        sizes,
        budget,
        estimator,
        iters=ITERS,
        progress=lambda done, total, stage: calls.append((done, total, stage)),
    )
    assert_spent_exactly(budget)
    cliques = [m.clique for m in measurements]
    assert cliques[:4] == [(0,), (1,), (2,), (3,)]
    edges = cliques[4:]
    assert len(edges) == 3 and {(0, 1), (2, 3)} <= set(edges)
    tree = {tuple(sorted(e)) for e in edges}
    assert len(tree) == 3 and _is_spanning_tree(tree, 4)
    # every stage is reported before it runs, so a long one is never silent
    assert [(done, total) for done, total, _ in calls] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[3][2] == "estimating the graphical model"
    # with negligible noise the fitted model reproduces the measured pairs
    for pair in [(0, 1), (2, 3)]:
        exact = marginal_counts(codes, sizes, pair).reshape([sizes[i] for i in pair])
        assert np.abs(estimator.marginal(pair) - exact).sum() < 0.01 * N_ROWS


def _is_spanning_tree(edges: set[tuple[int, ...]], d: int) -> bool:
    component = list(range(d))

    def root(i: int) -> int:
        while component[i] != i:
            i = component[i]
        return i

    for a, b in edges:
        if root(a) == root(b):
            return False
        component[root(a)] = root(b)
    return len({root(i) for i in range(d)}) == 1


def test_aim_measures_the_dependent_pairs_first_and_spends_its_rho() -> None:
    codes, sizes = copies_table((3, 4), seed=2)
    budget = huge_budget()
    estimator = PGMEstimator(NAMES, sizes)
    calls: list[tuple[int, int, str]] = []
    measurements = aim(
        codes,
        sizes,
        budget,
        estimator,
        selections=3,
        rounds=2,
        max_model_mb=100.0,
        max_cells=10_000,
        iters=ITERS,
        round_iters=50,
        progress=lambda done, total, stage: calls.append((done, total, stage)),
    )
    assert_spent_exactly(budget)
    cliques = [m.clique for m in measurements]
    assert cliques[:4] == [(0,), (1,), (2,), (3,)]
    assert set(cliques[4:6]) == {(0, 1), (2, 3)}  # the first round's two selections
    assert len(cliques) == 7 and len(set(cliques)) == 7  # never the same marginal twice
    # reported before the 1-way measurements (no silent start), then before and after each round
    assert [(done, total) for done, total, _ in calls] == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2)]
    assert calls[0][2] == "measuring 1-way marginals" and calls[1][2].startswith("round 1")
    # equal noise on every measurement (AIM's plan here)
    assert len({m.sigma for m in measurements}) == 1


def test_aim_never_measures_a_pair_above_max_cells() -> None:
    # (C, D) has 6 x 6 = 36 cells and is by far the worst-approximated pair; max_cells = 20
    # keeps it out, and every other pair (at most 18 cells) is measured.
    codes, sizes = copies_table((3, 6), seed=4)
    budget = huge_budget()
    estimator = PGMEstimator(NAMES, sizes)
    measurements = aim(
        codes,
        sizes,
        budget,
        estimator,
        selections=10,
        rounds=1,
        max_model_mb=100.0,
        max_cells=20,
        iters=ITERS,
        round_iters=50,
    )
    cliques = [m.clique for m in measurements]
    assert (2, 3) not in cliques
    assert all(int(np.prod([sizes[i] for i in c])) <= 20 for c in cliques)
    expected = {p for p in itertools.combinations(range(4), 2) if p != (2, 3)}
    assert set(cliques[4:]) == expected
    assert cliques[4] == (0, 1)  # the only dependent pair left is chosen first
    assert_spent_exactly(budget)  # selections capped at the 5 candidates, plan made for 5


def test_aim_candidates_are_the_pairs_within_max_cells() -> None:
    sizes = [2, 10, 3, 50]
    assert set(_aim_candidates(sizes, 30)) == {(0, 1), (0, 2), (1, 2)}
    assert set(_aim_candidates(sizes, 100)) == {(0, 1), (0, 2), (0, 3), (1, 2)}
    assert _aim_candidates(sizes, 5) == {}


def test_a_target_weighs_its_pairs_and_without_one_nothing_changes() -> None:
    sizes = [2, 10, 3, 50]
    plain = _aim_candidates(sizes, 100)
    assert _aim_candidates(sizes, 100, target=None, target_weight=3.0) == plain
    weighted = _aim_candidates(sizes, 100, target=0, target_weight=3.0)
    assert set(weighted) == set(plain)  # the same candidates, other weights
    assert weighted == {p: 3.0 if 0 in p else 1.0 for p in plain}


def test_mst_gathers_its_tree_around_the_target() -> None:
    # A, B and C are copies of one column: every pair among them is equally informative, so
    # without a target the tree takes any two of the three pairs; with C as the target (pairs
    # with it weigh 3x) and negligible noise it takes both of C's. D is independent.
    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, N_ROWS)
    codes = np.stack([a, a, a, rng.integers(0, 3, N_ROWS)], axis=1)
    sizes = [3, 3, 3, 3]
    budget = huge_budget()
    measurements = mst(
        codes, sizes, budget, PGMEstimator(NAMES, sizes), iters=50, target=2, target_weight=3.0
    )
    edges = {m.clique for m in measurements[4:]}
    assert {(0, 2), (1, 2)} <= edges and (0, 1) not in edges
    assert_spent_exactly(budget)


class CountingEstimator(PGMEstimator):
    """The real estimator, recording each fit's (measurements, iterations)."""

    def __init__(self, names: list[str], sizes: list[int]) -> None:
        super().__init__(names, sizes)
        self.fits: list[tuple[int, int]] = []

    def fit(self, measurements, iters: int, warm: bool = True) -> None:  # type: ignore[no-untyped-def]
        self.fits.append((len(measurements), iters))
        super().fit(measurements, iters=iters, warm=warm)


def test_aim_does_not_re_estimate_after_a_round_that_measured_nothing() -> None:
    # Model sizes (float64 bytes): the 1-way model 112, with (A, B) 136, with (C, D) 176, with
    # both 200. A cap of 200 bytes over two rounds allows 100 in round 1 (no pair fits: nothing
    # measured, so no estimate, which would only iterate on the same 1-way measurements) and
    # 200 in round 2, whose one selection is measured and estimated with the final iterations.
    codes, sizes = copies_table((3, 4), seed=3)
    budget = huge_budget()
    estimator = CountingEstimator(NAMES, sizes)
    measurements = aim(
        codes,
        sizes,
        budget,
        estimator,
        selections=2,
        rounds=2,
        max_model_mb=200 / 2**20,
        max_cells=10_000,
        iters=ITERS,
        round_iters=50,
    )
    assert len(measurements) == 5  # four 1-way marginals and round 2's one selection
    assert estimator.fits == [(5, ITERS)]
    # the selection still saw the model its quality needs: the dependent pairs score highest
    assert measurements[4].clique in {(0, 1), (2, 3)}
    assert estimator.marginal((0, 1)).shape == (3, 3)


def test_aim_keeps_the_model_under_its_size_cap_within_a_round() -> None:
    # Each pair alone fits a cap of 176 bytes beside the 1-way model (136 to 176 bytes), but
    # no two pairs do (200 bytes and more): a round that draws two selections may measure only
    # one, and the model it ends with stays under the cap.
    codes, sizes = copies_table((3, 4), seed=3)
    cap_mb = 176 / 2**20
    estimator = CountingEstimator(NAMES, sizes)
    measurements = aim(
        codes,
        sizes,
        huge_budget(),
        estimator,
        selections=2,
        rounds=1,
        max_model_mb=cap_mb,
        max_cells=10_000,
        iters=ITERS,
        round_iters=50,
    )
    assert model_size_mb(sizes, [m.clique for m in measurements]) <= cap_mb
    assert len(measurements) == 5  # four 1-way marginals and one pair


def test_an_estimate_leaves_no_compiled_program_behind_and_warm_starts_after() -> None:
    """Each estimate's programs serve only its own cliques (issue #18: kept, they grew AIM's
    process by hundreds of MiB a round on census KDD): after a fit jax holds none, and the next,
    warm-started fit on more measurements still runs and fits them."""
    import jax
    from privsynth_marginal.estimate import Measurement

    codes, sizes = copies_table((3, 4), seed=2)
    probe = jax.jit(lambda x: x + 1)
    probe(1.0)
    assert probe._cache_size() == 1

    def measured(clique: tuple[int, ...]) -> Measurement:
        return Measurement(clique, marginal_counts(codes, sizes, clique).astype(float), 1e-3)

    estimator = PGMEstimator(NAMES, sizes)
    one_way = [measured((i,)) for i in range(4)]
    estimator.fit(one_way, iters=50, warm=False)
    assert probe._cache_size() == 0  # dropped with the estimate's own programs
    estimator.fit([*one_way, measured((0, 1))], iters=200)
    exact = marginal_counts(codes, sizes, (0, 1)).reshape(sizes[0], sizes[1])
    assert np.abs(estimator.marginal((0, 1)) - exact).max() < 0.02 * N_ROWS
