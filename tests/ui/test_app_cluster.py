"""The web app on an existing Dask cluster (``privsynth ui --dask-address``): the operator's
setting reaches every training's run configuration and the flow runs' tasks run on that
cluster (a real ``LocalCluster``, watched from its scheduler); no user can set it; a malformed
address is refused at start, an unreachable cluster refuses a training before anything is
written or charged. No browser, no web server: the page's handlers (``PageEvents``) and real
flow runs, executed in this thread (``InlineFlows``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from uihelpers import (
    adult_csv,
    as_upload,
    custodian,
    free_port,
    light_reports,
    prepare_source,
    settings_for,
)

from privsynth_core.errors import ConfigError
from privsynth_core.privacy.ledger import PrivacyLedger
from privsynth_flows import runtime
from privsynth_flows.served import InlineFlows
from privsynth_ui import data_handlers as data
from privsynth_ui import eval_handlers as evals
from privsynth_ui import run_handlers as runs
from privsynth_ui.cli import main
from privsynth_ui.events import PageEvents
from privsynth_ui.settings import DASK_ADDRESS_ENV, UISettings
from privsynth_ui.training import WebFlows
from privsynth_ui.workspace import DatasetRecord, Workspace


@pytest.fixture(scope="module", autouse=True)
def prefect_and_light_reports(prefect_env: dict[str, str]) -> Iterator[None]:
    """Flow runs report to the session's server; reports without their heavy sections."""
    with light_reports():
        yield


class Seen:
    """What the cluster's scheduler saw: the keys of the tasks its workers finished, and the
    clients that connected."""

    def __init__(self) -> None:
        self.finished: list[str] = []
        self.clients: list[str] = []

    def add_client(self, scheduler: Any, client: str) -> None:
        self.clients.append(client)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.finished.append(str(key))

    @staticmethod
    def names_of(keys: list[str]) -> set[str]:
        """The tasks' names (a key is ``<name>-<token>``)."""
        return {key.rsplit("-", 1)[0] for key in keys}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, Seen]]:
    """A real local Dask cluster (one worker of two threads, in this process) and what its
    scheduler saw."""
    from distributed import LocalCluster
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Plugin(Seen, SchedulerPlugin):
        pass

    plugin = Plugin()
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",  # an address the app accepts (inproc:// is one process's own)
        dashboard_address=None,
    ) as local:
        local.scheduler.add_plugin(plugin)
        yield local.scheduler_address, plugin


def _dataset(ws: Workspace, settings: UISettings, tmp_path: Path) -> DatasetRecord:
    csv = adult_csv(tmp_path / "adult.csv", n=600)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name=csv.name, holdout_share=0.2, exclude=""
    )
    prepare_source(ws, record)
    return record


def _train(events: PageEvents, ws: Workspace, dataset_id: str) -> Any:
    """A training as the page's Train button starts it, followed to its end."""
    for _ in events.train(ws, dataset_id, "independent", "{}", 0.5, 0.0, "rdp"):
        pass
    record = runs.latest_training(ws)
    assert record is not None
    return record


