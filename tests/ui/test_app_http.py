"""The served app over HTTP: sign-in pages, sessions, and the Gradio HTTP API enforcing the same
rules as the page (two users who try to reach each other's runs; files a client may not name)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from uihelpers import PASSWORD, adult_csv, serve, settings_for, sign_in, trained_run

from privsynth_ui.auth import UserStore
from privsynth_ui.settings import UISettings
from privsynth_ui.web import create_app
from privsynth_ui.workspace import Workspace


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module: alice owns a trained run, bob owns nothing."""
    tmp = tmp_path_factory.mktemp("site")
    settings = settings_for(tmp, max_upload_bytes=300_000, allow_signup=False)
    store = UserStore(settings.users_db, failure_delay=0, max_failures=3, lock_seconds=60)
    for user in ("alice", "bob"):
        store.add_user(user, PASSWORD)
    _, run = trained_run(Workspace(settings.home, "alice"), settings,
                         adult_csv(tmp / "adult.csv"))
    with serve(create_app(settings, store=store)) as base:
        yield {"base": base, "settings": settings, "run": run, "store": store, "tmp": tmp}


@pytest.fixture
def client(site: dict[str, Any]) -> Iterator[Any]:
    """A factory of gradio_client clients signed in as a user; closed after the test."""
    from gradio_client import Client

    made: list[Any] = []

    def make(user: str) -> Any:
        made.append(Client(f"{site['base']}/app/", verbose=False, download_files=False,
                           httpx_kwargs={"cookies": sign_in(site["base"], user)}))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _call(base: str, cookies: dict[str, str] | None, api: str, data: list[Any]) -> str:
    """A raw call of the HTTP API (what any client can send); the event stream's text."""
    start = httpx.post(f"{base}/app/gradio_api/call/{api}", json={"data": data},
                       cookies=cookies or {})
    if start.status_code != 200:
        return f"HTTP {start.status_code}"
    event = start.json()["event_id"]
    return httpx.get(f"{base}/app/gradio_api/call/{api}/{event}", cookies=cookies or {},
                     timeout=60).text


def test_pages_need_a_session_and_sign_in_is_throttled(site: dict[str, Any]) -> None:
    base = site["base"]
    page = httpx.get(f"{base}/app/?run=abc")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/app/%3Frun%3Dabc"
    for path in ("/app/gradio_api/info", "/app/config", "/app/gradio_api/openapi.json"):
        assert httpx.get(f"{base}{path}").status_code == 401, path
    assert _call(base, None, "run_details", ["x"]) == "HTTP 401"
    forged = {"privsynth_session": "made-up", "access-token-x": "alice"}
    assert _call(base, forged, "run_details", ["x"]) == "HTTP 401"
    wrong = httpx.post(f"{base}/login", data={"username": "carol", "password": "nope"})
    assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
    for _ in range(3):
        httpx.post(f"{base}/login", data={"username": "mallory", "password": "guess"})
    locked = httpx.post(f"{base}/login", data={"username": "mallory", "password": "guess"})
    assert "locked" in locked.text
    # Sign-up is switched off on this server.
    assert httpx.get(f"{base}/signup").status_code == 404
    refused = httpx.post(f"{base}/signup", data={"username": "eve", "password": PASSWORD,
                                                 "password2": PASSWORD})
    assert refused.status_code == 404 and not site["store"].exists("eve")
    # No open redirect after sign-in.
    cookies = httpx.post(f"{base}/login", data={"username": "bob", "password": PASSWORD,
                                                "next": "https://evil.example/"})
    assert cookies.headers["location"] == "/app/"
    assert httpx.get(f"{base}/app/", cookies=dict(cookies.cookies)).status_code == 200


def test_sign_out_ends_the_session(site: dict[str, Any]) -> None:
    base = site["base"]
    cookies = sign_in(base, "bob")
    assert httpx.get(f"{base}/app/gradio_api/info", cookies=cookies).status_code == 200
    out = httpx.get(f"{base}/logout", cookies=cookies)
    assert out.status_code == 303 and out.headers["location"] == "/login?bye=1"
    assert httpx.get(f"{base}/app/gradio_api/info", cookies=cookies).status_code == 401


