"""What the Train, Generate and Evaluate tabs do, over privsynth_core.

Training itself runs in a background thread (:mod:`privsynth_ui.training`); this module holds
the steps: check a plan and price it (through :mod:`privsynth_core.service`), train and save,
sample, evaluate, and the table of runs. Nothing here imports Gradio.

Every budget is a data source's (:mod:`privsynth_ui.budget_handlers`); an analyst trains DP
generators within it, never a non-DP one, and never runs or reads an evaluation (it is computed
on the real rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import BudgetNotSetError, ConfigError, DomainError, GeneratorError
from privsynth_core.ledger import short_key
from privsynth_core.table import Table

from .budget_handlers import NO_BUDGET, noisy_rows, num, source_status
from .domain_handlers import domain_of
from .workspace import DatasetRecord, RunRecord, Workspace, now

if TYPE_CHECKING:
    import polars as pl

    from privsynth_core.generator import ProgressCallback

    from .settings import UISettings


@dataclass
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

    @property
    def private(self) -> bool:
        """Whether the run is a DP fit."""
        return self.epsilon is not None


def check_training(ws: Workspace, dataset_id: str, generator_id: str, params: dict[str, Any],
                   epsilon: float | None, delta: float | None,
                   accountant: str) -> TrainingRequest:
    """Validate a training request before any work: dataset, domain, plugin, params, budget.

    Raises:
        NotFoundError, DomainError, UnknownPluginError, ConfigError, BudgetExceededError.
    """
    from privsynth_core.errors import BudgetExceededError
    from privsynth_core.privacy.count import count_epsilon
    from privsynth_core.registry import generators, settling_accountant
    from privsynth_core.sweep import DEFAULT_DELTA_BOUND

    dataset = ws.dataset(dataset_id)
    cls = generators().get(str(generator_id or ""))
    normalised = cls.make_params(dict(params or {})).model_dump(mode="json")
    if not cls.is_dp:
        ws.require_custodian(f"train {cls.generator_id}, which is NOT differentially private "
                             f"(its model and rows must never leave the custodian)")
        return TrainingRequest(dataset, cls.generator_id, normalised, None, None,
                               str(accountant or ""))
    if not domain_of(ws, dataset).fixed:
        raise DomainError(
            "the domain of this data source is not fixed yet: " + (
                "on the Data tab, declare it public or learn it with DP, then train"
                if ws.is_custodian else "ask the data custodian to fix it, then train"))
    if epsilon is None or not epsilon > 0:
        raise ConfigError(f"{cls.generator_id} is differentially private: give a target "
                          f"epsilon > 0")
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
            f"custodian to raise the budget")
    return TrainingRequest(dataset, cls.generator_id, normalised, float(epsilon),
                           float(delta) if delta else None, str(accountant or ""))


def plan_text(ws: Workspace, dataset_id: str | None, generator_id: str, params: dict[str, Any],
              epsilon: float | None, delta: float | None, accountant: str) -> str:
    """"What will this spend": the reservation against the budget left, and the priced plan.

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
        return ("⚠ **NOT differentially private.** This generator spends no budget because it "
                "gives no guarantee at all: its model and synthetic rows must not leave the "
                "custodian. The run is recorded in the ledger as non-DP.")
    try:
        status = ws.ledger.status(dataset.key)
    except BudgetNotSetError:
        return ("**No budget set yet for this data source**: ask the data custodian to set one. "
                "Nothing can be trained on it until then.")
    left = status.remaining
    noisy = noisy_rows(ws, dataset)
    count = 0.0 if noisy else count_epsilon(status.budget.epsilon)
    eps = float(epsilon or 0)
    dlt = float(delta) if delta else (0.0 if cls.pure_epsilon else
                                      default_delta(noisy) if noisy else 1e-5)
    fits = eps + count <= left.epsilon * (1 + 1e-9) and dlt <= left.delta * (1 + 1e-9)
    count_text = (f" plus ε = {count:.3g} to release the row count once" if count else "")
    lines = [
        f"**This training reserves ε = {eps:g}, δ = {dlt:.3g}**{count_text} of the budget of "
        f"the data source `{short_key(dataset.key)}` (ε = {status.budget.epsilon:g}, "
        f"δ = {status.budget.delta:g}, shared by everyone who uses it; left now: "
        f"ε = {left.epsilon:.4g}, δ = {left.delta:.3g}).",
        (f"Left afterwards: at least ε = {left.epsilon - eps - count:.4g}, "
         f"δ = {left.delta - dlt:.3g} (the accountant settles the reservation to what training "
         f"really spent)." if fits else "❌ **This does not fit in the budget left**: lower ε or "
         "δ."),
    ]
    if getattr(cls, "dp_plan", None) is not None and eps > 0:
        if noisy is None:
            lines.append("DP-SGD plan: shown once the row count has been released (the first "
                         "DP step on this dataset releases it; plans never use the exact size).")
            return "\n\n".join(lines)
        try:
            made = cls.make_params(dict(params or {}))
            given = getattr(made, "sigma", None) or getattr(made, "noise_multiplier", None)
            from privsynth_core.schema import Schema

            domain = domain_of(ws, dataset)
            price = price_plan(cls.generator_id, made, rows=noisy, accountant=str(accountant),
                               delta=dlt, schema=Schema.load(domain.schema_path)
                               if domain.fixed else None,
                               sigma=float(given) if given else None,
                               epsilon=None if given else eps)
            noise = (f"noise multiplier σ = {given:g} (given) would spend ε ≈ {price.epsilon:.4g}"
                     if given else f"noise multiplier σ ≈ {price.sigma:.3g} ({accountant} "
                     f"accountant)")
            extra = f", including the {price.includes}" if price.includes else ""
            lines.append(f"DP-SGD plan: released row count n̂ = {noisy}, sample rate q = "
                         f"{price.sample_rate:.3g}, {price.steps} critic steps, {noise}{extra}. "
                         f"Training stops before a step would go over the target.")
        except (AccountingError, ConfigError) as exc:
            lines.append(f"DP-SGD plan: {exc}")
        except PrivsynthError as exc:
            lines.append(f"Cannot price this plan: {exc}")
    return "\n\n".join(lines)


