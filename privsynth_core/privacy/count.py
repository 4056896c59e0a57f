"""The released row count n̂: the one way privsynth learns how big a private table is.

Every sensitivity in privsynth assumes **add/remove-one** neighbours, so the exact number of rows
``n`` is itself private: one person more or less changes it. Yet several public choices need a
size: DP-SGD's Poisson rate ``q = batch_size / n̂`` and its steps per epoch, AIM's number of
selections, the default delta ``1 / (10 n̂)``, and the default number of synthetic rows. They all
come from ``n̂``, a count released once per extract by the discrete Laplace mechanism
(sensitivity 1, pure epsilon-DP), charged to the ledger like any other release. ``n`` itself is
never written anywhere that may leave the custodian.

The count costs ``COUNT_BUDGET_SHARE`` (1%) of the source's total epsilon, at least
``MIN_COUNT_EPSILON`` and at most ``MAX_COUNT_EPSILON``; it is released the first time a DP
mechanism needs it, and is then reused for free (post-processing) by every later fit on the
same extract: the ledger entry holds the released value. A count charged to one run is part of
the guarantee of every release derived from it, and each such release lists it among its parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BudgetExceededError
from .coupling import replayed
from .ledger import PrivacyBudget
from .ledger_types import shortfall
from .noise import discrete_laplace

if TYPE_CHECKING:
    from .ledger import LedgerEntry, PrivacyLedger

COUNT_MECHANISM = "noisy row count"
#: The row count's share of a source's total epsilon (a stated, small share).
COUNT_BUDGET_SHARE = 0.01
#: Never spend less than this on the count: below it, the noise (scale 1/epsilon) swamps tables
#: of a few thousand rows.
MIN_COUNT_EPSILON = 0.005
#: Never spend more: at this epsilon the count is within about 14 rows, more than any plan needs.
MAX_COUNT_EPSILON = 0.1


@dataclass(frozen=True)
class NoisyCount:
    """A released row count and the ledger entry that paid for it.

    Attributes:
        value: n̂, at least 1 (post-processing of the noisy count).
        epsilon: what its release cost (delta is 0).
        entry_id: the ledger entry (custodian-only).
        fresh: whether this call released it (False: reused from the ledger).
    """

    value: int
    epsilon: float
    entry_id: int
    fresh: bool


def count_epsilon(budget_epsilon: float) -> float:
    """What releasing the row count costs under a source whose total epsilon is given."""
    return min(max(COUNT_BUDGET_SHARE * budget_epsilon, MIN_COUNT_EPSILON), MAX_COUNT_EPSILON)


def _from_entry(entry: LedgerEntry, *, fresh: bool) -> NoisyCount:
    return NoisyCount(int(entry.params["noisy_rows"]), entry.epsilon, entry.entry_id, fresh)


def released_row_count(ledger: PrivacyLedger, key: str, *, extract: str) -> NoisyCount | None:
    """The row count already released for ``extract`` under budget ``key``, if any."""
    for entry in ledger.entries(key):
        if (
            entry.mechanism == COUNT_MECHANISM
            and entry.status == "spent"
            and (entry.extract or entry.params.get("extract")) == extract
        ):
            return _from_entry(entry, fresh=False)
    return None


def ensure_row_count(
    ledger: PrivacyLedger,
    key: str,
    *,
    extract: str,
    n_rows: int,
    run_id: str,
    also_needed: PrivacyBudget | None = None,
) -> NoisyCount:
    """The released row count of ``extract``: reused from the ledger, or released now.

    Args:
        ledger: where the count is charged and remembered.
        key: the budget key of the extract's source.
        extract: the extract's content fingerprint (one count per extract).
        n_rows: the true number of rows (read inside the mechanism only).
        run_id: the run that releases it, for the ledger.
        also_needed: what the caller will spend right after; a fresh count is refused
            (nothing charged) when the count and that together do not fit the budget left.

    Raises:
        BudgetNotSetError: the source has no budget.
        BudgetExceededError: the budget left cannot cover the count (plus ``also_needed``).
    """
    found = released_row_count(ledger, key, extract=extract)
    if found is not None:
        return found
    status = ledger.status(key)
    epsilon = count_epsilon(status.budget.epsilon)
    more = also_needed or PrivacyBudget(0.0, 0.0)
    left = status.remaining
    spend = PrivacyBudget(epsilon + more.epsilon, more.delta)
    if not spend.fits_within(left):
        raise BudgetExceededError(
            f"this would spend {spend} on {status.label or key[:12]} (the released row count, "
            f"epsilon={epsilon:.4g}, then {more}) but only {left} is left; nothing was charged. "
            f"{shortfall(spend, left)}"
        )

    def release() -> int:
        noisy = int(discrete_laplace([n_rows], scale=1.0 / epsilon)[0])
        return max(noisy, 1)  # post-processing: a table has at least one row

    value = replayed(COUNT_MECHANISM, release)
    entry = ledger.charge(
        key,
        mechanism=COUNT_MECHANISM,
        epsilon=epsilon,
        delta=0.0,
        run_id=run_id,
        extract=extract,
        params={
            "mechanism": "discrete Laplace, sensitivity 1",
            "scale": 1.0 / epsilon,
            "extract": extract,
            "noisy_rows": value,
        },
    )
    return _from_entry(entry, fresh=True)


def default_delta(noisy_rows: int) -> float:
    """The default delta of a fit: well below 1/n̂ (``1 / (10 n̂)``), and at most 1e-5."""
    return min(1e-5, 1.0 / (10 * max(noisy_rows, 1)))


def default_sample_rows(noisy_rows: int) -> int:
    """The default number of synthetic rows: the released count."""
    return max(int(noisy_rows), 1)


def noise_scale_rows(epsilon: float) -> float:
    """Standard deviation of the count's noise (``sqrt(2) / epsilon``), for messages."""
    return math.sqrt(2.0) / epsilon


__all__ = [
    "COUNT_BUDGET_SHARE",
    "COUNT_MECHANISM",
    "MAX_COUNT_EPSILON",
    "MIN_COUNT_EPSILON",
    "NoisyCount",
    "count_epsilon",
    "default_delta",
    "default_sample_rows",
    "ensure_row_count",
    "noise_scale_rows",
    "released_row_count",
]
