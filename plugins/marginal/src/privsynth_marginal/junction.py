"""Exact marginals of a fitted model in numpy: junction-tree calibration, then local sums.

A model is a set of log-potential factors. On its junction tree (cliques of the triangulated
graph), one collect-and-distribute pass of sum-product messages in log space gives every
clique's marginal; a marginal inside a clique is then a sum, and a pair of columns in different
cliques is carried along the tree path between them, one clique at a time, so no table larger
than a clique (times one column) is ever built. This replaces mbi's jitted queries, each of
which compiles a new jax program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np
from scipy.special import logsumexp

Axes = tuple[int, ...]


def contract(operands: Sequence[tuple[Axes, np.ndarray]], out: Sequence[int]) -> np.ndarray:
    """``einsum`` of ``operands`` (axes named by column index) summed down to ``out``."""
    local: dict[int, int] = {}
    args: list[object] = []
    for axes, array in operands:
        args += [array, [local.setdefault(a, len(local)) for a in axes]]
    subscripts = [local.setdefault(a, len(local)) for a in out]
    result: np.ndarray = np.einsum(*args, subscripts, optimize=True)  # type: ignore[call-overload]
    return result


def _expand(axes: Axes, array: np.ndarray, target: Axes) -> np.ndarray:
    """``array`` over ``axes`` broadcast to the axes ``target`` (a superset)."""
    order = [axes.index(a) for a in target if a in axes]
    moved = np.transpose(array, order)
    shape = [moved.shape[order.index(axes.index(a))] if a in axes else 1 for a in target]
    return moved.reshape(shape)


class CalibratedTree:
    """Clique marginals of a model given as log-potentials, and queries on them.

    Args:
        log_factors: ``(axes, log table)`` pairs; axes are column indices, ascending.
        cliques: the junction tree's cliques (column indices, ascending).
        edges: the junction tree's edges, as pairs of cliques.
        total: the number of records the model stands for (marginals are scaled to it).
    """

    def __init__(
        self,
        log_factors: Sequence[tuple[Axes, np.ndarray]],
        cliques: Sequence[Axes],
        edges: Sequence[tuple[Axes, Axes]],
        total: float,
    ) -> None:
        self.total = total
        self.tree = nx.Graph()
        self.tree.add_nodes_from(cliques)
        self.tree.add_edges_from(edges)
        sizes: dict[int, int] = {}
        for axes, table in log_factors:
            sizes.update(zip(axes, table.shape, strict=True))
        beliefs = {c: np.zeros([sizes[a] for a in c]) for c in cliques}
        for axes, table in log_factors:
            home = next(c for c in cliques if set(axes) <= set(c))
            beliefs[home] = beliefs[home] + _expand(axes, table, home)
        self.marginals = self._calibrate(beliefs)

    def _calibrate(self, beliefs: dict[Axes, np.ndarray]) -> dict[Axes, np.ndarray]:
        messages: dict[tuple[Axes, Axes], np.ndarray] = {}

        def send(src: Axes, dst: Axes) -> None:
            log = beliefs[src].copy()
            for other in self.tree.neighbors(src):
                if other != dst:
                    log = log + _expand(_separator(other, src), messages[(other, src)], src)
            separator = _separator(src, dst)
            summed = tuple(i for i, a in enumerate(src) if a not in separator)
            messages[(src, dst)] = logsumexp(log, axis=summed) if summed else log

        for component in nx.connected_components(self.tree):
            root = next(iter(component))
            order = list(nx.dfs_postorder_nodes(self.tree, root))
            parent = dict(nx.bfs_predecessors(self.tree, root))
            for node in order:  # collect towards the root
                if node in parent:
                    send(node, parent[node])
            for node in reversed(order):  # distribute from the root
                if node in parent:
                    send(parent[node], node)
        out = {}
        for clique, log in beliefs.items():
            for other in self.tree.neighbors(clique):
                log = log + _expand(_separator(other, clique), messages[(other, clique)], clique)
            probs = np.exp(log - log.max())
            out[clique] = probs / probs.sum()
        return out

    def _within(self, columns: Sequence[int]) -> Axes | None:
        wanted = set(columns)
        best = [c for c in self.marginals if wanted <= set(c)]
        return min(best, key=lambda c: self.marginals[c].size) if best else None

    def marginal(self, columns: Sequence[int]) -> np.ndarray:
        """Estimated counts over ``columns`` (in that order): any columns inside one clique,
        or a pair of columns anywhere in the model."""
        home = self._within(columns)
        if home is not None:
            return contract([(home, self.marginals[home])], columns) * self.total
        if len(columns) != 2:
            raise ValueError(
                f"columns {list(columns)} lie in no one clique; only pairs can "
                "be queried across cliques"
            )
        a, b = columns
        start, end = self._within([a]), self._within([b])
        assert start is not None and end is not None
        if not nx.has_path(self.tree, start, end):  # separate components: independent
            outer: np.ndarray = np.multiply.outer(self.marginal([a]), self.marginal([b]))
            return outer / self.total
        path = nx.shortest_path(self.tree, start, end)
        # begin at the last clique on the path that holds a (those holding a are connected)
        first = max(i for i, c in enumerate(path) if a in c)
        current, carried = path[first], self.marginals[path[first]]
        for nxt in path[first + 1 :]:
            separator = _separator(current, nxt)
            joint = contract([(current, carried)], (a, *separator))
            sep_marginal = contract([(nxt, self.marginals[nxt])], separator)
            conditional = self.marginals[nxt] / np.where(
                _expand(separator, sep_marginal, nxt) > 0,
                _expand(separator, sep_marginal, nxt),
                np.inf,
            )
            carried = contract([((a, *separator), joint), (nxt, conditional)], (a, *nxt))
            current = (a, *nxt)
        return contract([(current, carried)], (a, b)) * self.total


def _separator(c1: Axes, c2: Axes) -> Axes:
    return tuple(a for a in c1 if a in set(c2))


def model_size_mb(sizes: Sequence[int], cliques: Sequence[Sequence[int]]) -> float:
    """Megabytes of float64 tables in the junction tree mbi would build over ``cliques``.

    The same figure as ``mbi.junction_tree.hypothetical_model_size`` (the same elimination
    order: mbi's greedy one, ties to the first column, or leaves first when the graph is a
    tree; the same maximal cliques), computed on bitmasks of column indices instead of mbi
    domains: AIM asks it of every candidate in every round, and mbi's took 0.07 s a call on
    43 columns (half of a round's time, issue #18).
    """
    return _size_mb(sizes, *_graph(len(sizes), cliques))


def model_sizes_mb(
    sizes: Sequence[int], cliques: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]]
) -> list[float]:
    """``model_size_mb(sizes, [*cliques, c])`` for each ``c`` of ``candidates``, with the graph
    of ``cliques`` built once (AIM's filter of its candidate pool)."""
    adjacent, covered = _graph(len(sizes), cliques)
    out = []
    for candidate in candidates:
        extra, extra_covered = _graph(len(sizes), [candidate])
        out.append(
            _size_mb(
                sizes,
                [a | b for a, b in zip(adjacent, extra, strict=True)],
                covered | extra_covered,
            )
        )
    return out


def _graph(d: int, cliques: Sequence[Sequence[int]]) -> tuple[list[int], int]:
    """The graph of ``cliques`` over ``d`` columns: each column's neighbours as a bitmask, and
    the mask of the columns some clique holds."""
    adjacent = [0] * d
    covered = 0
    for clique in cliques:
        mask = 0
        for i in clique:
            mask |= 1 << i
        covered |= mask
        for i in clique:
            adjacent[i] |= mask & ~(1 << i)
    return adjacent, covered


def _size_mb(sizes: Sequence[int], adjacent: list[int], covered: int) -> float:
    """:func:`model_size_mb` of the graph ``adjacent`` (changed in place)."""
    d = len(sizes)
    edges = sum(a.bit_count() for a in adjacent) // 2
    cells = _cell_counter(tuple(sizes))

    if edges and edges == d - 1 and _connected(adjacent):
        # a tree: mbi eliminates its leaves first, so its maximal cliques are its edges
        total = sum(
            sizes[i] * sizes[j] for i in range(d) for j in range(i + 1, d) if adjacent[i] >> j & 1
        )
        return total * 8 / 2**20

    def cost(a: int) -> int:
        # mbi's cost: the cells of the union of the cliques holding a (1 when none does)
        return cells(adjacent[a] | 1 << a) if covered >> a & 1 else 1

    costs = [cost(a) for a in range(d)]
    remaining = list(range(d))
    eliminated: list[int] = []
    for _ in range(d):
        a = min(remaining, key=costs.__getitem__)  # the first minimum, as mbi's OrderedDict
        remaining.remove(a)
        neighbours = adjacent[a]
        eliminated.append(neighbours | 1 << a)
        for b in _bits(neighbours):
            adjacent[b] = (adjacent[b] | neighbours) & ~(1 << b) & ~(1 << a)
            costs[b] = cost(b)
    # a perfect elimination order: the maximal cliques are the elimination cliques that no
    # other contains
    maximal: list[int] = []
    for m in sorted(set(eliminated), key=int.bit_count, reverse=True):
        if not any(m & o == m for o in maximal):  # only a larger clique can hold it
            maximal.append(m)
    return sum(cells(m) for m in maximal) * 8 / 2**20


@functools.lru_cache(maxsize=8)
def _cell_counter(sizes: tuple[int, ...]) -> Callable[[int], int]:
    """``cells(mask)``: the product of ``sizes`` over the set bits of ``mask``, by one table
    lookup per byte of the mask (tables made once per ``sizes``). AIM's candidate filter asks
    it millions of times on a wide table: bit by bit it was half of ``model_size_mb``'s time."""
    tables = []
    for start in range(0, len(sizes), 8):
        chunk = sizes[start : start + 8]
        table = [1] * 256
        for byte in range(1, 256):
            low = byte & -byte
            bit = low.bit_length() - 1
            table[byte] = table[byte ^ low] * (chunk[bit] if bit < len(chunk) else 1)
        tables.append((start, table))

    def cells(mask: int) -> int:
        product = 1
        for start, table in tables:
            product *= table[(mask >> start) & 255]
        return product

    return cells


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _connected(adjacent: Sequence[int]) -> bool:
    seen, frontier = 1, 1
    while frontier:
        reached = 0
        for i in range(len(adjacent)):
            if frontier >> i & 1:
                reached |= adjacent[i]
        frontier = reached & ~seen
        seen |= frontier
    return seen == (1 << len(adjacent)) - 1
