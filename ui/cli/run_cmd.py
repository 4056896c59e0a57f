"""``privsynth run | deploy | sweep``: the Prefect flows from the command line.

- ``privsynth run CONFIG.yaml`` runs the ``synthesize`` flow once (on a temporary local Prefect
  server, or the server in ``PREFECT_API_URL``); ``--resume RUN_DIR`` continues an interrupted
  run; ``--task-runner dask`` runs the metric fan-out on a Dask cluster; ``--dask-address``
  (or ``dask_address:`` in the config) runs it on an existing cluster, where a partitioned
  input is read too.
- ``privsynth deploy CONFIG.yaml --cron "0 2 * * *"`` creates a scheduled deployment and serves
  it (or registers it on a work pool with ``--work-pool``).
- ``privsynth sweep SWEEP.yaml`` runs a grid of generators x epsilons x seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _runner_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task-runner",
        choices=("thread", "dask"),
        default="thread",
        help="where tasks run: threads of this process (default) or Dask",
    )
    parser.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        help="scheduler of an existing Dask cluster (tcp://host:8786; default "
        "the config's dask_address, then $PRIVSYNTH_DASK_ADDRESS; none: "
        "start a local cluster): tasks and partitioned inputs run there",
    )
    parser.add_argument(
        "--dask-workers",
        type=int,
        default=2,
        metavar="N",
        help="workers of the local Dask cluster (default 2)",
    )


def register(subparsers: Any) -> None:
    """Add the ``run``, ``deploy`` and ``sweep`` commands."""
    run = subparsers.add_parser(
        "run",
        help="run the synthesis pipeline from a config file (Prefect flow)",
        description="Load, validate, fix the domain, fit, sample, evaluate, report and publish a "
        "run directory, as a Prefect flow. Training is cached: running the same config again "
        "reuses the model and spends no budget.",
    )
    run.add_argument("config", nargs="?", help="run configuration (YAML); see docs/flows.md")
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the interrupted run that was writing RUN_DIR (from its last "
        "training checkpoint, with its accountant state restored)",
    )
    _runner_options(run)
    run.set_defaults(func=run_cmd)

    deploy = subparsers.add_parser(
        "deploy",
        help="schedule a run configuration (Prefect deployment)",
        description="Create a scheduled deployment of the synthesis flow for CONFIG and serve it "
        "from this process (until Ctrl-C), or register it on a work pool with --work-pool. Needs "
        "a Prefect server: `prefect server start`, then export PREFECT_API_URL.",
    )
    deploy.add_argument("config", help="run configuration (YAML)")
    when = deploy.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='cron schedule, e.g. "0 2 * * *" (02:00 every day)')
    when.add_argument("--interval", type=float, metavar="SECONDS", help="run every SECONDS")
    deploy.add_argument("--timezone", default="UTC", help="time zone of the schedule (UTC)")
    deploy.add_argument("--name", help="deployment name (default: the config's name)")
    deploy.add_argument(
        "--work-pool",
        metavar="POOL",
        help="register on this work pool instead of serving from this process",
    )
    deploy.set_defaults(func=deploy_cmd)

    sweep = subparsers.add_parser(
        "sweep",
        help="run a grid of generators x epsilons x seeds (Prefect flow)",
        description="Run one synthesis per grid cell over one dataset, after checking that the "
        "dataset's budget covers the whole grid; write summary.csv and privacy_utility.png.",
    )
    sweep.add_argument("config", help="sweep configuration (YAML); see docs/flows.md")
    _runner_options(sweep)
    sweep.set_defaults(func=sweep_cmd)


def _task_runner(args: argparse.Namespace, address: str | None = None) -> Any:
    """The flow's task runner: Dask on ``address`` (the flag's, else the run config's) whenever
    there is one, whatever ``--task-runner`` says; else as ``--task-runner`` says."""
    from privsynth_flows.runtime import make_task_runner

    address = args.dask_address or address
    kind = "dask" if address else args.task_runner
    return make_task_runner(kind, address=address, n_workers=args.dask_workers)


def print_run(result: Any) -> None:
    """Print where a run's outputs are, what it spent (end to end, with parts), its scores."""
    from privsynth_core.privacy.ledger import PrivacyLedger, budget_key
    from privsynth_core.runs.rundir import NOT_DP_LABEL

    release, manifest = result.release, result.manifest
    privacy = release["privacy"]
    print(f"\nrun directory: {result.run_dir}")
    print(f"  release/    {result.release_dir}   (shareable: synthetic.csv, model/, release.json)")
    print(f"  custodian/  {result.custodian_dir}   ({NOT_DP_LABEL}: manifest, report, logs)")
    print(f"  report      {result.report}")
    if release.get("differentially_private"):
        print(
            f"guarantee of the release, end to end: epsilon={privacy['epsilon']:.6g}, "
            f"delta={privacy['delta']:.3g}"
        )
        for part in privacy["parts"]:
            print(
                f"  {part['step']:<10} {part['mechanism']:<40} epsilon={part['epsilon']:.4g}  "
                f"delta={part['delta']:.3g}"
            )
        if manifest["fit"]["reused_from_store"]:
            print("  (the model was reused from the store: this run charged no training)")
    else:
        print("NOT differentially private: do not release these outputs")
    try:
        dataset = manifest["dataset"]
        status = PrivacyLedger().status(budget_key(dataset.get("source"), dataset["fingerprint"]))
        print(
            f"budget of {status.label or 'the dataset'}: spent {status.spent}, remaining "
            f"{status.remaining}"
        )
    except Exception:  # a non-DP run on a dataset with no budget: nothing to show
        pass
    if result.headlines:
        print(f"headline scores ({NOT_DP_LABEL}):")
        for row in result.headlines:
            value = "-" if row["value"] is None else f"{row['value']:.4g}"
            print(f"  {row['name']:<48} {value:>10}  {row['verdict']}")


