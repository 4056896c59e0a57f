"""How fixing a domain on the web page grows with the number of columns (issue #20 item 15).

Builds a synthetic table of ``--rows`` rows and N columns (every other one a small integer, the
rest a three-value category), adds it as an upload to a throwaway privsynth home, and times
the web app's handler for **Fix the domain** (declare public, the flagged values accepted):
``PageEvents.fix_domain`` as the page calls it, with the schema table as the page sends it,
so the whole path is timed (the table read back into a schema, the rows checked against the
domain, the files written, the page's answer). Adding the table (the inference) is timed too.

A linear step takes about the same time per column at every width: the last columns say how
each width's time per column compares with the narrowest one's (1.0 = linear; a quadratic
step doubles it with each doubling of the width).

Usage::

    .venv/bin/python bench/domain_width.py [--widths 1000,4000] [--rows 300] [--mode public|dp]

(``--mode dp`` learns the domain with DP instead: a mechanism and a ledger entry per column.)

``--step infer`` times what adding a table does to its file, with no web app: the file read
(``read_frame``, header checks included) and the schema inference (``infer_draft``), on a
table of mixed kinds (integers, decimals, yes/no, dates, whole numbers written ``2.0`` with
gaps, IDs, short and rare categories), 2,000 rows by default::

    .venv/bin/python bench/domain_width.py --step infer --widths 500,1000,2000,4000 --rows 2000

Nothing is kept: the home is a temporary folder, deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def wide_csv(path: Path, columns: int, rows: int) -> Path:
    """A seeded table of ``rows`` rows: even columns small integers, odd ones 'a'/'b'/'c'."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    data = {
        (f"num_{i}" if i % 2 == 0 else f"cat_{i}"): (
            rng.integers(0, 100, rows) if i % 2 == 0 else rng.choice(["a", "b", "c"], rows)
        )
        for i in range(columns)
    }
    pl.DataFrame(data).write_csv(path)
    return path


