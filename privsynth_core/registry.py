"""Typed registries of plugin classes, keyed by each class's id attribute.

The registries are filled from the plugin hooks the first time one is used, so importing
privsynth_core costs nothing. Look-ups of unknown ids raise
:class:`~privsynth_core.errors.UnknownPluginError` listing the valid ids; a second class under an
id already taken raises :class:`~privsynth_core.errors.DuplicatePluginError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import DuplicatePluginError, PluginError, UnknownPluginError
from .plugins import load_plugins, plugin_origin, pm

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .evaluation.report import ReportSection
    from .generator import Generator
    from .metric import Metric
    from .privacy.accountant import Accountant
    from .schema import Schema

T = TypeVar("T")

_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass(frozen=True)
class PluginEntry(Generic[T]):
    """One registered class and where it came from."""

    kind: str
    plugin_id: str
    cls: type[T]
    plugin_name: str
    distribution: str
    version: str

    @property
    def description(self) -> str:
        """The class's one-line description (its ``description`` attribute)."""
        return str(getattr(self.cls, "description", "") or "")


class Registry(Generic[T]):
    """Classes of one plugin kind (generator, accountant or metric), keyed by id.

    Args:
        kind: human name of the kind, used in messages ("generator").
        base: the class every registered class must subclass.
        id_attribute: name of the class attribute holding the id ("generator_id").
    """

    def __init__(self, kind: str, base: type[Any], id_attribute: str) -> None:
        self.kind = kind
        self.base = base
        self.id_attribute = id_attribute
        self._entries: dict[str, PluginEntry[T]] = {}

    def register(self, cls: type[T], *, plugin_name: str) -> None:
        """Add ``cls``, contributed by the plugin named ``plugin_name``.

        Raises:
            PluginError: ``cls`` is not a subclass of the kind's base class or has a bad id.
            DuplicatePluginError: the id is already registered.
        """
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise PluginError(
                f"plugin {plugin_name!r} registered {cls!r} as a {self.kind}, but it is not a "
                f"subclass of {self.base.__name__}"
            )
        plugin_id = getattr(cls, self.id_attribute, None)
        if not isinstance(plugin_id, str) or not _ID_PATTERN.match(plugin_id):
            raise PluginError(
                f"{self.kind} class {cls.__name__} from plugin {plugin_name!r} needs a lowercase "
                f"{self.id_attribute} (letters, digits, '-', '_'); got {plugin_id!r}"
            )
        if plugin_id in self._entries:
            other = self._entries[plugin_id]
            raise DuplicatePluginError(
                f"{self.kind} id {plugin_id!r} is registered twice: by plugin "
                f"{other.plugin_name!r} ({other.cls.__name__}) and by plugin {plugin_name!r} "
                f"({cls.__name__}); uninstall or block one of them with PRIVSYNTH_DISABLED_PLUGINS"
            )
        origin = plugin_origin(plugin_name)
        self._entries[plugin_id] = PluginEntry(
            self.kind, plugin_id, cls, plugin_name, origin.distribution, origin.version
        )

    def get(self, plugin_id: str) -> type[T]:
        """Return the class registered under ``plugin_id``.

        Raises:
            UnknownPluginError: no class has that id; the message lists the valid ids.
        """
        return self.entry(plugin_id).cls

    def entry(self, plugin_id: str) -> PluginEntry[T]:
        """Return the registry entry (class and origin) for ``plugin_id``."""
        try:
            return self._entries[plugin_id]
        except KeyError:
            raise UnknownPluginError(self.kind, plugin_id, self._entries) from None

    def names(self) -> list[str]:
        """The registered ids, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[PluginEntry[T]]:
        """All entries, sorted by id."""
        return [self._entries[name] for name in self.names()]

    def __contains__(self, plugin_id: object) -> bool:
        return plugin_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


_registries: dict[str, Registry[Any]] = {}


def _build(kind: str, base: type[Any], id_attribute: str, hook_name: str) -> Registry[T]:
    if kind in _registries:
        return _registries[kind]
    load_plugins()
    registry: Registry[T] = Registry(kind, base, id_attribute)
    for impl in getattr(pm.hook, hook_name).get_hookimpls():

        def register(cls: type[T], _name: str = impl.plugin_name) -> None:
            registry.register(cls, plugin_name=_name)

        impl.function(register=register)
    _registries[kind] = registry
    return registry


def generators() -> Registry[Generator]:
    """The registry of generator classes."""
    from .generator import Generator

    return _build("generator", Generator, "generator_id", "register_generators")


def accountants() -> Registry[Accountant]:
    """The registry of privacy-accountant classes."""
    from .privacy.accountant import Accountant

    return _build("accountant", Accountant, "accountant_id", "register_accountants")


def settling_accountant(accountant_id: str) -> type[Accountant]:
    """The accountant that may calibrate noise, report an epsilon and settle the ledger.

    An accountant marked ``approximate`` (it may under-report, e.g. GDP's CLT approximation)
    is for comparisons only (``privsynth accountants compare``): a guarantee must come from an
    upper bound.

    Raises:
        UnknownPluginError: no such accountant.
        ConfigError: the accountant is an approximation.
    """
    from .errors import ConfigError

    cls = accountants().get(accountant_id)
    if cls.approximate:
        valid = ", ".join(e.plugin_id for e in accountants().entries() if not e.cls.approximate)
        raise ConfigError(
            f"accountant {accountant_id!r} is an approximation that can under-report epsilon; it "
            f"may be shown in comparisons (`privsynth accountants compare`) but never calibrates, "
            f"reports or settles a fit. Use one of: {valid}"
        )
    return cls


@dataclass(frozen=True)
class GeneratorChoice:
    """The generator :func:`choose_generator` picked, why, and how the others ranked.

    Attributes:
        generator_id: the chosen generator.
        why: one sentence for the user (the generator's own reason, and that it was chosen).
        ranking: every DP generator considered, best first, as ``(id, score, why)``; a
            generator without an opinion has score None.
    """

    generator_id: str
    why: str
    ranking: tuple[tuple[str, float | None, str], ...]


def choose_generator(
    schema: Schema,
    noisy_rows: int | None = None,
    installed: Iterable[str] | None = None,
    *,
    target: str | None = None,
) -> GeneratorChoice:
    """The DP generator that serves a table best, among those installed, and why.

    Each generator declares how well it suits the table (:meth:`Generator.suitability`, from
    public facts only: the schema, the released row count n̂ when there is one, the target);
    the highest score wins, ties go to the id first in alphabetical order. Core names no
    generator: what is installed decides. The CLI (``privsynth fit`` without ``--generator``),
    the demo and the web app call this.

    Args:
        schema: the table's schema.
        noisy_rows: the released row count n̂, if one has been released (never the exact
            count).
        installed: the generator ids to choose among (default: every registered DP generator).
        target: the column a model will predict, when the user named one.

    Raises:
        ConfigError: no DP generator is installed (or none of ``installed`` is one).
    """
    from .errors import ConfigError
    from .generator import TableProfile

    registry = generators()
    ids = list(installed) if installed is not None else registry.names()
    profile = TableProfile.of(schema, rows=noisy_rows, target=target)
    ranked: list[tuple[str, float | None, str]] = []
    for generator_id in ids:
        cls = registry.get(generator_id)
        if not cls.is_dp:
            continue
        opinion = cls.suitability(profile)
        ranked.append(
            (generator_id, None, "declares no suitability")
            if opinion is None
            else (generator_id, float(opinion.score), opinion.why)
        )
    if not ranked:
        raise ConfigError(
            "no differentially private generator is installed; see `privsynth plugins list`"
        )
    ranked.sort(key=lambda r: (-(r[1] if r[1] is not None else -1.0), r[0]))
    best_id, score, why = ranked[0]
    reason = (
        f"{why} (chosen among {len(ranked)} installed DP generator"
        f"{'s' if len(ranked) != 1 else ''}"
        f"{'' if score is not None else '; none declares how well it suits a table'})"
    )
    return GeneratorChoice(best_id, reason, tuple(ranked))


def metrics() -> Registry[Metric]:
    """The registry of metric classes."""
    from .metric import Metric

    return _build("metric", Metric, "metric_id", "register_metrics")


def report_sections() -> Registry[ReportSection]:
    """The registry of report-section classes."""
    from .evaluation.report import ReportSection

    return _build("report-section", ReportSection, "section_id", "register_report_sections")


REGISTRIES: dict[str, Callable[[], Registry[Any]]] = {
    "generator": generators,
    "accountant": accountants,
    "metric": metrics,
    "report-section": report_sections,
}


def all_entries() -> list[PluginEntry[Any]]:
    """Every registered class of every kind, grouped by kind then id."""
    return [entry for build in REGISTRIES.values() for entry in build().entries()]


def reset_registries() -> None:
    """Forget the built registries so the next look-up asks the hooks again (for tests)."""
    _registries.clear()
