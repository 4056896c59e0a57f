"""``privsynth schema infer|confirm``: draft a schema from data, then declare it public."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import print_table
from ._data import add_separator_option, read_data


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
    infer.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="COLUMN",
        help="leave a column out (repeatable)",
    )
    infer.add_argument(
        "--max-categories",
        type=int,
        default=1000,
        help="text columns with more distinct values count as free text",
    )
    infer.add_argument(
        "--skeleton",
        action="store_true",
        help="write names, kinds and formats only (no bounds or categories): the "
        "public metadata to review before learning the domain with DP",
    )
    add_separator_option(infer)
    infer.set_defaults(func=infer_cmd)

    confirm = sub.add_parser(
        "confirm",
        help="declare a reviewed schema's domain public",
        description="Mark the schema's domain as public: you vouch that its names, kinds, "
        "bounds and categories reveal nothing about any individual in the private data. A "
        "draft's review flags (bounds that are the data's own min/max, rare categories) must "
        "be resolved first: edit the file, use --round-bounds, or --accept-flagged once you "
        "have checked that those values are public knowledge.",
    )
    confirm.add_argument("schema", help="schema file to confirm (rewritten in place)")
    confirm.add_argument(
        "--round-bounds",
        action="store_true",
        help="replace bounds that are the data's min/max by round limits",
    )
    confirm.add_argument(
        "--accept-flagged",
        action="store_true",
        help="declare the flagged values public after reviewing them",
    )
    confirm.set_defaults(func=confirm_cmd)


def infer_cmd(args: argparse.Namespace) -> int:
    """Infer a schema (or a skeleton), write it, and show what was guessed and why.

    The table of guesses goes to stderr with the rest of the custodian's notes (it names the
    columns and the reasons, never a value of the data); stdout says what was written.
    """
    from privsynth_core.inference import infer_draft, skeleton

    frame = read_data(args.data, args.separator)
    draft = infer_draft(frame, exclude=args.exclude, max_categories=args.max_categories)
    schema = skeleton(draft.schema) if args.skeleton else draft.schema
    schema.save(args.output)
    print("what was guessed, and why (review every row):", file=sys.stderr)
    print_table(["COLUMN", "KIND", "WHY", "FLAGS"], draft.rows(), file=sys.stderr)
    for excluded in schema.excluded:
        print(f"excluded column {excluded.name!r}: {excluded.text}", file=sys.stderr)
    review = "" if args.skeleton else "".join(f"\n  review: {f.describe()}" for f in schema.review)
    what = "names and kinds" if args.skeleton else "domain"
    print(
        f"wrote {args.output}: {len(schema.columns)} column(s), {what} INFERRED from the data "
        f"(not private).{review}\nReview it, then run `privsynth schema confirm "
        f"{args.output}`"
        + (
            " and fit with --domain dp."
            if args.skeleton
            else " (or use it as a skeleton with --domain dp)."
        )
    )
    return 0


def confirm_cmd(args: argparse.Namespace) -> int:
    """Rewrite a schema file with ``domain: public`` once its review flags are resolved."""
    from privsynth_core.schema import Schema

    schema = Schema.load(args.schema)
    if args.round_bounds:
        schema = schema.with_round_bounds()
    schema = schema.confirm_public(accept_flagged=args.accept_flagged)
    schema.save(args.schema)
    missing = schema.missing_domains
    tail = (
        f"; {len(missing)} column(s) have no domain yet: learn it with --domain dp"
        if missing
        else ""
    )
    print(f"{args.schema}: declared public ({len(schema.columns)} columns){tail}")
    return 0
