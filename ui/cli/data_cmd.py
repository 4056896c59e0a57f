"""``privsynth data validate``: check a table against its schema, listing every problem."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``data`` command group."""
    parser = subparsers.add_parser("data", help="check data files")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    validate = sub.add_parser("validate", help="check a file against a schema (all problems)")
    validate.add_argument("data", help="CSV or Parquet file")
    validate.add_argument("--schema", required=True, help="schema file (.yaml/.json)")
    validate.set_defaults(func=validate_cmd)


def validate_cmd(args: argparse.Namespace) -> int:
    """Print every way the data departs from the schema; exit 1 if any."""
    from privsynth_core.schema import Schema
    from privsynth_core.table import read_frame
    from privsynth_core.validation import validate

    schema = Schema.load(args.schema)
    frame = read_frame(args.data)
    problems = validate(frame, schema)
    if problems:
        print(f"{args.data}: {len(problems)} problem(s) against {args.schema}:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"{args.data}: {frame.height} rows fit {args.schema}")
    return 0
