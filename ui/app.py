"""The Gradio page: Data, Train, Generate, Evaluate, Budget & runs.

``build_demo(settings)`` lays the page out and wires every event, with an ``api_name``, to a
handler of :class:`privsynth_ui.events.PageEvents` (plain Python over the ``*_handlers``
modules: data, domain, runs, evaluations, budget) through :func:`privsynth_ui.gate.gated`
(user from the session, errors mapped, plain results made Gradio's). Trainings, generations,
evaluations and audits are Prefect flow runs (:mod:`privsynth_ui.training`); the page follows a
training from its flow run, and again after a reload. Dropdowns come from the
plugin registries and each generator's form from its ``Params`` model, so a new plugin shows up
with no change here. Serve it with :func:`privsynth_ui.web.create_app` (sign-in, sessions): on
its own, without a signed-in user, every handler refuses. Only layout and wiring are here.

Controls only a custodian may use (the draft schema, fixing a domain, budgets, the evaluation,
the audit)
start hidden and are shown by the page's load event to custodians; the handlers refuse them to
analysts whatever the page shows.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from privsynth_core.registry import accountants, generators

from . import data_handlers as data
from . import domain_handlers as domain
from . import views
from .events import (
    BUDGET_HEADERS,
    CUSTODIAN_BLOCKS,
    HEADLINE_HEADERS,
    LEDGER_HEADERS,
    METRIC_HEADERS,
    RUN_HEADERS,
    PageEvents,
    describe,
)
from .forms import FieldSpec
from .gate import error_boundary, gated, gated_stream, notify, to_gradio, workspace_for
from .settings import UISettings
from .training import WebFlows


def settling_accountants() -> list[str]:
    """Accountants that may calibrate and settle a fit (approximate ones are left out)."""
    registry = accountants()
    return [a for a in registry.names() if not registry.get(a).approximate]


DOMAIN_CHOICES = [
    ("Declare public: these bounds and categories reveal nothing about anyone", "public"),
    ("Learn with DP: spend some budget to learn bounds and categories privately", "dp"),
]


def _field(spec: FieldSpec) -> gr.components.Component:
    common: dict[str, Any] = {"label": spec.label, "info": spec.info or None}
    if spec.kind in ("int", "float") and spec.optional:
        # A number box shows and returns 0 when empty; "none" must stay expressible.
        return gr.Textbox(
            value="" if spec.default is None else str(spec.default),
            placeholder="empty: none",
            **common,
        )
    if spec.kind in ("int", "float"):
        return gr.Number(
            value=spec.default,
            precision=0 if spec.kind == "int" else None,
            minimum=spec.minimum,
            maximum=spec.maximum,
            **common,
        )
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), **common)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, **common)
    return gr.Textbox(value=spec.default, lines=2 if spec.kind == "json" else 1, **common)


def build_demo(settings: UISettings | None = None, *, flows: WebFlows | None = None) -> gr.Blocks:
    """The page, its events and their API, for the given operator settings.

    Args:
        settings: the operator's settings.
        flows: the app's flow runs (default: the app's own served flows, started on first use).
    """
    settings = settings or UISettings.from_env()
    flows = flows or WebFlows(settings)
    home = settings.home
    ev = PageEvents(settings, flows, notify=notify)
    gen_registry = generators()
    gen_ids = gen_registry.names()
    default_gen = "dpwgan" if "dpwgan" in gen_ids else (gen_ids[0] if gen_ids else None)

    with gr.Blocks(title="privsynth", analytics_enabled=False, delete_cache=(900, 3600)) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## privsynth · differentially private synthetic tables")
            user_badge = gr.HTML(elem_classes="ps-user", elem_id="ps-user")
        notice = gr.Markdown(elem_classes="ps-notice", elem_id="ps-notice")
        with gr.Row(equal_height=True):
            # Ids lists are per user, filled at run time: the handlers check every id against the
            # caller's workspace, so the dropdowns need not (and through the API cannot).
            dataset = gr.Dropdown(
                label="Dataset",
                choices=[],
                scale=2,
                interactive=True,
                allow_custom_value=True,
                info="all tabs work on this dataset",
            )
            dataset_md = gr.Markdown(views.NO_DATASET, elem_id="ps-dataset-info")

        with gr.Tabs():
            with gr.Tab("Data"), gr.Row():
                with gr.Column(scale=1):
                    gr.Markdown("### Add a table")
                    upload = gr.File(
                        label=f"Upload CSV or Parquet (at most "
                        f"{settings.max_upload_bytes / 2**20:g} MB)",
                        file_types=data.UPLOAD_TYPES,
                        elem_id="ps-upload",
                    )
                    add_upload_btn = gr.Button("Add uploaded file", variant="primary")
                    with gr.Accordion(
                        "…or pick a file in a server folder", open=bool(settings.data_dirs)
                    ):
                        server_file = gr.Dropdown(
                            label="Server file",
                            choices=[],
                            allow_custom_value=True,
                            elem_id="ps-server-file",
                            info="only the folders the operator allowed; a name ending in / "
                            "is a folder of Parquet partitions, read in place (holdout share 0)"
                            if settings.data_dirs
                            else "the operator allowed no server folder",
                        )
                        add_server_btn = gr.Button("Add server file")
                    new_name = gr.Textbox(label="Name (optional)")
                    holdout = gr.Slider(
                        0,
                        0.5,
                        value=0.2,
                        step=0.05,
                        label="Share of rows kept aside as holdout",
                        info="never trained on; used by the evaluation; the "
                        "budget is the whole file's, whatever the share",
                    )
                    leave_out = gr.Textbox(label="Leave out columns (comma-separated)")
                    source_id = gr.Textbox(
                        label="Data source id (custodians, optional)",
                        visible=False,
                        elem_id="ps-source-id",
                        info="declare the population this file is an extract of (e.g. "
                        "claims): every extract of it shares one budget; never changes",
                    )
                with gr.Column(scale=2):
                    gr.Markdown(
                        "### Schema and domain\nOne domain per data source, fixed by a "
                        "custodian for everyone who uses it. The draft is inferred from "
                        "the rows, so **not private**: check the flagged bounds and "
                        "categories, edit them, delete a row to leave a column out."
                    )
                    excluded_md = gr.Markdown(elem_id="ps-excluded")
                    review_md = gr.Markdown(elem_id="ps-review")
                    schema_df = gr.Dataframe(
                        headers=domain.SCHEMA_HEADERS,
                        datatype=["str", "str", "bool", "str", "str", "str", "str"],
                        interactive=False,
                        wrap=True,
                        static_columns=[0, 6],
                        column_widths=["12%", "11%", "7%", "9%", "9%", "30%", "22%"],
                        max_height=420,
                        label="Schema",
                        elem_id="ps-schema",
                    )
                    with gr.Column(visible=False) as domain_controls:
                        with gr.Row(equal_height=True):
                            left_out_col = gr.Dropdown(
                                label="Column left out",
                                choices=[],
                                value=None,
                                allow_custom_value=True,
                                scale=2,
                                elem_id="ps-left-out",
                                info="bring it back into the draft (before the domain is fixed)",
                            )
                            include_btn = gr.Button("Include again", size="sm")
                        with gr.Row():
                            save_schema_btn = gr.Button("Save edits", size="sm")
                            round_btn = gr.Button(
                                "Use round public limits", size="sm", elem_id="ps-round"
                            )
                        domain_mode = gr.Radio(
                            DOMAIN_CHOICES,
                            value=None,
                            label="Fix the domain of this data source",
                            elem_id="ps-domain-mode",
                        )
                        with gr.Row(visible=False) as domain_dp_row:
                            domain_eps = gr.Number(0.1, label="ε for the domain", minimum=0)
                            domain_delta = gr.Number(1e-6, label="δ for the domain", minimum=0)
                        accept_flagged = gr.Checkbox(
                            False,
                            label="I have checked these values are public",
                            elem_id="ps-accept-flagged",
                            info="needed to declare public while values are still flagged",
                        )
                        domain_cost = gr.Markdown(elem_id="ps-domain-cost")
                        domain_btn = gr.Button("Fix the domain", variant="primary")

            with gr.Tab("Train"), gr.Row():
                with gr.Column(scale=3):
                    generator = gr.Dropdown(
                        [
                            (f"{g}{'' if gen_registry.get(g).is_dp else ' (NOT DP)'}", g)
                            for g in gen_ids
                        ],
                        value=default_gen,
                        label="Generator",
                    )
                    train_target = gr.Dropdown(
                        label="Target column (optional)",
                        choices=[("(none)", "")],
                        value="",
                        info="the column a model will predict: generators that can weigh it do",
                    )
                    gen_why = gr.Markdown(elem_id="ps-gen-why")
                    # The suggested generator, and the dataset the user picked one for (if
                    # any): browser-side values, read when a suggestion arrives.
                    suggested = gr.Textbox(visible=False)
                    picked_for = gr.Textbox(visible=False)
                    gen_desc = gr.Markdown(describe(default_gen))
                    groups: dict[str, Any] = {}
                    fields: dict[str, list[Any]] = {}
                    for gid in gen_ids:
                        with gr.Accordion(
                            f"Parameters of {gid}", open=True, visible=gid == default_gen
                        ) as group:
                            fields[gid] = []
                            specs = ev.forms[gid]
                            for start in range(0, len(specs), 2):
                                with gr.Row():
                                    fields[gid] += [_field(s) for s in specs[start : start + 2]]
                        groups[gid] = group
                    all_fields = [c for gid in gen_ids for c in fields[gid]]
                    with gr.Accordion("Parameters as JSON (what Train uses)", open=False):
                        params_json = gr.Code(language="json", label="params", interactive=False)
                with gr.Column(scale=2):
                    with gr.Row():
                        epsilon = gr.Number(1.0, label="Target ε", minimum=0)
                        delta = gr.Number(
                            1e-5,
                            label="Target δ",
                            minimum=0,
                            info="well below 1/rows; 0 for pure-DP generators",
                        )
                    # Approximate accountants (GDP) may under-report: never offered for a fit
                    # (and refused by the handlers: registry.settling_accountant).
                    accountant = gr.Dropdown(
                        settling_accountants(), value="rdp", label="Accountant"
                    )
                    gr.Markdown("#### What this will spend")
                    plan_md = gr.Markdown(elem_id="ps-plan")
                    with gr.Row():
                        train_btn = gr.Button("Train", variant="primary")
                        cancel_btn = gr.Button("Cancel training", variant="stop")
                    cancel_note = gr.Markdown(elem_id="ps-cancel-note")
                    progress = gr.HTML(elem_id="ps-progress")
                    losses = gr.LinePlot(
                        x="epoch",
                        y="value",
                        color="loss",
                        height=300,
                        visible=False,
                        label="Losses (on real rows: custodians only)",
                    )

            with gr.Tab("Generate"):
                with gr.Row():
                    gen_run = gr.Dropdown(
                        label="Trained run", choices=[], scale=2, allow_custom_value=True
                    )
                    gen_rows = gr.Number(
                        1000, label="Rows", precision=0, minimum=1, maximum=settings.max_sample_rows
                    )
                    gen_seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                generate_btn = gr.Button("Generate", variant="primary")
                gen_note = gr.Markdown(elem_id="ps-gen-note")
                gen_file = gr.File(label="Download the synthetic table")
                gen_preview = gr.Dataframe(
                    label="Preview (first 20 rows)", interactive=False, max_height=420
                )

            with gr.Tab("Evaluate", visible=False) as eval_tab:
                gr.HTML(views.NOT_DP_BANNER)
                with gr.Row():
                    eval_run = gr.Dropdown(
                        label="Trained run", choices=[], scale=2, allow_custom_value=True
                    )
                    target = gr.Dropdown(
                        label="Target column (utility)",
                        choices=[],
                        value="",
                        allow_custom_value=True,
                        info="default: the target named at training",
                    )
                    eval_sample = gr.Dropdown(
                        label="Synthetic table to score",
                        choices=[],
                        value="",
                        scale=2,
                        allow_custom_value=True,
                        info="default: the release's, as large as the training table (n̂)",
                    )
                evaluate_btn = gr.Button("Evaluate", variant="primary")
                eval_note = gr.Markdown(elem_id="ps-eval-note")
                headline_df = gr.Dataframe(
                    headers=HEADLINE_HEADERS,
                    label="Headline scores",
                    interactive=False,
                    wrap=True,
                    column_widths=["22%", "8%", "7%", "8%", "8%", "7%", "40%"],
                )
                with gr.Tabs():
                    group_dfs = {}
                    for group_name in ("fidelity", "utility", "privacy"):
                        with gr.Tab(group_name.capitalize()):
                            group_dfs[group_name] = gr.Dataframe(
                                headers=METRIC_HEADERS,
                                interactive=False,
                                wrap=True,
                                column_widths=["28%", "8%", "12%", "8%", "44%"],
                            )
                dist_gallery = gr.Gallery(
                    label="Distributions: real (blue) vs synthetic (orange)",
                    columns=3,
                    height="auto",
                    object_fit="contain",
                )
                corr_gallery = gr.Gallery(
                    label="Correlations: real, synthetic, difference",
                    columns=2,
                    height="auto",
                    object_fit="contain",
                )
                with gr.Row():
                    report_link = gr.HTML(elem_id="ps-report-link")
                    report_zip = gr.File(label="Full report (zip)")
                with gr.Accordion("Privacy audit of the run's generator (canaries)", open=False):
                    gr.Markdown(
                        "Trains the run's generator again with canary records on the "
                        "real rows (charged to throwaway ledgers, not to the source) "
                        "and attacks its output: a 95% lower bound on epsilon, to hold "
                        "against the claim. Takes as long as a training or more."
                    )
                    with gr.Row():
                        canaries = gr.Number(100, label="Canaries", precision=0, minimum=4)
                        audit_btn = gr.Button("Audit", elem_id="ps-audit")
                    audit_md = gr.Markdown(elem_id="ps-audit-summary")
                    audit_roc = gr.Image(
                        label="Attack ROC curve", type="filepath", interactive=False
                    )

            with gr.Tab("Budget & runs") as budget_tab:
                budgets_df = gr.Dataframe(
                    headers=BUDGET_HEADERS,
                    label="Budgets of the data sources of your datasets (shared by every user)",
                    interactive=False,
                )
                with gr.Column(visible=False) as budget_admin:
                    with gr.Row():
                        budget_eps = gr.Number(label="New budget ε", minimum=0)
                        budget_delta = gr.Number(label="New budget δ", minimum=0)
                        set_budget_btn = gr.Button(
                            "Set the budget of the current dataset's data source"
                        )
                    with gr.Row():
                        admin_entry = gr.Number(label="Reservation (ledger entry id)", precision=0)
                        admin_note = gr.Textbox(label="Note (why)", scale=2)
                        close_btn = gr.Button("Close the reservation")
                        ack_btn = gr.Button("Acknowledge the non-DP runs")
                ledger_df = gr.Dataframe(
                    headers=LEDGER_HEADERS,
                    interactive=False,
                    wrap=True,
                    label="Ledger of the current dataset's data source",
                )
                runs_df = gr.Dataframe(
                    headers=RUN_HEADERS, interactive=False, wrap=True, label="Your runs"
                )
                with gr.Row():
                    run_lookup = gr.Textbox(label="Run id", scale=2)
                    run_lookup_btn = gr.Button("Show run")
                run_json = gr.JSON(label="Run")

        # -- wiring ------------------------------------------------------------------------

        def g(fn: Any, n_inputs: int | None = None, **options: Any) -> Any:
            return gated(home, fn, n_inputs, **options)

        # The API names of the generator forms' fields (what *values of preview/collect take).
        field_names = [f"{gid}_{spec.name}" for gid in gen_ids for spec in ev.forms[gid]]

        def load_with_request(request: gr.Request) -> Any:
            # The one handler that reads the request beyond its user: the ?run=ID deep link.
            with error_boundary(home):
                wanted = dict(request.query_params or {}).get("run")
                return to_gradio(ev.on_load(workspace_for(home, request), wanted))

        run_value = gr.State()
        custodian_blocks = [source_id, domain_controls, losses, eval_tab, budget_admin]
        assert len(custodian_blocks) == CUSTODIAN_BLOCKS
        demo.load(
            load_with_request,
            None,
            [user_badge, notice, dataset, server_file, run_value, *custodian_blocks],
            api_name="session",
        ).then(
            # A training goes on without the page: a reload follows it again (its flow run).
            gated_stream(home, ev.resume),
            None,
            [progress, losses],
            api_name="resume_training",
            concurrency_limit=None,
            show_progress="hidden",
        )
        dataset_outputs = [
            dataset_md,
            schema_df,
            excluded_md,
            review_md,
            gen_run,
            eval_run,
            delta,
            domain_mode,
        ]
        domain_inputs = [dataset, domain_mode, domain_eps, domain_delta]
        dataset.change(
            g(ev.select_dataset), [dataset, run_value], dataset_outputs, api_name="select_dataset"
        ).then(g(ev.domain_cost_text), domain_inputs, domain_cost, api_visibility="undocumented")
        # The progress tracker would paint a failed add's "Error" over the dataset box; the
        # error's message shows in its own pop-up anyway.
        add_upload_btn.click(
            g(ev.add_upload),
            [upload, new_name, holdout, leave_out, source_id],
            [dataset, upload],
            api_name="add_upload",
            show_progress="hidden",
        )
        add_server_btn.click(
            g(ev.add_server),
            [server_file, new_name, holdout, leave_out, source_id],
            dataset,
            api_name="add_server_file",
            show_progress="hidden",
        )
        edit_outputs = [schema_df, dataset_md, review_md]
        left_out_outputs = [left_out_col, excluded_md]
        dataset.change(g(ev.left_out), dataset, left_out_outputs, api_visibility="undocumented")
        include_btn.click(
            g(ev.include_column),
            [dataset, schema_df, left_out_col],
            [*edit_outputs, *left_out_outputs],
            api_name="include_column",
            show_progress="hidden",
        )
        # A refused step would paint "Error" over the table it came from; its message shows in
        # a pop-up anyway.
        save_schema_btn.click(
            g(ev.save_schema),
            [dataset, schema_df],
            edit_outputs,
            api_name="save_schema",
            show_progress="hidden",
        ).then(g(ev.left_out), dataset, left_out_outputs, api_visibility="undocumented")
        round_btn.click(
            g(ev.round_limits),
            [dataset, schema_df],
            edit_outputs,
            api_name="round_limits",
            show_progress="hidden",
        ).then(g(ev.left_out), dataset, left_out_outputs, api_visibility="undocumented")
        domain_mode.change(
            g(ev.show_dp_inputs), domain_mode, domain_dp_row, api_visibility="undocumented"
        )
        gr.on(
            [domain_mode.change, domain_eps.change, domain_delta.change],
            g(ev.domain_cost_text),
            domain_inputs,
            domain_cost,
            api_name="domain_cost",
        )
        # Its progress (a wide table takes a while) shows on the cost line by the button, not
        # on the table: a refused step would paint "Error" over it (the message pops up anyway).
        domain_btn.click(
            g(ev.fix_domain, progress=True),
            [dataset, schema_df, domain_mode, domain_eps, domain_delta, accept_flagged],
            edit_outputs,
            api_name="set_domain",
            show_progress="full",
            show_progress_on=domain_cost,
        ).then(
            g(ev.domain_cost_text), domain_inputs, domain_cost, api_visibility="undocumented"
        ).then(g(ev.left_out), dataset, left_out_outputs, api_visibility="undocumented")
        generator.change(
            g(ev.choose_generator),
            generator,
            [gen_desc, *groups.values()],
            api_name="choose_generator",
        )
        # The suggestion never overrides a generator the user picked for this dataset: a pick
        # records the dataset it was made for (in the browser, at once), a new dataset forgets
        # it, and the suggestion is applied in the browser only if no pick holds when it
        # arrives (an answer that comes late, after a reload, used to switch a pick back).
        generator.input(None, dataset, picked_for, js="(d) => d", api_visibility="private")
        dataset.change(None, None, picked_for, js="() => ''", api_visibility="private")
        apply_suggestion = {
            "fn": None,
            "inputs": [suggested, generator, picked_for, dataset],
            "outputs": generator,
            "js": "(s, g, p, d) => (p && p === d) ? g : (s || g)",
            "api_visibility": "private",
        }
        dataset.change(
            g(ev.train_targets),
            dataset,
            [train_target, suggested, gen_why],
            api_name="train_targets",
        ).then(**apply_suggestion)
        train_target.input(
            g(ev.suggest_generator),
            [dataset, train_target],
            [suggested, gen_why],
            api_name="suggest_generator",
        ).then(**apply_suggestion)
        plan_inputs = [dataset, generator, params_json, epsilon, delta, accountant]
        gr.on(
            [
                generator.change,
                epsilon.change,
                delta.change,
                accountant.change,
                dataset.change,
                *(f.change for f in all_fields),
            ],
            g(ev.preview, 5 + len(all_fields), names=field_names),
            [dataset, generator, epsilon, delta, accountant, *all_fields],
            [params_json, plan_md],
            api_name="preview_cost",
            trigger_mode="always_last",
        )
        train_btn.click(
            g(ev.collect, 1 + len(all_fields), names=field_names),
            [generator, *all_fields],
            params_json,
            api_visibility="undocumented",
        ).success(
            gated_stream(home, ev.train),
            [*plan_inputs, train_target],
            [progress, losses],
            api_name="train",
            concurrency_limit=None,
        ).then(
            g(ev.after_train),
            dataset,
            [gen_run, eval_run, dataset_md],
            api_visibility="undocumented",
        ).then(g(ev.preview_cost), plan_inputs, plan_md, api_visibility="undocumented")
        cancel_btn.click(g(ev.cancel), None, cancel_note, api_name="cancel_training")
        generate_btn.click(
            g(ev.generate, progress=True),
            [gen_run, gen_rows, gen_seed],
            [gen_file, gen_preview, gen_note],
            api_name="generate",
        )
        eval_run.change(g(ev.targets), eval_run, [target, eval_sample], api_name="targets")
        evaluate_btn.click(
            g(ev.evaluate, progress=True),
            [eval_run, target, eval_sample],
            [
                headline_df,
                *group_dfs.values(),
                dist_gallery,
                corr_gallery,
                report_link,
                report_zip,
                eval_note,
            ],
            api_name="evaluate",
            concurrency_limit=2,
        )
        audit_btn.click(
            g(ev.audit, progress=True),
            [eval_run, canaries],
            [audit_md, audit_roc],
            api_name="audit",
            concurrency_limit=1,
            show_progress_on=audit_md,
        )
        overview_inputs = [dataset]
        overview_outputs = [budgets_df, ledger_df, runs_df, budget_eps, budget_delta]
        dataset.change(g(ev.overview), overview_inputs, overview_outputs, api_name="overview")
        # Opening the tab refreshes the tables only: inputs typed meanwhile stay as they are.
        budget_tab.select(
            g(ev.refresh_overview), overview_inputs, overview_outputs, api_visibility="undocumented"
        )
        set_budget_btn.click(
            g(ev.set_budget),
            [dataset, budget_eps, budget_delta],
            [*overview_outputs, dataset_md],
            api_name="set_budget",
        )
        close_btn.click(
            g(ev.close_reservation),
            [dataset, admin_entry, admin_note],
            [*overview_outputs, dataset_md],
            api_name="close_reservation",
        )
        ack_btn.click(
            g(ev.acknowledge),
            [dataset, admin_note],
            [*overview_outputs, dataset_md],
            api_name="acknowledge_non_dp",
        )
        run_lookup_btn.click(g(ev.run_details), run_lookup, run_json, api_name="run_details")
        server_file.focus(g(ev.server_list), None, server_file, api_visibility="undocumented")
    queued: gr.Blocks = demo.queue(default_concurrency_limit=8)
    return queued


def __getattr__(name: str) -> Any:
    # `demo` for Gradio's reload mode, built on first access, not at import.
    if name == "demo":
        return build_demo()
    raise AttributeError(name)
