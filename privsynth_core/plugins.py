"""Plugin discovery: one pluggy manager, fed from the ``privsynth`` entry-point group, and the
typed registries of the classes plugins register (:class:`Registry`, built by
:func:`build_registry` for each contract module: ``generators()``, ``accountants()``, ...).

Built-in plugins are found exactly as third-party ones are: through the entry points declared in
their distribution's metadata. Two environment variables narrow what is loaded:

- ``PRIVSYNTH_DISABLED_PLUGINS``: comma-separated plugin (entry-point) names never to load.
- ``PRIVSYNTH_LOAD_PLUGINS``: when set, comma-separated *distribution* names whose entry points
  are the only ones loaded (e.g. ``privsynth`` for the built-ins alone; the test suite does this
  so a developer's extra plugins never leak into tests).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pluggy

from . import hookspecs
from .errors import DuplicatePluginError, PluginError, UnknownPluginError

ENTRY_POINT_GROUP = "privsynth"
DISABLED_ENV = "PRIVSYNTH_DISABLED_PLUGINS"
LOAD_ONLY_ENV = "PRIVSYNTH_LOAD_PLUGINS"


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plugin came from: its entry-point name and the distribution that declared it."""

    name: str
    distribution: str
    version: str


pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
pm.add_hookspecs(hookspecs)

_origins: dict[str, PluginOrigin] = {}
_loaded = False


def _split_env(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def _canonical(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def load_plugins() -> None:
    """Load every plugin allowed by the environment, once (later calls do nothing).

    Raises:
        PluginError: an entry point cannot be imported, or implements a hook that does not exist
            (usually a misspelled hook name).
    """
    global _loaded
    if _loaded:
        return
    for blocked in _split_env(DISABLED_ENV):
        pm.set_blocked(blocked)
    only = {_canonical(name) for name in _split_env(LOAD_ONLY_ENV)} or None
    for dist in importlib.metadata.distributions():
        dist_name = _canonical(dist.metadata["Name"] or "")
        if only is not None and dist_name not in only:
            continue
        for entry_point in dist.entry_points:
            if entry_point.group != ENTRY_POINT_GROUP:
                continue
            if pm.is_blocked(entry_point.name) or pm.get_plugin(entry_point.name) is not None:
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:  # any import failure of third-party code
                raise PluginError(
                    f"plugin {entry_point.name!r} from distribution {dist_name!r} failed to import "
                    f"({type(exc).__name__}: {exc}); fix or uninstall it, or block it with "
                    f"{DISABLED_ENV}={entry_point.name}"
                ) from exc
            pm.register(plugin, name=entry_point.name)
            _origins[entry_point.name] = PluginOrigin(
                entry_point.name, dist_name, dist.version or "unknown"
            )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from exc
    _loaded = True


def plugin_origin(plugin_name: str) -> PluginOrigin:
    """Return where the plugin registered under ``plugin_name`` came from.

    Plugins registered directly (``pm.register(obj, name=...)``, as tests do) have no
    distribution and are reported as ``(registered in process)``.
    """
    return _origins.get(plugin_name, PluginOrigin(plugin_name, "(registered in process)", "-"))


def reset_plugins() -> None:
    """Forget every loaded plugin and every blocked name, so the next :func:`load_plugins`
    starts afresh (for tests).

    Every name blocked so far is unblocked, not only those the disabling variable names now: a
    caller that restored the variable before resetting would otherwise leave its names blocked.
    """
    global _loaded
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is None:  # a blocked name (pluggy lists it without a plugin)
            pm.unblock(name)
        else:
            pm.unregister(plugin=plugin, name=name)
    _origins.clear()
    _loaded = False


# -- typed registries of plugin classes -------------------------------------------------------

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


def build_registry(kind: str, base: type[Any], id_attribute: str, hook_name: str) -> Registry[T]:
    """The registry of one plugin kind, filled from ``hook_name`` the first time it is asked for
    (plugins are loaded then, not at import), then kept until :func:`reset_registries`."""
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


def reset_registries() -> None:
    """Forget the built registries so the next look-up asks the hooks again (for tests)."""
    _registries.clear()
