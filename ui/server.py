"""The web server: sign-up, sign-in and sign-out pages, the session cookie, and the route that
serves a user's own reports; :mod:`privsynth_ui.web` mounts the Gradio page behind them.

Routes::

    /              -> /app/ (or the sign-in page)
    /login         sign in (form)          /signup   create an account (unless switched off)
    /logout        end the session         /healthz  liveness, no data
    /app/...       the Gradio page and its HTTP API (:mod:`privsynth_ui.web`); every request
                   needs a session
    /files/runs/<run id>/report/...   a run's evaluation report and plots (NOT DP; the run
                                      directory's custodian/report/): only for the run's owner,
                                      and only while they are a custodian
    /files/runs/<run id>/samples/...  a run's synthetic tables, for the run's owner

Report files carry a Content-Security-Policy (third-party HTML runs sandboxed). Each handler
opens only the user's workspace, with the role of their account (see :mod:`privsynth_ui.gate`).
Sign-up creates analysts only. Nothing here calls out to the network but the Prefect server
the app's flow runs report to (:mod:`privsynth_ui.training`), whose runner :func:`serve` starts
with the app and the app's shutdown stops. No Gradio here.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

# FastAPI reads the route functions' annotations at run time: these names must be importable.
from fastapi import FastAPI, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from .auth import ANALYST, CUSTODIAN, LoginError, UserStore, check_new_credentials
from .custody import Custody, custody_of
from .settings import UISettings

if TYPE_CHECKING:
    from .training import WebFlows

COOKIE = "privsynth_session"
APP_PATH = "/app"
log = logging.getLogger("privsynth.ui")
SIGNED_UP = (
    "If that user name was free, your account is created: sign in with it. If you "
    "cannot sign in, the name was taken: create an account with another name."
)

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · privsynth</title>
<style>
body{{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f2f4f7;
color:#101828;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}}
main{{background:#fff;padding:32px 36px;border-radius:12px;box-shadow:0 4px 24px #1018281a;
width:340px}}h1{{font-size:22px;margin:0 0 4px}}p.sub{{color:#475467;margin:0 0 20px;
font-size:14px}}label{{display:block;font-size:14px;font-weight:600;margin:14px 0 4px}}
input{{width:100%;box-sizing:border-box;padding:9px 11px;border:1px solid #d0d5dd;
border-radius:8px;font-size:15px}}button{{margin-top:22px;width:100%;padding:10px;border:0;
border-radius:8px;background:#2e6bd9;color:#fff;font-size:15px;font-weight:600;cursor:pointer}}
.msg{{background:#fef3f2;border:1px solid #fda29b;color:#b42318;padding:8px 12px;
border-radius:8px;font-size:14px}}.ok{{background:#ecfdf3;border-color:#75e0a7;color:#067647}}
.alt{{font-size:14px;margin-top:18px;text-align:center}}a{{color:#2e6bd9}}</style></head>
<body><main><h1>privsynth</h1><p class="sub">Differentially private synthetic tables</p>
{body}</main></body></html>"""


def _page(title: str, body: str, status: int = 200) -> Response:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), body=body),
        status_code=status,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _message(text: str, ok: bool = False) -> str:
    return (
        f'<p class="msg{" ok" if ok else ""}" role="alert">{html.escape(text)}</p>' if text else ""
    )


def login_page(
    message: str = "",
    *,
    next_url: str = APP_PATH + "/",
    signup: bool = True,
    ok: bool = False,
    status: int = 200,
) -> Response:
    """The sign-in form."""
    alt = (
        '<p class="alt">No account yet? <a href="/signup">Create one</a></p>'
        if signup
        else '<p class="alt">Accounts are created by the operator.</p>'
    )
    body = (
        _message(message, ok) + '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">'
        '<label for="username">User name</label><input id="username" name="username" '
        'autocomplete="username" required autofocus>'
        '<label for="password">Password</label><input id="password" name="password" '
        'type="password" autocomplete="current-password" required>'
        f'<button type="submit">Sign in</button></form>{alt}'
    )
    return _page("Sign in", body, status)


