"""The browser app's handlers, called directly: data, schema, domain, budget, training, sampling,
evaluation, data sources shared by users, roles, isolation between users, and the error gate. No
browser, no web server: real SQLite ledger, real files, real generators, and every training,
generation and evaluation a real flow run on the session's Prefect server: executed by the
session's served runner (a subprocess, as in the app) where cancel, progress, reload and the
served flows are what is tested, and in this thread (``InlineFlows``) where only their
outcome is."""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import pytest
from pydantic import Field
from served_flows import flow_service as _session_runner
from uihelpers import (
    adult_csv,
    as_upload,
    custodian,
    inline_flows,
    light_reports,
    prepare_source,
    rows_of,
    settings_for,
    shows_only_the_released_size,
    train_inline,
    trained_run,
)

from privsynth_core import FitSummary, Generator, GeneratorParams, hookimpl
from privsynth_core.errors import (
    BudgetExceededError,
    BudgetNotSetError,
    ConfigError,
    DomainError,
    GeneratorError,
    InputFileError,
    SchemaError,
    UnknownPluginError,
)
from privsynth_core.plugins import pm, reset_plugins
from privsynth_core.registry import generators, reset_registries
from privsynth_flows.served import FlowService, InlineFlows
from privsynth_ui import budget_handlers as budget
from privsynth_ui import data_handlers as data
from privsynth_ui import domain_handlers as domain
from privsynth_ui import eval_handlers as evals
from privsynth_ui import run_handlers as runs
from privsynth_ui import views
from privsynth_ui.events import PageEvents
from privsynth_ui.forms import collect_params, field_specs
from privsynth_ui.gate import gated, gated_stream
from privsynth_ui.settings import UISettings
from privsynth_ui.training import BusyError, WebFlows
from privsynth_ui.workspace import NotFoundError, RoleError, Workspace

flow_service = _session_runner  # the session's served runner, as this module's fixture


@pytest.fixture(scope="module", autouse=True)
def prefect_and_light_reports(prefect_env: dict[str, str]) -> Iterator[None]:
    """Flow runs report to the session's server; those run in this thread write reports
    without their heavy sections (plots, Evidently): the served runner keeps the plots."""
    with light_reports():
        yield


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return adult_csv(tmp_path_factory.mktemp("adult") / "adult2000.csv")


def served(settings: UISettings, service: FlowService) -> WebFlows:
    """The app's flow runs, executed by the session's served runner."""
    return WebFlows(settings, service)


def _wait_until(condition: Callable[[], Any], timeout: float = 300, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


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
        "rmsprop",
        "adam",
    }
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

    def _fit(self, table: Any, *, budget: Any, progress: Any) -> FitSummary:
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
    fresh_plugins: None, tmp_path: Path
) -> None:
    from privsynth_core.plugins import load_plugins

    load_plugins()
    pm.register(_ToyPlugin(), name="toy-plugin")
    try:
        reset_registries()
        settings = settings_for(tmp_path)
        events = PageEvents(settings, WebFlows(settings, InlineFlows()))
        assert "toy" in events.gen_ids
        kinds = {s.name: (s.kind, s.optional) for s in events.forms["toy"]}
        assert kinds == {
            "depth": ("int", False),
            "rate": ("float", True),
            "mode": ("choice", False),
            "shuffle": ("bool", False),
            "tag": ("text", False),
            "widths": ("json", False),
        }
        from privsynth_ui.app import build_demo

        demo = build_demo(settings_for(tmp_path))
        dropdown = next(
            b for b in demo.blocks.values() if isinstance(b, gr.Dropdown) and b.label == "Generator"
        )
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
    record = data.add_uploaded(
        ws, settings, as_upload(settings, parquet), name="", holdout_share=0.0, exclude=""
    )
    assert (record.name, record.rows, record.holdout_rows, record.holdout_path) == (
        "small.parquet",
        300,
        0,
        None,
    )
    # A bare quote in the header: said so (it was "a header but no data rows"), and kept for
    # a retry once fixed.
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('age,"size,weight\n' + "1,2,3\n" * 20, encoding="utf-8")
    held = as_upload(settings, quoted)
    with pytest.raises(InputFileError, match=r"unbalanced double quote.*'\"size'") as refused:
        data.add_uploaded(ws, settings, held, name="", holdout_share=0.0, exclude="")
    assert "no data rows" not in str(refused.value) and held.exists()


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
    for choice in [
        "../secret.csv",
        "shared/../secret.csv",
        "shared/../../etc/passwd",
        str(secret),
        "/etc/passwd",
        "shared/link.csv",
        "other/adult.csv",
        "shared/sub/../../secret.csv",
        "shared\\..\\secret.csv",
        "shared/",
    ]:
        with pytest.raises(InputFileError, match="^refused: "):
            data.resolve_server_file(settings, choice)
    with pytest.raises(InputFileError, match="reads CSV"):
        data.resolve_server_file(settings, "shared/notes.txt")
    ws = Workspace(settings.home, "alice")
    record = data.add_server_file(
        ws, settings, "shared/sub/copy.csv", name="", holdout_share=0.2, exclude=""
    )
    assert record.rows + record.holdout_rows == 2000 and 300 < record.holdout_rows < 500
    assert record.origin == "server: shared/sub/copy.csv"
    assert record.source is not None and record.source.startswith("shared.sub.copy.csv-")
    assert (folder / "sub" / "copy.csv").exists()
    small = settings_for(tmp_path, data_dirs=(folder,), max_upload_bytes=1000)
    with pytest.raises(InputFileError, match="over this server's limit"):
        data.add_server_file(ws, small, "shared/adult.csv", name="", holdout_share=0.2, exclude="")


