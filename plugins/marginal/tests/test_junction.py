"""Junction-tree marginals against brute force over the full joint table."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np
import pytest
from privsynth_marginal.junction import CalibratedTree

Axes = tuple[int, ...]
Factors = list[tuple[Axes, np.ndarray]]
TreeBuilder = Callable[[Sequence[int], Sequence[Axes]], tuple[list[Axes], list[tuple[Axes, Axes]]]]
TOTAL = 1234.5


def networkx_tree(
    sizes: Sequence[int], scopes: Sequence[Axes]
) -> tuple[list[Axes], list[tuple[Axes, Axes]]]:
    """Triangulate the factors' graph, then a maximum spanning tree of the cliques by overlap."""
    graph = nx.Graph()
    graph.add_nodes_from(range(len(sizes)))
    for scope in scopes:
        graph.add_edges_from(itertools.combinations(scope, 2))
    chordal, _ = nx.complete_to_chordal_graph(graph)
    cliques = sorted(tuple(sorted(c)) for c in nx.chordal_graph_cliques(chordal))
    overlaps = nx.Graph()
    overlaps.add_nodes_from(cliques)
    for c1, c2 in itertools.combinations(cliques, 2):
        if set(c1) & set(c2):
            overlaps.add_edge(c1, c2, weight=len(set(c1) & set(c2)))
    tree = nx.maximum_spanning_tree(overlaps)
    return cliques, list(tree.edges)


def mbi_tree(
    sizes: Sequence[int], scopes: Sequence[Axes]
) -> tuple[list[Axes], list[tuple[Axes, Axes]]]:
    """The junction tree mbi builds, as ``PGMEstimator._calibrate`` asks for it."""
    from privsynth_marginal.estimate import _mbi

    mbi = _mbi()
    names = [f"c{i}" for i in range(len(sizes))]
    domain = mbi.Domain(names, list(sizes))
    jtree, _ = mbi.junction_tree.make_junction_tree(
        domain, [tuple(names[i] for i in s) for s in scopes]
    )

    def axes(clique: Sequence[str]) -> Axes:
        return tuple(sorted(names.index(n) for n in clique))

    return [axes(c) for c in jtree.nodes], [(axes(a), axes(b)) for a, b in jtree.edges]


def random_factors(
    sizes: Sequence[int], scopes: Sequence[Axes], seed: int, zeros: bool = False
) -> Factors:
    """1-way log-factors on every column plus one on each scope."""
    rng = np.random.default_rng(seed)
    factors: Factors = []
    for axes in [*((i,) for i in range(len(sizes))), *scopes]:
        table = rng.normal(0.0, 1.5, size=[sizes[a] for a in axes])
        if zeros and len(axes) > 1:
            table[rng.uniform(size=table.shape) < 0.25] = -np.inf  # structural zeros
        factors.append((axes, table))
    return factors


def brute_force(sizes: Sequence[int], factors: Factors) -> np.ndarray:
    """The normalised joint over every column, times ``TOTAL``."""
    log = np.zeros(sizes)
    for axes, table in factors:
        shape = [sizes[a] if a in axes else 1 for a in range(len(sizes))]
        log = log + table.reshape(shape)  # axes are ascending
    joint = np.exp(log - log.max())
    out: np.ndarray = joint / joint.sum() * TOTAL
    return out


