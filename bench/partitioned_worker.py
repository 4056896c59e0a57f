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

With ``--generator mst`` (or ``aim``) either mode instead runs a whole DP fit of that generator
of the ``privsynth-marginal`` plugin (``dpwgan``, ``dpctgan``: built in, one epoch) at
``--epsilon`` (a scratch ledger: ``PRIVSYNTH_HOME``, set by the parent): ``single`` loads the
file as a :class:`~privsynth_core.table.Table` and fits it;
``cluster`` loads the directory as a :class:`~privsynth_core.partitions.PartitionedTable` on the
cluster and fits that (the fit's count passes run there). Both then sample ``--sample-rows``
rows from the model and score their 2-way TVD (the ``marginal_2way_tvd`` metric) against the
``--reference`` rows (a sample of the same table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import with_marginal_plugin
from .procmem import rss_mb

BINS = 32


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


@contextmanager
def local_cluster(workers: int, memory_limit: str) -> Iterator[Any]:
    """A client of a fresh local cluster of ``workers`` single-threaded worker processes with
    ``memory_limit`` each, connected through the scheduler's address (as to an existing
    cluster)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,  # type: ignore[no-untyped-call]
            memory_limit=memory_limit,
            dashboard_address=None,
        ) as local,
        Client(local.scheduler_address) as client,  # type: ignore[no-untyped-call]
    ):
        client.wait_for_workers(workers)
        yield client


def worker_peaks(client: Any) -> list[float]:
    """Each worker process's peak RSS in MiB (``VmHWM``: its own, not its parent's), largest
    first."""
    return sorted(client.run(rss_mb).values(), reverse=True)


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
        "peak_mb": rss_mb(),
        "worker_peaks_mb": [],
        "digest": _digest(table.n_rows, histograms, magnitudes, categories),
    }


def cluster(directory: str, schema_path: str, workers: int, memory_limit: str) -> dict[str, Any]:
    """The partitioned path on a local cluster of worker processes."""
    from privsynth_core.partitions import CountPlan, count_partitions
    from privsynth_core.schema import Schema

    schema = Schema.load(schema_path)
    with local_cluster(workers, memory_limit) as client:
        started = time.perf_counter()
        counts = count_partitions(
            directory,
            schema,
            plan=CountPlan(histogram_bins=BINS, domain=True),
            executor=client.get_executor(pure=False),
        )
        wall = time.perf_counter() - started
        peaks = worker_peaks(client)
    return {
        "wall_s": wall,
        "peak_mb": rss_mb(),
        "worker_peaks_mb": peaks,
        "partitions": len(counts.files),
        "digest": _digest(counts.rows, counts.histograms, counts.magnitudes, counts.categories),
    }


def _fit(
    table: Any, generator_id: str, epsilon: float, params: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """A DP fit of ``generator_id`` (defaults, but ``params``) on ``table``, charged to the
    scratch ledger."""
    from privsynth_core import PrivacyBudget, PrivacyLedger
    from privsynth_core.registry import generators

    ledger = PrivacyLedger()
    ledger.set_budget(table.budget_key(), epsilon=2 * epsilon, delta=1e-5)
    generator = generators().get(generator_id)(**params)
    passes: list[float] = []
    reduce = table.reduce

    def timed(fn: Any) -> Any:
        # the fit's passes over the rows (a partitioned table's run on the cluster)
        tick = time.perf_counter()
        out = reduce(fn)
        passes.append(time.perf_counter() - tick)
        return out

    table.reduce = timed
    started = time.perf_counter()
    summary = generator.fit(table, budget=PrivacyBudget(epsilon, 1e-6), ledger=ledger)
    return generator, {
        "fit_s": time.perf_counter() - started,
        "reduce_s": passes,
        "epsilon": summary.epsilon,
        "measured": len(summary.extra.get("measured_marginals", ())),
    }


def _quality(generator: Any, schema: Any, reference: str, rows: int) -> dict[str, Any]:
    """2-way TVD of ``rows`` rows sampled from the model against the reference rows."""
    from privsynth_core.registry import metrics
    from privsynth_core.table import read_frame

    started = time.perf_counter()
    synthetic = generator.sample(rows, seed=0)
    real = read_frame(reference)
    tvd = metrics().get("marginal_2way_tvd")().compute(real, synthetic, schema=schema).value
    return {"tvd_2way": float(tvd), "sample_score_s": time.perf_counter() - started}


def _prepare_fit() -> None:
    """The marginal plugin loaded, and mbi/jax imported before the clock starts."""
    with_marginal_plugin()
    import privsynth_marginal.estimate as estimate

    estimate._mbi()


def fit_single(
    path: str,
    schema_path: str,
    generator_id: str,
    epsilon: float,
    reference: str,
    rows: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Load one file as a table in this process and fit it."""
    _prepare_fit()
    from privsynth_core.schema import Schema
    from privsynth_core.table import Table

    schema = Schema.load(schema_path)
    started = time.perf_counter()
    table = Table.load(path, schema, source="bench-partitioned")
    load_s = time.perf_counter() - started
    generator, result = _fit(table, generator_id, epsilon, params)
    wall = time.perf_counter() - started
    peak = rss_mb()  # before sampling and scoring, which are not part of the fit
    del table
    return {
        **result,
        "load_s": load_s,
        "wall_s": wall,
        "peak_mb": peak,
        "worker_peaks_mb": [],
        **_quality(generator, schema, reference, rows),
    }


def fit_cluster(
    directory: str,
    schema_path: str,
    generator_id: str,
    epsilon: float,
    reference: str,
    rows: int,
    params: dict[str, Any],
    workers: int,
    memory_limit: str,
) -> dict[str, Any]:
    """Load the partitions as a partitioned table on a local cluster and fit it there."""
    _prepare_fit()
    from privsynth_core.partitions import PartitionedTable
    from privsynth_core.schema import Schema

    schema = Schema.load(schema_path)
    with local_cluster(workers, memory_limit) as client:
        started = time.perf_counter()
        table = PartitionedTable.load(
            directory,
            schema,
            source="bench-partitioned",
            executor=client.get_executor(pure=False),
        )
        load_s = time.perf_counter() - started
        generator, result = _fit(table, generator_id, epsilon, params)
        wall = time.perf_counter() - started
        peaks = worker_peaks(client)
        peak = rss_mb()
    return {
        **result,
        "load_s": load_s,
        "wall_s": wall,
        "peak_mb": peak,
        "worker_peaks_mb": peaks,
        "partitions": len(table.files),
        **_quality(generator, schema, reference, rows),
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
    parser.add_argument("--generator", default="counts", help="counts, or a generator to fit")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--reference", help="rows to score the fit's sample against")
    parser.add_argument("--sample-rows", type=int, default=20_000)
    parser.add_argument("--params", default="{}", help="the generator's parameters, JSON")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    fit = (args.generator, args.epsilon, args.reference, args.sample_rows, json.loads(args.params))
    try:
        if args.generator == "counts":
            result = (
                single(args.data, args.schema)
                if args.mode == "single"
                else cluster(args.data, args.schema, args.workers, args.memory_limit)
            )
        elif args.mode == "single":
            result = fit_single(args.data, args.schema, *fit)
        else:
            result = fit_cluster(args.data, args.schema, *fit, args.workers, args.memory_limit)
    except Exception as exc:  # reported in the table; the traceback goes to the child's log
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    (args.out / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
