"""``privsynth evaluate REAL SYNTHETIC -o DIR``: metrics, verdicts and the report folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import print_table
from ._data import add_separator_option, read_data


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare a synthetic table with the real one; write metrics.json and report.html",
        description="Score a synthetic table for fidelity, utility and privacy against the real "
        "table, and write metrics.json, report.html and the plots into the output folder. The "
        "report contains statistics of the real data: it is NOT covered by the DP guarantee and "
        "is for the data custodian only.",
    )
    parser.add_argument("real", help="the real (training) table, CSV or Parquet")
    parser.add_argument("synthetic", help="the synthetic table, CSV or Parquet")
    parser.add_argument("-o", "--output", required=True, help="report folder to write")
    parser.add_argument(
        "--holdout",
        help="real rows the generator never saw (enables the "
        "privacy attacks and the real-holdout ceiling)",
    )
    parser.add_argument("--target", help="column the utility metrics (TSTR) predict")
    parser.add_argument(
        "--schema",
        help="schema file (default: the manifest's schema, else one inferred from the real table)",
    )
    parser.add_argument(
        "--metrics",
        help="comma-separated metric ids (default: every metric "
        "whose inputs are given); see `privsynth plugins list`",
    )
    parser.add_argument(
        "--manifest",
        help="the model folder, its manifest.json, or a run "
        "directory: reports the DP guarantee (checked against the privacy ledger "
        "where this installation has the custodian's record of the model)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of samples and models")
    parser.add_argument(
        "--no-references",
        action="store_true",
        help="skip the ceiling/floor reference points (faster)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_separator_option(parser)
    parser.set_defaults(func=evaluate_cmd)


def evaluate_cmd(args: argparse.Namespace) -> int:
    """Run the evaluation and print the headline scores, where each falls short, and the
    guarantee (from the ledger where it can be checked)."""
    from privsynth_core.errors import InputFileError
    from privsynth_core.evaluation.runner import evaluate
    from privsynth_core.privacy.guarantee import load_model_evidence
    from privsynth_core.schema import Schema

    from .generate_cmd import TextProgress

    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not args.overwrite:
        raise InputFileError(
            f"output {output} already exists and is not empty; choose another "
            f"folder or pass --overwrite"
        )
    manifest, record = load_model_evidence(args.manifest) if args.manifest else (None, None)
    real = read_data(args.real, args.separator)
    synthetic = read_data(args.synthetic, args.separator)
    holdout = read_data(args.holdout, args.separator) if args.holdout else None
    if args.schema:
        schema = Schema.load(args.schema)
    elif manifest is not None:
        schema = Schema.from_dict(manifest["schema"], source=f"the schema in {args.manifest}")
    else:
        from privsynth_core.inference import infer_schema

        schema = infer_schema(real)
        print("note: no --schema given; column kinds inferred from the real table", file=sys.stderr)
    metric_ids = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    bar = None if args.quiet else TextProgress()
    try:
        result = evaluate(
            real,
            synthetic,
            schema=schema,
            metric_ids=metric_ids,
            holdout=holdout,
            target=args.target,
            manifest=manifest,
            seed=args.seed,
            references=not args.no_references,
            output_dir=args.output,
            overwrite=args.overwrite,
            record=record,
            progress=bar,
        )
    finally:
        if bar is not None:
            bar.close()
    rows = [
        [h.name, _fmt(h.value), _fmt(h.ceiling), _fmt(h.floor), h.verdict.upper(), h.verdict_text]
        for h in result.headlines
    ]
    if rows:
        print_table(["HEADLINE SCORE", "VALUE", "CEILING", "FLOOR", "VERDICT", "WHY"], rows)
        for h in result.headlines:
            for line in [*h.worst, *h.notes]:
                print(f"  {h.metric_id}: {line}")
    else:
        print("no headline metric ran")
    others = [
        r for r in result.results if r.metric_id not in {h.metric_id for h in result.headlines}
    ]
    if others:
        print()
        print_table(
            ["METRIC", "GROUP", "VALUE", "VERDICT"],
            [
                [r.metric_id, r.group, _fmt(r.value), result.verdicts[r.metric_id][0].upper()]
                for r in others
            ],
        )
    for skipped in result.skipped:
        print(f"skipped {skipped.metric_id}: {skipped.reason}")
    guarantee = result.guarantee
    if guarantee is not None:
        print(f"\n{describe_guarantee(guarantee)}")
    for section, error in result.section_errors.items():
        print(f"warning: report section {section} failed: {error}", file=sys.stderr)
    print(
        f"\nreport: {output / 'report.html'} (metrics.json, plots/ beside it) in "
        f"{result.seconds.get('total', 0):.1f}s"
    )
    print(
        "The report contains statistics of the real data and is NOT covered by the DP "
        "guarantee: keep it with the data custodian. Only the synthetic table and the model "
        "manifest are for release."
    )
    print(
        "Verdicts: GOOD = close to the real data (or to its real-holdout reference); FAIR = "
        "useful, with visible gaps; POOR = little better than independent columns (or, for "
        "privacy, a leak); the WHY column and the report say what each is measured against."
    )
    return 0


def describe_guarantee(guarantee: dict[str, Any]) -> str:
    """The guarantee an evaluation reports, in words: where the figure comes from, and a
    warning when the model's manifest states another."""
    if not guarantee.get("differentially_private"):
        return (
            f"privacy guarantee: none (the {guarantee.get('generator')} model is NOT "
            f"differentially private)"
        )
    text = (
        f"privacy guarantee: epsilon={_fmt(guarantee.get('epsilon'))}, "
        f"delta={guarantee.get('delta'):.3g} end to end, {guarantee.get('source', '')}"
    )
    if guarantee.get("warning"):
        text += f"\nWARNING: {guarantee['warning']}"
    return text


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value or value in (float("inf"), float("-inf")):
        return "inf" if value == float("inf") else "n/a"
    return f"{value:.4g}"
