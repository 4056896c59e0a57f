"""Helpers of the browser-app tests: settings, accounts with roles, a data source a custodian
has prepared, a dataset with a trained run (a real flow run), a live server."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from privsynth_core.datasets import adult_frame
from privsynth_core.plugins import reset_plugins
from privsynth_core.registry import reset_registries
from privsynth_core.schema import Schema
from privsynth_flows.served import InlineFlows
from privsynth_ui import budget_handlers
from privsynth_ui import data_handlers as data
from privsynth_ui import domain_handlers as domain
from privsynth_ui import run_handlers as runs
from privsynth_ui.auth import CUSTODIAN
from privsynth_ui.settings import UISettings
from privsynth_ui.training import WebFlows
from privsynth_ui.workspace import DatasetRecord, RunRecord, Workspace

PASSWORD = "correct horse battery"
BUDGET = (5.0, 1e-4)


def adult_csv(path: Path, n: int = 2000, seed: int = 7) -> Path:
    """A seeded n-row sample of the embedded Adult table, as CSV."""
    adult_frame().sample(n, seed=seed).write_csv(path)
    return path


def settings_for(tmp_path: Path, **overrides: Any) -> UISettings:
    """Settings with a private home under ``tmp_path`` and no sign-in delay."""
    values: dict[str, Any] = {"home": tmp_path / "home", "failure_delay": 0.0}
    values.update(overrides)
    return UISettings(**values)


def as_upload(settings: UISettings, source: Path) -> Path:
    """Put ``source`` where Gradio's upload route would have put it."""
    folder = settings.cache_dir / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return Path(shutil.copy(source, folder / source.name))


def custodian(settings: UISettings, user: str = "cora") -> Workspace:
    """A custodian's workspace (the role the gate would read from the account)."""
    return Workspace(settings.home, user, role=CUSTODIAN)


def rows_of(record: DatasetRecord) -> list[list[Any]]:
    """The dataset's draft schema table as the page holds it (what a custodian sees)."""
    return domain.schema_rows(Schema.load(record.draft_schema_path))


def prepare_source(
    ws: Workspace, record: DatasetRecord, budget: tuple[float, float] | None = BUDGET
) -> None:
    """As a custodian: round public limits, declare the domain public (the rare categories
    checked), and set the data source's budget."""
    rounded = domain.use_round_limits(ws, record.dataset_id, rows_of(record))
    domain.set_domain(
        ws,
        record.dataset_id,
        domain.schema_rows(rounded),
        mode="public",
        epsilon=None,
        delta=None,
        accept_flagged=True,
    )
    if budget is not None:
        budget_handlers.set_budget(ws, record.dataset_id, *budget)


def inline_flows(ws: Workspace) -> WebFlows:
    """The web app's flow runs executed in this thread (:class:`InlineFlows`): real
    ``synthesize`` flow runs on the session's Prefect server, without a runner's start-up."""
    return WebFlows(UISettings(home=ws.home, failure_delay=0.0), InlineFlows())


def train_inline(
    ws: Workspace, record: DatasetRecord, epsilon: float = 0.5, flows: WebFlows | None = None
) -> RunRecord:
    """A finished ``independent`` run on the dataset (its ``synthesize`` flow run run to its
    end: in this thread, or by the given flows' runner)."""
    flows = flows or inline_flows(ws)
    plan = runs.check_training(ws, record.dataset_id, "independent", {}, epsilon, 0.0, "rdp")
    run = runs.train(ws, runs.new_run(ws, plan), flows)
    view = flows.service.wait(run.flow_run_id, timeout=600)
    return runs.refresh(ws, run, flows, view)


def trained_run(
    ws: Workspace,
    settings: UISettings,
    csv: Path,
    epsilon: float = 0.5,
    flows: WebFlows | None = None,
) -> tuple[DatasetRecord, RunRecord]:
    """An uploaded dataset with a finished ``independent`` run. A custodian (``ws`` itself if
    it is one) declares its source's domain public and gives it a budget first."""
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name=csv.name, holdout_share=0.2, exclude=""
    )
    if ws.is_custodian:
        prepare_source(ws, record)
    else:
        keeper = custodian(settings, "keeper")
        copy = data.add_uploaded(
            keeper, settings, as_upload(settings, csv), name=csv.name, holdout_share=0.2, exclude=""
        )
        assert copy.key == record.key
        prepare_source(keeper, copy)
    return record, train_inline(ws, record, epsilon, flows)


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    # Clients hold event streams open: do not wait long for them at shutdown.
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def sign_in(base: str, user: str, password: str = PASSWORD) -> dict[str, str]:
    """Sign in through the form; return the session cookie."""
    response = httpx.post(
        f"{base}/login", data={"username": user, "password": password, "next": "/app/"}
    )
    assert response.status_code == 303, response.text
    return dict(response.cookies)


def head_rows(path: Path, n: int) -> pl.DataFrame:
    """The first rows of a CSV file."""
    return pl.read_csv(path, n_rows=n, infer_schema=False)


def shows_only_the_released_size(text: str, ws: Workspace, record: DatasetRecord) -> bool:
    """``text`` gives the dataset's size as the released noisy count n̂ and never the exact
    row count, unless n̂ happens to equal it (the noise can be 0: a few percent of draws)."""
    n_hat = budget_handlers.noisy_rows(ws, record)
    exact = f" {record.rows:,} training rows"
    shows_n_hat = f"about {n_hat:,} training rows (released noisy count)" in text
    return n_hat is not None and shows_n_hat and (n_hat == record.rows or exact not in text)


@contextmanager
def light_reports() -> Iterator[None]:
    """Reports written in this process leave out their heavy sections (plots, Evidently) for
    the block: the flow runs a test module runs in its own thread (a served runner keeps its
    own plugins)."""
    saved = os.environ.get("PRIVSYNTH_DISABLED_PLUGINS")
    os.environ["PRIVSYNTH_DISABLED_PLUGINS"] = "evidently,report-plots"
    reset_plugins()
    reset_registries()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PRIVSYNTH_DISABLED_PLUGINS")
        else:
            os.environ["PRIVSYNTH_DISABLED_PLUGINS"] = saved
        reset_plugins()
        reset_registries()
