"""The ``synthesize`` flow (one run, start to finish) and the ``evaluate`` flow (re-score a run).

``synthesize`` = load -> validate -> domain -> fit -> sample -> evaluate -> report -> publish,
as thin tasks (:mod:`privsynth_flows.tasks`). Metrics fan out as parallel tasks on the flow's
task runner (threads, or a Dask cluster). The run directory appears atomically at the end
(:mod:`privsynth_core.runs`); a markdown artifact summarises the run in the Prefect UI. Runs of
one run directory take turns (:func:`privsynth_core.runs.claim_run_dir`), and identical fits are
trained and paid for once (:mod:`privsynth_core.store`).
"""

# No `from __future__ import annotations` here: Prefect validates flow parameters from the
# annotations, and a flow shipped to a Dask worker is pickled by value, so the annotations must
# be real objects, not names to resolve in a module the worker never imported.
import re
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from privsynth_core import pipeline
from privsynth_core.config import RunConfig
from privsynth_core.privacy.release import CUSTODIAN_DIR, RELEASE_DIR
from privsynth_core.runs import (
    CHECKPOINTS_DIR,
    NOT_DP_LABEL,
    VALIDATION_LOG,
    RunResult,
    begin_run,
    check_output_dir,
    claim_run_dir,
    custodian_manifest,
)
from privsynth_core.sweep import check_grid_budget

from . import tasks


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
        lines.append(f"**End-to-end guarantee of the release:** epsilon = "
                     f"{privacy['epsilon']:.6g}, delta = {privacy['delta']:.3g} "
                     f"({privacy['composition']}; {privacy['neighbours']})")
        lines += ["", "| part | mechanism | epsilon | delta |", "|---|---|---|---|"]
        for part in privacy["parts"]:
            lines.append(f"| {part['step']} | {part['mechanism']} | {part['epsilon']:.4g} | "
                         f"{part['delta']:.3g} |")
    else:
        lines.append("**NOT differentially private**: do not release these outputs.")
    lines += ["", f"Release (shareable): `{result.release_dir}`",
              f"Custodian folder ({NOT_DP_LABEL}; the metrics and report are there): "
              f"`{result.custodian_dir}`"]
    return "\n".join(lines)


def _evaluate_and_report(config: RunConfig, schema: str, synthetic: str, model: str,
                         destination: str) -> str:
    futures = [tasks.evaluate_metric.submit(config, schema, synthetic, model, metric_id,
                                            required)
               for metric_id, required in pipeline.metric_plan(config)]
    parts = [future.result() for future in futures]
    return tasks.write_report(config, schema, synthetic, model, parts, destination)


# retries=0 here and on the fit's task, whatever PREFECT_FLOWS_DEFAULT_RETRIES says: a retry
# of a flow that reserved budget must not train again (the model store refuses it anyway).
@flow(name="synthesize", log_prints=True, retries=0)
def synthesize(config: RunConfig, resume: bool = False) -> RunResult:
    """Run one synthesis: a DP synthetic table, its model, manifest, metrics and report.

    Args:
        config: the run configuration.
        resume: continue the interrupted run that was writing ``config.output_dir`` (its
            checkpoints and its open ledger reservation) instead of starting afresh.
    """
    logger = get_run_logger()
    check_output_dir(config)
    # One run at a time per run directory: a second one waits, then reuses the stored model.
    with claim_run_dir(config.output_dir):
        run_id, work = begin_run(config, resume=resume)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def tick(step: str) -> None:
            nonlocal clock
            timings[step], clock = time.perf_counter() - clock, time.perf_counter()

        info = tasks.load_input(config)
        tick("load")
        for note in tasks.validate_input(config, info.fingerprint, str(work / VALIDATION_LOG)):
            # A warning (values were clamped, read as missing or dropped), with counts only:
            # the values of the rows stay in the custodian's log.
            logger.warning(note)
        tick("validate")
        domain_dir = (pipeline.cache_dir() / "domains"
                      / pipeline.domain_key(config, info.fingerprint))
        if config.epsilon is not None and not resume:
            # Refuse a run the budget cannot cover before a DP domain is paid for in vain. (A
            # resumed fit continues under its own reservation, already counted.)
            check_grid_budget([config], fingerprint=info.fingerprint, schema_path=(
                domain_dir / pipeline.SCHEMA_FILE if pipeline.is_complete_domain(domain_dir)
                else None))
        schema = tasks.resolve_domain(config, str(domain_dir), run_id)
        tick("domain")
        model = tasks.fit_model(config, schema, run_id, str(work / CHECKPOINTS_DIR))
        tick("fit")
        synthetic = tasks.sample_synthetic(model, config.rows, config.seed,
                                           str(work / pipeline.SYNTHETIC_FILE))
        tick("sample")
        report = _evaluate_and_report(config, schema, synthetic, model, str(work / "report"))
        tick("evaluate+report")
        result = tasks.publish(config, run_id, info, schema, model, synthetic, report, timings)
    create_markdown_artifact(run_markdown(result), key=_artifact_key(config.label),
                             description=f"privsynth run {config.label} ({NOT_DP_LABEL})")
    return result


@flow(name="evaluate", log_prints=True)
def evaluate(run_dir: Path, metrics: list[str] | None = None) -> Path:
    """Re-score a published run against the real data, replacing its ``report/`` atomically.

    Args:
        run_dir: a run directory written by ``synthesize``.
        metrics: metric ids; default: those of the run's configuration.

    Returns:
        The report folder (custodian-only: NOT DP).
    """

    run_dir = Path(run_dir)
    data = dict(custodian_manifest(run_dir)["config"])
    if metrics is not None:
        data["metrics"] = metrics
    config = RunConfig.model_validate(data)
    model = str(run_dir / RELEASE_DIR / "model")
    schema = str(run_dir / CUSTODIAN_DIR / "schema.yaml")
    return Path(_evaluate_and_report(config, schema,
                                     str(run_dir / RELEASE_DIR / pipeline.SYNTHETIC_FILE),
                                     model, str(run_dir / CUSTODIAN_DIR / "report")))
