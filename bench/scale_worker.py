"""Child process of ``bench scale``: one step at one size, reporting time and peak RSS.

Usage (the bench calls it)::

    python -m bench.scale_worker load DATA.csv OUT_DIR
    python -m bench.scale_worker train DATA.csv OUT_DIR --train-rows N --sample-rows M
    python -m bench.scale_worker evaluate DATA.csv OUT_DIR --train-rows N

``load``: read the CSV, infer the kinds, learn the domain with DP (epsilon 1, delta 1e-6) and
conform/validate the table. ``train``: the same preparation (not timed), then one epoch of
DP-CTGAN (or DP-WGAN if DP-CTGAN is not installed) on the first N rows, then sampling M rows;
writes the first N synthetic rows for ``evaluate``. ``evaluate``: every registered metric plus
the report's references, the N real rows against the N synthetic rows, with the last 10,000
rows of DATA.csv as the holdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .procmem import current_rss_mb, rss_mb

HOLDOUT = 10_000
JEMALLOC_CONF = "_RJEM_MALLOC_CONF"  # polars' bundled jemalloc reads its options from here


def restart_peak() -> float | None:
    """Restart the peak (``VmHWM``) from the current RSS and return that RSS in MiB.

    Writing 5 to ``/proc/self/clear_refs`` (Linux >= 4.0) resets the high-water mark, so the
    next :func:`rss_mb` is the peak of what runs after this call, not of the loading before it.
    None where that is not possible. Freed memory is handed back to the OS first (Python's
    garbage, glibc's free lists), so that training cannot hide its needs in memory the loading
    freed but kept resident; the train step runs with polars' allocator returning freed pages
    at once for the same reason (see :func:`main`).
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return None
    return current_rss_mb()


def prepare(path: Path, times: dict[str, float]) -> Any:
    """Load, infer, learn the DP domain, validate: the Table, with each part timed."""
    from privsynth_core import PrivacyLedger, Table
    from privsynth_core.inference import infer_schema
    from privsynth_core.privacy.domain import learn_domain
    from privsynth_core.table import fingerprint_frame, read_frame

    tick = time.perf_counter()
    frame = read_frame(path)
    times["read_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    skeleton = infer_schema(frame, exclude=["split"] if "split" in frame.columns else ())
    times["infer_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    fingerprint = fingerprint_frame(frame)
    ledger = PrivacyLedger()
    ledger.set_budget(fingerprint, epsilon=1e6, delta=0.5)
    schema = learn_domain(
        frame, skeleton, epsilon=1.0, delta=1e-6, ledger=ledger, fingerprint=fingerprint
    )
    times["domain_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    table = Table.from_frame(frame, schema, name=path.name)
    times["validate_s"] = time.perf_counter() - tick
    times["load_total_s"] = sum(times[k] for k in ("read_s", "infer_s", "domain_s", "validate_s"))
    return table


def train(
    table: Any, n_rows: int, sample_rows: int, out: Path, result: dict[str, Any], threads: int
) -> None:
    """One DP epoch on the first ``n_rows`` rows, then sample ``sample_rows`` rows."""
    from privsynth_core import PrivacyBudget, PrivacyLedger, Table
    from privsynth_core.registry import generators

    part = Table.from_frame(table.frame.head(n_rows), table.schema, name="train")
    PrivacyLedger().set_budget(part.fingerprint(), epsilon=1e6, delta=0.5)
    import opacus  # noqa: F401  (a library, like torch: loaded before the baseline)

    names = generators().names()
    method = "dpctgan" if "dpctgan" in names else "dpwgan"
    params: dict[str, Any] = {"epochs": 1, "num_threads": threads, "seed": 0}
    if method == "dpctgan":
        params["device"] = "cpu"
    gen = generators().get(method)(**params)
    result["generator"] = method
    result["batch_size"] = gen.p.batch_size if hasattr(gen, "p") else None
    before = result["rss_before_fit_mb"] = rss_mb()
    # The fit's own peak: above the memory resident when it starts (the loaded table, the
    # libraries), not hidden under the peak that loading and validating left behind.
    start = result["rss_at_fit_start_mb"] = restart_peak()
    tick = time.perf_counter()
    summary = gen.fit(part, budget=PrivacyBudget(3.0, 1e-6))
    result["fit_s"] = time.perf_counter() - tick
    result["epoch_s"] = summary.wall_seconds / summary.epochs if summary.epochs else result["fit_s"]
    peak = rss_mb()
    if start is not None:
        result["fit_own_peak_mb"] = peak - start
    result["fit_peak_rss_mb"] = max(before, peak)  # the process' peak so far, as before
    tick = time.perf_counter()
    synthetic = gen.sample(sample_rows, seed=0)
    result["sample_s"] = time.perf_counter() - tick
    result["sample_peak_rss_mb"] = max(before, rss_mb())
    synthetic.head(n_rows).write_parquet(out / "synthetic.parquet")


def evaluate_step(table: Any, n_rows: int, out: Path, result: dict[str, Any], target: str) -> None:
    """Every metric and the report's references on ``n_rows`` real vs synthetic rows."""
    import polars as pl

    from privsynth_core.evaluation.runner import evaluate

    synthetic = pl.read_parquet(
        out.parent / out.name.replace("evaluate", "train") / "synthetic.parquet"
    )
    real = table.frame.head(n_rows)
    holdout = table.frame.tail(HOLDOUT)
    result["rss_before_mb"] = rss_mb()
    tick = time.perf_counter()
    res = evaluate(
        real,
        synthetic,
        schema=table.schema,
        holdout=holdout,
        target=target if target in table.schema.names else None,
        seed=0,
    )
    result["evaluate_s"] = time.perf_counter() - tick
    result["metric_s"] = {k: round(v, 2) for k, v in res.seconds.items()}
    result["skipped"] = [s.metric_id for s in res.skipped]
    result["peak_rss_mb"] = rss_mb()


def main(argv: list[str] | None = None) -> int:
    """Run one step; errors go into result.json."""
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["load", "train", "evaluate"])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-rows", type=int, default=0)
    parser.add_argument("--sample-rows", type=int, default=1_000_000)
    parser.add_argument("--target", default="income_gt_50k")
    args = parser.parse_args(argv)
    if args.step == "train" and argv is None and JEMALLOC_CONF not in os.environ:
        # polars' jemalloc keeps freed pages for ~10 s by default: memory that loading freed
        # would stay resident and training could reuse it unseen. Set at exec: jemalloc reads
        # it once, when the process starts.
        os.environ[JEMALLOC_CONF] = "dirty_decay_ms:0,muzzy_decay_ms:0"
        os.execv(sys.executable, [sys.executable, "-m", "bench.scale_worker", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    threads = int(os.environ.get("BENCH_THREADS", "1"))
    result: dict[str, Any] = {"step": args.step, "threads": threads}
    try:
        os.environ.setdefault("PRIVSYNTH_HOME", tempfile.mkdtemp(prefix="privsynth-bench-"))
        import polars  # noqa: F401  (import cost outside the timings)

        if args.step != "load":
            import torch

            torch.set_num_threads(threads)
        result["import_rss_mb"] = rss_mb()
        times: dict[str, float] = {}
        table = prepare(args.data, times)
        result.update(times)
        result["rows"], result["columns"] = table.n_rows, len(table.schema.columns)
        result["load_peak_rss_mb"] = rss_mb()
        if args.step == "train":
            train(table, args.train_rows, args.sample_rows, args.out, result, threads)
        elif args.step == "evaluate":
            evaluate_step(table, args.train_rows, args.out, result, args.target)
    except Exception as exc:  # the parent records the failure and goes on
        result["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
        traceback.print_exc()
    (args.out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
