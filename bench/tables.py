"""``python -m bench tables``: fidelity on tables nobody tuned to (issue #18).

Each table of ``../shared/datasets`` (Adult, diamonds, cps1988, mpls_stops, nyc_flights_2013,
census KDD) is sampled to ``--rows`` rows (seeded), split 80/20, and its schema inferred from
the whole sample and taken as public (**a benchmark shortcut**: a real run reviews its schema
or learns the domain with DP). Every (table, generator, epsilon, variant) is fitted in this
process, one after another, and scored against the 20% holdout: 2-way TVD (with the
shuffled-columns floor: the training rows with every column shuffled on its own), the worst
numeric column's KS, TSTR (ROC AUC on a categorical target, R² on a numeric one), detection AUC
(a classifier telling synthetic from real rows; 0.5 is best), the fit's seconds (and as a ratio
to the table's fastest fit in the run) and the fit's peak memory (this process' ``VmHWM`` with
the high-water mark restarted just before the fit, so it is the fit's peak RSS, the loaded
tables and libraries included, not the loading's). A variant is a set of generator parameters,
e.g. ``cells_share=0`` (equal-width numeric cells) against the default (cells learned under DP).

Example (what issue #18's numbers came from)::

    python -m bench tables --tables adult,diamonds,cps1988 --generators aim --epsilons 1 \\
        --rows 15000 --variants "cells_share=0;default"

Writes ``bench/results/<date>-tables/tables.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .common import (
    SHARED_DATASETS,
    fmt,
    markdown_table,
    results_dir,
    with_marginal_plugin,
    write_rows_json,
)
from .procmem import rss_mb
from .scale_worker import restart_peak

#: Each table's file and the column a model predicts (the suggestions of the datasets' README).
TABLES: dict[str, tuple[str, str]] = {
    "adult": ("adult.csv.gz", "income"),
    "diamonds": ("diamonds.csv.gz", "cut"),
    "cps1988": ("cps1988.csv.gz", "parttime"),
    "mpls_stops": ("mpls_stops.csv.gz", "personSearch"),
    "nyc_flights_2013": ("nyc_flights_2013.csv.gz", "carrier"),
    "census_kdd": ("census_kdd.csv.gz", "income_gt_50k"),
}
DELTA = 1e-5


def register(sub: Any) -> None:
    """Add the ``tables`` sub-command."""
    p = sub.add_parser(
        "tables",
        help="fidelity on every shared table (issue #18)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tables", default=",".join(TABLES), help="comma-separated table names")
    p.add_argument("--generators", default="aim", help="comma-separated generator ids")
    p.add_argument("--epsilons", default="1", help="comma-separated epsilons")
    p.add_argument("--rows", type=int, default=15_000, help="rows sampled from each table")
    p.add_argument(
        "--variants",
        default="default",
        help="';'-separated parameter sets, each 'name=value,...' or 'default'",
    )
    p.add_argument(
        "--target-aware",
        action="store_true",
        help="give the generators the table's target (params_for_target)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<date>-tables)")
    p.set_defaults(func=run)


def _variants(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``'a=1,b=x;default'`` as labelled parameter sets: a value is JSON when it parses as
    JSON (numbers, true, lists), else the text itself (``numeric_cells=equal_width``)."""
    out = []
    for item in (v.strip() for v in text.split(";") if v.strip()):
        params: dict[str, Any] = {}
        if item != "default":
            for pair in item.split(","):
                name, equals, value = pair.partition("=")
                if not equals or not name.strip():
                    raise SystemExit(f"--variants: {pair!r} is not name=value")
                try:
                    params[name.strip()] = json.loads(value)
                except json.JSONDecodeError:
                    params[name.strip()] = value.strip()
        out.append((item, params))
    return out


def _load(name: str, rows: int, seed: int) -> tuple[Any, Any, Any]:
    """(train, holdout, schema) of ``rows`` sampled rows of a shared table."""
    import polars as pl

    from privsynth_core import Table
    from privsynth_core.inference import infer_schema

    path = SHARED_DATASETS / TABLES[name][0]
    if name == "adult" and not path.is_file():  # the embedded copy (a fresh clone, CI)
        from privsynth_core.datasets import ADULT_PATH

        path = ADULT_PATH
    frame = pl.read_csv(path, infer_schema=False)
    frame = frame.sample(min(rows, frame.height), seed=seed, shuffle=True)
    schema = infer_schema(frame, lenient=True).confirm_public(accept_flagged=True)
    frame = Table.from_frame(frame, schema, name=name).frame  # typed, inside the domain
    cut = int(frame.height * 0.8)
    return frame.head(cut), frame.slice(cut), schema


def _worst_ks(real: Any, synthetic: Any, schema: Any) -> tuple[str | None, float | None]:
    from scipy.stats import ks_2samp

    from privsynth_core.schema import ColumnKind

    worst: tuple[str | None, float | None] = (None, None)
    for column in schema.columns:
        if column.kind not in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME):
            continue
        a = real[column.name].drop_nulls().cast(float_dtype()).to_numpy()
        b = synthetic[column.name].drop_nulls().cast(float_dtype()).to_numpy()
        if a.size and b.size:
            value = float(ks_2samp(a, b).statistic)
            if worst[1] is None or value > worst[1]:
                worst = (column.name, value)
    return worst


def float_dtype() -> Any:
    import polars as pl

    return pl.Float64


