"""The page's event handlers: what each button and selection does, over the user's workspace.

:class:`PageEvents` holds the operator's settings and the app's flow runs
(:class:`~privsynth_ui.training.WebFlows`); each method takes the caller's
:class:`~privsynth_ui.workspace.Workspace` first (given by :func:`privsynth_ui.gate.gated`, from
the session, never from the client) and the page's inputs, calls the ``*_handlers`` modules
(data, domain, runs, evaluations, budget), and returns what the page shows: values, and
:class:`~privsynth_ui.views.Update` for a change to a component's choices, visibility or label.
No Gradio here: :mod:`privsynth_ui.gate` turns each ``Update`` into Gradio's ``gr.update`` and
gives the handlers Gradio's pop-ups (``notify``), and ``app.py`` lays the page out and wires
these to it, so every handler runs (and is tested) without Gradio.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from privsynth_core.errors import BudgetError, DomainError
from privsynth_core.generator import Progress
from privsynth_core.registry import generators
from privsynth_flows.progress import read_losses
from privsynth_flows.served import RunView

from . import budget_handlers as budget
from . import data_handlers as data
from . import domain_handlers as domain
from . import eval_handlers as evals
from . import run_handlers as runs
from . import views
from .forms import collect_params, field_specs
from .settings import UISettings
from .training import WebFlows
from .views import Update, redact_paths
from .workspace import DatasetRecord, NotFoundError, RunRecord, Workspace

log = logging.getLogger("privsynth.ui")

#: How many custodian-only blocks of the page ``on_load`` shows or hides (see app.py).
CUSTODIAN_BLOCKS = 5
ANALYST_SCHEMA_LABEL = "Schema: the fixed domain (not fixed yet)"
NOT_FIXED_FOR_ANALYSTS = (
    "The domain of this data source is **not fixed yet**. A data custodian reviews the draft "
    "inferred from the rows (it is not private, so analysts do not see it) and declares it "
    "public or learns it with DP; then it shows here and you can train."
)

BUDGET_HEADERS = [
    "data source",
    "your datasets",
    "budget ε",
    "budget δ",
    "spent ε",
    "spent δ",
    "left ε",
    "left δ",
    "non-DP runs",
]
LEDGER_HEADERS = ["entry", "time", "mechanism", "status", "ε", "δ", "run"]
RUN_HEADERS = [
    "run",
    "created",
    "dataset",
    "generator",
    "target ε",
    "ε end to end",
    "status",
    "note",
]
HEADLINE_HEADERS = [
    "score",
    "group",
    "value",
    "real-data ceiling",
    "shuffled floor",
    "verdict",
    "why",
]
METRIC_HEADERS = ["metric", "value", "direction", "verdict", "why"]


class Notify(Protocol):
    """Shows the caller a pop-up on the page: a note (``duration`` seconds; None: until
    closed), or a warning."""

    def __call__(
        self,
        message: str,
        *,
        duration: float | None = 4,
        title: str | None = None,
        warning: bool = False,
    ) -> None: ...


def log_notice(
    message: str, *, duration: float | None = 4, title: str | None = None, warning: bool = False
) -> None:
    """A :class:`Notify` for handlers run with no page (tests, scripts): the server log."""
    log.log(
        logging.WARNING if warning else logging.INFO, "%s%s", f"{title}: " if title else "", message
    )


class PageEvents:
    """The handlers of one page (one app), sharing its settings and flow runs.

    Args:
        settings: the operator's settings.
        flows: the app's flow runs (every training, generation, evaluation, audit).
        notify: how a handler's pop-ups reach the caller's page (the page's Gradio adapter,
            :func:`privsynth_ui.gate.notify`; default: the server log).
    """

    def __init__(
        self, settings: UISettings, flows: WebFlows, *, notify: Notify = log_notice
    ) -> None:
        self.settings = settings
        self.flows = flows
        self.notify = notify
        self.gen_ids = generators().names()
        self.forms = {g: field_specs(generators().get(g).Params) for g in self.gen_ids}

    def stage(self, path: Path, name: str | None = None) -> str:
        """A copy of ``path`` in the app's cache, for the browser to fetch."""
        return views.stage(self.settings.cache_dir, path, name=name)

    def on_load(self, ws: Workspace, wanted: str | None) -> tuple[Any, ...]:
        """The page as it opens: who is signed in, their datasets, a deep-linked run (?run=ID),
        and the custodian's controls shown only to custodians (the handlers refuse them to
        analysts whatever the page shows)."""
        choices = dataset_choices(ws)
        current = choices[0][1] if choices else None
        message, run_value = "", None
        if wanted:
            try:
                record = ws.run(wanted)
                current, run_value = record.dataset_id, record.run_id
                message = f"Opened run `{record.run_id}`."
            except NotFoundError:
                message = f"Run `{str(wanted)[:40]}` not found."
        # Plain HTML: a Markdown link would open a new tab, and signing out belongs in this one.
        badge = (
            f"<p>Signed in as <b>{html.escape(ws.user)}</b> ({ws.role}) · "
            f"<a href='/logout' target='_self'>Sign out</a></p>"
        )
        custodian = Update(visible=ws.is_custodian)
        return (
            badge,
            message,
            Update(choices=choices, value=current),
            Update(choices=data.server_files(self.settings)),
            run_value,
            *([custodian] * CUSTODIAN_BLOCKS),
        )

    def select_dataset(
        self, ws: Workspace, dataset_id: str | None, wanted_run: str | None
    ) -> tuple[Any, ...]:
        """Show a dataset: its summary, schema table, runs and default delta."""
        if not dataset_id:
            return (
                views.dataset_info(ws, None),
                Update(),
                "",
                "",
                Update(choices=[]),
                Update(choices=[]),
                Update(),
                None,
            )
        record = ws.dataset(dataset_id)
        choices = run_choices(ws, record.dataset_id)
        latest = choices[0][1] if choices else None
        if wanted_run in {value for _, value in choices}:
            latest = wanted_run  # a deep link (?run=ID) to one of this dataset's runs
        return (
            views.dataset_info(ws, record),
            *self._schema_view(ws, record),
            Update(choices=choices, value=latest),
            Update(choices=choices, value=latest),
            # Empty delta: the default from the released row count (never the exact size).
            Update(value=None),
            None,
        )  # nothing preselected: the custodian chooses public or DP each time

    @staticmethod
    def _schema_view(ws: Workspace, record: DatasetRecord) -> tuple[Any, str, str]:
        """The schema table, the columns left out, and the review summary, as the caller may
        see them (an analyst: the fixed domain only, never the draft)."""
        schema = domain.visible_schema(ws, record)
        if schema is None:
            return (
                Update(
                    value=views.table_value([], domain.SCHEMA_HEADERS),
                    interactive=False,
                    label=ANALYST_SCHEMA_LABEL,
                ),
                "",
                NOT_FIXED_FOR_ANALYSTS,
            )
        editable = ws.is_custodian
        how = "declared public" if schema.domain == "public" else "learned with DP"
        label = (
            "Schema: the draft inferred from the rows (NOT private; custodians only)"
            if schema.domain == "inferred"
            else f"Schema: the fixed domain ({how})"
        )
        return (
            Update(
                value=views.table_value(domain.schema_rows(schema), domain.SCHEMA_HEADERS),
                interactive=editable,
                label=label,
            ),
            domain.excluded_text(schema),
            domain.review_text(schema) if editable else "",
        )

    def add_upload(
        self,
        ws: Workspace,
        upload: Any,
        name: str,
        holdout_share: float,
        exclude: str,
        source_id: str,
    ) -> Any:
        """Add an uploaded CSV/Parquet file as a new dataset (an extract of its data source)."""
        record = data.add_uploaded(
            ws,
            self.settings,
            upload,
            name=name,
            holdout_share=holdout_share,
            exclude=exclude,
            source_id=source_id or "",
        )
        return Update(choices=dataset_choices(ws), value=record.dataset_id), None

    def add_server(
        self,
        ws: Workspace,
        server_file: str,
        name: str,
        holdout_share: float,
        exclude: str,
        source_id: str,
    ) -> Any:
        """Add a file from an operator-allowed server folder as a new dataset."""
        record = data.add_server_file(
            ws,
            self.settings,
            server_file,
            name=name,
            holdout_share=holdout_share,
            exclude=exclude,
            source_id=source_id or "",
        )
        return Update(choices=dataset_choices(ws), value=record.dataset_id)

    def _after_edit(self, ws: Workspace, dataset_id: str) -> tuple[Any, ...]:
        record = ws.dataset(dataset_id)
        table, _, review = self._schema_view(ws, record)
        return table, views.dataset_info(ws, record), review

    def save_schema(self, ws: Workspace, dataset_id: str, rows: Any) -> Any:
        """Save the edited schema table as the dataset's draft (custodians)."""
        domain.save_draft(ws, dataset_id, table_rows(rows))
        self.notify(
            "Draft saved; fix the domain again before anyone trains on this source.", duration=4
        )
        return self._after_edit(ws, dataset_id)

    def include_column(self, ws: Workspace, dataset_id: str, rows: Any, column: str) -> Any:
        """Bring back a column left out of the draft (custodians; before the domain is fixed)."""
        done = domain.include_column(
            ws, dataset_id, table_rows(rows), column, dask_address=self.settings.dask_address
        )
        self.notify(f"{done} Draft saved.", duration=6)
        return (*self._after_edit(ws, dataset_id), *self.left_out(ws, dataset_id))

    def left_out(self, ws: Workspace, dataset_id: str | None) -> tuple[Any, str]:
        """The columns left out of the dataset's draft, to bring back (custodians), and the
        list of them with why."""
        if not dataset_id or not ws.is_custodian:
            return Update(choices=[], value=None), ""
        schema = domain.visible_schema(ws, ws.dataset(dataset_id))
        names = [e.name for e in schema.excluded] if schema is not None else []
        return Update(choices=names, value=None), domain.excluded_text(schema)

    def round_limits(self, ws: Workspace, dataset_id: str, rows: Any) -> Any:
        """Replace the bounds that are the data's own min/max by round public limits."""
        domain.use_round_limits(ws, dataset_id, table_rows(rows))
        self.notify("Flagged bounds replaced by round public limits (draft saved).", duration=4)
        return self._after_edit(ws, dataset_id)

    def fix_domain(
        self,
        ws: Workspace,
        dataset_id: str,
        rows: Any,
        mode: str | None,
        epsilon: float | None,
        delta: float | None,
        accept_flagged: bool,
        *,
        progress: Any = None,
    ) -> Any:
        """Fix the data source's domain: declared public, or learned with DP (charged).

        A failed DP learning leaves the domain in force as it was; it may have charged the
        columns it learned before failing, so the page shows the budget as it is now and says
        what failed and which domain still holds (the edited table stays as typed)."""
        if progress is not None:
            # A wide table takes a while to check (and a DP domain to learn): say so.
            progress(
                None,
                desc="Learning the domain with DP, column by column…"
                if mode == "dp"
                else "Checking every row against the declared domain…",
            )
        try:
            record = domain.set_domain(
                ws,
                dataset_id,
                table_rows(rows),
                mode=mode,
                epsilon=epsilon,
                delta=delta,
                accept_flagged=bool(accept_flagged),
                progress=None if progress is None else _column_progress(progress),
                # A partitioned dataset's passes run on the operator's cluster (else a local one).
                dask_address=self.settings.dask_address,
            )
        except (DomainError, BudgetError) as exc:
            # Only the learning's own failures: a refused caller, an unknown dataset or a
            # table with problems are errors as before (nothing was tried).
            if mode != "dp":
                raise
            current = ws.dataset(dataset_id)
            state = domain.domain_of(ws, current)
            kept = (
                "The domain is not fixed: nobody can train on this source yet."
                if not state.fixed
                else "The domain in force is unchanged: "
                + (
                    "declared public"
                    if state.mode == "public"
                    else f"learned with DP for ε = {state.epsilon:g}"
                )
                + (f" by {state.fixed_by}." if state.fixed_by else ".")
            )
            failed = redact_paths(f"Learning the domain with DP failed: {exc}", ws.home)
            self.notify(f"{failed} {kept}", title="Domain not learned", duration=None, warning=True)
            return (
                Update(),
                views.dataset_info(ws, current),
                f"**{html.escape(failed)}**\n\n{html.escape(kept)}",
            )
        state = domain.domain_of(ws, record)
        self.notify(
            "Domain fixed for every user of this data source: "
            + (
                "declared public."
                if state.mode == "public"
                else f"learned with DP for ε = {state.epsilon:g}."
            ),
            duration=4,
        )
        return self._after_edit(ws, dataset_id)

    def train_targets(self, ws: Workspace, dataset_id: str | None) -> tuple[Any, Any, str]:
        """A dataset's columns as training targets (none chosen), and the generator that serves
        it best, with why."""
        schema = domain.visible_schema(ws, ws.dataset(dataset_id)) if dataset_id else None
        names = schema.names if schema is not None else []
        return (
            Update(choices=[("(none)", ""), *((n, n) for n in names)], value=""),
            *self.suggest_generator(ws, dataset_id, ""),
        )

    def suggest_generator(
        self, ws: Workspace, dataset_id: str | None, target: str | None
    ) -> tuple[Any, str]:
        """The generator choice's default: the installed DP generator that serves the dataset
        (and its target) best (:func:`privsynth_core.registry.choose_generator`), and why."""
        found = runs.suggested_generator(ws, dataset_id, target or None)
        if found is None:
            return Update(value=""), ""  # nothing to suggest: the page keeps the choice
        generator, why = found
        return Update(value=generator), f"Suggested: **{generator}**: {why}."

    def choose_generator(self, ws: Workspace, generator: str) -> list[Any]:
        """Show the chosen generator's description and parameter form."""
        return [describe(generator)] + [Update(visible=g == generator) for g in self.gen_ids]

    def collect(self, ws: Workspace, generator: str, *values: Any) -> str:
        """The chosen generator's form values as a JSON object of parameters."""
        if generator not in self.forms:
            generators().get(str(generator))  # raises UnknownPluginError listing the valid ids
        offset = 0
        for g in self.gen_ids:
            if g == generator:
                break
            offset += len(self.forms[g])
        own = list(values[offset : offset + len(self.forms[generator])])
        return json.dumps(collect_params(self.forms[generator], own), indent=2)

    def preview(
        self,
        ws: Workspace,
        dataset_id: str,
        generator: str,
        epsilon: float,
        delta: float,
        accountant: str,
        *values: Any,
    ) -> tuple[str, str]:
        """The form's parameters as JSON, and what a training with them would spend.

        One step, not two chained ones: a chained step is dropped while its previous run is
        still pending, and the page would show the price of older values.
        """
        params = self.collect(ws, generator, *values)
        return params, runs.plan_text(
            ws, dataset_id, generator, parse_params(params), epsilon, delta, accountant
        )

    def preview_cost(
        self,
        ws: Workspace,
        dataset_id: str,
        generator: str,
        params: str,
        epsilon: float,
        delta: float,
        accountant: str,
    ) -> str:
        """What a training would spend, before anything is charged."""
        return runs.plan_text(
            ws, dataset_id, generator, parse_params(params), epsilon, delta, accountant
        )

    def train(
        self,
        ws: Workspace,
        dataset_id: str,
        generator: str,
        params: str,
        epsilon: float,
        delta: float,
        accountant: str,
        target: str | None = None,
    ) -> Iterator[Any]:
        """Train a generator on the dataset (a ``synthesize`` flow run), yielding its live
        progress until it ends. ``target``: the column a model will predict, if any (the run
        configuration's ``target``)."""
        plan = runs.check_training(
            ws,
            dataset_id,
            generator,
            parse_params(params),
            epsilon,
            delta,
            accountant,
            target=target or None,
        )
        # The cluster is the operator's setting; nothing a user sends names one.
        record = runs.new_run(ws, plan, dask_address=self.settings.dask_address)
        record = runs.train(ws, record, self.flows)
        yield from self.watch(ws, record)

    def resume(self, ws: Workspace) -> Iterator[Any]:
        """After a reload: the caller's latest training, followed live if it still runs."""
        record = runs.latest_training(ws)
        if record is None:
            yield "", Update(value=None)
            return
        yield from self.watch(ws, record)

    def watch(self, ws: Workspace, record: RunRecord) -> Iterator[tuple[str, Any]]:
        """The training's progress (:meth:`privsynth_ui.training.WebFlows.follow`) as the page
        shows it. Losses are computed on the real rows: only a custodian sees them, read from
        the run's folder (they never pass through Prefect)."""
        for now, view in self.flows.follow(ws, record, refresh=runs.refresh):
            losses = read_losses(now.losses_path) if ws.is_custodian else []
            plot = loss_plot(losses) if ws.is_custodian else Update(value=None)
            yield views.progress_html(now, view, show_losses=ws.is_custodian, losses=losses), plot

    def cancel(self, ws: Workspace) -> str:
        """Cancel the caller's running training: its flow run is cancelled in Prefect."""
        record = runs.cancel(ws, self.flows)
        if record is None:
            return "No training of yours is running."
        return (
            f"Cancelling run `{record.run_id}` (Prefect flow run `{record.flow_run_id}`). "
            f"If it has started training, the ledger keeps its whole reservation: the data "
            f"has been used."
        )

    def after_train(self, ws: Workspace, dataset_id: str | None) -> tuple[Any, ...]:
        """Refresh the run lists and the dataset summary after a training."""
        choices = run_choices(ws, dataset_id)
        latest = choices[0][1] if choices else None
        record = ws.dataset(dataset_id) if dataset_id else None
        return (
            Update(choices=choices, value=latest),
            Update(choices=choices, value=latest),
            views.dataset_info(ws, record),
        )

    def generate(
        self, ws: Workspace, run_id: str, rows: float, seed: float, *, progress: Any = None
    ) -> tuple[Any, ...]:
        """Draw synthetic rows from a trained run (a ``generate`` flow run): file, preview and a
        note on its privacy."""
        path, frame = runs.generate(
            ws, self.settings, run_id, rows, seed, self.flows, _shown(progress, "Drawing rows")
        )
        record = ws.run(run_id)
        note = (
            f"{frame.height:,} rows drawn from run `{record.run_id}` "
            f"({runs.privacy_text(record)}): post-processing of the DP model, free and "
            f"shareable."
            if record.private
            else "⚠ **NOT differentially private**: these rows must not be released."
        )
        return self.stage(path), frame.head(20).to_pandas(), note

    def targets(self, ws: Workspace, run_id: str | None) -> tuple[Any, Any]:
        """The columns a utility metric can predict for a run (default: the target named at
        training, else none), and the tables it can score (default: the release's, at the
        training table's size)."""
        columns = runs.target_choices(ws, run_id)
        trained = runs.trained_target(ws.run(run_id)) if run_id else None
        samples = evals.sample_choices(ws, run_id)
        return (
            Update(
                choices=[("(none)", ""), *((c, c) for c in columns)],
                value=trained if trained in columns else "",
            ),
            Update(choices=samples, value=evals.RELEASE_SAMPLE),
        )

    def evaluate(
        self,
        ws: Workspace,
        run_id: str,
        target: str | None,
        sample: str | None = evals.RELEASE_SAMPLE,
        *,
        progress: Any = None,
    ) -> tuple[Any, ...]:
        """Evaluate a synthetic table of a run against the real rows (an ``evaluate`` flow
        run; NOT DP). ``target``: ``""`` ("(none)") scores no utility, whatever the training's."""
        view = evals.evaluate(
            ws,
            run_id,
            target=target,
            flows=self.flows,
            sample=sample,
            progress=_shown(progress, "Evaluating"),
        )
        link = (
            f"<p><a href='/files/runs/{run_id}/report/report.html' target='_blank' "
            f"rel='noopener'>Open the full report</a> (NOT DP: custodian-only)</p>"
        )
        note = view.what + "".join(f"\n- {n}" for n in view.notes)
        return (
            views.table_value(view.headlines, HEADLINE_HEADERS),
            *(
                views.table_value(view.groups.get(g, []), METRIC_HEADERS)
                for g in ("fidelity", "utility", "privacy")
            ),
            [(self.stage(p), p.stem.split("_", 2)[-1]) for p in view.distribution_plots],
            [(self.stage(p), p.stem.replace("_", " ")) for p in view.correlation_plots],
            link,
            self.stage(view.report_dir, name="privsynth-report-NOT-DP"),
            note,
        )

    def audit(
        self, ws: Workspace, run_id: str, canaries: float, *, progress: Any = None
    ) -> tuple[Any, ...]:
        """Audit a run's generator with canaries (an ``audit`` flow run; NOT DP)."""
        view = evals.audit(
            ws, run_id, canaries=canaries, flows=self.flows, progress=_shown(progress, "Auditing")
        )
        return view.summary, self.stage(view.roc) if view.roc is not None else None

    def overview(self, ws: Workspace, dataset_id: str | None) -> tuple[Any, ...]:
        """Budgets of every dataset, the current dataset's ledger, every run."""
        ledger = budget.ledger_rows(ws, dataset_id) if dataset_id else []
        total = budget.budget_of(ws, dataset_id) if dataset_id else None
        return (
            views.table_value(budget.budget_rows(ws), BUDGET_HEADERS),
            views.table_value(ledger, LEDGER_HEADERS),
            views.table_value(runs.run_rows(ws, self.flows), RUN_HEADERS),
            total.epsilon if total else None,
            total.delta if total else None,
        )

    def refresh_overview(self, ws: Workspace, dataset_id: str | None) -> tuple[Any, ...]:
        """The tables of :meth:`overview`, leaving the budget inputs as the user typed them."""
        return (*self.overview(ws, dataset_id)[:3], Update(), Update())

    def set_budget(
        self, ws: Workspace, dataset_id: str, epsilon: float, delta: float
    ) -> tuple[Any, ...]:
        """Change the current dataset's budget (never below what is spent)."""
        budget.set_budget(ws, dataset_id, epsilon, delta)
        return (*self.overview(ws, dataset_id), views.dataset_info(ws, ws.dataset(dataset_id)))

    def acknowledge(self, ws: Workspace, dataset_id: str, note: str) -> tuple[Any, ...]:
        """Acknowledge the non-DP runs on the current dataset's data source (custodians)."""
        count = budget.acknowledge_non_dp(ws, dataset_id, note)
        self.notify(f"{count} non-DP run(s) acknowledged.", duration=4)
        return (*self.overview(ws, dataset_id), views.dataset_info(ws, ws.dataset(dataset_id)))

    def close_reservation(
        self, ws: Workspace, dataset_id: str, entry_id: Any, note: str
    ) -> tuple[Any, ...]:
        """Close a reservation left open by a training that died (custodians)."""
        running = runs.trainings_in_flight(ws, dataset_id)
        budget.close_reservation(ws, dataset_id, entry_id, note, running)
        self.notify("Reservation closed: recorded as spent in full.", duration=4)
        return (*self.overview(ws, dataset_id), views.dataset_info(ws, ws.dataset(dataset_id)))

    def run_details(self, ws: Workspace, run_id: str) -> dict[str, Any]:
        """A run's record, by id (only the caller's own runs)."""
        return runs.run_details(ws, run_id, self.flows)

    def domain_cost_text(
        self, ws: Workspace, dataset_id: str | None, mode: str | None, epsilon: float, delta: float
    ) -> str:
        """What the chosen domain step would cost."""
        return domain.domain_cost_text(ws, dataset_id, mode, epsilon, delta)

    def show_dp_inputs(self, ws: Workspace, mode: str) -> Any:
        """Show the epsilon/delta inputs only for a DP domain."""
        return Update(visible=mode == "dp")

    def server_list(self, ws: Workspace) -> Any:
        """The files of the operator-allowed server folders."""
        return Update(choices=data.server_files(self.settings))


