"""The operator's settings of the browser app (from ``privsynth ui`` options or environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from privsynth_core.errors import ConfigError
from privsynth_core.privacy.ledger import privsynth_home

DATA_DIRS_ENV = "PRIVSYNTH_UI_DATA_DIRS"
MAX_UPLOAD_ENV = "PRIVSYNTH_UI_MAX_UPLOAD_MB"
SIGNUP_ENV = "PRIVSYNTH_UI_SIGNUP"
DASK_ADDRESS_ENV = "PRIVSYNTH_UI_DASK_ADDRESS"
#: Schemes of a scheduler the app's flow runs can reach from their own processes (``inproc://``
#: is one process's own).
DASK_SCHEMES = ("tcp", "tls", "ucx")


@dataclass(frozen=True)
class UISettings:
    """What the operator decides for every user of the app.

    Attributes:
        home: privsynth's state folder: the one privacy ledger every front end shares
            (``ledger.sqlite``), accounts in ``users.sqlite``, each data source's fixed domain
            in ``sources/``, each user's datasets and runs in ``workspaces/<user>/``.
        data_dirs: server folders whose CSV/Parquet files users may pick (read-only); nothing
            outside them can be reached.
        max_upload_bytes: largest file a user may upload or pick.
        allow_signup: whether visitors may create their own (analyst) account. Default: only
            when no data folder is exposed, since sign-up would hand its files to anyone who can
            reach the page.
        max_trainings: trainings that may run at once (all users together).
        max_sample_rows: most synthetic rows one request may generate.
        failure_delay: seconds a failed sign-in waits before answering.
        dask_address: scheduler of an existing Dask cluster (``tcp://HOST:8786``) that every
            flow run the app starts runs its tasks on (:func:`check_dask_address`); written
            into each training's run configuration, as ``privsynth run --dask-address`` would
            use it. No page or API call can change it.

    No budget is ever set here: a data source gets one only from a custodian.
    """

    home: Path = field(default_factory=privsynth_home)
    data_dirs: tuple[Path, ...] = ()
    max_upload_bytes: int = 200 * 2**20
    allow_signup: bool | None = None
    max_trainings: int = 2
    max_sample_rows: int = 1_000_000
    failure_delay: float = 0.5
    dask_address: str | None = None

    def __post_init__(self) -> None:
        resolved = []
        for folder in self.data_dirs:
            path = Path(folder).expanduser().resolve()
            if not path.is_dir():
                raise ConfigError(f"data folder {folder} does not exist or is not a folder")
            resolved.append(path)
        object.__setattr__(self, "data_dirs", tuple(resolved))
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        if self.allow_signup is None:
            object.__setattr__(self, "allow_signup", not resolved)
        if self.max_upload_bytes < 1:
            raise ConfigError("the upload limit must be at least 1 byte")
        if self.dask_address is not None:
            object.__setattr__(self, "dask_address", check_dask_address(self.dask_address))

    @property
    def users_db(self) -> Path:
        """The accounts database."""
        return self.home / "users.sqlite"

    @property
    def cache_dir(self) -> Path:
        """Gradio's file cache (uploads and downloads in transit), private to this app."""
        return cache_dir_of(self.home)

    @classmethod
    def from_env(cls, **overrides: object) -> UISettings:
        """Settings from ``PRIVSYNTH_UI_*`` variables, then ``overrides``."""
        values: dict[str, object] = {}
        dirs = os.environ.get(DATA_DIRS_ENV)
        if dirs:
            values["data_dirs"] = tuple(Path(d) for d in dirs.split(os.pathsep) if d)
        if os.environ.get(MAX_UPLOAD_ENV):
            values["max_upload_bytes"] = int(float(os.environ[MAX_UPLOAD_ENV]) * 2**20)
        if os.environ.get(SIGNUP_ENV):
            values["allow_signup"] = os.environ[SIGNUP_ENV].lower() not in ("0", "false", "no")
        if os.environ.get(DASK_ADDRESS_ENV):
            values["dask_address"] = os.environ[DASK_ADDRESS_ENV]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def check_dask_address(address: str) -> str:
    """``address`` as a Dask scheduler address the app can use: ``SCHEME://HOST:PORT``.

    Only its form is checked here (whether the scheduler answers is checked before each
    training: :func:`privsynth_flows.runtime.reach_cluster`).

    Raises:
        ConfigError: not ``tcp://``, ``tls://`` or ``ucx://`` with a host and a port.
    """
    from urllib.parse import urlsplit

    text = str(address).strip()
    problem = ""
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        problem = "its port is not a number from 1 to 65535"
    else:
        if parts.scheme not in DASK_SCHEMES:
            problem = "it must start with tcp://, tls:// or ucx://"
        elif not parts.hostname or port is None or not port:
            problem = "it needs a host and a port"
        elif parts.path or parts.query or parts.fragment or parts.username or " " in text:
            problem = "it must be SCHEME://HOST:PORT and nothing else"
    if problem:
        raise ConfigError(
            f"the Dask scheduler address {text!r} is not valid: {problem} "
            f"(e.g. tcp://scheduler:8786)"
        )
    return text


def cache_dir_of(home: str | Path) -> Path:
    """The web app's file cache under privsynth's state folder ``home``."""
    return Path(home) / "ui-cache"
