"""Partitioned server datasets in the web app (issue #19): a folder of Parquet partitions in an
operator's data folder is listed, picked and added without copying a row into the workspace;
its budget is its source's; a custodian fixes its domain through the partitions (declared, or
learned with DP from counts summed over them); an analyst trains on it and the flow run reads
the partitions on the operator's cluster (a real ``LocalCluster``); what cannot be done for it
is refused, saying so. And an analyst sees nothing exact that differs between two neighbouring
folders. No browser, no web server: the page's handlers and real flow runs in this thread."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml
from uihelpers import BUDGET, custodian, light_reports, prepare_source, rows_of, settings_for

from privsynth_core.datasets import adult_frame
from privsynth_core.errors import ConfigError, InputFileError
from privsynth_core.privacy.ledger import PrivacyLedger, budget_key
from privsynth_flows.served import InlineFlows
from privsynth_ui import budget_handlers, views
from privsynth_ui import data_handlers as data
from privsynth_ui import domain_handlers as domain
from privsynth_ui import eval_handlers as evals
from privsynth_ui import run_handlers as runs
from privsynth_ui.events import PageEvents
from privsynth_ui.partitioned import HOLDOUT_REFUSED, NOT_AVAILABLE
from privsynth_ui.settings import UISettings
from privsynth_ui.sources import server_source_id
from privsynth_ui.training import WebFlows
from privsynth_ui.workspace import DatasetRecord, RunRecord, Workspace

COLUMNS = ["age", "workclass", "education", "gender", "hours-per-week", "income"]


@pytest.fixture(scope="module", autouse=True)
def prefect_and_light_reports(prefect_env: dict[str, str]) -> Iterator[None]:
    """Flow runs report to the session's server; reports without their heavy sections."""
    with light_reports():
        yield


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A real local Dask cluster (one worker of two threads, in this process): the app's
    ``--dask-address``."""
    from distributed import LocalCluster

    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",  # an address the app accepts
        dashboard_address=None,
    ) as local:
        yield local.scheduler_address


def _frame(n: int = 900) -> pl.DataFrame:
    return adult_frame().sample(n, seed=11).select(COLUMNS)


def write_parts(folder: Path, frame: pl.DataFrame, parts: int = 3) -> Path:
    """``frame`` as ``parts`` Parquet files in ``folder`` (and a ``_SUCCESS`` marker, skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    size = -(-frame.height // parts)
    for i in range(parts):
        frame.slice(i * size, size).write_parquet(folder / f"part-{i}.parquet")
    (folder / "_SUCCESS").write_text("")
    return folder


def _settings(tmp_path: Path, shared: Path, address: str, home: str = "home") -> UISettings:
    return settings_for(tmp_path, home=tmp_path / home, data_dirs=(shared,), dask_address=address)


def _add(ws: Workspace, settings: UISettings, choice: str = "shared/events/") -> DatasetRecord:
    return data.add_server_file(ws, settings, choice, name="", holdout_share=0.0, exclude="")


def _train(
    settings: UISettings, ws: Workspace, dataset_id: str, generator: str = "independent"
) -> RunRecord:
    events = PageEvents(settings, WebFlows(settings, InlineFlows()))
    for _ in events.train(ws, dataset_id, generator, "{}", 0.5, 0.0, "rdp"):
        pass
    record = runs.latest_training(ws)
    assert record is not None
    return record


def test_a_partition_folder_is_added_in_place_and_an_analyst_trains_on_it(
    tmp_path: Path, cluster: str
) -> None:
    shared = tmp_path / "shared"
    folder = write_parts(shared / "events", _frame())
    (shared / "loose.csv").write_text("a,b\n1,2\n")
    settings = _settings(tmp_path, shared, cluster)
    # Listed like a file, the folder with a trailing "/"; its parts are tables of their own.
    listed = data.server_files(settings)
    assert "shared/events/" in listed and "shared/loose.csv" in listed

    cora = custodian(settings)
    record = _add(cora, settings)
    assert record.partitioned and Path(record.partitions) == folder.resolve()
    # No row is copied into the workspace: the record and the draft, nothing else.
    assert sorted(p.name for p in record.directory.iterdir()) == [
        "dataset.json",
        "schema.draft.yaml",
    ]
    assert record.holdout_path is None and not record.train_path.exists()
    # Its budget is the folder's source (derived from its place), as for a server file; its
    # content key is the partitioned multiset fingerprint.
    source = server_source_id("shared/events", folder.resolve())
    assert record.source == source and record.key == budget_key(source, "")
    assert record.rows == 900 and record.columns == COLUMNS
    # The custodian's page says the draft is a sample's.
    assert "inferred from a sample of 900 rows" in views.dataset_info(cora, record)

    # The custodian fixes the domain (declared public: checked against every partition on the
    # cluster) and sets the source's budget.
    prepare_source(cora, record)

    # An analyst adds the same folder (the same source, domain and budget) and trains on it.
    alice = Workspace(settings.home, "alice")
    mine = _add(alice, settings, "shared/./events")  # however spelled: the same source
    assert mine.key == record.key
    ledger = PrivacyLedger(settings.home / "ledger.sqlite")
    assert ledger.entries(record.key) == []
    run = _train(settings, alice, mine.dataset_id)
    assert run.status == "done", run.message
    config = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    assert config["input"] == str(folder.resolve()) and config["holdout"] is None
    assert config["dask_address"] == cluster
    assert (run.run_dir / "release" / "synthetic.csv").is_file()
    # Charged once: the released row count and the training, nothing else.
    spent = ledger.entries(record.key)
    assert [e.mechanism for e in spent if e.status == "spent"].count("row count") <= 1
    assert len(spent) == 2, [(e.mechanism, e.status) for e in spent]
    assert sum(e.epsilon for e in spent) <= 0.5 + BUDGET[0]
    # The same training again reuses the model and charges nothing.
    again = _train(settings, alice, mine.dataset_id)
    assert again.status == "done" and "reused" in again.message
    assert ledger.entries(record.key) == spent
    # The analyst's page gives the released noisy count, never the exact size.
    info = views.dataset_info(alice, mine)
    assert "900 training rows" not in info or budget_handlers.noisy_rows(alice, mine) == 900
    assert "sample" not in info

    # A generator that needs the whole table, and the audit, are refused, saying why.
    with pytest.raises(ConfigError, match=NOT_AVAILABLE):
        runs.check_training(cora, record.dataset_id, "ctgan", {}, None, None, "rdp")
    audited = _train(settings, cora, record.dataset_id)  # reused: charges nothing
    assert audited.status == "done" and ledger.entries(record.key) == spent
    flows = WebFlows(settings, InlineFlows())
    with pytest.raises(ConfigError, match=NOT_AVAILABLE):
        evals.audit(cora, audited.run_id, canaries=10, flows=flows)
    # The custodian's evaluation reads a sample of the partitions, as `privsynth run` does.
    view = evals.evaluate(cora, audited.run_id, target="income", flows=flows)
    metrics = json.loads((view.report_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["inputs"]["real_sample"]["partitions"] == 3


def test_a_dp_domain_is_learned_through_the_partitions(tmp_path: Path, cluster: str) -> None:
    shared = tmp_path / "shared"
    write_parts(shared / "events", _frame(900))
    settings = _settings(tmp_path, shared, cluster)
    cora = custodian(settings)
    # Few rows: a column of many rare categories would release none at this epsilon.
    record = data.add_server_file(
        cora, settings, "shared/events/", name="", holdout_share=0.0, exclude="education"
    )
    budget_handlers.set_budget(cora, record.dataset_id, *BUDGET)
    ledger = PrivacyLedger(settings.home / "ledger.sqlite")
    domain.set_domain(
        cora,
        record.dataset_id,
        rows_of(record),
        mode="dp",
        epsilon=1.0,
        delta=1e-6,
        dask_address=settings.dask_address,
    )
    state = domain.domain_of(cora, record)
    assert state.fixed and state.mode == "dp" and state.parts
    learned = ledger.entries(record.key)
    assert learned and abs(sum(e.epsilon for e in learned) - 1.0) < 1e-9
    # An analyst sees the DP domain only; training reuses it (charged once, never again).
    alice = Workspace(settings.home, "alice")
    mine = _add(alice, settings)
    assert domain.visible_schema(alice, mine) is not None
    run = _train(settings, alice, mine.dataset_id)
    assert run.status == "done", run.message
    assert any(p.get("step") == "domain" for p in run.privacy_parts)
    after = ledger.entries(record.key)
    assert after[: len(learned)] == learned and len(after) == len(learned) + 2


def test_holdout_traversal_and_changed_partitions_are_refused(tmp_path: Path, cluster: str) -> None:
    shared = tmp_path / "shared"
    folder = write_parts(shared / "events", _frame(300))
    outside = write_parts(tmp_path / "secret", _frame(300))
    os.symlink(outside, shared / "linked")
    leaky = shared / "leaky"
    leaky.mkdir()
    (leaky / "part-0.parquet").write_bytes((folder / "part-0.parquet").read_bytes())
    os.symlink(outside / "part-0.parquet", leaky / "part-1.parquet")
    settings = _settings(tmp_path, shared, cluster)
    # The folder with a part linked from outside is no table; its own file is one.
    assert data.server_files(settings) == ["shared/events/", "shared/leaky/part-0.parquet"]
    ws = custodian(settings)
    with pytest.raises(InputFileError) as refused:
        data.add_server_file(ws, settings, "shared/events/", name="", holdout_share=0.2, exclude="")
    assert str(refused.value) == HOLDOUT_REFUSED and "would copy the rows" in HOLDOUT_REFUSED
    # A part alone is refused: the folder is the table (and its budget).
    with pytest.raises(InputFileError, match="is a part of the partitioned table shared/events/"):
        data.resolve_server_file(settings, "shared/events/part-0.parquet")
    for choice in [
        "shared/../secret/",
        "shared/events/../../secret",
        str(outside),
        "shared/linked/",
        "shared/leaky/",
        "shared/",
        "other/events/",
    ]:
        with pytest.raises(InputFileError, match="^refused: "):
            data.resolve_server_file(settings, choice)
    assert not list(ws.datasets_dir.iterdir())

    # A column left out at Add comes back, inferred from the draft's sample again.
    record = data.add_server_file(
        ws, settings, "shared/events/", name="", holdout_share=0.0, exclude="education"
    )
    done = domain.include_column(
        ws, record.dataset_id, rows_of(record), "education", dask_address=settings.dask_address
    )
    assert "back in the draft as categorical" in done
    assert "education" in [row[0] for row in rows_of(record)]

    # Partitions rewritten after the add: the domain is refused (nothing charged).
    budget_handlers.set_budget(ws, record.dataset_id, *BUDGET)
    write_parts(folder, _frame(301))
    with pytest.raises(InputFileError, match="changed since the dataset was added"):
        domain.set_domain(
            ws,
            record.dataset_id,
            domain.schema_rows(domain.use_round_limits(ws, record.dataset_id, rows_of(record))),
            mode="public",
            epsilon=None,
            delta=None,
            accept_flagged=True,
            dask_address=settings.dask_address,
        )
    assert PrivacyLedger(settings.home / "ledger.sqlite").entries(record.key) == []


def _analyst_sees(tmp_path: Path, shared: Path, address: str, home: str) -> dict[str, Any]:
    """Everything an analyst is shown about a partitioned dataset they added, before and
    after a custodian prepared its source (ids and times taken out)."""
    settings = _settings(tmp_path, shared, address, home=home)
    alice = Workspace(settings.home, "alice")
    mine = _add(alice, settings)
    seen: dict[str, Any] = {"choices": data.server_files(settings)}

    def look(when: str) -> None:
        record = alice.dataset(mine.dataset_id)
        seen[when] = {
            "info": views.dataset_info(alice, record),
            "label": record.label(exact_size=False).replace(record.dataset_id[:6], "ID"),
            "schema": (
                None
                if (schema := domain.visible_schema(alice, record)) is None
                else schema.to_dict()
            ),
            "plan": runs.plan_text(alice, record.dataset_id, "independent", {}, 0.5, 0.0, "rdp"),
        }

    look("added")
    cora = custodian(settings)
    prepare_source(cora, _add(cora, settings))
    look("prepared")
    return seen


def test_an_analyst_sees_nothing_exact_that_differs_between_neighbouring_folders(
    tmp_path: Path, cluster: str
) -> None:
    shared = tmp_path / "shared"
    frame = _frame(600)
    # D and D plus one row, in the same place (the source id is the place's): one row added
    # to the last partition.
    write_parts(shared / "events", frame)
    d = _analyst_sees(tmp_path, shared, cluster, "home-d")
    write_parts(shared / "events", frame)
    last = shared / "events" / "part-2.parquet"
    # A copy of a row already there: the draft (read off every row of so small a table) is
    # the same, so the custodian declares the same domain for both.
    pl.concat([pl.read_parquet(last), frame.head(1)]).write_parquet(last)
    d_plus = _analyst_sees(tmp_path, shared, cluster, "home-d-plus")
    assert d == d_plus


def test_without_an_operators_cluster_a_local_one_reads_the_partitions(tmp_path: Path) -> None:
    # The app's default, as `privsynth run`'s: a local cluster started for the step.
    shared = tmp_path / "shared"
    write_parts(shared / "events", _frame(300))
    settings = settings_for(tmp_path, data_dirs=(shared,))
    assert settings.dask_address is None
    record = _add(custodian(settings), settings)
    assert record.partitioned and record.rows == 300
    assert sorted(p.name for p in record.directory.iterdir()) == [
        "dataset.json",
        "schema.draft.yaml",
    ]
