"""Data sources on this server: which source a file belongs to, and each source's fixed domain.

A *data source* is the population a budget protects. Its budget lives in the shared ledger under
its key (:func:`privsynth_core.privacy.ledger.budget_key`); what the web app keeps beside it,
shared by
every user, is in ``$PRIVSYNTH_HOME/sources/``::

    declared/<hash of origin>.json    a custodian's source id for a server file or an upload
                                      (written once, never changed)
    <hash of key>/source.json         the fixed domain's state: public or DP, who fixed it, and
                                      the charged mechanisms a DP domain came from
    <hash of key>/schema.yaml         the fixed domain (declared public, or learned with DP)

Which source a file belongs to:

- a **server file**: the source id a custodian declared for it, else one derived from its place
  (:func:`server_source_id`: the allowed folder's label and relative path, made a valid id, with
  a short hash of the absolute path so two files never share one). Every add of it, by anyone,
  with any holdout share, is an extract of that one source;
- an **upload**: the source id a custodian declared for its content, else its content (the
  fingerprint of the whole file before the holdout split: the key ``privsynth budget set FILE``
  uses too). Adding a server file also records its content as belonging to its source, so an
  upload of the same rows spends from the same budget.

A declaration is refused once anything was charged under the origin's current key, and can never
be changed: either would let the same people's budget start over.

The domain is per source, not per dataset: a custodian reviews a draft and fixes the domain once;
every analyst's extract of that source trains on it (a DP-learned domain's cost is part of every
release made with it). Analysts never see a draft: only the fixed domain, which is public by
declaration or a DP output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from privsynth_core.fileio import atomic_write_text
from privsynth_core.privacy.ledger import budget_key

_INVALID = re.compile(r"[^A-Za-z0-9._-]+")


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def server_source_id(choice: str, path: Path) -> str:
    """The source id of a server file: readable, valid, and unique to the file's location.

    Args:
        choice: the file as the page names it (``folder/relative/path.csv``).
        path: the file's resolved absolute path (the hash; folder labels can change order).
    """
    readable = _INVALID.sub("-", choice.replace("/", ".")).strip(".-")[:48] or "file"
    return f"{readable}-{_digest(str(path), 10)}"


def server_origin(path: Path) -> str:
    """The declaration key of a server file (its resolved absolute path)."""
    return f"server:{path}"


def upload_origin(fingerprint: str) -> str:
    """The declaration key of file content (its fingerprint)."""
    return f"content:{fingerprint}"


@dataclass
class SourceDomain:
    """A data source's fixed domain, as every extract of the source uses it.

    Attributes:
        key: the source's budget key.
        mode: ``""`` (not fixed yet), ``"public"`` or ``"dp"``.
        epsilon, delta: what learning it cost (0 for a public one).
        parts: the charged mechanisms a DP domain came from (SpentPart fields and ledger ids).
        fixed_by, fixed_at: the custodian who fixed it, and when.
    """

    key: str
    mode: str = ""
    epsilon: float = 0.0
    delta: float = 0.0
    parts: list[dict[str, Any]] = field(default_factory=list)
    fixed_by: str = ""
    fixed_at: str = ""
    directory: Path = field(default=Path(), compare=False, repr=False)

    @property
    def schema_path(self) -> Path:
        """The fixed domain's schema file (exists once fixed)."""
        return self.directory / "schema.yaml"

    @property
    def fixed(self) -> bool:
        """Whether the domain is fixed (public or DP) and its schema is there."""
        return bool(self.mode) and self.schema_path.is_file()


class Sources:
    """The data sources of one privsynth home.

    Args:
        home: privsynth's state folder.
    """

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "sources"

    # -- which source ----------------------------------------------------------------------

    def declared(self, origin: str) -> str | None:
        """The source id declared for an origin (:func:`server_origin`, :func:`upload_origin`)."""
        path = self._declaration(origin)
        if not path.is_file():
            return None
        return str(json.loads(path.read_text(encoding="utf-8"))["source"])

    def declare(self, origin: str, source: str, *, by: str) -> bool:
        """Record ``source`` as the source of ``origin``, once; False if one was there already.

        The caller checks that nothing was charged under the origin's current key.

        Raises:
            ConfigError: not a valid source id.
        """
        budget_key(source, "")  # raises for an invalid id
        path = self._declaration(origin)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: of two declarations at once, exactly one is written.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"origin": origin, "source": source, "declared_by": by}, fh)
        return True

    def _declaration(self, origin: str) -> Path:
        return self.root / "declared" / f"{_digest(origin, 32)}.json"

    # -- the domain ------------------------------------------------------------------------

    def domain(self, key: str) -> SourceDomain:
        """The source's domain state (not fixed, if nothing was recorded)."""
        folder = self.root / _digest(key, 32)
        path = folder / "source.json"
        if not path.is_file():
            return SourceDomain(key=key, directory=folder)
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in SourceDomain.__dataclass_fields__}
        return SourceDomain(**{**known, "key": key}, directory=folder)

    def save_domain(self, state: SourceDomain) -> None:
        """Write the source's domain state (atomically)."""
        state.directory.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(state).items() if k != "directory"}
        atomic_write_text(state.directory / "source.json", json.dumps(data, indent=2))

    def unfix_domain(self, key: str) -> None:
        """Forget the source's fixed domain: it must be fixed again before the next training."""
        state = self.domain(key)
        if state.mode:
            state.schema_path.unlink(missing_ok=True)
            state.mode, state.epsilon, state.delta, state.parts = "", 0.0, 0.0, []
            self.save_domain(state)


def check_declarable(source: str) -> str:
    """A declared source id, stripped and checked.

    Joining an existing source (the CLI's ``--source claims``) is fine: sharing a budget can
    only make it last less, never start over.

    Raises:
        ConfigError: not a valid source id.
    """
    text = source.strip()
    budget_key(text, "")
    return text


__all__ = [
    "SourceDomain",
    "Sources",
    "check_declarable",
    "server_origin",
    "server_source_id",
    "upload_origin",
]
