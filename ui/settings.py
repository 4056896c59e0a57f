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

    No budget is ever set here: a data source gets one only from a custodian.
    """

    home: Path = field(default_factory=privsynth_home)
    data_dirs: tuple[Path, ...] = ()
    max_upload_bytes: int = 200 * 2**20
    allow_signup: bool | None = None
    max_trainings: int = 2
    max_sample_rows: int = 1_000_000
    failure_delay: float = 0.5

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
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def cache_dir_of(home: str | Path) -> Path:
    """The web app's file cache under privsynth's state folder ``home``."""
    return Path(home) / "ui-cache"
