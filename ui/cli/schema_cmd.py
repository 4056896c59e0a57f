"""``privsynth schema infer|confirm``: draft a schema from data, then declare it public."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``schema`` command group."""
    parser = subparsers.add_parser("schema", help="infer, review and confirm a table's schema")
    sub = parser.add_subparsers(dest="schema_command", metavar="SUBCOMMAND")

    infer = sub.add_parser(
        "infer",
        help="draft a schema from a file (reads the data: NOT differentially private)",
        description="Infer kinds, nullability and a domain from the data. The domain (min/max, "
        "every category) is read off the private rows, so the file is marked `domain: "
        "inferred`: review and edit it, then `privsynth schema confirm` it, or learn the domain "
        "with DP at fit time (--domain dp).",
    )
    infer.add_argument("data", help="CSV or Parquet file")
    infer.add_argument("-o", "--output", required=True, help="schema file to write (.yaml/.json)")
    infer.add_argument("--exclude", action="append", default=[], metavar="COLUMN",
                       help="leave a column out (repeatable)")
    infer.add_argument("--max-categories", type=int, default=1000,
                       help="text columns with more distinct values count as free text")
    infer.set_defaults(func=infer_cmd)

    confirm = sub.add_parser(
        "confirm",
        help="declare a reviewed schema's domain public",
        description="Mark the schema's domain as public: you vouch that its bounds and "
        "categories reveal nothing about any individual in the private data.",
    )
    confirm.add_argument("schema", help="schema file to confirm (rewritten in place)")
    confirm.set_defaults(func=confirm_cmd)


def infer_cmd(args: argparse.Namespace) -> int:
    """Infer a schema and write it."""
    from privsynth_core.inference import infer_schema
    from privsynth_core.table import read_frame

    frame = read_frame(args.data)
    schema = infer_schema(frame, exclude=args.exclude, max_categories=args.max_categories)
    schema.save(args.output)
    for excluded in schema.excluded:
        print(f"excluded column {excluded.name!r}: {excluded.reason}", file=sys.stderr)
    print(f"wrote {args.output}: {len(schema.columns)} column(s), domain INFERRED from the data "
          f"(not private). Review it, then run `privsynth schema confirm {args.output}` or use "
          f"--domain dp when fitting.")
    return 0


def confirm_cmd(args: argparse.Namespace) -> int:
    """Rewrite a schema file with ``domain: public``."""
    from privsynth_core.schema import Schema

    schema = Schema.load(args.schema).confirm_public()
    schema.save(args.schema)
    print(f"{args.schema}: domain declared public ({len(schema.columns)} columns)")
    return 0