def test_schema_table_edits_round_trip_and_report_every_problem(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name="adult", holdout_share=0.2, exclude="fnlwgt"
    )
    schema = domain.visible_schema(ws, record)
    assert schema is not None
    assert schema.domain == "inferred" and "fnlwgt" not in schema.names
    rows = rows_of(record)
    assert domain.rows_to_schema(rows, schema) == schema  # the table round-trips exactly
    edited = [[*r[:3], "18", "80", r[5]] if r[0] == "age" else r for r in rows if r[0] != "race"]
    saved = domain.save_draft(ws, record.dataset_id, edited)
    assert saved.column("age").bounds == (18.0, 80.0)
    assert "race" not in saved.names
    assert {e.name for e in saved.excluded} == {"fnlwgt", "race"}
    bad = [
        ["age", "integr", False, "1", "2", ""],
        ["hours-per-week", "integer", False, "x", "9", ""],
        ["ssn", "integer", False, "", "", ""],
    ]
    with pytest.raises(SchemaError) as caught:
        domain.save_draft(ws, record.dataset_id, bad)
    assert len(caught.value.problems) == 3
    with pytest.raises(SchemaError, match="lower bound 9"):
        domain.save_draft(ws, record.dataset_id, [["age", "integer", False, "9", "1", ""]])
    # A column left out at Add (or by deleting its row) comes back from the page, with the
    # table's other edits, inferred again, with its review flags.
    events = PageEvents(settings, inline_flows(ws))
    table = domain.schema_rows(saved)
    assert set(events.left_out(ws, record.dataset_id)[0]["choices"]) == {"fnlwgt", "race"}
    done = domain.include_column(ws, record.dataset_id, table, "race")
    draft = domain.visible_schema(ws, record)
    assert draft is not None and "categorical" in done
    assert draft.column("race").categories and draft.column("age").bounds == (18.0, 80.0)
    assert draft.names.index("race") < draft.names.index("gender")  # in the file's order
    back = events.include_column(ws, record.dataset_id, domain.schema_rows(draft), "fnlwgt")
    draft = domain.visible_schema(ws, record)
    assert draft is not None and draft.column("fnlwgt").kind.value == "integer"
    assert "fnlwgt" in {f.column for f in draft.unresolved_review()}
    assert back[-1] == "" and back[-2]["choices"] == []  # nothing left out any more
    with pytest.raises(SchemaError, match="not a column left out"):
        domain.include_column(ws, record.dataset_id, table, "age")
    # Once the domain is fixed, a column left out needs a new domain: said, not done.
    trimmed = [r for r in domain.schema_rows(draft) if r[0] != "fnlwgt"]
    domain.save_draft(ws, record.dataset_id, trimmed)
    prepare_source(ws, record, budget=None)
    with pytest.raises(DomainError, match="needs a new domain"):
        domain.include_column(ws, record.dataset_id, rows_of(record), "fnlwgt")


def test_the_draft_shows_its_review_flags_and_round_limits_resolve_the_bounds(
    tmp_path: Path, csv: Path
) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name="adult", holdout_share=0.2, exclude=""
    )
    rows = {r[0]: r for r in rows_of(record)}
    assert rows["age"][6].startswith("⚠ bounds are the data's own min and max (round:")
    assert rows["workclass"][6].startswith("⚠ rare: ")
    assert "value(s) to review" in domain.review_text(domain.visible_schema(ws, record))
    with pytest.raises(DomainError, match="choose how to fix the domain"):
        domain.set_domain(
            ws, record.dataset_id, rows_of(record), mode=None, epsilon=None, delta=None
        )
    with pytest.raises(SchemaError, match="need a decision") as refused:
        domain.set_domain(
            ws, record.dataset_id, rows_of(record), mode="public", epsilon=None, delta=None
        )
    assert any("'age'" in p for p in refused.value.problems)
    assert not domain.domain_of(ws, record).fixed
    rounded = domain.use_round_limits(ws, record.dataset_id, rows_of(record))
    assert {f.issue for f in rounded.unresolved_review()} == {"rare_categories"}
    assert rounded.column("age").bounds == (10.0, 90.0)
    assert all("bounds" not in r[6] for r in domain.schema_rows(rounded))
    # Editing a rare category away resolves its flag too.
    edited = [
        [*r[:5], " | ".join(c for c in r[5].split(" | ") if c != "Without-pay"), r[6]]
        if r[0] == "workclass"
        else r
        for r in domain.schema_rows(rounded)
    ]
    saved = domain.save_draft(ws, record.dataset_id, edited)
    assert "workclass" not in {f.column for f in saved.unresolved_review()}
    with pytest.raises(SchemaError, match="need a decision"):
        domain.set_domain(ws, record.dataset_id, edited, mode="public", epsilon=None, delta=None)
    domain.set_domain(
        ws, record.dataset_id, edited, mode="public", epsilon=None, delta=None, accept_flagged=True
    )
    state = domain.domain_of(ws, record)
    assert (state.mode, state.fixed_by) == ("public", "cora") and state.fixed
    fixed = domain.visible_schema(ws, record)
    assert fixed is not None and fixed.domain == "public" and fixed.review == ()
    assert ws.ledger.entries(record.key) == []  # declaring public costs nothing