def test_the_apps_flow_runs_run_on_the_operators_cluster(
    tmp_path: Path, cluster: tuple[str, Seen]
) -> None:
    address, seen = cluster
    settings = settings_for(tmp_path, dask_address=address)
    ws = custodian(settings)
    record = _dataset(ws, settings, tmp_path)
    events = PageEvents(settings, WebFlows(settings, InlineFlows()))

    clients = len(seen.clients)
    run = _train(events, ws, record.dataset_id)
    assert run.status == "done", run.message
    # A web training computes no metric and reads one file, so it submits no task; its flow
    # run checked in with the cluster (tasks_on) as the page's handler did before it.
    assert len(seen.clients) >= clients + 2
    written = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    assert written["dask_address"] == address
    assert "dask_address" not in (run.params or {})
    spent = PrivacyLedger(settings.home / "ledger.sqlite").entries(record.key)

    # The evaluation's metrics fan out as tasks: the cluster's workers ran them.
    before = len(seen.finished)
    view = evals.evaluate(ws, run.run_id, target="income", flows=events.flows)
    assert (view.report_dir / "report.html").is_file()
    assert "evaluate_metric" in Seen.names_of(seen.finished[before:])

    # Where it runs is not part of the run: the same training on an app without the setting
    # reuses the model and charges nothing.
    plain = settings_for(tmp_path)
    again = _train(PageEvents(plain, WebFlows(plain, InlineFlows())), ws, record.dataset_id)
    assert again.status == "done", again.message
    assert yaml.safe_load(again.config_path.read_text(encoding="utf-8"))["dask_address"] is None
    assert "reused, nothing trained or charged now" in again.message
    assert PrivacyLedger(settings.home / "ledger.sqlite").entries(record.key) == spent

    # A cluster that goes away after a configuration was written: the flow run fails with
    # one clear message before it writes anything.
    gone = dict(written, dask_address=f"tcp://127.0.0.1:{free_port()}")
    gone["output_dir"] = str(tmp_path / "gone-run")
    config = tmp_path / "gone.yaml"
    config.write_text(yaml.safe_dump(gone), encoding="utf-8")
    flows = InlineFlows()
    state = flows.read(
        flows.submit(
            "synthesize",
            {"config_file": str(config), "home": str(settings.home)},
            run_name="gone",
        )
    )
    assert state.state == "FAILED"
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in state.message
    assert not (tmp_path / "gone-run").exists()
    assert PrivacyLedger(settings.home / "ledger.sqlite").entries(record.key) == spent


def test_no_user_can_choose_the_cluster(tmp_path: Path, cluster: tuple[str, Seen]) -> None:
    # Every endpoint of the page and the API is a PageEvents method: none takes an address.
    for name, method in inspect.getmembers(PageEvents, inspect.isfunction):
        for parameter in inspect.signature(method).parameters:
            assert "dask" not in parameter and "address" not in parameter, (name, parameter)
    # The generator's parameters are the only free-form settings a user sends: an address
    # among them is refused as what it is, an unknown parameter.
    settings = settings_for(tmp_path, dask_address=cluster[0])
    ws = custodian(settings)
    record = _dataset(ws, settings, tmp_path)
    events = PageEvents(settings, WebFlows(settings, InlineFlows()))
    with pytest.raises(ConfigError):
        for _ in events.train(
            ws,
            record.dataset_id,
            "independent",
            '{"dask_address": "tcp://elsewhere:8786"}',
            0.5,
            0.0,
            "rdp",
        ):
            pass
    assert runs.latest_training(ws) is None
    with pytest.raises(AttributeError):
        settings.dask_address = "tcp://elsewhere:8786"  # type: ignore[misc]


@pytest.mark.parametrize(
    "address", ["localhost:8786", "tcp://scheduler", "tcp://scheduler:port", "inproc://x"]
)
def test_a_malformed_address_is_refused_at_start(
    tmp_path: Path,
    address: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError, match="Dask scheduler address .* is not valid"):
        settings_for(tmp_path, dask_address=address)
    monkeypatch.setenv("PRIVSYNTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DASK_ADDRESS_ENV, address)
    with pytest.raises(ConfigError, match="is not valid"):
        UISettings.from_env()
    monkeypatch.delenv(DASK_ADDRESS_ENV)
    # The command refuses before it serves anything.
    assert main(["ui", "--dask-address", address]) == 2
    err = capsys.readouterr().err
    assert "privsynth: error: the Dask scheduler address" in err and "Traceback" not in err


def test_an_unreachable_cluster_refuses_a_training_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime, "CLUSTER_TIMEOUT", 2.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    settings = settings_for(tmp_path, dask_address=address)
    ws = custodian(settings)
    record = _dataset(ws, settings, tmp_path)
    files_before = sorted(ws.root.rglob("*"))
    events = PageEvents(settings, WebFlows(settings, InlineFlows()))
    with pytest.raises(ConfigError, match=f"cannot reach the Dask scheduler at {address}"):
        for _ in events.train(ws, record.dataset_id, "independent", "{}", 0.5, 0.0, "rdp"):
            pass
    assert runs.latest_training(ws) is None
    assert PrivacyLedger(settings.home / "ledger.sqlite").entries(record.key) == []
    assert sorted(ws.root.rglob("*")) == files_before
    assert "Traceback" not in caplog.text
