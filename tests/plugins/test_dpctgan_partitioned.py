"""DP-CTGAN's private statistics from a partitioned table, counted on the cluster (issue #19).

What must hold: the exact counts behind the marginals release (the trees of the binned numbers,
then the one-way and focus-pair histograms of the rows encoded over the released cells) are two
``Table.reduce`` passes run on the workers, one partition per task, before the rows are spooled
for DP-SGD; the fit process never reads the spool for them; the sums equal the one-machine
fit's counts exactly, taken by the same count functions; and a count that fails on a
partition names the partition, never a value.

The noise is removed (test only) where the tests compare released marginals, so that both fits
derive the same cells; it says so where it does.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from partition_helpers import in_process_cluster, write_parts

from privsynth_core import GeneratorError, PrivacyBudget, PrivacyLedger, Table
from privsynth_core.datasets import adult_schema
from privsynth_core.partitions import PartitionedTable
from privsynth_core.privacy.dpsgd_spool import SpooledRows
from privsynth_core.registry import generators
from privsynth_plugins.dpctgan import _cells, _marginals
from privsynth_plugins.dpctgan._cells import cells_state, fine_and_null_counts
from privsynth_plugins.dpctgan._counts import marginal_count_arrays

#: rows per partition: uneven, and one partition with a header and no rows
SIZES = (900, 0, 600, 700)
PARAMS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 400,
    "generator_dim": [16],
    "critic_dim": [16],
    "embedding_dim": 8,
    "focus_columns": ["income"],
    "seed": 1,
}


def _executed(client: Any) -> int:
    """Tasks the cluster's workers have run so far."""
    return sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())


