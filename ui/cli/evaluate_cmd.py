"""``privsynth evaluate REAL SYNTHETIC -o DIR``: metrics, verdicts and the report folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import print_table


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
    parser.add_argument("--holdout", help="real rows the generator never saw (enables the "
                        "privacy attacks and the real-holdout ceiling)")
    parser.add_argument("--target", help="column the utility metrics (TSTR) predict")
    parser.add_argument("--schema", help="schema file (default: the manifest's schema, else one "
                        "inferred from the real table)")
    parser.add_argument("--metrics", help="comma-separated metric ids (default: every metric "
                        "whose inputs are given); see `privsynth plugins list`")
    parser.add_argument("--manifest", help="model folder or manifest.json (reports the DP "
                        "guarantee)")
    parser.add_argument("--seed", type=int, default=0, help="seed of samples and models")
    parser.add_argument("--no-references", action="store_true",
                        help="skip the ceiling/floor reference points (faster)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty folder")
    parser.set_defaults(func=evaluate_cmd)


def evaluate_cmd(args: argparse.Namespace) -> int:
    """Run the evaluation and print the headline scores."""
    from privsynth_core.evaluation import evaluate, load_manifest
    from privsynth_core.schema import Schema
    from privsynth_core.table import read_frame

    manifest = load_manifest(args.manifest) if args.manifest else None
    real = read_frame(args.real)
    synthetic = read_frame(args.synthetic)
    holdout = read_frame(args.holdout) if args.holdout else None
    if args.schema:
        schema = Schema.load(args.schema)
    elif manifest is not None and "schema" in manifest:
        schema = Schema.from_dict(manifest["schema"], source=f"the schema in {args.manifest}")
    else:
        from privsynth_core.inference import infer_schema

        schema = infer_schema(real)
        print("note: no --schema given; column kinds inferred from the real table",
              file=sys.stderr)
    metric_ids = [m.strip() for m in args.metrics.split(",") if m.strip()] \
        if args.metrics else None
    result = evaluate(
        real, synthetic, schema=schema, metric_ids=metric_ids, holdout=holdout,
        target=args.target, manifest=manifest, seed=args.seed,
        references=not args.no_references, output_dir=args.output, overwrite=args.overwrite,
    )
    rows = [
        [h.name, _fmt(h.value), _fmt(h.ceiling), _fmt(h.floor), h.verdict.upper(),
         h.verdict_text]
        for h in result.headlines
    ]
    if rows:
        print_table(["HEADLINE SCORE", "VALUE", "CEILING", "FLOOR", "VERDICT", "WHY"], rows)
    else:
        print("no headline metric ran")
    others = [r for r in result.results if r.metric_id not in {h.metric_id for h in
                                                               result.headlines}]
    if others:
        print()
        print_table(["METRIC", "GROUP", "VALUE", "VERDICT"],
                    [[r.metric_id, r.group, _fmt(r.value),
                      result.verdicts[r.metric_id][0].upper()] for r in others])
    for skipped in result.skipped:
        print(f"skipped {skipped.metric_id}: {skipped.reason}")
    for section, error in result.section_errors.items():
        print(f"warning: report section {section} failed: {error}", file=sys.stderr)
    print(f"\nreport: {Path(args.output) / 'report.html'} (metrics.json, plots/ beside it) in "
          f"{result.seconds.get('total', 0):.1f}s")
    print("The report contains statistics of the real data and is NOT covered by the DP "
          "guarantee: keep it with the data custodian. Only the synthetic table and the model "
          "manifest are for release.")
    return 0


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value or value in (float("inf"), float("-inf")):
        return "inf" if value == float("inf") else "n/a"
    return f"{value:.4g}"
