"""``python -m bench scale-partitioned``: the partitioned path vs the single-process path (#19).

1. Fits ``independent`` (epsilon 1, a scratch ledger) on Adult (``../shared/datasets/adult.csv.gz``,
   else the bundled sample) and samples the benchmark table from it, so no real person is in
   it (a pool of 1M model rows; each partition drawn from the pool with replacement):
   ``--rows-per-part`` rows per Parquet partition, as many as the largest size needs. Each
   size uses the first partitions (1M rows = 4 parts of 250k); the single-process path reads
   the same rows as one Parquet file.
2. For each size, in child processes: the **single-process** path (read the whole table,
   conform it, take the exact counts) and the **partitioned** path (a local Dask cluster of
   ``--workers`` worker processes with ``--memory-limit`` each, reached by its address; one
   partition per task, counts summed in the client). Both take the counts a DP fit of
   ``independent`` and a DP domain need, plus n; the table says whether they came out equal.
3. Prints wall time and peak RSS (per worker for the cluster) with ratios, and writes
   ``partitioned.md`` / ``.json`` under the results folder.

The noise step is left out: it is the same call on the same counts either way (tested in
tests/core/test_partitions.py) and costs milliseconds. 100M rows is not run by default: it
needs about 100 x the 1M table on disk twice and, at the measured rate, longer than a session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import SHARED_DATASETS, machine, markdown_table, python, results_dir, run_child

#: Rows drawn from the fitted model; partitions are drawn from this pool with replacement.
POOL_ROWS = 1_000_000


def register(sub: Any) -> None:
    """Add the ``scale-partitioned`` sub-command."""
    p = sub.add_parser(
        "scale-partitioned",
        help="partitioned vs single-process counts (1M, 10M)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    p.add_argument("--rows-per-part", type=int, default=250_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB", help="per worker (Dask's memory_limit)")
    p.add_argument("--data", type=Path, default=SHARED_DATASETS / "adult.csv.gz")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per child")
    p.add_argument("--out", type=Path, help="results root (default bench/results)")
    p.set_defaults(func=run)


def _write_table(data: Path, work: Path, parts: int, rows_per_part: int) -> Path:
    """Fit ``independent`` on ``data`` and write ``parts`` sampled partitions under work/parts."""
    os.environ["PRIVSYNTH_HOME"] = str(work / "home")  # a scratch ledger for the fit
    from privsynth_core.datasets import ADULT_PATH, adult_schema
    from privsynth_core.privacy.ledger import PrivacyBudget, PrivacyLedger
    from privsynth_core.service import create_generator
    from privsynth_core.table import Table

    if not data.is_file():
        print(f"{data} not found: fitting on the bundled Adult sample", flush=True)
        data = ADULT_PATH
    table = Table.load(data, adult_schema(), source="bench-adult")
    ledger = PrivacyLedger()
    ledger.set_budget(table.budget_key(), epsilon=2.0, delta=1e-5)
    generator = create_generator("independent", {})
    generator.fit(table, budget=PrivacyBudget(1.0, 0.0), ledger=ledger)
    folder = work / "parts"
    folder.mkdir()
    # A pool drawn from the model, then each partition drawn from the pool with replacement:
    # still rows of the synthetic model (no real person), and minutes faster than sampling the
    # model (which validates every draw) for every partition.
    pool = generator.sample(min(POOL_ROWS, parts * rows_per_part), seed=0)
    for i in range(parts):
        pool.sample(rows_per_part, with_replacement=True, seed=i).write_parquet(
            folder / f"part-{i:04d}.parquet"
        )
    return folder


def run(args: argparse.Namespace) -> int:
    """Write the table, run both paths at each size, print and write the table."""
    import polars as pl

    from privsynth_core.datasets import ADULT_SCHEMA_PATH

    started = time.perf_counter()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    work = Path(tempfile.mkdtemp(prefix="bench-partitioned-"))
    per = args.rows_per_part
    need = -(-max(sizes) // per)
    print(f"writing {need} partitions of {per:,} rows under {work}", flush=True)
    t0 = time.perf_counter()
    every = _write_table(args.data, work, need, per)
    write_s = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    for n in sizes:
        k = -(-n // per)
        folder = work / f"t{n}"
        folder.mkdir()
        for i in range(k):
            (folder / f"part-{i:04d}.parquet").symlink_to(every / f"part-{i:04d}.parquet")
        single = work / f"single-{n}.parquet"
        pl.scan_parquet(sorted(folder.glob("*.parquet"))).sink_parquet(single)
        row: dict[str, Any] = {
            "rows": k * per,
            "partitions": k,
            "disk_mb": round(single.stat().st_size / 2**20, 1),
        }
        for mode, source in (("single", single), ("cluster", folder)):
            out = work / f"{mode}-{n}"
            cmd = [
                python(),
                "-m",
                "bench.partitioned_worker",
                mode,
                str(source),
                str(ADULT_SCHEMA_PATH),
                str(out),
                "--workers",
                str(args.workers),
                "--memory-limit",
                args.memory_limit,
            ]
            res = run_child(
                cmd,
                result_path=out / "result.json",
                threads=1,
                timeout=args.timeout,
                log_path=work / f"{mode}-{n}.log",
            )
            print(
                f"  {mode} {n:,} rows: {'ok' if res.ok else res.error} ({res.wall_s:.0f} s)",
                flush=True,
            )
            row[mode] = res.data if res.ok else {"error": res.error}
        single.unlink()
        rows.append(row)
    shutil.rmtree(every)
    info = {
        "machine": machine(),
        "workers": args.workers,
        "memory_limit": args.memory_limit,
        "rows_per_part": per,
        "write_s": round(write_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    text = _markdown(info, rows)
    out_dir = results_dir(args.out, "partitioned")
    (out_dir / "partitioned.md").write_text(text, encoding="utf-8")
    (out_dir / "partitioned.json").write_text(
        json.dumps({"info": info, "rows": rows}, indent=2), encoding="utf-8"
    )
    print(text)
    print(f"written to {out_dir}; logs in {work}")
    return 0


def _ratio(a: Any, b: Any) -> str:
    return (
        f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"
    )


def _markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m = info["machine"]
    headers = [
        "rows",
        "partitions",
        "Parquet MiB",
        "single s",
        "single peak MiB",
        "partitioned s",
        "worker peaks MiB",
        "client peak MiB",
        "time ratio (part/single)",
        "peak ratio (worst worker/single)",
        "same counts",
    ]
    body = []
    for r in rows:
        s, c = r["single"], r["cluster"]
        peaks = c.get("worker_peaks_mb") or []
        worst = max(peaks) if peaks else None
        same = (s.get("digest") == c.get("digest")) if "digest" in s and "digest" in c else None
        body.append(
            [
                f"{r['rows']:,}",
                r["partitions"],
                r["disk_mb"],
                round(s["wall_s"], 1) if "wall_s" in s else s.get("error"),
                round(s["peak_mb"]) if "peak_mb" in s else None,
                round(c["wall_s"], 1) if "wall_s" in c else c.get("error"),
                " / ".join(str(round(p)) for p in peaks) or None,
                round(c["peak_mb"]) if "peak_mb" in c else None,
                _ratio(c.get("wall_s"), s.get("wall_s")),
                _ratio(worst, s.get("peak_mb")),
                {True: "yes", False: "NO", None: "-"}[same],
            ]
        )
    return (
        "# privsynth: partitioned vs single-process private statistics (issue #19)\n\n"
        f"- machine: {m['host']}, {m['cpu']}, {m['cores']} cores, {m['memory']}; "
        f"Python {m['python']}\n"
        f"- table: sampled from `independent` fitted on Adult (no real person), "
        f"{info['rows_per_part']:,} rows per Parquet partition; written in {info['write_s']} s\n"
        f"- single: one process reads the whole table, conforms it and takes the counts; "
        f"partitioned: a local Dask cluster of {info['workers']} worker processes "
        f"(memory_limit {info['memory_limit']}, 1 thread each), one partition per task\n"
        "- counts: every column's 32-bin domain histogram, the DP domain's magnitude "
        "histograms and category counts, n; peak MiB = max RSS (libraries included)\n"
        f"- total wall time: {info['wall_s']} s\n\n" + markdown_table(headers, body) + "\n"
    )
