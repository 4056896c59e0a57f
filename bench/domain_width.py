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
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--mode", choices=("public", "dp"), default="public")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
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


if __name__ == "__main__":
    raise SystemExit(main())
