"""`privsynth run` fits MST (the ``privsynth-marginal`` plugin) from a partitioned input on a
Dask cluster (issue #19): the cells' fine counts and every marginal are counted there, one task
per partition, and only the sums come back to be noised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from flowhelpers import run_config

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import adult_schema
from privsynth_core.plugins import load_plugins, pm
from privsynth_core.privacy.count import COUNT_MECHANISM
from privsynth_core.privacy.release import RELEASE_DIR
from privsynth_core.registry import reset_registries
from privsynth_core.runs import pipeline
from privsynth_core.table import read_frame
from privsynth_ui.cli import main


@pytest.fixture
def marginal_plugin() -> Iterator[None]:
    """The ``privsynth-marginal`` distribution registered in this process (the main suite
    loads the built-ins only)."""
    privsynth_marginal = pytest.importorskip("privsynth_marginal")
    load_plugins()
    pm.register(privsynth_marginal, name="test-marginal")
    reset_registries()
    yield
    pm.unregister(name="test-marginal")
    reset_registries()


@pytest.mark.extended  # the claim's fast test: plugins/marginal/tests/test_partitioned_fit.py
def test_cli_run_fits_mst_from_the_partitions_on_a_cluster(
    prefect_env: dict[str, str],
    marginal_plugin: None,
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    from distributed import Client, LocalCluster

    frame = read_frame(adult_files["train"])
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(4):
        frame.slice(i * 500, 500).write_parquet(parts / f"part-{i}.parquet")
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            run_config(
                adult_files,
                tmp_path / "run",
                input=str(parts),
                source="parts",
                generator="mst",
                epsilon=1.0,
                delta=1e-6,
                params={"iters": 50},
                holdout=None,
                metrics=["tvd"],
                eval_sample_rows=500,
            )
        )
    )
    PrivacyLedger().set_budget("source:parts", epsilon=2.0, delta=1e-5)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,  # type: ignore[no-untyped-call]
            dashboard_address=None,
        ) as cluster,
        Client(cluster.scheduler_address, set_as_default=False) as client,  # type: ignore[no-untyped-call]
    ):
        before = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
        assert main(["run", str(path), "--dask-address", cluster.scheduler_address]) == 0
        after = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    # the flow's 8 tasks, and one task per partition for each pass: load, validate, the fit's
    # size, its cells' fine counts, its marginals, and the evaluation's and the report's row
    # counts (4 x 7 = 28; without the fit's two passes there, 8 + 20)
    assert after - before >= 8 + 28
    synthetic = read_frame(tmp_path / "run" / RELEASE_DIR / pipeline.SYNTHETIC_FILE)
    assert synthetic.columns == adult_schema().names and synthetic.height > 0
    entries = PrivacyLedger().entries("source:parts")
    assert [e.mechanism for e in entries] == [COUNT_MECHANISM, "mst training"]
    assert entries[1].status == "spent" and entries[1].epsilon == pytest.approx(1.0)
