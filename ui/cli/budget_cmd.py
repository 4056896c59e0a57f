"""``privsynth budget``: privacy budgets per data source, what has been spent of them, and the
ledger's own care: verify, export/import (backups), open reservations, non-DP acknowledgements.

A budget is named by a data file (its content fingerprint) or by ``--source NAME``, a custodian's id
for a population whose extracts compose (see :func:`privsynth_core.privacy.ledger.budget_key`).
Commands that only read open the ledger read-only, so they also work on a read-only copy.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import print_table
from ._data import add_separator_option, read_data


def register(subparsers: Any) -> None:
    """Add the ``budget`` command group."""
    parser = subparsers.add_parser("budget", help="set and inspect privacy budgets")
    sub = parser.add_subparsers(dest="budget_command", metavar="SUBCOMMAND")

    set_parser = sub.add_parser(
        "set", help="set the total (epsilon, delta) budget of a dataset or data source"
    )
    _target(set_parser)
    set_parser.add_argument("--epsilon", type=float, required=True)
    set_parser.add_argument("--delta", type=float, required=True)
    set_parser.add_argument(
        "--label", default="", help="a name for it (default: the file's or the source's name)"
    )
    set_parser.set_defaults(func=set_cmd)

    show = sub.add_parser("show", help="budgets of all datasets, or one's ledger entries")
    _target(show, what="(omit both to list every budget)")
    show.set_defaults(func=show_cmd)

    verify = sub.add_parser(
        "verify",
        help="check the ledger's hash chain against its tables (exit code 2 on any problem)",
    )
    verify.set_defaults(func=verify_cmd)

    export = sub.add_parser("export", help="write a backup of the ledger (all its events)")
    export.add_argument("file", help="the backup file to write (JSON)")
    export.set_defaults(func=export_cmd)

    restore = sub.add_parser("import", help="rebuild a missing ledger from a backup")
    restore.add_argument("file", help="a backup written by `privsynth budget export`")
    restore.add_argument(
        "--accept-loss",
        action="store_true",
        help="restore even if the lost ledger had recorded more than the backup",
    )
    restore.set_defaults(func=import_cmd)

    init = sub.add_parser(
        "init",
        help="create the ledger; with --new-ledger, start a new one "
        "where the old one is lost (recorded)",
    )
    init.add_argument(
        "--new-ledger",
        action="store_true",
        help="start over on purpose: what the lost ledger recorded is forgotten",
    )
    _note(init, required=False)
    init.set_defaults(func=init_cmd)

    reservations = sub.add_parser("reservations", help="list reservations never settled")
    reservations.set_defaults(func=reservations_cmd)

    close = sub.add_parser("close", help="record an open reservation as spent in full")
    close.add_argument("entry_id", type=int, help="the reservation's ledger entry id")
    _note(close)
    close.set_defaults(func=close_cmd)

    acknowledge = sub.add_parser("acknowledge", help="acknowledge the non-DP runs of a dataset")
    _target(acknowledge)
    _note(acknowledge)
    acknowledge.set_defaults(func=acknowledge_cmd)


def _target(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("data", nargs="?", help=f"the private CSV or Parquet file {what}".strip())
    parser.add_argument(
        "--source",
        metavar="NAME",
        help="a data source id instead of a file: its extracts share one budget",
    )
    add_separator_option(parser)


def _note(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--note", required=required, help="why: kept in the ledger for good")
    parser.add_argument("--by", default=None, help="who (default: your user name)")


def _key(args: argparse.Namespace, *, required: bool = True) -> str | None:
    from privsynth_core.errors import ConfigError
    from privsynth_core.privacy.ledger import budget_key

    if args.data and args.source:
        raise ConfigError("give a data file or --source NAME, not both")
    if args.source:
        return budget_key(args.source, "")
    if args.data:
        from privsynth_core.table import fingerprint_frame

        return fingerprint_frame(read_data(args.data, args.separator))
    if required:
        raise ConfigError("give the data file, or --source NAME")
    return None


def _by(args: argparse.Namespace) -> str:
    if args.by is not None:
        return str(args.by)
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment: the note must do
        return ""


def _spent(status: Any) -> str:
    if status.unbounded:
        return f"unbounded ({status.unacknowledged_non_dp} non-DP run(s), not acknowledged)"
    return str(status.spent)


def set_cmd(args: argparse.Namespace) -> int:
    """Set the budget of the dataset in ``args.data`` or of the source ``args.source``."""
    from pathlib import Path

    from privsynth_core.privacy.ledger import PrivacyLedger, short_key

    key = _key(args)
    assert key is not None
    status = PrivacyLedger().set_budget(
        key,
        epsilon=args.epsilon,
        delta=args.delta,
        label=args.label or args.source or Path(args.data).name,
    )
    print(
        f"budget of {status.label} ({short_key(status.key)}) set to {status.budget}; "
        f"spent {_spent(status)}, remaining {status.remaining}"
    )
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    """Show budgets, or one dataset's entries."""
    from privsynth_core.privacy.ledger import PrivacyLedger, short_key

    ledger = PrivacyLedger(read_only=True)
    key = _key(args, required=False)
    problems = ledger.verify()  # reading needs no intact ledger, but must not hide a broken one
    if problems:
        print(
            f"privsynth: warning: the privacy ledger {ledger.path} fails its integrity check "
            f"({len(problems)} problem(s)), so these figures may be wrong; run `privsynth "
            f"budget verify`",
            file=sys.stderr,
        )
    if key is None:
        rows = [
            [
                s.label,
                short_key(s.key),
                f"{s.budget.epsilon:g}",
                f"{s.budget.delta:g}",
                _spent(s) if s.unbounded else f"{s.spent.epsilon:.4g}",
                "-" if s.unbounded else f"{s.remaining.epsilon:.4g}",
                s.non_private_runs,
            ]
            for s in ledger.datasets()
        ]
        if not rows:
            print(f"no budgets set yet (ledger: {ledger.path})")
            return 0
        print_table(["DATASET", "KEY", "EPSILON", "DELTA", "SPENT", "LEFT", "NON-DP RUNS"], rows)
        return 0
    status = ledger.status(key)
    print(
        f"{status.label} ({short_key(key)}): budget {status.budget}, spent {_spent(status)}, "
        f"remaining {status.remaining}"
    )
    rows = [
        [
            e.entry_id,
            e.created_at,
            e.mechanism,
            e.status,
            "-" if e.status == "non-dp" else f"{e.epsilon:.4g}",
            "-" if e.status == "non-dp" else f"{e.delta:.3g}",
            e.run_id[:12],
            (e.extract or "-")[:12],
        ]
        for e in ledger.entries(key)
    ]
    if rows:
        print_table(
            ["ID", "TIME", "MECHANISM", "STATUS", "EPSILON", "DELTA", "RUN", "EXTRACT"], rows
        )
    if status.non_private_runs:
        print(
            f"note: {status.non_private_runs} non-DP run(s) touched this dataset; their "
            f"outputs carry no privacy guarantee and must not be released"
        )
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    """Run the full integrity check; list the problems and fail if there are any."""
    from privsynth_core.errors import LedgerIntegrityError
    from privsynth_core.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(read_only=True)
    problems = ledger.verify()
    if problems:
        for problem in problems:
            print(f"  - {problem}")
        raise LedgerIntegrityError(
            f"the privacy ledger {ledger.path} has {len(problems)} integrity problem(s), listed "
            f"above; move it aside and restore the last backup with `privsynth budget import "
            f"BACKUP`"
        )
    events = ledger.events()
    if not events:
        print(f"no privacy ledger at {ledger.path} yet; nothing to verify")
    else:
        print(
            f"the privacy ledger {ledger.path} is intact: {len(events)} events "
            f"(ledger {ledger.ledger_id})"
        )
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    """Write a backup of the ledger to ``args.file``."""
    from privsynth_core.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(read_only=True)
    ledger.export(args.file)
    print(f"backed up {len(ledger.events())} events of ledger {ledger.ledger_id} to {args.file}")
    return 0


