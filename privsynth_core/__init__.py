"""privsynth core: contracts, plugin machinery, data, schema and the privacy ledger.

Importing this package is cheap: no torch, opacus, sdv, evidently or gradio is loaded here.
"""

from __future__ import annotations

from ._version import __version__
from .errors import (
    AccountingError,
    BudgetError,
    BudgetExceededError,
    BudgetNotSetError,
    ConfigError,
    DomainError,
    DuplicatePluginError,
    GeneratorError,
    InputFileError,
    LedgerAccessError,
    LedgerCorruptError,
    LedgerIntegrityError,
    LedgerMissingError,
    MetricError,
    NotFittedError,
    PluginError,
    PrivsynthError,
    SchemaError,
    UnknownPluginError,
)
from .generator import FitSummary, Generator, GeneratorParams, Progress
from .hookspecs import hookimpl
from .metric import Metric, MetricResult
from .privacy.accountant import Accountant
from .privacy.ledger import PrivacyBudget, PrivacyLedger
from .schema import Column, ColumnKind, Schema
from .table import Table

__all__ = [
    "Accountant",
    "AccountingError",
    "BudgetError",
    "BudgetExceededError",
    "BudgetNotSetError",
    "Column",
    "ColumnKind",
    "ConfigError",
    "DomainError",
    "DuplicatePluginError",
    "FitSummary",
    "Generator",
    "GeneratorError",
    "GeneratorParams",
    "InputFileError",
    "LedgerAccessError",
    "LedgerCorruptError",
    "LedgerIntegrityError",
    "LedgerMissingError",
    "Metric",
    "MetricError",
    "MetricResult",
    "NotFittedError",
    "PluginError",
    "PrivacyBudget",
    "PrivacyLedger",
    "PrivsynthError",
    "Progress",
    "Schema",
    "SchemaError",
    "Table",
    "UnknownPluginError",
    "__version__",
    "hookimpl",
]