def test_the_marginal_counts_are_summed_on_the_workers_and_equal_the_one_machine_counts(
    adult_raw: pl.DataFrame,
    tmp_path: Path,
    ledger: PrivacyLedger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = adult_raw.sample(sum(SIZES), seed=9)
    one = Table.from_frame(frame, adult_schema(), source="adult")
    events: list[tuple[str, str, Any]] = []  # (path, what, detail), in order
    path = {"now": ""}

    def recording_reduce(real: Any) -> Any:
        def reduce(self: Table, fn: Any) -> dict[str, np.ndarray]:
            events.append((path["now"], "reduce", fn))
            return dict(real(self, fn))

        return reduce

    real_spool = PartitionedTable.spool

    def spool(self: PartitionedTable, directory: Path) -> list[tuple[Path, int]]:
        events.append((path["now"], "spool", None))
        return real_spool(self, directory)

    real_frames = SpooledRows.frames

    def frames(self: SpooledRows, rows: int) -> Any:
        events.append((path["now"], "spool frames", rows))  # the old marginals path
        return real_frames(self, rows)

    def recording(name: str, fn: Any) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            events.append((path["now"], name, out))
            return out

        return record

    monkeypatch.setattr(Table, "reduce", recording_reduce(Table.reduce))
    monkeypatch.setattr(PartitionedTable, "reduce", recording_reduce(PartitionedTable.reduce))
    monkeypatch.setattr(PartitionedTable, "spool", spool)
    monkeypatch.setattr(SpooledRows, "frames", frames)
    monkeypatch.setattr(_marginals, "exact_trees", recording("trees", _marginals.exact_trees))
    monkeypatch.setattr(
        _marginals, "exact_marginals", recording("marginals", _marginals.exact_marginals)
    )
    # Test only: the noise removed, so that both fits derive the same cells and marginals.
    monkeypatch.setattr(_marginals, "noisy_trees", lambda trees, scale: trees)
    monkeypatch.setattr(_marginals, "discrete_gaussian", lambda counts, sigma: counts)
    ledger.set_budget("source:adult", epsilon=20.0, delta=1e-4)
    fitted = {}
    path["now"] = "one"
    fitted["one"] = generators().get("dpctgan")(**PARAMS)
    fitted["one"].fit(one, budget=PrivacyBudget(2.0, 1e-5), ledger=ledger, run_id="one")
    with in_process_cluster() as (client, executor):
        parts = PartitionedTable.load(
            write_parts(frame, tmp_path / "parts", SIZES),
            adult_schema(),
            source="adult",
            executor=executor,
        )
        before = _executed(client)
        path["now"] = "parts"
        fitted["parts"] = generators().get("dpctgan")(**PARAMS)
        fitted["parts"].fit(parts, budget=PrivacyBudget(2.0, 1e-5), ledger=ledger, run_id="p")
        # both passes ran there, one task per partition each
        assert _executed(client) - before >= 2 * len(SIZES)
    on = {p: [(what, detail) for q, what, detail in events if q == p] for p in ("one", "parts")}
    # the same two count functions on both paths, in the same order: one counting code path
    for p in on:
        fns = [detail for what, detail in on[p] if what == "reduce"]
        assert [type(fn) for fn in fns] == [partial, partial]
        assert [fn.func for fn in fns] == [fine_and_null_counts, marginal_count_arrays]
        for fn in fns:
            pickle.loads(pickle.dumps(fn))  # what a cluster of processes does with it
    # from partitions: the passes, then the spool for DP-SGD, whose frames are never read
    assert [what for what, _ in on["parts"]] == [
        "reduce",
        "trees",
        "reduce",
        "marginals",
        "spool",
    ]
    assert "spool" not in [what for what, _ in on["one"]]  # one file: no spool at all
    # exactly the one-machine counts
    trees = {p: next(d for what, d in on[p] if what == "trees") for p in on}
    assert trees["one"].keys() == trees["parts"].keys() and len(trees["one"]) == 3
    for name in trees["one"]:
        for a, b in zip(trees["one"][name], trees["parts"][name], strict=True):
            assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b)
    counts = {p: next(d for what, d in on[p] if what == "marginals") for p in on}
    assert counts["one"].one_way.keys() == counts["parts"].one_way.keys() != set()
    assert counts["one"].two_way.keys() == counts["parts"].two_way.keys() != set()
    for name, expected in counts["one"].one_way.items():
        assert np.array_equal(counts["parts"].one_way[name], expected)
    for pair, expected in counts["one"].two_way.items():
        assert np.array_equal(counts["parts"].two_way[pair], expected)
    # every row counted once: income is neither nullable nor ever off its domain
    assert counts["parts"].one_way["income"].sum() == one.n_rows
    # and the (noise-free, test only) releases derived from them are the same
    assert fitted["one"]._marginals == fitted["parts"]._marginals
    assert cells_state(fitted["one"]._cells) == cells_state(fitted["parts"]._cells)


def test_a_count_that_fails_on_a_partition_names_it_and_never_a_value(
    adult_raw: pl.DataFrame,
    tmp_path: Path,
    ledger: PrivacyLedger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = adult_raw.sample(sum(SIZES), seed=9)
    secret = int(frame["fnlwgt"][0])

    def failing(frame: pl.DataFrame, **kwargs: Any) -> Any:
        raise ValueError(f"cannot count {int(frame['fnlwgt'][0])}")

    monkeypatch.setattr(_cells, "count_fine", failing)  # a bug that quotes a row
    ledger.set_budget("source:adult", epsilon=20.0, delta=1e-4)
    with ThreadPoolExecutor(2) as pool:
        parts = PartitionedTable.load(
            write_parts(frame, tmp_path / "parts", SIZES),
            adult_schema(),
            source="adult",
            executor=pool,
        )
        generator = generators().get("dpctgan")(**PARAMS)
        with pytest.raises(GeneratorError, match=r"part-00[0-3]\.parquet") as caught:
            generator.fit(parts, budget=PrivacyBudget(2.0, 1e-5), ledger=ledger, run_id="f")
    assert str(secret) not in str(caught.value)