def test_a_dp_domain_is_charged_to_the_data_source(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name="adult", holdout_share=0.2, exclude=""
    )
    assert "No budget set yet" in domain.domain_cost_text(ws, record.dataset_id, "dp", 0.3, 1e-6)
    with pytest.raises(BudgetNotSetError, match="ask the data custodian"):
        domain.set_domain(
            ws, record.dataset_id, rows_of(record), mode="dp", epsilon=1.0, delta=1e-6
        )
    budget.set_budget(ws, record.dataset_id, 5.0, 1e-4)
    assert "fits in" in domain.domain_cost_text(ws, record.dataset_id, "dp", 0.3, 1e-6)
    assert "does not fit" in domain.domain_cost_text(ws, record.dataset_id, "dp", 50, 1e-6)
    with pytest.raises(BudgetExceededError):
        domain.set_domain(
            ws, record.dataset_id, rows_of(record), mode="dp", epsilon=50.0, delta=1e-6
        )
    assert ws.ledger.entries(record.key) == []  # refused before any charge
    with pytest.raises(DomainError, match=r"were charged ε = 0\.0\d+"):
        # 0.3 over 15 columns: a rare-enough category list fails after other columns paid.
        domain.set_domain(
            ws, record.dataset_id, rows_of(record), mode="dp", epsilon=0.3, delta=1e-6
        )
    failed = ws.ledger.status(record.key).spent.epsilon
    assert 0 < failed < 0.3
    domain.set_domain(ws, record.dataset_id, rows_of(record), mode="dp", epsilon=3.0, delta=1e-6)
    state = domain.domain_of(ws, record)
    assert (state.mode, state.epsilon) == ("dp", 3.0)
    assert sum(p["epsilon"] for p in state.parts) == pytest.approx(3.0)
    learned = domain.visible_schema(ws, record)
    assert learned is not None and learned.domain == "dp"
    spent = ws.ledger.status(record.key).spent
    assert spent.epsilon == pytest.approx(3.0 + failed)
    assert 1e-6 <= spent.delta <= 2e-6  # this attempt's δ, plus part of the failed one's
    # A release made with the DP domain states the domain's cost among its parts.
    run = train_inline(ws, record, epsilon=0.5)
    assert [p["step"] for p in run.privacy_parts].count("domain") == len(state.parts)
    assert run.spent_epsilon == pytest.approx(3.0 + 0.05 + 0.5)
    assert "domain 0.2 + " in runs.privacy_text(run) and "end to end" in runs.privacy_text(run)
    # Editing the draft afterwards unfixes the source's domain: it must be fixed again.
    domain.save_draft(ws, record.dataset_id, rows_of(ws.dataset(record.dataset_id)))
    assert not domain.domain_of(ws, record).fixed


def test_a_failed_dp_domain_keeps_the_domain_in_force_and_the_page_says_so(
    tmp_path: Path, csv: Path
) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name=csv.name, holdout_share=0.2, exclude=""
    )
    prepare_source(ws, record, budget=(1.0, 1e-5))
    before = domain.domain_of(ws, record)
    schema_before = before.schema_path.read_bytes()
    events = PageEvents(settings, inline_flows(ws))
    rows = domain.schema_rows(domain.visible_schema(ws, record))
    # Too little epsilon: 'workclass' has no category frequent enough to release, after two
    # columns were learned (and charged).
    table, info, review = events.fix_domain(ws, record.dataset_id, rows, "dp", 0.001, 1e-6, False)
    after = domain.domain_of(ws, record)
    assert (after.fixed, after.mode, after.fixed_by) == (True, "public", "cora")
    assert after.schema_path.read_bytes() == schema_before
    spent = ws.ledger.status(record.key).spent.epsilon
    assert 0 < spent < 0.001
    # The page: the budget as it is now, what failed, and which domain still holds.
    assert f"left ε = {1.0 - spent:.4g}" in info and "declared public by cora" in info
    assert "Learning the domain with DP failed" in review and "workclass" in review
    assert "The domain in force is unchanged: declared public by cora." in review
    assert table == views.Update()  # the edited table stays as typed: nothing changes
    runs.check_training(ws, record.dataset_id, "dpwgan", {}, 0.5, 1e-6, "rdp")  # still usable


# -- training, sampling, evaluation ---------------------------------------------------------------


def test_training_requests_are_checked_and_priced_before_anything_runs(
    tmp_path: Path, csv: Path
) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name="adult", holdout_share=0.2, exclude=""
    )
    with pytest.raises(DomainError, match="not fixed yet"):
        runs.check_training(ws, record.dataset_id, "independent", {}, 1.0, 0.0, "rdp")
    prepare_source(ws, record, budget=None)
    assert "No budget set yet" in runs.plan_text(
        ws, record.dataset_id, "dpwgan", {}, 1.0, 1e-5, "rdp"
    )
    with pytest.raises(BudgetNotSetError, match="ask the data custodian"):
        runs.check_training(ws, record.dataset_id, "independent", {}, 1.0, 0.0, "rdp")
    budget.set_budget(ws, record.dataset_id, 5.0, 1e-4)
    with pytest.raises(BudgetExceededError, match="only"):
        runs.check_training(ws, record.dataset_id, "independent", {}, 6.0, 0.0, "rdp")
    with pytest.raises(UnknownPluginError, match="available"):
        runs.check_training(ws, record.dataset_id, "nope", {}, 1.0, 0.0, "rdp")
    with pytest.raises(ConfigError, match="bins"):
        runs.check_training(ws, record.dataset_id, "independent", {"bins": 1}, 1.0, 0.0, "rdp")
    with pytest.raises(ConfigError, match="epsilon > 0"):
        runs.check_training(ws, record.dataset_id, "independent", {}, None, 0.0, "rdp")
    # An approximate accountant never settles a fit: not offered, and refused if sent.
    from privsynth_ui.app import settling_accountants

    assert "rdp" in settling_accountants() and "gdp" not in settling_accountants()
    with pytest.raises(ConfigError, match="approximation"):
        runs.check_training(ws, record.dataset_id, "dpwgan", {}, 1.0, 1e-5, "gdp")
    text = runs.plan_text(
        ws, record.dataset_id, "dpwgan", {"epochs": 3, "batch_size": 200}, 1.0, 1e-5, "rdp"
    )
    assert "reserves ε = 1, δ = 1e-05" in text and "to release the row count once" in text
    assert "shown once the row count has been released" in text  # never priced on exact n
    train_inline(ws, record, epsilon=0.2)  # releases n̂
    text = runs.plan_text(
        ws, record.dataset_id, "dpwgan", {"epochs": 3, "batch_size": 200}, 1.0, 1e-5, "rdp"
    )
    assert "released row count n̂ = " in text and "noise multiplier σ ≈" in text
    assert "to release the row count" not in text  # reused for free
    assert "does not fit" in runs.plan_text(ws, record.dataset_id, "dpwgan", {}, 9.0, 1e-5, "rdp")
    assert "NOT differentially private" in runs.plan_text(
        ws, record.dataset_id, "ctgan", {}, None, None, "rdp"
    )
    assert len(ws.runs()) == 1


