"""Each user's own space: datasets, runs, their files, and a privacy ledger of their own.

``$PRIVSYNTH_HOME/workspaces/<user>/``::

    ledger.sqlite                 the user's budgets and spending (one per dataset fingerprint)
    datasets/<id>/dataset.json    what was added, its size, fingerprint and domain state
                  train.csv       the private rows a generator trains on
                  holdout.csv     real rows kept aside for evaluation (never trained on)
                  schema.draft.yaml   the inferred schema, as edited (NOT private)
                  schema.yaml     the confirmed domain: declared public, or learned with DP
    runs/<id>/run.json            generator, parameters, target, status, what was spent
              model/              the saved generator
              samples/            synthetic tables drawn from it
              report/             the evaluation (NOT DP: custodian-only)

Every look-up goes through a user's :class:`Workspace`, and ids are checked against a strict
pattern before they touch a path, so another user's id, or a made-up one, is simply "not found".
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from privsynth_core.errors import PrivsynthError
from privsynth_core.fileio import atomic_write_text
from privsynth_core.ledger import PrivacyLedger

ID_RE = re.compile(r"^[0-9a-f]{16}$")


class NotFoundError(PrivsynthError, LookupError):
    """A dataset or run id that is not in the user's workspace."""


def new_id() -> str:
    """A fresh dataset or run id (16 hex digits)."""
    return uuid.uuid4().hex[:16]