def mixed_csv(path: Path, columns: int, rows: int) -> Path:
    """A seeded table of ``rows`` rows whose columns cycle through eight kinds of text: small
    integers, 4 categories (one rare), decimals, yes/no, dates, whole numbers written ``7.0``
    with 5 % missing, row numbers (an ID, left out), and 30 short codes."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)

    def column(i: int) -> list[str]:
        kind = i % 8
        if kind == 0:
            return rng.integers(0, 100, rows).astype(str).tolist()
        if kind == 1:
            return rng.choice(["a", "b", "c", "rare"], rows, p=[0.4, 0.4, 0.195, 0.005]).tolist()
        if kind == 2:
            return np.round(rng.normal(0, 1, rows), 3).astype(str).tolist()
        if kind == 3:
            return rng.choice(["yes", "no"], rows).tolist()
        if kind == 4:
            months, days = rng.integers(1, 10, rows), rng.integers(10, 29, rows)
            return [f"2020-0{m}-{d}" for m, d in zip(months, days, strict=True)]
        if kind == 5:
            missing = rng.random(rows) < 0.05
            values = rng.integers(0, 50, rows)
            return ["" if m else f"{v}.0" for m, v in zip(missing, values, strict=True)]
        if kind == 6:
            return np.arange(rows).astype(str).tolist()
        return rng.choice([f"c{j}" for j in range(30)], rows).tolist()

    pl.DataFrame({f"col_{i}": column(i) for i in range(columns)}).write_csv(path)
    return path


def time_inference(root: Path, columns: int, rows: int) -> tuple[float, float, float, float]:
    """Seconds to read the file and to infer its schema at this width, as Add does: wall
    clock, then CPU (this process, all its threads: the work done, less sensitive than the
    wall clock to other work on a shared machine)."""
    from privsynth_core.inference import infer_draft
    from privsynth_core.table import read_frame

    path = mixed_csv(root / f"mixed-{columns}.csv", columns, rows)
    started, cpu = time.perf_counter(), time.process_time()
    frame = read_frame(path, max_bytes=2**31)
    read, read_cpu = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    infer_draft(frame, lenient=True)
    inferred, infer_cpu = time.perf_counter() - started, time.process_time() - cpu
    path.unlink()
    return read, inferred, read_cpu, infer_cpu


def time_width(root: Path, columns: int, rows: int, mode: str) -> tuple[float, float]:
    """(seconds to add the table, seconds to fix its domain) at this width."""
    from privsynth_core.schema import Schema
    from privsynth_ui import budget_handlers, domain_handlers
    from privsynth_ui import data_handlers as data
    from privsynth_ui.auth import CUSTODIAN
    from privsynth_ui.events import PageEvents
    from privsynth_ui.settings import UISettings
    from privsynth_ui.training import WebFlows
    from privsynth_ui.workspace import Workspace

    home = root / f"home-{columns}"
    settings = UISettings(home=home, failure_delay=0.0, max_upload_bytes=2**31)
    ws = Workspace(home, "cora", role=CUSTODIAN)
    upload = settings.cache_dir / "bench" / "wide.csv"
    upload.parent.mkdir(parents=True, exist_ok=True)
    wide_csv(upload, columns, rows)
    started = time.perf_counter()
    record = data.add_uploaded(ws, settings, upload, name="wide", holdout_share=0.0, exclude="")
    added = time.perf_counter() - started
    table = domain_handlers.schema_rows(Schema.load(record.draft_schema_path))
    events = PageEvents(settings, WebFlows(settings))
    if mode == "dp":
        budget_handlers.set_budget(ws, record.dataset_id, 1e6, 1e-3)
    started = time.perf_counter()
    events.fix_domain(
        ws,
        record.dataset_id,
        table,
        mode,
        0.5 * columns if mode == "dp" else None,
        1e-6 if mode == "dp" else None,
        True,
    )
    fixed = time.perf_counter() - started
    assert domain_handlers.domain_of(ws, record).fixed, "the domain was not fixed"
    return added, fixed


def main() -> int:
    """Time every width and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="1000,4000", help="column counts, comma-separated")
    parser.add_argument("--rows", type=int, help="rows (default: 300; 2,000 with --step infer)")
    parser.add_argument("--mode", choices=("public", "dp"), default="public")
    parser.add_argument(
        "--step",
        choices=("fix", "infer"),
        default="fix",
        help="fix: add and fix the domain on the page; infer: read and infer only (Add's core)",
    )
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    if args.step == "infer":
        return _print_inference(widths, args.rows or 2000)
    args.rows = args.rows or 300
    root = Path(tempfile.mkdtemp(prefix="privsynth-domain-width-"))
    try:
        time_width(root, 20, args.rows, args.mode)  # imports and first-use costs, not timed
        results = [(w, *time_width(root, w, args.rows, args.mode)) for w in widths]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first, _, base_fix = results[0]
    base_add = results[0][1]
    print(f"\nfix the domain ({args.mode}), {args.rows} rows; per-column time vs {first} columns")
    print(
        f"{'columns':>8} {'add s':>8} {'fix s':>8} {'fix ms/col':>11} "
        f"{'add ratio':>10} {'fix ratio':>10}"
    )
    for width, added, fixed in results:
        scale = width / first
        print(
            f"{width:>8} {added:>8.2f} {fixed:>8.2f} {1000 * fixed / width:>11.2f} "
            f"{added / base_add / scale:>10.2f} {fixed / base_fix / scale:>10.2f}"
        )
    return 0


def _print_inference(widths: list[int], rows: int) -> int:
    """Time reading and inferring at every width and print ms per column and the ratios."""
    root = Path(tempfile.mkdtemp(prefix="privsynth-infer-width-"))
    try:
        time_inference(root, 16, rows)  # imports and first-use costs, not timed
        results = [(w, *time_inference(root, w, rows)) for w in widths]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first, *base = results[0]
    print(f"\nread + infer a schema, {rows} rows; per-column time vs {first} columns")
    print(
        f"{'columns':>8} {'read s':>7} {'infer s':>8} {'ms/col':>7} {'cpu s':>7} "
        f"{'cpu ms/col':>11} {'read ratio':>11} {'infer ratio':>12} {'cpu ratio':>10}"
    )
    for width, read, inferred, read_cpu, infer_cpu in results:
        scale = width / first
        cpu = read_cpu + infer_cpu
        print(
            f"{width:>8} {read:>7.2f} {inferred:>8.2f} {1000 * (read + inferred) / width:>7.2f} "
            f"{cpu:>7.2f} {1000 * cpu / width:>11.2f} {read / base[0] / scale:>11.2f} "
            f"{inferred / base[1] / scale:>12.2f} {cpu / (base[2] + base[3]) / scale:>10.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
