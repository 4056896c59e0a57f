"""The privacy ledger's values: amounts, entries, a key's status, and budget keys.

See :mod:`privsynth_core.privacy.ledger` for the bookkeeping they take part in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

SOURCE_PREFIX = "source:"  # fingerprints are hex, so a source key can never equal one
_SOURCE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

EntryStatus = Literal["spent", "reserved", "non-dp"]


def budget_key(source: str | None, fingerprint: str) -> str:
    """The key a budget is kept under: ``source:<id>`` for a named data source, else the
    content fingerprint of the data.

    Args:
        source: the custodian's id of the data source (letters, digits, ``._-``; 1-64 chars), or
            None when the data is its own population.
        fingerprint: the content fingerprint of the extract.

    Raises:
        ConfigError: the source id is not valid.
    """
    if source is None:
        if not fingerprint or fingerprint.startswith(SOURCE_PREFIX):
            raise ConfigError(
                f"{fingerprint!r} is not a data fingerprint; pass a source id as "
                f"the source, or the data's fingerprint"
            )
        return fingerprint
    if not _SOURCE_ID.fullmatch(source):
        raise ConfigError(
            f"invalid data source id {source!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return SOURCE_PREFIX + source


def short_key(key: str) -> str:
    """A budget key as people read it: a source key whole, a fingerprint's first 12 digits."""
    return key if key.startswith(SOURCE_PREFIX) else key[:12]


#: Relative tolerance of every "does it fit" comparison (:meth:`PrivacyBudget.fits_within`).
BUDGET_REL_TOL = 1e-9


def over_limit(value: float, limit: float) -> bool:
    """Whether ``value`` exceeds ``limit`` by more than :data:`BUDGET_REL_TOL` allows."""
    return value > limit * (1 + BUDGET_REL_TOL) + 1e-15


@dataclass(frozen=True)
class PrivacyBudget:
    """An (epsilon, delta) pair: a budget, a target, or an amount spent."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        # Always floats: the event log hashes their JSON, where 1 and 1.0 differ.
        try:
            object.__setattr__(self, "epsilon", float(self.epsilon))
            object.__setattr__(self, "delta", float(self.delta))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"epsilon and delta must be numbers, got {self.epsilon!r} and {self.delta!r}"
            ) from exc
        if not (self.epsilon >= 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"epsilon must be a finite number >= 0, got {self.epsilon}")
        if not 0 <= self.delta < 1:
            raise ConfigError(f"delta must be in [0, 1), got {self.delta}")

    def __str__(self) -> str:
        return f"(epsilon={self.epsilon:.4g}, delta={self.delta:.3g})"

    def fits_within(self, limit: PrivacyBudget) -> bool:
        """Whether spending this amount stays within ``limit`` (what is left, or a total).

        The one rule every budget check uses (the ledger's charges, the sweep's and the row
        count's pre-checks, the DP domain's): a relative tolerance of 1e-9 absorbs the rounding of
        sums of floats, so a plan that adds up to exactly what is left is not refused for 1e-16.
        """
        return not (over_limit(self.epsilon, limit.epsilon) or over_limit(self.delta, limit.delta))


@dataclass(frozen=True)
class LedgerEntry:
    """One mechanism run on one budget key (``extract``: the fingerprint of the data it read)."""

    entry_id: int
    key: str
    run_id: str
    mechanism: str
    epsilon: float
    delta: float
    status: EntryStatus
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    extract: str | None = None

    @property
    def fingerprint(self) -> str:
        """The budget key (the name from before data sources; a fingerprint without one)."""
        return self.key


@dataclass(frozen=True)
class DatasetBudget:
    """A budget key's budget, what has been spent of it, and what is left."""

    key: str
    label: str
    budget: PrivacyBudget
    spent: PrivacyBudget
    non_private_runs: int
    unacknowledged_non_dp: int = 0

    @property
    def fingerprint(self) -> str:
        """The budget key (the name from before data sources; a fingerprint without one)."""
        return self.key

    @property
    def source(self) -> str | None:
        """The data source id, or None when the key is a content fingerprint."""
        return self.key[len(SOURCE_PREFIX) :] if self.key.startswith(SOURCE_PREFIX) else None

    @property
    def unbounded(self) -> bool:
        """True while a non-DP run is newer than the last acknowledgement: the population's real
        privacy loss has no bound, whatever ``spent`` says."""
        return self.unacknowledged_non_dp > 0

    @property
    def remaining(self) -> PrivacyBudget:
        """Budget minus spent, floored at zero."""
        return PrivacyBudget(
            max(self.budget.epsilon - self.spent.epsilon, 0.0),
            max(self.budget.delta - self.spent.delta, 0.0),
        )


def shortfall(spend: PrivacyBudget, left: PrivacyBudget) -> str:
    """What to lower when ``spend`` does not fit ``left``: only what does not fit (a pure
    epsilon-DP spend is never told to lower delta)."""
    eps = spend.epsilon > left.epsilon * (1 + 1e-9) + 1e-15
    dlt = spend.delta > left.delta * (1 + 1e-9) + 1e-15
    what = "epsilon and delta" if eps and dlt else "delta" if dlt else "epsilon"
    return (
        f"Lower {what}, or raise the budget with `privsynth budget set` if the data "
        f"custodian agrees"
    )
