"""The web app: the server of :mod:`privsynth_ui.server` (sign-in pages, the session cookie,
report files) with the Gradio page mounted behind it under ``/app``.

Gradio learns the user through ``auth_dependency`` (the session cookie), for the page and for
every API call alike; :mod:`privsynth_ui.guard` binds files in transit and Gradio session hashes
to their user, hides server-wide statistics and forbids framing. Run it with
``privsynth_ui.server.serve(settings, create_app)`` (``privsynth ui``).
"""

from __future__ import annotations

import os

import gradio as gr
from fastapi import FastAPI

from . import guard
from .app import build_demo
from .auth import UserStore
from .server import APP_PATH, create_server
from .settings import UISettings
from .training import WebFlows
from .views import CSS


def create_app(
    settings: UISettings | None = None,
    *,
    store: UserStore | None = None,
    flows: WebFlows | None = None,
) -> FastAPI:
    """The whole web app: sign-in pages, the Gradio page under ``/app``, report files.

    Args:
        settings: the operator's settings.
        store: the accounts (default: ``<home>/users.sqlite``).
        flows: the app's flow runs (default: its own served flows, started on first use and
            stopped, with the runs in flight, when the app shuts down).
    """
    server = create_server(settings, store=store, flows=flows)
    settings = server.settings
    # Uploads and downloads in transit stay in a folder of this app, not in a shared /tmp.
    os.environ["GRADIO_TEMP_DIR"] = str(settings.cache_dir)
    demo = build_demo(settings, flows=server.flows)
    # launch() sets this; mount_gradio_app() does not, and without it Gradio skips its check
    # that file paths sent by a client were uploaded (gradio 6.31). Our upload handler checks
    # again on its own.
    demo.has_launched = True

    def events(event_id: str) -> tuple[str | None, str | None]:
        # An event's user and session as Gradio's queue holds them (a finished event is found
        # by its id among the sessions' pending ids, as Gradio's own route does).
        queue = demo._queue
        event = queue.event_ids_to_events.get(event_id)
        if event is not None:
            return event.username, event.session_hash
        for session_hash, ids in list(queue.pending_event_ids_session.items()):
            if event_id in ids:
                return None, session_hash
        return None, None

    # Added after the server's own middleware, so it runs first, on every request.
    guard.install(
        server.app,
        prefix=APP_PATH,
        custody=server.custody,
        user_of=server.session_user,
        events=events,
    )
    mounted: FastAPI = gr.mount_gradio_app(
        server.app,
        demo,
        path=APP_PATH,
        auth_dependency=server.session_user,
        footer_links=["api"],
        max_file_size=settings.max_upload_bytes,
        show_error=False,
        css=CSS,
        theme=gr.themes.Default(primary_hue="blue"),
    )
    return mounted


__all__ = ["create_app"]
