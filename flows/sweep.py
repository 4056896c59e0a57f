"""The ``sweep`` flow: generators x epsilons x seeds over one dataset, one ``synthesize`` each.

The whole grid's budget is checked against the ledger before any cell starts
(:func:`privsynth_core.runs.sweep.check_grid_budget`); the domain is resolved once and shared; the
cells run as parallel tasks on the flow's task runner (a thread pool, or a Dask cluster), each
one a ``synthesize`` subflow. At the end: ``summary.csv``, ``privacy_utility.png`` and a
markdown artifact.

A cell is never run twice: ``run_cell`` does not retry, the local Dask cluster privsynth starts
fails a task whose worker died instead of rescheduling it (:mod:`privsynth_flows.runtime`), and a
rescheduled fit on another cluster is refused by the model store. A cell that fails, its worker
killed included, is reported as failed in the summary with the ledger reservation its fit left
open (``privsynth budget reservations`` lists it; the custodian closes it after review).
"""

# No `from __future__ import annotations` here: Prefect validates flow parameters from the
# annotations, and a flow shipped to a Dask worker is pickled by value, so the annotations must
# be real objects, not names to resolve in a module the worker never imported.
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from privsynth_core.errors import GeneratorError, PrivsynthError
from privsynth_core.runs import pipeline
from privsynth_core.runs.config import RunConfig, SweepConfig
from privsynth_core.runs.rundir import NOT_DP_LABEL, RunResult, check_output_dir
from privsynth_core.runs.sweep import (
    cell_reservations,
    check_grid_budget,
    summary_rows,
    write_summary,
)
from privsynth_core.store import describe_reservations

from . import tasks
from .synthesize import _artifact_key, synthesize


@dataclass
class SweepResult:
    """A finished sweep: its summary table and plot, and each cell's run (None if it failed)."""

    output_dir: Path
    summary: Path
    plot: Path | None
    runs: list[RunResult | None] = field(default_factory=list)


@task(retries=0)
def run_cell(config: RunConfig) -> RunResult:
    """One grid cell: a ``synthesize`` subflow (never retried: it may spend budget)."""
    return synthesize(config)


@task(**tasks.IO)
def write_sweep_summary(
    results: list[tuple[RunConfig, RunResult | None, str | None]], directory: str
) -> tuple[Path, Path | None]:
    """Write summary.csv and the privacy-utility plot (computed on real data: custodian-only)."""
    return write_summary(results, directory)


def _markdown(rows: list[dict[str, object]]) -> str:
    """The sweep for the Prefect UI: each cell's settings, status and end-to-end epsilon. No
    metric goes into an artifact (they are computed on the real rows): see summary.csv."""
    head = ["generator", "epsilon", "seed", "status", "epsilon spent (end to end)"]
    lines = [
        f"# privsynth sweep ({len(rows)} runs)",
        "",
        f"Metrics ({NOT_DP_LABEL}) are in the sweep's summary.csv, not here.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        values = [r["generator"], r["epsilon"], r["seed"], r["status"], r["epsilon_spent"]]
        lines.append(
            "| "
            + " | ".join(
                "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in values
            )
            + " |"
        )
    return "\n".join(lines)


def _cell_error(
    cell: RunConfig, exc: BaseException, *, fingerprint: str, schema: str
) -> tuple[str, list[int]]:
    """A failed cell's error for the summary, naming the reservation its fit left open."""
    text = str(exc) if isinstance(exc, PrivsynthError) else f"{type(exc).__name__}: {exc}"
    entries = cell_reservations(cell, fingerprint=fingerprint, schema_path=schema)
    if entries and not all(f"#{e.entry_id} " in text for e in entries):
        text += "\n" + describe_reservations(entries)
    return text, [e.entry_id for e in entries]


@flow(name="sweep", log_prints=True, retries=0)
def sweep(sweep_config: SweepConfig) -> SweepResult:
    """Run every cell of the grid, after checking that the budget covers all of them.

    Raises:
        BudgetExceededError: the grid could overspend the dataset's budget (nothing ran).
        GeneratorError: some cells failed (the summary lists them; the others are kept).
    """
    cells = sweep_config.cells()
    for cell in cells:
        check_output_dir(cell)
    first = cells[0]
    info = tasks.load_input(first)
    tasks.validate_input(
        first,
        info.fingerprint,
        str(sweep_config.output_dir.parent / f".{sweep_config.output_dir.name}.validation.log"),
    )
    domain_dir = pipeline.cache_dir() / "domains" / pipeline.domain_key(first, info.fingerprint)
    cached = pipeline.is_complete_domain(domain_dir)
    cost = check_grid_budget(
        cells,
        fingerprint=info.fingerprint,
        schema_path=domain_dir / pipeline.SCHEMA_FILE if cached else None,
    )
    print(f"the sweep's {len(cells)} runs can spend at most {cost}; the budget covers it")
    # Resolved once here, so parallel cells share it instead of each paying for a DP domain.
    schema = tasks.resolve_domain(first, str(domain_dir), pipeline.new_run_id())
    futures = [run_cell.submit(cell) for cell in cells]
    results: list[tuple[RunConfig, RunResult | None, str | None]] = []
    failed: list[str] = []
    for cell, future in zip(cells, futures, strict=True):
        try:
            results.append((cell, future.result(), None))
        except Exception as exc:  # a dead worker (KilledWorker) too: reported, never rerun
            error, open_ids = _cell_error(cell, exc, fingerprint=info.fingerprint, schema=schema)
            results.append((cell, None, error))
            held = ", ".join(f"#{i}" for i in open_ids)
            failed.append(f"{cell.label} (open reservation {held})" if held else cell.label)
    summary, plot = write_sweep_summary(results, str(sweep_config.output_dir))
    create_markdown_artifact(
        _markdown(summary_rows(results)),
        key=_artifact_key(f"sweep-{sweep_config.output_dir.name}"),
        description=f"privsynth sweep ({NOT_DP_LABEL})",
    )
    if failed:
        raise GeneratorError(
            f"{len(failed)} of {len(cells)} sweep runs failed: {', '.join(failed)}; see {summary}"
        )
    return SweepResult(sweep_config.output_dir, summary, plot, [r for _, r, _ in results])