@pytest.mark.extended  # the browser walk trains, generates and evaluates through the same handlers
def test_train_generate_evaluate_as_flow_runs(
    tmp_path: Path, csv: Path, flow_service: FlowService
) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    flows = served(settings, flow_service)
    record, run = trained_run(ws, settings, csv, epsilon=0.5, flows=flows)
    # The release states its end-to-end guarantee: the row count and the training.
    assert (run.status, run.spent_epsilon, run.private) == ("done", 0.55, True)
    assert [p["step"] for p in run.privacy_parts] == ["row count", "training"]
    status = ws.ledger.status(record.key)
    assert status.spent.epsilon == pytest.approx(0.55)
    # The run is a flow run of `synthesize`, with the run directory of `privsynth run`.
    view = flows.read(run.flow_run_id)
    assert view.state == "COMPLETED" and ("fit_model", "COMPLETED") in view.tasks
    assert sorted(p.name for p in (run.run_dir / "release").iterdir()) == [
        "model",
        "release.json",
        "synthetic.csv",
    ]
    assert (run.run_dir / "custodian" / "manifest.json").is_file()
    path, frame = runs.generate(ws, settings, run.run_id, 300, 3, flows)
    again, frame2 = runs.generate(ws, settings, run.run_id, "300", 3.0, flows)
    assert frame.height == 300 and frame.equals(frame2) and path == again
    assert ws.ledger.status(record.key).spent.epsilon == pytest.approx(0.55)  # free
    for rows, seed in ((0, 1), (2_000_000, 1), (10, -1), ("ten", 1), (1.5, 1)):
        with pytest.raises(ConfigError):
            runs.generate(ws, settings, run.run_id, rows, seed, flows)
    # Evaluate scores, by default, the release's table: as large as the training table (the
    # released n̂, not the 300 rows drawn last), and says so; the target is the user's pick,
    # by default the one named at training (none here), never "the last categorical column".
    assert "income" in runs.target_choices(ws, run.run_id)
    assert runs.trained_target(run) is None
    n_hat = budget.noisy_rows(ws, record)
    assert n_hat and evals.sample_choices(ws, run.run_id) == [
        (f"the release's table ({n_hat:,} rows: the training table's size)", ""),
        (path.name, path.name),
    ]
    default = evals.evaluate(ws, run.run_id, target=None, flows=flows)
    assert default.sample == run.run_dir / "release" / "synthetic.csv"
    assert f"the release's table ({n_hat:,} rows)" in default.what
    assert "no target column" in default.what
    with pytest.raises(GeneratorError):
        evals.evaluate(ws, run.run_id, target=None, flows=flows, sample="../release.json")
    view = evals.evaluate(ws, run.run_id, target="income", flows=flows, sample=path.name)
    assert (view.report_dir / "report.html").is_file() and view.sample == path
    assert f"`{path.name}` (300 rows)" in view.what and "target column `income`" in view.what
    assert view.report_dir == run.run_dir / "custodian" / "report"
    names = {row[0] for row in view.headlines}
    assert "DP guarantee (epsilon)" in names and any("TSTR" in n for n in names)
    assert view.groups["privacy"] and view.groups["utility"] and view.groups["fidelity"]
    assert view.distribution_plots and view.correlation_plots[0].name.startswith("correlation_real")
    details = runs.run_details(ws, run.run_id, flows)
    assert details["report"] and details["samples"] == [path.name]
    assert details["flow_run_id"] == run.flow_run_id
    # The audit flow: canaries on the real rows, charged to throwaway ledgers only.
    audited = evals.audit(ws, run.run_id, canaries=16, flows=flows)
    assert audited.result["claimed_epsilon"] == 0.5 and audited.result["canaries_total"] == 16
    assert "epsilon" in audited.summary and run.audit_dir.is_dir()
    assert ws.ledger.status(record.key).spent.epsilon == pytest.approx(0.55)
    assert runs.run_rows(ws, flows)[0][:1] == [run.run_id]
    budget.set_budget(ws, record.dataset_id, 4.0, 1e-4)
    with pytest.raises(BudgetExceededError):
        budget.set_budget(ws, record.dataset_id, 0.1, 1e-4)  # below what is spent