def _say_chosen_generator(path: Path, config: Any) -> None:
    """When the configuration names no generator, say which one was chosen and why."""
    import yaml

    from privsynth_core.runs.config import chosen_generator

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and data.get("generator") in (None, ""):
        choice = chosen_generator(config.model_dump())
        if choice is not None:
            print(
                f"generator {choice.generator_id}: {choice.why}; `generator:` in the "
                f"configuration chooses another"
            )


def run_cmd(args: argparse.Namespace) -> int:
    """Run the synthesize flow."""
    from privsynth_core.errors import ConfigError
    from privsynth_core.runs.config import load_run_config
    from privsynth_core.runs.rundir import interrupted_config

    if args.config is None and args.resume is None:
        raise ConfigError(
            "give a run configuration (privsynth run CONFIG.yaml) or --resume RUN_DIR"
        )
    if args.resume is not None:
        config = interrupted_config(args.resume)
        if (
            args.config is not None
            and load_run_config(args.config).config_hash() != config.config_hash()
        ):
            raise ConfigError(
                f"{args.config} is not the configuration of the interrupted run "
                f"in {args.resume}; resume with --resume {args.resume} alone"
            )
    else:
        config = load_run_config(args.config)
        _say_chosen_generator(Path(args.config), config)
    from privsynth_flows.runtime import prefect_session
    from privsynth_flows.synthesize import synthesize

    if args.dask_address:
        # The flag wins over the file; where a run runs is not part of its hash (resume works).
        config = config.model_copy(update={"dask_address": args.dask_address})
    flow = synthesize
    runner = _task_runner(args, config.dask_address)
    if runner is not None:
        flow = synthesize.with_options(task_runner=runner)
    with prefect_session():
        result = flow(config, resume=args.resume is not None)
    print_run(result)
    return 0


def deploy_cmd(args: argparse.Namespace) -> int:
    """Create a scheduled deployment; serve it, or register it on a work pool."""
    from privsynth_core.runs.config import load_run_config
    from privsynth_flows.deploy import build_deployment, register, require_server, serve

    config = load_run_config(args.config)
    url = require_server()
    name = args.name or config.label
    deployment = build_deployment(
        config,
        name=name,
        cron=args.cron,
        interval=args.interval,
        timezone=args.timezone,
        work_pool=args.work_pool,
    )
    schedule = f"cron '{args.cron}'" if args.cron else f"every {args.interval:g} s"
    if args.work_pool:
        deployment_id = register(deployment, work_pool=args.work_pool)
        print(
            f"deployment synthesize/{name} ({deployment_id}) registered on work pool "
            f"{args.work_pool!r} at {url}, {schedule} ({args.timezone}); start a worker with "
            f"`prefect worker start --pool {args.work_pool}`"
        )
        return 0
    print(
        f"serving deployment synthesize/{name}, {schedule} ({args.timezone}), on {url}; "
        f"runs publish to {config.output_dir}. Stop with Ctrl-C.",
        flush=True,
    )
    serve(deployment)
    return 0


def sweep_cmd(args: argparse.Namespace) -> int:
    """Run the sweep flow."""
    from privsynth_core.runs.config import load_sweep_config
    from privsynth_flows.runtime import prefect_session
    from privsynth_flows.sweep import sweep

    config = load_sweep_config(args.config)
    flow = sweep
    runner = _task_runner(args)
    if runner is not None:
        flow = sweep.with_options(task_runner=runner)
    with prefect_session():
        result = flow(config)
    print(f"\nsweep directory: {Path(result.output_dir)}")
    print(f"  summary  {result.summary}   (computed on real data: not DP, custodian-only)")
    if result.plot is not None:
        print(f"  plot     {result.plot}")
    for run in result.runs:
        if run is not None:
            print(f"  run      {run.run_dir}  epsilon={run.epsilon}")
    sys.stdout.flush()
    return 0
