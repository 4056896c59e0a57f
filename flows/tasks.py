"""Prefect tasks: each one calls one function of :mod:`privsynth_core.runs.pipeline` or ``runs``.

Tasks take and return small values (configs, paths, fingerprints, records), never DataFrames;
every step reads its input from a file and writes its output atomically.

- I/O tasks retry with backoff (``PRIVSYNTH_IO_RETRY_DELAYS``, seconds, default ``2,5,15``), on
  errors that a retry can cure: a file that is missing or unreadable right now, an OS error.
  A wrong schema, an unknown plugin or an exhausted budget fail at once.
- ``resolve_domain`` and ``fit_model`` never retry (a retry could spend the budget again) and
  use no Prefect cache: whether a domain or a model is already paid for is decided by
  privsynth's own store and ledger (:func:`privsynth_core.runs.pipeline.fit_model`), so a fit is
  reused across flows, the CLI and another ``PREFECT_HOME`` alike, and no cache key derived
  from the data reaches Prefect's server. Should a runner run a fit again anyway (a retry
  setting, Dask rescheduling the task of a dead worker), the store refuses it while the first
  attempt's reservation is open (:mod:`privsynth_core.store`).
- What a task logs (and so what reaches Prefect's server) is counts and paths, never a value
  of the private rows: details go to the run's custodian log. The fit's live progress is a
  progress artifact with units, steps and epsilon only (:mod:`privsynth_flows.progress`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task

from privsynth_core.errors import InputFileError, PrivsynthError
from privsynth_core.runs import pipeline
from privsynth_core.runs.rundir import RunResult, publish_run

from .runtime import partition_executor

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import State, TaskRun

    from privsynth_core.evaluation.results import EvaluationResult
    from privsynth_core.runs.config import RunConfig
    from privsynth_core.runs.pipeline import InputInfo

RETRY_DELAYS_ENV = "PRIVSYNTH_IO_RETRY_DELAYS"


def _retry_delays() -> list[float]:
    text = os.environ.get(RETRY_DELAYS_ENV, "2,5,15")
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PrivsynthError(
            f"{RETRY_DELAYS_ENV} must be comma-separated seconds, got {text!r}"
        ) from None


def _transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry OS errors and inputs missing or unreadable right now; never what is wrong in a
    file (damaged, not a table) or any other user error, which a retry cannot cure."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, InputFileError):
        return exc.retryable
    return isinstance(exc, OSError) or not isinstance(exc, PrivsynthError)


_DELAYS = _retry_delays()
IO: dict[str, Any] = {
    "retries": len(_DELAYS),
    "retry_delay_seconds": _DELAYS,
    "retry_condition_fn": _transient,
}


@task(**IO)
def load_input(config: RunConfig) -> InputInfo:
    """Read the private table: fingerprint, size, columns (a partitioned one on the cluster)."""
    with partition_executor(config.dask_address) as executor:
        return pipeline.load_input(config, executor=executor)


@task(**IO)
def validate_input(config: RunConfig, fingerprint: str, custodian_log: str) -> list[str]:
    """Check the table against its schema (and that the holdout is not the table); counts only
    come back, details go to ``custodian_log``."""
    pipeline.check_holdout(config, fingerprint)
    with partition_executor(config.dask_address) as executor:
        return pipeline.validate_input(config, custodian_log, executor=executor)


@task(retries=0)
def resolve_domain(config: RunConfig, destination: str, run_id: str) -> str:
    """Fix the domain: declared public, or learned with DP (charged once, then reused; a
    partitioned input's from counts taken on the cluster)."""
    with partition_executor(config.dask_address) as executor:
        return str(pipeline.resolve_domain(config, destination, run_id=run_id, executor=executor))


@task(retries=0)
def fit_model(
    config: RunConfig,
    schema_path: str,
    run_id: str,
    checkpoint_dir: str | None,
    losses_file: str | None = None,
) -> str:
    """Train the generator (reserve, train, settle), or reuse the stored model: never retried.

    Progress goes to a Prefect progress artifact (units, steps, epsilon: no loss); the losses,
    computed on the real rows, only to ``losses_file`` when one is given
    (:mod:`privsynth_flows.progress`). A partitioned input's counts are taken on the cluster
    at ``config.dask_address`` (a generator that fits from partitions); DP-SGD's rows are
    spooled to this process's disk (:mod:`privsynth_core.privacy.dpsgd_spool`).
    """
    from .progress import FitReporter

    reporter = FitReporter(config.epsilon, losses_file)
    # A partitioned input is counted on the cluster; only count vectors come back here.
    with partition_executor(config.dask_address) as executor:
        model = pipeline.fit_model(
            config,
            schema_path,
            run_id=run_id,
            checkpoint_dir=checkpoint_dir,
            progress=reporter,
            executor=executor,
        )
    reporter.finish()
    return str(model)


@task(**IO)
def sample_synthetic(model_dir: str, rows: int | None, seed: int, destination: str) -> str:
    """Sample the synthetic table from the saved model (post-processing: free)."""
    return str(pipeline.sample_synthetic(model_dir, rows, seed=seed, destination=destination))


@task(**IO)
def evaluate_metric(
    config: RunConfig,
    schema_path: str,
    synthetic_path: str,
    model_dir: str,
    metric_id: str,
    required: bool,
) -> EvaluationResult:
    """One metric on real vs synthetic (computed on real data: not DP, custodian-only)."""
    with partition_executor(config.dask_address) as executor:
        return pipeline.evaluate_metric(
            config,
            schema_path,
            synthetic_path,
            model_dir,
            metric_id,
            required=required,
            executor=executor,
        )


@task(**IO)
def write_report(
    config: RunConfig,
    schema_path: str,
    synthetic_path: str,
    model_dir: str,
    parts: list[EvaluationResult],
    destination: str,
) -> str:
    """Write metrics.json and report.html (custodian-only)."""
    with partition_executor(config.dask_address) as executor:
        return str(
            pipeline.write_report(
                config,
                schema_path,
                synthetic_path,
                model_dir,
                parts,
                destination,
                executor=executor,
            )
        )


@task(**IO)
def publish(
    config: RunConfig,
    run_id: str,
    info: InputInfo,
    schema_path: str,
    model_dir: str,
    synthetic_path: str,
    report_dir: str,
    timings: dict[str, float],
) -> RunResult:
    """Assemble the run directory atomically (manifest last)."""
    return publish_run(
        config,
        run_id=run_id,
        info=info,
        schema_path=Path(schema_path),
        model_dir=Path(model_dir),
        synthetic_path=Path(synthetic_path),
        report_dir=Path(report_dir),
        timings=timings,
    )
