"""The served flows of the session: a real Prefect runner in a subprocess, on the session's server.

``flow_service`` starts :class:`privsynth_flows.served.FlowService` once (``python -m
privsynth_flows.served``) against the server of ``prefect_env``, exactly as the web app starts
its own, and stops it at the end of the session. Each flow run names the privsynth home it uses
(a parameter), so every test's own home works with the one runner. The Evidently report
section is blocked in its flow runs (it takes most of a report's time; the report's other
sections are kept). Import the fixture into a test module or conftest to use it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from privsynth_flows.served import FlowService


@pytest.fixture(scope="session")
def flow_service(
    prefect_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowService]:
    """The session's flow runner (its output in ``flow-runner*/runner.log``)."""
    log = tmp_path_factory.mktemp("flow-runner") / "runner.log"
    service = FlowService(
        f"test-{uuid.uuid4().hex[:8]}",
        log_path=log,
        env={
            "PRIVSYNTH_DISABLED_PLUGINS": "evidently",
            "PRIVSYNTH_IO_RETRY_DELAYS": "0.2,0.4,0.8",
            "OMP_NUM_THREADS": "1",
        },
    )
    service.start()
    print(f"\nflow runner output: {log}")
    yield service
    service.stop()
