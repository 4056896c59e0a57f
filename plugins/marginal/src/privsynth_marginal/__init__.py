"""privsynth-marginal: the MST and AIM generators (McKenna et al.) over private-pgm (``mbi``).

A plugin built exactly as a third party would build one: its own distribution, registered only
through the ``privsynth`` entry-point group. Importing this module is cheap; jax and mbi are
imported when a model is fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from privsynth_core import Generator, hookimpl

from .generators import AIMGenerator, MSTGenerator

__all__ = ["AIMGenerator", "MSTGenerator", "register_generators"]
__version__ = "0.1.0"


@hookimpl
def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
    """Contribute the ``mst`` and ``aim`` generators."""
    register(MSTGenerator)
    register(AIMGenerator)
