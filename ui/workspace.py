"""Each user's own space (datasets, runs, their files), over the one ledger every user shares.

``$PRIVSYNTH_HOME/``::

    ledger.sqlite                 THE privacy ledger: one budget per data source, shared by every
                                  user of the web app, the CLI and the flows
    sources/                      each data source's fixed domain (see privsynth_ui.sources)
    workspaces/<user>/
      datasets/<id>/dataset.json  what was added: its data source, fingerprints, sizes (a
                                  partitioned dataset: only this and the draft; its rows stay
                                  in the operator's folder)
                    train.csv     the private rows a generator trains on
                    holdout.csv   real rows kept aside for evaluation (never trained on)
                    schema.draft.yaml   the inferred schema, as edited (NOT private)
      runs/<id>/run.json          generator, parameters, target, its Prefect flow run, status,
                                  what the release states
                config.yaml       the run configuration the flow run reads (with the budget key)
                schema.yaml       the source's fixed domain, as the run used it
                run/              the run directory, as `privsynth run` writes it:
                  release/          synthetic.csv, model/, release.json (what may leave)
                  custodian/        manifest.json, schema.yaml, report/ (NOT DP: custodians only)
                .run.work/        the flow run's work area while it runs (kept if interrupted)
                losses.jsonl      training losses (computed on real rows: custodians only)
                samples/          synthetic tables drawn from the model later
                audit/            the privacy audit of the run's generator (custodians only)

A dataset is one *extract* (the train split) of a *data source*: a server file, an uploaded file,
or a source id a custodian declared. Its budget key (:attr:`DatasetRecord.key`) is the source's,
so every user's extracts of one source, with any holdout share, spend from one budget.

Every look-up goes through a user's :class:`Workspace`, and ids are checked against a strict
pattern before they touch a path, so another user's id, or a made-up one, is simply "not found".
The workspace also carries the caller's role (from the account, never from the client):
:meth:`Workspace.require_custodian` is how a handler refuses an analyst.
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
from privsynth_core.privacy.ledger import PrivacyLedger, budget_key

from .auth import ANALYST, CUSTODIAN, ROLES

ID_RE = re.compile(r"^[0-9a-f]{16}$")


class NotFoundError(PrivsynthError, LookupError):
    """A dataset or run id that is not in the user's workspace."""


class RoleError(PrivsynthError, PermissionError):
    """The caller's role does not allow the action (an analyst asking for a custodian's)."""


def shared_ledger(home: Path) -> PrivacyLedger:
    """The one privacy ledger of this privsynth home (``<home>/ledger.sqlite``)."""
    return PrivacyLedger(Path(home) / "ledger.sqlite")


def new_id() -> str:
    """A fresh dataset or run id (16 hex digits)."""
    return uuid.uuid4().hex[:16]


