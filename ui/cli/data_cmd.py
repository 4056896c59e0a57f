"""``privsynth data validate``: check a table against its schema, listing every problem."""

from __future__ import annotations

import argparse
from typing import Any

from ._data import add_separator_option, read_data


def register(subparsers: Any) -> None:
    """Add the ``data`` command group."""
    parser = subparsers.add_parser("data", help="check data files")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    validate = sub.add_parser(
        "validate",
        help="check a file against a schema (all problems)",
        description="Read the file as a fit would and list, as counts per column, every value "
        "that does not fit the schema and what a fit does with it (reads it as missing, clamps "
        "it, drops the row). Exit code 1 when anything does not fit.",
    )
    validate.add_argument("data", help="CSV or Parquet file")
    validate.add_argument("--schema", required=True, help="schema file (.yaml/.json)")
    validate.add_argument(
        "--show-values",
        action="store_true",
        help="also print example values of the rows that do not fit (values "
        "of the private data: for the custodian's eyes only)",
    )
    add_separator_option(validate)
    validate.set_defaults(func=validate_cmd)


def validate_cmd(args: argparse.Namespace) -> int:
    """Print every way the data departs from the schema (counts); exit 1 if any."""
    from privsynth_core.errors import SchemaError
    from privsynth_core.schema import Schema
    from privsynth_core.validation import conform_report, validate

    schema = Schema.load(args.schema)
    frame = read_data(args.data, args.separator)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"{args.data} lacks column(s) of {args.schema}: {', '.join(missing)} (the data has: "
            f"{', '.join(frame.columns)}); fix the schema's names or give the right file"
        )
    _, report = conform_report(frame, schema)
    problems = report.lines()
    if not problems:
        print(f"{args.data}: {frame.height} rows fit {args.schema}")
        return 0
    print(
        f"{args.data}: {len(problems)} problem(s) against {args.schema}; a fit handles each "
        f"row by row, as said:"
    )
    for problem in problems:
        print(f"  - {problem}")
    if args.show_values:
        print("examples (values of the private rows: custodian-only):")
        for detail in validate(frame, schema):
            print(f"  - {detail}")
    else:
        print("(counts only; --show-values prints example values)")
    return 1
