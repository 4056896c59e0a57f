"""The browser app's handlers, called directly: data, schema, domain, budget, training, sampling,
evaluation, isolation between users, and the error gate. No browser, no server."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import pytest
from pydantic import Field
from uihelpers import adult_csv, as_upload, rows_of, settings_for, trained_run

from privsynth_core import FitSummary, Generator, GeneratorParams, hookimpl
from privsynth_core.errors import (
    BudgetExceededError,
    ConfigError,
    DomainError,
    InputFileError,
    SchemaError,
    UnknownPluginError,
)
from privsynth_core.plugins import pm
from privsynth_core.registry import generators, reset_registries
from privsynth_ui import data_handlers as data
from privsynth_ui import run_handlers as runs
from privsynth_ui.events import PageEvents
from privsynth_ui.forms import collect_params, field_specs
from privsynth_ui.gate import gated, gated_stream
from privsynth_ui.training import BusyError, TrainingJobs
from privsynth_ui.workspace import NotFoundError, Workspace


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return adult_csv(tmp_path_factory.mktemp("adult") / "adult2000.csv")


# -- forms ---------------------------------------------------------------------------------------


def test_every_generator_gets_a_form_whose_defaults_validate() -> None:
    for generator_id in generators().names():
        cls = generators().get(generator_id)
        specs = field_specs(cls.Params)
        assert [s.name for s in specs] == list(cls.Params.model_fields)
        params = collect_params(specs, [s.default for s in specs])
        assert cls.make_params(params) == cls.Params(), generator_id


def test_form_values_convert_and_the_model_keeps_its_rules() -> None:
    specs = {s.name: s for s in field_specs(generators().get("dpwgan").Params)}
    assert specs["sigma"].optional and specs["sigma"].kind == "float"
    assert specs["optimizer"].kind == "choice" and set(specs["optimizer"].choices) == {
        "rmsprop", "adam"}
    assert specs["generator_layers"].kind == "json"
    order = list(specs)

    def params(**changes: Any) -> dict[str, Any]:
        values = [changes.get(name, spec.default) for name, spec in specs.items()]
        return collect_params([specs[n] for n in order], values)

    assert params(sigma="")["sigma"] is None  # empty means "calibrate"
    assert params(sigma=" 2.5 ")["sigma"] == 2.5
    assert params(epochs=3.0)["epochs"] == 3 and isinstance(params(epochs=3.0)["epochs"], int)
    layers = params(generator_layers='[{"width": 32}]')["generator_layers"]
    assert layers == [{"width": 32}]
    cls = generators().get("dpwgan")
    # Text the JSON parser does not take goes to the model's own validators (compact syntax).
    assert cls.make_params(params(generator_layers="64:tanh")).generator_layers[0].width == 64
    with pytest.raises(ConfigError, match="sigma"):
        cls.make_params(params(sigma="-1"))
    with pytest.raises(ConfigError, match="fields but"):
        collect_params(list(specs.values()), [1])


class _ToyParams(GeneratorParams):
    """A third-party generator's parameters, of every kind a form must handle."""

    depth: int = Field(3, ge=1, le=9, description="how deep")
    rate: float | None = Field(None, gt=0, description="a rate")
    mode: Literal["fast", "exact"] = Field("fast", description="the mode")
    shuffle: bool = Field(True, description="shuffle first")
    tag: str = Field("x", description="a label")
    widths: list[int] = Field(default_factory=lambda: [8, 8], description="layer widths")


class _ToyGenerator(Generator):
    generator_id = "toy"
    description = "a toy generator from a third-party plugin"
    Params = _ToyParams

    def _fit(self, table: Any, *, budget: Any, accountant: str, progress: Any) -> FitSummary:
        raise NotImplementedError

    def _sample(self, n_rows: int, *, seed: int | None) -> Any:
        raise NotImplementedError

    def _save_state(self, directory: Path) -> None:
        raise NotImplementedError

    def _load_state(self, directory: Path) -> None:
        raise NotImplementedError


class _ToyPlugin:
    @hookimpl
    def register_generators(self, register: Callable[[type[Generator]], None]) -> None:
        """Contribute the toy generator."""
        register(_ToyGenerator)


