"""The privacy-accountant contract.

An accountant tracks the subsampled Gaussian mechanism steps of a DP-SGD run, as a history of
``(noise_multiplier, sample_rate, num_steps)``, and turns it into an epsilon at a given delta. The
maths lives in the plugins (RDP, PRV, GDP, PLD); this base class keeps the bookkeeping and the
serialisation that lets a resumed run continue the same accounting. Calibration (the noise or
the number of steps that meets a target, for any accountant) lives apart, in
:mod:`.calibration`, as opacus keeps ``get_noise_multiplier`` apart from its accountants.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..errors import AccountingError, ConfigError
from ..plugins import Registry, build_registry

Step = tuple[float, float, int]
"""One run of identical steps: (noise multiplier, sample rate, number of steps)."""


def check_step(noise_multiplier: float, sample_rate: float, num_steps: int) -> None:
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise AccountingError(f"noise multiplier must be a positive number, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise AccountingError(f"sample rate must be in (0, 1], got {sample_rate}")
    if num_steps < 0:
        raise AccountingError(f"number of steps must be >= 0, got {num_steps}")


def check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise AccountingError(f"delta must be in (0, 1), got {delta}")


class Accountant(ABC):
    """Base class of privacy accountants for the (Poisson-)subsampled Gaussian mechanism.

    Subclasses set the class attributes and implement :meth:`_epsilon`.

    Attributes:
        accountant_id: lowercase id under which the plugin registers ("rdp").
        description: one line shown in listings.
        approximate: True when the epsilon is an approximation that can under-report (GDP);
            such an accountant is labelled wherever it is offered.
    """

    accountant_id: ClassVar[str]
    description: ClassVar[str] = ""
    approximate: ClassVar[bool] = False

    def __init__(self) -> None:
        self.history: list[Step] = []

    # -- the maths, supplied by plugins ------------------------------------------------------

    @classmethod
    @abstractmethod
    def _epsilon(cls, history: list[Step], delta: float) -> float:
        """Return epsilon at ``delta`` for the composition of every step in ``history``."""

    # -- bookkeeping --------------------------------------------------------------------------

    def step(self, *, noise_multiplier: float, sample_rate: float, num_steps: int = 1) -> None:
        """Record ``num_steps`` steps of the subsampled Gaussian mechanism."""
        check_step(noise_multiplier, sample_rate, num_steps)
        if num_steps == 0:
            return
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            last = self.history[-1]
            self.history[-1] = (last[0], last[1], last[2] + num_steps)
        else:
            self.history.append((noise_multiplier, sample_rate, num_steps))

    @property
    def steps_taken(self) -> int:
        """Total number of steps recorded."""
        return sum(steps for _, _, steps in self.history)

    def get_epsilon(self, *, delta: float) -> float:
        """Epsilon spent so far at ``delta`` (0 when nothing has been recorded)."""
        check_delta(delta)
        if not self.history:
            return 0.0
        return float(self._epsilon(list(self.history), delta))

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot, carrying the accountant id, to resume the same accounting."""
        return {"accountant_id": self.accountant_id, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot made by :meth:`state_dict` of the same kind of accountant.

        Raises:
            AccountingError: the snapshot was made by a different accountant.
        """
        found = state.get("accountant_id")
        if found != self.accountant_id:
            raise AccountingError(
                f"cannot resume: the saved accounting was done by accountant {found!r}, not "
                f"{self.accountant_id!r}; resume with --accountant {found}"
            )
        self.history = [(float(s), float(q), int(t)) for s, q, t in state["history"]]

    # -- pure questions about a plan -----------------------------------------------------------

    @classmethod
    def epsilon_for(
        cls, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float
    ) -> float:
        """Epsilon at ``delta`` after ``steps`` identical steps (no state is changed)."""
        check_step(noise_multiplier, sample_rate, steps)
        check_delta(delta)
        if steps == 0:
            return 0.0
        return float(cls._epsilon([(noise_multiplier, sample_rate, steps)], delta))


def accountants() -> Registry[Accountant]:
    """The registry of privacy-accountant classes."""
    return build_registry("accountant", Accountant, "accountant_id", "register_accountants")


def settling_accountant(accountant_id: str) -> type[Accountant]:
    """The accountant that may calibrate noise, report an epsilon and settle the ledger.

    An accountant marked ``approximate`` (it may under-report, e.g. GDP's CLT approximation)
    is for comparisons only (``privsynth accountants compare``): a guarantee must come from an
    upper bound.

    Raises:
        UnknownPluginError: no such accountant.
        ConfigError: the accountant is an approximation.
    """
    cls = accountants().get(accountant_id)
    if cls.approximate:
        valid = ", ".join(e.plugin_id for e in accountants().entries() if not e.cls.approximate)
        raise ConfigError(
            f"accountant {accountant_id!r} is an approximation that can under-report epsilon; it "
            f"may be shown in comparisons (`privsynth accountants compare`) but never calibrates, "
            f"reports or settles a fit. Use one of: {valid}"
        )
    return cls
