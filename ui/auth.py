"""Accounts of the browser app: users, salted slow password hashes, sign-in throttling, sessions.

Everything lives in one SQLite file (``$PRIVSYNTH_HOME/users.sqlite``):

- passwords are stored only as scrypt hashes (``hashlib.scrypt``, n=2^14, r=8, p=1, a random
  16-byte salt per user), compared in constant time;
- five failed sign-ins in a row lock the account name for five minutes, whether the name exists
  or not (so the answer does not tell which names exist), and every failure waits a little;
- a session is a random 256-bit token held in an HttpOnly cookie; only its SHA-256 is stored,
  so a copy of the database cannot be used to sign in. Removing a user ends their sessions.

User names double as workspace folder names, so they are restricted to lowercase letters,
digits, ``.``, ``_`` and ``-`` (no path can be built from them).

**Roles.** Every account has one role, stored with it (:data:`ROLES`):

- ``analyst`` (the default, and all that sign-up gives): trains within a data source's budget,
  downloads synthetic tables; never sees an inferred draft schema, an evaluation, or an exact
  row count;
- ``custodian``: sets and raises budgets, reviews and fixes domains (declared public or learned
  with DP), reads the evaluations (NOT DP), acknowledges non-DP runs and closes reservations.

The *operator* is not an account: whoever runs ``privsynth ui`` and ``privsynth users`` on the
server (accounts, roles, data folders). Only the operator changes a role, from the command
line. A users table from before roles is migrated on open: its accounts become analysts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from privsynth_core.errors import ConfigError, PrivsynthError

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")
ANALYST, CUSTODIAN = "analyst", "custodian"
ROLES = (ANALYST, CUSTODIAN)
MIN_PASSWORD = 8
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# Checked against when the name is unknown, so that costs the same hashing time as a real check.
_DUMMY_HASH = (
    f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$cHJpdnN5bnRoLWR1bW15$" + "A" * 43 + "="
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    created REAL NOT NULL,
    last_login REAL,
    role TEXT NOT NULL DEFAULT 'analyst'
);
CREATE TABLE IF NOT EXISTS failures (
    username TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    locked_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
"""


class LoginError(PrivsynthError, PermissionError):
    """A sign-in was refused (wrong name or password, or too many failures)."""


@dataclass(frozen=True)
class UserInfo:
    """One account as the operator sees it."""

    username: str
    created: str
    last_login: str
    locked: bool
    role: str = ANALYST


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``password``: ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    encode = base64.b64encode
    return (
        f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}$"
        f"{encode(salt).decode()}${encode(digest).decode()}"
    )


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), dklen=32, n=int(n), r=int(r), p=int(p)
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


