"""A real Prefect server for the session, shared by every test that runs flows.

The server (``prefect server start`` on a free localhost port) is started once, lazily, by the
first test that asks for ``prefect_env``, and every flow in the session reports to it: a lone
flow's temporary server cannot schedule deployments, and one shared server is cheaper than a
test harness plus a server. Flow-run heartbeats are off in this process (they cost about a
second per flow run); subprocesses inherit the server through the environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PREFECT_BIN = Path(sys.executable).parent / "prefect"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Prefect server on a free localhost port; yields the environment to reach it."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    server_env = {**os.environ, **env}
    server_env.pop("PREFECT_API_URL")
    log = open(home / "server.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
    proc = subprocess.Popen(
        [str(PREFECT_BIN), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not _healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(
                "prefect server did not start:\n"
                + (home / "server.log").read_text(errors="replace")[-3000:]
            )
        time.sleep(0.5)
    try:
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _drain_prefect_workers() -> None:
    """Send buffered logs and events before the server stops (as Prefect's test harness does);
    otherwise their workers retry a dead server for a minute at exit."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # never started
            pass
        events = EventsWorker.drain_all()
        if inspect.isawaitable(events):
            await events

    run_coro_as_sync(drain())


@pytest.fixture(scope="session")
def prefect_env(prefect_server: dict[str, str]) -> Iterator[dict[str, str]]:
    """This process talks to the session's server, heartbeats off, results in its home."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        PREFECT_LOGGING_LEVEL,
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        temporary_settings,
    )

    saved = {k: os.environ.get(k) for k in prefect_server}
    os.environ.update(prefect_server)
    home = Path(prefect_server["PREFECT_HOME"])
    with temporary_settings(
        {
            PREFECT_API_URL: prefect_server["PREFECT_API_URL"],
            PREFECT_HOME: home,
            PREFECT_RESULTS_LOCAL_STORAGE_PATH: home / "storage",
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_LEVEL: "WARNING",
        }
    ):
        yield prefect_server
        _drain_prefect_workers()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
