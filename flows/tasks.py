"""Prefect tasks: each one calls one function of :mod:`privsynth_core.pipeline` or ``runs``.

Tasks take and return small values (configs, paths, fingerprints, records), never DataFrames;
every step reads its input from a file and writes its output atomically.

- I/O tasks retry with backoff (``PRIVSYNTH_IO_RETRY_DELAYS``, seconds, default ``2,5,15``), on
  errors that a retry can cure: a file that is missing or unreadable right now, an OS error.
  A wrong schema, an unknown plugin or an exhausted budget fail at once.
- ``fit_model`` never retries by itself (a retry would spend the budget again) and is cached on
  (dataset fingerprint, fit hash of the config, seed, the domain's content) plus the task's
  source. The flow forces a refresh when the cached model directory is missing, so a cache hit
  always points at a model that exists. A hit costs no budget: the ledger is only charged
  inside the fit itself.
- ``resolve_domain`` is cached the same way: a DP domain is learned (and paid for) once per
  dataset and domain settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy

from privsynth_core import pipeline
from privsynth_core.errors import InputFileError, PrivsynthError
from privsynth_core.runs import RunResult, publish_run

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import State, TaskRun
    from prefect.context import TaskRunContext

    from privsynth_core.config import RunConfig
    from privsynth_core.evaluation import EvaluationResult
    from privsynth_core.pipeline import InputInfo

RETRY_DELAYS_ENV = "PRIVSYNTH_IO_RETRY_DELAYS"


def _retry_delays() -> list[float]:
    text = os.environ.get(RETRY_DELAYS_ENV, "2,5,15")
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PrivsynthError(f"{RETRY_DELAYS_ENV} must be comma-separated seconds, got {text!r}"
                             ) from None


def _transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry OS errors and unreadable inputs; never a user error that a retry cannot cure."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, InputFileError | OSError) or not isinstance(exc, PrivsynthError)


_DELAYS = _retry_delays()
IO: dict[str, Any] = {"retries": len(_DELAYS), "retry_delay_seconds": _DELAYS,
                      "retry_condition_fn": _transient}


def _domain_key(context: TaskRunContext, params: dict[str, Any]) -> str:
    return "domain-" + pipeline.domain_key(params["config"], params["fingerprint"])


def _fit_key(context: TaskRunContext, params: dict[str, Any]) -> str:
    # The model directory's name is this key, so the record and the directory go together.
    return "fit-" + pipeline.fit_key(params["config"], params["fingerprint"],
                                     params["schema_path"])


@task(**IO)
def load_input(config: RunConfig) -> InputInfo:
    """Read the private table: fingerprint, size, columns."""
    return pipeline.load_input(config)


@task(**IO)
def validate_input(config: RunConfig, fingerprint: str) -> list[str]:
    """Check the table against its schema (and that the holdout is not the table)."""
    pipeline.check_holdout(config, fingerprint)
    return pipeline.validate_input(config)


@task(retries=0, cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_domain_key),
      persist_result=True)
def resolve_domain(config: RunConfig, fingerprint: str, destination: str, run_id: str) -> str:
    """Fix the domain: declared public, or learned with DP (charged to the ledger)."""
    return str(pipeline.resolve_domain(config, destination, run_id=run_id))


@task(retries=0, cache_policy=TASK_SOURCE + CacheKeyFnPolicy(cache_key_fn=_fit_key),
      persist_result=True)
def fit_model(config: RunConfig, fingerprint: str, schema_path: str, model_dir: str,
              run_id: str, checkpoint_dir: str | None) -> str:
    """Train the generator (reserve, train, settle); never retried, cached on its inputs."""
    return str(pipeline.fit_model(config, schema_path, model_dir, run_id=run_id,
                                  checkpoint_dir=checkpoint_dir))


@task(**IO)
def sample_synthetic(model_dir: str, rows: int, seed: int, destination: str) -> str:
    """Sample the synthetic table from the saved model (post-processing: free)."""
    return str(pipeline.sample_synthetic(model_dir, rows, seed=seed, destination=destination))


@task(**IO)
def evaluate_metric(config: RunConfig, schema_path: str, synthetic_path: str, model_dir: str,
                    metric_id: str, required: bool) -> EvaluationResult:
    """One metric on real vs synthetic (computed on real data: not DP, custodian-only)."""
    return pipeline.evaluate_metric(config, schema_path, synthetic_path, model_dir, metric_id,
                                    required=required)


@task(**IO)
def write_report(config: RunConfig, schema_path: str, synthetic_path: str, model_dir: str,
                 parts: list[EvaluationResult], destination: str) -> str:
    """Write metrics.json and report.html (custodian-only)."""
    return str(pipeline.write_report(config, schema_path, synthetic_path, model_dir, parts,
                                     destination))


@task(**IO)
def publish(config: RunConfig, run_id: str, info: InputInfo, schema_path: str, model_dir: str,
            synthetic_path: str, report_dir: str, timings: dict[str, float]) -> RunResult:
    """Assemble the run directory atomically (manifest last)."""
    return publish_run(config, run_id=run_id, info=info, schema_path=Path(schema_path),
                       model_dir=Path(model_dir), synthetic_path=Path(synthetic_path),
                       report_dir=Path(report_dir), timings=timings)