def _shown(progress: Any, what: str) -> Callable[[RunView, float], None] | None:
    """What tells Gradio's progress tracker (``progress``, None: nobody) how a flow run a page
    step waits for goes: its tasks done, and a line of its state and steps."""
    if progress is None:
        return None

    def show(view: RunView, seconds: float) -> None:
        done = sum(kind == "COMPLETED" for _, kind in view.tasks)
        # Gradio shows the line (desc) only with a progress level: the tasks done of those
        # started so far (with no total it showed "N tasks" alone, never the state and steps).
        progress(
            (done, max(len(view.tasks), 1)), desc=views.step_text(what, view, seconds), unit="tasks"
        )

    return show


def _column_progress(progress: Any) -> Callable[[Progress], None]:
    """What tells Gradio's progress tracker (``progress``) how learning a DP domain goes: the
    columns learned of how many (a report carries nothing read off the rows)."""

    def show(report: Progress) -> None:
        progress(
            (report.epoch, report.epochs),
            desc=f"Learning the domain with DP: column {report.epoch} of {report.epochs}",
            unit="columns",
        )

    return show


def dataset_choices(ws: Workspace) -> list[tuple[str, str]]:
    """(label, id) of the user's datasets, newest first (exact sizes for custodians only)."""
    return [(d.label(exact_size=ws.is_custodian), d.dataset_id) for d in ws.datasets()]


