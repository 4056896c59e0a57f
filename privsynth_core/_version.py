"""The installed privsynth version, in a module of its own so that core modules can stamp it
on what they write without importing the package's top level (which imports them)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("privsynth")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
