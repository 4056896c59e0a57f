"""What the Gradio routes under ``/app`` may hand to whom: files in transit, sessions' event
streams, server-wide statistics, and the headers every answer carries.

Gradio itself checks only that a request is signed in: any signed-in user who knows a file's
cache path (``/gradio_api/file=...``) could download it, and any who knows a session hash
(it is in request URLs, hence in proxy logs) could read that session's event stream or push
events into it. This module binds both to the user:

- **files in the app's cache** (``settings.cache_dir``): a raw upload belongs to whoever
  uploaded it, and only they may download it or name it in a call (so no one else can add it
  to their workspace); a file a handler hands out (a synthetic table, the report zip, real-data
  plots) belongs to the user the handler ran for. Anything in the cache that belongs to no one
  (a previous run of the server, another user's) is answered 404. A user's files are deleted
  when they sign out, and the cache is emptied when the app starts;
- **session hashes**: the first signed-in user to use one owns it; anyone else naming it (in
  the URL, the path or the body of a call) is refused. Each user's bindings are kept apart and
  capped per user (:class:`SessionBindings`): a user who opens many sessions forgets only their
  own oldest, never another user's binding;
- **server-wide statistics** (Gradio's monitoring pages and queue status) are not served:
  the operator reads the server log;
- **headers**: no page may be framed by another (clickjacking), no referrer carries a URL
  with a session hash away, no content type is sniffed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("privsynth.ui")

API = "/gradio_api"
# Server-wide statistics and developer routes: no user of this app needs them.
_HIDDEN = re.compile(
    r"^(/monitoring(/.*)?|/gradio_api/(queue/status|runs/?|run-history/.*|"
    r"vibe-edit/?|undo-vibe-edit/?|vibe-code/?|dev/reload|"
    r"startup-events))$"
)
_FILE_ROUTE = re.compile(r"^/gradio_api/file[=/](?P<path>.+)$")
_HASH_IN_PATH = re.compile(r"^/gradio_api/(heartbeat|stream)/(?P<hash>[^/]+)(/.*)?$")
_EVENT_IN_PATH = re.compile(
    r"^/gradio_api/(call(/v2)?/[^/]+|stream)/(?P<event>[^/]+)"
    r"(/close)?/?$"
)
_JSON_BODY = re.compile(r"^/gradio_api/(queue/join|cancel|run/.+|api/.+|call/.+|stream/.+)$")
#: Session hashes kept bound per user: far more tabs and reloads than a person makes between
#: two sign-ins (a page load opens a session); beyond it the user's own oldest are forgotten.
SESSIONS_PER_USER = 1_000
_MAX_JSON = 50 * 2**20

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
FRAME_POLICY = "frame-ancestors 'none'"


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

    def hand_out(self, value: Any, user: str) -> None:
        """Give ``user`` every file a handler's result names (in the cache, or copied there now
        under the name Gradio will give it)."""
        from gradio.processing_utils import save_file_to_cache

        for path in _files_in(value):
            cached = (
                path
                if self.in_cache(path) is not None
                else Path(save_file_to_cache(path, str(self.cache_dir)))
            )
            self.give(cached, user)

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


def _files_in(value: Any, depth: int = 0) -> Iterator[Path]:
    """The existing files a handler's result names (paths in values, lists, updates)."""
    if depth > 6:
        return
    if isinstance(value, str | Path):
        text = str(value)
        if len(text) < 4096 and os.path.isabs(text) and os.path.isfile(text):
            yield Path(text)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _files_in(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _files_in(item, depth + 1)


def _paths_in(body: Any, depth: int = 0) -> Iterator[str]:
    """The file paths a client names in a call's JSON body (Gradio's FileData dicts)."""
    if depth > 12:
        return
    if isinstance(body, dict):
        path = body.get("path")
        if isinstance(path, str):
            yield path
        for item in body.values():
            yield from _paths_in(item, depth + 1)
    elif isinstance(body, list):
        for item in body:
            yield from _paths_in(item, depth + 1)


def _refuse(status: int, text: str) -> Any:
    from fastapi.responses import PlainTextResponse

    return PlainTextResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def install(
    app: FastAPI,
    *,
    prefix: str,
    custody: Custody,
    user_of: Callable[[Any], str | None],
    events: Callable[[str], tuple[str | None, str | None]],
) -> None:
    """Add the guard to ``app`` (a FastAPI app) for the Gradio page mounted at ``prefix``.

    Args:
        app: the web app.
        prefix: where the Gradio page is mounted (``/app``).
        custody: the files' and sessions' owners.
        user_of: the signed-in user of a request (None if none).
        events: an event id's (user, session hash) as Gradio's queue holds them, (None, None)
            for an event it does not hold.
    """
    from fastapi import Request

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        path = request.url.path
        response = None
        if path == prefix or path.startswith(prefix + "/"):
            response = await _check(request, path[len(prefix) :], custody, user_of, events)
        if response is None:
            response = await call_next(request)
            if (
                path == prefix + API + "/upload"
                and request.method == "POST"
                and response.status_code == 200
            ):
                response = await _claim_uploads(request, response, custody, user_of)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        policy = response.headers.get("Content-Security-Policy")
        if policy is None:
            response.headers["Content-Security-Policy"] = FRAME_POLICY
        return response


async def _check(
    request: Any,
    path: str,
    custody: Custody,
    user_of: Callable[[Any], str | None],
    events: Callable[[str], tuple[str | None, str | None]],
) -> Any:
    """The refusal for a request under the Gradio mount, or None to let it through."""
    if _HIDDEN.match(path):
        return _refuse(404, "not found")
    user = user_of(request)
    hashes: list[str] = []
    if (query_hash := request.query_params.get("session_hash")) is not None:
        hashes.append(query_hash)
    if (found := _HASH_IN_PATH.match(path)) and found["hash"] and "." not in found["hash"]:
        hashes.append(found["hash"])
    event_user: str | None = None
    if request.method in ("GET", "POST") and (found := _EVENT_IN_PATH.match(path)):
        event_user, event_hash = events(unquote(found["event"]))
        if event_hash:
            hashes.append(event_hash)
    files: list[str] = []
    if (found := _FILE_ROUTE.match(path)) and request.method in ("GET", "HEAD"):
        files.append(unquote(found["path"]))
    if request.method == "POST" and _JSON_BODY.match(path):
        # Every such body is read and checked: one the guard would not read (too big, or of no
        # stated length) is refused, never passed on unchecked to Gradio, which would accept it.
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            return _refuse(411, "a call needs a Content-Length")
        if int(length) > _MAX_JSON:
            return _refuse(413, "the call is too large")
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("session_hash"), str):
            hashes.append(body["session_hash"])
        files.extend(_paths_in(body))
    if not (hashes or files or event_user):
        return None
    if user is None:
        # Gradio's cancel and heartbeat routes do not ask for a session of their own.
        return _refuse(401, "sign in first")
    if event_user is not None and event_user != user:
        return _refuse(403, "forbidden: that event belongs to another session")
    for session_hash in hashes:
        if not custody.bind(session_hash, user):
            log.warning("refused: %s named another user's session", user)
            return _refuse(403, "forbidden: that session belongs to another user")
    for file in files:
        if not custody.may_read(file, user):
            return _refuse(404, "not found")
    return None


async def _claim_uploads(
    request: Any, response: Any, custody: Custody, user_of: Callable[[Any], str | None]
) -> Any:
    """Record the uploader as the owner of the files the upload route just stored."""
    from fastapi.responses import Response

    chunks = [chunk async for chunk in response.body_iterator]
    content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
    user = user_of(request)
    try:
        paths = json.loads(content)
    except ValueError:
        paths = []
    if user is not None and isinstance(paths, list):
        for path in paths:
            if isinstance(path, str):
                custody.give(path, user)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(content, status_code=response.status_code, headers=headers)


__all__ = ["Custody", "SessionBindings", "custody_of", "install"]
