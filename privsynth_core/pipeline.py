"""The steps of a synthesis run, as plain functions over paths: what each flow task calls.

``load -> validate -> domain -> fit -> sample -> evaluate -> report -> publish``. Every step
reads its inputs from files and writes its output to a file or folder (atomically), and returns
only small values: paths, fingerprints, plain records. That is what lets the Prefect flows
(:mod:`privsynth_flows`) cache, retry and distribute the steps, and what lets
:func:`privsynth_core.runs.run_pipeline` run the same steps with no orchestrator at all.

Privacy: ``domain`` (in DP mode) and ``fit`` are the only steps that spend budget, both through
the ledger; ``sample`` is post-processing; ``evaluate`` and ``report`` read the real data and
produce custodian-only, non-DP outputs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MetricError, SchemaError
from .fileio import atomic_directory, atomic_write, atomic_write_text
from .ledger import PrivacyBudget, PrivacyLedger, privsynth_home

if TYPE_CHECKING:
    from .config import RunConfig
    from .evaluation import EvaluationResult
    from .generator import ProgressCallback

SCHEMA_FILE = "schema.yaml"
DOMAIN_RECORD = "domain.json"
SYNTHETIC_FILE = "synthetic.csv"


@dataclass(frozen=True)
class InputInfo:
    """What the load step learned about the private table (nothing here is released).

    Attributes:
        path: the file.
        fingerprint: the ledger's content hash of the rows.
        sha256: hash of the file's bytes (for the manifest).
        rows: number of rows (treated as public, as DP-SGD accounting does).
        columns: column names.
    """

    path: str
    fingerprint: str
    sha256: str
    rows: int
    columns: tuple[str, ...]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where cached domains and models live (``$PRIVSYNTH_HOME/cache``)."""
    return privsynth_home() / "cache"


def domain_key(config: RunConfig, fingerprint: str) -> str:
    """Key of a run's domain: the dataset and the domain settings (schema file by content)."""
    return hashlib.sha256(f"{fingerprint}:{config.domain_hash()}".encode()).hexdigest()[:32]


def fit_key(config: RunConfig, fingerprint: str, schema_path: str | Path) -> str:
    """Key of a trained model: dataset fingerprint, fit settings (seed included), domain used."""
    text = f"{fingerprint}:{config.fit_hash()}:{file_sha256(schema_path)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def is_complete_model(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a saved model (saves are atomic: the manifest means whole)."""
    return (Path(model_dir) / "manifest.json").is_file()


def is_complete_domain(domain_dir: str | Path) -> bool:
    """Whether ``domain_dir`` holds a resolved domain."""
    return (Path(domain_dir) / DOMAIN_RECORD).is_file()


# -- load and validate ------------------------------------------------------------------------


def load_input(config: RunConfig) -> InputInfo:
    """Read the private table: fingerprint, size and columns.

    Raises:
        InputFileError: the file is missing, unreadable or not a table.
    """
    from .table import fingerprint_frame, read_frame

    frame = read_frame(config.input)
    return InputInfo(str(config.input), fingerprint_frame(frame), file_sha256(config.input),
                     frame.height, tuple(frame.columns))


def validate_input(config: RunConfig) -> list[str]:
    """Check the table against the schema file; return notes (values the domain will clamp).

    In ``public`` mode every value must convert to its column's kind; values outside the
    declared domain are allowed (they are clamped or dropped to missing by the fit) and are
    reported as notes for the custodian's log, never written to a shareable output. In ``dp``
    mode only the column names are checked (the domain does not exist yet).

    Raises:
        SchemaError: columns are missing or values do not convert; every problem listed.
    """
    from .schema import Schema
    from .table import read_frame
    from .validation import conform, validate

    if config.schema_path is None:
        return []
    schema = Schema.load(config.schema_path)
    frame = read_frame(config.input)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise SchemaError(f"{config.input} lacks columns of its schema {config.schema_path}:",
                          missing)
    if config.domain == "dp":
        return []
    conform(frame, schema)
    return [f"outside the declared domain (will be clamped or set missing): {p}"
            for p in validate(frame, schema)]


