"""Helpers of the tests that read partitioned tables: Parquet parts cut from a frame, and a real
Dask cluster in this process (its workers are threads here, so a test can patch what they run)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl


def write_parts(frame: pl.DataFrame, directory: Path, sizes: Sequence[int]) -> Path:
    """``frame``'s rows cut in order into Parquet parts of ``sizes`` rows (a 0 writes a part with
    a header and no rows) under ``directory``, which is returned."""
    directory.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, size in enumerate(sizes):
        frame.slice(start, size).write_parquet(directory / f"part-{i:03d}.parquet")
        start += size
    return directory


@contextmanager
def in_process_cluster(n_workers: int = 2) -> Iterator[tuple[Any, Executor]]:
    """A ``LocalCluster`` of ``n_workers`` one-thread workers in this process, its client and
    the client's executor (what a ``PartitionedTable`` is given)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,  # type: ignore[no-untyped-call]
            dashboard_address=None,
        ) as cluster,
        Client(cluster.scheduler_address) as client,
    ):
        yield client, client.get_executor()  # type: ignore[no-untyped-call]
