"""DP-CTGAN's exact marginal counts of encoded rows (numpy only; no torch, so a Dask worker that
counts a partition never loads it).

The second pass of the marginals release (:func:`._marginals.release_with_cells`): once the
numeric cells are released and the encoder built from them, the one-way histograms of the
columns that are not binned and the focus pairs' two-way histograms are counted over the
encoded rows. :func:`exact_marginals` asks the table for them with one
:meth:`Table.reduce <privsynth_core.table.Table.reduce>` of :func:`marginal_count_arrays`: on a
partitioned table each partition is encoded and counted on the cluster (the encoder travels
pickled with the function; the query depends on release 1's output, which is public by then),
and only the count vectors come back; on one file the same function runs on the frame. Either
way the rows are encoded in chunks, so a pass holds one chunk of encoded rows, not the table.
Never released: :mod:`._marginals` noises the sums.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from privsynth_core.privacy.dpsgd import chunk_size

from ._cells import focus_pairs

if TYPE_CHECKING:
    import polars as pl

    from privsynth_core.table import Table

    from ._encoding import CTGANEncoder, MarginalGroup


@dataclass
class MarginalCounts:
    """The exact (noise-free, private) counts behind the noisy marginals; never released.

    Attributes:
        one_way: column -> count of rows in each of its marginal groups (int64).
        two_way: ``(focus column, other column)`` -> joint counts (rows: focus groups).
    """

    one_way: dict[str, np.ndarray] = field(default_factory=dict)
    two_way: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def n_tables(self) -> int:
        """How many histograms there are (``k`` of :mod:`._marginals`)."""
        return len(self.one_way) + len(self.two_way)


def _plan(
    encoder: CTGANEncoder,
    columns: Sequence[str],
    focus: Sequence[str],
    one_way: Sequence[str] | None,
) -> tuple[dict[str, MarginalGroup], list[tuple[str, str]], MarginalCounts]:
    """The groups counted, the focus pairs and zero counts of the right shapes (public: from
    the encoder and the names only, so every partition and the client agree on them)."""
    groups = {g.column: g for g in encoder.groups if g.column in set(columns)}
    pairs = focus_pairs(list(groups), focus)
    singles = set(groups) if one_way is None else set(one_way)
    zeros = MarginalCounts(
        one_way={
            name: np.zeros(g.n_groups, dtype=np.int64)
            for name, g in groups.items()
            if name in singles
        },
        two_way={
            (f, o): np.zeros((groups[f].n_groups, groups[o].n_groups), dtype=np.int64)
            for f, o in pairs
        },
    )
    return groups, pairs, zeros


def _group_codes(chunk: npt.NDArray[Any], group: MarginalGroup) -> npt.NDArray[np.int64]:
    """Each row's marginal group (-1 for a row with no slot set in the column's group).

    An encoded group is one-hot: each row has at most one slot set (to 1), so the set slot is
    the row's argmax wherever the row's maximum is positive.
    """
    block = chunk[:, group.span.start : group.span.end]
    if block.shape[1] == 0:
        return np.full(chunk.shape[0], -1, dtype=np.int64)
    slot_group = np.asarray(group.group_of_slot, dtype=np.int64)
    present = block.max(axis=1) > 0
    return np.where(present, slot_group[block.argmax(axis=1)], -1)


def count_marginals(
    chunks: Iterable[npt.ArrayLike],
    encoder: CTGANEncoder,
    columns: Sequence[str],
    focus: Sequence[str],
    *,
    one_way: Sequence[str] | None = None,
) -> MarginalCounts:
    """Exact counts of the one-way histograms of ``columns`` (or of ``one_way`` only, when
    given) and the two-way histograms of the focus pairs among ``columns``, accumulated over
    consecutive chunks of encoded rows (arrays of ``encoder.output_dim`` columns; a CPU tensor
    will do).

    Only one chunk and its per-column group codes are in memory at a time, so the pass is
    bounded by the chunk, not the table; the counts are integers, so any chunking gives the
    same result.
    """
    groups, pairs, counts = _plan(encoder, columns, focus, one_way)
    for chunk in chunks:
        data = np.asarray(chunk)
        codes = {name: _group_codes(data, group) for name, group in groups.items()}
        for name, total in counts.one_way.items():
            hits = codes[name][codes[name] >= 0]
            total += np.bincount(hits, minlength=groups[name].n_groups)
        for f, other in pairs:
            a, b = codes[f], codes[other]
            both = (a >= 0) & (b >= 0)
            width = groups[other].n_groups
            joint = np.bincount(a[both] * width + b[both], minlength=groups[f].n_groups * width)
            counts.two_way[(f, other)] += joint.reshape(-1, width)
    return counts


def marginal_count_arrays(
    frame: pl.DataFrame,
    *,
    encoder: CTGANEncoder,
    columns: Sequence[str],
    focus: Sequence[str],
    one_way: Sequence[str] | None = None,
    chunk_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """:func:`count_marginals` of ``frame``'s rows, encoded ``chunk_rows`` at a time (default:
    about :data:`~privsynth_core.privacy.dpsgd.CHUNK_MAX_BYTES` of encoded rows), as arrays
    keyed by position (``one_way/<i>``, ``two_way/<j>``, in :func:`_plan`'s order: keys
    never depend on how columns are named).

    The reduce function of :func:`exact_marginals`: module-level and picklable with its
    arguments bound (the encoder holds the schema and the released cells, numpy arrays), so
    it runs on each partition of a partitioned table on the cluster.
    """
    size = chunk_size(encoder, chunk_rows)
    chunks = (encoder.encode(frame.slice(s, size)) for s in range(0, frame.height, size))
    counts = count_marginals(chunks, encoder, columns, focus, one_way=one_way)
    out = {f"one_way/{i}": v for i, v in enumerate(counts.one_way.values())}
    out.update({f"two_way/{j}": v for j, v in enumerate(counts.two_way.values())})
    return out


def exact_marginals(
    table: Table,
    encoder: CTGANEncoder,
    columns: Sequence[str],
    focus: Sequence[str],
    *,
    one_way: Sequence[str] | None = None,
) -> MarginalCounts:
    """:func:`count_marginals` over every row of ``table``: one
    :meth:`~privsynth_core.table.Table.reduce` of :func:`marginal_count_arrays` (on a
    partitioned table, one pass on the cluster, one partition per task; only the counts come
    back). Never released."""
    _, _, counts = _plan(encoder, columns, focus, one_way)
    if not counts.n_tables:  # nothing to count: no pass over the rows
        return counts
    fn = partial(
        marginal_count_arrays,
        encoder=encoder,
        columns=tuple(columns),
        focus=tuple(focus),
        one_way=None if one_way is None else tuple(one_way),
    )
    summed = table.reduce(fn)
    for i, name in enumerate(counts.one_way):
        counts.one_way[name] = np.asarray(summed[f"one_way/{i}"], dtype=np.int64)
    for j, pair in enumerate(counts.two_way):
        counts.two_way[pair] = np.asarray(summed[f"two_way/{j}"], dtype=np.int64)
    return counts
