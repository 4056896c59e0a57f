"""The Gradio page: Data, Train, Generate, Evaluate, Budget & runs.

``build_demo(settings)`` lays the page out and wires every event, with an ``api_name``, to a
handler of :mod:`privsynth_ui.data_handlers` / :mod:`privsynth_ui.run_handlers` through
:func:`privsynth_ui.gate.gated` (user from the session, errors mapped). Dropdowns come from the
plugin registries and each generator's form from its ``Params`` model, so a new plugin shows up
with no change here. Serve it with :func:`privsynth_ui.web.create_app` (sign-in, sessions): on
its own, without a signed-in user, every handler refuses.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import gradio as gr

from privsynth_core.registry import accountants, generators

from . import data_handlers as data
from . import run_handlers as runs
from . import views
from .forms import FieldSpec, collect_params, field_specs
from .gate import error_boundary, gated, gated_stream, workspace_for
from .settings import UISettings
from .training import TrainingJob, TrainingJobs
from .workspace import NotFoundError, Workspace

if TYPE_CHECKING:
    from collections.abc import Iterator

BUDGET_HEADERS = ["dataset", "id", "budget ε", "budget δ", "spent ε", "spent δ", "left ε",
                  "left δ", "non-DP runs"]
LEDGER_HEADERS = ["entry", "time", "mechanism", "status", "ε", "δ", "run"]
RUN_HEADERS = ["run", "created", "dataset", "generator", "target ε", "spent ε", "status", "note"]
HEADLINE_HEADERS = ["score", "group", "value", "real-data ceiling", "shuffled floor", "verdict",
                    "why"]
METRIC_HEADERS = ["metric", "value", "direction", "verdict", "why"]
DOMAIN_CHOICES = [
    ("Declare public: I confirm these bounds and categories reveal nothing about anyone", "public"),
    ("Learn with DP: spend some budget to learn bounds and categories privately", "dp"),
]


def _field(spec: FieldSpec) -> gr.components.Component:
    common: dict[str, Any] = {"label": spec.label, "info": spec.info or None}
    if spec.kind in ("int", "float") and spec.optional:
        # A number box shows and returns 0 when empty; "none" must stay expressible.
        return gr.Textbox(value="" if spec.default is None else str(spec.default),
                          placeholder="empty: none", **common)
    if spec.kind in ("int", "float"):
        return gr.Number(value=spec.default, precision=0 if spec.kind == "int" else None,
                         minimum=spec.minimum, maximum=spec.maximum, **common)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), **common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, **common)
    return gr.Textbox(value=spec.default, lines=2 if spec.kind == "json" else 1, **common)


def _dataset_choices(ws: Workspace) -> list[tuple[str, str]]:
    return [(d.label, d.dataset_id) for d in ws.datasets()]


def _run_choices(ws: Workspace, dataset_id: str | None) -> list[tuple[str, str]]:
    return [(r.label, r.run_id) for r in ws.runs(dataset_id or None) if r.status == "done"]


def build_demo(settings: UISettings | None = None, *,
               jobs: TrainingJobs | None = None) -> gr.Blocks:
    """The page, its events and their API, for the given operator settings."""
    settings = settings or UISettings.from_env()
    jobs = jobs or TrainingJobs(settings.max_trainings)
    home = settings.home
    gen_registry = generators()
    gen_ids = gen_registry.names()
    default_gen = "dpwgan" if "dpwgan" in gen_ids else (gen_ids[0] if gen_ids else None)
    forms = {g: field_specs(gen_registry.get(g).Params) for g in gen_ids}

    def stage(path: Any, name: str | None = None) -> str:
        return views.stage(settings.cache_dir, path, name=name)

    with gr.Blocks(title="privsynth", analytics_enabled=False,
                   delete_cache=(3600, 86400)) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## privsynth · differentially private synthetic tables")
            user_badge = gr.Markdown(elem_classes="ps-user", elem_id="ps-user")
        notice = gr.Markdown(elem_classes="ps-notice", elem_id="ps-notice")
        with gr.Row(equal_height=True):
            dataset = gr.Dropdown(label="Dataset", choices=[], scale=2, interactive=True,
                                  info="all tabs work on this dataset")
            dataset_md = gr.Markdown(views.dataset_info(None, None),  # type: ignore[arg-type]
                                     elem_id="ps-dataset-info")

        with gr.Tabs():
            with gr.Tab("Data"), gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown("### Add a table")
                    upload = gr.File(label=f"Upload CSV or Parquet (at most "
                                     f"{settings.max_upload_bytes / 2**20:g} MB)",
                                     file_types=[".csv", ".tsv", ".gz", ".parquet"])
                    add_upload_btn = gr.Button("Add uploaded file", variant="primary")
                    with gr.Accordion("…or pick a file in a server folder",
                                      open=bool(settings.data_dirs)):
                        server_file = gr.Dropdown(
                            label="Server file", choices=[], allow_custom_value=True,
                            info="only the folders the operator allowed" if
                            settings.data_dirs else "the operator allowed no server folder")
                        add_server_btn = gr.Button("Add server file")
                    new_name = gr.Textbox(label="Name (optional)")
                    holdout = gr.Slider(0, 0.5, value=0.2, step=0.05,
                                        label="Share of rows kept aside as holdout",
                                        info="never trained on; used by the evaluation")
                    leave_out = gr.Textbox(label="Leave out columns (comma-separated)")
                with gr.Column(scale=2):
                    gr.Markdown("### Schema and domain\nInferred from your data, so **not "
                                "private**: check the bounds and categories, edit them, "
                                "delete a row to leave a column out.")
                    excluded_md = gr.Markdown()
                    schema_df = gr.Dataframe(
                        headers=data.SCHEMA_HEADERS,
                        datatype=["str", "str", "bool", "str", "str", "str"],
                        interactive=True, wrap=True, static_columns=[0],
                        column_widths=["16%", "12%", "11%", "11%", "11%", "39%"],
                        max_height=420, label="Schema")
                    save_schema_btn = gr.Button("Save edits", size="sm")
                    domain_mode = gr.Radio(DOMAIN_CHOICES, value="public",
                                           label="Domain of the run")
                    with gr.Row(visible=False) as domain_dp_row:
                        domain_eps = gr.Number(0.1, label="ε for the domain", minimum=0)
                        domain_delta = gr.Number(1e-6, label="δ for the domain", minimum=0)
                    domain_cost = gr.Markdown(elem_id="ps-domain-cost")
                    domain_btn = gr.Button("Fix the domain", variant="primary")

            with gr.Tab("Train"):
                with gr.Row():
                    generator = gr.Dropdown(
                        [(f"{g}{'' if gen_registry.get(g).is_dp else ' (NOT DP)'}", g)
                         for g in gen_ids], value=default_gen, label="Generator", scale=1)
                    gen_desc = gr.Markdown(_describe(default_gen))
                groups: dict[str, Any] = {}
                fields: dict[str, list[gr.components.Component]] = {}
                for gid in gen_ids:
                    with gr.Accordion(f"Parameters of {gid}", open=True,
                                      visible=gid == default_gen) as group:
                        fields[gid] = []
                        specs = forms[gid]
                        for start in range(0, len(specs), 3):
                            with gr.Row():
                                fields[gid] += [_field(s) for s in specs[start:start + 3]]
                    groups[gid] = group
                all_fields = [c for gid in gen_ids for c in fields[gid]]
                with gr.Row():
                    epsilon = gr.Number(1.0, label="Target ε", minimum=0)
                    delta = gr.Number(1e-5, label="Target δ", minimum=0,
                                      info="well below 1/rows; 0 for pure-DP generators")
                    accountant = gr.Dropdown(accountants().names(), value="rdp",
                                             label="Accountant")
                plan_md = gr.Markdown(elem_id="ps-plan")
                with gr.Row():
                    train_btn = gr.Button("Train", variant="primary")
                    cancel_btn = gr.Button("Cancel training", variant="stop")
                progress = gr.HTML(elem_id="ps-progress")
                losses = gr.LinePlot(x="epoch", y="value", color="loss", label="Losses",
                                     height=260)
                with gr.Accordion("Parameters used (JSON)", open=False):
                    params_json = gr.Code(language="json", label="params", interactive=False)

            with gr.Tab("Generate"):
                with gr.Row():
                    gen_run = gr.Dropdown(label="Trained run", choices=[], scale=2)
                    gen_rows = gr.Number(1000, label="Rows", precision=0, minimum=1,
                                         maximum=settings.max_sample_rows)
                    gen_seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                generate_btn = gr.Button("Generate", variant="primary")
                gen_note = gr.Markdown(elem_id="ps-gen-note")
                gen_file = gr.File(label="Download the synthetic table")
                gen_preview = gr.Dataframe(label="Preview (first 20 rows)", interactive=False,
                                           max_height=420)

            with gr.Tab("Evaluate"):
                gr.HTML(views.NOT_DP_BANNER)
                with gr.Row():
                    eval_run = gr.Dropdown(label="Trained run", choices=[], scale=2)
                    target = gr.Dropdown(label="Target column (utility)", choices=[],
                                         allow_custom_value=False)
                    quick = gr.Checkbox(False, label="Quick (no reference points)")
                evaluate_btn = gr.Button("Evaluate", variant="primary")
                eval_note = gr.Markdown(elem_id="ps-eval-note")
                headline_df = gr.Dataframe(headers=HEADLINE_HEADERS, label="Headline scores",
                                           interactive=False, wrap=True)
                with gr.Tabs():
                    group_dfs = {}
                    for group_name in ("fidelity", "utility", "privacy"):
                        with gr.Tab(group_name.capitalize()):
                            group_dfs[group_name] = gr.Dataframe(
                                headers=METRIC_HEADERS, interactive=False, wrap=True)
                dist_gallery = gr.Gallery(label="Distributions: real vs synthetic", columns=3,
                                          height="auto", object_fit="contain")
                corr_gallery = gr.Gallery(label="Correlations: real, synthetic, difference",
                                          columns=2, height="auto", object_fit="contain")
                with gr.Row():
                    report_link = gr.HTML(elem_id="ps-report-link")
                    report_zip = gr.File(label="Full report (zip)")

            with gr.Tab("Budget & runs"):
                budgets_df = gr.Dataframe(headers=BUDGET_HEADERS, label="Budgets of your "
                                          "datasets", interactive=False)
                with gr.Row():
                    budget_eps = gr.Number(label="New budget ε", minimum=0)
                    budget_delta = gr.Number(label="New budget δ", minimum=0)
                    set_budget_btn = gr.Button("Set the current dataset's budget")
                ledger_df = gr.Dataframe(headers=LEDGER_HEADERS, interactive=False, wrap=True,
                                         label="Ledger of the current dataset")
                runs_df = gr.Dataframe(headers=RUN_HEADERS, interactive=False, wrap=True,
                                       label="Your runs")
                with gr.Row():
                    run_lookup = gr.Textbox(label="Run id", scale=2)
                    run_lookup_btn = gr.Button("Show run")
                run_json = gr.JSON(label="Run")

        # -- handlers (closures over the settings; each gets the caller's workspace) ---------

        def on_load(ws: Workspace, request: gr.Request) -> tuple[Any, ...]:
            choices = _dataset_choices(ws)
            current = choices[0][1] if choices else None
            message, run_value = "", None
            wanted = dict(request.query_params or {}).get("run") if request else None
            if wanted:
                try:
                    record = ws.run(wanted)
                    current, run_value = record.dataset_id, record.run_id
                    message = f"Opened run `{record.run_id}`."
                except NotFoundError:
                    message = f"Run `{str(wanted)[:40]}` not found."
            badge = f"Signed in as **{ws.user}** · [Sign out](/logout)"
            return (badge, message, gr.update(choices=choices, value=current),
                    gr.update(choices=data.server_files(settings)), run_value)

        def select_dataset(ws: Workspace, dataset_id: str | None,
                           wanted_run: str | None) -> tuple[Any, ...]:
            if not dataset_id:
                return (views.dataset_info(ws, None), gr.update(), "", gr.update(choices=[]),
                        gr.update(choices=[]), gr.update(), "public")
            record = ws.dataset(dataset_id)
            schema = data.current_schema(record)
            run_choices = _run_choices(ws, record.dataset_id)
            latest = run_choices[0][1] if run_choices else None
            if wanted_run in {value for _, value in run_choices}:
                latest = wanted_run  # a deep link (?run=ID) to one of this dataset's runs
            return (views.dataset_info(ws, record), views.table_value(
                data.schema_rows(schema), data.SCHEMA_HEADERS), data.excluded_text(schema),
                gr.update(choices=run_choices, value=latest),
                gr.update(choices=run_choices, value=latest),
                gr.update(value=runs.default_delta(record.rows)), record.domain or "public")

        def add_upload(ws: Workspace, file: Any, name: str, share: float,
                       exclude: str) -> Any:
            record = data.add_uploaded(ws, settings, file, name=name, holdout_share=share,
                                       exclude=exclude)
            return gr.update(choices=_dataset_choices(ws), value=record.dataset_id), None

        def add_server(ws: Workspace, choice: str, name: str, share: float, exclude: str) -> Any:
            record = data.add_server_file(ws, settings, choice, name=name, holdout_share=share,
                                          exclude=exclude)
            return gr.update(choices=_dataset_choices(ws), value=record.dataset_id)

        def save_schema(ws: Workspace, dataset_id: str, rows: Any) -> Any:
            schema = data.save_draft(ws, dataset_id, _rows(rows))
            gr.Info("Schema saved; fix the domain again before training.")
            return (views.table_value(data.schema_rows(schema), data.SCHEMA_HEADERS),
                    views.dataset_info(ws, ws.dataset(dataset_id)))

        def fix_domain(ws: Workspace, dataset_id: str, rows: Any, mode: str, eps: float | None,
                       dlt: float | None) -> Any:
            record = data.set_domain(ws, dataset_id, _rows(rows), mode=mode, epsilon=eps,
                                     delta=dlt)
            schema = data.current_schema(record)
            gr.Info("Domain fixed: " + ("declared public." if mode == "public" else
                                        f"learned with DP for ε = {record.domain_epsilon:g}."))
            return (views.table_value(data.schema_rows(schema), data.SCHEMA_HEADERS),
                    views.dataset_info(ws, record))

        def choose_generator(ws: Workspace, gid: str) -> list[Any]:
            return [_describe(gid)] + [gr.update(visible=g == gid) for g in gen_ids]

        def collect(ws: Workspace, gid: str, *values: Any) -> str:
            if gid not in forms:
                gen_registry.get(str(gid))  # raises UnknownPluginError listing the valid ids
            offset = 0
            for g in gen_ids:
                if g == gid:
                    break
                offset += len(forms[g])
            own = list(values[offset:offset + len(forms[gid])])
            return json.dumps(collect_params(forms[gid], own), indent=2)

        def preview_cost(ws: Workspace, dataset_id: str, gid: str, params: str, eps: float,
                         dlt: float, acc: str) -> str:
            return runs.plan_text(ws, dataset_id, gid, _params(params), eps, dlt, acc)

        def train(ws: Workspace, dataset_id: str, gid: str, params: str, eps: float,
                  dlt: float, acc: str) -> Iterator[Any]:
            plan = runs.check_training(ws, dataset_id, gid, _params(params), eps, dlt, acc)
            record = runs.new_run(ws, plan)

            def work(job: TrainingJob) -> None:
                runs.train(ws, job.run, job.report)

            def finish(job: TrainingJob) -> None:
                if job.outcome != "done":
                    runs.finish_run(ws, job.run, job.outcome, job.message)

            job = jobs.start(ws.user, record, work, finish)
            yield from _watch(job)

        def cancel(ws: Workspace) -> str:
            job = jobs.cancel(ws.user)
            if job is None:
                return "No training of yours is running."
            return (f"Cancelling run `{job.run.run_id}` at the end of the current epoch. The "
                    f"ledger keeps its whole reservation: the data has been used.")

        def after_train(ws: Workspace, dataset_id: str | None) -> tuple[Any, ...]:
            choices = _run_choices(ws, dataset_id)
            latest = choices[0][1] if choices else None
            record = ws.dataset(dataset_id) if dataset_id else None
            return (gr.update(choices=choices, value=latest),
                    gr.update(choices=choices, value=latest), views.dataset_info(ws, record))

        def generate(ws: Workspace, run_id: str, n: float, seed: float) -> tuple[Any, ...]:
            path, frame = runs.generate(ws, settings, run_id, n, seed)
            record = ws.run(run_id)
            note = (f"{frame.height:,} rows drawn from run `{record.run_id}` "
                    f"(ε = {views.fmt(record.spent_epsilon)}): post-processing of the DP model, "
                    f"free and shareable." if record.private else
                    "⚠ **NOT differentially private**: these rows must not be released.")
            return stage(path), frame.head(20).to_pandas(), note

        def targets(ws: Workspace, run_id: str | None) -> Any:
            choices = runs.target_choices(ws, run_id)
            return gr.update(choices=choices, value=choices[0] if choices else None)

        def evaluate(ws: Workspace, run_id: str, tgt: str | None, fast: bool) -> tuple[Any, ...]:
            view = runs.evaluate(ws, settings, run_id, target=tgt, quick=fast)
            link = (f"<p><a href='/files/runs/{run_id}/report/report.html' target='_blank' "
                    f"rel='noopener'>Open the full report</a> (NOT DP: custodian-only)</p>")
            note = (f"Evaluated `{view.sample.name}` against the real training rows."
                    + "".join(f"\n- {n}" for n in view.notes))
            return (views.table_value(view.headlines, HEADLINE_HEADERS),
                    *(views.table_value(view.groups.get(g, []), METRIC_HEADERS)
                      for g in ("fidelity", "utility", "privacy")),
                    [(stage(p), p.stem.split("_", 2)[-1]) for p in view.distribution_plots],
                    [(stage(p), p.stem.replace("_", " ")) for p in view.correlation_plots],
                    link, stage(view.report_dir, name="privsynth-report-NOT-DP"), note)

        def overview(ws: Workspace, dataset_id: str | None) -> tuple[Any, ...]:
            ledger = runs.ledger_rows(ws, dataset_id) if dataset_id else []
            return (views.table_value(runs.budget_rows(ws), BUDGET_HEADERS),
                    views.table_value(ledger, LEDGER_HEADERS),
                    views.table_value(runs.run_rows(ws), RUN_HEADERS))

        def set_budget(ws: Workspace, dataset_id: str, eps: float, dlt: float) -> tuple[Any, ...]:
            runs.set_budget(ws, dataset_id, eps, dlt)
            return (*overview(ws, dataset_id), views.dataset_info(ws, ws.dataset(dataset_id)))

        def run_details(ws: Workspace, run_id: str) -> dict[str, Any]:
            return runs.run_details(ws, run_id)

        def domain_cost_text(ws: Workspace, dataset_id: str | None, mode: str, eps: float,
                             dlt: float) -> str:
            return data.domain_cost_text(ws, dataset_id, mode, eps, dlt)

        def show_dp_inputs(ws: Workspace, mode: str) -> Any:
            return gr.update(visible=mode == "dp")

        def server_list(ws: Workspace) -> Any:
            return gr.update(choices=data.server_files(settings))

        def g(fn: Any, n_inputs: int | None = None) -> Any:
            return gated(home, fn, n_inputs)

        # -- wiring ------------------------------------------------------------------------

        def load_with_request(request: gr.Request) -> tuple[Any, ...]:
            with error_boundary():
                return on_load(workspace_for(home, request), request)

        run_value = gr.State()
        demo.load(load_with_request, None, [user_badge, notice, dataset, server_file, run_value],
                  api_name="session")
        dataset_outputs = [dataset_md, schema_df, excluded_md, gen_run, eval_run, delta,
                           domain_mode]
        dataset.change(g(select_dataset), [dataset, run_value], dataset_outputs,
                       api_name="select_dataset"
                       ).then(g(domain_cost_text), [dataset, domain_mode, domain_eps,
                                                    domain_delta], domain_cost,
                              api_visibility="undocumented")
        add_upload_btn.click(g(add_upload), [upload, new_name, holdout, leave_out],
                             [dataset, upload], api_name="add_upload")
        add_server_btn.click(g(add_server), [server_file, new_name, holdout, leave_out], dataset,
                             api_name="add_server_file")
        save_schema_btn.click(g(save_schema), [dataset, schema_df], [schema_df, dataset_md],
                              api_name="save_schema")
        domain_mode.change(g(show_dp_inputs), domain_mode, domain_dp_row,
                           api_visibility="undocumented")
        for trigger in (domain_mode.change, domain_eps.change, domain_delta.change):
            trigger(g(domain_cost_text), [dataset, domain_mode, domain_eps, domain_delta],
                    domain_cost, api_name="domain_cost")
        domain_btn.click(g(fix_domain), [dataset, schema_df, domain_mode, domain_eps,
                                         domain_delta], [schema_df, dataset_md],
                         api_name="set_domain").then(
            g(domain_cost_text), [dataset, domain_mode, domain_eps, domain_delta], domain_cost,
            api_visibility="undocumented")
        generator.change(g(choose_generator), generator, [gen_desc, *groups.values()],
                         api_name="choose_generator")
        plan_inputs = [dataset, generator, params_json, epsilon, delta, accountant]
        gr.on([generator.change, epsilon.change, delta.change, accountant.change,
               dataset.change, *(f.change for f in all_fields)],
              g(collect, 1 + len(all_fields)), [generator, *all_fields], params_json,
              api_visibility="undocumented", trigger_mode="always_last").success(
            g(preview_cost), plan_inputs, plan_md, api_name="preview_cost")
        train_btn.click(g(collect, 1 + len(all_fields)), [generator, *all_fields], params_json,
                        api_visibility="undocumented").success(
            gated_stream(home, train), plan_inputs, [progress, losses], api_name="train",
            concurrency_limit=None).then(
            g(after_train), dataset, [gen_run, eval_run, dataset_md],
            api_visibility="undocumented").then(
            g(preview_cost), plan_inputs, plan_md, api_visibility="undocumented")
        cancel_btn.click(g(cancel), None, plan_md, api_name="cancel_training")
        generate_btn.click(g(generate), [gen_run, gen_rows, gen_seed],
                           [gen_file, gen_preview, gen_note], api_name="generate")
        eval_run.change(g(targets), eval_run, target, api_name="targets")
        evaluate_btn.click(g(evaluate), [eval_run, target, quick],
                           [headline_df, *group_dfs.values(), dist_gallery, corr_gallery,
                            report_link, report_zip, eval_note], api_name="evaluate",
                           concurrency_limit=2)
        overview_inputs = [dataset]
        overview_outputs = [budgets_df, ledger_df, runs_df]
        dataset.change(g(overview), overview_inputs, overview_outputs, api_name="overview")
        set_budget_btn.click(g(set_budget), [dataset, budget_eps, budget_delta],
                             [*overview_outputs, dataset_md], api_name="set_budget")
        run_lookup_btn.click(g(run_details), run_lookup, run_json, api_name="run_details")
        server_file.focus(g(server_list), None, server_file, api_visibility="undocumented")
    demo.queue(default_concurrency_limit=8)
    return demo


def _watch(job: TrainingJob) -> Iterator[tuple[str, Any]]:
    """Yield the job's progress about twice a second until it ends, then its final state."""
    while not job.finished.wait(0.5):
        yield views.progress_html(job), views.loss_frame(job)
    yield views.progress_html(job), views.loss_frame(job)


def _describe(generator_id: str | None) -> str:
    if not generator_id:
        return "No generator is installed."
    cls = generators().get(generator_id)
    label = "" if cls.is_dp else "⚠ **NOT differentially private.** "
    return label + (cls.description or generator_id)


def _rows(value: Any) -> list[list[Any]]:
    """Rows of a Dataframe value (pandas frame, dict or list)."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):
        return [list(r) for r in value.values.tolist()]
    if isinstance(value, dict):
        return [list(r) for r in value.get("data", [])]
    return [list(r) for r in value]


def _params(text: str | None) -> dict[str, Any]:
    from privsynth_core.errors import ConfigError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError("the parameters are not valid JSON") from None
    if not isinstance(value, dict):
        raise ConfigError("the parameters must be a JSON object of name: value")
    return value


def __getattr__(name: str) -> Any:
    # `demo` for Gradio's reload mode, built on first access, not at import.
    if name == "demo":
        return build_demo()
    raise AttributeError(name)
