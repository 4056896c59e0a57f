"""privsynth's flows served to an application: a Prefect runner in a subprocess, and its client.

An application that triggers runs (the web app) runs the same flows ``privsynth run`` uses,
as *deployments* served by a Prefect runner (:class:`prefect.runner.Runner`, what
``flow.serve`` uses) in a subprocess of its own (``python -m privsynth_flows.served NAME``):

- ``synthesize``, ``evaluate``, ``generate`` and ``audit`` are deployed as ``<flow>/NAME``
  (module-path entrypoints). :meth:`FlowService.submit` creates a flow run through the API
  (``Scheduled`` now); the runner polls every second (``PREFECT_RUNNER_POLL_FREQUENCY``), picks
  it up and executes it in a process of its own. Its state, task runs and progress artifact
  (:mod:`privsynth_flows.progress`) are read back from the API (:meth:`FlowService.read`).
- **Cancel** (:meth:`FlowService.cancel`, Prefect's UI, ``prefect flow-run cancel``) sets the
  run ``Cancelling``; the runner kills its process and marks it ``Cancelled`` (Prefect cancels
  only runs that a runner or worker executes: a flow called in a thread could not be stopped).
  What a training had reserved in the ledger stays reserved: the data was read, so the
  custodian reviews and closes it (:mod:`privsynth_core.store`).
- **Stop**: the runner reads its standard input and stops when that closes, which happens when
  the application stops it (:meth:`FlowService.stop`) and when the application dies however it
  dies (the OS closes the pipe). It cancels every run in flight first (``Cancelled``: "Runner is
  shutting down."). Prefect 3.8.8's own SIGTERM handler leaves them ``Running`` (its stop is
  never awaited), so SIGTERM is routed to the same graceful stop, and the runner has a session
  of its own (a Ctrl-C in the application's terminal reaches the application only).
- **Restart**: a service that starts marks ``Crashed`` every run of its deployments still
  ``Pending``, ``Running`` or ``Cancelling`` (their runner is gone with the machine or process
  that ran it; nothing else executes them); ``Scheduled`` runs are left for the new runner.

The Prefect server is the configured one (``PREFECT_API_URL``: its UI shows the runs, and
:meth:`FlowService.ui_url` links to them), else Prefect's local server, started in a subprocess
for the service's lifetime (its database in ``PREFECT_HOME``, so runs are found again after a
restart). One service per application and privsynth home: a run's parameters name the home whose
ledger and model store it uses, and the deployments' name is the service's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from privsynth_core.errors import PrivsynthError

from .progress import FitProgress, parse_progress

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

#: The flows an application may trigger, by name: ``module:function`` entrypoints.
FLOWS = {
    "synthesize": "privsynth_flows.synthesize:synthesize",
    "evaluate": "privsynth_flows.synthesize:evaluate",
    "generate": "privsynth_flows.synthesize:generate",
    "audit": "privsynth_flows.audit:audit",
}
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
ACTIVE = ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED")
_ORPHANED = ("PENDING", "RUNNING", "CANCELLING")
RUNNER_POLL_SECONDS = "1"


class FlowServiceError(PrivsynthError, RuntimeError):
    """The served flows are not available (the runner or the Prefect server did not start)."""


# -- the runner (its own process) --------------------------------------------------------------


def _flow(name: str) -> Any:
    import importlib

    module, function = FLOWS[name].split(":")
    return getattr(importlib.import_module(module), function)


async def _serve(name: str) -> None:
    """Serve the deployments ``<flow>/name`` until standard input closes (or SIGTERM)."""
    from prefect.runner import Runner
    from prefect.types.entrypoint import EntrypointType

    runner = Runner(name=f"privsynth-{name}", pause_on_shutdown=False)
    for flow_name in FLOWS:
        deployment = await _flow(flow_name).ato_deployment(
            name=name,
            entrypoint_type=EntrypointType.MODULE_PATH,
            tags=["privsynth"],
            description=f"privsynth's {flow_name} flow, served for the application {name}",
        )
        await runner.aadd_deployment(deployment)
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def watch_parent() -> None:
        try:
            sys.stdin.buffer.read()  # returns at EOF: the application closed the pipe, or died
        finally:
            loop.call_soon_threadsafe(closed.set)

    async def stop_when_asked() -> None:
        await asyncio.sleep(0)  # after Runner.start() installed its own SIGTERM handler
        loop.add_signal_handler(signal.SIGTERM, closed.set)
        await closed.wait()
        while not runner.started:  # asked to stop before start() got going
            await asyncio.sleep(0.05)
        await _let_ended_runs_exit(runner)
        await runner.astop()  # cancels the runs in flight, then ends start()

    threading.Thread(target=watch_parent, name="privsynth-parent", daemon=True).start()
    stopper = asyncio.create_task(stop_when_asked())
    await runner.start()
    stopper.cancel()


async def _let_ended_runs_exit(runner: Any, timeout: float = 30) -> None:
    """Wait (a little) for the processes of runs that have already ended to exit.

    The runner's stop cancels every run whose process it still tracks, and forces the state
    ``Cancelled``, even over a run that has just completed and whose process is exiting: its
    state would then no longer be true. (This reads the runner's process table, a Prefect 3.8
    internal: without it, this wait is skipped.)
    """
    table = getattr(runner, "_process_manager", None)
    if table is None or not hasattr(table, "flow_run_ids"):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = []
        for flow_run_id in table.flow_run_ids():
            state = (await runner._client.read_flow_run(flow_run_id)).state
            if state is not None and state.is_final():
                ended.append(flow_run_id)
        if not ended:
            return
        await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """``python -m privsynth_flows.served NAME``: serve the flows until stdin closes."""
    parser = argparse.ArgumentParser(
        prog="python -m privsynth_flows.served", description=__doc__.split("\n")[0]
    )
    parser.add_argument("name", help="the deployments' name (the application's service name)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.name))
    return 0


# -- the application's side --------------------------------------------------------------------


@dataclass
class RunView:
    """A flow run as the API reports it now.

    Attributes:
        flow_run_id: its id.
        state: the state type (``SCHEDULED``, ``RUNNING``, ``COMPLETED``, ``CANCELLED``, ...).
        state_name: the state's name (``Submitting``, ``Cancelling``, ...).
        message: the state's message (why it failed, was cancelled or crashed).
        tasks: (task name, state type) of its task runs, in the order they started.
        progress: the fit's progress, when the run trains (units, steps, epsilon).
    """

    flow_run_id: str
    state: str
    state_name: str
    message: str = ""
    tasks: list[tuple[str, str]] = field(default_factory=list)
    progress: FitProgress | None = None

    @property
    def final(self) -> bool:
        """Whether the run has ended (completed, failed, cancelled or crashed)."""
        return self.state in FINAL


def _api_url() -> str | None:
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


class FlowService:
    """The served flows of one application: starts and stops their runner, submits, reads and
    cancels flow runs.

    Args:
        name: the service name, the deployments' (``<flow>/name``); one per application and
            home (:meth:`start` marks the runs its previous runner left in flight ``Crashed``).
        log_path: where the runner and the runs' output go (default: this process's stderr).
        env: extra environment of the runner and its runs.
    """

    def __init__(
        self, name: str, *, log_path: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.env = dict(env or {})
        self._configured = _api_url()
        self._api_url = self._configured
        self._local: Any = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._deployments: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the runner is up."""
        return (
            self._process is not None
            and self._process.poll() is None
            and len(self._deployments) == len(FLOWS)
        )

    def start(self, timeout: float = 180) -> None:
        """Start the runner (and Prefect's local server if none is configured); return when its
        deployments are registered. Does nothing if it is up already.

        Raises:
            FlowServiceError: the runner or the server did not come up within ``timeout``.
        """
        with self._lock:
            if self.started:
                return
            self._stop_runner()
            if self._api_url is None:
                from prefect.server.api.server import SubprocessASGIServer
                from prefect.settings import PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings

                self._local = SubprocessASGIServer()
                # No usage telemetry from a server next to private data (as for a lone run's).
                with temporary_settings({PREFECT_SERVER_ANALYTICS_ENABLED: False}):
                    self._local.start(timeout=int(timeout))
                self._api_url = str(self._local.api_url)
            self.mark_orphans_crashed()
            env = {
                **os.environ,
                "PREFECT_API_URL": self._api_url,
                "PYTHONUNBUFFERED": "1",
                **self.env,
            }
            env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", RUNNER_POLL_SECONDS)
            if self.log_path is not None:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self._log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "privsynth_flows.served", self.name],
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=subprocess.STDOUT if self._log else None,
                env=env,
                start_new_session=True,
            )
            self._wait_for_deployments(timeout)

    def _wait_for_deployments(self, timeout: float) -> None:
        from prefect.exceptions import ObjectNotFound

        deadline = time.monotonic() + timeout
        found: dict[str, str] = {}
        with self.client() as client:
            while len(found) < len(FLOWS):
                assert self._process is not None
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self._stop_runner()
                    raise FlowServiceError(
                        f"the flow runner did not start (see {self.log_path or 'the log'}); "
                        f"flow runs cannot be started"
                    )
                for flow_name in FLOWS:
                    if flow_name in found:
                        continue
                    try:
                        found[flow_name] = str(
                            client.read_deployment_by_name(f"{flow_name}/{self.name}").id
                        )
                    except ObjectNotFound:
                        time.sleep(0.2)
        self._deployments = found

    def stop(self, timeout: float = 90) -> None:
        """Stop the runner (it cancels the runs in flight first), and the local server."""
        with self._lock:
            self._stop_runner(timeout)
            if self._local is not None:
                self._local.stop()
                self._local, self._api_url = None, self._configured

    def _stop_runner(self, timeout: float = 90) -> None:
        process, self._process = self._process, None
        self._deployments = {}
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # the runner's signal to stop
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def mark_orphans_crashed(self) -> list[str]:
        """Mark ``Crashed`` this service's runs left ``Pending``/``Running``/``Cancelling`` by a
        runner that is gone (call it before starting a runner); return their ids."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.states import Crashed

        with self.client() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[self.name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType(s) for s in _ORPHANED])
                    )
                ),
            )
            for run in runs:
                client.set_flow_run_state(
                    run.id,
                    Crashed(
                        message="the application that ran this flow run stopped while it was in "
                        "flight"
                    ),
                    force=True,
                )
        return [str(run.id) for run in runs]

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        """A Prefect API client of this service's server."""
        from prefect.client.orchestration import SyncPrefectClient
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

        if self._api_url is None:
            raise FlowServiceError("the flow service is not started")
        with SyncPrefectClient(
            self._api_url,
            auth_string=PREFECT_API_AUTH_STRING.value(),
            api_key=PREFECT_API_KEY.value(),
        ) as client:
            yield client

    # -- flow runs ---------------------------------------------------------------------------

    def submit(
        self,
        flow_name: str,
        parameters: dict[str, Any],
        *,
        run_name: str,
        tags: list[str] | None = None,
    ) -> str:
        """Create a flow run of the served ``flow_name`` (the runner starts it within about a
        second); return its id. Parameters are stored on the server: settings and paths only.

        Raises:
            FlowServiceError: the runner cannot be started.
        """
        self.start()
        with self.client() as client:
            run = client.create_flow_run_from_deployment(
                self._deployments[flow_name],  # type: ignore[arg-type]
                parameters=parameters,
                name=run_name,
                tags=tags or [],
            )
        return str(run.id)

    def read(self, flow_run_id: str, *, details: bool = True) -> RunView:
        """The flow run's state now; with ``details``, its task runs and progress too."""
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            ArtifactFilterType,
            FlowRunFilter,
            FlowRunFilterId,
        )

        with self.client() as client:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
            state = run.state
            view = RunView(
                flow_run_id,
                state.type.value if state else "SCHEDULED",
                (state.name or state.type.value.title()) if state else "Scheduled",
                _message(state.message if state else None),
            )
            if not details:
                return view
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            tasks.sort(key=lambda t: t.start_time or t.expected_start_time or t.created or 0)
            view.tasks = [
                (t.name.rsplit("-", 1)[0], t.state.type.value if t.state else "") for t in tasks
            ]
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]),
                    type=ArtifactFilterType(any_=["progress"]),
                )
            )
        for artifact in found:
            progress = parse_progress(artifact.description)
            if progress is not None:
                view.progress = progress
        return view

    def wait(self, flow_run_id: str, *, timeout: float = 600, poll: float = 0.5) -> RunView:
        """Wait for the flow run to end; its final state (or the state at ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            view = self.read(flow_run_id, details=False)
            if view.final or time.monotonic() > deadline:
                return view
            time.sleep(poll)

    def cancel(self, flow_run_id: str) -> None:
        """Cancel the flow run: ``Cancelling`` (the runner kills its process, then marks it
        ``Cancelled``), or ``Cancelled`` at once if it has not started yet."""
        from prefect.states import Cancelled, Cancelling

        with self.client() as client:
            run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
            state = run.state
            if state is None or state.is_final() or state.is_cancelling():
                return
            if state.is_scheduled():
                client.set_flow_run_state(
                    run.id, Cancelled(message="cancelled before it started"), force=True
                )
            else:
                client.set_flow_run_state(run.id, Cancelling(message="cancelled by the user"))

    def active(self, flow_name: str, *, tags: list[str] | None = None) -> list[str]:
        """The runs of the served ``flow_name`` that have not ended (with all ``tags``)."""
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        with self.client() as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[self.name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType(s) for s in ACTIVE])
                    ),
                    tags=FlowRunFilterTags(all_=tags) if tags else None,
                ),
            )
        return [str(run.id) for run in runs]

    def ui_url(self, flow_run_id: str) -> str | None:
        """The flow run's page in Prefect's UI, when the server is a configured one."""
        if not self._configured:
            return None
        base = os.environ.get("PREFECT_UI_URL") or self._configured.removesuffix("/")
        return f"{base.removesuffix('/api')}/runs/flow-run/{flow_run_id}"


class InlineFlows:
    """The same flows run in the calling thread, to their end: a stand-in for
    :class:`FlowService` where a runner cannot be used.

    Each :meth:`submit` is a real flow run (reported to the Prefect API this process uses), but
    it runs synchronously in the caller's process, so it **cannot be cancelled** and nothing is
    ever in flight afterwards. The neighbour check of the web app uses it: its coupling of
    mechanism outputs works within one process only (:mod:`privsynth_core.privacy.coupling`).
    """

    name = "inline"

    def __init__(self) -> None:
        self._views: dict[str, RunView] = {}

    def start(self, timeout: float = 0) -> None:
        """Nothing to start."""

    def stop(self, timeout: float = 0) -> None:
        """Nothing to stop."""

    def submit(
        self,
        flow_name: str,
        parameters: dict[str, Any],
        *,
        run_name: str,
        tags: list[str] | None = None,
    ) -> str:
        """Run the flow now, here; return its flow run's id (its state: :meth:`read`)."""
        flow = _flow(flow_name).with_options(flow_run_name=run_name)
        state = flow(**parameters, return_state=True)
        flow_run_id = str(state.state_details.flow_run_id)
        self._views[flow_run_id] = RunView(
            flow_run_id,
            state.type.value,
            state.name or state.type.value.title(),
            _message(state.message),
        )
        return flow_run_id

    def read(self, flow_run_id: str, *, details: bool = True) -> RunView:
        """The run's final state (it ended before :meth:`submit` returned)."""
        return self._views[flow_run_id]

    def wait(self, flow_run_id: str, *, timeout: float = 0, poll: float = 0) -> RunView:
        """The run's final state."""
        return self._views[flow_run_id]

    def cancel(self, flow_run_id: str) -> None:
        """Nothing to cancel: an inline run has ended when it is known."""

    def active(self, flow_name: str, *, tags: list[str] | None = None) -> list[str]:
        """None: an inline run has ended when it is known."""
        return []

    def ui_url(self, flow_run_id: str) -> str | None:
        """No link (the runs report to whatever API this process uses)."""
        return None


def _message(text: str | None) -> str:
    """A state's message without Prefect's wrapping (``Flow run encountered an exception:
    BudgetExceededError: ...``): privsynth's own errors say what to do."""
    text = text or ""
    for prefix in ("Flow run encountered an exception: ", "Task run encountered an exception: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            head, sep, rest = text.partition(": ")
            if sep and head.isidentifier():
                text = rest
    return text


__all__ = ["FLOWS", "FlowService", "FlowServiceError", "InlineFlows", "RunView", "main"]


if __name__ == "__main__":
    sys.exit(main())
