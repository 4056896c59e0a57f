"""The privsynth error hierarchy.

Every error a user can cause derives from :class:`PrivsynthError`, and also from the builtin that
matches its meaning (so ``except ValueError`` keeps working for callers who do not know privsynth).
Messages are written for the person at the keyboard: what was wrong, and what to do about it.
Anything that is not a ``PrivsynthError`` reaching a user is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class PrivsynthError(Exception):
    """Base class of every error privsynth raises on purpose."""


class PluginError(PrivsynthError):
    """A plugin could not be loaded, found or registered."""


class UnknownPluginError(PluginError, LookupError):
    """An id names no registered plugin of that kind; the message lists the valid ids."""

    def __init__(self, kind: str, plugin_id: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.plugin_id = plugin_id
        self.available = sorted(available)
        listed = ", ".join(self.available) or "(none registered)"
        super().__init__(f"unknown {kind} {plugin_id!r}; available: {listed}")


class DuplicatePluginError(PluginError):
    """Two plugins registered the same id for the same kind."""


class InputFileError(PrivsynthError, ValueError):
    """An input file is missing, unreadable or not a table privsynth can read.

    Args:
        message: what was wrong and what to do.
        retryable: the same read may succeed later (the file is missing, or the operating
            system could not read it right now); False for what is in the file (damaged,
            not a table, a bad header), which no retry can cure. The flows retry only the
            retryable ones.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable

    def __reduce__(self) -> tuple[object, ...]:
        # Kept across processes (Dask workers, Prefect results): the keyword is not in args.
        return (_input_file_error, (str(self), self.retryable))


def _input_file_error(message: str, retryable: bool) -> InputFileError:
    return InputFileError(message, retryable=retryable)


class SchemaError(PrivsynthError, ValueError):
    """The data does not match its schema, or the schema itself is invalid.

    Carries every problem found, not just the first one, in :attr:`problems`.
    """

    def __init__(self, summary: str, problems: Sequence[str] = ()) -> None:
        self.summary = summary
        self.problems = list(problems)
        text = summary
        if self.problems:
            shown = self.problems[:50]
            text += "\n" + "\n".join(f"  - {p}" for p in shown)
            if len(self.problems) > len(shown):
                text += f"\n  ... and {len(self.problems) - len(shown)} more"
        super().__init__(text)


class DomainError(PrivsynthError, ValueError):
    """The domain (bounds, categories) is missing, not public, or cannot be learned."""


class ConfigError(PrivsynthError, ValueError):
    """A run configuration or plugin parameter is invalid."""


class BudgetError(PrivsynthError):
    """Base class of privacy-budget problems."""


class BudgetNotSetError(BudgetError, LookupError):
    """No privacy budget has been set for a dataset yet."""


class BudgetExceededError(BudgetError):
    """A charge would take a dataset's spent privacy over its budget; nothing was charged."""


class LedgerMissingError(BudgetError, FileNotFoundError):
    """The privacy ledger is gone (missing, empty, or without its tables) where one existed.

    The ledger never silently starts over: the message says how to restore it from a backup.
    """


class LedgerCorruptError(BudgetError, ValueError):
    """The privacy ledger's file is damaged: SQLite cannot read it as a database."""


class LedgerIntegrityError(BudgetError, ValueError):
    """The privacy ledger's event log or tables were changed outside privsynth (or a backup
    fails its hash chain); nothing is written to such a ledger."""


class LedgerAccessError(BudgetError, PermissionError):
    """The privacy ledger or its folder cannot be read or written (permissions, read-only)."""


class NotFittedError(PrivsynthError, RuntimeError):
    """A generator was asked to sample or save before it was fitted."""


class GeneratorError(PrivsynthError, RuntimeError):
    """A generator failed to train, sample, save or load."""


class AccountingError(PrivsynthError, ValueError):
    """A privacy-accounting question has no valid answer (e.g. no noise reaches the target)."""


class MetricError(PrivsynthError, ValueError):
    """A metric cannot be computed on the given inputs (e.g. a required target is missing)."""


__all__ = [
    "AccountingError",
    "BudgetError",
    "BudgetExceededError",
    "BudgetNotSetError",
    "ConfigError",
    "DomainError",
    "DuplicatePluginError",
    "GeneratorError",
    "InputFileError",
    "LedgerAccessError",
    "LedgerCorruptError",
    "LedgerIntegrityError",
    "LedgerMissingError",
    "MetricError",
    "NotFittedError",
    "PluginError",
    "PrivsynthError",
    "SchemaError",
    "UnknownPluginError",
]