def now() -> str:
    """The time, for records (UTC, ISO 8601)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class DatasetRecord:
    """A dataset the user added (``dataset.json``): one extract of a data source.

    Attributes:
        origin: where it came from, for people (``server: folder/file.csv``, ``upload: x.csv``).
        source: the data source id (a server file's, or one a custodian declared); None for an
            upload, whose source is its content (``source_fingerprint``).
        source_fingerprint: content fingerprint of the whole file, before the holdout split.
        fingerprint: content fingerprint of the extract trained on (``train.csv``).
        rows, holdout_rows: exact sizes. **Private**: shown to custodians only.
        partitions: for a partitioned server dataset, the folder of its Parquet partitions
            (its rows stay there: nothing is copied into the workspace); ``""`` for a file.
        draft_sample_rows: the rows the draft schema of a partitioned dataset was inferred
            from (a sample). **Private**, as ``rows``.
    """

    dataset_id: str
    name: str
    origin: str
    created: str
    rows: int
    holdout_rows: int
    columns: list[str]
    fingerprint: str
    source_fingerprint: str
    source: str | None = None
    added_by: str = ""
    partitions: str = ""
    draft_sample_rows: int = 0
    directory: Path = field(default=Path(), compare=False, repr=False)

    @property
    def partitioned(self) -> bool:
        """Whether the dataset is a folder of partitions read in place (on the cluster)."""
        return bool(self.partitions)

    @property
    def input_path(self) -> Path:
        """What a run reads: the partitions' folder, or the train split (``train.csv``)."""
        return Path(self.partitions) if self.partitions else self.train_path

    @property
    def key(self) -> str:
        """The budget key of the data source (``source:<id>``, or the whole file's content)."""
        return budget_key(self.source, self.source_fingerprint)

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

    def label(self, *, exact_size: bool) -> str:
        """What dropdowns show (the exact size only to a custodian)."""
        size = f"{self.rows} rows, " if exact_size else ""
        return f"{self.name} ({size}{self.dataset_id[:6]})"


#: Statuses of a run (from its flow run's state), and those that will not change any more.
RUN_STATUSES = ("running", "cancelling", "done", "failed", "cancelled", "crashed")
FINAL_STATUSES = frozenset({"done", "failed", "cancelled", "crashed"})


@dataclass
class RunRecord:
    """A training run (``run.json``): a flow run of the ``synthesize`` flow, and what its
    release states once it has ended. While it runs, its status comes from Prefect's API."""

    run_id: str
    dataset_id: str
    dataset_name: str
    generator: str
    params: dict[str, Any]
    epsilon: float | None
    delta: float | None
    accountant: str
    private: bool
    status: str = "running"  # one of RUN_STATUSES
    #: The Prefect flow run that trains it (the ``synthesize`` flow), and where Prefect shows it.
    flow_run_id: str = ""
    flow_run_url: str = ""
    created: str = ""
    finished: str = ""
    spent_epsilon: float | None = None
    spent_delta: float | None = None
    steps: int = 0
    message: str = ""
    #: What the release states it spent, end to end: its parts (domain, row count, training).
    privacy_parts: list[dict[str, Any]] = field(default_factory=list)
    #: The column named at training as the target (the run configuration's ``target``).
    target: str | None = None
    #: What the fit's summary says it spent its budget on and what it covered (lines).
    spending: list[str] = field(default_factory=list)
    directory: Path = field(default=Path(), compare=False, repr=False)

    @property
    def finished_running(self) -> bool:
        """Whether the run has ended (its status will not change any more)."""
        return self.status in FINAL_STATUSES

    @property
    def run_dir(self) -> Path:
        """The run directory the flow run publishes (``release/`` and ``custodian/``)."""
        return self.directory / "run"

    @property
    def config_path(self) -> Path:
        """The run configuration the flow run reads."""
        return self.directory / "config.yaml"

    @property
    def losses_path(self) -> Path:
        """The training losses (computed on real rows: custodians only)."""
        return self.directory / "losses.jsonl"

    @property
    def work_dir(self) -> Path:
        """The flow run's work area (hidden, beside the run directory) while it runs."""
        return self.directory / ".run.work"

    @property
    def model_dir(self) -> Path:
        """The saved generator (in the release; a run from before flow runs kept it at the top)."""
        legacy = self.directory / "model"
        return legacy if legacy.is_dir() else self.run_dir / "release" / "model"

    @property
    def samples_dir(self) -> Path:
        """Synthetic tables drawn from the model."""
        return self.directory / "samples"

    @property
    def report_dir(self) -> Path:
        """The evaluation report (NOT DP): the run directory's custodian report."""
        return self.run_dir / "custodian" / "report"

    @property
    def audit_dir(self) -> Path:
        """The privacy audit of the run's generator (custodians only)."""
        return self.directory / "audit"

    @property
    def label(self) -> str:
        """What dropdowns show."""
        target = f"ε={self.epsilon:g}" if self.epsilon is not None else "NOT DP"
        status = "" if self.status == "done" else f" ({self.status})"
        return f"{self.generator} {target} · {self.dataset_name} · {self.run_id[:6]}{status}"


def _load(cls: type[Any], path: Path) -> Any:
    data = json.loads(path.read_text(encoding="utf-8"))
    if cls is DatasetRecord and "origin" not in data:
        # A dataset from before data sources: its "source" was the origin text, and the train
        # rows were their own population.
        data["origin"], data["source"] = data.get("source", ""), None
        data.setdefault("source_fingerprint", data.get("fingerprint", ""))
    known = {f.name for f in fields(cls)} - {"directory"}
    return cls(**{k: v for k, v in data.items() if k in known}, directory=path.parent)


def _save(record: DatasetRecord | RunRecord, name: str) -> None:
    data = {k: v for k, v in asdict(record).items() if k != "directory"}
    atomic_write_text(record.directory / name, json.dumps(data, indent=2, default=str))


class Workspace:
    """One user's folder, their role, and the shared ledger and data sources.

    Args:
        home: privsynth's state folder.
        user: a user name (already checked by the account store; checked again here).
        role: the account's role (:data:`privsynth_ui.auth.ROLES`), from the account store.

    Raises:
        NotFoundError: not a valid user name.
        LedgerMissingError: the shared ledger is missing where one existed.
    """

    def __init__(self, home: Path, user: str, role: str = ANALYST) -> None:
        from .auth import USERNAME_RE
        from .sources import Sources

        if not USERNAME_RE.match(user):
            raise NotFoundError("no such user")
        if role not in ROLES:
            raise RoleError(f"unknown role {role!r}")
        self.user = user
        self.role = role
        self.home = Path(home)
        # Opened (created on a first use) before any workspace folder exists: the ledger refuses
        # to start anew in a home that already holds privsynth state.
        self.ledger = shared_ledger(self.home)
        self.sources = Sources(self.home)
        self.root = self.home / "workspaces" / user
        self.datasets_dir = self.root / "datasets"
        self.runs_dir = self.root / "runs"
        for folder in (self.datasets_dir, self.runs_dir):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def is_custodian(self) -> bool:
        """Whether the caller is a data custodian (of every source on this server)."""
        return self.role == CUSTODIAN

    def require_custodian(self, action: str) -> None:
        """Refuse ``action`` unless the caller is a data custodian.

        Raises:
            RoleError: the caller is an analyst.
        """
        if not self.is_custodian:
            raise RoleError(
                f"only a data custodian can {action}; you are signed in as an "
                f"analyst: ask a custodian of this server"
            )

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


__all__ = [
    "FINAL_STATUSES",
    "RUN_STATUSES",
    "DatasetRecord",
    "NotFoundError",
    "RoleError",
    "RunRecord",
    "Workspace",
    "new_id",
    "now",
    "shared_ledger",
]
