"""``python -m bench scale-partitioned``: the partitioned path vs the single-process path (#19).

1. Fits ``independent`` (or ``--pool``; epsilon 1, a scratch ledger) on Adult
   (``../shared/datasets/adult.csv.gz``, else the bundled sample) and samples the benchmark
   table from it, so no real person is in it (a pool of 1M model rows; each partition drawn
   from the pool with replacement):
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
tests/core/test_partitions.py) and costs milliseconds.

``--generators mst,aim`` (besides or instead of ``counts``, the pass above) runs whole DP fits
of the ``privsynth-marginal`` plugin's MST and AIM at ``--epsilon`` (defaults otherwise; a
scratch ledger per child; the table then sampled from MST fitted on Adult, so that its columns
have pairs to learn: an ``independent`` table would leave every fit at the TVD floor) the same
two ways: one process loads the single file as a table and
fits it; or the partitions are loaded as a ``PartitionedTable`` on the local cluster and the
fit's count passes run there. Each fit samples ``--sample-rows`` rows, scored by 2-way TVD
against a sample of as many rows of the table (``sample_partitions``); a second such sample
scored against the first is the floor (what sampling alone gives). Wall time (load + fit), peak
RSS of the fitting process and of each worker; written to ``partitioned-marginal.md`` /
``.json``, where a later run's rows replace the same generator and size and keep the others
(so 1M and 10M can be run apart). 100M rows is not run by default (``--sizes 100000000``:
about 100 x the 1M table on disk, 400 partitions, and at the measured rate about half an hour
per MST fit). Above ``--single-max-rows`` (10M by default: the one-process path needs about
5.6 GiB at 10M, so about 56 GiB at 100M) only the partitioned path runs; the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import (
    SHARED_DATASETS,
    ChildResult,
    machine,
    markdown_table,
    python,
    results_dir,
    run_child,
    with_marginal_plugin,
)

#: Rows drawn from the fitted model; partitions are drawn from this pool with replacement.
POOL_ROWS = 1_000_000
#: What ``--generators`` accepts: the counting pass, a DP fit of a privsynth-marginal model, or
#: one epoch of DPWGAN or DP-CTGAN (DP-SGD, its Poisson batches drawn from the spooled
#: partitions).
GENERATORS = ("counts", "mst", "aim", "dpwgan", "dpctgan")


#: A DP-SGD epoch in the bench: this many Poisson batches at any size (the expected batch grows
#: with the table), so 1M and 10M take comparable steps and differ in what each batch reads.
DPSGD_STEPS = 2000


#: The largest size the one-process path runs at by default: it holds the whole table (5.6 GiB
#: at 10M rows measured), which at 100M would not fit this machine.
SINGLE_MAX_ROWS = 10_000_000


def fit_params(generator: str, rows: int) -> dict[str, Any]:
    """The parameters a bench fit changes from the defaults: DPWGAN and DP-CTGAN run one epoch
    of ``DPSGD_STEPS`` batches (expected size ``rows / DPSGD_STEPS``, at least 500)."""
    if generator in ("dpwgan", "dpctgan"):
        return {"epochs": 1, "batch_size": max(500, rows // DPSGD_STEPS)}
    return {}


def register(sub: Any) -> None:
    """Add the ``scale-partitioned`` sub-command."""
    p = sub.add_parser(
        "scale-partitioned",
        help="partitioned vs single-process counts, MST/AIM fits, DP-SGD epochs (1M, 10M)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    p.add_argument("--rows-per-part", type=int, default=250_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB", help="per worker (Dask's memory_limit)")
    p.add_argument("--data", type=Path, default=SHARED_DATASETS / "adult.csv.gz")
    p.add_argument(
        "--generators",
        default="counts",
        help=f"comma-separated, of {', '.join(GENERATORS)} (counts: the counting pass only)",
    )
    p.add_argument(
        "--pool",
        choices=("independent", "mst"),
        help="the model fitted on Adult that the table is sampled from (default: independent "
        "for counts only; mst when MST/AIM are fitted, so the table has pairs to learn)",
    )
    p.add_argument("--epsilon", type=float, default=1.0, help="of the fits")
    p.add_argument("--sample-rows", type=int, default=20_000, help="scored by 2-way TVD")
    p.add_argument(
        "--single-max-rows",
        type=int,
        default=SINGLE_MAX_ROWS,
        help="run the one-process path only up to this many rows (it holds the whole table)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per child")
    p.add_argument("--out", type=Path, help="results root (default bench/results)")
    p.set_defaults(func=run)


def _write_table(
    data: Path, work: Path, parts: int, rows_per_part: int, pool_model: str = "independent"
) -> Path:
    """Fit ``pool_model`` on ``data`` and write ``parts`` sampled partitions under work/parts."""
    os.environ["PRIVSYNTH_HOME"] = str(work / "home")  # a scratch ledger for the fit
    if pool_model == "mst":
        with_marginal_plugin()
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
    generator = create_generator(pool_model, {})
    # MST's zCDP needs a delta; independent is pure epsilon-DP
    delta = 1e-6 if pool_model == "mst" else 0.0
    generator.fit(table, budget=PrivacyBudget(1.0, delta), ledger=ledger)
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
    """Write the table, run both paths at each size, print and write the table(s)."""
    import polars as pl

    started = time.perf_counter()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    chosen = [g.strip() for g in args.generators.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in GENERATORS]
    if unknown or not chosen:
        print(
            f"--generators: unknown {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(GENERATORS)}",
            file=sys.stderr,
        )
        return 2
    fits = [g for g in chosen if g != "counts"]
    work = Path(tempfile.mkdtemp(prefix="bench-partitioned-"))
    per = args.rows_per_part
    need = -(-max(sizes) // per)
    print(f"writing {need} partitions of {per:,} rows under {work}", flush=True)
    t0 = time.perf_counter()
    pool = args.pool or ("mst" if fits else "independent")
    every = _write_table(args.data, work, need, per, pool)
    out_dir = results_dir(args.out, "partitioned")
    info: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "workers": args.workers,
        "memory_limit": args.memory_limit,
        "rows_per_part": per,
        "pool": pool,
        "write_s": round(time.perf_counter() - t0, 1),
    }
    if fits:
        info.update(epsilon=args.epsilon, sample_rows=args.sample_rows)
    rows: list[dict[str, Any]] = []
    fit_rows: list[dict[str, Any]] = []
    for n in sizes:
        k = -(-n // per)
        folder = work / f"t{n}"
        folder.mkdir()
        for i in range(k):
            (folder / f"part-{i:04d}.parquet").symlink_to(every / f"part-{i:04d}.parquet")
        shape = {
            "rows": k * per,
            "partitions": k,
            "disk_mb": round(sum(f.stat().st_size for f in folder.glob("*.parquet")) / 2**20, 1),
        }
        sources: dict[str, Path] = {"cluster": folder}
        single: Path | None = None
        if shape["rows"] <= args.single_max_rows:
            single = work / f"single-{n}.parquet"
            pl.scan_parquet(sorted(folder.glob("*.parquet"))).sink_parquet(single)
            sources = {"single": single, **sources}
        skipped = {"error": f"not run: over --single-max-rows {args.single_max_rows:,}"}

        if "counts" in chosen:
            row: dict[str, Any] = {**shape, "single": skipped}
            for mode in sources:
                res = _child(args, work, sources[mode], mode, "counts", n, [])
                row[mode] = res.data if res.ok else {"error": res.error}
            rows.append(row)
        if fits:
            reference, floor = _references(folder, work / f"reference-{n}.parquet", args)
            for name in fits:
                row = {"generator": name, **shape, "tvd_floor": floor, "load_avg": _load_avg()}
                row["single"] = skipped
                extra = ["--generator", name, "--epsilon", str(args.epsilon)]
                extra += ["--reference", str(reference), "--sample-rows", str(args.sample_rows)]
                extra += ["--params", json.dumps(fit_params(name, shape["rows"]))]
                for mode in sources:
                    res = _child(args, work, sources[mode], mode, name, n, extra)
                    row[mode] = res.data if res.ok else {"error": res.error}
                fit_rows.append(row)
                # written as each fit ends: a run stopped later keeps the fits it finished
                info["wall_s"] = round(time.perf_counter() - started, 1)
                _write_fits(out_dir, info, [row])
        if single is not None:
            single.unlink()
    shutil.rmtree(every)
    info["wall_s"] = round(time.perf_counter() - started, 1)
    if rows:
        text = _markdown(info, rows)
        (out_dir / "partitioned.md").write_text(text, encoding="utf-8")
        (out_dir / "partitioned.json").write_text(
            json.dumps({"info": info, "rows": rows}, indent=2), encoding="utf-8"
        )
        print(text)
    if fit_rows:
        print(_write_fits(out_dir, info, []))
    print(f"written to {out_dir}; logs in {work}")
    return 0


def _child(
    args: argparse.Namespace,
    work: Path,
    source: Path,
    mode: str,
    label: str,
    n: int,
    extra: list[str],
) -> ChildResult:
    """One measured pass (``bench.partitioned_worker``) in a child process."""
    from privsynth_core.datasets import ADULT_SCHEMA_PATH

    out = work / f"{label}-{mode}-{n}"
    # a scratch ledger of its own for each child (a fit charges it)
    os.environ["PRIVSYNTH_HOME"] = str(out / "home")
    cmd = [python(), "-m", "bench.partitioned_worker", mode, str(source), str(ADULT_SCHEMA_PATH)]
    cmd += [str(out), "--workers", str(args.workers), "--memory-limit", args.memory_limit, *extra]
    res = run_child(
        cmd,
        result_path=out / "result.json",
        threads=1,
        timeout=args.timeout,
        log_path=work / f"{label}-{mode}-{n}.log",
    )
    print(
        f"  {label} {mode} {n:,} rows: {'ok' if res.ok else res.error} ({res.wall_s:.0f} s)",
        flush=True,
    )
    return res


def _references(folder: Path, path: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """A uniform sample of ``--sample-rows`` rows of the table (what every fit's sample is
    scored against, written to ``path``), and the 2-way TVD of a second such sample against it:
    the floor, what sampling alone gives."""
    from privsynth_core.datasets import adult_schema
    from privsynth_core.partitions import discover_partitions, partition_rows, sample_partitions
    from privsynth_core.registry import metrics

    schema = adult_schema()
    files = [str(f) for f in discover_partitions(folder)]
    sizes = partition_rows(files)
    first, second = (
        sample_partitions(files, sizes, args.sample_rows, columns=schema.names, seed=seed)
        for seed in (1, 2)
    )
    first.write_parquet(path)
    floor = metrics().get("marginal_2way_tvd")().compute(first, second, schema=schema).value
    return path, float(floor)


def _load_avg() -> float | None:
    """This machine's 1-minute load average (the fits' times depend on it)."""
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return None


def _write_fits(out_dir: Path, info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Write the fits' table with ``rows`` (of the run ``info``), keeping the rows already
    there of other generators and sizes (an earlier run's, or this run's earlier fits)."""
    path = out_dir / "partitioned-marginal.json"
    kept: list[dict[str, Any]] = []
    runs = [info]
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        fresh = {(r["generator"], r["rows"]) for r in rows}
        kept = [r for r in earlier["rows"] if (r["generator"], r["rows"]) not in fresh]
        runs = [r for r in earlier["runs"] if r.get("started") != info.get("started")] + [info]
    every = sorted([*kept, *rows], key=lambda r: (GENERATORS.index(r["generator"]), r["rows"]))
    path.write_text(json.dumps({"runs": runs, "rows": every}, indent=2), encoding="utf-8")
    text = _fits_markdown(info, every)
    (out_dir / "partitioned-marginal.md").write_text(text, encoding="utf-8")
    return text


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


