"""The plugin hooks of privsynth: the reference for plugin authors.

A plugin is a module (or object) with functions marked ``@hookimpl`` and named like the hooks
below, exposed through the ``privsynth`` entry-point group of its distribution::

    # pyproject.toml of your package
    [project.entry-points.privsynth]
    my-generators = "my_package.privsynth_plugin"

    # my_package/privsynth_plugin.py
    from privsynth_core import hookimpl

    @hookimpl
    def register_generators(register):
        register(MyGenerator)

Every hook receives a ``register`` callback and calls it once per class it contributes. Hooks
register **classes**, never instances, and plugin modules must be cheap to import: load torch,
opacus, sdv, evidently and friends inside the methods that need them, so that
``privsynth plugins list`` and ``privsynth --help`` stay instant.

Each class carries its id as a class attribute (``generator_id``, ``accountant_id``,
``metric_id``). Ids are lowercase; registering an id that another plugin already registered is an
error (:class:`~privsynth_core.errors.DuplicatePluginError`), never a silent override.

``docs/plugins.md`` documents each hook with the exact signature below; a test keeps the two in
step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .evaluation.report import ReportSection
    from .generator import Generator
    from .metric import Metric
    from .privacy.accountant import Accountant

PROJECT_NAME = "privsynth"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
    """Register synthetic-data generator classes.

    Called once, the first time any generator is looked up (CLI, flows, UI or library code).

    Args:
        register: call ``register(cls)`` for each subclass of
            :class:`privsynth_core.Generator` this plugin provides. The class must define
            ``generator_id`` (lowercase, unique), ``description`` (one line; a generator that is
            not differentially private must say so), ``is_dp`` (bool) and ``Params`` (a
            subclass of :class:`privsynth_core.GeneratorParams`: a frozen pydantic model with
            ``extra="forbid"``; the CLI, the flows' config and the UI's form are generated from it).

    Returns:
        Nothing; the return value is ignored.

    Example::

        @hookimpl
        def register_generators(register):
            register(DPWGANGenerator)
    """


@hookspec
def register_accountants(register: Callable[[type[Accountant]], None]) -> None:
    """Register privacy-accountant classes.

    Called once, the first time any accountant is looked up.

    Args:
        register: call ``register(cls)`` for each subclass of
            :class:`privsynth_core.Accountant` this plugin provides. The class must define
            ``accountant_id`` (lowercase, unique), ``description`` and ``approximate`` (True
            when the accountant's epsilon is not a guaranteed upper bound, e.g. GDP's CLT
            approximation; such accountants are labelled wherever they are offered).

    Returns:
        Nothing; the return value is ignored.

    Example::

        @hookimpl
        def register_accountants(register):
            register(RDPAccountant)
    """


@hookspec
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register evaluation-metric classes (fidelity, utility or privacy).

    Called once, the first time any metric is looked up.

    Args:
        register: call ``register(cls)`` for each subclass of :class:`privsynth_core.Metric`
            this plugin provides. The class must define ``metric_id`` (lowercase, unique),
            ``group`` (``"fidelity"``, ``"utility"`` or ``"privacy"``), ``direction``
            (``"higher_is_better"`` or ``"lower_is_better"``) and ``description``.

    Returns:
        Nothing; the return value is ignored.

    Example::

        @hookimpl
        def register_metrics(register):
            register(TVDMetric)
    """


@hookspec
def register_report_sections(register: Callable[[type[ReportSection]], None]) -> None:
    """Register sections of the evaluation report (``report.html``).

    Called once, the first time a report is written (``privsynth evaluate``, the evaluate flow,
    the UI). Each section is instantiated with no arguments and its ``render(context,
    directory)`` is called after every metric has run; it returns an HTML fragment (images
    embedded as ``data:`` URIs, so the page stays self-contained) and the files it wrote. A
    section that raises is shown as failed in the page; the rest of the report is still written.

    Args:
        register: call ``register(cls)`` for each subclass of
            :class:`privsynth_core.evaluation.report.ReportSection` this plugin provides. The class
            must
            define ``section_id`` (lowercase, unique), ``title``, ``description`` and ``order``
            (position in the page, lower first). Sections read the real data: keep heavy
            imports (matplotlib, evidently) inside ``render``.

    Returns:
        Nothing; the return value is ignored.

    Example::

        @hookimpl
        def register_report_sections(register):
            register(EvidentlyDriftSection)
    """