def _metric(
    metric_id: str, train: Any, synthetic: Any, holdout: Any, schema: Any, target: str | None
) -> float | None:
    from privsynth_core.registry import metrics

    try:
        return float(
            metrics()
            .get(metric_id)()
            .compute(train, synthetic, schema=schema, holdout=holdout, target=target, seed=0)
            .value
        )
    except Exception as exc:  # one metric failing must not stop the table
        print(f"    {metric_id} failed: {type(exc).__name__}: {exc}", flush=True)
        return None


def _shuffled(train: Any, seed: int) -> Any:
    import polars as pl

    return pl.DataFrame(
        {
            c: train[c].sample(fraction=1.0, shuffle=True, seed=seed + i)
            for i, c in enumerate(train.columns)
        }
    )


def run(args: argparse.Namespace) -> int:
    """Fit and score every (table, generator, epsilon, variant); write the tables."""
    import os
    import tempfile

    os.environ.setdefault("PRIVSYNTH_HOME", tempfile.mkdtemp(prefix="privsynth-bench-"))
    # MST and AIM too, even where PRIVSYNTH_LOAD_PLUGINS names only the core plugins
    with_marginal_plugin()
    from privsynth_core import PrivacyBudget, PrivacyLedger, Table
    from privsynth_core.registry import generators

    rows: list[dict[str, Any]] = []
    for name in [t.strip() for t in args.tables.split(",") if t.strip()]:
        train, holdout, schema = _load(name, args.rows, args.seed)
        target = TABLES[name][1] if TABLES[name][1] in schema.names else None
        floor = _metric(
            "marginal_2way_tvd", train, _shuffled(train, args.seed), holdout, schema, None
        )
        ceiling = _metric("marginal_2way_tvd", train, holdout, holdout, schema, None)
        table = Table.from_frame(train, schema, name=name)
        PrivacyLedger().set_budget(table.fingerprint(), epsilon=1e6, delta=0.5)
        print(
            f"{name}: {train.height} training rows, {len(schema.columns)} columns, target "
            f"{target}; 2-way TVD of a real holdout {fmt(ceiling)}, shuffled {fmt(floor)}",
            flush=True,
        )
        for generator_id in args.generators.split(","):
            cls = generators().get(generator_id.strip())
            for epsilon in (float(e) for e in args.epsilons.split(",")):
                for label, params in _variants(args.variants):
                    given = dict(params)
                    if args.target_aware:
                        given = cls.params_for_target(given, target)
                    generator = cls(**given)
                    start_mb = restart_peak()  # the fit's own peak, not the loading's
                    tick = time.perf_counter()
                    summary = generator.fit(table, budget=PrivacyBudget(epsilon, DELTA))
                    fit_s = time.perf_counter() - tick
                    peak_mb = rss_mb() if start_mb is not None else None
                    synthetic = generator.sample(train.height, seed=args.seed)
                    column, ks = _worst_ks(holdout, synthetic, schema)
                    row = {
                        "table": name,
                        "generator": cls.generator_id,
                        "epsilon": epsilon,
                        "variant": label,
                        "target_aware": args.target_aware,
                        "tvd_2way": _metric(
                            "marginal_2way_tvd", train, synthetic, holdout, schema, None
                        ),
                        "tvd_real_holdout": ceiling,
                        "tvd_shuffled": floor,
                        "worst_ks": ks,
                        "worst_ks_column": column,
                        "tstr": _metric("tstr", train, synthetic, holdout, schema, target)
                        if target
                        else None,
                        "detection_auc": _metric(
                            "detection_auc", train, synthetic, holdout, schema, None
                        ),
                        "fit_s": fit_s,
                        "fit_peak_mb": peak_mb,
                        "fit_peak_above_start_mb": None
                        if peak_mb is None or start_mb is None
                        else max(peak_mb - start_mb, 0.0),
                        "epsilon_spent": summary.epsilon,
                    }
                    rows.append(row)
                    print(
                        f"  {cls.generator_id} eps={epsilon:g} {label}: 2-way TVD "
                        f"{fmt(row['tvd_2way'])}, worst KS {fmt(ks)} ({column}), TSTR "
                        f"{fmt(row['tstr'])}, detection AUC {fmt(row['detection_auc'])}, fit "
                        f"{fit_s:.0f} s, peak {fmt(peak_mb)} MiB",
                        flush=True,
                    )
    out = args.out or results_dir(None, "tables")
    out.mkdir(parents=True, exist_ok=True)
    write_rows_json(out / "tables.json", args, rows)
    headers = [
        "table",
        "generator",
        "epsilon",
        "variant",
        "2-way TVD",
        "real holdout",
        "shuffled",
        "worst KS (column)",
        "TSTR",
        "detection AUC",
        "fit s",
        "fit / fastest",
        "peak MiB",
    ]
    fastest: dict[str, float] = {}
    for r in rows:  # the fastest fit of each table, the reference of its ratios
        fastest[r["table"]] = min(fastest.get(r["table"], r["fit_s"]), r["fit_s"])
    table_rows = [
        [
            r["table"],
            r["generator"],
            r["epsilon"],
            r["variant"],
            fmt(r["tvd_2way"]),
            fmt(r["tvd_real_holdout"]),
            fmt(r["tvd_shuffled"]),
            f"{fmt(r['worst_ks'])} ({r['worst_ks_column']})",
            fmt(r["tstr"]),
            fmt(r["detection_auc"]),
            fmt(r["fit_s"], 1),
            f"{r['fit_s'] / fastest[r['table']]:.2f}" if fastest[r["table"]] > 0 else "–",
            fmt(r["fit_peak_mb"]),
        ]
        for r in rows
    ]
    (out / "tables.md").write_text(markdown_table(headers, table_rows) + "\n")
    print(f"\nwrote {out / 'tables.md'}")
    return 0
