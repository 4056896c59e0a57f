"""Scheduled deployments of ``synthesize``: what ``privsynth deploy`` does.

A deployment is the ``synthesize`` flow with a fixed configuration (its parameters) and a
schedule (cron or interval). It is either **served** from the current process
(``flow.serve``: the process polls the server and runs each scheduled run in a subprocess), or
**registered** on a work pool, whose workers run it (``prefect worker start --pool POOL``).
``prefect.yaml`` in the repository root is the declarative equivalent (``prefect deploy``).

Schedules need a real Prefect server (``prefect server start``, or Prefect Cloud) named by
``PREFECT_API_URL``: the temporary server a lone flow run starts does not schedule anything.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from privsynth_core.errors import ConfigError
from privsynth_core.runs.config import RunConfig


def _schedule(cron: str | None, interval: float | None, timezone: str | None) -> Any:
    from prefect.schedules import Cron, Interval

    if (cron is None) == (interval is None):
        raise ConfigError(
            "give exactly one schedule: --cron 'MIN HOUR DOM MON DOW' or --interval SECONDS"
        )
    if cron is not None:
        try:
            return Cron(cron, timezone=timezone)
        except ValueError as exc:
            raise ConfigError(f"invalid cron expression {cron!r}: {exc}") from None
    assert interval is not None
    if interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval:g}")
    return Interval(timedelta(seconds=interval), timezone=timezone)


def require_server() -> str:
    """The API URL of the Prefect server that will schedule the runs.

    Raises:
        ConfigError: none is configured.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError(
            "scheduled runs need a Prefect server, and none is configured: start one with "
            "`prefect server start` and point privsynth at it with "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (or `prefect config set "
            "PREFECT_API_URL=...`); the temporary server of a single run never schedules runs"
        )
    return str(url)


def build_deployment(
    config: RunConfig,
    *,
    name: str,
    cron: str | None = None,
    interval: float | None = None,
    timezone: str | None = None,
    work_pool: str | None = None,
) -> Any:
    """The ``synthesize`` deployment for ``config`` (a ``RunnerDeployment``), not yet applied.

    The flow is referenced by module path (``privsynth_flows.synthesize.synthesize``), so any
    process or worker with privsynth installed can run it, whatever its working directory.
    """
    from prefect.types.entrypoint import EntrypointType

    from .synthesize import synthesize

    return synthesize.to_deployment(
        name=name,
        schedules=[_schedule(cron, interval, timezone)],
        parameters={"config": config.model_dump(mode="json")},
        description=f"privsynth: {config.generator} at epsilon={config.epsilon} on "
        f"{config.input.name}, published to {config.output_dir}",
        tags=["privsynth"],
        work_pool_name=work_pool,
        # One run at a time: runs of one config publish to the same run directory.
        concurrency_limit=1,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve(deployment: Any) -> None:
    """Serve the deployment from this process until interrupted (Ctrl-C)."""
    from prefect import serve as prefect_serve

    prefect_serve(deployment, print_starting_message=True)


def register(deployment: Any, *, work_pool: str) -> Any:
    """Register the deployment on a work pool; its workers run the scheduled runs.

    Returns:
        The deployment's id.
    """
    return deployment.apply(work_pool_name=work_pool)
