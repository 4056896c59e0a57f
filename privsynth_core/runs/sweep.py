"""Sweeps: a grid of runs over one dataset, its budget checked up front, and its summary.

:func:`grid_cost` adds up what the whole grid can reserve in the ledger, counting only what is
not paid for yet (the learned domain, once, and each cell whose model is not in the store and
has no open reservation), and :func:`check_grid_budget` refuses the sweep **before any cell
starts** when the dataset's remaining budget cannot cover it all: cells run in parallel, so
every reservation must fit at once. Whether a cell is paid for is decided by privsynth's own
model store and ledger (:mod:`privsynth_core.store`), never by an orchestrator's cache. A cell
whose fit left an open reservation (its worker died) is not trained again: it fails, and
:func:`cell_reservations` names the reservation for the custodian.

:func:`write_summary` writes ``summary.csv`` and the privacy-utility plot
``privacy_utility.png`` (both computed on real data: custodian-only).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BudgetExceededError, ConfigError
from ..fileio import atomic_write, atomic_write_text
from ..privacy.ledger import PrivacyBudget, PrivacyLedger

if TYPE_CHECKING:
    from ..privacy.ledger import LedgerEntry
    from .config import RunConfig
    from .rundir import RunResult

SUMMARY_FILE = "summary.csv"
PLOT_FILE = "privacy_utility.png"


#: Upper bound on a fit's delta when the config leaves it to the default (``1/(10 n̂)``, at most
#: this), for checking a budget before the row count is known.
DEFAULT_DELTA_BOUND = 1e-5


def grid_cost(
    cells: list[RunConfig],
    *,
    fingerprint: str,
    schema_path: str | Path | None,
    count_epsilon: float = 0.0,
    unfinished: frozenset[str] = frozenset(),
) -> PrivacyBudget:
    """The most the grid can reserve: the uncached domain (once), the row count if it is not
    released yet (once), and every cell whose model is not in the store.

    Args:
        cells: the runs (one dataset, one domain setting).
        fingerprint: the dataset's fingerprint.
        schema_path: the resolved domain if it is cached already; None if it must be resolved
            (then no model can be known to be cached, and the domain's cost counts).
        count_epsilon: what releasing the row count will cost (0 if already released).
        unfinished: store keys with an open training reservation: such a cell is refused, or
            resumed under that reservation, which the ledger already counts; it costs nothing
            more.
    """
    from .pipeline import MODEL_SUBDIR, fit_key, is_complete_model, model_store_entry

    if len({(c.input, c.domain_hash()) for c in cells}) > 1:
        raise ConfigError(
            "a sweep runs over one dataset and one domain; every cell must share "
            "input, schema and domain settings"
        )
    epsilon = delta = 0.0
    first = cells[0]
    if schema_path is None and first.domain == "dp":
        epsilon += first.domain_epsilon or 0.0
        delta += first.domain_delta
    training = False
    for cell in cells:
        if cell.epsilon is None:
            continue
        if schema_path is not None and (
            fit_key(cell, fingerprint, schema_path) in unfinished
            or is_complete_model(model_store_entry(cell, fingerprint, schema_path) / MODEL_SUBDIR)
        ):
            continue
        training = True
        epsilon += cell.epsilon
        delta += DEFAULT_DELTA_BOUND if cell.delta is None else cell.delta
    if training:
        epsilon += count_epsilon
    return PrivacyBudget(epsilon, min(delta, 0.999999))


def check_grid_budget(
    cells: list[RunConfig],
    *,
    fingerprint: str,
    schema_path: str | Path | None,
    ledger: PrivacyLedger | None = None,
) -> PrivacyBudget:
    """Refuse a grid (or a single run) whose cost exceeds the dataset's remaining budget.

    Models in the store and fits with an open reservation cost nothing more (both are already
    in the ledger's spent total).

    Returns:
        The cost: what the runs can reserve, caches taken into account.

    Raises:
        BudgetNotSetError: the dataset has no budget.
        BudgetExceededError: the grid would overspend; nothing has been run or charged.
    """
    from ..privacy.count import count_epsilon, released_row_count
    from ..privacy.ledger import budget_key
    from ..store import FIT_KEY_PARAM

    ledger = ledger or PrivacyLedger()
    key = cells[0].budget_key or budget_key(cells[0].source, fingerprint)
    status = ledger.status(key)
    released = released_row_count(ledger, key, extract=fingerprint) is not None
    unfinished = frozenset(
        str(e.params[FIT_KEY_PARAM])
        for e in ledger.open_reservations(key)
        if FIT_KEY_PARAM in e.params
    )
    cost = grid_cost(
        cells,
        fingerprint=fingerprint,
        schema_path=schema_path,
        count_epsilon=0.0 if released else count_epsilon(status.budget.epsilon),
        unfinished=unfinished,
    )
    remaining = status.remaining
    if not cost.fits_within(remaining):
        raise BudgetExceededError(
            f"{'the sweep' if len(cells) > 1 else 'the run'} ({len(cells)} run(s)) could spend "
            f"{cost} on {status.label or key[:12]} but only {remaining} of its budget "
            f"{status.budget} is left; nothing was run. Lower the epsilons, drop runs, or raise "
            f"the budget with `privsynth budget set` if the data custodian agrees"
        )
    return cost


def cell_reservations(
    cell: RunConfig,
    *,
    fingerprint: str,
    schema_path: str | Path,
    ledger: PrivacyLedger | None = None,
) -> list[LedgerEntry]:
    """The open training reservations of a cell's fit (left by an attempt that died)."""
    from ..privacy.ledger import budget_key
    from ..store import open_fit_reservations
    from .pipeline import fit_key

    key = cell.budget_key or budget_key(cell.source, fingerprint)
    return open_fit_reservations(
        ledger or PrivacyLedger(), key, fit_key(cell, fingerprint, schema_path)
    )


def summary_rows(
    results: list[tuple[RunConfig, RunResult | None, str | None]],
) -> list[dict[str, Any]]:
    """One row per cell: its settings, epsilon spent, headline metrics (or its error)."""
    rows = []
    for config, result, error in results:
        row: dict[str, Any] = {
            "generator": config.generator,
            "epsilon": config.epsilon,
            "seed": config.seed,
            "status": "failed" if error else "ok",
            "epsilon_spent": None,
            "delta_spent": None,
            "run_dir": str(config.output_dir),
            "error": error or "",
        }
        if result is not None:
            row["epsilon_spent"] = result.release["privacy"].get("epsilon")
            row["delta_spent"] = result.release["privacy"].get("delta")
            for headline in result.headlines:
                row[headline["metric_id"]] = headline["value"]
        rows.append(row)
    return rows


def _utility_metric(results: list[RunResult]) -> tuple[str, str] | None:
    """The headline metric the plot shows: the first utility one, else the first fidelity one."""
    for group in ("utility", "fidelity"):
        for result in results:
            for headline in result.headlines:
                if headline["group"] == group and headline["value"] is not None:
                    return headline["metric_id"], headline["name"]
    return None


def write_summary(
    results: list[tuple[RunConfig, RunResult | None, str | None]], directory: str | Path
) -> tuple[Path, Path | None]:
    """Write ``summary.csv`` and ``privacy_utility.png`` into ``directory``; return both paths
    (the plot is None when no cell has a headline score)."""
    directory = Path(directory)
    rows = summary_rows(results)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(directory / SUMMARY_FILE, buffer.getvalue())
    done = [result for _, result, _ in results if result is not None]
    metric = _utility_metric(done)
    if metric is None:
        return directory / SUMMARY_FILE, None
    return directory / SUMMARY_FILE, _plot(rows, metric, directory / PLOT_FILE)


def _plot(rows: list[dict[str, Any]], metric: tuple[str, str], target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric_id, name = metric
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for generator in sorted({r["generator"] for r in rows}):
        points: dict[float, list[float]] = {}
        for r in rows:
            if r["generator"] == generator and r.get(metric_id) is not None:
                points.setdefault(float(r["epsilon_spent"] or r["epsilon"]), []).append(
                    float(r[metric_id])
                )
        if not points:
            continue
        xs = sorted(points)
        means = [sum(points[x]) / len(points[x]) for x in xs]
        low = [m - min(points[x]) for m, x in zip(means, xs, strict=True)]
        high = [max(points[x]) - m for m, x in zip(means, xs, strict=True)]
        ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=generator)
    ax.set_xscale("log")
    ax.set_xlabel("epsilon spent (domain + training)")
    ax.set_ylabel(name)
    ax.set_title("Privacy-utility trade-off (mean over seeds, min-max bars)", fontsize=10)
    ax.legend()
    fig.text(
        0.01, 0.01, "computed on real data: not DP, custodian-only", fontsize=7, color="#b42318"
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    try:
        return atomic_write(target, lambda p: fig.savefig(p, format="png"))
    finally:
        plt.close(fig)


__all__ = ["cell_reservations", "check_grid_budget", "grid_cost", "summary_rows", "write_summary"]
