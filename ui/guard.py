"""What the Gradio routes under ``/app`` may hand to whom: files in transit, sessions' event
streams, server-wide statistics, and the headers every answer carries.

Gradio itself checks only that a request is signed in: any signed-in user who knows a file's
cache path (``/gradio_api/file=...``) could download it, and any who knows a session hash
(it is in request URLs, hence in proxy logs) could read that session's event stream or push
events into it. This module holds both to their owners (:mod:`privsynth_ui.custody`: who owns
each file and session hash) on Gradio's routes:

- **files in the app's cache**: a file belongs to no one but its uploader or the user a handler
  handed it to (:func:`hand_out`); anyone else asking for it, or naming it in a call, is
  answered 404;
- **session hashes**: the first signed-in user to use one owns it; anyone else naming it (in
  the URL, the path or the body of a call) is refused;
- **server-wide statistics** (Gradio's monitoring pages and queue status) are not served:
  the operator reads the server log;
- **headers**: no page may be framed by another (clickjacking), no referrer carries a URL
  with a session hash away, no content type is sniffed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from gradio.processing_utils import save_file_to_cache

from .custody import Custody, files_in

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
_MAX_JSON = 50 * 2**20

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
FRAME_POLICY = "frame-ancestors 'none'"


def hand_out(custody: Custody, value: Any, user: str) -> None:
    """Give ``user`` every file a handler's result names (in the cache, or copied there now
    under the name Gradio will give it)."""
    for path in files_in(value):
        cached = (
            path
            if custody.in_cache(path) is not None
            else Path(save_file_to_cache(path, str(custody.cache_dir)))
        )
        custody.give(cached, user)


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


__all__ = ["FRAME_POLICY", "SECURITY_HEADERS", "hand_out", "install"]
