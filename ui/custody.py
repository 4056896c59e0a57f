"""Who owns what the web app holds in transit: the files in its cache and the Gradio session
hashes, each bound to one signed-in user (in memory: a restart forgets both, and the cache is
emptied then).

- **files in the app's cache** (``settings.cache_dir``): a raw upload belongs to whoever
  uploaded it, and only they may download it or name it in a call (so no one else can add it
  to their workspace); a file a handler hands out (a synthetic table, the report zip, real-data
  plots) belongs to the user the handler ran for. Anything in the cache that belongs to no one
  (a previous run of the server, another user's) is no one's to read. A user's files are
  deleted when they sign out, and the cache is emptied when the app starts;
- **session hashes**: the first signed-in user to use one owns it. Each user's bindings are
  kept apart and capped per user (:class:`SessionBindings`): a user who opens many sessions
  forgets only their own oldest, never another user's binding.

Plain Python: :mod:`privsynth_ui.guard` enforces these owners on Gradio's routes, and
:mod:`privsynth_ui.server` clears a user's files at sign-out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Session hashes kept bound per user: far more tabs and reloads than a person makes between
#: two sign-ins (a page load opens a session); beyond it the user's own oldest are forgotten.
SESSIONS_PER_USER = 1_000


class SessionBindings:
    """Which signed-in user owns each Gradio session hash: the first to use it.

    Kept per user, each user's hashes capped at ``per_user`` (their least recently used
    forgotten first). The cap is per user, not global, so no user can push another user's
    binding out by opening sessions (a global list of the last N hashes let anyone who knew a
    victim's hash open N sessions, evict its binding, then claim the hash). Memory is bounded
    by the number of accounts times ``per_user``. Not locked: :class:`Custody` holds its lock
    around every call.

    Args:
        per_user: how many session hashes each user keeps bound.
    """

    def __init__(self, per_user: int = SESSIONS_PER_USER) -> None:
        if per_user < 1:
            raise ValueError("per_user must be at least 1")
        self.per_user = per_user
        self._owner: dict[str, str] = {}
        self._of_user: dict[str, OrderedDict[str, None]] = {}

    def bind(self, session_hash: str, user: str) -> bool:
        """Bind ``session_hash`` to ``user`` unless another user owns it; whether ``user``
        owns it now."""
        owner = self._owner.setdefault(session_hash, user)
        if owner != user:
            return False
        mine = self._of_user.setdefault(user, OrderedDict())
        mine[session_hash] = None
        mine.move_to_end(session_hash)
        while len(mine) > self.per_user:
            oldest, _ = mine.popitem(last=False)
            del self._owner[oldest]
        return True

    def owner(self, session_hash: str) -> str | None:
        """The user ``session_hash`` is bound to, or None."""
        return self._owner.get(session_hash)

    def forget(self, user: str) -> None:
        """Drop every binding of ``user`` (at sign-out)."""
        for session_hash in self._of_user.pop(user, ()):
            del self._owner[session_hash]

    def clear(self) -> None:
        """Drop every binding."""
        self._owner.clear()
        self._of_user.clear()

    def __len__(self) -> int:
        return len(self._owner)


class Custody:
    """Who owns each file in the app's cache and each Gradio session hash (in memory: a
    restart forgets both, and the cache is emptied then).

    Args:
        cache_dir: the app's Gradio cache (uploads and downloads in transit).
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self._files: dict[Path, set[str]] = {}
        self._sessions = SessionBindings()
        self._lock = threading.Lock()

    def in_cache(self, path: str | Path) -> Path | None:
        """``path`` resolved, if it lies in the cache; else None."""
        try:
            resolved = Path(os.path.abspath(path)).resolve()
        except (OSError, ValueError):
            return None
        return resolved if resolved.is_relative_to(self.cache_dir) else None

    def give(self, path: str | Path, user: str) -> None:
        """Record that ``user`` may read the cached file ``path``."""
        resolved = self.in_cache(path)
        if resolved is not None:
            with self._lock:
                self._files.setdefault(resolved, set()).add(user)

    def may_read(self, path: str | Path, user: str) -> bool:
        """Whether ``user`` may read or name ``path`` (True for paths outside the cache: those
        are Gradio's own checks to make)."""
        resolved = self.in_cache(path)
        if resolved is None:
            return True
        with self._lock:
            return user in self._files.get(resolved, ())

    def bind(self, session_hash: str, user: str) -> bool:
        """Bind a session hash to its first user; whether ``user`` is that user."""
        with self._lock:
            return self._sessions.bind(session_hash, user)

    def sign_out(self, user: str) -> None:
        """Delete the files only ``user`` holds, and forget ``user``'s claims."""
        with self._lock:
            mine = [p for p, users in self._files.items() if user in users]
            for path in mine:
                users = self._files[path]
                users.discard(user)
                if not users:
                    del self._files[path]
                    path.unlink(missing_ok=True)
                    # Gradio keeps each file in a folder of its own: remove it when empty.
                    if path.parent != self.cache_dir:
                        with contextlib.suppress(OSError):
                            path.parent.rmdir()
            self._sessions.forget(user)

    def clear(self) -> None:
        """Empty the cache (at start: what a previous run left belongs to no one now)."""
        with self._lock:
            self._files.clear()
            self._sessions.clear()
        if self.cache_dir.is_dir():
            for entry in self.cache_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


_CUSTODIES: dict[Path, Custody] = {}
_CUSTODIES_LOCK = threading.Lock()


def custody_of(cache_dir: str | Path) -> Custody:
    """The one :class:`Custody` of an app's cache folder (shared by its routes and handlers)."""
    key = Path(cache_dir).resolve()
    with _CUSTODIES_LOCK:
        return _CUSTODIES.setdefault(key, Custody(key))


def files_in(value: Any, depth: int = 0) -> Iterator[Path]:
    """The existing files a handler's result names (paths in values, lists, updates)."""
    if depth > 6:
        return
    if isinstance(value, str | Path):
        text = str(value)
        if len(text) < 4096 and os.path.isabs(text) and os.path.isfile(text):
            yield Path(text)
    elif isinstance(value, dict):
        for item in value.values():
            yield from files_in(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from files_in(item, depth + 1)


__all__ = ["SESSIONS_PER_USER", "Custody", "SessionBindings", "custody_of", "files_in"]
