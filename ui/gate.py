"""The one door every event handler goes through: who is asking, and what errors may say.

:func:`gated` wraps a handler ``fn(workspace, *inputs)`` into the function Gradio calls. The
user comes only from the session (``gr.Request.username``, set by the login cookie on every
request, page or HTTP API alike); a handler never takes a user name from the client, so it can
only ever open the caller's own workspace. The role comes from the account, read on every
request, so an operator's role change applies at once.

Errors: a :class:`~privsynth_core.errors.PrivsynthError` (a user's mistake, a refused budget,
an id that is not theirs) becomes a readable ``gr.Error``; anything else is a bug: it is logged
with a reference id and the page shows only "internal error <id>", never a traceback.

The handlers know no Gradio: what they return goes to Gradio through :func:`to_gradio` (each
:class:`~privsynth_ui.views.Update` becomes ``gr.update``), their pop-ups through
:func:`notify`, and the files they hand out to their user through
:func:`privsynth_ui.guard.hand_out`.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from privsynth_core.errors import PrivsynthError

from .auth import UserStore
from .custody import custody_of
from .guard import hand_out
from .settings import cache_dir_of
from .views import Update, redact_paths
from .workspace import Workspace

log = logging.getLogger("privsynth.ui")


def internal_error(exc: BaseException | None = None) -> gr.Error:
    """Log the exception being handled under a fresh reference; the error the page shows."""
    reference = uuid.uuid4().hex[:8]
    log.exception("internal error %s", reference, exc_info=exc or True)
    return gr.Error(
        f"internal error {reference}: something went wrong on the server. The "
        f"operator can find the details in the server log under this reference.",
        title="Internal error",
        print_exception=False,
    )


def to_gradio(result: Any) -> Any:
    """A handler's result as Gradio takes it: each :class:`~privsynth_ui.views.Update` (the
    result, or one of the outputs it lists) becomes the same change as ``gr.update``."""
    if isinstance(result, Update):
        return gr.update(**result)
    if isinstance(result, tuple | list):
        # A plain tuple or list, whatever it was (Gradio reads either as the outputs in order).
        outputs = [gr.update(**r) if isinstance(r, Update) else r for r in result]
        return tuple(outputs) if isinstance(result, tuple) else outputs
    return result


def notify(
    message: str, *, duration: float | None = 4, title: str | None = None, warning: bool = False
) -> None:
    """A pop-up on the page of the event being handled (the handlers'
    :class:`~privsynth_ui.events.Notify`): ``gr.Warning``, else ``gr.Info``."""
    shown = gr.Warning if warning else gr.Info
    if title is None:
        shown(message, duration=duration)
    else:
        shown(message, duration=duration, title=title)


@contextmanager
def error_boundary(home: Any = None) -> Iterator[None]:
    """Turn what a handler raises into what the page may show (with ``home``: no server path
    under it)."""
    try:
        yield
    except gr.Error:
        raise
    except PrivsynthError as exc:
        message = str(exc) if home is None else redact_paths(str(exc), home)
        raise gr.Error(
            message, title="Cannot do that", duration=None, print_exception=False
        ) from None
    except Exception as exc:
        raise internal_error(exc) from None


def workspace_for(home: Any, request: gr.Request | None) -> Workspace:
    """The signed-in user's workspace, with their role from the account store.

    Raises:
        gr.Error: no user is signed in on this request (or the account is gone).
    """
    user = getattr(request, "username", None) if request is not None else None
    role = UserStore(Path(home) / "users.sqlite").role(str(user)) if user else None
    if not user or role is None:
        raise gr.Error(
            "you are not signed in; open the app's sign-in page",
            title="Not signed in",
            print_exception=False,
        )
    return Workspace(home, str(user), role=role)


def _hand_out(home: Any, result: Any, user: str) -> None:
    # The files a handler returns are served from the app's cache to this user only
    # (privsynth_ui.guard): never to another signed-in user who learns their URL.
    hand_out(custody_of(cache_dir_of(home)), result, user)


def _inputs(fn: Callable[..., Any]) -> int:
    """How many page inputs ``fn(workspace, *inputs)`` takes (its parameters after the first)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError(f"{fn.__name__} takes *args: give gated() its number of inputs")
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def input_names(fn: Callable[..., Any], n_inputs: int, extra: list[str] | None = None) -> list[str]:
    """The names the HTTP API gives ``fn``'s inputs: its own parameter names after the
    workspace, then ``extra`` for what ``*values`` takes (``input_<i>`` for any left over)."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    named = [
        p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ] + list(extra or [])
    names = named[:n_inputs] + [f"input_{i}" for i in range(len(named), n_inputs)]
    # A name taken twice (an extra named as a parameter) would break the signature.
    return [n if names.index(n) == i else f"input_{i}" for i, n in enumerate(names)]


def _present(
    handler: Callable[..., Any],
    fn: Callable[..., Any],
    n_inputs: int,
    extra: list[str] | None = None,
    progress: bool = False,
) -> None:
    # Gradio passes the request only to a *positional* parameter annotated gr.Request, at its
    # position: give the wrapper the signature (inputs..., request), the inputs named as the
    # handler names them, so the HTTP API documents meaningful names (not input_0...). A
    # handler that reports progress gets Gradio's tracker as a last parameter with a default.
    params = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for name in input_names(fn, n_inputs, extra)
    ]
    params.append(
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)
    )
    if progress:
        params.append(
            inspect.Parameter(
                "progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()
            )
        )
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = fn.__name__
    handler.__qualname__ = fn.__name__
    handler.__doc__ = fn.__doc__


def gated(
    home: Any,
    fn: Callable[..., Any],
    n_inputs: int | None = None,
    *,
    names: list[str] | None = None,
    progress: bool = False,
) -> Callable[..., Any]:
    """The Gradio handler for ``fn(workspace, *inputs)``: user from the session, errors mapped.

    Args:
        home: privsynth's state folder (the workspaces live under it).
        fn: the handler proper.
        n_inputs: how many inputs it takes (needed only when ``fn`` takes ``*inputs``).
        names: the API names of what ``*inputs`` takes, after ``fn``'s named parameters.
        progress: ``fn`` takes ``progress=`` (a callable ``(fraction, desc)``): Gradio's
            progress tracker is passed to it, so the page shows how far a long step is.
    """
    count = _inputs(fn) if n_inputs is None else n_inputs

    def handler(*args: Any) -> Any:
        if progress:
            *inputs, request, tracker = args
        else:
            *inputs, request = args
        with error_boundary(home):
            ws = workspace_for(home, request)
            result = fn(ws, *inputs, progress=tracker) if progress else fn(ws, *inputs)
            _hand_out(home, result, ws.user)
            return to_gradio(result)

    _present(handler, fn, count, names, progress)
    return handler


def gated_stream(home: Any, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Like :func:`gated`, for a handler that yields updates (a generator)."""

    def handler(*args: Any) -> Iterator[Any]:
        *inputs, request = args
        with error_boundary(home):
            ws = workspace_for(home, request)
            updates = fn(ws, *inputs)
            try:
                for update in updates:
                    _hand_out(home, update, ws.user)
                    yield to_gradio(update)
            finally:
                # As `yield from` would: the page going away closes the handler at once.
                close = getattr(updates, "close", None)
                if close is not None:
                    close()

    _present(handler, fn, _inputs(fn))
    return handler


__all__ = [
    "error_boundary",
    "gated",
    "gated_stream",
    "input_names",
    "internal_error",
    "notify",
    "to_gradio",
    "workspace_for",
]
