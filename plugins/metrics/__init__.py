"""The built-in evaluation metrics: fidelity, utility and privacy.

Registered through ``register_metrics`` like any third-party metric plugin. Importing this package
loads numpy and polars only; scipy and scikit-learn are imported inside ``compute``.
"""

from __future__ import annotations

from collections.abc import Callable

from privsynth_core import Metric, hookimpl

from .fidelity import FIDELITY_METRICS
from .privacy import PRIVACY_METRICS
from .utility import UTILITY_METRICS

ALL_METRICS: tuple[type[Metric], ...] = FIDELITY_METRICS + UTILITY_METRICS + PRIVACY_METRICS


@hookimpl
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register every built-in metric class."""
    for cls in ALL_METRICS:
        register(cls)