def _passes(result: dict[str, Any]) -> str:
    """The fit's passes over the rows (``Table.reduce``), seconds each."""
    passes = result.get("reduce_s")
    return " + ".join(f"{p:.0f}" for p in passes) if passes else "-"


def _fits_markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m = info["machine"]
    headers = [
        "generator",
        "rows",
        "partitions",
        "load avg",
        "single load+fit s",
        "single peak MiB",
        "partitioned load+fit s",
        "worker peaks MiB",
        "client peak MiB",
        "time ratio (part/single)",
        "fit's count passes s (single / partitioned)",
        "2-way TVD single",
        "2-way TVD partitioned",
        "TVD difference",
        "TVD floor",
    ]
    body = []
    for r in rows:
        s, c = r["single"], r["cluster"]
        peaks = c.get("worker_peaks_mb") or []
        both = "tvd_2way" in s and "tvd_2way" in c
        body.append(
            [
                r["generator"],
                f"{r['rows']:,}",
                r["partitions"],
                "-" if r.get("load_avg") is None else f"{r['load_avg']:.1f}",
                f"{s['load_s']:.0f} + {s['fit_s']:.0f}" if "fit_s" in s else s.get("error"),
                round(s["peak_mb"]) if "peak_mb" in s else None,
                f"{c['load_s']:.0f} + {c['fit_s']:.0f}" if "fit_s" in c else c.get("error"),
                " / ".join(str(round(p)) for p in peaks) or None,
                round(c["peak_mb"]) if "peak_mb" in c else None,
                _ratio(c.get("wall_s"), s.get("wall_s")),
                f"{_passes(s)} / {_passes(c)}",
                f"{s['tvd_2way']:.4f}" if "tvd_2way" in s else None,
                f"{c['tvd_2way']:.4f}" if "tvd_2way" in c else None,
                f"{c['tvd_2way'] - s['tvd_2way']:+.4f}" if both else None,
                f"{r['tvd_floor']:.4f}",
            ]
        )
    return (
        "# privsynth: DP fits from partitions vs in one process (issue #19)\n\n"
        f"- machine: {m['host']}, {m['cpu']}, {m['cores']} cores, {m['memory']}; "
        f"Python {m['python']}; load avg: the 1-minute load average when the size's fits began "
        f"(the machine is shared: times are rough)\n"
        f"- table: sampled from `{info.get('pool', 'independent')}` fitted on Adult at epsilon 1 "
        f"(no real person), {info['rows_per_part']:,} rows per Parquet partition\n"
        f"- fits: epsilon {info['epsilon']} (delta 1e-6), the generators' defaults (DPWGAN, "
        "DP-CTGAN: one epoch of 2,000 Poisson batches of expected size rows / 2,000, drawn in "
        "the client from the rows spooled to its disk), a "
        "scratch ledger; single: one process loads the whole table from one Parquet file and "
        "fits it; "
        f"partitioned: a local Dask cluster of {info['workers']} worker processes (memory_limit "
        f"{info['memory_limit']}, 1 thread each) loads and counts the partitions (the load pass, "
        "then the fit's two count passes), the client fits on the sums\n"
        "- peak MiB = max RSS (VmHWM, libraries included; the client's includes the local "
        "scheduler's threads); times: load + fit, seconds; the fit's count passes: "
        "`Table.reduce` calls (the numeric columns' fine counts, then, partitioned, every "
        "marginal MST/AIM can ask for; one process counts the marginals on request instead)\n"
        f"- 2-way TVD: `marginal_2way_tvd` of {info['sample_rows']:,} rows sampled from the "
        f"model against {info['sample_rows']:,} rows sampled from the table; floor: a second "
        "such sample of the table against the first (one fit each: the noise is not seeded)\n\n"
        + markdown_table(headers, body)
        + "\n"
    )
