"""``privsynth budget set|show``: a dataset's privacy budget and what has been spent of it."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import print_table


def register(subparsers: Any) -> None:
    """Add the ``budget`` command group."""
    parser = subparsers.add_parser("budget", help="set and inspect privacy budgets")
    sub = parser.add_subparsers(dest="budget_command", metavar="SUBCOMMAND")

    set_parser = sub.add_parser("set", help="set a dataset's total (epsilon, delta) budget")
    set_parser.add_argument("data", help="the private CSV or Parquet file")
    set_parser.add_argument("--epsilon", type=float, required=True)
    set_parser.add_argument("--delta", type=float, required=True)
    set_parser.add_argument("--label", default="", help="a name for the dataset (default: file)")
    set_parser.set_defaults(func=set_cmd)

    show = sub.add_parser("show", help="budgets of all datasets, or one dataset's ledger")
    show.add_argument("data", nargs="?", help="a data file (omit to list every dataset)")
    show.set_defaults(func=show_cmd)


def _fingerprint(path: str) -> str:
    from privsynth_core.table import fingerprint_frame, read_frame

    return fingerprint_frame(read_frame(path))


def set_cmd(args: argparse.Namespace) -> int:
    """Set the budget of the dataset in ``args.data``."""
    from pathlib import Path

    from privsynth_core.ledger import PrivacyLedger

    status = PrivacyLedger().set_budget(
        _fingerprint(args.data), epsilon=args.epsilon, delta=args.delta,
        label=args.label or Path(args.data).name,
    )
    print(f"budget of {status.label} ({status.fingerprint[:12]}) set to {status.budget}; "
          f"spent {status.spent}, remaining {status.remaining}")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Show budgets, or one dataset's entries."""
    from privsynth_core.ledger import PrivacyLedger

    ledger = PrivacyLedger()
    if args.data is None:
        rows = [[s.label, s.fingerprint[:12], f"{s.budget.epsilon:g}", f"{s.budget.delta:g}",
                 f"{s.spent.epsilon:.4g}", f"{s.remaining.epsilon:.4g}", s.non_private_runs]
                for s in ledger.datasets()]
        if not rows:
            print(f"no budgets set yet (ledger: {ledger.path})")
            return 0
        print_table(["DATASET", "FINGERPRINT", "EPSILON", "DELTA", "SPENT", "LEFT", "NON-DP RUNS"],
                    rows)
        return 0
    fingerprint = _fingerprint(args.data)
    status = ledger.status(fingerprint)
    print(f"{status.label} ({fingerprint[:12]}): budget {status.budget}, spent {status.spent}, "
          f"remaining {status.remaining}")
    rows = [[e.entry_id, e.created_at, e.mechanism, e.status,
             "-" if e.status == "non-dp" else f"{e.epsilon:.4g}",
             "-" if e.status == "non-dp" else f"{e.delta:.3g}", e.run_id[:12]]
            for e in ledger.entries(fingerprint)]
    if rows:
        print_table(["ID", "TIME", "MECHANISM", "STATUS", "EPSILON", "DELTA", "RUN"], rows)
    if status.non_private_runs:
        print(f"note: {status.non_private_runs} non-DP run(s) touched this dataset; their "
              f"outputs carry no privacy guarantee and must not be released")
    return 0