def marginal_of(joint: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    out: np.ndarray = np.einsum(joint, list(range(joint.ndim)), list(columns))
    return out


MODELS: dict[str, tuple[list[int], list[Axes]]] = {
    # two overlapping loops: 0-1-2-3-0 and 1-2-4, with a triple factor
    "loopy": ([2, 3, 4, 2, 3], [(0, 1), (1, 2), (2, 3), (0, 3), (1, 2, 4)]),
    # a 5-cycle: triangulation adds chords, pairs across cliques abound
    "cycle": ([3, 2, 4, 3, 2], [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]),
    # two independent components, one of them a loop, plus a lone column
    "disconnected": ([2, 4, 3, 3, 2, 2], [(0, 1), (2, 3), (3, 4), (2, 4)]),
    # a chain: the path-carrying case on a long tree path
    "chain": ([2, 3, 2, 4, 3], [(0, 1), (1, 2), (2, 3), (3, 4)]),
}


@pytest.mark.parametrize("builder", [networkx_tree, mbi_tree], ids=["networkx", "mbi"])
@pytest.mark.parametrize("zeros", [False, True], ids=["positive", "zeros"])
@pytest.mark.parametrize("model", list(MODELS))
def test_every_one_and_two_way_marginal_matches_brute_force(
    model: str, zeros: bool, builder: TreeBuilder
) -> None:
    sizes, scopes = MODELS[model]
    factors = random_factors(sizes, scopes, seed=len(model), zeros=zeros)
    cliques, edges = builder(sizes, scopes)
    tree = CalibratedTree(factors, cliques, edges, TOTAL)
    joint = brute_force(sizes, factors)
    d = len(sizes)
    cross_clique = 0
    for i in range(d):
        np.testing.assert_allclose(
            tree.marginal([i]), marginal_of(joint, [i]), rtol=1e-9, atol=1e-9 * TOTAL
        )
    for a, b in itertools.permutations(range(d), 2):
        cross_clique += not any({a, b} <= set(c) for c in cliques)
        got = tree.marginal([a, b])
        assert got.shape == (sizes[a], sizes[b])
        np.testing.assert_allclose(
            got, marginal_of(joint, [a, b]), rtol=1e-9, atol=1e-9 * TOTAL, err_msg=f"pair {(a, b)}"
        )
    assert cross_clique > 0  # the across-cliques path was exercised
    for clique in cliques:  # and marginals inside a clique, in any order
        for columns in itertools.permutations(clique):
            np.testing.assert_allclose(
                tree.marginal(columns), marginal_of(joint, columns), rtol=1e-9, atol=1e-9 * TOTAL
            )


def test_disconnected_components_are_independent() -> None:
    sizes, scopes = MODELS["disconnected"]
    factors = random_factors(sizes, scopes, seed=3)
    tree = CalibratedTree(factors, *networkx_tree(sizes, scopes), TOTAL)
    pair = tree.marginal([1, 3])
    np.testing.assert_allclose(
        pair, np.outer(tree.marginal([1]), tree.marginal([3])) / TOTAL, rtol=1e-12
    )
    assert pair.sum() == pytest.approx(TOTAL, rel=1e-12)


def test_more_than_two_columns_across_cliques_is_refused() -> None:
    sizes, scopes = MODELS["chain"]
    tree = CalibratedTree(
        random_factors(sizes, scopes, seed=0), *networkx_tree(sizes, scopes), TOTAL
    )
    with pytest.raises(ValueError, match="only pairs"):
        tree.marginal([0, 2, 4])


@pytest.mark.parametrize("zeros", [False, True], ids=["positive", "zeros"])
@pytest.mark.parametrize("model", list(MODELS))
def test_sampling_chain_of_a_calibrated_model_is_the_model_exactly(model: str, zeros: bool) -> None:
    """``PGMEstimator.chain()``: the product of its conditional tables is the model's joint."""
    from privsynth_marginal.estimate import PGMEstimator

    sizes, scopes = MODELS[model]
    factors = random_factors(sizes, scopes, seed=7 + len(model), zeros=zeros)
    estimator = PGMEstimator([f"c{i}" for i in range(len(sizes))], sizes)
    estimator._calibrate(factors, TOTAL)  # what fit() does with the estimated potentials
    chain = estimator.chain()
    assert sorted(chain.order) == list(range(len(sizes)))
    joint = np.ones(sizes)
    for column, parents, table in zip(chain.order, chain.parents, chain.tables, strict=True):
        assert set(parents) <= set(chain.order[: chain.order.index(column)])
        np.testing.assert_allclose(table.sum(axis=-1), 1.0, atol=1e-12)
        axes = [*parents, column]
        ordered = np.transpose(table, np.argsort(axes))  # axes ascending
        joint = joint * ordered.reshape([sizes[a] if a in axes else 1 for a in range(len(sizes))])
    np.testing.assert_allclose(
        joint * TOTAL, brute_force(sizes, factors), rtol=1e-9, atol=1e-9 * TOTAL
    )


def test_model_size_is_mbi_s_figure_on_random_models() -> None:
    """The bitmask model size AIM checks every candidate with equals mbi's
    ``hypothetical_model_size`` (same elimination order, same maximal cliques): trees, loops,
    triples, columns in no clique; past 8 and 16 columns (the byte tables of the cell counts);
    and the same for every candidate when the candidates are sized in one call."""
    import random

    from privsynth_marginal.estimate import _mbi
    from privsynth_marginal.junction import model_size_mb, model_sizes_mb

    mbi = _mbi()
    rng = random.Random(0)
    for trial in range(150):
        d = rng.randint(2, 20)
        sizes = [rng.randint(2, 9) for _ in range(d)]
        names = [f"c{i}" for i in range(d)]
        cliques: list[tuple[int, ...]] = [(i,) for i in range(d) if rng.random() < 0.9]
        if trial % 3 == 0:  # a tree: mbi eliminates leaves first
            cliques += [tuple(sorted((rng.randrange(i), i))) for i in range(1, d)]
        else:
            for _ in range(rng.randint(0, 2 * d)):
                k = min(rng.choice([2, 2, 3]), d)
                cliques.append(tuple(sorted(rng.sample(range(d), k))))
        want = mbi.junction_tree.hypothetical_model_size(
            mbi.Domain(names, sizes), [tuple(names[i] for i in c) for c in cliques]
        )
        assert model_size_mb(sizes, cliques) == pytest.approx(want, rel=1e-12), (sizes, cliques)
        candidates = [tuple(sorted(rng.sample(range(d), 2))) for _ in range(5)]
        assert model_sizes_mb(sizes, cliques[:-1], candidates) == [
            model_size_mb(sizes, [*cliques[:-1], c]) for c in candidates
        ]


def test_lean_mirror_descent_gives_mbi_s_potentials() -> None:
    """Skipping the marginal-oracle passes outside the loop changes no iterate: the same
    potentials as mbi's MirrorDescent, cold and warm-started."""
    from privsynth_marginal.estimate import _mbi, lean_mirror_descent

    mbi = _mbi()
    rng = np.random.default_rng(0)
    sizes = [3, 4, 2, 3]
    names = [f"c{i}" for i in range(len(sizes))]
    domain = mbi.Domain(names, sizes)
    scopes = [(0,), (1,), (2,), (3,), (0, 1), (1, 2), (2, 3)]
    measurements = [
        mbi.LinearMeasurement(
            rng.uniform(0, 100, size=int(np.prod([sizes[i] for i in s]))),
            tuple(names[i] for i in s),
            stddev=2.0,
        )
        for s in scopes
    ]
    fitted = []
    for estimator in (lean_mirror_descent(mbi), mbi.estimation.MirrorDescent()):
        first = estimator.estimate(domain, measurements[:5], iters=50)
        model = estimator.estimate(domain, measurements, iters=50, warm_start=first)
        fitted.append(
            ({k: np.asarray(v.values) for k, v in model.potentials.tables.items()}, model.total)
        )
    (lean, lean_total), (stock, stock_total) = fitted
    assert lean_total == pytest.approx(stock_total)
    assert lean.keys() == stock.keys()
    for clique in stock:
        np.testing.assert_allclose(lean[clique], stock[clique], rtol=1e-10, atol=1e-10)
