"""The privacy guarantee a report states: from the ledger where the custodian's records allow.

A model's manifest states its end-to-end guarantee, but a manifest is a file anyone can edit.
What was charged is in the privacy ledger, and which ledger entries a model depends on is in
the custodian's records, never in a release: a published run's ``custodian/manifest.json``
(its ``spent`` list) and the model store's ``fit.json`` beside each stored model. So:

- :func:`load_manifest` refuses a manifest that does not add up (a total that is not the sum of
  its parts: :func:`privsynth_core.model_manifest.check_manifest`);
- :func:`verified_guarantee` reports the ledger's sum over the entries the custodian's record
  lists, when one is found (given, or found in the store by the model's random id), and says
  when the manifest states something else (edited); without a record it reports the
  manifest's figure, marked "not verified against the ledger".

Releases stay free of ledger ids: the link from a model to its entries lives only in those
custodian files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputFileError, PrivsynthError


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read a model manifest: a ``manifest.json`` file, a model folder holding one, or a
    published run directory (its ``release/model``). The manifest is checked
    (:func:`privsynth_core.model_manifest.check_manifest`): one whose guarantee does not add up is
    refused.

    Raises:
        InputFileError: no such file, or not a JSON object.
        GeneratorError: not a valid model manifest (damaged, edited, another version).
    """
    return load_model_evidence(path)[0]


def load_model_evidence(path: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model manifest at ``path`` and, for a run directory, the custodian's record of what
    the run spent (its ``custodian/manifest.json``; None otherwise).

    Raises:
        InputFileError: a run directory's custodian manifest is not readable.
        GeneratorError: as :func:`load_manifest`.
    """
    from ..model_manifest import read_manifest
    from .release import CUSTODIAN_DIR, RELEASE_DIR

    path = Path(path)
    record: dict[str, Any] | None = None
    if (path / CUSTODIAN_DIR / "manifest.json").is_file():
        record = _read_json(path / CUSTODIAN_DIR / "manifest.json")
        path = path / RELEASE_DIR / "model"
        record["_model_manifest"] = str(path / "manifest.json")
    return read_manifest(path), record


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read {path} ({exc}); the run directory is damaged") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path} is not a privsynth record (not a JSON object)")
    return data


def _store_record(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The model store's custodian record (``fit.json``) of the model with this manifest's
    random ``model_id``, if this installation trained it."""
    from ..store import FIT_RECORD, MODEL_SUBDIR, cache_dir

    model_id = manifest.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        return None
    for fit_json in sorted((cache_dir() / "models").glob(f"*/{FIT_RECORD}")):
        stored = fit_json.parent / MODEL_SUBDIR / "manifest.json"
        try:
            if model_id not in stored.read_text(encoding="utf-8"):
                continue
            if json.loads(stored.read_text(encoding="utf-8")).get("model_id") == model_id:
                record: dict[str, Any] = json.loads(fit_json.read_text(encoding="utf-8"))
                record["_model_manifest"] = str(stored)
                return record
        except (OSError, ValueError):
            continue
    return None


def verified_guarantee(
    manifest: dict[str, Any] | None, record: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The privacy guarantee to report for a model: from the ledger where the custodian's
    records allow, never from an editable file alone.

    ``record`` is the custodian's record of the model (a run's ``custodian/manifest.json``, or
    the store's ``fit.json``); without one, the store is searched for the model's random id.
    With a record, the guarantee is the ledger's sum (``math.fsum``) over the entries it lists,
    read from the ledger itself; a manifest that states another figure is reported as edited.
    Without one, the manifest's own figure is returned, marked as not verified.

    Returns:
        The manifest's ``privacy`` block with the figures to report and ``verified`` (bool),
        ``source`` (words), ``manifest_epsilon``/``manifest_delta`` (what the file states) and
        ``warning`` (when the file and the ledger disagree); None without a manifest.
    """
    if manifest is None:
        return None
    privacy = dict(manifest.get("privacy") or {})
    privacy["differentially_private"] = bool(manifest.get("differentially_private"))
    privacy["generator"] = manifest.get("generator_id")
    if not privacy["differentially_private"]:
        return privacy
    stated_eps, stated_delta = privacy.get("epsilon"), privacy.get("delta")
    privacy.update(manifest_epsilon=stated_eps, manifest_delta=stated_delta, verified=False)
    record = record if record is not None else _store_record(manifest)
    if record is None:
        privacy["source"] = (
            "as stated by the model's manifest (not verified against the "
            "ledger: no custodian record of this model here; give the run "
            "directory with --manifest, or evaluate where it was trained)"
        )
        return privacy
    try:
        figures = _ledger_figures(record)
    except PrivsynthError as exc:
        privacy["source"] = (
            f"as stated by the model's manifest (not verified against the ledger: {exc})"
        )
        return privacy
    epsilon, delta, ids = figures
    privacy.update(
        epsilon=epsilon,
        delta=delta,
        verified=True,
        source=f"as charged in the privacy ledger (entries {', '.join(f'#{i}' for i in ids)})",
    )
    problems = []
    if stated_eps != epsilon or stated_delta != delta:
        problems.append(
            f"the model's manifest states epsilon={_num(stated_eps)}, delta={_num(stated_delta)}"
        )
    sha = (record.get("outputs") or {}).get("model_manifest_sha256")
    where = record.get("_model_manifest")
    if sha and where and Path(where).is_file():
        from ..fileio import file_sha256

        if file_sha256(where) != sha:
            problems.append("the release's model manifest is not the one the run wrote")
    if problems:
        privacy["warning"] = (
            "; ".join(problems) + ": it was edited after the fit. Do not "
            "release it; the ledger's figure is the guarantee"
        )
    return privacy


def _ledger_figures(record: dict[str, Any]) -> tuple[float, float, list[int]]:
    """The ledger's (epsilon, delta) total over the entries a custodian record lists."""
    from ..errors import BudgetError
    from .ledger import PrivacyLedger

    ids = [p.get("ledger_entry") for p in record.get("spent") or []]
    if not ids or not all(isinstance(i, int) for i in ids):
        raise BudgetError("the custodian record lists no ledger entries")
    ledger = PrivacyLedger(read_only=True)
    if record.get("ledger_id") and ledger.ledger_id and record["ledger_id"] != ledger.ledger_id:
        raise BudgetError("the model was charged to another ledger than this one")
    entries = [ledger.entry(i) for i in ids]
    return (
        math.fsum(e.epsilon for e in entries),
        math.fsum(e.delta for e in entries),
        [int(i) for i in ids],
    )


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else repr(value)


__all__ = ["load_manifest", "load_model_evidence", "verified_guarantee"]
