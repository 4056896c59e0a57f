"""The plugin kinds together: their registries, the generator chosen for a table, and models
loaded back from disk.

Each contract module owns its kind's registry (:func:`~privsynth_core.generator.generators`,
:func:`~privsynth_core.privacy.accountant.accountants`, :func:`~privsynth_core.metric.metrics`,
:func:`~privsynth_core.evaluation.report.report_sections`), built on
:class:`~privsynth_core.plugins.Registry`; this module gathers them, so callers need one import,
and holds what needs more than one kind: :func:`choose_generator` and :func:`load_model`.
The registries are filled from the plugin hooks the first time one is used, so importing
privsynth_core costs nothing. Look-ups of unknown ids raise
:class:`~privsynth_core.errors.UnknownPluginError` listing the valid ids; a second class under an
id already taken raises :class:`~privsynth_core.errors.DuplicatePluginError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, GeneratorError, NotFittedError
from .evaluation.report import report_sections
from .generator import (
    CUSTODIAN_FIELDS,
    MANIFEST_NAME,
    FitSummary,
    Generator,
    TableProfile,
    generators,
    partition_generators,
    partitioned_refusal,
)
from .metric import metrics
from .model_manifest import read_manifest
from .plugins import PluginEntry, Registry, reset_registries
from .privacy.accountant import accountants, settling_accountant
from .schema import Schema

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True)
class GeneratorChoice:
    """The generator :func:`choose_generator` picked, why, and how the others ranked.

    Attributes:
        generator_id: the chosen generator.
        why: one sentence for the user (the generator's own reason, and that it was chosen).
        ranking: every DP generator considered, best first, as ``(id, score, why)``; a
            generator without an opinion has score None.
    """

    generator_id: str
    why: str
    ranking: tuple[tuple[str, float | None, str], ...]


def choose_generator(
    schema: Schema,
    noisy_rows: int | None = None,
    installed: Iterable[str] | None = None,
    *,
    target: str | None = None,
) -> GeneratorChoice:
    """The DP generator that serves a table best, among those installed, and why.

    Each generator declares how well it suits the table (:meth:`Generator.suitability`, from
    public facts only: the schema, the released row count n̂ when there is one, the target);
    the highest score wins, ties go to the id first in alphabetical order. Core names no
    generator: what is installed decides. The CLI (``privsynth fit`` without ``--generator``),
    the demo and the web app call this.

    Args:
        schema: the table's schema.
        noisy_rows: the released row count n̂, if one has been released (never the exact
            count).
        installed: the generator ids to choose among (default: every registered DP generator).
        target: the column a model will predict, when the user named one.

    Raises:
        ConfigError: no DP generator is installed (or none of ``installed`` is one).
    """

    registry = generators()
    ids = list(installed) if installed is not None else registry.names()
    profile = TableProfile.of(schema, rows=noisy_rows, target=target)
    ranked: list[tuple[str, float | None, str]] = []
    for generator_id in ids:
        cls = registry.get(generator_id)
        if not cls.is_dp:
            continue
        opinion = cls.suitability(profile)
        ranked.append(
            (generator_id, None, "declares no suitability")
            if opinion is None
            else (generator_id, float(opinion.score), opinion.why)
        )
    if not ranked:
        raise ConfigError(
            "no differentially private generator is installed; see `privsynth plugins list`"
        )
    ranked.sort(key=lambda r: (-(r[1] if r[1] is not None else -1.0), r[0]))
    best_id, score, why = ranked[0]
    reason = (
        f"{why} (chosen among {len(ranked)} installed DP generator"
        f"{'s' if len(ranked) != 1 else ''}"
        f"{'' if score is not None else '; none declares how well it suits a table'})"
    )
    return GeneratorChoice(best_id, reason, tuple(ranked))


def load_model(path: str | Path, *, expected: type[Generator[Any]] | None = None) -> Generator[Any]:
    """Load a model saved by :meth:`Generator.save`, dispatching on its ``generator_id``.

    The folder is checked before it is used, so a damaged, edited or foreign model is refused
    with a message instead of loading wrong or failing later: the manifest
    (:func:`privsynth_core.model_manifest.read_manifest`: format version, keys, a privacy
    statement that adds up), the parameters and schema, the plugin's own files (any failure to
    read them), and a one-row trial sample.

    Args:
        path: the model folder (``privsynth fit -o``, or a run's ``release/model``).
        expected: refuse a model of any other generator class (and its subclasses).

    Raises:
        GeneratorError: the directory holds no valid privsynth model, a damaged one, or one of
            another generator than ``expected``.
        UnknownPluginError: the generator that made it is not installed.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    manifest = read_manifest(path)
    generator_id = manifest["generator_id"]
    generator_cls = generators().get(generator_id)
    if expected is not None and not issubclass(generator_cls, expected):
        raise GeneratorError(f"{path} holds a {generator_id} model, not a {expected.__name__}")
    try:
        params = generator_cls.make_params(manifest["params"])
    except ConfigError as exc:
        raise GeneratorError(
            f"{manifest_path}: its parameters are not valid for this "
            f"privsynth ({exc}); the manifest was edited, or comes from "
            f"another version: fit the model again"
        ) from None
    instance = generator_cls(params)
    instance.schema = Schema.from_dict(manifest["schema"], source=f"the schema in {manifest_path}")
    fit = {k: v for k, v in manifest["fit"].items() if k not in CUSTODIAN_FIELDS}
    instance.fit_summary = FitSummary(**fit)
    instance.fit_summary.model_id = str(manifest.get("model_id", ""))
    try:
        instance._load_state(path)
        instance.sample(1)  # a trial: the files must agree with each other and the schema
    except (NotFittedError, ConfigError) as exc:
        raise GeneratorError(f"{path}: cannot use this model: {exc}") from None
    except Exception as exc:  # any plugin failure on these files means they are damaged
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise GeneratorError(
            f"{path}: the {generator_id} model's files are damaged or do not match its "
            f"manifest ({type(exc).__name__}{': ' + detail if detail else ''}); copy the "
            f"folder again from where `privsynth fit` wrote it, or fit again"
        ) from None
    return instance


REGISTRIES: dict[str, Callable[[], Registry[Any]]] = {
    "generator": generators,
    "accountant": accountants,
    "metric": metrics,
    "report-section": report_sections,
}


def all_entries() -> list[PluginEntry[Any]]:
    """Every registered class of every kind, grouped by kind then id."""
    return [entry for build in REGISTRIES.values() for entry in build().entries()]


__all__ = [
    "REGISTRIES",
    "GeneratorChoice",
    "PluginEntry",
    "Registry",
    "accountants",
    "all_entries",
    "choose_generator",
    "generators",
    "load_model",
    "metrics",
    "partition_generators",
    "partitioned_refusal",
    "report_sections",
    "reset_registries",
    "settling_accountant",
]