@pytest.fixture
def marginal_plugin() -> Iterator[None]:
    """The marginal generators (AIM, MST) installed, as a user would have them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRIVSYNTH_LOAD_PLUGINS", "privsynth,privsynth-marginal")
        reset_plugins()
        reset_registries()
        yield
    reset_plugins()
    reset_registries()


def test_the_train_tab_suggests_the_best_generator_and_trains_with_a_target(
    tmp_path: Path, csv: Path, marginal_plugin: None
) -> None:
    """The generator choice defaults to the one ``privsynth fit`` would choose, with its why; a
    target named for the training is the run configuration's (the generator weighs it), the
    Evaluate tab's default target, and the fit's spending shows where the run ends."""
    import json

    import polars as pl
    import yaml

    from privsynth_core.registry import choose_generator
    from privsynth_core.schema import Schema
    from privsynth_core.service import spending_lines

    settings = settings_for(tmp_path)
    ws = custodian(settings)
    small = tmp_path / "adult_small.csv"  # a small table: MST fits it in seconds
    pl.read_csv(csv).select("age", "gender", "race", "income").head(600).write_csv(small)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, small), name=small.name, holdout_share=0.2, exclude=""
    )
    prepare_source(ws, record, budget=(4.0, 1e-4))
    events = PageEvents(settings, inline_flows(ws))
    schema = Schema.load(domain.domain_of(ws, record).schema_path)
    for target in ("", "income"):
        best = choose_generator(schema, None, target=target or None)
        assert runs.suggested_generator(ws, record.dataset_id, target) == (
            best.generator_id,
            best.why,
        )
        generator, why = events.suggest_generator(ws, record.dataset_id, target)
        assert generator["value"] == best.generator_id and best.why in why
    targets, generator, why = events.train_targets(ws, record.dataset_id)
    assert targets["value"] == "" and ("income", "income") in targets["choices"]
    assert generator["value"] == choose_generator(schema, None).generator_id
    with pytest.raises(ConfigError, match="not a column"):
        runs.check_training(ws, record.dataset_id, "mst", {}, 1.0, None, "rdp", target="nope")
    plan = runs.check_training(ws, record.dataset_id, "mst", {}, 1.0, None, "rdp", target="income")
    flows = inline_flows(ws)
    run = runs.train(ws, runs.new_run(ws, plan), flows)
    run = runs.refresh(ws, run, flows, flows.service.wait(run.flow_run_id, timeout=600))
    assert run.status == "done", run.message
    config = yaml.safe_load(run.config_path.read_text(encoding="utf-8"))
    assert config["target"] == "income" and config["params"]["target"] == "income"
    model = json.loads((run.model_dir / "manifest.json").read_text(encoding="utf-8"))
    assert run.spending and run.spending == spending_lines(model["fit"]["extra"])
    shown = views.progress_html(run, None)
    assert all(views.html.escape(line) in shown for line in run.spending)
    assert events.targets(ws, run.run_id)[0]["value"] == "income"
    # Evaluate's "(none)" means none, not the target named at training; unset, it is that.
    assert evals.scoring_target(run, "") is None and evals.scoring_target(run, None) == "income"
    # MST composes in zCDP whatever the accountant option said: the run records what it used.
    assert run.accountant.startswith("zcdp") and plan.accountant == "rdp"


def test_deltas_read_short_pure_dp_reserves_no_delta_and_runs_record_their_accounting(
    tmp_path: Path, csv: Path
) -> None:
    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record, run = trained_run(ws, settings, csv, epsilon=0.5)
    # A delta is shown to 3 significant digits (PrivacyBudget's), not as the float sum it is.
    ws.ledger.reserve(
        record.key, mechanism="elsewhere", epsilon=0.1, delta=1e-6 / 9, run_id="another-front-end"
    )
    row = budget.budget_rows(ws)[0]
    assert row[3] == 1e-4 and row[5] == 1.11e-7 and row[7] == 9.99e-5
    assert budget.ledger_rows(ws, record.dataset_id)[-1][5] == 1.11e-7
    # `independent` is pure epsilon-DP: it reserves no delta, whatever the delta box says.
    plan = runs.check_training(ws, record.dataset_id, "independent", {}, 0.2, 1e-5, "rdp")
    assert plan.delta is None
    assert "reserves ε = 0.2, δ = 0** (pure ε-DP: no δ)" in runs.plan_text(
        ws, record.dataset_id, "independent", {}, 0.2, 1e-5, "rdp"
    )
    assert "δ = 1e-05" in runs.plan_text(ws, record.dataset_id, "dpwgan", {}, 0.2, 1e-5, "rdp")
    # A run records the accounting its fit used (here exact Laplace), in its record and in the
    # ledger, not the accountant option it was given.
    assert run.accountant == "laplace"
    training = [e for e in ws.ledger.entries(record.key) if e.mechanism == "independent training"]
    assert training[0].params["accountant"] == "laplace"


def test_cancelling_a_training_cancels_its_flow_run_and_keeps_its_reservation(
    tmp_path: Path, csv: Path, flow_service: FlowService
) -> None:
    settings = settings_for(tmp_path, max_trainings=1)
    ws = custodian(settings)
    flows = served(settings, flow_service)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name="adult", holdout_share=0.2, exclude=""
    )
    prepare_source(ws, record)
    plan = runs.check_training(
        ws, record.dataset_id, "dpwgan", {"epochs": 500, "batch_size": 400}, 1.0, 1e-5, "rdp"
    )
    run = runs.train(ws, runs.new_run(ws, plan), flows)
    assert run.flow_run_id and run.status == "running"
    with pytest.raises(BusyError, match="already training"):
        runs.train(ws, runs.new_run(ws, plan), flows)
    bob = Workspace(settings.home, "bob")
    with pytest.raises(BusyError, match="limit"):
        flows.start_training(bob, run)
    _wait_until(lambda: flows.read(run.flow_run_id).progress, what="training progress")
    # A custodian cannot close the reservation of a training that is still running.
    reserved = _wait_until(
        lambda: [
            e for e in ws.ledger.open_reservations(record.key) if e.mechanism == "dpwgan training"
        ],
        what="reservation",
    )[0]
    with pytest.raises(Exception, match="still running"):
        budget.close_reservation(
            ws,
            record.dataset_id,
            reserved.entry_id,
            "oops",
            runs.trainings_in_flight(ws, record.dataset_id),
        )
    assert runs.cancel(bob, flows) is None
    cancelling = runs.cancel(ws, flows)
    assert cancelling is not None and cancelling.run_id == run.run_id
    final = flows.service.wait(run.flow_run_id, timeout=120)
    assert final.state == "CANCELLED"
    cancelled = runs.refresh(ws, ws.run(run.run_id), flows)
    assert cancelled.status == "cancelled"
    assert f"entry #{reserved.entry_id}, open until a data custodian" in cancelled.message
    entries = ws.ledger.entries(record.key)
    assert [(e.mechanism, e.status, e.epsilon) for e in entries] == [
        ("noisy row count", "spent", 0.05),
        ("dpwgan training", "reserved", 1.0),
    ]
    progress = flows.read(run.flow_run_id).progress
    assert progress is not None and progress.done < 500
    assert runs.trainings_in_flight(ws, record.dataset_id) == set()
    # Closed by a custodian: recorded as spent in full, with the note.
    budget.close_reservation(
        ws,
        record.dataset_id,
        reserved.entry_id,
        "cancelled in a test",
        runs.trainings_in_flight(ws, record.dataset_id),
    )
    assert ws.ledger.entry(reserved.entry_id).status == "spent"
    assert ws.ledger.open_reservations(record.key) == []


def test_a_training_is_found_again_with_its_state_from_prefect(
    tmp_path: Path, csv: Path, flow_service: FlowService
) -> None:
    """A reload, or a new app over the same home: the run is followed again from its flow run,
    and a cancel made in Prefect's UI (not through the page) is what the page then shows."""
    from prefect.states import Cancelling

    settings = settings_for(tmp_path)
    ws = custodian(settings)
    record = data.add_uploaded(
        ws, settings, as_upload(settings, csv), name="adult", holdout_share=0.2, exclude=""
    )
    prepare_source(ws, record)
    plan = runs.check_training(
        ws, record.dataset_id, "dpwgan", {"epochs": 500, "batch_size": 400}, 1.0, 1e-5, "rdp"
    )
    run = runs.train(ws, runs.new_run(ws, plan), served(settings, flow_service))
    # Another app object (a restarted server): it knows the run from its record and Prefect.
    events = PageEvents(settings, served(settings, flow_service))
    watching = events.resume(ws)
    shown, _ = next(watching)
    assert run.run_id in shown and run.flow_run_id in shown
    while "ε so far" not in shown:
        shown, _ = next(watching)
    with flow_service.client() as client:  # what Prefect's UI does
        client.set_flow_run_state(run.flow_run_id, Cancelling())
    last = list(watching)[-1][0]
    assert "Training cancelled" in last and "keeps the run&#x27;s whole reservation" in last
    (row,) = runs.run_rows(ws, None)
    assert row[6] == "cancelled"


