"""What reaches Prefect's server (logs, artifacts) carries paths and the release's guarantee,
never a count, value or hash of the private rows nor a metric computed on them: checked against
a real server's API."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import ADULT_SCHEMA_PATH, adult_frame
from privsynth_core.runs.config import run_config_from_dict
from privsynth_core.table import fingerprint_frame, read_frame

SECRET_AGE = "107"  # a value only one row holds (outside the bounds: clamped, and counted)
COUNT_NOTE = "1 value(s) outside the bounds"  # what conforming did, counted from the rows
SECRET_COUNTRY = "Atlantis"


# Block the heavy report sections (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("light_reports")


async def _server_text(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return "\n".join([log.message for log in logs] + [str(a.data) for a in artifacts])


def test_a_flow_run_logs_and_publishes_no_count_value_or_metric(
    prefect_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from privsynth_flows.synthesize import synthesize

    raw = adult_frame(600, seed=8).with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit(SECRET_AGE))
        .otherwise(pl.col("age"))
        .alias("age"),
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit(SECRET_COUNTRY))
        .otherwise(pl.col("native-country"))
        .alias("native-country"),
    )
    data = tmp_path / "adult.csv"
    raw.write_csv(data)
    PrivacyLedger().set_budget(fingerprint_frame(read_frame(data)), epsilon=5, delta=1e-4)
    config = run_config_from_dict(
        {
            "input": str(data),
            "schema_path": str(ADULT_SCHEMA_PATH),
            "generator": "independent",
            "epsilon": 1.0,
            "metrics": ["tvd"],
            "output_dir": str(tmp_path / "run"),
        }
    )
    from prefect_fixtures import _drain_prefect_workers

    # The run's own log lines at INFO (the session's Prefect runs at WARNING), so the check
    # below reads what a default server receives.
    flow_log = logging.getLogger("prefect.flow_runs")
    level = flow_log.level
    flow_log.setLevel(logging.INFO)
    try:
        state = synthesize(config, return_state=True)
    finally:
        flow_log.setLevel(level)
    result = state.result()
    _drain_prefect_workers()  # logs are sent in batches
    text = asyncio.run(_server_text(state.state_details.flow_run_id))
    # The log says where the custodian finds what conforming changed; the counts stay there.
    assert "validation.log (never sent to Prefect)" in text
    assert COUNT_NOTE not in text and "outside the bounds" not in text
    assert "End-to-end guarantee" in text  # and the artifact reached the server
    for secret in (SECRET_AGE, SECRET_COUNTRY, result.manifest["dataset"]["fingerprint"]):
        assert secret not in text, secret
    # No metric either: the headline values live only in the custodian's report.
    for row in result.headlines:
        if row["value"] is not None:
            assert f"{row['value']:.4g}" not in text, row["name"]
    # The custodian's own log has the counts and the examples.
    custodian_log = (result.custodian_dir / "validation.log").read_text()
    assert COUNT_NOTE in custodian_log and SECRET_AGE in custodian_log
