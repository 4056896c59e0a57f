"""The ``synthesize`` flow (one run, start to finish), the ``evaluate`` flow (re-score a run) and
the ``generate`` flow (draw more rows from a run's model).

``synthesize`` = load -> validate -> domain -> fit -> sample -> evaluate -> report -> publish,
as thin tasks (:mod:`privsynth_flows.tasks`). Metrics fan out as parallel tasks on the flow's
task runner (threads, or a Dask cluster). The run directory appears atomically at the end
(:mod:`privsynth_core.runs.rundir`); a markdown artifact summarises the run in the Prefect UI. Runs
of
one run directory take turns (:func:`privsynth_core.runs.rundir.claim_run_dir`), and identical fits
are
trained and paid for once (:mod:`privsynth_core.store`).

Every flow here takes an optional ``home``: the privsynth home (its ledger, model store and DP
domains) the run uses, for an application whose served flows run for several homes (the web
app: :mod:`privsynth_flows.served`). A flow run's parameters are stored on the Prefect server,
so they hold settings and paths only: an application passes a configuration *file*
(``config_file``) when the configuration holds more (a ledger key that is a content hash).
"""

# No `from __future__ import annotations` here: Prefect validates flow parameters from the
# annotations, and a flow shipped to a Dask worker is pickled by value, so the annotations must
# be real objects, not names to resolve in a module the worker never imported.
import re
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from privsynth_core.errors import ConfigError
from privsynth_core.privacy.release import CUSTODIAN_DIR, RELEASE_DIR
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import RunConfig, load_run_config
from privsynth_core.runs.rundir import (
    CHECKPOINTS_DIR,
    NOT_DP_LABEL,
    VALIDATION_LOG,
    RunResult,
    begin_run,
    check_output_dir,
    claim_run_dir,
    custodian_manifest,
)
from privsynth_core.runs.sweep import check_grid_budget

from . import tasks
from .runtime import partition_reading, tasks_on, using_home


def _artifact_key(label: str) -> str:
    return ("privsynth-" + re.sub(r"[^a-z0-9]+", "-", label.lower())).strip("-")[:100]


def run_markdown(result: RunResult) -> str:
    """The run's summary for the Prefect UI: the release's guarantee, its parts, where things are.

    Only what the release itself states: no metric, count or other figure computed on the real
    rows goes into an artifact (the report holds those, in the custodian folder).
    """
    privacy = result.release["privacy"]
    lines = [f"# privsynth run `{result.manifest['name']}`", ""]
    if result.release.get("differentially_private"):
        lines.append(
            f"**End-to-end guarantee of the release:** epsilon = "
            f"{privacy['epsilon']:.6g}, delta = {privacy['delta']:.3g} "
            f"({privacy['composition']}; {privacy['neighbours']})"
        )
        lines += ["", "| part | mechanism | epsilon | delta |", "|---|---|---|---|"]
        for part in privacy["parts"]:
            lines.append(
                f"| {part['step']} | {part['mechanism']} | {part['epsilon']:.4g} | "
                f"{part['delta']:.3g} |"
            )
    else:
        lines.append("**NOT differentially private**: do not release these outputs.")
    lines += [
        "",
        f"Release (shareable): `{result.release_dir}`",
        f"Custodian folder ({NOT_DP_LABEL}; the metrics and report are there): "
        f"`{result.custodian_dir}`",
    ]
    return "\n".join(lines)


def _evaluate_and_report(
    config: RunConfig, schema: str, synthetic: str, model: str, destination: str
) -> str:
    futures = [
        tasks.evaluate_metric.submit(config, schema, synthetic, model, metric_id, required)
        for metric_id, required in pipeline.metric_plan(config)
    ]
    parts = [future.result() for future in futures]
    return tasks.write_report(config, schema, synthetic, model, parts, destination)


# retries=0 here and on the fit's task, whatever PREFECT_FLOWS_DEFAULT_RETRIES says: a retry
# of a flow that reserved budget must not train again (the model store refuses it anyway).
@flow(name="synthesize", log_prints=True, retries=0)
def synthesize(
    config: RunConfig | None = None,
    resume: bool = False,
    config_file: Path | None = None,
    home: Path | None = None,
    losses_file: Path | None = None,
) -> RunResult:
    """Run one synthesis: a DP synthetic table, its model, manifest, metrics and report.

    Args:
        config: the run configuration (or give ``config_file``).
        resume: continue the interrupted run that was writing ``config.output_dir`` (its
            checkpoints and its open ledger reservation) instead of starting afresh.
        config_file: a run configuration file (YAML), read when the run starts.
        home: the privsynth home whose ledger and model store the run uses (default
            ``$PRIVSYNTH_HOME``).
        losses_file: where the fit appends its losses (computed on real rows: a custodian-side
            file; they never reach Prefect).

    Raises:
        ConfigError: neither or both of ``config`` and ``config_file`` given.
    """
    if (config is None) == (config_file is None):
        raise ConfigError("give the run configuration, or its file (config_file), not both")
    with using_home(home):
        return _synthesize(
            config or load_run_config(Path(str(config_file))),
            resume,
            None if losses_file is None else str(losses_file),
        )


