"""The web app's flow runs: every training, generation, evaluation and audit is a Prefect flow run.

The app triggers the flows ``privsynth run`` uses (``synthesize``, ``evaluate``, ``generate``,
``audit``), served by a Prefect runner in a subprocess of the app
(:class:`privsynth_flows.served.FlowService`): against the configured Prefect server
(``PREFECT_API_URL``; the page then links each run to Prefect's UI), else Prefect's local
server started for the app. A flow run's parameters are the user's workspace files (the run's
configuration file, its losses file) and the privsynth home of the shared ledger; its state,
task runs and training progress are read back from Prefect's API, so a run is found again,
with its true state, after a reload or a restart of the app.

Cancel is Prefect's: the run goes ``Cancelling`` and the runner kills its process. A training
cancelled after it reserved its budget keeps that reservation open in the ledger (the data was
read): never refunded, listed for a custodian to review and close. Stopping the app stops the
runner, which cancels the runs in flight.

Each user trains one run at a time, and the app at most ``max_trainings`` at once: counted from
Prefect's API (runs of the app's ``synthesize`` deployment that have not ended). Nothing here
imports Gradio.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import PrivsynthError
from privsynth_flows.served import FlowService, FlowServiceError, InlineFlows, RunView

if TYPE_CHECKING:
    from .settings import UISettings
    from .workspace import RunRecord, Workspace

log = logging.getLogger("privsynth.ui")
TAG = "privsynth-web"
#: Seconds between two looks at a training's flow run.
WATCH_SECONDS = 1.0


class BusyError(PrivsynthError, RuntimeError):
    """A training is already running for this user, or the server is at its limit."""


def service_name(settings: UISettings) -> str:
    """The name of the app's deployments: one per privsynth home."""
    return "privsynth-web-" + hashlib.sha256(str(settings.home).encode()).hexdigest()[:10]


class WebFlows:
    """The app's flow runs, over one :class:`~privsynth_flows.served.FlowService`.

    Args:
        settings: the operator's settings (home, ``max_trainings``).
        service: the served flows (default: this app's own, started on first use; its runner's
            output goes to ``<home>/logs/flow-runner.log``); :class:`InlineFlows` runs each
            flow in the caller's thread instead (no cancel: for checks that need one process).
    """

    def __init__(
        self, settings: UISettings, service: FlowService | InlineFlows | None = None
    ) -> None:
        self.settings = settings
        self.service: FlowService | InlineFlows = service or FlowService(
            service_name(settings), log_path=settings.home / "logs" / "flow-runner.log"
        )
        self._own = service is None

    def start_in_background(self) -> threading.Thread:
        """Start the runner (and a local Prefect server if none is configured) without
        waiting: the first training does not wait for it then."""

        def start() -> None:
            try:
                self.service.start()
            except Exception:
                log.exception("the flow runner did not start; flow runs will be refused")

        thread = threading.Thread(target=start, name="privsynth-flows-start", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop the runner if this app started it (runs in flight are cancelled)."""
        if self._own:
            self.service.stop()

    # -- flow runs ---------------------------------------------------------------------------

    def start_training(self, ws: Workspace, record: RunRecord) -> str:
        """Submit the run's ``synthesize`` flow run; return its id.

        Raises:
            BusyError: the user trains already, or the app is at its limit.
            FlowServiceError: the flows cannot be served.
        """
        self.service.start()
        mine = self.service.active("synthesize", tags=[TAG, user_tag(ws.user)])
        if mine:
            raise BusyError(
                f"you are already training (flow run {mine[0]}); wait for it or cancel it first"
            )
        running = self.service.active("synthesize", tags=[TAG])
        if len(running) >= self.settings.max_trainings:
            raise BusyError(
                f"the server is running {len(running)} trainings, its limit; try "
                f"again in a little while"
            )
        return str(
            self.service.submit(
                "synthesize",
                {
                    "config_file": str(record.config_path),
                    "home": str(ws.home),
                    "losses_file": str(record.losses_path),
                },
                run_name=f"{record.generator} · {ws.user} · {record.run_id}",
                tags=[TAG, user_tag(ws.user), f"run:{record.run_id}"],
            )
        )

    def run(
        self,
        ws: Workspace,
        flow: str,
        parameters: dict[str, Any],
        *,
        what: str,
        timeout: float = 3600,
        progress: Callable[[RunView, float], Any] | None = None,
    ) -> RunView:
        """Run a flow to its end (generate, evaluate, audit) and return its final state.

        ``progress`` is told the flow run's state and tasks, and the seconds since it was
        submitted, about once a second while it runs (the page says how far a long step is).

        Raises:
            FlowServiceError: the flows cannot be served, or the run did not complete (its
                state's message says why).
        """
        started = time.monotonic()
        flow_run = self.service.submit(
            flow,
            {**parameters, "home": str(ws.home)},
            run_name=f"{what} · {ws.user}",
            tags=[TAG, user_tag(ws.user)],
        )
        if progress is None:
            view = self.service.wait(flow_run, timeout=timeout)
        else:
            while True:
                view = self.read(flow_run)
                progress(view, time.monotonic() - started)
                if view.final or time.monotonic() - started > timeout:
                    break
                time.sleep(WATCH_SECONDS)
        if view.state != "COMPLETED":
            raise FlowServiceError(
                f"{what} did not complete ({view.state_name.lower()}"
                + (f": {view.message}" if view.message else "")
                + ")"
            )
        return view

    def follow(
        self,
        ws: Workspace,
        record: RunRecord,
        *,
        refresh: Callable[[Workspace, RunRecord, WebFlows, RunView | None], RunRecord],
    ) -> Iterator[tuple[RunRecord, RunView | None]]:
        """The training's record and flow run about once a second until the run has ended
        (``refresh`` brings the record up to date from the flow run's state), then once more."""
        while True:
            view = None
            if record.flow_run_id:
                try:
                    view = self.read(record.flow_run_id)
                except FlowServiceError:
                    if not record.finished_running:
                        raise
                    # An ended run's record says all there is; Prefect only adds its steps.
            record = refresh(ws, record, self, view)
            yield record, view
            if record.finished_running:
                return
            time.sleep(WATCH_SECONDS)

    def read(self, flow_run_id: str, *, details: bool = True) -> RunView:
        """A flow run's state now (and its tasks and progress).

        Raises:
            FlowServiceError: Prefect's API cannot be reached.
        """
        try:
            return self.service.read(flow_run_id, details=details)
        except FlowServiceError:
            raise
        except Exception as exc:  # httpx's, Prefect's: the server is down or unreachable
            raise FlowServiceError(
                f"cannot read flow run {flow_run_id} from the Prefect "
                f"server ({type(exc).__name__}: {exc}); try again when it "
                f"is back"
            ) from None

    def cancel(self, flow_run_id: str) -> None:
        """Cancel a flow run (Prefect's cancel: the runner kills it)."""
        self.service.cancel(flow_run_id)

    def ui_url(self, flow_run_id: str) -> str:
        """The flow run's page in Prefect's UI ("" without a configured server)."""
        return self.service.ui_url(flow_run_id) or ""


def user_tag(user: str) -> str:
    """The tag of a user's flow runs (to count their trainings)."""
    return f"user:{user}"


__all__ = ["BusyError", "FlowServiceError", "WebFlows", "service_name", "user_tag"]