def check_new_credentials(username: str, password: str) -> None:
    """Refuse a user name that could not be a folder name, or a weak password.

    Raises:
        ConfigError: what is wrong with the name or the password.
    """
    if not USERNAME_RE.match(username):
        raise ConfigError(
            "a user name is 3-32 characters: lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password needs at least {MIN_PASSWORD} characters")
    if password.lower() == username:
        raise ConfigError("the password must not be the user name")


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`.

    Raises:
        ConfigError: an unknown role (the valid ones are listed).
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; a role is one of: {', '.join(ROLES)}")
    return role


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class UserStore:
    """Users, sign-in failures and sessions in one SQLite file.

    Args:
        path: the database file (created if missing).
        max_failures: failed sign-ins in a row that lock an account name.
        lock_seconds: how long the lock lasts.
        failure_delay: seconds every failed sign-in waits before answering.
        session_hours: how long a session stays valid.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_failures: int = 5,
        lock_seconds: float = 300,
        failure_delay: float = 0.5,
        session_hours: float = 12,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.failure_delay = failure_delay
        self.session_seconds = session_hours * 3600
        with self._db() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(users)")}
            if "role" not in columns:
                # Accounts from before roles: analysts until the operator says otherwise.
                db.execute("ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'analyst'")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    # -- accounts -------------------------------------------------------------------------

    def add_user(self, username: str, password: str, *, role: str = ANALYST) -> None:
        """Create an account with a role (:data:`ROLES`; an analyst unless the operator says).

        Raises:
            ConfigError: a bad name, password or role, or the name is taken.
        """
        check_new_credentials(username, password)
        check_role(role)
        with self._db() as db:
            try:
                db.execute(
                    "INSERT INTO users (username, password, created, last_login, role) "
                    "VALUES (?, ?, ?, NULL, ?)",
                    (username, hash_password(password), time.time(), role),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(f"the user name {username!r} is taken; choose another") from None

    def set_password(self, username: str, password: str) -> None:
        """Change a user's password and end their sessions.

        Raises:
            ConfigError: no such user, or a weak password.
        """
        check_new_credentials(username, password)
        with self._db() as db:
            changed = db.execute(
                "UPDATE users SET password = ? WHERE username = ?",
                (hash_password(password), username),
            ).rowcount
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))
        if not changed:
            raise ConfigError(f"no user {username!r}")

    def role(self, username: str) -> str | None:
        """The account's role; None if there is no such account."""
        with self._db() as db:
            row = db.execute("SELECT role FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else str(row[0])

    def set_role(self, username: str, role: str) -> None:
        """Change an account's role (the operator's command; it applies to the next request).

        Raises:
            ConfigError: no such user, or an unknown role.
        """
        check_role(role)
        with self._db() as db:
            changed = db.execute(
                "UPDATE users SET role = ? WHERE username = ?", (role, username)
            ).rowcount
        if not changed:
            raise ConfigError(f"no user {username!r}")

    def remove_user(self, username: str) -> bool:
        """Delete an account and end its sessions; False if there was none."""
        with self._db() as db:
            removed = db.execute("DELETE FROM users WHERE username = ?", (username,)).rowcount
            db.execute("DELETE FROM sessions WHERE username = ?", (username,))
            db.execute("DELETE FROM failures WHERE username = ?", (username,))
        return bool(removed)

    def exists(self, username: str) -> bool:
        """Whether the account exists."""
        with self._db() as db:
            row = db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
        return row is not None

    def users(self) -> list[UserInfo]:
        """Every account, by name."""
        now = time.time()
        with self._db() as db:
            rows = db.execute(
                "SELECT u.username, u.created, u.last_login, COALESCE(f.locked_until, 0), u.role "
                "FROM users u LEFT JOIN failures f ON f.username = u.username "
                "ORDER BY u.username"
            ).fetchall()
        return [UserInfo(r[0], _iso(r[1]), _iso(r[2]), r[3] > now, r[4]) for r in rows]

    def unlock(self, username: str) -> None:
        """Clear an account name's failed sign-ins and lock."""
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE username = ?", (username,))

    # -- signing in -----------------------------------------------------------------------

    def verify(self, username: str, password: str) -> str:
        """Check a sign-in; return the user name.

        The attempt is counted as a failure *before* the password is checked, in one
        transaction with the lock check, and forgiven only when it succeeds: concurrent
        attempts cannot all pass the lock check first, so no more than ``max_failures``
        passwords are ever checked per lock period, however many requests arrive at once.

        Raises:
            LoginError: wrong name or password (the message does not say which), or the name
                is locked after too many failures.
        """
        username = username.strip().lower()
        self._reserve_attempt(username)
        with self._db() as db:
            row = db.execute(
                "SELECT password FROM users WHERE username = ?", (username,)
            ).fetchone()
        stored = row[0] if row else _DUMMY_HASH
        if not check_password(password, stored) or row is None:
            if self.failure_delay:
                time.sleep(self.failure_delay)
            raise LoginError("wrong user name or password")
        with self._db() as db:
            db.execute("DELETE FROM failures WHERE username = ?", (username,))
            db.execute(
                "UPDATE users SET last_login = ? WHERE username = ?", (time.time(), username)
            )
        return username

    def _reserve_attempt(self, username: str) -> None:
        """Count one attempt as failed, atomically with the lock check; refuse when locked."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT count, locked_until FROM failures WHERE username = ?", (username,)
                ).fetchone()
                count, locked_until = (row[0], row[1]) if row else (0, 0.0)
                if locked_until > now:
                    minutes = max(1, round((locked_until - now) / 60))
                    raise LoginError(
                        f"too many failed sign-ins: this account is locked for about {minutes} "
                        f"more minute(s); try later, or ask the operator (`privsynth users "
                        f"unlock {username}`)"
                    )
                count += 1
                if count >= self.max_failures:
                    # This attempt is the last one checked before the lock; its success lifts it.
                    count, locked_until = 0, now + self.lock_seconds
                db.execute(
                    "INSERT OR REPLACE INTO failures VALUES (?, ?, ?)",
                    (username, count, locked_until),
                )
            finally:
                db.execute("COMMIT")

    # -- sessions -------------------------------------------------------------------------

    def create_session(self, username: str) -> str:
        """Open a session for ``username``; return its token (for the cookie)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)",
                (_token_hash(token), username, now, now + self.session_seconds),
            )
        return token

    def user_for_token(self, token: str | None) -> str | None:
        """The user of a valid, unexpired session token; None otherwise."""
        if not token:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT username, expires FROM sessions WHERE token_hash = ?", (_token_hash(token),)
            ).fetchone()
        if row is None or row[1] < time.time():
            return None
        return str(row[0])

    def end_session(self, token: str | None) -> None:
        """Forget a session (sign out)."""
        if token:
            with self._db() as db:
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


__all__ = [
    "ANALYST",
    "CUSTODIAN",
    "ROLES",
    "LoginError",
    "UserInfo",
    "UserStore",
    "check_password",
    "check_role",
    "hash_password",
]