def signup_page(message: str = "", status: int = 200) -> Response:
    """The account creation form."""
    body = (
        _message(message) + '<form method="post" action="/signup">'
        '<label for="username">User name</label><input id="username" name="username" '
        'autocomplete="username" required autofocus pattern="[a-z0-9][a-z0-9._\\-]{2,31}" '
        'title="3-32 lowercase letters, digits, ., _ or -">'
        '<label for="password">Password (8 characters or more)</label><input id="password" '
        'name="password" type="password" autocomplete="new-password" minlength="8" required>'
        '<label for="password2">Password again</label><input id="password2" '
        'name="password2" type="password" autocomplete="new-password" required>'
        '<button type="submit">Create account</button></form>'
        '<p class="alt">Have an account? <a href="/login">Sign in</a></p>'
    )
    return _page("Create an account", body, status)


# privsynth's own report page runs no script and shows only its own plots and frames; any
# other HTML in a report folder is a third party's (Evidently's), which embeds data values in
# its scripts: it runs sandboxed, in an origin of its own, without the user's cookies, so a
# value that breaks out of its script (``</script>``) cannot act in the reader's session.
_OWN_REPORT_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "frame-src 'self'; frame-ancestors 'self'; base-uri 'none'; "
    "form-action 'none'"
)
_THIRD_PARTY_POLICY = "sandbox allow-scripts; frame-ancestors 'self'; form-action 'none'"


def _file_policy(target: Path) -> str:
    """The Content-Security-Policy of a run file served to its owner."""
    if target.suffix.lower() in (".html", ".htm", ".svg", ".xml", ".xhtml"):
        return _OWN_REPORT_POLICY if target.name == "report.html" else _THIRD_PARTY_POLICY
    return "default-src 'none'; frame-ancestors 'self'"


def _safe_next(value: str | None) -> str:
    # Only paths of this app: no open redirect to another site.
    if value and value.startswith(APP_PATH) and "//" not in value and "\\" not in value:
        return value
    return APP_PATH + "/"


@dataclass(frozen=True)
class Server:
    """The web server before the page is mounted, and what the page shares with it.

    Attributes:
        app: the FastAPI app (sign-in pages, report files).
        settings: the operator's settings.
        custody: who owns each file in transit and each page session (emptied at start).
        flows: the app's flow runs.
        session_user: the signed-in user of a request (None if none).
    """

    app: FastAPI
    settings: UISettings
    custody: Custody
    flows: WebFlows
    session_user: Callable[[Request], str | None]


