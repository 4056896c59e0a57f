"""``python -m bench scale``: census-income KDD (299,285 rows x 43 columns), 30k -> 300k rows.

Steps, each in its own child process (time and the child's peak RSS, libraries included):

1. **load**: read the CSV, infer the column kinds, learn the domain with DP (epsilon 1), conform
   and validate. Target: under 10 s at full size.
2. **train**: one DP-CTGAN epoch (DP-WGAN if DP-CTGAN is not installed; batch 1,000 expected,
   Poisson), epsilon 3, delta 1e-6. Target: peak memory bounded by the batch, not the table.
3. **sample**: 1,000,000 rows from that model (same child, after training).
4. **evaluate**: :func:`privsynth_core.evaluation.runner.evaluate` with every metric and its
   references, N real rows vs N synthetic rows, 10,000 held-out rows.

The data (``../shared/datasets/census_kdd.csv.gz``, else ``--data``) is shuffled (seed 0); the
last 10,000 rows are the holdout, and size N uses the first N of the others (the largest size
is capped at all rows minus the holdout for train/evaluate; ``load`` reads all N rows). Slices
are written as plain CSV so that every size is read the same way.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import SHARED_DATASETS, machine, markdown_table, python, results_dir, run_child

STEPS = ["load", "train", "evaluate"]


def register(sub: Any) -> None:
    """Add the ``scale`` sub-command."""
    p = sub.add_parser(
        "scale",
        help="census KDD at 30k..300k rows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        type=Path,
        default=SHARED_DATASETS / "census_kdd.csv.gz",
        help="the census KDD file (default ../shared/datasets/census_kdd.csv.gz)",
    )
    p.add_argument(
        "--sizes",
        default="30000,100000,300000",
        help="comma-separated row counts (capped at the file's rows)",
    )
    p.add_argument("--sample-rows", type=int, default=1_000_000)
    p.add_argument("--steps", default=",".join(STEPS), help="subset of load,train,evaluate")
    p.add_argument(
        "--target", default="income_gt_50k", help="the column TSTR predicts (skipped when absent)"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per step and size")
    p.add_argument("--out", type=Path, help="results root (default bench/results)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run each step at each size; write and print the growth table."""
    import polars as pl

    started = time.perf_counter()
    data = args.data
    if not data.is_file():
        from privsynth_core.datasets import ADULT_PATH

        print(f"{data} not found: falling back to the embedded Adult table", flush=True)
        data = ADULT_PATH
    frame = pl.read_csv(data, infer_schema=False).sample(fraction=1.0, shuffle=True, seed=0)
    holdout = min(10_000, frame.height // 5)
    sizes = sorted({min(int(s), frame.height) for s in args.sizes.split(",") if s.strip()})
    steps = [s for s in STEPS if s in args.steps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    out_dir = results_dir(args.out, "scale")
    rows: list[dict[str, Any]] = []
    for n in sizes:
        # Each file is the first train_n rows plus the same holdout (the last rows), so the
        # holdout stays out of every training slice; at full size the file is the whole table.
        train_n = min(n, frame.height - holdout)
        path = work / f"data-{n}.csv"
        part = frame if n >= frame.height else pl.concat([frame.head(train_n), frame.tail(holdout)])
        part.write_csv(path)
        row: dict[str, Any] = {"rows": n, "train_rows": train_n, "file_rows": part.height}
        rows.append(row)
        for step in steps:
            out = work / f"{step}-{n}"
            cmd = [
                python(),
                "-m",
                "bench.scale_worker",
                step,
                str(path),
                str(out),
                "--train-rows",
                str(train_n),
                "--sample-rows",
                str(args.sample_rows),
                "--target",
                args.target,
            ]
            if step == "evaluate" and not (work / f"train-{n}" / "synthetic.parquet").is_file():
                row["evaluate_error"] = "no synthetic table (train step failed or skipped)"
                continue
            res = run_child(
                cmd,
                result_path=out / "result.json",
                threads=args.threads,
                timeout=args.timeout,
                log_path=work / f"{step}-{n}.log",
            )
            print(
                f"  {step} {n} rows: {'ok' if res.ok else res.error} ({res.wall_s:.0f} s)",
                flush=True,
            )
            row[step] = res.data
            if not res.ok:
                row[f"{step}_error"] = res.error
    # Keep the children's logs, drop the bulky slices and synthetic tables.
    for bulky in [*work.glob("data-*.csv"), *work.glob("train-*/synthetic.parquet")]:
        bulky.unlink()
    print(f"logs in {work}", flush=True)
    info = {
        "machine": machine(),
        "threads": args.threads,
        "data": str(data),
        "file_rows": frame.height,
        "holdout": holdout,
        "sample_rows": args.sample_rows,
        "wall_s": time.perf_counter() - started,
    }
    text = _markdown(info, rows)
    (out_dir / "scale.md").write_text(text, encoding="utf-8")
    (out_dir / "scale.json").write_text(
        json.dumps({"info": info, "rows": rows}, indent=2), encoding="utf-8"
    )
    print(text)
    print(f"written to {out_dir}")
    return 0


def _g(row: dict[str, Any], step: str, key: str) -> Any:
    value = row.get(step, {}).get(key)
    return round(value, 2) if isinstance(value, float) else value


def _growth(row: dict[str, Any]) -> float | None:
    """How far training raised the peak above the loaded table (the batch-bound target)."""
    train = row.get("train", {})
    if "fit_peak_rss_mb" not in train:
        return None
    return float(train["fit_peak_rss_mb"] - train["rss_before_fit_mb"])


def _own_peak(row: dict[str, Any]) -> float | None:
    """Training's own peak above the RSS at its start (None where it could not be measured)."""
    value = row.get("train", {}).get("fit_own_peak_mb")
    return round(float(value)) if value is not None else None


def _markdown(info: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m = info["machine"]
    headers = [
        "rows read (train rows)",
        "load+validate+domain s",
        "(read / infer / domain / validate)",
        "load peak MiB",
        "1 DP epoch s",
        "train peak MiB",
        "train MiB above pre-fit",
        "train's own peak MiB",
        "generator (batch)",
        f"sample {info['sample_rows']:,} s",
        "sample peak MiB",
        "evaluate s",
        "evaluate peak MiB",
        "errors",
    ]
    body = []
    for r in rows:
        parts = " / ".join(
            str(_g(r, "load", k)) for k in ("read_s", "infer_s", "domain_s", "validate_s")
        )
        gen = r.get("train", {}).get("generator")
        errors = "; ".join(f"{k[:-6]}: {v}" for k, v in r.items() if k.endswith("_error"))
        body.append(
            [
                f"{r['file_rows']:,} ({r['train_rows']:,} train)",
                _g(r, "load", "load_total_s"),
                parts,
                _g(r, "load", "load_peak_rss_mb"),
                _g(r, "train", "epoch_s"),
                _g(r, "train", "fit_peak_rss_mb"),
                _growth(r),
                _own_peak(r),
                f"{gen} ({_g(r, 'train', 'batch_size')})" if gen else None,
                _g(r, "train", "sample_s"),
                _g(r, "train", "sample_peak_rss_mb"),
                _g(r, "evaluate", "evaluate_s"),
                _g(r, "evaluate", "peak_rss_mb"),
                errors,
            ]
        )
    return (
        f"# privsynth at scale: census KDD\n\n"
        f"- machine: {m['host']}, {m['cpu']}, {m['cores']} cores, {m['memory']}; "
        f"Python {m['python']}\n"
        f"- threads: {info['threads']} per child (OMP/MKL/OpenBLAS/polars and torch); "
        f"steps run one at a time\n"
        f"- data: {info['data']} ({info['file_rows']:,} rows, shuffled, seed 0); holdout "
        f"{info['holdout']:,} rows kept out of training\n"
        f"- peak MiB: max RSS of the step's child process (interpreter and libraries included; "
        f"the train column is the peak after training, the sample column after sampling); "
        f"train MiB above pre-fit: how far training raised the child's peak above the peak "
        f"that loading left; train's own peak: the peak during training above the RSS when "
        f"it started (the peak restarted via /proc/self/clear_refs), i.e. what training "
        f"itself holds at most\n"
        f"- total wall time: {info['wall_s']:.0f} s\n\n" + markdown_table(headers, body) + "\n"
    )
