"""A generator's own exact counts from a partitioned table: its function run on every conformed
partition and the arrays summed equal the same function on the whole table as one file
(issue #19)."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from partition_helpers import in_process_cluster

from privsynth_core import GeneratorError, Table
from privsynth_core.partitions import PartitionedTable
from privsynth_core.schema import Column, ColumnKind, Schema

SCHEMA = Schema(
    domain="public",
    columns=(
        Column(name="x", kind=ColumnKind.CONTINUOUS, nullable=True, bounds=(0.0, 100.0)),
        Column(name="k", kind=ColumnKind.INTEGER, bounds=(0, 500)),
        Column(name="c", kind=ColumnKind.CATEGORICAL, nullable=True, categories=("a", "b", "c")),
        Column(name="b", kind=ColumnKind.BOOLEAN),
    ),
)


def small_table(rows: int = 3000) -> pl.DataFrame:
    """A few thousand rows with nulls in a number and a category (shared with the MST test)."""
    rng = np.random.default_rng(11)
    x = np.round(rng.gamma(2.0, 10.0, rows), 3)
    return pl.DataFrame(
        {
            "x": [None if i % 7 == 0 else float(v) for i, v in enumerate(x)],
            "k": rng.integers(0, 501, rows),
            "c": [None if i % 5 == 0 else "abc"[i % 3] for i in range(rows)],
            "b": rng.random(rows) < 0.3,
        }
    )


def write_parts(frame: pl.DataFrame, directory: Path, parts: int) -> Path:
    """``frame`` as ``parts`` Parquet files of nearly equal size."""
    directory.mkdir(parents=True, exist_ok=True)
    size = -(-frame.height // parts)
    for i in range(parts):
        frame.slice(i * size, size).write_parquet(directory / f"part-{i:03d}.parquet")
    return directory


def value_counts(frame: pl.DataFrame, *, edges: int) -> dict[str, np.ndarray]:
    """Nulls per column and a histogram of ``x`` (a module-level count function, picklable)."""
    x = frame["x"].drop_nulls().to_numpy()
    return {
        "nulls": np.array([frame[c].null_count() for c in frame.columns], dtype=np.int64),
        "x": np.histogram(x, bins=np.linspace(0.0, 100.0, edges))[0].astype(np.int64),
        "c": np.array([int((frame["c"] == v).sum()) for v in "abc"], dtype=np.int64),
    }


def failing(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """A count function with a bug whose message quotes a value of the rows."""
    raise ValueError(f"cannot count {frame['x'].drop_nulls()[0]}")


def ragged(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """A count function whose shape depends on the rows (a bug)."""
    return {"x": np.zeros(frame.height % 3 + 1, dtype=np.int64)}


def test_summed_partition_counts_equal_the_one_file_counts(tmp_path: Path) -> None:
    frame = small_table()
    fn = partial(value_counts, edges=21)
    pickle.dumps(fn)  # what a Dask cluster does with it
    one_file = Table.from_frame(frame, SCHEMA).reduce(fn)
    with ThreadPoolExecutor(2) as pool:
        table = PartitionedTable.load(write_parts(frame, tmp_path / "t", 4), SCHEMA, executor=pool)
        summed = table.reduce(fn)
    assert set(summed) == {"nulls", "x", "c"}
    for name, counts in one_file.items():
        assert counts.dtype == summed[name].dtype == np.int64
        assert np.array_equal(summed[name], counts), name
    assert summed["nulls"][0] > 0 and summed["nulls"][2] > 0  # the nulls were counted
    assert int(summed["x"].sum()) == frame["x"].drop_nulls().len()


def test_a_count_function_that_fails_names_the_partition_never_a_value(tmp_path: Path) -> None:
    frame = small_table(300)
    table = PartitionedTable.load(write_parts(frame, tmp_path / "t", 2), SCHEMA)
    with pytest.raises(GeneratorError, match="part-000.parquet") as caught:
        table.reduce(failing)
    assert "ValueError" in str(caught.value) and "failing" in str(caught.value)
    value = str(frame["x"].drop_nulls()[0])
    assert value not in str(caught.value)
    uneven = PartitionedTable.load(write_parts(frame.head(299), tmp_path / "u", 2), SCHEMA)
    with pytest.raises(GeneratorError, match="same shapes for every partition") as caught:
        uneven.reduce(ragged)
    assert "(1,)" not in str(caught.value) and "(3,)" not in str(caught.value)


def _block(i: int) -> np.ndarray:
    """A partition's result (module-level: a Dask worker runs it)."""
    return np.full(1000, i, dtype=np.int64)


def test_a_pass_keeps_a_bounded_number_of_results_on_the_cluster() -> None:
    # Executor.map on a Dask client keeps every future (so every result, on the workers)
    # until the pass ends; the pass must drop each one as it is read.
    from privsynth_core.partitions import IN_FLIGHT_PER_SLOT, _slots, bounded_map

    with in_process_cluster() as (client, executor):
        window = IN_FLIGHT_PER_SLOT * _slots(executor)
        assert window == 4
        held = []
        out = []
        for value in bounded_map(_block, range(20), executor, in_flight=window):
            out.append(int(value[0]))
            # the scheduler's live tasks: those whose futures are still held
            held.append(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))
        assert out == list(range(20))  # in order
        assert max(held) <= window
        # what Executor.map does: every result stays until the end
        mapped = executor.map(_block, range(20))
        next(iter(mapped))
        assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 20
        assert len(list(mapped)) == 19
