"""Reading a model's manifest, and refusing one this privsynth cannot vouch for.

A model folder's ``manifest.json`` (:meth:`privsynth_core.generator.Generator.manifest`) is a
file anyone can edit or damage. :func:`read_manifest` checks it before anything is loaded from
the folder: a newer format version ("upgrade"), missing or unknown keys, blocks of the wrong
type, a DP model whose stated total is not the sum of its parts (or whose training part is not
what the fit spent), and a DP flag that the generator's class contradicts. Whether the
guarantee is *true* is for the ledger to say: :mod:`privsynth_core.privacy.guarantee`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from .errors import GeneratorError
from .generator import MANIFEST_FORMAT_VERSION, MANIFEST_NAME, FitSummary, generators


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check (:func:`check_manifest`) the manifest of the model folder ``path``, or
    the ``manifest.json`` file ``path``.

    Raises:
        GeneratorError: no manifest there, not JSON, or not a valid model manifest.
    """
    path = Path(path)
    if path.name == MANIFEST_NAME and path.is_file():
        folder, manifest_path = path.parent, path
    else:
        folder, manifest_path = path, path / MANIFEST_NAME
    if not manifest_path.is_file():
        what = (
            "does not exist"
            if not folder.exists()
            else (
                "is a file, not a model folder"
                if not folder.is_dir()
                else f"holds no privsynth model (no {MANIFEST_NAME})"
            )
        )
        raise GeneratorError(
            f"{folder} {what}; give the folder that `privsynth fit -o` wrote "
            f"(or a run's release/model)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeneratorError(
            f"{manifest_path} is not a readable model manifest ({exc}); the "
            f"model folder is damaged: copy it again, or fit again"
        ) from None
    check_manifest(manifest, where=manifest_path)
    if manifest["generator_id"] in generators():
        generator_cls = generators().get(manifest["generator_id"])
        if generator_cls.is_dp != manifest["differentially_private"]:
            raise GeneratorError(
                f"{manifest_path} says the {generator_cls.generator_id} model is "
                f"{'' if manifest['differentially_private'] else 'not '}differentially private, "
                f"which that generator is not: the manifest was edited; do not use it"
            )
    return manifest  # type: ignore[no-any-return]


#: Top-level keys of a model manifest (format 1): required, then optional.
MANIFEST_KEYS = (
    "format_version",
    "generator_id",
    "differentially_private",
    "privacy",
    "params",
    "schema",
    "fit",
)
OPTIONAL_MANIFEST_KEYS = ("privsynth_version", "model_id")


def check_manifest(manifest: Any, *, where: str | Path = "the model manifest") -> None:
    """Refuse a model manifest this privsynth cannot vouch for.

    Checks the format version (a newer one is refused with "upgrade"), that every key is there
    and no unknown one is, the types of the blocks, and that a DP model's stated guarantee is
    the sum of its parts (``math.fsum``, as :func:`privsynth_core.privacy.release.statement`
    writes it) and that its training part is what the fit spent: a total edited by hand does
    not add up.

    This makes a manifest *consistent*, not *true*: whether the guarantee is what the ledger
    charged is for the custodian's records to say
    (:func:`privsynth_core.evaluation.runner.verified_guarantee`).

    Raises:
        GeneratorError: every problem found, with what to do.
    """
    if not isinstance(manifest, dict):
        raise GeneratorError(f"{where} is not a privsynth model manifest (not a JSON object)")
    version = manifest.get("format_version")
    if (
        isinstance(version, int)
        and not isinstance(version, bool)
        and version > MANIFEST_FORMAT_VERSION
    ):
        raise GeneratorError(
            f"{where} was written by a newer privsynth (model format {version}; this one reads "
            f"format {MANIFEST_FORMAT_VERSION}); upgrade privsynth to use this model"
        )
    problems = []
    if version != MANIFEST_FORMAT_VERSION:
        problems.append(f"format_version is {version!r}, not {MANIFEST_FORMAT_VERSION}")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        problems.append(f"missing key(s): {', '.join(missing)}")
    extra = sorted(set(manifest) - set(MANIFEST_KEYS) - set(OPTIONAL_MANIFEST_KEYS))
    if extra:
        problems.append(f"unexpected key(s): {', '.join(extra)}")
    for key, kind in (
        ("generator_id", str),
        ("params", dict),
        ("schema", dict),
        ("fit", dict),
        ("privacy", dict),
        ("differentially_private", bool),
    ):
        if key in manifest and not isinstance(manifest[key], kind):
            problems.append(f"{key} is not a {kind.__name__}")
    fit = manifest.get("fit")
    if isinstance(fit, dict):
        known = {f.name for f in fields(FitSummary)}
        unknown = sorted(set(fit) - known)
        if unknown:
            problems.append(f"unexpected fit key(s): {', '.join(unknown)}")
    privacy = manifest.get("privacy")
    if not problems and manifest["differentially_private"] and isinstance(privacy, dict):
        problems += _statement_problems(privacy, fit or {}, math.fsum)
    if problems:
        raise GeneratorError(
            f"{where} is not a valid privsynth model manifest ({'; '.join(problems)}): it was "
            f"damaged, edited, or written by another tool; privsynth will not load it. Use the "
            f"folder `privsynth fit` wrote, or fit again"
        )


def _statement_problems(
    privacy: dict[str, Any], fit: dict[str, Any], fsum: Callable[[Any], float]
) -> list[str]:
    """How a DP manifest's privacy statement fails to add up (empty: it adds up)."""
    parts = privacy.get("parts")
    numbers = (int, float)
    if (
        not isinstance(parts, list)
        or not parts
        or not all(
            isinstance(p, dict)
            and isinstance(p.get("epsilon"), numbers)
            and isinstance(p.get("delta"), numbers)
            for p in parts
        )
    ):
        return ["the privacy statement has no valid parts"]
    epsilon, delta = privacy.get("epsilon"), privacy.get("delta")
    if not isinstance(epsilon, numbers) or not isinstance(delta, numbers):
        return ["the privacy statement has no epsilon or delta"]
    problems = []
    if epsilon != fsum(p["epsilon"] for p in parts) or delta != fsum(p["delta"] for p in parts):
        problems.append(
            f"its guarantee (epsilon={epsilon:g}, delta={delta:g}) is not the sum of its parts"
        )
    training = [p for p in parts if p.get("step") == "training"]
    if training and (
        training[-1]["epsilon"] != fit.get("epsilon") or training[-1]["delta"] != fit.get("delta")
    ):
        problems.append("its training part is not what the fit spent")
    return problems


__all__ = ["MANIFEST_KEYS", "OPTIONAL_MANIFEST_KEYS", "check_manifest", "read_manifest"]
