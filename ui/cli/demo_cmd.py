"""``privsynth demo``: the whole pipeline on the embedded UCI Adult table, in about a minute.

It draws a training sample and a disjoint holdout from Adult, sets a demo budget for that sample
if it has none, runs the ``synthesize`` flow with the DP generator installed that serves Adult
best (:func:`privsynth_core.registry.choose_generator`: AIM when the ``privsynth-marginal``
plugin is there, else DP-CTGAN) on Adult's declared-public schema, prints where every output
is, and says what the verdicts mean.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: Said when the marginal plugin is missing: the built-ins' best is well behind it.
MARGINAL_HINT = "install the privsynth-marginal plugin for AIM, which does better at small epsilon"
DEMO_DELTA = 1e-5
#: The end-to-end epsilon of the demo's release when no --epsilon is given.
DEMO_TOTAL_EPSILON = 1.0
VERDICT_LEGEND = (
    "What the verdicts mean: GOOD = close to real data (most of the way from independent "
    "columns to a real holdout, or within the metric's good limit); FAIR = useful, with visible "
    "gaps; POOR = little better than a copy of the real data with every column shuffled (for a "
    "privacy attack: a measurable leak). The fidelity headlines are strict: at epsilon 1 on a "
    "few thousand rows even the best DP generators read POOR on them while their utility reads "
    "FAIR or GOOD; the worst columns and pairs above say where the gap is, and more rows or a "
    "larger epsilon narrow it."
)


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    demo = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the embedded Adult table",
        description="Fit a DP generator on a sample of the UCI Adult table (declared-public "
        "schema), sample a synthetic table, evaluate it against a real holdout and write the "
        "report, as the Prefect flow `privsynth run` uses.",
    )
    demo.add_argument(
        "-o",
        "--output",
        default="privsynth-demo",
        help="folder for the demo's data and run (default ./privsynth-demo)",
    )
    demo.add_argument(
        "--rows",
        type=int,
        default=5000,
        help="training rows drawn from Adult (default 5000; 48,842 at most)",
    )
    demo.add_argument(
        "--generator",
        help="generator id (default: the installed DP generator "
        "that serves Adult best, as `privsynth fit` chooses)",
    )
    demo.add_argument(
        "--epsilon",
        type=float,
        help="training epsilon (default: whatever makes the release's end-to-end "
        f"epsilon {DEMO_TOTAL_EPSILON:g} once the row count's share is added)",
    )
    demo.set_defaults(func=demo_cmd)


def _default_generator() -> tuple[str, str]:
    """The DP generator installed that serves Adult best, and why: the rule `privsynth fit`
    follows without ``--generator`` (:func:`privsynth_core.registry.choose_generator`)."""
    from privsynth_core.datasets import adult_schema
    from privsynth_core.registry import choose_generator, generators

    choice = choose_generator(adult_schema(), target="income")
    why = choice.why
    if "aim" not in generators():
        why = f"{why}; {MARGINAL_HINT}"
    return choice.generator_id, why


def _write_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """A seeded training sample and a disjoint holdout of Adult, as CSV files."""
    from privsynth_core.datasets import adult_frame
    from privsynth_core.errors import ConfigError
    from privsynth_core.fileio import atomic_write

    frame = adult_frame().sample(fraction=1.0, shuffle=True, seed=0)
    if not 100 <= rows <= frame.height - 100:
        raise ConfigError(f"--rows must be between 100 and {frame.height - 100}, got {rows}")
    train = frame.head(rows)
    holdout = frame.slice(rows, min(rows, 5000))
    train_path = atomic_write(folder / "data" / "adult-train.csv", train.write_csv)
    holdout_path = atomic_write(folder / "data" / "adult-holdout.csv", holdout.write_csv)
    return train_path, holdout_path


def _count_share(train_path: Path) -> float:
    """The epsilon of the demo table's released row count: what a release lists beside its
    training (already released: its own; else what releasing it will cost)."""
    from privsynth_core.privacy.count import count_epsilon, released_row_count
    from privsynth_core.privacy.ledger import PrivacyLedger
    from privsynth_core.table import fingerprint_frame, read_frame

    ledger = PrivacyLedger()
    fingerprint = fingerprint_frame(read_frame(train_path))
    released = released_row_count(ledger, fingerprint, extract=fingerprint)
    if released is not None:
        return released.epsilon
    return count_epsilon(ledger.status(fingerprint).budget.epsilon)


def _ensure_budget(train_path: Path, epsilon: float) -> None:
    from privsynth_core.privacy.ledger import PrivacyLedger
    from privsynth_core.table import fingerprint_frame, read_frame

    ledger = PrivacyLedger()
    fingerprint = fingerprint_frame(read_frame(train_path))
    if ledger.has_budget(fingerprint):
        status = ledger.status(fingerprint)
        print(
            f"demo dataset {fingerprint[:12]}: budget {status.budget}, remaining "
            f"{status.remaining} (ledger {ledger.path})"
        )
        return
    budget = max(3.0, 3 * epsilon)
    ledger.set_budget(fingerprint, epsilon=budget, delta=1e-4, label="adult-demo")
    print(
        f"no budget was set for the demo dataset ({fingerprint[:12]}): set a DEMO budget of "
        f"epsilon={budget:g}, delta=1e-4 in {ledger.path}. On real data the data custodian "
        f"sets it: `privsynth budget set DATA --epsilon E --delta D`"
    )


def _print_worst(metrics_json: Path) -> None:
    """Where each headline score falls short most (from the report's metrics.json)."""
    import json

    try:
        headlines = json.loads(metrics_json.read_text(encoding="utf-8")).get("headline", [])
    except (OSError, ValueError):
        return
    for headline in headlines:
        for line in headline.get("worst") or []:
            print(f"  {headline['name']}: {line}")


def demo_cmd(args: argparse.Namespace) -> int:
    """Run the demo."""
    import time

    from privsynth_core.datasets import ADULT_ATTRIBUTION, ADULT_SCHEMA_PATH
    from privsynth_core.runs.config import run_config_from_dict

    from .run_cmd import print_run

    folder = Path(args.output).resolve()
    generator, why = (args.generator, "as asked") if args.generator else _default_generator()
    print(f"privsynth demo: {ADULT_ATTRIBUTION}")
    train_path, holdout_path = _write_data(folder, args.rows)
    print(f"training sample: {train_path} ({args.rows} rows); real holdout: {holdout_path}")
    _ensure_budget(train_path, args.epsilon or DEMO_TOTAL_EPSILON)
    epsilon = args.epsilon
    if epsilon is None:
        share = _count_share(train_path)
        epsilon = round(DEMO_TOTAL_EPSILON - share, 6)
        print(
            f"epsilon {epsilon:g} for training + {share:g} for the released row count = "
            f"{DEMO_TOTAL_EPSILON:g} end to end"
        )
    # The demo predicts income: the run's target makes the generators that can use it do so
    # (AIM's and MST's selections, DP-CTGAN's focus_columns; RunConfig applies it). AIM and MST
    # get one cell per value of Adult's integer columns (age, hours-per-week: up to 99 values),
    # so a spike such as a 40-hour week is not smeared over its neighbours.
    params: dict[str, Any] = {"bins": 100} if generator in ("aim", "mst") else {}
    config = run_config_from_dict(
        {
            "name": f"adult-demo-{generator}",
            "input": str(train_path),
            "schema_path": str(ADULT_SCHEMA_PATH),
            "domain": "public",
            "generator": generator,
            "params": params,
            "epsilon": epsilon,
            "delta": DEMO_DELTA,
            "target": "income",
            "holdout": str(holdout_path),
            "seed": 0,
            "output_dir": str(folder / "run"),
        }
    )
    print(
        f"generator {generator} ({why}), epsilon={epsilon:g}, delta={DEMO_DELTA:g}, "
        f"domain: Adult's declared-public schema ({ADULT_SCHEMA_PATH})",
        flush=True,
    )
    from privsynth_flows.runtime import prefect_session
    from privsynth_flows.synthesize import synthesize

    started = time.perf_counter()
    with prefect_session():
        result = synthesize(config)
    print_run(result)
    _print_worst(result.report.parent / "metrics.json")
    print(VERDICT_LEGEND)
    print(
        f"demo finished in {time.perf_counter() - started:.0f} s; the training sample and "
        f"holdout are in {folder / 'data'}"
    )
    return 0
