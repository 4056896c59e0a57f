"""Exact marginal counts: what MST and AIM measure and score, from rows in memory or counted once.

The algorithms (:mod:`.algorithms`) read the private data only through
:meth:`ExactMarginals.marginal`: the exact count vector of one clique's marginal, which a
mechanism then noises (a Gaussian measurement) or scores (an exponential-mechanism quality).
Two sources answer it with the same integers:

- :class:`CodesMarginals`: a ``(rows, columns)`` matrix of cell codes in this process, counted
  on request (:func:`.mechanisms.marginal_counts`): the single-file fit;
- :class:`SummedMarginals`: counts taken beforehand, in one pass over the rows, for every
  clique the algorithm can ask for (:func:`marginals_to_count`): the partitioned fit, where
  each partition's counts are summed on a Dask cluster
  (:meth:`privsynth_core.table.Table.reduce`) and the rows are never needed again.

Neither exposes the number of rows: the only size a plan may use is the released n̂
(``Table.planning_rows``). Everything here is **private**, for the mechanisms only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from privsynth_core import GeneratorError

from .discretise import Discretiser
from .mechanisms import marginal_counts

Clique = tuple[int, ...]


class ExactMarginals:
    """The exact counts of the marginals of a table's cell codes (private).

    Attributes:
        sizes: cells per column (public: from the schema and the DP-learned cells).
    """

    sizes: list[int]

    def marginal(self, clique: Sequence[int]) -> np.ndarray:
        """Exact counts (int64) of the marginal on columns ``clique`` (flattened, C order)."""
        raise NotImplementedError


#: Bytes of counts :class:`CodesMarginals` keeps for the next request of the same marginal.
COUNTS_CACHE_BYTES = 256 * 2**20


class CodesMarginals(ExactMarginals):
    """Marginals counted on request from a matrix of cell codes held in this process.

    A marginal asked for again is served from the counts kept the first time (up to
    ``COUNTS_CACHE_BYTES`` of them): AIM scores every candidate pair in every round, and on
    census KDD's 100k rows recounting them was a fifth of the fit.
    """

    def __init__(self, codes: np.ndarray, sizes: Sequence[int]) -> None:
        self._codes = codes
        self.sizes = list(sizes)
        self._kept: dict[Clique, np.ndarray] = {}
        self._kept_bytes = 0

    def marginal(self, clique: Sequence[int]) -> np.ndarray:
        """:func:`.mechanisms.marginal_counts` of the codes (a copy: no caller can change
        what the next one gets)."""
        key = tuple(clique)
        kept = self._kept.get(key)
        if kept is not None:
            return kept.copy()
        counts = marginal_counts(self._codes, self.sizes, key)
        if self._kept_bytes + counts.nbytes <= COUNTS_CACHE_BYTES:
            self._kept[key] = counts.copy()
            self._kept_bytes += counts.nbytes
        return counts


class SummedMarginals(ExactMarginals):
    """Marginals counted beforehand (e.g. summed over a partitioned table's partitions).

    Args:
        sizes: cells per column.
        counts: the exact count vector of every clique the algorithm may ask for.
    """

    def __init__(self, sizes: Sequence[int], counts: Mapping[Clique, np.ndarray]) -> None:
        self.sizes = list(sizes)
        self._counts = dict(counts)
        for clique, vector in self._counts.items():
            cells = int(np.prod([self.sizes[i] for i in clique]))
            if vector.shape != (cells,):
                raise GeneratorError(
                    f"the counts of marginal {clique} have shape {vector.shape}, not ({cells},) "
                    "(a bug in the counting pass)"
                )

    def marginal(self, clique: Sequence[int]) -> np.ndarray:
        """The counted vector (a copy, so no caller can change the others' counts).

        Raises:
            GeneratorError: ``clique`` was not counted (a bug: the pass must count every
                clique the algorithm can ask for).
        """
        key = tuple(clique)
        if key not in self._counts:
            raise GeneratorError(
                f"marginal {key} was not counted in the pass over the rows (a bug: the pass "
                "must count every marginal the algorithm can ask for)"
            )
        return self._counts[key].copy()


def marginals_to_count(sizes: Sequence[int], *, max_cells: int | None = None) -> list[Clique]:
    """Every clique MST or AIM can ask for: each 1-way marginal and each pair (AIM: the pairs of
    at most ``max_cells`` cells, its candidates). Public: from the sizes and parameters."""
    d = len(sizes)
    cliques: list[Clique] = [(i,) for i in range(d)]
    cliques += [
        pair
        for pair in itertools.combinations(range(d), 2)
        if max_cells is None or sizes[pair[0]] * sizes[pair[1]] <= max_cells
    ]
    return cliques


def _key(clique: Clique) -> str:
    return ",".join(str(i) for i in clique)


def count_marginals(
    frame: pl.DataFrame, *, discretiser: Discretiser, cliques: Iterable[Clique]
) -> dict[str, np.ndarray]:
    """The exact marginals of one (conformed) frame's cell codes, keyed ``"i,j"``.

    Module-level and picklable with its arguments bound (``functools.partial``), so it runs on
    a Dask worker over one partition; summing its outputs over the partitions gives the
    counts of the whole table (each row falls in one partition).
    """
    codes = discretiser.encode(frame)
    sizes = discretiser.sizes
    return {_key(c): marginal_counts(codes, sizes, c) for c in cliques}


def summed_marginals(
    sizes: Sequence[int], counts: Mapping[str, np.ndarray], cliques: Iterable[Clique]
) -> SummedMarginals:
    """:class:`SummedMarginals` from :func:`count_marginals`' (summed) output."""
    return SummedMarginals(sizes, {c: counts[_key(c)] for c in cliques})