def now() -> str:
    """The time, for records (UTC, ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class DatasetRecord:
    """A dataset the user added (``dataset.json``)."""

    dataset_id: str
    name: str
    source: str
    created: str
    rows: int
    holdout_rows: int
    columns: list[str]
    fingerprint: str
    domain: str = ""  # "", "public" or "dp"
    domain_epsilon: float = 0.0
    domain_delta: float = 0.0
    #: The charged mechanisms a DP-learned domain came from (SpentPart fields, with ledger ids).
    domain_parts: list[dict[str, Any]] = field(default_factory=list)
    directory: Path = field(default=Path(), compare=False, repr=False)

    @property
    def train_path(self) -> Path:
        """The private rows to train on."""
        return self.directory / "train.csv"

    @property
    def holdout_path(self) -> Path | None:
        """The holdout rows, if any were kept aside."""
        path = self.directory / "holdout.csv"
        return path if path.is_file() else None

    @property
    def draft_schema_path(self) -> Path:
        """The inferred (and edited) schema."""
        return self.directory / "schema.draft.yaml"

    @property
    def schema_path(self) -> Path:
        """The confirmed domain (exists once the domain is public or learned with DP)."""
        return self.directory / "schema.yaml"

    @property
    def label(self) -> str:
        """What dropdowns show."""
        return f"{self.name} ({self.rows} rows, {self.dataset_id[:6]})"


@dataclass
class RunRecord:
    """A training run (``run.json``)."""

    run_id: str
    dataset_id: str
    dataset_name: str
    generator: str
    params: dict[str, Any]
    epsilon: float | None
    delta: float | None
    accountant: str
    private: bool
    status: str = "running"  # running, done, failed, cancelled
    created: str = ""
    finished: str = ""
    spent_epsilon: float | None = None
    spent_delta: float | None = None
    steps: int = 0
    message: str = ""
    directory: Path = field(default=Path(), compare=False, repr=False)

    @property
    def model_dir(self) -> Path:
        """The saved generator."""
        return self.directory / "model"

    @property
    def samples_dir(self) -> Path:
        """Synthetic tables drawn from the model."""
        return self.directory / "samples"

    @property
    def report_dir(self) -> Path:
        """The evaluation report (NOT DP)."""
        return self.directory / "report"

    @property
    def label(self) -> str:
        """What dropdowns show."""
        target = f"ε={self.epsilon:g}" if self.epsilon is not None else "NOT DP"
        status = "" if self.status == "done" else f" ({self.status})"
        return f"{self.generator} {target} · {self.dataset_name} · {self.run_id[:6]}{status}"


def _load(cls: type[Any], path: Path) -> Any:
    data = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(cls)} - {"directory"}
    return cls(**{k: v for k, v in data.items() if k in known}, directory=path.parent)


def _save(record: DatasetRecord | RunRecord, name: str) -> None:
    data = {k: v for k, v in asdict(record).items() if k != "directory"}
    atomic_write_text(record.directory / name, json.dumps(data, indent=2, default=str))


class Workspace:
    """One user's folder and ledger.

    Args:
        home: privsynth's state folder.
        user: a user name (already checked by the account store; checked again here).
    """

    def __init__(self, home: Path, user: str) -> None:
        from .auth import USERNAME_RE

        if not USERNAME_RE.match(user):
            raise NotFoundError("no such user")
        self.user = user
        self.root = Path(home) / "workspaces" / user
        self.datasets_dir = self.root / "datasets"
        self.runs_dir = self.root / "runs"
        for folder in (self.datasets_dir, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._ledger: PrivacyLedger | None = None

    @property
    def ledger(self) -> PrivacyLedger:
        """The user's own privacy ledger."""
        if self._ledger is None:
            self._ledger = PrivacyLedger(self.root / "ledger.sqlite")
        return self._ledger

    # -- datasets -------------------------------------------------------------------------

    def new_dataset_dir(self) -> tuple[str, Path]:
        """A fresh id and its (empty, not yet recorded) folder."""
        dataset_id = new_id()
        folder = self.datasets_dir / dataset_id
        folder.mkdir()
        return dataset_id, folder

    def dataset(self, dataset_id: Any) -> DatasetRecord:
        """The user's dataset ``dataset_id``.

        Raises:
            NotFoundError: no such dataset in this workspace (whoever else may have one).
        """
        path = self._path(self.datasets_dir, dataset_id, "dataset.json", "dataset")
        record: DatasetRecord = _load(DatasetRecord, path)
        return record

    def datasets(self) -> list[DatasetRecord]:
        """The user's datasets, newest first."""
        found = [_load(DatasetRecord, p) for p in self.datasets_dir.glob("*/dataset.json")]
        return sorted(found, key=lambda d: d.created, reverse=True)

    def save_dataset(self, record: DatasetRecord) -> None:
        """Write ``dataset.json`` (atomically)."""
        _save(record, "dataset.json")

    # -- runs -----------------------------------------------------------------------------

    def new_run_dir(self) -> tuple[str, Path]:
        """A fresh run id and its (empty) folder."""
        run_id = new_id()
        folder = self.runs_dir / run_id
        folder.mkdir()
        return run_id, folder

    def run(self, run_id: Any) -> RunRecord:
        """The user's run ``run_id``.

        Raises:
            NotFoundError: no such run in this workspace.
        """
        record: RunRecord = _load(RunRecord, self._path(self.runs_dir, run_id, "run.json", "run"))
        return record

    def runs(self, dataset_id: str | None = None) -> list[RunRecord]:
        """The user's runs (of one dataset, or all), newest first."""
        found: list[RunRecord] = [_load(RunRecord, p) for p in self.runs_dir.glob("*/run.json")]
        if dataset_id:
            found = [r for r in found if r.dataset_id == dataset_id]
        return sorted(found, key=lambda r: r.created, reverse=True)

    def save_run(self, record: RunRecord) -> None:
        """Write ``run.json`` (atomically)."""
        _save(record, "run.json")

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _path(folder: Path, item_id: Any, name: str, kind: str) -> Path:
        # The id comes from the browser: only the exact pattern may become part of a path.
        text = str(item_id or "").strip()
        if not ID_RE.match(text):
            if not text:
                raise NotFoundError(f"no {kind} selected; choose one first")
            raise NotFoundError(f"{kind} {text[:40]!r} not found")
        path = folder / text / name
        if not path.is_file():
            raise NotFoundError(f"{kind} {text!r} not found")
        return path


__all__ = ["DatasetRecord", "NotFoundError", "RunRecord", "Workspace", "new_id", "now"]
