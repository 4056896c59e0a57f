"""Plugin discovery: one pluggy manager, fed from the ``privsynth`` entry-point group.

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
from dataclasses import dataclass

import pluggy

from . import hookspecs
from .errors import PluginError

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
    """Forget every loaded plugin, so the next :func:`load_plugins` starts afresh (for tests)."""
    global _loaded
    for name, plugin in list(pm.list_name_plugin()):
        pm.unregister(plugin=plugin, name=name)
    for blocked in _split_env(DISABLED_ENV):
        pm.unblock(blocked)
    _origins.clear()
    _loaded = False