def new_run(ws: Workspace, request: TrainingRequest) -> RunRecord:
    """Record a run about to start (status ``running``)."""
    run_id, folder = ws.new_run_dir()
    record = RunRecord(
        run_id=run_id, dataset_id=request.dataset.dataset_id,
        dataset_name=request.dataset.name, generator=request.generator, params=request.params,
        epsilon=request.epsilon, delta=request.delta, accountant=request.accountant,
        private=request.private, created=now(), directory=folder)
    ws.save_run(record)
    return record


def train(ws: Workspace, record: RunRecord, progress: ProgressCallback) -> RunRecord:
    """Fit the run's generator on its dataset and save the model (the ledger is charged here).

    The generator reserves its whole target before reading the data and settles to what the
    accountant says it spent; an error or a cancel after that keeps the reservation charged.
    """
    from privsynth_core.privacy.release import SpentPart, total
    from privsynth_core.schema import Schema
    from privsynth_core.service import create_generator, fit_generator

    dataset = ws.dataset(record.dataset_id)
    generator = create_generator(record.generator, record.params)
    domain = domain_of(ws, dataset)
    if domain.fixed:
        schema = Schema.load(domain.schema_path)
    elif not record.private:  # a custodian's non-DP baseline may use the draft as it is
        schema = Schema.load(dataset.draft_schema_path)
    else:
        raise DomainError("the domain of this data source was unfixed before training started; "
                          "ask the data custodian to fix it again")
    table = Table.load(dataset.train_path, schema, source=dataset.source)
    # The train split is an extract of the dataset's source: its budget is the source's.
    table.parent_key = dataset.key
    # A DP-learned domain was released before: its cost is part of this release's guarantee.
    table.spent = [SpentPart(**part) for part in domain.parts] if domain.mode == "dp" else []
    try:
        fit_generator(table, generator, epsilon=record.epsilon, delta=record.delta,
                      accountant=record.accountant or "rdp", ledger=ws.ledger,
                      run_id=record.run_id, progress=progress)
    except BudgetNotSetError:
        raise BudgetNotSetError(NO_BUDGET) from None
    summary = generator.fit_summary
    assert summary is not None
    generator.save(record.model_dir, overwrite=True)
    record.status, record.finished = "done", now()
    # What the release states: end to end (domain + row count + training), as its manifest.
    record.spent_epsilon, record.spent_delta = total(summary.spent) if summary.private else (
        None, None)
    record.privacy_parts = [p.public() for p in summary.spent] if summary.private else []
    record.steps = summary.steps
    record.message = ("stopped early: the next step would have gone over the target"
                      if summary.stopped_early else "")
    ws.save_run(record)
    return record


def finish_run(ws: Workspace, record: RunRecord, status: str, message: str) -> None:
    """Record a run that failed or was cancelled (what the ledger kept is in its entries)."""
    record.status, record.finished, record.message = status, now(), message
    ws.save_run(record)


# -- generate ---------------------------------------------------------------------------------


def _done_run(ws: Workspace, run_id: str) -> RunRecord:
    record = ws.run(run_id)
    if record.status != "done" or not record.model_dir.is_dir():
        raise GeneratorError(f"run {record.run_id} has no trained model (status: "
                             f"{record.status}); choose a finished run")
    return record


def generate(ws: Workspace, settings: UISettings, run_id: str, rows: Any,
             seed: Any) -> tuple[Path, pl.DataFrame]:
    """Sample ``rows`` synthetic rows from a run's model into ``samples/`` (post-processing).

    Raises:
        NotFoundError, GeneratorError, ConfigError.
    """
    from privsynth_core.fileio import atomic_write
    from privsynth_core.generator import Generator

    record = _done_run(ws, run_id)
    if not record.private:
        ws.require_custodian("draw rows from a model that is NOT differentially private")
    n = _int(rows, "rows", 1, settings.max_sample_rows)
    seed_value = _int(seed, "seed", 0, 2**32 - 1)
    frame = Generator.load(record.model_dir).sample(n, seed=seed_value)
    label = "" if record.private else "-NOT-DP"
    path = record.samples_dir / f"synthetic-{record.run_id[:6]}-{n}rows-seed{seed_value}{label}.csv"
    atomic_write(path, frame.write_csv)
    return path, frame