# -- one budget per data source, roles -----------------------------------------------------------


@pytest.mark.extended  # the analyst's browser walk trains within the budget a custodian set on a shared file
def test_three_users_on_one_server_file_share_one_budget(
    tmp_path: Path, csv: Path, privsynth_home: Path
) -> None:
    from privsynth_core.privacy.count import count_epsilon
    from privsynth_core.privacy.ledger import PrivacyLedger

    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "adult.csv").write_bytes(csv.read_bytes())
    # The web app's home is the CLI's: PrivacyLedger() below is what `privsynth budget` opens.
    settings = settings_for(tmp_path, home=privsynth_home, data_dirs=(folder,))
    cora, ann, ben = (
        custodian(settings),
        Workspace(settings.home, "ann"),
        Workspace(settings.home, "ben"),
    )
    added = {
        ws.user: data.add_server_file(
            ws, settings, "shared/adult.csv", name="", holdout_share=share, exclude=""
        )
        for ws, share in ((cora, 0.2), (ann, 0.2), (ben, 0.3))
    }
    key = added["cora"].key
    assert key.startswith("source:shared.adult.csv-")
    assert {r.key for r in added.values()} == {key}
    # The same share gives the same extract; another share another extract of the same source.
    assert added["ann"].fingerprint == added["cora"].fingerprint != added["ben"].fingerprint
    # Nothing gets a budget on its own, and an analyst cannot give one.
    assert PrivacyLedger().datasets() == []
    with pytest.raises(DomainError, match="ask the data custodian to fix it"):
        runs.check_training(ann, added["ann"].dataset_id, "independent", {}, 0.5, 0.0, "rdp")
    prepare_source(cora, added["cora"], budget=None)
    with pytest.raises(BudgetNotSetError, match="no budget set yet .* ask the data custodian"):
        runs.check_training(ann, added["ann"].dataset_id, "independent", {}, 0.5, 0.0, "rdp")
    with pytest.raises(RoleError, match="only a data custodian"):
        budget.set_budget(ann, added["ann"].dataset_id, 100.0, 0.1)
    budget.set_budget(cora, added["cora"].dataset_id, 2.0, 1e-4)
    trained = [train_inline(ws, added[ws.user], epsilon=0.5) for ws in (cora, ann, ben)]
    # One budget, every user's charges in it: two extracts released a count each. Ann's fit is
    # cora's (same extract, same settings): the model store trained and charged it once.
    (only,) = PrivacyLedger().datasets()
    assert only.key == key and only.budget.epsilon == 2.0
    entries = PrivacyLedger().entries(key)
    assert [e.mechanism for e in entries].count("noisy row count") == 2
    assert [e.mechanism for e in entries].count("independent training") == 2
    count = count_epsilon(2.0)  # 1% of the source's budget, once per extract
    assert only.spent.epsilon == pytest.approx(0.5 * 2 + count * 2)
    assert {e.extract for e in entries} == {added["cora"].fingerprint, added["ben"].fingerprint}
    assert all(r.spent_epsilon == pytest.approx(0.5 + count) for r in trained)
    assert "reused, nothing trained or charged now" in trained[1].message
    # A re-add with yet another holdout share is the same source, and the budget runs out for
    # everyone alike.
    again = data.add_server_file(
        ann, settings, "shared/adult.csv", name="", holdout_share=0.1, exclude=""
    )
    assert again.key == key
    with pytest.raises(BudgetExceededError, match="ask the data custodian"):
        runs.check_training(ann, again.dataset_id, "independent", {}, 1.0, 0.0, "rdp")
    # Each sees the one shared budget; an analyst sees no exact size, and no other user's runs.
    assert budget.budget_rows(ann)[0][0] == key
    assert budget.budget_rows(ben)[0][6] == pytest.approx(2.0 - 1.0 - 2 * count)
    info = views.dataset_info(ann, added["ann"])
    assert shows_only_the_released_size(info, ann, added["ann"])
    assert f"{added['cora'].rows:,} training rows" in views.dataset_info(cora, added["cora"])
    assert f"{added['ann'].rows} rows" not in added["ann"].label(exact_size=False)
    shown = {row[6] for row in budget.ledger_rows(ann, added["ann"].dataset_id)}
    assert shown == {"(not yours)"}  # cora's and ben's runs; ann's reused cora's model


