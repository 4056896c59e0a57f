"""What the Train and Generate tabs do: check and price a training, then start it, follow it and
draw rows from it, each a Prefect flow run (:mod:`privsynth_ui.training`).

- :func:`check_training` validates a request and prices it (through
  :mod:`privsynth_core.service`) before anything runs; :func:`new_run` records the run and writes
  its configuration (:mod:`privsynth_ui.run_setup`); :func:`train` submits its ``synthesize``
  flow run, the flow ``privsynth run`` uses: the model store trains and pays an identical fit
  once, and the run directory is ``privsynth run``'s (``release/`` + ``custodian/``).
- :func:`refresh` brings a run's record up to date from its flow run's state in Prefect's API,
  and records what its release states once it has completed.
- :func:`generate` samples rows from a run's model with the ``generate`` flow (post-processing).

Evaluations and audits (custodians only) are :mod:`privsynth_ui.eval_handlers`. Every budget is
a data source's (:mod:`privsynth_ui.budget_handlers`); an analyst trains DP generators within
it, never a non-DP one. Nothing here imports Gradio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import BudgetNotSetError, ConfigError, DomainError, GeneratorError
from privsynth_core.privacy.ledger import short_key
from privsynth_core.service import spending_lines

from .budget_handlers import noisy_rows, num, source_status
from .domain_handlers import domain_of
from .workspace import DatasetRecord, RunRecord, Workspace, now

if TYPE_CHECKING:
    from collections.abc import Callable

    import polars as pl

    from privsynth_flows.served import RunView

    from .settings import UISettings
    from .training import WebFlows


@dataclass(frozen=True)
class TrainingRequest:
    """A validated training request: nothing has been charged or written yet.

    ``epsilon``/``delta`` are the target; ``delta`` None means the default from the released
    row count (0 for a pure-epsilon generator).
    """

    dataset: DatasetRecord
    generator: str
    params: dict[str, Any]
    epsilon: float | None
    delta: float | None
    accountant: str
    #: the column a model will predict, if the user named one (weighed by the generators
    #: that can: :meth:`privsynth_core.generator.Generator.params_for_target`)
    target: str | None = None

    @property
    def private(self) -> bool:
        """Whether the run is a DP fit."""
        return self.epsilon is not None


def check_training(
    ws: Workspace,
    dataset_id: str,
    generator_id: str,
    params: dict[str, Any],
    epsilon: float | None,
    delta: float | None,
    accountant: str,
    target: str | None = None,
) -> TrainingRequest:
    """Validate a training request before any work: dataset, domain, plugin, params, target,
    budget.

    Raises:
        NotFoundError, DomainError, UnknownPluginError, ConfigError, BudgetExceededError.
    """
    from privsynth_core.errors import BudgetExceededError
    from privsynth_core.privacy.count import count_epsilon
    from privsynth_core.registry import generators, settling_accountant
    from privsynth_core.runs.sweep import DEFAULT_DELTA_BOUND

    dataset = ws.dataset(dataset_id)
    cls = generators().get(str(generator_id or ""))
    normalised = cls.make_params(dict(params or {})).model_dump(mode="json")
    if dataset.partitioned and not cls.fits_from_partitions:
        from privsynth_core.generator import partitioned_refusal

        from .partitioned import NOT_AVAILABLE

        # The flow would refuse it too, but only after a run folder and a flow run exist.
        raise ConfigError(
            f"{cls.generator_id} is {NOT_AVAILABLE}: " + partitioned_refusal(cls.generator_id)
        )
    if not cls.is_dp:
        ws.require_custodian(
            f"train {cls.generator_id}, which is NOT differentially private "
            f"(its model and rows must never leave the custodian)"
        )
    # A run reads a reviewed domain (the flow refuses a draft), whatever the generator.
    if not domain_of(ws, dataset).fixed:
        raise DomainError(
            "the domain of this data source is not fixed yet: "
            + (
                "on the Data tab, declare it public or learn it with DP, then train"
                if ws.is_custodian
                else "ask the data custodian to fix it, then train"
            )
        )
    target = str(target) if target else None
    if target is not None:
        from privsynth_core.schema import Schema

        names = Schema.load(domain_of(ws, dataset).schema_path).names
        if target not in names:
            raise ConfigError(
                f"the target {target!r} is not a column of {dataset.name}; choose "
                f"one of its columns, or none"
            )
    if not cls.is_dp:
        return TrainingRequest(
            dataset, cls.generator_id, normalised, None, None, str(accountant or ""), target
        )
    if epsilon is None or not epsilon > 0:
        raise ConfigError(
            f"{cls.generator_id} is differentially private: give a target epsilon > 0"
        )
    if cls.pure_epsilon:
        delta = None  # pure epsilon-DP: it reserves and spends no delta, whatever the box says
    settling_accountant(str(accountant or ""))
    status = source_status(ws, dataset)
    left = status.remaining
    count = 0.0 if noisy_rows(ws, dataset) else count_epsilon(status.budget.epsilon)
    need_eps = float(epsilon) + count
    need_delta = float(delta) if delta else (0.0 if cls.pure_epsilon else DEFAULT_DELTA_BOUND)
    if need_eps > left.epsilon * (1 + 1e-9) or need_delta > left.delta * (1 + 1e-9):
        raise BudgetExceededError(
            f"this training would reserve ε = {need_eps:.4g}, δ = {need_delta:.3g} (with the "
            f"released row count), but only ε = {left.epsilon:.4g}, δ = {left.delta:.3g} of the "
            f"budget of this data source is left; lower epsilon/delta, or ask the data "
            f"custodian to raise the budget"
        )
    return TrainingRequest(
        dataset,
        cls.generator_id,
        normalised,
        float(epsilon),
        float(delta) if delta else None,
        str(accountant or ""),
        target,
    )


def plan_text(
    ws: Workspace,
    dataset_id: str | None,
    generator_id: str,
    params: dict[str, Any],
    epsilon: float | None,
    delta: float | None,
    accountant: str,
) -> str:
    """ "What will this spend": the reservation against the budget left, and the priced plan.

    Reads only public things (the released row count n̂, the parameters); never the data, and
    prices with the one pricing rule every front end uses
    (:func:`privsynth_core.service.price_plan`).
    """
    from privsynth_core.errors import AccountingError, PrivsynthError
    from privsynth_core.privacy.count import count_epsilon, default_delta
    from privsynth_core.registry import generators
    from privsynth_core.service import price_plan

    if not dataset_id:
        return "Choose a dataset (top of the page) to see what a training would spend."
    dataset = ws.dataset(dataset_id)
    cls = generators().get(str(generator_id or ""))
    if not cls.is_dp:
        return (
            "⚠ **NOT differentially private.** This generator spends no budget because it "
            "gives no guarantee at all: its model and synthetic rows must not leave the "
            "custodian. The run is recorded in the ledger as non-DP."
        )
    try:
        status = ws.ledger.status(dataset.key)
    except BudgetNotSetError:
        return (
            "**No budget set yet for this data source**: ask the data custodian to set one. "
            "Nothing can be trained on it until then."
        )
    left = status.remaining
    noisy = noisy_rows(ws, dataset)
    count = 0.0 if noisy else count_epsilon(status.budget.epsilon)
    eps = float(epsilon or 0)
    # A pure epsilon-DP generator reserves no delta, whatever the delta box says.
    dlt = (
        0.0
        if cls.pure_epsilon
        else float(delta)
        if delta
        else (default_delta(noisy) if noisy else 1e-5)
    )
    fits = eps + count <= left.epsilon * (1 + 1e-9) and dlt <= left.delta * (1 + 1e-9)
    count_text = f" plus ε = {count:.3g} to release the row count once" if count else ""
    pure = " (pure ε-DP: no δ)" if cls.pure_epsilon else ""
    lines = [
        f"**This training reserves ε = {eps:g}, δ = {dlt:.3g}**{pure}{count_text} of the "
        f"budget of "
        f"the data source `{short_key(dataset.key)}` (ε = {status.budget.epsilon:g}, "
        f"δ = {status.budget.delta:g}, shared by everyone who uses it; left now: "
        f"ε = {left.epsilon:.4g}, δ = {left.delta:.3g}).",
        (
            f"Left afterwards: at least ε = {left.epsilon - eps - count:.4g}, "
            f"δ = {left.delta - dlt:.3g} (the accountant settles the reservation to what training "
            f"really spent)."
            if fits
            else "❌ **This does not fit in the budget left**: lower ε or δ."
        ),
    ]
    if getattr(cls, "dp_plan", None) is not None and eps > 0:
        if noisy is None:
            lines.append(
                "DP-SGD plan: shown once the row count has been released (the first "
                "DP step on this dataset releases it; plans never use the exact size)."
            )
            return "\n\n".join(lines)
        try:
            made = cls.make_params(dict(params or {}))
            given = getattr(made, "sigma", None) or getattr(made, "noise_multiplier", None)
            from privsynth_core.schema import Schema

            domain = domain_of(ws, dataset)
            price = price_plan(
                cls.generator_id,
                made,
                rows=noisy,
                accountant=str(accountant),
                delta=dlt,
                schema=Schema.load(domain.schema_path) if domain.fixed else None,
                sigma=float(given) if given else None,
                epsilon=None if given else eps,
            )
            noise = (
                f"noise multiplier σ = {given:g} (given) would spend ε ≈ {price.epsilon:.4g}"
                if given
                else f"noise multiplier σ ≈ {price.sigma:.3g} ({accountant} accountant)"
            )
            extra = f", including the {price.includes}" if price.includes else ""
            lines.append(
                f"DP-SGD plan: released row count n̂ = {noisy}, sample rate q = "
                f"{price.sample_rate:.3g}, {price.steps} critic steps, {noise}{extra}. "
                f"Training stops before a step would go over the target."
            )
        except (AccountingError, ConfigError) as exc:
            lines.append(f"DP-SGD plan: {exc}")
        except PrivsynthError as exc:
            lines.append(f"Cannot price this plan: {exc}")
    return "\n\n".join(lines)


def suggested_generator(
    ws: Workspace, dataset_id: str | None, target: str | None = None
) -> tuple[str, str] | None:
    """The DP generator that serves the dataset best, and why
    (:func:`privsynth_core.registry.choose_generator`, as ``privsynth fit`` without
    ``--generator``): from public things only, the source's schema (its fixed domain, else the
    draft a custodian sees), the released row count n̂ if there is one, and the target. None
    when there is no schema the caller may see or no DP generator is installed."""
    from privsynth_core.registry import choose_generator

    from .domain_handlers import visible_schema

    if not dataset_id:
        return None
    dataset = ws.dataset(dataset_id)
    schema = visible_schema(ws, dataset)
    if schema is None:
        return None
    try:
        choice = choose_generator(
            schema, noisy_rows(ws, dataset), target=target if target in schema.names else None
        )
    except ConfigError:
        return None
    return choice.generator_id, choice.why


def new_run(
    ws: Workspace, request: TrainingRequest, *, dask_address: str | None = None
) -> RunRecord:
    """Record a run about to start (status ``running``) and write its run configuration.

    ``dask_address``: the operator's Dask cluster (``UISettings.dask_address``), written into
    the configuration; it must answer first, so a cluster that is down refuses the training
    before anything of it is written or charged.

    Raises:
        DomainError: the source's domain was unfixed meanwhile.
        ConfigError: the cluster does not answer.
    """
    from .run_setup import write_config

    if dask_address:
        from privsynth_flows.runtime import reach_cluster

        reach_cluster(dask_address)
    run_id, folder = ws.new_run_dir()
    record = RunRecord(
        run_id=run_id,
        dataset_id=request.dataset.dataset_id,
        dataset_name=request.dataset.name,
        generator=request.generator,
        params=request.params,
        epsilon=request.epsilon,
        delta=request.delta,
        accountant=request.accountant,
        private=request.private,
        created=now(),
        directory=folder,
        target=request.target,
    )
    write_config(
        ws, record, request.dataset, domain_of(ws, request.dataset), dask_address=dask_address
    )
    ws.save_run(record)
    return record


def train(ws: Workspace, record: RunRecord, flows: WebFlows) -> RunRecord:
    """Start the run's ``synthesize`` flow run (the ledger is charged there, by the flow).

    The fit reserves its whole target before reading the data and settles to what the
    accountant says it spent; an error or a cancel after that keeps the reservation open.

    Raises:
        BusyError, FlowServiceError: nothing was started (the run is recorded as failed).
    """
    try:
        record.flow_run_id = flows.start_training(ws, record)
    except Exception as exc:
        record.status, record.finished = "failed", now()
        record.message = f"not started: {exc}"
        ws.save_run(record)
        raise
    record.flow_run_url = flows.ui_url(record.flow_run_id)
    ws.save_run(record)
    return record


#: A Prefect state type -> the run's status.
_STATUS = {
    "COMPLETED": "done",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "CRASHED": "crashed",
    "CANCELLING": "cancelling",
}


def refresh(
    ws: Workspace, record: RunRecord, flows: WebFlows | None, view: RunView | None = None
) -> RunRecord:
    """Bring the record up to date from its flow run (given, or read from Prefect's API).

    A run that has ended keeps its status; one that completed gets what its release states
    (end to end, with parts); one that was cancelled or crashed names the reservation it left
    open in the ledger, if any.
    """
    if record.finished_running:
        return record
    if not record.flow_run_id:
        # Trained in a thread by an app from before flow runs, and cut off by its restart.
        record.status, record.finished = "crashed", now()
        record.message = "interrupted when the server restarted"
        ws.save_run(record)
        return record
    if view is None:
        if flows is None:
            return record
        view = flows.read(record.flow_run_id, details=False)
    status = _STATUS.get(view.state, "running")
    if status == record.status:
        return record
    record.status = status
    if record.finished_running:
        record.finished = now()
        if status == "done":
            _record_release(record)
        else:
            record.message = _ended_message(ws, record, view)
    ws.save_run(record)
    return record


def _record_release(record: RunRecord) -> None:
    """What a completed run's release states: end to end (domain + row count + training)."""
    release = json.loads((record.run_dir / "release" / "release.json").read_text("utf-8"))
    model = json.loads((record.model_dir / "manifest.json").read_text("utf-8"))
    manifest = json.loads((record.run_dir / "custodian" / "manifest.json").read_text("utf-8"))
    privacy = release.get("privacy", {})
    if release.get("differentially_private"):
        record.spent_epsilon, record.spent_delta = privacy["epsilon"], privacy["delta"]
        record.privacy_parts = list(privacy.get("parts", []))
    fit = model.get("fit", {})
    # What the fit accounted with (AIM and MST compose in zCDP whatever the option said).
    record.accountant = str(model.get("privacy", {}).get("accountant") or record.accountant)
    record.steps = int(fit.get("steps") or 0)
    record.spending = spending_lines(fit.get("extra") or {})
    notes = []
    if manifest.get("fit", {}).get("reused_from_store"):
        notes.append(
            "the model was already trained with these data and settings: reused, "
            "nothing trained or charged now"
        )
    if fit.get("stopped_early"):
        notes.append("stopped early: the next step would have gone over the target")
    record.message = "; ".join(notes)


def open_reservations(ws: Workspace, record: RunRecord) -> list[int]:
    """The ledger reservations the run's fit left open (cancelled or killed mid-training)."""
    from privsynth_core.runs.rundir import CHECKPOINTS_DIR
    from privsynth_core.store import CHECKPOINTS_PARAM

    dataset = ws.dataset(record.dataset_id)
    mine = str(record.work_dir / CHECKPOINTS_DIR)
    return [
        e.entry_id
        for e in ws.ledger.open_reservations(dataset.key)
        if e.params.get(CHECKPOINTS_PARAM) == mine
    ]


def _ended_message(ws: Workspace, record: RunRecord, view: RunView) -> str:
    held = open_reservations(ws, record)
    kept = ""
    if held:
        ids = ", ".join(f"#{i}" for i in held)
        kept = (
            f"The data was already used, so the ledger keeps the run's whole reservation "
            f"charged (entry {ids}, open until a data custodian reviews and closes it)."
        )
    if record.status == "cancelled":
        return (
            f"Cancelled. {kept}"
            if kept
            else "Cancelled before it used the data: nothing was charged."
        )
    why = view.message or record.status
    return f"{why} {kept}".strip()


def trainings_in_flight(ws: Workspace, dataset_id: str) -> set[str]:
    """The ledger run ids of the data source's open reservations whose fit is training now.

    The model store's rule (:mod:`privsynth_core.store`): a fit holds its store entry's OS lock
    for the whole train-and-save, so an open reservation whose entry is locked belongs to a
    live training (whoever runs it: a flow run of this app, the CLI, a worker), and one whose
    entry is free was left by an attempt that died or was cancelled.
    """
    import fcntl
    import os

    from privsynth_core.store import FIT_KEY_PARAM, lock_path

    busy: set[str] = set()
    for entry in ws.ledger.open_reservations(ws.dataset(dataset_id).key):
        store_key = entry.params.get(FIT_KEY_PARAM)
        path = lock_path(ws.home / "cache" / "models" / str(store_key))
        if not store_key or not path.is_file():
            continue
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            busy.add(entry.run_id)
        finally:
            os.close(fd)
    return busy


def cancel(ws: Workspace, flows: WebFlows) -> RunRecord | None:
    """Cancel the caller's running training (its flow run); None if none is running."""
    for record in ws.runs():
        if record.flow_run_id and not refresh(ws, record, flows).finished_running:
            flows.cancel(record.flow_run_id)
            return record
    return None


def latest_training(ws: Workspace) -> RunRecord | None:
    """The caller's most recent run (a training in progress first)."""
    found = ws.runs()
    running = [r for r in found if not r.finished_running]
    return (running or found)[0] if found else None


# -- generate ---------------------------------------------------------------------------------


def _done_run(ws: Workspace, run_id: str) -> RunRecord:
    record = ws.run(run_id)
    if record.status != "done" or not record.model_dir.is_dir():
        raise GeneratorError(
            f"run {record.run_id} has no trained model (status: "
            f"{record.status}); choose a finished run"
        )
    return record


def generate(
    ws: Workspace,
    settings: UISettings,
    run_id: str,
    rows: Any,
    seed: Any,
    flows: WebFlows,
    progress: Callable[[RunView, float], Any] | None = None,
) -> tuple[Path, pl.DataFrame]:
    """Sample ``rows`` synthetic rows from a run's model into ``samples/`` (post-processing),
    with the ``generate`` flow (``progress``: told how its flow run goes, see
    :meth:`~privsynth_ui.training.WebFlows.run`).

    Raises:
        NotFoundError, GeneratorError, ConfigError, FlowServiceError.
    """
    import polars as pl

    record = _done_run(ws, run_id)
    if not record.private:
        ws.require_custodian("draw rows from a model that is NOT differentially private")
    n = _int(rows, "rows", 1, settings.max_sample_rows)
    seed_value = _int(seed, "seed", 0, 2**32 - 1)
    label = "" if record.private else "-NOT-DP"
    path = record.samples_dir / f"synthetic-{record.run_id[:6]}-{n}rows-seed{seed_value}{label}.csv"
    flows.run(
        ws,
        "generate",
        {
            "model_dir": str(record.model_dir),
            "rows": n,
            "seed": seed_value,
            "destination": str(path),
        },
        what=f"generate from {record.run_id}",
        progress=progress,
    )
    return path, pl.read_csv(path, infer_schema=False)


def _int(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer() or not low <= number <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high:,}, got {value!r}")
    return int(number)


def target_choices(ws: Workspace, run_id: str | None) -> list[str]:
    """Columns a utility metric can predict (categorical and boolean), in the table's order."""
    if not run_id:
        return []
    record = ws.run(run_id)
    manifest_path = record.model_dir / "manifest.json"
    if not manifest_path.is_file():
        return []
    columns = json.loads(manifest_path.read_text(encoding="utf-8"))["schema"]["columns"]
    return [c["name"] for c in columns if c["kind"] in ("categorical", "boolean")]


def trained_target(record: RunRecord) -> str | None:
    """The target column named when the run was trained (its run configuration's), if any."""
    import yaml

    if not record.config_path.is_file():
        return None
    config = yaml.safe_load(record.config_path.read_text(encoding="utf-8")) or {}
    target = config.get("target")
    return str(target) if target else None


# -- budget and runs --------------------------------------------------------------------------


def run_rows(
    ws: Workspace, flows: WebFlows | None, dataset_id: str | None = None
) -> list[list[Any]]:
    """The runs (of one dataset, or all), newest first, with their state from Prefect; ε spent
    is the end-to-end total."""
    return [
        [
            r.run_id,
            r.created,
            r.dataset_name,
            r.generator,
            r.epsilon if r.private else "NOT DP",
            num(r.spent_epsilon),
            r.status,
            r.message,
        ]
        for r in (refresh(ws, r, flows) for r in ws.runs(dataset_id))
    ]


def run_details(ws: Workspace, run_id: str, flows: WebFlows | None = None) -> dict[str, Any]:
    """A run's record (its state from Prefect) and the files it holds (for the API and deep
    links)."""
    record = refresh(ws, ws.run(run_id), flows)
    data = {k: v for k, v in record.__dict__.items() if k != "directory"}
    data["samples"] = sorted(p.name for p in record.samples_dir.glob("*.csv"))
    data["report"] = ws.is_custodian and (record.report_dir / "report.html").is_file()
    return data


def privacy_text(record: RunRecord) -> str:
    """What a finished run's release states, end to end, with its parts."""
    if not record.private:
        return "NOT differentially private"
    if record.spent_epsilon is None:
        return "nothing spent yet"
    parts = " + ".join(f"{p['step']} {p['epsilon']:.3g}" for p in record.privacy_parts)
    return f"ε = {record.spent_epsilon:.4g}, δ = {record.spent_delta or 0:.3g} end to end" + (
        f" ({parts})" if parts else ""
    )