def run_choices(ws: Workspace, dataset_id: str | None) -> list[tuple[str, str]]:
    """(label, id) of the user's finished runs (of one dataset), newest first."""
    return [(r.label, r.run_id) for r in ws.runs(dataset_id or None) if r.status == "done"]


def loss_plot(losses: list[dict[str, Any]]) -> Any:
    """The loss plot's update, with its colours named in the label (the legend gets clipped)."""
    frame = views.loss_frame(losses)
    if frame is None:
        return Update(value=None)
    names = sorted(set(frame["loss"]))
    colours = dict(zip(names, views.PLOT_COLOURS, strict=False))
    legend = ", ".join(f"{n} ({views.COLOUR_NAMES[c]})" for n, c in colours.items())
    return Update(
        value=frame,
        color_map=colours,
        label=f"Losses per epoch: {legend} (on real rows: for you, not released)",
    )


def describe(generator_id: str | None) -> str:
    """A generator's description, flagged when it is not differentially private."""
    if not generator_id:
        return "No generator is installed."
    cls = generators().get(generator_id)
    label = "" if cls.is_dp else "⚠ **NOT differentially private.** "
    return label + (cls.description or generator_id)


def table_rows(value: Any) -> list[list[Any]]:
    """Rows of a Dataframe value (pandas frame, dict or list)."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):
        return [list(r) for r in value.values.tolist()]
    if isinstance(value, dict):
        return [list(r) for r in value.get("data", [])]
    return [list(r) for r in value]


def parse_params(text: str | None) -> dict[str, Any]:
    """The parameters JSON object sent with a training request.

    Raises:
        ConfigError: not JSON, or not an object.
    """
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
