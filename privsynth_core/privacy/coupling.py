"""Coupled releases: replay a first release's mechanism outputs in a second one.

To show that a release depends on the private rows only through its charged mechanisms, the
neighbour check (:mod:`privsynth_core.privacy.neighbours`) releases for a table ``D`` and for a
neighbour ``D'``, *coupled*: the outputs of the mechanisms that feed public choices (the
released row count n̂, a DP-learned domain) are recorded in the first release and replayed in
the second, as if their noise had come out so that both gave the same output. Given equal
mechanism outputs, everything else in the release must then be identical, or listed in
:data:`privsynth_core.privacy.release.RELEASE_FIELDS` as the output of a mechanism (the DP
model's weights and the rows sampled from it).

Nothing is coupled outside :func:`coupled` (a ``with`` block used by the neighbour check, run
against a throwaway ledger): every real release draws fresh noise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_state: dict[str, Any] | None = None


@contextmanager
def coupled() -> Iterator[Callable[[], None]]:
    """Record mechanism outputs; calling the yielded function switches to replaying them.

    Module-wide (the flows run their tasks in threads), one coupling at a time per process.
    """
    global _state
    with _lock:
        if _state is not None:
            raise RuntimeError("a coupled release is already running in this process")
        _state = {"mode": "record", "outputs": {}}

    def replay() -> None:
        assert _state is not None
        _state["mode"] = "replay"

    try:
        yield replay
    finally:
        with _lock:
            _state = None


def replayed(name: str, compute: Callable[[], T]) -> T:
    """``compute()``; inside a coupled release, on the second side, the value the first side
    recorded instead.

    ``compute`` runs on both sides, so its side effects (ledger charges) are the same; only its
    output is replaced. A missing record on the second side means the two releases took
    different paths, which the check reports as a failure.
    """
    value = compute()
    state = _state
    if state is None:
        return value
    if state["mode"] == "record":
        state["outputs"].setdefault(name, []).append(value)
        return value
    queue = state["outputs"].get(name) or []
    if not queue:
        raise RuntimeError(
            f"the neighbouring release asked for a {name} the first one did not "
            f"release: the two took different paths"
        )
    recorded: T = queue.pop(0)
    return recorded


__all__ = ["coupled", "replayed"]