def test_each_user_reaches_only_their_own_run_through_the_api(site: dict[str, Any],
                                                             client: Any) -> None:
    base, run_id = site["base"], site["run"].run_id
    alice, bob = client("alice"), client("bob")
    assert alice.predict(run_id, api_name="/run_details")["run_id"] == run_id
    assert alice.predict(run_id, 5, 1, api_name="/generate")[2].startswith("5 rows drawn")
    from gradio_client.exceptions import AppError

    for api, args in (("/run_details", [run_id]), ("/generate", [run_id, 5, 1]),
                      ("/evaluate", [run_id, "income", True]), ("/targets", [run_id])):
        with pytest.raises(AppError, match=f"run '{run_id}' not found"):
            bob.predict(*args, api_name=api)
    report = f"{base}/files/runs/{run_id}/report/report.html"
    alice_cookies, bob_cookies = sign_in(base, "alice"), sign_in(base, "bob")
    alice.predict(run_id, "income", True, api_name="/evaluate")
    assert httpx.get(report, cookies=alice_cookies).status_code == 200
    assert httpx.get(report, cookies=bob_cookies).status_code == 404
    assert httpx.get(report).status_code == 303  # to the sign-in page
    for path in ("model/manifest.json", "../run.json", "report/../../run.json",
                 "%2e%2e/run.json", "report/%2e%2e/run.json", "samples/../../../users.sqlite"):
        answer = httpx.get(f"{base}/files/runs/{run_id}/{path}", cookies=alice_cookies)
        assert answer.status_code != 200 and run_id not in answer.text, path
    # The page tells bob the same when he follows a link to alice's run.
    session = bob.predict(api_name="/session")
    assert session[1] == ""  # no deep link asked for in an API session
    assert "bob" in session[0]


def test_the_api_refuses_files_that_were_not_uploaded(site: dict[str, Any]) -> None:
    base, settings = site["base"], site["settings"]
    cookies = sign_in(base, "bob")
    alice_data = next(Workspace(settings.home, "alice").datasets_dir.glob("*/train.csv"))
    for path in (str(alice_data), "/etc/passwd", str(settings.users_db)):
        answer = _call(base, cookies, "add_upload",
                       [{"path": path, "meta": {"_type": "gradio.FileData"}}, "", 0.2, ""])
        assert "event: error" in answer, answer
    assert alice_data.exists() and settings.users_db.exists()
    assert Workspace(settings.home, "bob").datasets() == []
    for choice in ("../home/users.sqlite", "/etc/passwd", "data/../../etc/passwd"):
        answer = _call(base, cookies, "add_server_file", [choice, "", 0.2, ""])
        assert "refused" in answer, answer


def test_uploads_over_the_limit_are_refused(site: dict[str, Any]) -> None:
    base, tmp = site["base"], site["tmp"]
    cookies = sign_in(base, "bob")
    big = adult_csv(tmp / "big.csv", n=5000)
    assert big.stat().st_size > site["settings"].max_upload_bytes
    with big.open("rb") as fh:
        response = httpx.post(f"{base}/app/gradio_api/upload", cookies=cookies,
                              files={"files": ("big.csv", fh, "text/csv")})
    assert response.status_code == 413 and "exceeded maximum allowed size" in response.text
    small = adult_csv(tmp / "small.csv", n=500)
    with small.open("rb") as fh:
        response = httpx.post(f"{base}/app/gradio_api/upload", cookies=cookies,
                              files={"files": ("small.csv", fh, "text/csv")})
    assert response.status_code == 200
    uploaded = response.json()[0]
    assert Path(uploaded).resolve().is_relative_to(site["settings"].cache_dir.resolve())
    answer = _call(base, cookies, "add_upload",
                   [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, "mine", 0.2, ""])
    assert "event: complete" in answer, answer
    assert [d.name for d in Workspace(site["settings"].home, "bob").datasets()] == ["mine"]
    assert not Path(uploaded).exists()  # the private upload is not kept in the cache


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PRIVSYNTH_UI_DATA_DIRS", str(tmp_path))
    monkeypatch.setenv("PRIVSYNTH_UI_MAX_UPLOAD_MB", "2")
    monkeypatch.setenv("PRIVSYNTH_UI_SIGNUP", "0")
    settings = UISettings.from_env(home=tmp_path / "home")
    assert settings.data_dirs == (tmp_path.resolve(),)
    assert settings.max_upload_bytes == 2 * 2**20 and not settings.allow_signup
    from privsynth_core.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        UISettings(home=tmp_path, data_dirs=(tmp_path / "missing",))