def test_a_new_plugin_gets_a_dropdown_entry_and_a_form_with_no_ui_code(
        fresh_plugins: None, tmp_path: Path) -> None:
    from privsynth_core.plugins import load_plugins

    load_plugins()
    pm.register(_ToyPlugin(), name="toy-plugin")
    try:
        reset_registries()
        events = PageEvents(settings_for(tmp_path), TrainingJobs())
        assert "toy" in events.gen_ids
        kinds = {s.name: (s.kind, s.optional) for s in events.forms["toy"]}
        assert kinds == {"depth": ("int", False), "rate": ("float", True),
                         "mode": ("choice", False), "shuffle": ("bool", False),
                         "tag": ("text", False), "widths": ("json", False)}
        from privsynth_ui.app import build_demo

        demo = build_demo(settings_for(tmp_path))
        dropdown = next(b for b in demo.blocks.values()
                        if isinstance(b, gr.Dropdown) and b.label == "Generator")
        assert ("toy", "toy") in dropdown.choices
        labels = {b.label for b in demo.blocks.values() if hasattr(b, "label")}
        assert {"depth", "rate", "mode", "shuffle", "tag", "widths"} <= labels
    finally:
        pm.unregister(name="toy-plugin")
        reset_registries()


# -- data ----------------------------------------------------------------------------------------


def test_upload_limits_and_what_counts_as_an_upload(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path, max_upload_bytes=100_000)
    ws = Workspace(settings.home, "alice")
    upload = as_upload(settings, csv)
    with pytest.raises(InputFileError, match=r"over this server's limit of 0\.1 MB"):
        data.add_uploaded(ws, settings, upload, name="", holdout_share=0.2, exclude="")
    assert not upload.exists()  # private rows do not linger in the upload cache
    outside = tmp_path / "not-uploaded.csv"
    outside.write_bytes(csv.read_bytes()[:5000])
    with pytest.raises(InputFileError, match="not uploaded to this server"):
        data.add_uploaded(ws, settings, outside, name="", holdout_share=0.2, exclude="")
    assert outside.exists()  # refused, and certainly not deleted
    with pytest.raises(InputFileError, match="choose a CSV"):
        data.add_uploaded(ws, settings, None, name="", holdout_share=0.2, exclude="")
    assert ws.datasets() == []
    parquet = tmp_path / "small.parquet"
    import polars as pl

    pl.read_csv(csv, infer_schema=False).head(300).write_parquet(parquet)
    record = data.add_uploaded(ws, settings, as_upload(settings, parquet), name="",
                               holdout_share=0.0, exclude="")
    assert (record.name, record.rows, record.holdout_rows, record.holdout_path) == (
        "small.parquet", 300, 0, None)


def test_server_folders_list_tables_and_refuse_traversal(tmp_path: Path, csv: Path) -> None:
    folder = tmp_path / "shared"
    (folder / "sub").mkdir(parents=True)
    (folder / "adult.csv").write_bytes(csv.read_bytes())
    (folder / "sub" / "copy.csv").write_bytes(csv.read_bytes())
    (folder / "notes.txt").write_text("not a table")
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    os.symlink(secret, folder / "link.csv")
    settings = settings_for(tmp_path, data_dirs=(folder,))
    assert data.server_files(settings) == ["shared/adult.csv", "shared/sub/copy.csv"]
    for choice in ["../secret.csv", "shared/../secret.csv", "shared/../../etc/passwd",
                   str(secret), "/etc/passwd", "shared/link.csv", "other/adult.csv",
                   "shared/sub/../../secret.csv", "shared\\..\\secret.csv", "shared/"]:
        with pytest.raises(InputFileError, match="^refused: "):
            data.resolve_server_file(settings, choice)
    with pytest.raises(InputFileError, match="reads CSV"):
        data.resolve_server_file(settings, "shared/notes.txt")
    ws = Workspace(settings.home, "alice")
    record = data.add_server_file(ws, settings, "shared/sub/copy.csv", name="", holdout_share=0.2,
                                  exclude="")
    assert (record.rows, record.holdout_rows, record.source) == (
        1600, 400, "server: shared/sub/copy.csv")
    assert (folder / "sub" / "copy.csv").exists()
    small = settings_for(tmp_path, data_dirs=(folder,), max_upload_bytes=1000)
    with pytest.raises(InputFileError, match="over this server's limit"):
        data.add_server_file(ws, small, "shared/adult.csv", name="", holdout_share=0.2,
                             exclude="")


