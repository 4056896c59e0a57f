"""The ``audit`` flow: an empirical privacy audit whose training runs fan out on the task runner.

check -> one ``audit_trial`` task per training run (parallel on the flow's task runner: a thread
pool, or a Dask cluster via :func:`privsynth_flows.runtime.make_task_runner`, as in the sweep)
-> pooled one-run bound -> ``audit.json``, ``roc.png``, ``summary.md`` -> markdown artifact.

Every trial trains on a canary-augmented copy of the private table, charged to a throwaway
ledger inside the task: the audit is a custodian-side test, and its models and samples are
discarded, never published (see :mod:`privsynth_core.privacy.audit`).
"""

# No `from __future__ import annotations`: Prefect validates flow parameters from the
# annotations, and a flow shipped to a Dask worker is pickled by value (see flows/sweep.py).
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from privsynth_core.privacy import audit as core_audit
from privsynth_core.privacy.audit import AuditConfig, AuditResult, TrialResult

from . import tasks
from .runtime import tasks_on, using_home
from .synthesize import _artifact_key


@dataclass
class AuditOutput:
    """A finished audit: its verdict and the directory holding its files."""

    result: AuditResult
    output_dir: Path


@task(retries=0)
def audit_trial(config: AuditConfig, index: int) -> TrialResult:
    """One training run on canary-augmented data, scored from its synthetic output only."""
    return core_audit.run_trial(config, index)


@task(**tasks.IO)
def write_audit(result: AuditResult, directory: str, overwrite: bool) -> str:
    """Write audit.json, roc.png and summary.md atomically (custodian-only outputs)."""
    return str(core_audit.write_audit(result, directory, overwrite=overwrite))


@flow(name="audit", log_prints=True)
def audit(
    config: AuditConfig,
    output_dir: str,
    overwrite: bool = False,
    home: Path | None = None,
    dask_address: str | None = None,
) -> AuditOutput:
    """Audit a generator's epsilon claim with canaries; write the report to ``output_dir``.

    ``home``: the privsynth home the run works in (default ``$PRIVSYNTH_HOME``; the trainings
    are charged to throwaway ledgers either way). ``dask_address``: an existing Dask cluster
    the trainings fan out on (:func:`privsynth_flows.runtime.tasks_on`), when the flow's task
    runner is threads (an application's served flow run); checked before anything is written.

    Raises:
        UnknownPluginError, ConfigError: the audit cannot run (nothing was trained).
    """
    with using_home(home), tasks_on(dask_address):
        return _audit(config, output_dir, overwrite)


def _audit(config: AuditConfig, output_dir: str, overwrite: bool) -> AuditOutput:
    core_audit.check_config(config)
    target = Path(output_dir)
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        from privsynth_core.errors import InputFileError

        raise InputFileError(
            f"output directory {target} already exists and is not empty; "
            f"choose another path or pass --overwrite"
        )
    futures = [audit_trial.submit(config, i) for i in range(config.runs)]
    trials = [future.result() for future in futures]
    result = core_audit.summarise(config, trials)
    write_audit(result, output_dir, overwrite)
    # The audit's trainings read the real rows and were charged to a throwaway ledger, so its
    # figures are custodian-only: the Prefect artifact and log say where they are, not what.
    create_markdown_artifact(
        f"# privsynth privacy audit of `{config.generator}`\n\nThe verdict, the lower bound "
        f"and the attack's figures are custodian-only (computed on the real data and its "
        f"canaries): `{target}` (audit.json, summary.md, roc.png).",
        key=_artifact_key(f"audit-{config.generator}-{target.name}"),
        description="privsynth privacy audit (custodian-only results not shown)",
    )
    print(f"audit of {config.generator} written to {target} (custodian-only)")
    return AuditOutput(result, target)
