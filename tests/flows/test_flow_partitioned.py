"""A partitioned table on an existing Dask cluster (issue #19): read, checked and counted there,
the evaluation's sample drawn there, and `privsynth run --dask-address` fitting ``independent``
from the partitions on the cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from flowhelpers import run_config, set_budget

from privsynth_core import PrivacyLedger
from privsynth_core.datasets import adult_schema
from privsynth_core.errors import ConfigError
from privsynth_core.partitions import CountPlan, count_partitions
from privsynth_core.privacy.count import COUNT_MECHANISM, ensure_row_count
from privsynth_core.privacy.release import RELEASE_DIR, RELEASE_MANIFEST
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import run_config_from_dict
from privsynth_core.runs.rundir import run_pipeline
from privsynth_core.schema import ColumnKind, Schema
from privsynth_core.table import read_frame
from privsynth_flows import tasks
from privsynth_flows.runtime import partition_executor, partition_reading
from privsynth_ui.cli import main

PLAN = CountPlan(histogram_bins=16, domain=True)


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    """A real Dask cluster of 2 single-threaded workers (threads of this process: cheap to
    start), reached only through its scheduler address, as a user's existing cluster is."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,  # type: ignore[no-untyped-call]
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def parts(adult_files: dict[str, Path], tmp_path: Path) -> Path:
    """The 2,000-row Adult training file as 4 Parquet partitions."""
    frame = read_frame(adult_files["train"])
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(4):
        frame.slice(i * 500, 500).write_parquet(folder / f"part-{i}.parquet")
    return folder