def check_holdout(config: RunConfig, fingerprint: str) -> None:
    """Refuse a holdout that is the training table itself (its attacks would mean nothing)."""
    if config.holdout is None:
        return
    from .table import fingerprint_frame, read_frame

    if fingerprint_frame(read_frame(config.holdout)) == fingerprint:
        raise MetricError(f"the holdout {config.holdout} holds the same rows as the input; give "
                          f"real rows that the generator never trains on")


# -- domain -----------------------------------------------------------------------------------


def resolve_domain(config: RunConfig, destination: str | Path, *, run_id: str) -> Path:
    """Fix the run's domain and write it (``schema.yaml`` + ``domain.json``) to ``destination``.

    ``public``: the declared schema (an inferred one needs ``confirm_public``); costs nothing.
    ``dp``: bounds and categories learned with DP mechanisms, each charged to the ledger under
    ``run_id`` before it runs.

    Returns:
        The schema file.

    Raises:
        DomainError, SchemaError, BudgetNotSetError, BudgetExceededError.
    """
    from .domain import prepare_table

    ledger = PrivacyLedger()
    table = prepare_table(
        config.input, schema_path=config.schema_path, domain=config.domain,
        confirm_public=config.confirm_public, domain_epsilon=config.domain_epsilon,
        domain_delta=config.domain_delta, ledger=ledger, run_id=run_id)
    if config.domain == "dp":
        entries = [e for e in ledger.entries(table.fingerprint()) if e.run_id == run_id]
        record: dict[str, Any] = {
            "mode": "dp", "epsilon": sum(e.epsilon for e in entries),
            "delta": sum(e.delta for e in entries), "run_id": run_id,
            "ledger_entries": [e.entry_id for e in entries]}
    else:
        record = {"mode": "public", "epsilon": 0.0, "delta": 0.0, "run_id": run_id,
                  "ledger_entries": []}
    with atomic_directory(destination, overwrite=True) as tmp:
        table.schema.save(tmp / SCHEMA_FILE)
        (tmp / DOMAIN_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return Path(destination) / SCHEMA_FILE


def domain_record(schema_path: str | Path) -> dict[str, Any]:
    """The ``domain.json`` written next to a schema by :func:`resolve_domain`."""
    data: dict[str, Any] = json.loads(
        (Path(schema_path).parent / DOMAIN_RECORD).read_text(encoding="utf-8"))
    return data


# -- fit and sample ---------------------------------------------------------------------------


def fit_model(
    config: RunConfig,
    schema_path: str | Path,
    model_dir: str | Path,
    *,
    run_id: str,
    checkpoint_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Train the configured generator on the table under ``schema_path``; save it atomically.

    The generator reserves its whole target in the ledger before it reads the data and settles
    to what it spent after (:meth:`~privsynth_core.generator.Generator.fit`). With
    ``checkpoint_dir``, a generator that supports checkpoints saves them there and resumes an
    interrupted attempt found there (:mod:`privsynth_core.checkpoint`).

    Raises:
        ConfigError, DomainError, BudgetNotSetError, BudgetExceededError, GeneratorError.
    """
    from .checkpoint import CheckpointStore
    from .registry import generators
    from .schema import Schema
    from .table import Table

    generator_cls = generators().get(config.generator)
    generator = generator_cls(generator_cls.make_params(config.params))
    table = Table.load(config.input, Schema.load(schema_path))
    budget = (PrivacyBudget(config.epsilon, config.delta) if config.epsilon is not None
              else None)
    generator.fit(table, budget=budget, accountant=config.accountant, ledger=PrivacyLedger(),
                  run_id=run_id, progress=progress,
                  checkpoints=CheckpointStore(checkpoint_dir) if checkpoint_dir else None)
    return generator.save(model_dir, overwrite=True)


def sample_synthetic(model_dir: str | Path, rows: int, *, seed: int,
                     destination: str | Path) -> Path:
    """Sample ``rows`` rows from the saved model into a CSV file (post-processing: free)."""
    from .generator import Generator

    frame = Generator.load(model_dir).sample(rows, seed=seed)
    return atomic_write(destination, frame.write_csv)


# -- evaluate and report ----------------------------------------------------------------------


def metric_plan(config: RunConfig) -> list[tuple[str, bool]]:
    """The metrics to compute as ``(metric id, required)``: the configured ones (required),
    or every registered metric (skipped when its inputs are missing)."""
    from .registry import metrics

    if config.metrics is not None:
        return [(metric_id, True) for metric_id in config.metrics]
    return [(metric_id, False) for metric_id in metrics().names()]


def _evaluation_inputs(config: RunConfig, schema_path: str | Path,
                       synthetic_path: str | Path) -> dict[str, Any]:
    from .schema import Schema
    from .table import read_frame

    return {"real": read_frame(config.input), "synthetic": read_frame(synthetic_path),
            "schema": Schema.load(schema_path),
            "holdout": read_frame(config.holdout) if config.holdout else None}


def evaluate_metric(config: RunConfig, schema_path: str | Path, synthetic_path: str | Path,
                    model_dir: str | Path, metric_id: str, *,
                    required: bool) -> EvaluationResult:
    """Compute one metric (with its reference points) on the real and synthetic tables.

    A metric that is not ``required`` and cannot run on these inputs comes back as skipped.
    The result reads the real data: it is NOT covered by the DP guarantee.

    Raises:
        MetricError: a required metric cannot run.
    """
    from .evaluation import EvaluationResult, SkippedMetric, evaluate, load_manifest

    inputs = _evaluation_inputs(config, schema_path, synthetic_path)
    try:
        return evaluate(**inputs, metric_ids=[metric_id], target=config.target,
                        manifest=load_manifest(model_dir), seed=config.seed)
    except MetricError as exc:
        if required:
            raise
        return EvaluationResult([], [], {}, [SkippedMetric(metric_id, str(exc))], None, {})


def merge_evaluations(parts: list[EvaluationResult]) -> EvaluationResult:
    """One evaluation from per-metric ones (results in the order of ``parts``)."""
    from .evaluation import EvaluationResult

    merged = EvaluationResult([], [], {}, [], None, {})
    for part in parts:
        merged.results += part.results
        merged.headlines += part.headlines
        merged.verdicts.update(part.verdicts)
        merged.skipped += part.skipped
        merged.guarantee = merged.guarantee or part.guarantee
        merged.inputs = merged.inputs or part.inputs
        merged.seconds.update({k: v for k, v in part.seconds.items() if k != "metrics_total"})
    return merged


def write_report(config: RunConfig, schema_path: str | Path, synthetic_path: str | Path,
                 model_dir: str | Path, parts: list[EvaluationResult],
                 destination: str | Path) -> Path:
    """Write ``metrics.json`` and ``report.html`` (custodian-only, NOT DP) to ``destination``."""
    from .evaluation import load_manifest, type_frame
    from .report_html import write_report as write_html

    evaluation = merge_evaluations(parts)
    inputs = _evaluation_inputs(config, schema_path, synthetic_path)
    schema = inputs["schema"]
    if not evaluation.inputs:
        evaluation.inputs = {"columns": schema.names, "target": config.target,
                             "seed": config.seed}
    holdout = inputs["holdout"]
    write_html(evaluation, Path(destination),
               real=type_frame(inputs["real"], schema, "real"),
               synthetic=type_frame(inputs["synthetic"], schema, "synthetic"),
               holdout=type_frame(holdout, schema, "holdout") if holdout is not None else None,
               schema=schema, target=config.target, manifest=load_manifest(model_dir),
               seed=config.seed, overwrite=True)
    atomic_write_text(Path(destination) / "metrics.json",
                      json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False))
    return Path(destination)


def headline_rows(report_dir: str | Path) -> list[dict[str, Any]]:
    """The headline scores of a written report (metric, value, verdict), from metrics.json."""
    data = json.loads((Path(report_dir) / "metrics.json").read_text(encoding="utf-8"))
    return [{"metric_id": h["metric_id"], "name": h["name"], "group": h["group"],
             "value": h["value"], "verdict": h.get("verdict", "unknown")}
            for h in data.get("headline", [])]


def new_run_id() -> str:
    """A fresh run id."""
    return uuid.uuid4().hex


__all__ = [
    "InputInfo",
    "cache_dir",
    "check_holdout",
    "domain_key",
    "domain_record",
    "evaluate_metric",
    "file_sha256",
    "fit_key",
    "fit_model",
    "headline_rows",
    "is_complete_domain",
    "is_complete_model",
    "load_input",
    "merge_evaluations",
    "metric_plan",
    "new_run_id",
    "resolve_domain",
    "sample_synthetic",
    "validate_input",
    "write_report",
]