def import_cmd(args: argparse.Namespace) -> int:
    """Rebuild the (missing) ledger from the backup ``args.file``."""
    from privsynth_core.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger.restore(None, args.file, accept_loss=args.accept_loss)
    print(
        f"restored ledger {ledger.ledger_id} at {ledger.path} from {args.file}: "
        f"{len(ledger.events())} events, {len(ledger.datasets())} budget(s); verified intact"
    )
    return 0


def init_cmd(args: argparse.Namespace) -> int:
    """Create the ledger, or (``--new-ledger``) start a new one where the old one is lost."""
    from privsynth_core.errors import ConfigError
    from privsynth_core.privacy.ledger import PrivacyLedger

    if args.new_ledger:
        if not args.note:
            raise ConfigError(
                "--new-ledger needs --note: say why the old ledger cannot be "
                "restored; the note is kept in the new ledger"
            )
        ledger = PrivacyLedger.start_new(note=args.note, by=_by(args))
        print(
            f"started a new privacy ledger {ledger.ledger_id} at {ledger.path}; what the lost "
            f"ledger recorded is forgotten (its first event says so)"
        )
        return 0
    ledger = PrivacyLedger()
    print(f"privacy ledger {ledger.ledger_id} at {ledger.path}: {len(ledger.events())} events")
    return 0


def reservations_cmd(args: argparse.Namespace) -> int:
    """List the open reservations."""
    from privsynth_core.privacy.ledger import PrivacyLedger, short_key

    ledger = PrivacyLedger(read_only=True)
    labels = {s.key: s.label for s in ledger.datasets()}
    rows = [
        [
            e.entry_id,
            labels.get(e.key) or short_key(e.key),
            e.mechanism,
            f"{e.epsilon:.4g}",
            f"{e.delta:.3g}",
            e.run_id[:12],
            e.created_at,
        ]
        for e in ledger.open_reservations()
    ]
    if not rows:
        print("no open reservations")
        return 0
    print_table(["ID", "DATASET", "MECHANISM", "EPSILON", "DELTA", "RUN", "TIME"], rows)
    print(
        "a reservation whose run is gone: `privsynth budget close ID --note WHY` records it "
        "as spent in full"
    )
    return 0


def close_cmd(args: argparse.Namespace) -> int:
    """Record the open reservation ``args.entry_id`` as spent in full."""
    from privsynth_core.privacy.ledger import PrivacyLedger, short_key

    entry = PrivacyLedger().close_reservation(args.entry_id, note=args.note, by=_by(args))
    print(
        f"closed reservation {entry.entry_id} on {short_key(entry.key)}: spent in full, "
        f"(epsilon={entry.epsilon:.4g}, delta={entry.delta:.3g})"
    )
    return 0


def acknowledge_cmd(args: argparse.Namespace) -> int:
    """Acknowledge the non-DP runs on a dataset or source."""
    from privsynth_core.privacy.ledger import PrivacyLedger, short_key

    key = _key(args)
    assert key is not None
    count = PrivacyLedger().acknowledge_non_dp(key, note=args.note, by=_by(args))
    print(f"acknowledged {count} non-DP run(s) on {short_key(key)}")
    return 0
