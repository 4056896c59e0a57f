"""What the Evaluate tab does (custodians only): evaluate a run, audit its generator, each a Prefect
flow run of the flows ``privsynth`` uses (``evaluate``, ``audit``).

Both read the real rows, so what they produce is NOT covered by the DP guarantee: only a
custodian may run or read them (:meth:`~privsynth_ui.workspace.Workspace.require_custodian`),
and they stay in the run's folder (``run/custodian/report/``, ``audit/``). What reaches Prefect
is what the flows send: paths, settings and states, never a figure. Nothing here imports Gradio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import ConfigError, GeneratorError

from .budget_handlers import num
from .run_handlers import _done_run, trained_target

if TYPE_CHECKING:
    from collections.abc import Callable

    from privsynth_flows.served import RunView

    from .training import WebFlows
    from .workspace import RunRecord, Workspace

NOT_DP_ACTION = (
    "run or read an evaluation: it compares the synthetic rows with the real ones, "
    "so it is NOT differentially private"
)


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
    #: what was scored, for the page: the table, its row count, the target
    what: str = ""


def _evaluable(ws: Workspace, run_id: str) -> RunRecord:
    record = _done_run(ws, run_id)
    if not (record.run_dir / "custodian" / "manifest.json").is_file():
        raise GeneratorError(
            f"run {record.run_id} was trained before runs were flow runs and "
            f"has no run directory to evaluate; train it again"
        )
    return record


#: The value of the sample choice that means the release's own table (the default).
RELEASE_SAMPLE = ""


def _rows_in(path: Path) -> int:
    """Rows of a synthetic table (post-processing output: counting them reveals nothing)."""
    import polars as pl

    return int(pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item())


def sample_choices(ws: Workspace, run_id: str | None) -> list[tuple[str, str]]:
    """(label, value) of the tables an evaluation of the run can score: first (the default) the
    release's own table, drawn at the training table's size (the released row count n̂, never
    the exact count), then the tables drawn on the Generate tab, newest first."""
    if not run_id:
        return []
    record = ws.run(run_id)
    release = record.run_dir / "release" / "synthetic.csv"
    size = f"{_rows_in(release):,} rows: the training table's size" if release.is_file() else ""
    choices = [(f"the release's table ({size})" if size else "the release's table", RELEASE_SAMPLE)]
    drawn = sorted(record.samples_dir.glob("*.csv"), key=lambda p: p.stat().st_mtime, reverse=True)
    return choices + [(p.name, p.name) for p in drawn]


def evaluate(
    ws: Workspace,
    run_id: str,
    *,
    target: str | None,
    flows: WebFlows,
    sample: str | None = RELEASE_SAMPLE,
    progress: Callable[[RunView, float], Any] | None = None,
) -> EvaluationView:
    """Score a synthetic table of the run against the real rows with the ``evaluate`` flow,
    every metric whose inputs exist; the report replaces the run's.

    ``sample`` is the name of a table drawn on the Generate tab, or empty for the default: the
    release's own table, drawn at the training table's size (the released row count n̂), so
    the scores are those of a table as large as the real one. ``target``: a column, ``""``
    for none (the page's "(none)": no utility metric, even for a run trained with a target),
    or None for the target named at training, if any.

    Raises:
        RoleError, NotFoundError, GeneratorError, FlowServiceError.
    """
    ws.require_custodian(NOT_DP_ACTION)
    record = _evaluable(ws, run_id)
    if sample:
        # A name from the list, never a path: anything else is not one of the run's tables.
        table = record.samples_dir / Path(str(sample)).name
        if Path(str(sample)).name != sample or not table.is_file():
            raise GeneratorError(
                f"run {record.run_id} has no drawn table named {sample!r}; choose one from the list"
            )
    else:
        table = record.run_dir / "release" / "synthetic.csv"
    chosen = scoring_target(record, target)
    flows.run(
        ws,
        "evaluate",
        {
            "run_dir": str(record.run_dir),
            "target": chosen or None,
            "synthetic": str(table),
            "all_metrics": True,
            # The operator's cluster now ("" for none), not the one the run was trained on.
            "dask_address": flows.settings.dask_address or "",
        },
        what=f"evaluate {record.run_id}",
        progress=progress,
    )
    view = evaluation_view(record, table)
    which = "the release's table" if not sample else f"`{table.name}`"
    view.what = f"Evaluated {which} ({_rows_in(table):,} rows) against the real training rows" + (
        f", target column `{chosen}`." if chosen else ", no target column (no utility metric)."
    )
    return view


def scoring_target(record: RunRecord, target: str | None) -> str | None:
    """The target column an evaluation scores utility on: ``target`` as chosen, ``""`` (the
    page's "(none)") for none even when the run was trained with a target, None for the
    target named at training."""
    if target is None:
        return trained_target(record)
    return str(target).strip() or None


def evaluation_view(record: RunRecord, sample: Path) -> EvaluationView:
    """The run's report as the Evaluate tab shows it (from ``metrics.json`` and its plots)."""
    data = json.loads((record.report_dir / "metrics.json").read_text(encoding="utf-8"))
    headlines = [
        [
            h["name"],
            h["group"],
            num(h["value"]),
            num(h.get("ceiling")),
            num(h.get("floor")),
            h.get("verdict", "unknown"),
            h.get("verdict_text", ""),
        ]
        for h in data.get("headline", [])
    ]
    groups: dict[str, list[list[Any]]] = {"fidelity": [], "utility": [], "privacy": []}
    for metric in data.get("metrics", []):
        level, why = metric.get("verdict") or ("unknown", "")
        groups.setdefault(metric["group"], []).append(
            [
                metric["name"],
                num(metric.get("value")),
                str(metric.get("direction", "")).replace("_", " "),
                level,
                why,
            ]
        )
    plots = record.report_dir / "plots"
    notes = [f"{s['metric_id']} skipped: {s['reason']}" for s in data.get("skipped", [])]
    notes += [
        f"report section {k} failed: {v}" for k, v in (data.get("section_errors") or {}).items()
    ]
    return EvaluationView(
        headlines=headlines,
        groups=groups,
        distribution_plots=sorted(plots.glob("dist_*.png")),
        correlation_plots=sorted(
            (p for p in plots.glob("*.png") if p.name.startswith(("correlation", "pair"))),
            key=_plot_order,
        ),
        report_dir=record.report_dir,
        sample=sample,
        notes=notes,
    )


def _plot_order(path: Path) -> int:
    """Real first, then synthetic, their difference, the pairwise plot, anything else."""
    for rank, word in enumerate(("real", "synthetic", "difference", "pair")):
        if word in path.name:
            return rank
    return 9


@dataclass
class AuditView:
    """A privacy audit of a run's generator (custodian-only)."""

    summary: str
    roc: Path | None
    result: dict[str, Any]


def _requested_accountant(record: RunRecord) -> str:
    """The accountant option the run was trained with (its configuration's): the record holds
    what the fit accounted with, which a generator with its own accounting (AIM, MST) states
    and which is no option to train with."""
    import yaml

    if record.config_path.is_file():
        config = yaml.safe_load(record.config_path.read_text(encoding="utf-8")) or {}
        if config.get("accountant"):
            return str(config["accountant"])
    return record.accountant or "rdp"


def audit(
    ws: Workspace,
    run_id: str,
    *,
    canaries: Any,
    flows: WebFlows,
    progress: Callable[[RunView, float], Any] | None = None,
) -> AuditView:
    """Audit the run's generator and settings with canaries (the ``audit`` flow): its trainings
    are charged to throwaway ledgers, never to the source's budget.

    Raises:
        RoleError, NotFoundError, GeneratorError, ConfigError, FlowServiceError.
    """
    from pydantic import ValidationError

    from privsynth_core.privacy.audit import AuditConfig

    ws.require_custodian(
        "audit a generator: the audit trains on the real rows and its "
        "figures are NOT differentially private"
    )
    record = _evaluable(ws, run_id)
    if not record.private or record.epsilon is None:
        raise ConfigError("only a DP run makes a claim to audit")
    try:
        count = int(float(canaries))
    except (TypeError, ValueError):
        raise ConfigError(f"canaries must be a whole number, got {canaries!r}") from None
    dataset = ws.dataset(record.dataset_id)
    if dataset.partitioned:
        from .partitioned import refuse

        # Its trainings (with and without canaries) read the whole table in one process.
        raise ConfigError(refuse("the privacy audit trains on the whole table in one process"))
    try:
        config = AuditConfig(
            input=str(dataset.train_path),
            schema_path=str(record.run_dir / "custodian" / "schema.yaml"),
            generator=record.generator,
            params=record.params,
            epsilon=record.epsilon,
            delta=record.delta or 1e-5,
            accountant=_requested_accountant(record),
            canaries=count,
        )
    except ValidationError as exc:
        raise ConfigError(f"cannot audit with these settings: {exc.errors()[0]['msg']}") from None
    flows.run(
        ws,
        "audit",
        {
            "config": config.model_dump(mode="json"),
            "output_dir": str(record.audit_dir),
            "overwrite": True,
            "dask_address": flows.settings.dask_address,
        },
        what=f"audit {record.run_id}",
        progress=progress,
    )
    roc = record.audit_dir / "roc.png"
    return AuditView(
        summary=(record.audit_dir / "summary.md").read_text(encoding="utf-8"),
        roc=roc if roc.is_file() else None,
        result=json.loads((record.audit_dir / "audit.json").read_text("utf-8")),
    )


__all__ = [
    "RELEASE_SAMPLE",
    "AuditView",
    "EvaluationView",
    "audit",
    "evaluate",
    "evaluation_view",
    "sample_choices",
    "scoring_target",
]