def create_server(
    settings: UISettings | None = None,
    *,
    store: UserStore | None = None,
    flows: WebFlows | None = None,
) -> Server:
    """The web server: sign-in pages, the session cookie, report files (the page is mounted
    under ``/app`` by :func:`privsynth_ui.web.create_app`).

    Args:
        settings: the operator's settings.
        store: the accounts (default: ``<home>/users.sqlite``).
        flows: the app's flow runs (default: its own served flows, started on first use and
            stopped, with the runs in flight, when the app shuts down).
    """
    from .training import WebFlows
    from .workspace import NotFoundError, Workspace, shared_ledger

    settings = settings or UISettings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    # The one ledger of this home, opened (created on a first start) before any workspace: a
    # missing ledger where one existed stops the server here, with how to restore it.
    shared_ledger(settings.home)
    signup_open = bool(settings.allow_signup)
    settings.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # What a previous run left in transit (uploads not added, downloads) belongs to no one now.
    custody = custody_of(settings.cache_dir)
    custody.clear()
    store = store or UserStore(settings.users_db, failure_delay=settings.failure_delay)
    flows = flows or WebFlows(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        # The runner cancels the runs in flight (their state says so), then stops.
        await asyncio.to_thread(flows.stop)

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.flows = flows

    def session_user(request: Request) -> str | None:
        return store.user_for_token(request.cookies.get(COOKIE))

    def signed_in(user: str, next_url: str, secure: bool) -> Response:
        response = RedirectResponse(_safe_next(next_url), status_code=303)
        response.set_cookie(
            COOKIE,
            store.create_session(user),
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
            max_age=int(store.session_seconds),
        )
        return response

    @app.middleware("http")
    async def page_needs_session(request: Request, call_next: Any) -> Any:
        # A browser opening the page unsigned goes to the sign-in form, not to a 401 JSON.
        if (
            request.method == "GET"
            and request.url.path in (APP_PATH, APP_PATH + "/")
            and session_user(request) is None
        ):
            wanted = APP_PATH + "/" + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(wanted)}", status_code=303)
        response = await call_next(request)
        if request.method == "GET" and request.url.path in (APP_PATH, APP_PATH + "/"):
            # Never kept by the browser: after sign-out, Back asks the server again and gets
            # the sign-in form, not a stale page whose every call fails with a red "Error".
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def root() -> Response:
        return RedirectResponse(APP_PATH + "/", status_code=303)

    @app.get("/healthz")
    def healthz() -> Response:
        return PlainTextResponse("ok")

    @app.get("/login")
    def login_form(next: str = "", bye: str = "") -> Response:
        return login_page(
            "You are signed out." if bye else "",
            next_url=_safe_next(next),
            signup=signup_open,
            ok=bool(bye),
        )

    @app.post("/login")
    def login(
        request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("")
    ) -> Response:
        try:
            user = store.verify(username, password)
        except LoginError as exc:
            return login_page(str(exc), next_url=_safe_next(next), signup=signup_open, status=401)
        return signed_in(user, next, request.url.scheme == "https")

    @app.get("/signup")
    def signup_form() -> Response:
        if not signup_open:
            return login_page(
                "Sign-up is switched off on this server; ask the operator for an account.",
                signup=False,
                status=404,
            )
        return signup_page()

    @app.post("/signup")
    def signup(
        username: str = Form(""), password: str = Form(""), password2: str = Form("")
    ) -> Response:
        from privsynth_core.errors import PrivsynthError

        if not signup_open:
            return login_page("Sign-up is switched off on this server.", signup=False, status=404)
        name = username.strip().lower()
        if password != password2:
            return signup_page("The two passwords differ.", status=400)
        try:
            # A bad name or a weak password is refused whether or not the name is taken.
            check_new_credentials(name, password)
        except PrivsynthError as exc:
            return signup_page(str(exc), status=400)
        try:
            store.add_user(name, password, role=ANALYST)  # never more than an analyst
            log.info("account %s (analyst) created by sign-up", name)
        except PrivsynthError:
            # A taken name gets the very answer a free one gets (and costs the same hashing
            # time): sign-up must not tell a visitor which user names exist.
            log.info("sign-up refused: the name %s is taken", name)
        return login_page(SIGNED_UP, signup=True, ok=True)

    @app.get("/logout")
    def logout(request: Request) -> Response:
        user = session_user(request)
        store.end_session(request.cookies.get(COOKIE))
        if user is not None:
            # Their downloads and raw uploads in transit are no longer needed.
            custody.sign_out(user)
        response = RedirectResponse("/login?bye=1", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/files/runs/{run_id}/{path:path}")
    def run_file(run_id: str, path: str, request: Request) -> Response:
        user = session_user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        try:
            record = Workspace(settings.home, user).run(run_id)
        except NotFoundError:
            return PlainTextResponse("not found", status_code=404)
        folder, _, rest = path.partition("/")
        roots = {"report": record.report_dir, "samples": record.samples_dir}
        if folder not in roots or not rest:
            return PlainTextResponse("not found", status_code=404)
        base = roots[folder].resolve()
        target = (base / rest).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            return PlainTextResponse("not found", status_code=404)
        # The report and its plots are computed on the real rows (NOT DP): custodians only,
        # checked against the account now (a role taken away takes the reports with it); a
        # non-DP model's samples likewise.
        custodian = store.role(user) == CUSTODIAN
        if not custodian and (folder == "report" or not record.private):
            return PlainTextResponse(
                "forbidden: only a data custodian may open this (it is NOT differentially private)",
                status_code=403,
            )
        return FileResponse(
            target,
            headers={
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": _file_policy(target),
                "X-Frame-Options": "SAMEORIGIN",
            },
        )

    return Server(app, settings, custody, flows, session_user)


def serve(
    settings: UISettings,
    create_app: Callable[[UISettings], FastAPI],
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
) -> None:
    """Run the app ``create_app(settings)`` builds (:func:`privsynth_ui.web.create_app`) with
    uvicorn until interrupted."""
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per Prefect API call (the page follows flow runs) would drown the server's log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_app(settings)
    # Ready before the first training asks for it (a local Prefect server takes seconds).
    app.state.flows.start_in_background()
    print(
        f"privsynth ui: http://{host}:{port}/  (data: {settings.home}; flow runner output: "
        f"{settings.home / 'logs' / 'flow-runner.log'})",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = [
    "APP_PATH",
    "COOKIE",
    "Server",
    "create_server",
    "login_page",
    "serve",
    "signup_page",
]
