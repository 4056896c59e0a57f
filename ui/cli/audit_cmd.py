"""``privsynth audit``: check a generator's epsilon claim by attacking it with canaries.

Inserts canaries into the private table (each with probability 1/2), trains the generator under
its claimed budget (on a throwaway ledger: the audit's runs are tests, not releases), scores
each canary's membership from the synthetic output only, and writes a lower bound on epsilon at
95% confidence, the largest bound this many canaries could certify, and the attack's ROC curve
to ``audit.json``, ``roc.png`` and ``summary.md``. Exit code 0 whether or not the claim is
refuted (read the verdict); 2 on errors.

``privsynth audit --release RUN_DIR -o OUT`` checks a published run's release instead: it
releases again for the run's table and for the table plus one adversarial row (coupled, in
scratch ledgers) and says which fields of the release would differ, and whether a charged
mechanism explains each (``neighbours.md``, ``neighbours.json``). Exit code 0 when nothing
leaks, 1 when something does.
"""

from __future__ import annotations

import argparse
from typing import Any

from .run_cmd import _runner_options, _task_runner


def register(subparsers: Any) -> None:
    """Add the ``audit`` command."""
    parser = subparsers.add_parser(
        "audit",
        help="empirical privacy audit: a lower bound on a generator's epsilon",
        description="Audit a generator's DP claim with canary records and a membership attack "
        "on its synthetic output (one-run auditing, Steinke, Nasr & Jagielski 2023). The "
        "training runs are charged to a throwaway ledger and never published; the outputs "
        "are computed on the real data: custodian-only.",
    )
    parser.add_argument("data", nargs="?", help="the private CSV or Parquet file")
    parser.add_argument(
        "--release",
        metavar="RUN_DIR",
        help="check a published run's release against a neighbouring table "
        "instead (no membership attack); writes neighbours.md/.json",
    )
    parser.add_argument("--generator", help="generator id to audit")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a generator parameter (repeatable)",
    )
    parser.add_argument("--epsilon", type=float, help="the claimed epsilon")
    parser.add_argument("--delta", type=float, default=1e-5, help="the target delta (1e-5)")
    parser.add_argument("--accountant", default="rdp", help="accountant id (default rdp)")
    parser.add_argument("--canaries", type=int, default=100, help="canaries per run (100)")
    parser.add_argument("--runs", type=int, default=1, help="independent training runs (1)")
    parser.add_argument(
        "--guess-fraction",
        type=float,
        default=0.2,
        help="share of canaries the attacker guesses on (0.2)",
    )
    parser.add_argument(
        "--crafted-fraction",
        type=float,
        default=0.5,
        help="share of crafted outliers among the canaries (0.5)",
    )
    parser.add_argument(
        "--rows", type=int, help="synthetic rows per run (default: the released row count n̂)"
    )
    parser.add_argument(
        "--schema",
        help="the reviewed schema file (YAML/JSON) with a public "
        "domain (`privsynth schema confirm`)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the audit (0)")
    parser.add_argument("-o", "--output", required=True, help="directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty directory")
    _runner_options(parser)
    parser.set_defaults(func=audit_cmd)


def release_audit_cmd(args: argparse.Namespace) -> int:
    """Diff the run's release against a coupled release on the table plus one adversarial row."""
    import json
    import tempfile
    from dataclasses import asdict
    from pathlib import Path

    from privsynth_core.fileio import atomic_directory
    from privsynth_core.privacy.neighbours import check_run_release

    with tempfile.TemporaryDirectory(prefix="privsynth-neighbours-") as work:
        check = check_run_release(args.release, work)
    with atomic_directory(args.output, overwrite=args.overwrite) as tmp:
        (tmp / "neighbours.md").write_text(check.report(), encoding="utf-8")
        (tmp / "neighbours.json").write_text(
            json.dumps(
                {
                    "run_dir": str(check.run_dir),
                    "leaks": len(check.leaks),
                    "differences": [
                        {**asdict(d), "allowed": asdict(d.allowed) if d.allowed else None}
                        for d in check.differences
                    ],
                },
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )
    for difference in check.leaks:
        print(f"LEAK  {difference.describe()}")
    allowed = len(check.differences) - len(check.leaks)
    verdict = (
        f"{len(check.leaks)} field(s) of the release depend on the rows outside a charged mechanism"
        if check.leaks
        else "no leak: every field that differs is a mechanism output, a random id or the date"
    )
    print(
        f"neighbour check of {args.release}: {verdict} ({allowed} explained difference(s)); "
        f"report in {Path(args.output) / 'neighbours.md'} (custodian-only)"
    )
    return 1 if check.leaks else 0


def audit_cmd(args: argparse.Namespace) -> int:
    """Run the audit flow and print its verdict."""
    from pydantic import ValidationError

    from privsynth_core.errors import ConfigError
    from privsynth_core.privacy.audit import AuditConfig

    from .generate_cmd import parse_param_items

    if args.release:
        if args.data or args.generator or args.epsilon is not None:
            raise ConfigError(
                "--release checks a published run: give RUN_DIR and -o only (the "
                "data, generator and epsilon are the run's)"
            )
        return release_audit_cmd(args)
    if not args.data or not args.generator or args.epsilon is None:
        raise ConfigError(
            "the membership audit needs DATA, --generator and --epsilon (or use "
            "--release RUN_DIR to check a published run's release)"
        )

    try:
        config = AuditConfig(
            input=args.data,
            schema_path=args.schema,
            generator=args.generator,
            params=parse_param_items(args.param),
            epsilon=args.epsilon,
            delta=args.delta,
            accountant=args.accountant,
            canaries=args.canaries,
            runs=args.runs,
            crafted_fraction=args.crafted_fraction,
            guess_fraction=args.guess_fraction,
            rows=args.rows,
            seed=args.seed,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid audit settings: {problems}") from None
    from privsynth_core.privacy.audit import check_config

    check_config(config)  # fail fast, before Prefect starts
    from privsynth_flows.audit import audit
    from privsynth_flows.runtime import prefect_session

    flow = audit
    runner = _task_runner(args)
    if runner is not None:
        flow = audit.with_options(task_runner=runner)
    with prefect_session():
        output = flow(config, args.output, overwrite=args.overwrite)
    result = output.result
    verdict = "REFUTED (privacy bug)" if result.refuted else "not refuted"
    print(f"generator          {result.generator}")
    print(f"claimed            epsilon={result.claimed_epsilon:g} delta={result.claimed_delta:.3g}")
    print(f"lower bound (95%)  {result.epsilon_lower_bound:.3f}  -> {verdict}")
    print(
        f"ceiling            {result.ceiling:.3f} ({result.guesses} guesses on "
        f"{result.canaries_total} canaries; {result.ceiling_all_guessed:.3f} if all guessed)"
    )
    print(f"attack AUC         {result.auc:.3f}  ({result.correct}/{result.guesses} right)")
    print(
        f"written to         {output.output_dir} (audit.json, roc.png, summary.md; custodian-only)"
    )
    return 0
