"""What the Budget & runs tab does with budgets: the budgets of the user's data sources, their
ledger entries, setting a budget, closing a reservation, acknowledging non-DP runs.

Every budget is a data source's, in the one ledger this home shares with the CLI and the flows
(``DatasetRecord.key``). Only a custodian sets a budget or acts on the ledger; an analyst sees
the budgets, and other people's entries without their run ids. No Gradio here.
"""

from __future__ import annotations

from typing import Any

from privsynth_core.errors import BudgetNotSetError, ConfigError
from privsynth_core.privacy.ledger import DatasetBudget, PrivacyBudget, short_key

from .workspace import DatasetRecord, Workspace

NO_BUDGET = (
    "no budget set yet for this data source: ask the data custodian to set one (on the "
    "Budget & runs tab, or `privsynth budget set`)"
)


def noisy_rows(ws: Workspace, dataset: DatasetRecord) -> int | None:
    """The extract's released row count n̂, if a DP step has released it already."""
    from privsynth_core.privacy.count import released_row_count

    found = released_row_count(ws.ledger, dataset.key, extract=dataset.fingerprint)
    return found.value if found else None


def source_status(ws: Workspace, dataset: DatasetRecord) -> DatasetBudget:
    """The budget of the dataset's data source.

    Raises:
        BudgetNotSetError: none set yet (the message says to ask the custodian).
    """
    try:
        return ws.ledger.status(dataset.key)
    except BudgetNotSetError:
        raise BudgetNotSetError(NO_BUDGET) from None


def num(value: float | None) -> float | None:
    """An epsilon as the page shows it: 4 decimals (None for a missing or infinite one)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return round(float(value), 4)


def small(value: float | None) -> float | None:
    """A delta as the page shows it: 3 significant digits, as ``PrivacyBudget`` prints it
    (a sum of deltas, such as 1e-5 - 1.1e-7, would otherwise show some 20 digits)."""
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(f"{float(value):.3g}")


def budget_rows(ws: Workspace) -> list[list[Any]]:
    """One row per data source of the user's datasets: budget, spent, left, non-DP runs."""
    by_key: dict[str, list[str]] = {}
    for dataset in ws.datasets():
        by_key.setdefault(dataset.key, []).append(dataset.name)
    rows: list[list[Any]] = []
    for key, names in by_key.items():
        shown = [short_key(key), ", ".join(dict.fromkeys(names))]
        try:
            s = ws.ledger.status(key)
        except BudgetNotSetError:  # shown as such
            rows.append([*shown, None, None, None, None, None, None, "no budget set yet"])
            continue
        non_dp = (
            f"{s.non_private_runs} (unbounded: not acknowledged)"
            if s.unbounded
            else str(s.non_private_runs)
        )
        rows.append(
            [
                *shown,
                s.budget.epsilon,
                small(s.budget.delta),
                num(s.spent.epsilon),
                small(s.spent.delta),
                num(s.remaining.epsilon),
                small(s.remaining.delta),
                non_dp,
            ]
        )
    return rows


def ledger_rows(ws: Workspace, dataset_id: str) -> list[list[Any]]:
    """The ledger entries of the dataset's data source (everyone's), oldest first.

    An analyst sees the runs of others (other users, the CLI, the flows) only as "not yours",
    and each entry's date, not its time: a DP domain charges each column just before its
    mechanism runs, so the gaps between those times are how long a mechanism ran on the rows
    (which depends on the data and is covered by no guarantee; the ledger is the custodian's).
    """
    dataset = ws.dataset(dataset_id)
    own = {r.run_id for r in ws.runs()} | {f"domain-{d.dataset_id}" for d in ws.datasets()}

    def run_of(run_id: str) -> str:
        if ws.is_custodian or run_id in own or run_id[: len("domain-") + 16] in own:
            return run_id[:24]
        return "(not yours)"

    return [
        [
            e.entry_id,
            e.created_at if ws.is_custodian else e.created_at[:10],
            e.mechanism,
            e.status,
            None if e.status == "non-dp" else num(e.epsilon),
            None if e.status == "non-dp" else small(e.delta),
            run_of(e.run_id),
        ]
        for e in ws.ledger.entries(dataset.key)
    ]


def budget_of(ws: Workspace, dataset_id: str) -> PrivacyBudget | None:
    """The total budget of the dataset's data source (None if none is set)."""
    try:
        return ws.ledger.status(ws.dataset(dataset_id).key).budget
    except BudgetNotSetError:
        return None


def set_budget(ws: Workspace, dataset_id: str, epsilon: Any, delta: Any) -> None:
    """Set or change the budget of the dataset's data source (custodians only; never below what
    is already spent). It is the one budget of that source for every user and front end.

    Raises:
        RoleError, NotFoundError, ConfigError, BudgetExceededError.
    """
    ws.require_custodian("set or change the budget of a data source")
    dataset = ws.dataset(dataset_id)
    try:
        eps, dlt = float(epsilon), float(delta)
    except (TypeError, ValueError):
        raise ConfigError("the budget needs a number for epsilon and for delta") from None
    label = (
        dataset.origin
        if dataset.source or dataset.origin.startswith("server")
        else f"{dataset.origin} (content {dataset.source_fingerprint[:12]})"
    )
    ws.ledger.set_budget(dataset.key, epsilon=eps, delta=dlt, label=label[:200])


def acknowledge_non_dp(ws: Workspace, dataset_id: str, note: str) -> int:
    """Record that a custodian has seen the non-DP runs on the dataset's data source.

    Raises:
        RoleError, NotFoundError, ConfigError (no note), BudgetError (nothing to acknowledge).
    """
    ws.require_custodian("acknowledge non-DP runs")
    return ws.ledger.acknowledge_non_dp(
        ws.dataset(dataset_id).key, note=str(note or ""), by=f"web:{ws.user}"
    )


def close_reservation(
    ws: Workspace, dataset_id: str, entry_id: Any, note: str, running: set[str]
) -> None:
    """Close a reservation of the dataset's data source left open by a training that died: it
    is recorded as spent in full (custodians only).

    Args:
        running: run ids training right now in this app (their reservations are not left open).

    Raises:
        RoleError, NotFoundError, ConfigError, BudgetError.
    """
    from privsynth_core.errors import BudgetError

    ws.require_custodian("close a reservation")
    key = ws.dataset(dataset_id).key
    try:
        wanted = int(float(entry_id))
    except (TypeError, ValueError):
        raise ConfigError("give the ledger entry id of the reservation") from None
    found = [e for e in ws.ledger.open_reservations(key) if e.entry_id == wanted]
    if not found:
        raise BudgetError(f"entry {wanted} is not an open reservation of this data source")
    if found[0].run_id in running:
        raise BudgetError(
            f"entry {wanted} belongs to a training that is still running; it "
            f"settles itself when it ends (or cancel it)"
        )
    ws.ledger.close_reservation(wanted, note=str(note or ""), by=f"web:{ws.user}")


__all__ = [
    "NO_BUDGET",
    "acknowledge_non_dp",
    "budget_of",
    "budget_rows",
    "close_reservation",
    "ledger_rows",
    "noisy_rows",
    "num",
    "set_budget",
    "small",
    "source_status",
]