def _synthesize(config: RunConfig, resume: bool, losses_file: str | None) -> RunResult:
    logger = get_run_logger()
    check_output_dir(config)
    # One run at a time per run directory: a second one waits, then reuses the stored model.
    # The tasks that read a partitioned input get `reading`: the configuration with the
    # cluster where they read it (partition_reading); the run's own record keeps the
    # configuration as given (a local cluster's address means nothing after the run). A
    # configuration that names a cluster sends the tasks there (tasks_on), checked before the
    # run directory is claimed: an unreachable cluster leaves nothing behind.
    with (
        tasks_on(config.dask_address),
        claim_run_dir(config.output_dir),
        partition_reading(config) as reading,
    ):
        run_id, work = begin_run(config, resume=resume)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def tick(step: str) -> None:
            nonlocal clock
            timings[step], clock = time.perf_counter() - clock, time.perf_counter()

        info = tasks.load_input(reading)
        tick("load")
        tasks.validate_input(reading, info.fingerprint, str(work / VALIDATION_LOG))
        # The same line whatever the rows hold: what conforming changed (counts, examples) is
        # derived from the rows outside any DP mechanism, so it stays in the custodian's file.
        logger.info(
            "the input was checked against its schema; what conforming changes, if "
            "anything, is in the run's %s/%s (never sent to Prefect)",
            CUSTODIAN_DIR,
            VALIDATION_LOG,
        )
        tick("validate")
        domain_dir = (
            pipeline.cache_dir() / "domains" / pipeline.domain_key(config, info.fingerprint)
        )
        if config.epsilon is not None and not resume:
            # Refuse a run the budget cannot cover before a DP domain is paid for in vain. (A
            # resumed fit continues under its own reservation, already counted.)
            check_grid_budget(
                [config],
                fingerprint=info.fingerprint,
                schema_path=(
                    domain_dir / pipeline.SCHEMA_FILE
                    if pipeline.is_complete_domain(domain_dir)
                    else None
                ),
            )
        schema = tasks.resolve_domain(reading, str(domain_dir), run_id)
        tick("domain")
        model = tasks.fit_model(reading, schema, run_id, str(work / CHECKPOINTS_DIR), losses_file)
        tick("fit")
        synthetic = tasks.sample_synthetic(
            model, config.rows, config.seed, str(work / pipeline.SYNTHETIC_FILE)
        )
        tick("sample")
        report = _evaluate_and_report(reading, schema, synthetic, model, str(work / "report"))
        tick("evaluate+report")
        result = tasks.publish(config, run_id, info, schema, model, synthetic, report, timings)
    create_markdown_artifact(
        run_markdown(result),
        key=_artifact_key(config.label),
        description=f"privsynth run {config.label} ({NOT_DP_LABEL})",
    )
    return result


@flow(name="evaluate", log_prints=True)
def evaluate(
    run_dir: Path,
    metrics: list[str] | None = None,
    target: str | None = None,
    synthetic: Path | None = None,
    all_metrics: bool = False,
    home: Path | None = None,
    dask_address: str | None = None,
) -> Path:
    """Re-score a published run against the real data, replacing its ``report/`` atomically.

    Args:
        run_dir: a run directory written by ``synthesize``.
        metrics: metric ids; default: those of the run's configuration.
        target: the column the utility metrics predict; default: the configuration's.
        synthetic: a table drawn from the run's model to score (default: the release's own).
        all_metrics: every registered metric whose inputs exist (the others are skipped),
            instead of ``metrics``.
        home: the privsynth home of the run's model store (default ``$PRIVSYNTH_HOME``).
        dask_address: the Dask cluster the metrics (and a partitioned input's sample) run on,
            in place of the one in the run's configuration; ``""``: none (where the run was
            trained is not where it must be scored: the web app passes its setting of now).

    Returns:
        The report folder (custodian-only: NOT DP).
    """

    run_dir = Path(run_dir)
    with using_home(home):
        data = dict(custodian_manifest(run_dir)["config"])
        if metrics is not None or all_metrics:
            data["metrics"] = None if all_metrics else metrics
        if target is not None:
            data["target"] = target
        if dask_address is not None:
            data["dask_address"] = dask_address or None
        config = RunConfig.model_validate(data)
        model = str(run_dir / RELEASE_DIR / "model")
        schema = str(run_dir / CUSTODIAN_DIR / "schema.yaml")
        table = synthetic or run_dir / RELEASE_DIR / pipeline.SYNTHETIC_FILE
        with tasks_on(config.dask_address), partition_reading(config) as reading:
            return Path(
                _evaluate_and_report(
                    reading, schema, str(table), model, str(run_dir / CUSTODIAN_DIR / "report")
                )
            )


@flow(name="generate", log_prints=True, retries=0)
def generate(
    model_dir: Path, rows: int | None, seed: int, destination: Path, home: Path | None = None
) -> Path:
    """Draw ``rows`` synthetic rows from a saved model into ``destination`` (CSV).

    Post-processing of the DP model: it reads no private data and spends nothing.

    Args:
        model_dir: the model (a run's ``release/model``).
        rows: how many (default: the released row count n̂ the model was fitted with).
        seed: seed of the sampling.
        destination: the CSV file to write (atomically).
        home: the privsynth home (default ``$PRIVSYNTH_HOME``).
    """
    with using_home(home):
        path = tasks.sample_synthetic(str(model_dir), rows, seed, str(destination))
    print(f"synthetic rows written to {path}")
    return Path(path)
