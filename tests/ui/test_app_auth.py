"""Accounts of the browser app: slow salted hashes, throttled sign-in, sessions, roles, the
operator's CLI, and who may sign up."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest

from privsynth_core.errors import ConfigError
from privsynth_ui.auth import LoginError, UserStore, check_password
from privsynth_ui.cli import main
from privsynth_ui.settings import UISettings
from privsynth_ui.workspace import Workspace


def test_passwords_are_stored_only_as_salted_scrypt_hashes(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.sqlite", failure_delay=0)
    store.add_user("alice", "same password 1")
    store.add_user("bob", "same password 1")
    rows = dict(
        sqlite3.connect(tmp_path / "users.sqlite")
        .execute("SELECT username, password FROM users")
        .fetchall()
    )
    assert all(h.startswith("scrypt$16384$8$1$") for h in rows.values())
    assert rows["alice"].split("$")[4] != rows["bob"].split("$")[4]  # a salt each
    assert rows["alice"] != rows["bob"]
    assert b"same password 1" not in (tmp_path / "users.sqlite").read_bytes()
    assert check_password("same password 1", rows["alice"])
    assert not check_password("same password 2", rows["alice"])
    # Slow on purpose: one check costs milliseconds, not microseconds.
    started = time.perf_counter()
    check_password("same password 1", rows["alice"])
    assert time.perf_counter() - started > 0.005


def test_sign_in_and_sessions(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.sqlite", failure_delay=0, session_hours=1)
    store.add_user("alice", "alice's password")
    assert store.verify("Alice ", "alice's password") == "alice"
    for name, password in (("alice", "wrong password"), ("nobody", "alice's password")):
        with pytest.raises(LoginError, match="^wrong user name or password$"):
            store.verify(name, password)
    token = store.create_session("alice")
    assert store.user_for_token(token) == "alice"
    assert token.encode() not in (tmp_path / "users.sqlite").read_bytes()  # only its hash
    assert store.user_for_token(token + "x") is None and store.user_for_token(None) is None
    store.end_session(token)
    assert store.user_for_token(token) is None
    expired = UserStore(tmp_path / "users.sqlite", session_hours=-1).create_session("alice")
    assert store.user_for_token(expired) is None


def test_repeated_failures_lock_the_name_known_or_not(tmp_path: Path) -> None:
    store = UserStore(
        tmp_path / "users.sqlite", max_failures=3, lock_seconds=0.6, failure_delay=0.05
    )
    store.add_user("alice", "alice's password")
    started = time.perf_counter()
    for _ in range(3):
        with pytest.raises(LoginError, match="wrong"):
            store.verify("alice", "guess")
    assert time.perf_counter() - started >= 0.15  # every failure waits
    with pytest.raises(LoginError, match="locked"):
        store.verify("alice", "alice's password")  # even the right password, while locked
    assert [u.locked for u in store.users()] == [True]
    for _ in range(3):
        with pytest.raises(LoginError, match="wrong"):
            store.verify("ghost", "guess")
    with pytest.raises(LoginError, match="locked"):
        store.verify("ghost", "guess")  # unknown names answer the same way
    store.unlock("alice")
    assert store.verify("alice", "alice's password") == "alice"
    for _ in range(3):
        with pytest.raises(LoginError):
            store.verify("alice", "guess")
    time.sleep(0.7)
    assert store.verify("alice", "alice's password") == "alice"  # the lock expires


@pytest.mark.parametrize("name", ["../etc", "ab", "Alice", "a b", "x" * 33, "-lead", ".."])
def test_user_names_that_could_not_be_folder_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="user name"):
        UserStore(tmp_path / "users.sqlite").add_user(name, "long enough password")


def test_weak_or_duplicate_credentials_are_refused(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.sqlite")
    with pytest.raises(ConfigError, match="at least 8"):
        store.add_user("carol", "short")
    with pytest.raises(ConfigError, match="must not be the user name"):
        store.add_user("carolina", "CAROLINA")
    store.add_user("carol", "long enough")
    with pytest.raises(ConfigError, match="taken"):
        store.add_user("carol", "another one")


def test_removing_a_user_ends_their_sessions(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.sqlite")
    store.add_user("dave", "dave's password")
    token = store.create_session("dave")
    assert store.remove_user("dave") and not store.remove_user("dave")
    assert store.user_for_token(token) is None


def test_users_command(
    privsynth_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("erin's password\n"))
    assert main(["users", "add", "erin", "--password-stdin"]) == 0
    store = UserStore(privsynth_home / "users.sqlite")
    assert store.verify("erin", "erin's password") == "erin"
    assert store.role("erin") == "analyst"  # unless the operator says otherwise
    monkeypatch.setattr("sys.stdin", io.StringIO("fay's password\n"))
    assert main(["users", "add", "fay", "--role", "custodian", "--password-stdin"]) == 0
    assert store.role("fay") == "custodian"
    assert main(["users", "list"]) == 0
    listed = capsys.readouterr().out
    assert "ROLE" in listed and "erin  analyst" in listed and "fay   custodian" in listed
    assert main(["users", "role", "erin", "custodian"]) == 0
    assert store.role("erin") == "custodian"
    assert "erin is now a custodian" in capsys.readouterr().out
    assert main(["users", "role", "nobody", "analyst"]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses a role that does not exist
        main(["users", "role", "erin", "operator"])
    monkeypatch.setattr("sys.stdin", io.StringIO("a new password\n"))
    assert main(["users", "passwd", "erin", "--password-stdin"]) == 0
    assert store.verify("erin", "a new password") == "erin"
    workspace = Workspace(privsynth_home, "erin").root
    assert workspace.is_dir()
    assert main(["users", "remove", "erin", "--delete-data"]) == 0
    assert not workspace.exists() and not store.exists("erin")
    assert main(["users", "remove", "erin"]) == 2
    assert "no user 'erin'" in capsys.readouterr().err


def test_roles_are_stored_with_the_account_and_old_tables_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT NOT NULL, "
        "created REAL NOT NULL, last_login REAL)"
    )
    old.execute("INSERT INTO users VALUES ('olga', 'x', 0, NULL)")
    old.commit()
    old.close()
    store = UserStore(path)
    assert store.role("olga") == "analyst"  # accounts from before roles: analysts
    store.add_user("carl", "carl's password", role="custodian")
    assert [(u.username, u.role) for u in store.users()] == [
        ("carl", "custodian"),
        ("olga", "analyst"),
    ]
    assert store.role("nobody") is None
    with pytest.raises(ConfigError, match="unknown role 'admin'"):
        store.add_user("dora", "dora's password", role="admin")
    with pytest.raises(ConfigError, match="unknown role"):
        store.set_role("olga", "operator")
    assert not store.exists("dora")


def test_sign_up_is_off_by_default_when_data_folders_are_exposed(tmp_path: Path) -> None:
    assert UISettings(home=tmp_path).allow_signup is True
    assert UISettings(home=tmp_path, data_dirs=(tmp_path,)).allow_signup is False
    assert UISettings(home=tmp_path, data_dirs=(tmp_path,), allow_signup=True).allow_signup
    assert UISettings(home=tmp_path, allow_signup=False).allow_signup is False