def _int(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer() or not low <= number <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high:,}, got {value!r}")
    return int(number)


# -- evaluate ---------------------------------------------------------------------------------


@dataclass
class EvaluationView:
    """An evaluation as the Evaluate tab shows it (computed on real data: NOT DP)."""

    headlines: list[list[Any]]
    groups: dict[str, list[list[Any]]]
    distribution_plots: list[Path]
    correlation_plots: list[Path]
    report_dir: Path
    sample: Path
    notes: list[str] = field(default_factory=list)


def latest_sample(record: RunRecord) -> Path | None:
    """The most recent synthetic table of a run, if any."""
    found = sorted(record.samples_dir.glob("*.csv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def evaluate(ws: Workspace, settings: UISettings, run_id: str, *, target: str | None,
             quick: bool, seed: int = 0) -> EvaluationView:
    """Score the run's latest synthetic table against the real rows and write its report.

    Without a synthetic table yet, one as large as the training data is drawn (seed 0).

    Raises:
        NotFoundError, GeneratorError, MetricError, SchemaError.
    """
    from privsynth_core.evaluation import evaluate as run_evaluation
    from privsynth_core.evaluation import load_manifest
    from privsynth_core.schema import Schema
    from privsynth_core.table import read_frame

    ws.require_custodian("run or read an evaluation: it compares the synthetic rows with the "
                         "real ones, so it is NOT differentially private")
    record = _done_run(ws, run_id)
    dataset = ws.dataset(record.dataset_id)
    sample = latest_sample(record)
    if sample is None:
        sample, _ = generate(ws, settings, run_id, dataset.rows, 0)
    manifest = load_manifest(record.model_dir)
    schema = Schema.from_dict(manifest["schema"], source="the model manifest")
    target = target if target and target in schema.names else None
    holdout = read_frame(dataset.holdout_path) if dataset.holdout_path else None
    result = run_evaluation(
        read_frame(dataset.train_path), read_frame(sample), schema=schema, holdout=holdout,
        target=target, manifest=manifest, seed=seed, references=not quick,
        output_dir=record.report_dir, overwrite=True)
    headlines = [[h.name, h.group, num(h.value), num(h.ceiling), num(h.floor),
                  h.verdict, h.verdict_text] for h in result.headlines]
    groups: dict[str, list[list[Any]]] = {"fidelity": [], "utility": [], "privacy": []}
    for res in result.results:
        level, why = result.verdicts.get(res.metric_id, ("unknown", ""))
        groups.setdefault(res.group, []).append(
            [res.name, num(res.value), res.direction.replace("_", " "), level, why])
    plots = record.report_dir / "plots"
    notes = [f"{s.metric_id} skipped: {s.reason}" for s in result.skipped]
    notes += [f"report section {k} failed: {v}" for k, v in result.section_errors.items()]
    return EvaluationView(
        headlines=headlines, groups=groups,
        distribution_plots=sorted(plots.glob("dist_*.png")),
        correlation_plots=sorted(
            (p for p in plots.glob("*.png") if p.name.startswith(("correlation", "pair"))),
            key=_plot_order),
        report_dir=record.report_dir, sample=sample, notes=notes)


def _plot_order(path: Path) -> int:
    """Real first, then synthetic, their difference, the pairwise plot, anything else."""
    for rank, word in enumerate(("real", "synthetic", "difference", "pair")):
        if word in path.name:
            return rank
    return 9


def target_choices(ws: Workspace, run_id: str | None) -> list[str]:
    """Columns a utility metric can predict (categorical and boolean), last column first."""
    if not run_id:
        return []
    record = ws.run(run_id)
    manifest_path = record.model_dir / "manifest.json"
    if not manifest_path.is_file():
        return []
    columns = json.loads(manifest_path.read_text(encoding="utf-8"))["schema"]["columns"]
    names = [c["name"] for c in columns if c["kind"] in ("categorical", "boolean")]
    return list(reversed(names))


# -- budget and runs --------------------------------------------------------------------------


def run_rows(ws: Workspace, dataset_id: str | None = None) -> list[list[Any]]:
    """The runs (of one dataset, or all), newest first; ε spent is the end-to-end total."""
    return [[r.run_id, r.created, r.dataset_name, r.generator,
             r.epsilon if r.private else "NOT DP", num(r.spent_epsilon), r.status, r.message]
            for r in ws.runs(dataset_id)]


def run_details(ws: Workspace, run_id: str) -> dict[str, Any]:
    """A run's record and the files it holds (for the API and deep links)."""
    record = ws.run(run_id)
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
    return (f"ε = {record.spent_epsilon:.4g}, δ = {record.spent_delta or 0:.3g} end to end"
            + (f" ({parts})" if parts else ""))