def test_the_cluster_counts_a_partitioned_table_exactly_as_one_process_does(
    cluster_address: str,
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    config = run_config_from_dict(
        run_config(adult_files, tmp_path / "run", input=str(parts), dask_address=cluster_address)
    )
    info = tasks.load_input.fn(config)
    assert info.rows == 2000 and info.columns == tuple(read_frame(adult_files["train"]).columns)
    assert tasks.validate_input.fn(config, info.fingerprint, str(tmp_path / "validation.log")) == []
    here = count_partitions(parts, adult_schema(), plan=PLAN)
    with partition_executor(cluster_address) as executor:
        assert executor is not None
        there = count_partitions(parts, adult_schema(), plan=PLAN, executor=executor)
    assert there.fingerprint == here.fingerprint == info.fingerprint
    assert there.rows == here.rows
    for name, counts in here.histograms.items():
        assert np.array_equal(there.histograms[name], counts), name
    for name, counts in here.magnitudes.items():
        assert np.array_equal(there.magnitudes[name], counts), name
    assert there.categories == here.categories
    # n̂: the summed exact count goes through the row-count mechanism once, centrally
    ledger = PrivacyLedger()
    ledger.set_budget("source:parts", epsilon=1.0, delta=1e-5)
    count = ensure_row_count(
        ledger, "source:parts", extract=there.fingerprint, n_rows=there.rows, run_id="r"
    )
    assert [e.mechanism for e in ledger.entries("source:parts")] == [COUNT_MECHANISM]
    assert abs(count.value - there.rows) < 2000  # noise of scale 100 at epsilon 0.01


def test_a_fit_that_cannot_read_partitions_is_refused_before_anything_is_charged(
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    PrivacyLedger().set_budget("source:parts", epsilon=2.0, delta=1e-5)
    frame_only = run_config_from_dict(
        run_config(adult_files, tmp_path / "run", input=str(parts), source="parts")
        | {"generator": "ctgan", "epsilon": None}
    )
    with pytest.raises(
        ConfigError,
        match="generators that fit from partitions: (.*, )?dpctgan, dpwgan, (.*, )?independent",
    ):
        pipeline.fit_model(frame_only, adult_files["schema"], run_id="r")
    assert PrivacyLedger().entries("source:parts") == []


def test_a_dp_domain_and_a_fit_from_partitions_are_charged_as_on_one_machine(
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    config = run_config_from_dict(
        run_config(
            adult_files,
            tmp_path / "run",
            input=str(parts),
            source="parts",
            domain="dp",
            domain_epsilon=2.0,
        )
    )
    PrivacyLedger().set_budget("source:parts", epsilon=4.0, delta=1e-5)
    schema = pipeline.resolve_domain(config, tmp_path / "domain", run_id="r")
    learned = Schema.load(schema)
    assert learned.domain == "dp" and learned.names == adult_schema().names
    domain_entries = PrivacyLedger().entries("source:parts")
    # one entry per column that needs a domain (every one but the booleans), 2.0 in all
    needing = [c for c in adult_schema().columns if c.kind is not ColumnKind.BOOLEAN]
    assert len(domain_entries) == len(needing)
    assert sum(e.epsilon for e in domain_entries) == pytest.approx(2.0)
    model = pipeline.fit_model(config, schema, run_id="r")
    mechanisms = [e.mechanism for e in PrivacyLedger().entries("source:parts")]
    assert mechanisms[len(needing) :] == [COUNT_MECHANISM, "independent training"]
    statement = json.loads((model / "manifest.json").read_text())["privacy"]
    assert [p["step"] for p in statement["parts"]].count("domain") == len(needing)


@pytest.mark.extended  # the sample's claim: tests/core/test_partitions.py
def test_metrics_read_a_uniform_sample_of_the_stated_size_on_the_cluster(
    cluster_address: str,
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    set_budget(adult_files["train"], epsilon=2)
    result = run_pipeline(
        run_config_from_dict(
            run_config(adult_files, tmp_path / "run", metrics=["tvd"], holdout=None)
        )
    )
    model = str(result.release_dir / "model")
    synthetic = str(result.release_dir / pipeline.SYNTHETIC_FILE)
    config = run_config_from_dict(
        run_config(
            adult_files,
            tmp_path / "scored",
            input=str(parts),
            metrics=["tvd"],
            holdout=None,
            eval_sample_rows=600,
            dask_address=cluster_address,
        )
    )
    schema = str(adult_files["schema"])
    part = tasks.evaluate_metric.fn(config, schema, synthetic, model, "tvd", True)
    assert part.inputs["real_rows"] == 600
    report = Path(
        tasks.write_report.fn(config, schema, synthetic, model, [part], str(tmp_path / "report"))
    )
    inputs = json.loads((report / "metrics.json").read_text())["inputs"]
    assert inputs["real_rows"] == 600
    assert inputs["real_sample"] == {
        "rows": 600,
        "requested": 600,
        "partitions": 4,
        "population_rows": 2000,
        "uniform": True,
    }
    assert "a uniform sample of the 2,000 rows" in (report / "report.html").read_text()
    # the same seed draws the same sample: the report's figures can be reproduced
    first, _ = pipeline.real_rows(config)
    again, _ = pipeline.real_rows(config)
    assert first.equals(again) and first.height == 600
    assert first.join(read_frame(adult_files["train"]), on=first.columns, how="anti").height == 0


@pytest.mark.parametrize(
    "named_by",
    [
        # the variable alone with --task-runner dask: the tasks run on the cluster and read the
        # partitions there too (they were read in each task's process: issue #19)
        "environment",
        # the same claim, the cluster named by the flag (which sets the run's dask_address)
        pytest.param("flag", marks=pytest.mark.extended),
    ],
)
def test_cli_run_on_a_cluster_fits_independent_from_the_partitions_there(
    prefect_env: dict[str, str],
    cluster_address: str,
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    named_by: str,
) -> None:
    from distributed import Client

    from privsynth_flows.runtime import DASK_ADDRESS_ENV

    if named_by == "flag":
        monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
        options = ["--dask-address", cluster_address]
    else:
        monkeypatch.setenv(DASK_ADDRESS_ENV, cluster_address)
        options = ["--task-runner", "dask"]

    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            run_config(
                adult_files,
                tmp_path / "run",
                input=str(parts),
                source="parts",
                holdout=None,
                metrics=["tvd"],
                eval_sample_rows=500,
            )
        )
    )
    PrivacyLedger().set_budget("source:parts", epsilon=2.0, delta=1e-5)
    with Client(cluster_address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        before = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
        assert main(["run", str(path), *options]) == 0
        after = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    # the flow's 8 tasks, and one task per partition for each of: load, validate, the fit's
    # sizes, its histograms, and the evaluation's and the report's row counts (4 x 6 = 24)
    assert after - before >= 8 + 24
    synthetic = read_frame(tmp_path / "run" / RELEASE_DIR / pipeline.SYNTHETIC_FILE)
    assert synthetic.columns == adult_schema().names and synthetic.height > 0
    entries = PrivacyLedger().entries("source:parts")
    assert [e.mechanism for e in entries] == [COUNT_MECHANISM, "independent training"]
    assert entries[1].status == "spent" and entries[1].epsilon == pytest.approx(0.5)
    release = json.loads((tmp_path / "run" / RELEASE_DIR / RELEASE_MANIFEST).read_text())
    assert release["privacy"]["epsilon"] == pytest.approx(0.5 + entries[0].epsilon)


def test_cli_run_on_a_cluster_trains_dpwgan_from_the_partitions(
    prefect_env: dict[str, str],
    cluster_address: str,
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    # DP-SGD from partitions: the load and the row count on the cluster, then the Poisson
    # batches drawn in the fit's process from the rows spooled to its own disk
    path = tmp_path / "run.yaml"
    tiny = {"epochs": 1, "batch_size": 200, "generator_layers": "16:relu", "seed": 1}
    tiny |= {"critic_layers": "16:leaky_relu", "latent_dim": 8, "n_critic": 2}
    path.write_text(
        yaml.safe_dump(
            run_config(
                adult_files,
                tmp_path / "run",
                input=str(parts),
                source="parts",
                generator="dpwgan",
                epsilon=1.0,
                params=tiny,
                holdout=None,
                metrics=["tvd"],
                eval_sample_rows=500,
            )
        )
    )
    PrivacyLedger().set_budget("source:parts", epsilon=3.0, delta=1e-4)
    assert main(["run", str(path), "--dask-address", cluster_address]) == 0
    synthetic = read_frame(tmp_path / "run" / RELEASE_DIR / pipeline.SYNTHETIC_FILE)
    assert synthetic.columns == adult_schema().names and synthetic.height > 0
    entries = PrivacyLedger().entries("source:parts")
    assert [e.mechanism for e in entries] == [COUNT_MECHANISM, "dpwgan training"]
    assert entries[1].status == "spent" and 0 < entries[1].epsilon <= 1.0
    model = json.loads((tmp_path / "run" / RELEASE_DIR / "model" / "manifest.json").read_text())
    assert model["fit"]["steps"] > 0


@pytest.mark.parametrize(
    "processes",
    [
        # worker threads: the same cluster settings and path, without starting processes
        # (those take 10-50 s on the loaded 2-core CI machine)
        False,
        pytest.param(True, marks=pytest.mark.extended),
    ],
)
def test_a_partitioned_input_is_read_on_a_local_cluster_when_none_is_named(
    parts: Path,
    adult_files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    processes: bool,
) -> None:
    from distributed import Client

    from privsynth_flows import runtime

    monkeypatch.setitem(runtime.LOCAL_PARTITION_CLUSTER, "processes", processes)

    single = run_config_from_dict(run_config(adult_files, tmp_path / "run"))
    with partition_reading(single) as same:
        assert same is single  # a single file: no cluster
    config = run_config_from_dict(run_config(adult_files, tmp_path / "run", input=str(parts)))
    with partition_reading(config) as reading:
        assert reading.dask_address and reading.config_hash() == config.config_hash()
        with Client(reading.dask_address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            workers = list(client.scheduler_info()["workers"].values())
            # the stated local cluster: 2 worker processes of one thread, 2 GiB each
            assert [(w["nthreads"], w["memory_limit"]) for w in workers] == [(1, 2 * 1024**3)] * 2
            before = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
            info = tasks.load_input.fn(reading)
            after = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    assert info.rows == 2000 and after - before >= 4  # one task per partition, there


def _count_on_cluster(folder: str, address: str) -> int:
    """A task that reads partitions on its own cluster, as the flow's tasks do on a worker."""
    with partition_executor(address) as executor:
        return count_partitions(folder, adult_schema(), executor=executor).rows


@pytest.mark.extended  # the cluster's: test_cli_run_with_a_dask_address_reads_...
def test_tasks_on_every_worker_thread_waiting_for_partitions_do_not_deadlock(
    cluster_address: str,
    parts: Path,
) -> None:
    from distributed import Client

    # Two workers of one thread each, both busy with a task that waits for 4 partition tasks:
    # without seceding from the thread pool, nothing would be left to run the partitions.
    with Client(cluster_address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        futures = client.map(_count_on_cluster, [str(parts)] * 3, [cluster_address] * 3, pure=False)
        assert [f.result(timeout=120) for f in futures] == [2000] * 3


def test_a_dask_address_is_checked_and_left_out_of_the_run_hash(
    adult_files: dict[str, Path],
    tmp_path: Path,
) -> None:
    base = run_config(adult_files, tmp_path / "run")
    plain = run_config_from_dict(base)
    there = run_config_from_dict({**base, "dask_address": "tcp://10.0.0.5:8786"})
    assert plain.config_hash() == there.config_hash()
    with pytest.raises(Exception, match="dask_address"):
        run_config_from_dict({**base, "dask_address": "10.0.0.5"})
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        with partition_executor("tcp://127.0.0.1:9", timeout=2):
            pass
