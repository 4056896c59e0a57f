"""``python -m bench aim-wide``: AIM's fit time and peak memory on a wide table (issue #18).

Census KDD (``../shared/datasets/census_kdd.csv.gz``, 43 columns), ``--rows`` rows sampled
(seeded) with the schema inferred from the sample and taken as public (the same benchmark
shortcut as ``bench tables``), AIM at ``--epsilon`` with its default parameters. Each variant
(``--variants``) fits in its own child process, one after another, with every thread pool pinned
to ``--threads`` (default 1) and the child confined to that many CPUs (Linux; XLA's thread pool,
which sizes itself from the CPUs it may use, reads none of the thread variables): ``after`` is
the code as it is, ``before`` the same code with the
costs that issue #18's profile found put back (see :mod:`bench.aim_wide_worker`). Columns: fit
wall seconds (inside the child, after imports and loading), fit CPU seconds (every thread of the
child: the one-core cost, which the load of a shared machine does not inflate) and their ratio
to ``after``'s, and peak memory (the child's ``VmHWM``, interpreter and libraries included) with
its ratio. A variant that runs past ``--timeout`` is stopped and its row says so.

Example (issue #18's target: under 3 minutes and 1.5 GB on one core at 100k rows)::

    python -m bench aim-wide --rows 100000 --variants after,before --timeout 1200

Writes ``bench/results/<date>-<host>/aim_wide.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import fmt, markdown_table, python, results_dir, run_child, write_rows_json


def register(sub: Any) -> None:
    """Add the ``aim-wide`` sub-command."""
    p = sub.add_parser(
        "aim-wide",
        help="AIM's fit time and memory on census KDD, before and after issue #18",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=100_000, help="rows sampled from census KDD")
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--variants", default="after,before", help="comma-separated: after, before")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per variant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<date>-<host>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit each variant in a child; print and write the table."""
    out = args.out or results_dir(None, "aim-wide")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        result_path = out / f"aim_wide_{variant}.json"
        result_path.unlink(missing_ok=True)
        child = run_child(
            [
                python(),
                "-m",
                "bench.aim_wide_worker",
                variant,
                str(args.rows),
                str(args.epsilon),
                str(result_path),
                "--seed",
                str(args.seed),
            ],
            result_path=result_path,
            threads=args.threads,
            timeout=args.timeout,
            log_path=out / f"aim_wide_{variant}.log",
        )
        data = child.data
        if not data and result_path.is_file():  # stopped: how far it got (progress_s, stage)
            data = json.loads(result_path.read_text(encoding="utf-8"))
        row = {"variant": variant, **data, "error": child.error}
        rows.append(row)
        print(
            f"{variant}: fit {fmt(row.get('fit_s'), 1)} s ({fmt(row.get('fit_cpu_s'), 1)} CPU s), "
            f"peak {fmt(row.get('peak_rss_mb'))} MiB"
            + (f" ({child.error})" if child.error else ""),
            flush=True,
        )
    base = next((r for r in rows if r["variant"] == "after" and r.get("fit_s")), None)

    def ratio(row: dict[str, Any], key: str) -> str:
        if base is None or not row.get(key):
            return "–"
        return f"{row[key] / base[key]:.2f}"

    headers = [
        "variant",
        "rows",
        "columns",
        "CPUs",
        "fit s",
        "fit CPU s",
        "CPU / after",
        "peak MiB",
        "peak / after",
    ]
    table = [
        [
            r["variant"],
            r.get("train_rows", "–"),
            r.get("columns", "–"),
            r.get("cpus") or "–",
            fmt(r.get("fit_s"), 1) if r.get("fit_s") else (r["error"] or "–"),
            fmt(r.get("fit_cpu_s"), 1),
            ratio(r, "fit_cpu_s"),
            fmt(r.get("peak_rss_mb")),
            ratio(r, "peak_rss_mb"),
        ]
        for r in rows
    ]
    text = markdown_table(headers, table)
    if base is not None and base.get("bounds"):
        text += f"\n\nAIM's bounds (fit summary): {base['bounds']['statement']}\n"
    print("\n" + text)
    (out / "aim_wide.md").write_text(text + "\n")
    write_rows_json(out / "aim_wide.json", args, rows)
    print(f"\nwrote {out / 'aim_wide.md'}")
    return 0
