"""Child process of ``python -m bench scale-partitioned``: one measured pass, result as JSON.

``python -m bench.partitioned_worker single FILE SCHEMA OUT``: the single-process path: read the
whole table (one Parquet file), conform it, take the exact counts.

``python -m bench.partitioned_worker cluster DIR SCHEMA OUT --workers 2 --memory-limit 2GiB``:
the partitioned path on a local Dask cluster of worker processes, reached through its address
(as an existing cluster would be): the same counts, one partition per task.

Both take the counts a DP fit of ``independent`` and a DP domain need (every column's domain
histogram, the magnitude histograms, the category counts) and the row count n; the result holds
wall time, peak RSS (this process; each worker's for the cluster) and a digest of the counts so
the parent can check that both paths counted the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

BINS = 32


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(
    rows: int,
    histograms: dict[str, Any],
    magnitudes: dict[str, Any],
    categories: dict[str, dict[str, int]],
) -> str:
    digest = hashlib.sha256(str(rows).encode())
    for group in (histograms, magnitudes):
        for name in sorted(group):
            digest.update(name.encode() + group[name].tobytes())
    digest.update(json.dumps(categories, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def single(path: str, schema_path: str) -> dict[str, Any]:
    """The single-process path: the whole table in this process."""
    from privsynth_core.privacy.histograms import (
        category_counts,
        column_histogram,
        magnitude_counts,
        numeric_values,
    )
    from privsynth_core.schema import ColumnKind, Schema
    from privsynth_core.table import Table, read_frame
    from privsynth_core.validation import cast_column

    schema = Schema.load(schema_path)
    started = time.perf_counter()
    frame = read_frame(path)
    magnitudes, categories = {}, {}
    for col in schema.columns:
        series, _ = cast_column(frame[col.name], col)
        if col.kind is ColumnKind.CATEGORICAL:
            categories[col.name] = category_counts(series)
        elif col.kind is not ColumnKind.BOOLEAN:
            magnitudes[col.name] = magnitude_counts(numeric_values(series, col.kind))
    table = Table.from_frame(frame, schema)
    histograms = {c.name: column_histogram(table.frame[c.name], c, BINS) for c in schema.columns}
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "peak_mb": _peak_mb(),
        "worker_peaks_mb": [],
        "digest": _digest(table.n_rows, histograms, magnitudes, categories),
    }


def cluster(directory: str, schema_path: str, workers: int, memory_limit: str) -> dict[str, Any]:
    """The partitioned path on a local cluster of worker processes."""
    from distributed import Client, LocalCluster

    from privsynth_core.partitions import CountPlan, count_partitions
    from privsynth_core.schema import Schema

    schema = Schema.load(schema_path)
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,  # type: ignore[no-untyped-call]
            memory_limit=memory_limit,
            dashboard_address=None,
        ) as local,
        Client(local.scheduler_address) as client,
    ):  # type: ignore[no-untyped-call]
        client.wait_for_workers(workers)
        started = time.perf_counter()
        counts = count_partitions(
            directory,
            schema,
            plan=CountPlan(histogram_bins=BINS, domain=True),
            executor=client.get_executor(pure=False),
        )
        wall = time.perf_counter() - started
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "wall_s": wall,
        "peak_mb": _peak_mb(),
        "worker_peaks_mb": sorted(peaks.values(), reverse=True),
        "partitions": len(counts.files),
        "digest": _digest(counts.rows, counts.histograms, counts.magnitudes, counts.categories),
    }


def main() -> int:
    """Run one mode and write its JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("single", "cluster"))
    parser.add_argument("data")
    parser.add_argument("schema")
    parser.add_argument("out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GiB")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = (
            single(args.data, args.schema)
            if args.mode == "single"
            else cluster(args.data, args.schema, args.workers, args.memory_limit)
        )
    except Exception as exc:  # reported in the table, not as a traceback
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    (args.out / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
