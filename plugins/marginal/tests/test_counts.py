"""MST and AIM read the rows only as exact marginal counts: counted from a codes matrix on
request, or counted beforehand in one pass (a partitioned table's), they see the same integers
(issue #19)."""

from __future__ import annotations

import numpy as np
import pytest
from privsynth_marginal import algorithms
from privsynth_marginal.algorithms import aim, mst
from privsynth_marginal.counts import (
    CodesMarginals,
    SummedMarginals,
    marginals_to_count,
)
from privsynth_marginal.estimate import PGMEstimator
from privsynth_marginal.mechanisms import exponential_mechanism, gaussian_measure, marginal_counts
from privsynth_marginal.zcdp import ZCDPBudget, rho_for

from privsynth_core import GeneratorError

SIZES = [3, 4, 2, 5]


def _codes(rows: int = 1500) -> np.ndarray:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, rows)
    b = (a + rng.integers(0, 2, rows)) % 4
    c = rng.integers(0, 2, rows)
    d = (2 * c + rng.integers(0, 3, rows)) % 5
    return np.stack([a, b, c, d], axis=1)


def _run(
    data: object, monkeypatch: pytest.MonkeyPatch, replay: list[int] | None, which: str
) -> tuple[list[tuple[np.ndarray, float]], list[np.ndarray], list[int], list[tuple[str, float]]]:
    """One fit at a budget so large the noise is zero (with overwhelming probability), with
    the real mechanisms recording their inputs; the selections of an earlier run are replayed
    (the exponential mechanism stays random at any budget when two qualities are close)."""
    measured: list[tuple[np.ndarray, float]] = []
    scored: list[np.ndarray] = []
    chosen: list[int] = []

    def measure(counts: np.ndarray, sigma: float) -> np.ndarray:
        measured.append((counts.copy(), sigma))
        return gaussian_measure(counts, sigma)

    def choose(qualities: np.ndarray, epsilon0: float, sensitivity: float) -> int:
        scored.append(qualities.copy())
        pick = exponential_mechanism(qualities, epsilon0, sensitivity)
        if replay is not None:
            pick = replay[len(chosen)]
        chosen.append(pick)
        return pick

    monkeypatch.setattr(algorithms, "gaussian_measure", measure)
    monkeypatch.setattr(algorithms, "exponential_mechanism", choose)
    budget = ZCDPBudget(rho_for(1e5, 1e-5))
    estimator = PGMEstimator(["A", "B", "C", "D"], SIZES)
    if which == "mst":
        mst(data, SIZES, budget, estimator, iters=50)  # type: ignore[arg-type]
    else:
        aim(
            data,  # type: ignore[arg-type]
            SIZES,
            budget,
            estimator,
            selections=3,
            rounds=1,
            max_model_mb=100.0,
            max_cells=12,
            iters=50,
            round_iters=20,
        )
    return measured, scored, chosen, list(budget.log)


@pytest.mark.parametrize("which", ["mst", "aim"])
def test_counts_taken_beforehand_give_the_mechanisms_the_codes_own_inputs(
    monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    codes = _codes()
    # AIM's pass counts only its candidates (pairs of at most max_cells = 12 cells)
    cliques = marginals_to_count(SIZES, max_cells=12 if which == "aim" else None)
    summed = SummedMarginals(SIZES, {c: marginal_counts(codes, SIZES, c) for c in cliques})
    here = _run(codes, monkeypatch, None, which)
    there = _run(summed, monkeypatch, here[2], which)
    measured_here, scored_here, chosen, spent_here = here
    measured_there, scored_there, _, spent_there = there
    assert spent_here == spent_there and len(chosen) == 3
    assert len(measured_here) == len(measured_there) == 7
    for (a, sigma_a), (b, sigma_b) in zip(measured_here, measured_there, strict=True):
        assert np.array_equal(a, b) and sigma_a == sigma_b
    for a, b in zip(scored_here, scored_there, strict=True):
        assert np.array_equal(a, b)


def test_summed_marginals_answer_only_what_was_counted() -> None:
    codes = _codes(50)
    direct = CodesMarginals(codes, SIZES)
    summed = SummedMarginals(SIZES, {(0, 1): direct.marginal((0, 1))})
    assert np.array_equal(summed.marginal((0, 1)), marginal_counts(codes, SIZES, (0, 1)))
    summed.marginal((0, 1))[0] += 99  # a copy: a caller cannot change the counts
    assert np.array_equal(summed.marginal((0, 1)), direct.marginal((0, 1)))
    with pytest.raises(GeneratorError, match=r"marginal \(0, 2\) was not counted"):
        summed.marginal((0, 2))
    with pytest.raises(GeneratorError, match="shape"):
        SummedMarginals(SIZES, {(0, 1): np.zeros(11, dtype=np.int64)})
    assert marginals_to_count(SIZES, max_cells=8) == [(0,), (1,), (2,), (3,), (0, 2), (1, 2)]


def test_codes_marginals_keep_counts_for_the_next_request_within_their_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # AIM scores every candidate every round: a marginal is counted once, then served from
    # the kept counts (as a copy), and nothing past the byte cap is kept
    from privsynth_marginal import counts as counts_module

    codes = _codes(200)
    calls: list[tuple[int, ...]] = []

    def counting(codes_: np.ndarray, sizes: list[int], clique: tuple[int, ...]) -> np.ndarray:
        calls.append(tuple(clique))
        return marginal_counts(codes_, sizes, clique)

    monkeypatch.setattr(counts_module, "marginal_counts", counting)
    monkeypatch.setattr(counts_module, "COUNTS_CACHE_BYTES", 12 * 8)  # (0, 1) fits, then no more
    direct = CodesMarginals(codes, SIZES)
    first = direct.marginal((0, 1))
    first[0] += 99  # a copy: no caller changes what the next one gets
    for _ in range(3):
        assert np.array_equal(direct.marginal((0, 1)), marginal_counts(codes, SIZES, (0, 1)))
        assert np.array_equal(direct.marginal((1, 3)), marginal_counts(codes, SIZES, (1, 3)))
    assert calls == [(0, 1), (1, 3), (1, 3), (1, 3)]