def test_an_analyst_cannot_do_what_only_a_custodian_may(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    ann = Workspace(settings.home, "ann")
    record, run = trained_run(ann, settings, csv)  # a custodian prepared the source
    flows = inline_flows(ann)
    events = PageEvents(settings, flows)
    schema = domain.visible_schema(ann, record)
    assert schema is not None and schema.domain == "public"  # the fixed domain, never the draft
    refusals: list[Callable[[], Any]] = [
        lambda: budget.set_budget(ann, record.dataset_id, 100.0, 0.1),
        lambda: domain.set_domain(
            ann,
            record.dataset_id,
            rows_of(record),
            mode="public",
            epsilon=None,
            delta=None,
            accept_flagged=True,
        ),
        lambda: domain.set_domain(
            ann, record.dataset_id, rows_of(record), mode="dp", epsilon=1.0, delta=1e-6
        ),
        lambda: domain.save_draft(ann, record.dataset_id, rows_of(record)),
        lambda: domain.use_round_limits(ann, record.dataset_id, rows_of(record)),
        lambda: evals.evaluate(ann, run.run_id, target="income", flows=flows),
        lambda: events.evaluate(ann, run.run_id, "income"),
        lambda: evals.audit(ann, run.run_id, canaries=20, flows=flows),
        lambda: events.audit(ann, run.run_id, 20),
        lambda: runs.check_training(ann, record.dataset_id, "ctgan", {}, None, None, "rdp"),
        lambda: budget.acknowledge_non_dp(ann, record.dataset_id, "seen"),
        lambda: budget.close_reservation(ann, record.dataset_id, 1, "dead", set()),
        lambda: data.add_uploaded(
            ann,
            settings,
            as_upload(settings, csv),
            name="",
            holdout_share=0.2,
            exclude="",
            source_id="mine",
        ),
    ]
    for refused in refusals:
        with pytest.raises(RoleError, match="only a data custodian"):
            refused()
    # The run's own report (custodian/) exists, and stays the custodian's.
    assert (run.report_dir / "report.html").exists()
    assert runs.run_details(ann, run.run_id)["report"] is False
    # The page shows an analyst the fixed domain read-only, and neither draft nor flags.
    table, _, review = events._schema_view(ann, record)
    assert table["interactive"] is False and review == ""
    assert all(row[6] == "" for row in table["value"]["data"])
    # Before a custodian fixes the domain, an analyst sees no schema at all.
    fresh = data.add_uploaded(
        ann,
        settings,
        as_upload(settings, _other_csv(tmp_path)),
        name="",
        holdout_share=0.0,
        exclude="",
    )
    assert domain.visible_schema(ann, fresh) is None
    table, _, note = events._schema_view(ann, fresh)
    assert table["value"]["data"] == [] and "not fixed yet" in note
    # Generating from a DP run is an analyst's job; it is free.
    path, _ = runs.generate(ann, settings, run.run_id, 20, 1, flows)
    assert path.is_file()


def _other_csv(tmp_path: Path) -> Path:
    return adult_csv(tmp_path / "other.csv", n=300, seed=11)


def test_an_uploads_source_is_its_content_or_what_a_custodian_declared(
    tmp_path: Path, csv: Path, privsynth_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from privsynth_core.table import fingerprint_frame, read_frame
    from privsynth_ui.cli import main

    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "same.csv").write_bytes(csv.read_bytes())
    settings = settings_for(tmp_path, home=privsynth_home, data_dirs=(folder,))
    cora, ann = custodian(settings), Workspace(settings.home, "ann")
    other = _other_csv(tmp_path)
    first = data.add_uploaded(
        ann, settings, as_upload(settings, other), name="", holdout_share=0.2, exclude=""
    )
    second = data.add_uploaded(
        ann, settings, as_upload(settings, other), name="", holdout_share=0.4, exclude=""
    )
    whole = fingerprint_frame(read_frame(other))
    assert first.source is None and first.key == second.key == whole
    assert first.fingerprint != second.fingerprint  # two extracts of one source
    # The key is the file's content, as the CLI computes it: a budget set there is this one.
    assert main(["budget", "set", str(other), "--epsilon", "2", "--delta", "1e-5"]) == 0
    assert ann.ledger.status(first.key).budget.epsilon == 2.0
    # A server file's rows uploaded again spend from the server file's source.
    served = data.add_server_file(
        ann, settings, "shared/same.csv", name="", holdout_share=0.2, exclude=""
    )
    copy = data.add_uploaded(
        ann, settings, as_upload(settings, csv), name="", holdout_share=0.2, exclude=""
    )
    assert copy.key == served.key and served.source is not None
    # A custodian declares a source id for new content; then everyone's adds use it.
    declared = tmp_path / "declared.csv"
    adult_csv(declared, n=400, seed=5)
    mine = data.add_uploaded(
        cora,
        settings,
        as_upload(settings, declared),
        name="",
        holdout_share=0.2,
        exclude="",
        source_id="claims",
    )
    theirs = data.add_uploaded(
        ann, settings, as_upload(settings, declared), name="", holdout_share=0.0, exclude=""
    )
    assert mine.key == theirs.key == "source:claims"
    with pytest.raises(ConfigError, match="never changes"):
        data.add_uploaded(
            cora,
            settings,
            as_upload(settings, declared),
            name="",
            holdout_share=0.2,
            exclude="",
            source_id="other",
        )
    # Once budget was spent on a file under its own source, no declaration may start it over.
    spent_on = data.add_server_file(
        cora, settings, "shared/same.csv", name="", holdout_share=0.2, exclude=""
    )
    prepare_source(cora, spent_on)
    train_inline(cora, spent_on, epsilon=0.1)
    with pytest.raises(ConfigError, match="start its budget over"):
        data.add_server_file(
            cora,
            settings,
            "shared/same.csv",
            name="",
            holdout_share=0.2,
            exclude="",
            source_id="renamed",
        )
    with pytest.raises(ConfigError, match="invalid data source id"):
        data.add_uploaded(
            cora,
            settings,
            as_upload(settings, csv),
            name="",
            holdout_share=0.2,
            exclude="",
            source_id="no spaces please",
        )


def test_the_holdout_split_is_row_by_row(csv: Path) -> None:
    import polars as pl

    frame = pl.read_csv(csv, infer_schema=False)
    extra = frame.head(1).with_columns(pl.lit("999999").alias("fnlwgt"))
    train, holdout = data.split_rows(frame, 0.2)
    train2, holdout2 = data.split_rows(pl.concat([frame, extra]), 0.2)
    assert holdout is not None and holdout2 is not None
    # One more person changes the split by at most that person: stable under add/remove-one.
    assert train2.height + holdout2.height == frame.height + 1
    assert {train.height, train.height + 1} >= {train2.height}
    assert (
        frame.filter(
            pl.Series(frame.hash_rows(seed=0).is_in(train.hash_rows(seed=0).implode()))
        ).height
        == train.height
    )
    assert train2.join(train, on=frame.columns, how="anti").height <= 1


# -- isolation and the gate ----------------------------------------------------------------------


def test_one_users_ids_are_not_found_in_another_users_workspace(tmp_path: Path, csv: Path) -> None:
    settings = settings_for(tmp_path)
    alice = custodian(settings, "alice")
    record, run = trained_run(alice, settings, csv)
    bob = custodian(settings, "bob")  # even a custodian reaches only their own workspace
    for lookup, item in ((bob.run, run.run_id), (bob.dataset, record.dataset_id)):
        with pytest.raises(NotFoundError, match="not found"):
            lookup(item)
    for made_up in (
        f"../alice/runs/{run.run_id}",
        f"{run.run_id}/..",
        "0" * 17,
        "ABCDEF0123456789",
        "",
        None,
        12,
    ):
        with pytest.raises(NotFoundError):
            bob.run(made_up)
    assert bob.runs() == [] and bob.datasets() == [] and budget.budget_rows(bob) == []
    events = PageEvents(settings, inline_flows(bob))
    for call in (
        lambda: events.generate(bob, run.run_id, 10, 0),
        lambda: events.evaluate(bob, run.run_id, "income"),
        lambda: events.audit(bob, run.run_id, 20),
        lambda: events.run_details(bob, run.run_id),
        lambda: events.select_dataset(bob, record.dataset_id, None),
        lambda: events.set_budget(bob, record.dataset_id, 100.0, 0.1),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert "not found" in events.on_load(bob, run.run_id)[1]
    assert "Opened run" in events.on_load(alice, run.run_id)[1]
    with pytest.raises(NotFoundError):
        Workspace(settings.home, "../alice")


def test_the_gate_takes_the_user_from_the_session_and_maps_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from privsynth_ui.auth import UserStore

    store = UserStore(tmp_path / "users.sqlite")
    store.add_user("alice", "alice's password", role="custodian")
    store.add_user("bob", "bob's password")
    seen: list[str] = []

    def handler(ws: Workspace, value: str) -> str:
        seen.append(f"{ws.user}:{ws.role}")
        if value == "user-error":
            raise ConfigError("a readable message")
        if value == "bug":
            raise ValueError("secret internals")
        return value

    wrapped = gated(tmp_path, handler)
    params = list(inspect.signature(wrapped).parameters.values())
    assert [p.name for p in params] == ["value", "request"]  # the API's names: the handler's
    assert params[-1].annotation is gr.Request  # where Gradio puts the request
    assert wrapped("ok", gr.Request(username="alice")) == "ok" and seen == ["alice:custodian"]
    with pytest.raises(gr.Error, match="not signed in"):
        wrapped("ok", gr.Request(username=None))
    with pytest.raises(gr.Error, match="not signed in"):
        wrapped("ok", gr.Request(username="ghost"))  # a session outliving its account
    store.set_role("alice", "analyst")  # the operator's change applies to the next request
    wrapped("ok", gr.Request(username="alice"))
    assert seen[-1] == "alice:analyst"
    with pytest.raises(gr.Error, match="^'a readable message'$"):
        wrapped("user-error", gr.Request(username="alice"))
    with caplog.at_level(logging.ERROR, logger="privsynth.ui"), pytest.raises(gr.Error) as caught:
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


def test_the_gate_gives_gradio_the_changes_a_handler_returns(tmp_path: Path) -> None:
    # The handlers know no Gradio: a views.Update (an output, or one of several) reaches
    # Gradio as its gr.update, Update() as gr.skip() (the component stays as it is).
    from privsynth_ui.auth import UserStore

    UserStore(tmp_path / "users.sqlite").add_user("alice", "alice's password")

    def handler(ws: Workspace) -> tuple[Any, ...]:
        return views.Update(choices=[], value=None), "text", views.Update(), [views.Update()]

    change, text, keep, nested = gated(tmp_path, handler)(gr.Request(username="alice"))
    assert change == gr.update(choices=[], value=None) and not isinstance(change, views.Update)
    assert text == "text" and keep == gr.skip() and not isinstance(keep, views.Update)
    assert nested == [views.Update()]  # a list value of one output is the output's own value

    def stream(ws: Workspace) -> Any:
        yield views.Update(visible=False), "first"

    update, _ = next(gated_stream(tmp_path, stream)(gr.Request(username="alice")))
    assert update == gr.update(visible=False) and not isinstance(update, views.Update)
