"""What may leave the custodian: the release's privacy statement and the list of its DP fields.

A release (a run's ``release/`` folder, a model directory written by ``privsynth fit``, a
synthetic table written by ``privsynth sample`` or the web app) holds only:

- outputs of charged DP mechanisms (the model's weights, noisy marginals, the selections of
  MST/AIM, a DP-learned domain, the released row count n̂) and what is computed from them alone
  (post-processing: the synthetic rows, every default derived from n̂);
- public inputs (the declared schema's names, kinds and domain, the parameters, the target
  budget, versions) and values drawn at random independently of the data (ids).

Nothing computed from the rows outside a charged mechanism goes in: no content or file hashes,
no exact row count, no min/max, no timings, no example values, no ledger ids. Those stay in the
custodian's files (the run's ``custodian/`` folder, the ledger).

:data:`RELEASE_FIELDS` is the one place that lists which parts of a release may differ between
two neighbouring tables, and why; :mod:`privsynth_core.privacy.neighbours` checks every release
against it by releasing for a table and for the table plus one adversarial row.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

RELEASE_DIR = "release"
CUSTODIAN_DIR = "custodian"
RELEASE_MANIFEST = "release.json"
RELEASE_KIND = "privsynth-release"


@dataclass(frozen=True)
class SpentPart:
    """One charged mechanism a release depends on.

    Attributes:
        step: ``"domain"``, ``"row count"`` or ``"training"``.
        mechanism: what ran (as the ledger names it).
        epsilon, delta: what it cost.
        entry_id: its ledger entry (custodian-only: never written into a release).
    """

    step: str
    mechanism: str
    epsilon: float
    delta: float
    entry_id: int | None = None

    def public(self) -> dict[str, Any]:
        """The part as a release states it (no ledger id)."""
        return {
            "step": self.step,
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }


def total(parts: list[SpentPart]) -> tuple[float, float]:
    """The end-to-end (epsilon, delta) of ``parts`` by basic composition.

    ``math.fsum`` is exact and independent of order, so the ledger's total over the same entries
    equals it to the last digit.
    """
    return math.fsum(p.epsilon for p in parts), math.fsum(p.delta for p in parts)


def statement(parts: list[SpentPart], *, accountant: str | None = None) -> dict[str, Any]:
    """The privacy block of a release: the end-to-end total and each part it is made of."""
    epsilon, delta = total(parts)
    return {
        "epsilon": epsilon,
        "delta": delta,
        "composition": "basic (sum over the parts)",
        "neighbours": "add or remove one record",
        "accountant": accountant,
        "parts": [p.public() for p in parts],
    }


def release_date() -> str:
    """The calendar day of a release (UTC): a date, never a duration or a time of day."""
    return datetime.now(UTC).date().isoformat()


@dataclass(frozen=True)
class ReleaseField:
    """A part of a release that may differ between neighbouring tables.

    Attributes:
        files: a glob over the release's relative file paths.
        field: a dotted path into the file's data (``*`` matches one key or list index), or
            ``"<content>"`` for the whole file, or ``"<rows>"`` for a table's data rows (its
            header must still match).
        why: ``"mechanism"`` (output of a charged DP mechanism, or computed from such outputs
            only), or ``"random"`` (drawn independently of the data), or ``"date"``.
        source: the mechanism, for people reading a diff.
    """

    files: str
    field: str
    why: str
    source: str


#: Everything in a release that may differ between a table and its neighbour. Anything else
#: must be identical (checked by :mod:`privsynth_core.privacy.neighbours`).
RELEASE_FIELDS: tuple[ReleaseField, ...] = (
    ReleaseField("**.pt", "<content>", "mechanism", "DP-SGD: the generator's weights"),
    ReleaseField(
        "**marginals.json",
        "<content>",
        "mechanism",
        "DP-CTGAN: the noisy marginals (Gaussian mechanism)",
    ),
    ReleaseField(
        "**histograms.json",
        "<content>",
        "mechanism",
        "independent: the noisy histograms (Laplace mechanism)",
    ),
    ReleaseField(
        "**model.npz",
        "<content>",
        "mechanism",
        "MST/AIM: the graphical model fitted to the noisy marginals",
    ),
    ReleaseField("**.csv", "<rows>", "mechanism", "synthetic rows: sampled from the DP model"),
    ReleaseField("**.parquet", "<rows>", "mechanism", "synthetic rows: sampled from the DP model"),
    ReleaseField(
        "**manifest.json",
        "fit.extra.measured_marginals",
        "mechanism",
        "MST/AIM: the marginals chosen by the exponential mechanism",
    ),
    ReleaseField(
        "**manifest.json",
        "fit.extra.measured_marginals.*",
        "mechanism",
        "MST/AIM: the marginals chosen by the exponential mechanism",
    ),
    ReleaseField(
        "**manifest.json",
        "fit.extra.measured_marginals.*.*",
        "mechanism",
        "MST/AIM: the marginals chosen by the exponential mechanism",
    ),
    ReleaseField(
        "**manifest.json",
        "fit.extra.point_masses.*",
        "mechanism",
        "MST/AIM: the values the noisy fine histograms made cells of their own",
    ),
    ReleaseField(
        "**manifest.json",
        "fit.extra.point_masses.*.*",
        "mechanism",
        "MST/AIM: the values the noisy fine histograms made cells of their own",
    ),
    ReleaseField(
        "**manifest.json",
        "fit.extra.coverage.*",
        "mechanism",
        "MST/AIM: what the marginals chosen by the exponential mechanism cover",
    ),
    ReleaseField(
        "**manifest.json",
        "fit.extra.coverage.*.*",
        "mechanism",
        "MST/AIM: what the marginals chosen by the exponential mechanism cover",
    ),
    ReleaseField("**manifest.json", "model_id", "random", "a random id of the model"),
    ReleaseField("**release.json", "release_id", "random", "a random id of the release"),
    ReleaseField("**release.json", "created", "date", "the calendar day of the release"),
)


def field_allowed(path: str, field: str) -> ReleaseField | None:
    """The :data:`RELEASE_FIELDS` entry that lets ``field`` of file ``path`` differ, if any."""
    for entry in RELEASE_FIELDS:
        if not fnmatch.fnmatch(path, entry.files) and not fnmatch.fnmatch(
            path, entry.files.replace("**", "*")
        ):
            continue
        if entry.field == field or entry.field == "<content>":
            return entry  # a file that is a mechanism output as a whole: any of its fields
        if entry.field not in ("<content>", "<rows>") and _dotted_match(entry.field, field):
            return entry
    return None


def _dotted_match(pattern: str, field: str) -> bool:
    want, have = pattern.split("."), field.split(".")
    return len(want) == len(have) and all(
        w == "*" or w == h for w, h in zip(want, have, strict=True)
    )


__all__ = [
    "CUSTODIAN_DIR",
    "RELEASE_DIR",
    "RELEASE_FIELDS",
    "RELEASE_KIND",
    "RELEASE_MANIFEST",
    "ReleaseField",
    "SpentPart",
    "field_allowed",
    "release_date",
    "statement",
    "total",
]