def test_schema_table_edits_round_trip_and_report_every_problem(tmp_path: Path,
                                                                csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = Workspace(settings.home, "alice")
    record = data.add_uploaded(ws, settings, as_upload(settings, csv), name="adult",
                               holdout_share=0.2, exclude="fnlwgt")
    schema = data.current_schema(record)
    assert schema.domain == "inferred" and "fnlwgt" not in schema.names
    rows = rows_of(record)
    assert data.rows_to_schema(rows, schema) == schema  # the table round-trips exactly
    edited = [[*r[:3], "18", "80", r[5]] if r[0] == "age" else r for r in rows
              if r[0] != "race"]
    saved = data.save_draft(ws, record.dataset_id, edited)
    assert saved.column("age").bounds == (18.0, 80.0)
    assert "race" not in saved.names
    assert {e.name for e in saved.excluded} == {"fnlwgt", "race"}
    bad = [["age", "integr", False, "1", "2", ""], ["hours-per-week", "integer", False, "x", "9",
                                                    ""], ["ssn", "integer", False, "", "", ""]]
    with pytest.raises(SchemaError) as caught:
        data.save_draft(ws, record.dataset_id, bad)
    assert len(caught.value.problems) == 3
    with pytest.raises(SchemaError, match="lower bound 9"):
        data.save_draft(ws, record.dataset_id, [["age", "integer", False, "9", "1", ""]])


def test_domain_public_costs_nothing_dp_is_charged(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = Workspace(settings.home, "alice")
    record = data.add_uploaded(ws, settings, as_upload(settings, csv), name="adult",
                               holdout_share=0.2, exclude="")
    status = ws.ledger.status(record.fingerprint)
    assert (status.budget.epsilon, status.budget.delta) == settings.default_budget
    public = data.set_domain(ws, record.dataset_id, rows_of(record), mode="public",
                             epsilon=None, delta=None)
    assert public.domain == "public" and data.current_schema(public).domain == "public"
    assert ws.ledger.entries(record.fingerprint) == []
    assert "fits in" in data.domain_cost_text(ws, record.dataset_id, "dp", 0.3, 1e-6)
    assert "does not fit" in data.domain_cost_text(ws, record.dataset_id, "dp", 50, 1e-6)
    with pytest.raises(BudgetExceededError):
        data.set_domain(ws, record.dataset_id, rows_of(record), mode="dp", epsilon=50.0,
                        delta=1e-6)
    assert ws.ledger.entries(record.fingerprint) == []  # refused before any charge
    with pytest.raises(DomainError, match=r"were charged ε = 0\.0\d+"):
        # 0.3 over 15 columns: a rare-enough category list fails after other columns paid.
        data.set_domain(ws, record.dataset_id, rows_of(record), mode="dp", epsilon=0.3,
                        delta=1e-6)
    failed = ws.ledger.status(record.fingerprint).spent.epsilon
    assert 0 < failed < 0.3
    learned = data.set_domain(ws, record.dataset_id, rows_of(record), mode="dp", epsilon=3.0,
                              delta=1e-6)
    assert learned.domain == "dp" and data.current_schema(learned).domain == "dp"
    spent = ws.ledger.status(record.fingerprint).spent
    assert spent.epsilon == pytest.approx(3.0 + failed)
    assert 1e-6 <= spent.delta <= 2e-6  # this attempt's δ, plus part of the failed one's
    # Editing the table afterwards unfixes the domain: it must be confirmed again.
    data.save_draft(ws, record.dataset_id, rows_of(ws.dataset(record.dataset_id)))
    assert ws.dataset(record.dataset_id).domain == ""


# -- training, sampling, evaluation ---------------------------------------------------------------


def test_training_requests_are_checked_and_priced_before_anything_runs(
        tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = Workspace(settings.home, "alice")
    record = data.add_uploaded(ws, settings, as_upload(settings, csv), name="adult",
                               holdout_share=0.2, exclude="")
    with pytest.raises(DomainError, match="not fixed yet"):
        runs.check_training(ws, record.dataset_id, "independent", {}, 1.0, 0.0, "rdp")
    data.set_domain(ws, record.dataset_id, rows_of(record), mode="public", epsilon=None,
                    delta=None)
    with pytest.raises(BudgetExceededError, match="only"):
        runs.check_training(ws, record.dataset_id, "independent", {}, 6.0, 0.0, "rdp")
    with pytest.raises(UnknownPluginError, match="available"):
        runs.check_training(ws, record.dataset_id, "nope", {}, 1.0, 0.0, "rdp")
    with pytest.raises(ConfigError, match="bins"):
        runs.check_training(ws, record.dataset_id, "independent", {"bins": 1}, 1.0, 0.0, "rdp")
    with pytest.raises(ConfigError, match="epsilon > 0"):
        runs.check_training(ws, record.dataset_id, "independent", {}, None, 0.0, "rdp")
    text = runs.plan_text(ws, record.dataset_id, "dpwgan", {"epochs": 3, "batch_size": 200},
                          1.0, 1e-5, "rdp")
    assert "reserves ε = 1, δ = 1e-05" in text and "24 critic steps" in text
    assert "noise multiplier σ ≈" in text
    assert "does not fit" in runs.plan_text(ws, record.dataset_id, "dpwgan", {}, 9.0, 1e-5,
                                            "rdp")
    assert "NOT differentially private" in runs.plan_text(ws, record.dataset_id, "ctgan", {},
                                                          None, None, "rdp")
    assert ws.runs() == [] and ws.ledger.entries(record.fingerprint) == []


def test_train_generate_evaluate(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = Workspace(settings.home, "alice")
    record, run = trained_run(ws, settings, csv, epsilon=0.5)
    assert (run.status, run.spent_epsilon, run.private) == ("done", 0.5, True)
    status = ws.ledger.status(record.fingerprint)
    assert status.spent.epsilon == pytest.approx(0.5)
    path, frame = runs.generate(ws, settings, run.run_id, 300, 3)
    again, frame2 = runs.generate(ws, settings, run.run_id, "300", 3.0)
    assert frame.height == 300 and frame.equals(frame2) and path == again
    assert ws.ledger.status(record.fingerprint).spent.epsilon == pytest.approx(0.5)  # free
    for rows, seed in ((0, 1), (2_000_000, 1), (10, -1), ("ten", 1), (1.5, 1)):
        with pytest.raises(ConfigError):
            runs.generate(ws, settings, run.run_id, rows, seed)
    assert runs.target_choices(ws, run.run_id)[0] == "income"
    view = runs.evaluate(ws, settings, run.run_id, target="income", quick=True)
    assert (view.report_dir / "report.html").is_file() and view.sample == path
    names = {row[0] for row in view.headlines}
    assert "DP guarantee (epsilon)" in names and any("TSTR" in n for n in names)
    assert view.groups["privacy"] and view.groups["utility"] and view.groups["fidelity"]
    assert view.distribution_plots and view.correlation_plots[0].name.startswith(
        "correlation_real")
    details = runs.run_details(ws, run.run_id)
    assert details["report"] and details["samples"] == [path.name]
    assert runs.run_rows(ws)[0][:1] == [run.run_id]
    runs.set_budget(ws, record.dataset_id, 4.0, 1e-4)
    with pytest.raises(BudgetExceededError):
        runs.set_budget(ws, record.dataset_id, 0.1, 1e-4)  # below what is spent


def test_cancelling_a_training_keeps_its_reservation_charged(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = Workspace(settings.home, "alice")
    record = data.add_uploaded(ws, settings, as_upload(settings, csv), name="adult",
                               holdout_share=0.2, exclude="")
    data.set_domain(ws, record.dataset_id, rows_of(record), mode="public", epsilon=None,
                    delta=None)
    plan = runs.check_training(ws, record.dataset_id, "dpwgan",
                               {"epochs": 500, "batch_size": 400}, 1.0, 1e-5, "rdp")
    jobs = TrainingJobs(max_running=1)
    run = runs.new_run(ws, plan)

    def finish(job: Any) -> None:
        if job.outcome != "done":
            runs.finish_run(ws, job.run, job.outcome, job.message)

    job = jobs.start("alice", run, lambda j: runs.train(ws, j.run, j.report), finish)
    with pytest.raises(BusyError, match="already training"):
        jobs.start("alice", run, lambda j: None, finish)
    with pytest.raises(BusyError, match="limit"):
        jobs.start("bob", run, lambda j: None, finish)
    deadline = time.monotonic() + 120
    while not job.history and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.history, "no progress report came"
    assert jobs.cancel("bob") is None and jobs.cancel("alice") is job
    assert job.finished.wait(120)
    assert job.outcome == "cancelled" and "keeps the run's whole reservation" in job.message
    assert ws.run(run.run_id).status == "cancelled"
    entries = ws.ledger.entries(record.fingerprint)
    assert [(e.status, e.epsilon) for e in entries] == [("reserved", 1.0)]
    assert job.history[-1].epoch < 500


# -- isolation and the gate ----------------------------------------------------------------------


def test_one_users_ids_are_not_found_in_another_users_workspace(tmp_path: Path,
                                                                csv: Path) -> None:
    settings = settings_for(tmp_path)
    alice = Workspace(settings.home, "alice")
    record, run = trained_run(alice, settings, csv)
    bob = Workspace(settings.home, "bob")
    for lookup, item in ((bob.run, run.run_id), (bob.dataset, record.dataset_id)):
        with pytest.raises(NotFoundError, match="not found"):
            lookup(item)
    for made_up in (f"../alice/runs/{run.run_id}", f"{run.run_id}/..", "0" * 17, "ABCDEF0123456789",
                    "", None, 12):
        with pytest.raises(NotFoundError):
            bob.run(made_up)
    assert bob.runs() == [] and bob.datasets() == [] and runs.budget_rows(bob) == []
    events = PageEvents(settings, TrainingJobs())
    for call in (lambda: events.generate(bob, run.run_id, 10, 0),
                 lambda: events.evaluate(bob, run.run_id, "income", True),
                 lambda: events.run_details(bob, run.run_id),
                 lambda: events.select_dataset(bob, record.dataset_id, None),
                 lambda: events.set_budget(bob, record.dataset_id, 100.0, 0.1)):
        with pytest.raises(NotFoundError):
            call()
    assert "not found" in events.on_load(bob, run.run_id)[1]
    assert "Opened run" in events.on_load(alice, run.run_id)[1]
    with pytest.raises(NotFoundError):
        Workspace(settings.home, "../alice")


def test_the_gate_takes_the_user_from_the_session_and_maps_errors(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def handler(ws: Workspace, value: str) -> str:
        seen.append(ws.user)
        if value == "user-error":
            raise ConfigError("a readable message")
        if value == "bug":
            raise ValueError("secret internals")
        return value

    wrapped = gated(tmp_path, handler)
    params = list(inspect.signature(wrapped).parameters.values())
    assert [p.name for p in params] == ["input_0", "request"]
    assert params[-1].annotation is gr.Request  # where Gradio puts the request
    assert wrapped("ok", gr.Request(username="alice")) == "ok" and seen == ["alice"]
    with pytest.raises(gr.Error, match="not signed in"):
        wrapped("ok", gr.Request(username=None))
    with pytest.raises(gr.Error, match="^'a readable message'$"):
        wrapped("user-error", gr.Request(username="alice"))
    with caplog.at_level(logging.ERROR, logger="privsynth.ui"), \
            pytest.raises(gr.Error) as caught:
        wrapped("bug", gr.Request(username="alice"))
    message = str(caught.value)
    assert "internal error" in message and "secret internals" not in message
    reference = message.split("internal error ")[1][:8]
    assert any(reference in r.getMessage() and r.exc_info for r in caplog.records)

    def stream(ws: Workspace) -> Any:
        yield ws.user
        raise DomainError("stopped")

    streamed = gated_stream(tmp_path, stream)(gr.Request(username="bob"))
    assert next(streamed) == "bob"
    with pytest.raises(gr.Error, match="stopped"):
        next(streamed)
