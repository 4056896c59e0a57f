"""The steps of a synthesis run, as plain functions over paths: what each flow task calls.

``load -> validate -> domain -> fit -> sample -> evaluate -> report -> publish``. Every step
reads its inputs from files and writes its output to a file or folder (atomically), and returns
only small values: paths, fingerprints, plain records. That is what lets the Prefect flows
(:mod:`privsynth_flows`) cache, retry and distribute the steps, and what lets
:func:`privsynth_core.runs.rundir.run_pipeline` run the same steps with no orchestrator at all.

Privacy: ``domain`` (in DP mode) and ``fit`` (with the released row count n̂) are the only steps
that spend budget, both through the ledger; ``sample`` is post-processing; ``evaluate`` and
``report`` read the real data and produce custodian-only, non-DP outputs. What a step returns to
an orchestrator (and so may reach its logs or server) is a path or a count of problems, never a
value of the data: details with example values go to the run's custodian log
(:func:`validate_input`).

Models and domains are kept in privsynth's own store under ``$PRIVSYNTH_HOME/cache``, keyed on
(data, settings, seed): a second identical fit finds the model already paid for and reuses it,
whichever orchestrator (or none) runs it; one running at the same time waits for it; and a fit
whose earlier attempt died after reserving its budget is refused rather than paid twice
(:mod:`privsynth_core.store`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MetricError, SchemaError
from ..fileio import (
    atomic_directory,
    atomic_write,
    atomic_write_text,
    file_sha256,
    remove_stale_siblings,
)
from ..privacy.ledger import PrivacyLedger
from ..privacy.release import SpentPart
from ..store import FIT_RECORD, MODEL_SUBDIR, cache_dir

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from ..evaluation.results import EvaluationResult
    from ..generator import Generator, ProgressCallback
    from .config import RunConfig

SCHEMA_FILE = "schema.yaml"
DOMAIN_RECORD = "domain.json"
SYNTHETIC_FILE = "synthetic.csv"
#: The schema a release holds next to its model (no excluded columns, no review notes).
RELEASED_SCHEMA = "domain.schema.yaml"


@dataclass(frozen=True)
class InputInfo:
    """What the load step learned about the private table (custodian-only: never released).

    Attributes:
        path: the file (or the directory or glob of a partitioned table).
        fingerprint: the ledger's content hash of the rows.
        sha256: hash of the file's bytes (for the custodian's manifest); for a partitioned
            table, of its files' names and sizes (hashing every byte would take a pass of its
            own).
        rows: the exact number of rows (private: for the custodian's manifest only).
        columns: column names.
    """

    path: str
    fingerprint: str
    sha256: str
    rows: int
    columns: tuple[str, ...]


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


def _partitions_digest(files: tuple[str, ...]) -> str:
    digest = hashlib.sha256(b"partitions\n")
    for name in files:
        digest.update(f"{name}\t{Path(name).stat().st_size}\n".encode())
    return digest.hexdigest()


def load_input(config: RunConfig, *, executor: Executor | None = None) -> InputInfo:
    """Read the private table: fingerprint, size and columns.

    A partitioned input (a directory or glob) is read one partition per task on ``executor``
    (a Dask cluster's; default: in turn, in this process) and checked against the schema on the
    way (:func:`privsynth_core.partitions.count_partitions`).

    Raises:
        InputFileError: the file is missing, unreadable or not a table; a partition is, or the
            partitions' columns disagree.
        SchemaError: a partition lacks columns of the schema.
    """
    from ..partitions import count_partitions, is_partitioned
    from ..table import fingerprint_frame, read_frame

    if is_partitioned(config.input):
        from ..schema import Schema

        counts = count_partitions(config.input, Schema.load(config.schema_path), executor=executor)
        return InputInfo(
            str(config.input),
            counts.fingerprint,
            _partitions_digest(counts.files),
            counts.raw_rows,
            counts.columns,
        )
    frame = read_frame(config.input)
    return InputInfo(
        str(config.input),
        fingerprint_frame(frame),
        file_sha256(config.input),
        frame.height,
        tuple(frame.columns),
    )


def validate_input(
    config: RunConfig, custodian_log: str | Path | None = None, *, executor: Executor | None = None
) -> list[str]:
    """Check the table against the schema file; return what conforming changes, as counts.

    A partitioned input is checked and conformed partition by partition on ``executor`` (see
    :func:`load_input`); its notes are the summed counts, and no per-value detail is collected
    (``custodian_log`` is not written).

    The columns of the schema must be in the data (else an error: the header is public
    metadata). In ``public`` mode, what conforming will do row by row (values read as missing,
    clamped, rows dropped) is counted; those counts and the strict check with example values
    go to ``custodian_log``, a file that stays with the custodian. The returned counts are for
    the custodian too (a terminal of theirs): they are derived from the rows outside any DP
    mechanism, so they never go to an orchestrator's log.

    Raises:
        SchemaError: columns of the schema are missing from the data.
    """
    from ..partitions import count_partitions, is_partitioned
    from ..schema import Schema
    from ..table import read_frame
    from ..validation import conform_report, validate

    schema = Schema.load(config.schema_path)
    if is_partitioned(config.input):
        counts = count_partitions(config.input, schema, executor=executor)
        return [] if config.domain == "dp" else counts.report.lines()
    frame = read_frame(config.input)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"{config.input} lacks columns of its schema {config.schema_path}:", missing
        )
    if config.domain == "dp":
        return []
    _, report = conform_report(frame, schema)
    notes = report.lines()
    if custodian_log is not None:
        detail = validate(frame, schema)
        if notes or detail:
            text = "".join(
                f"{line}\n"
                for line in [
                    "validation (custodian-only: counts and values of the private rows)",
                    *notes,
                    *detail,
                ]
            )
            atomic_write_text(custodian_log, text)
    return notes


def check_holdout(config: RunConfig, fingerprint: str) -> None:
    """Refuse a holdout that is the training table itself (its attacks would mean nothing)."""
    from ..partitions import is_partitioned

    # A partitioned input's fingerprint is of another kind (a multiset hash): not comparable.
    if config.holdout is None or is_partitioned(config.input):
        return
    from ..table import fingerprint_frame, read_frame

    if fingerprint_frame(read_frame(config.holdout)) == fingerprint:
        raise MetricError(
            f"the holdout {config.holdout} holds the same rows as the input; give "
            f"real rows that the generator never trains on"
        )


# -- domain -----------------------------------------------------------------------------------


def resolve_domain(
    config: RunConfig,
    destination: str | Path,
    *,
    run_id: str,
    executor: Executor | None = None,
) -> Path:
    """Fix the run's domain and write it (``schema.yaml`` + ``domain.json``) to ``destination``.

    ``public``: the declared schema (reviewed by a person); costs nothing. ``dp``: bounds and
    categories learned with DP mechanisms, each charged to the ledger under ``run_id`` before it
    runs. A domain already resolved at ``destination`` (the store's key covers the data and the
    settings) is reused and costs nothing more. A partitioned input's declared domain is
    checked and written without reading a row (its partitions were checked by load and
    validate); its DP domain is learned from counts summed over the partitions, read on
    ``executor`` (a Dask cluster's). Resolving holds the entry's lock
    (:func:`privsynth_core.store.exclusive_lock`), so processes resolving the same DP domain at
    once pay for it once: the others wait, then reuse it.

    Returns:
        The schema file.

    Raises:
        DomainError, SchemaError, BudgetNotSetError, BudgetExceededError.
    """
    from ..partitions import is_partitioned
    from ..privacy.domain import prepare_table
    from ..store import exclusive_lock

    refuse_partitioned_fit(config)
    destination = Path(destination)
    # The ledger first: in a fresh home it is created (with its marker) before any other state
    # exists, so the store's folders never make a first run look like a lost ledger.
    PrivacyLedger()
    if is_complete_domain(destination):
        return destination / SCHEMA_FILE
    with exclusive_lock(
        destination,
        what=f"the domain {destination.name[:12]} (another process is resolving the same domain)",
    ):
        if is_complete_domain(destination):  # resolved by the process we waited for
            return destination / SCHEMA_FILE
        remove_stale_siblings(destination)
        if is_partitioned(config.input):
            resolved = _partitioned_domain(config, run_id=run_id, executor=executor)
            with atomic_directory(destination, overwrite=True) as tmp:
                resolved.pop("schema").save(tmp / SCHEMA_FILE)
                (tmp / DOMAIN_RECORD).write_text(json.dumps(resolved, indent=2), encoding="utf-8")
            return destination / SCHEMA_FILE
        ledger = PrivacyLedger()
        table = prepare_table(
            config.input,
            schema_path=config.schema_path,
            domain=config.domain,
            domain_epsilon=config.domain_epsilon,
            domain_delta=config.domain_delta,
            ledger=ledger,
            run_id=run_id,
            source=config.source,
            parent_key=config.budget_key,
        )
        record: dict[str, Any] = {
            "mode": config.domain,
            "run_id": run_id,
            "parts": [{**p.public(), "ledger_entry": p.entry_id} for p in table.spent],
        }
        with atomic_directory(destination, overwrite=True) as tmp:
            table.schema.save(tmp / SCHEMA_FILE)
            (tmp / DOMAIN_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return destination / SCHEMA_FILE


def _partitioned_domain(
    config: RunConfig, *, run_id: str, executor: Executor | None
) -> dict[str, Any]:
    """A partitioned input's domain: declared (no row read: the partitions were checked by
    load and validate), or learned with DP from counts summed over the partitions
    (:func:`privsynth_core.privacy.domain.learn_domain_from_partitions`), charged as on one machine.
    Returns the domain record, with the schema under ``"schema"``."""
    from ..errors import DomainError
    from ..partitions import count_partitions
    from ..privacy.coupling import replayed
    from ..privacy.domain import checked_schema, learn_domain_from_partitions
    from ..privacy.ledger import budget_key

    schema = checked_schema(config.schema_path, config.domain)
    if config.domain != "dp":
        return {"mode": config.domain, "run_id": run_id, "parts": [], "schema": schema}
    if config.domain_epsilon is None:
        raise DomainError("learning the domain with DP needs --domain-epsilon (e.g. 0.1)")
    epsilon = config.domain_epsilon
    ledger = PrivacyLedger()
    extract = count_partitions(config.input, schema, executor=executor).fingerprint
    key = config.budget_key or budget_key(config.source, extract)
    first = max((e.entry_id for e in ledger.entries(key)), default=0)
    learned = replayed(
        "dp domain",
        lambda: learn_domain_from_partitions(
            config.input,
            schema,
            epsilon=epsilon,
            delta=config.domain_delta,
            ledger=ledger,
            fingerprint=key,
            run_id=run_id,
            executor=executor,
            extract=extract,  # the key was derived from this read: charge only that table
        ),
    )
    parts = [
        {
            **SpentPart("domain", e.mechanism, e.epsilon, e.delta, e.entry_id).public(),
            "ledger_entry": e.entry_id,
        }
        for e in ledger.entries(key)
        if e.entry_id > first and e.run_id == run_id and e.status == "spent"
    ]
    return {"mode": "dp", "run_id": run_id, "parts": parts, "schema": learned}


def domain_parts(schema_path: str | Path) -> list[SpentPart]:
    """The charged mechanisms the domain next to ``schema_path`` came from (custodian record)."""
    record = domain_record(schema_path)
    return [
        SpentPart(p["step"], p["mechanism"], p["epsilon"], p["delta"], p["ledger_entry"])
        for p in record.get("parts", [])
    ]


def domain_record(schema_path: str | Path) -> dict[str, Any]:
    """The ``domain.json`` written next to a schema by :func:`resolve_domain`."""
    data: dict[str, Any] = json.loads(
        (Path(schema_path).parent / DOMAIN_RECORD).read_text(encoding="utf-8")
    )
    return data


def refuse_partitioned_fit(config: RunConfig) -> None:
    """Refuse, before anything is read or charged, what a partitioned input cannot do yet.

    A partitioned input is fitted from counts summed over its partitions, or from its rows
    spooled one partition at a time for DP-SGD
    (:class:`~privsynth_core.partitions.PartitionedTable`), never loaded into one process, so
    the generator must declare ``fits_from_partitions`` (today every DP generator; not the
    non-DP ``ctgan``). A DP domain
    is learned from partitions too, but only for a fit that can follow: nothing is charged
    for a run whose fit would be refused.

    Raises:
        ConfigError: ``config.input`` is partitioned and the generator cannot fit from
            partitions.
    """
    from ..generator import partitioned_refusal
    from ..partitions import is_partitioned
    from ..registry import generators

    if not is_partitioned(config.input):
        return
    if not generators().get(config.generator).fits_from_partitions:
        raise ConfigError(
            f"{config.input} is a partitioned table: " + partitioned_refusal(config.generator)
        )


# -- fit and sample ---------------------------------------------------------------------------


def model_store_entry(config: RunConfig, fingerprint: str, schema_path: str | Path) -> Path:
    """Where the store keeps the model of this fit: one folder per (data, fit settings, seed,
    domain), holding ``model/`` (releasable) and ``fit.json`` (custodian-only)."""
    return cache_dir() / "models" / fit_key(config, fingerprint, schema_path)


def fit_model(
    config: RunConfig,
    schema_path: str | Path,
    *,
    run_id: str,
    checkpoint_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> Path:
    """Train the configured generator on the table under ``schema_path`` into the model store.

    A partitioned input is fitted from partitions (:class:`~privsynth_core.partitions.
    PartitionedTable`, read on ``executor``) by a generator that declares
    ``fits_from_partitions``; any other is refused first (:func:`refuse_partitioned_fit`).

    A fit is paid for once per (data, settings with seed, domain), whoever runs it and however
    (:mod:`privsynth_core.store`):

    - a complete model in the store is returned as it is: its ``fit.json`` names the ledger
      entries it was paid by, and it is never trained or charged again;
    - otherwise the entry's lock is taken for the whole train-and-save: a second identical fit
      waits, then returns the model the first one saved;
    - holding the lock, an open reservation of the same fit (its attempt died, or failed after
      reserving) is refused with :class:`~privsynth_core.store.UnfinishedFitError` instead of
      paying again, unless ``checkpoint_dir`` holds that attempt's checkpoints (a resume);
    - then the generator releases (or reuses) the row count, reserves its target with the store
      key in the entry's params, trains, settles, and is saved atomically with its custodian
      record.

    Returns:
        The model directory (``<store entry>/model``).

    Raises:
        UnfinishedFitError, ConfigError, DomainError, BudgetNotSetError, BudgetExceededError,
        GeneratorError.
    """
    from ..partitions import PartitionedTable, is_partitioned
    from ..privacy.checkpoint import CheckpointStore
    from ..schema import Schema
    from ..service import create_generator, fit_generator
    from ..store import CHECKPOINTS_PARAM, FIT_KEY_PARAM, check_unfinished, exclusive_lock
    from ..table import Table

    refuse_partitioned_fit(config)
    if is_partitioned(config.input):
        # Sizes and fingerprint in one pass; the generator's counts in another, on the cluster.
        table: Table = PartitionedTable.load(
            config.input, Schema.load(schema_path), source=config.source, executor=executor
        )
    else:
        table = Table.load(config.input, Schema.load(schema_path), source=config.source)
    # An extract of a larger file spends that file's budget (the configuration's budget key).
    table.parent_key = config.budget_key
    entry = model_store_entry(config, table.fingerprint(), schema_path)
    PrivacyLedger()  # before the store's lock files (see resolve_domain)
    if is_complete_model(entry / MODEL_SUBDIR):
        return entry / MODEL_SUBDIR
    with exclusive_lock(
        entry,
        what=f"the model {entry.name[:12]} (another process is training "
        f"the same model; it is reused when saved)",
    ):
        if is_complete_model(entry / MODEL_SUBDIR):  # saved by the process we waited for
            return entry / MODEL_SUBDIR
        ledger = PrivacyLedger()
        check_unfinished(ledger, table.budget_key(), entry.name, checkpoint_dir=checkpoint_dir)
        remove_stale_siblings(entry)
        table.spent = domain_parts(schema_path)
        generator = create_generator(config.generator, config.params, accountant=config.accountant)
        params: dict[str, Any] = {FIT_KEY_PARAM: entry.name}
        if checkpoint_dir is not None:
            params[CHECKPOINTS_PARAM] = str(checkpoint_dir)
        fit_generator(
            table,
            generator,
            epsilon=config.epsilon,
            delta=config.delta,
            ledger=ledger,
            run_id=run_id,
            progress=progress,
            ledger_params=params,
            checkpoints=CheckpointStore(checkpoint_dir) if checkpoint_dir else None,
        )
        summary = generator.fit_summary
        assert summary is not None
        with atomic_directory(entry, overwrite=True) as tmp:
            generator.save(tmp / MODEL_SUBDIR)
            Schema.load(schema_path).save_release(tmp / MODEL_SUBDIR / RELEASED_SCHEMA)
            record = {
                "config_hash": config.fit_hash(),
                FIT_KEY_PARAM: entry.name,
                "ledger_id": ledger.ledger_id,
                **summary.custodian_dict(),
                "noisy_rows": summary.noisy_rows,
            }
            (tmp / FIT_RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return entry / MODEL_SUBDIR


def fit_reused(model_dir: str | Path, run_id: str) -> bool:
    """Whether the stored model was trained (and paid for) by another run than ``run_id``."""
    return bool(fit_record(model_dir).get("run_id") != run_id)


def fit_record(model_dir: str | Path) -> dict[str, Any]:
    """The custodian record of a stored model (ledger entries, fingerprint, timing)."""
    data: dict[str, Any] = json.loads((Path(model_dir).parent / FIT_RECORD).read_text("utf-8"))
    return data


def sample_synthetic(
    model_dir: str | Path, rows: int | None, *, seed: int, destination: str | Path
) -> Path:
    """Sample rows from the saved model into a CSV file (post-processing: free).

    ``rows`` defaults to the released row count n̂ the model was fitted with (never the exact
    size of the private table).
    """
    from ..registry import load_model

    generator = load_model(model_dir)
    count = rows or default_rows(generator)
    frame = generator.sample(count, seed=seed)
    return atomic_write(destination, frame.write_csv)


def default_rows(generator: Generator[Any]) -> int:
    """The default number of synthetic rows of a fitted model: its released row count n̂.

    Raises:
        ConfigError: the model has no released count (a non-DP model): give the rows.
    """
    from ..errors import ConfigError
    from ..privacy.count import default_sample_rows

    summary = generator.fit_summary
    if summary is None or not summary.noisy_rows:
        raise ConfigError(
            "this model carries no released row count (it is not a DP model, or "
            "was saved by an older privsynth): say how many rows to sample"
        )
    return default_sample_rows(summary.noisy_rows)


# -- evaluate and report ----------------------------------------------------------------------


def metric_plan(config: RunConfig) -> list[tuple[str, bool]]:
    """The metrics to compute as ``(metric id, required)``: the configured ones (required),
    or every registered metric (skipped when its inputs are missing)."""
    from ..registry import metrics

    if config.metrics is not None:
        return [(metric_id, True) for metric_id in config.metrics]
    return [(metric_id, False) for metric_id in metrics().names()]


def _evaluation_inputs(
    config: RunConfig,
    schema_path: str | Path,
    synthetic_path: str | Path,
    executor: Executor | None = None,
) -> dict[str, Any]:
    from ..schema import Schema
    from ..table import read_frame

    real, sample = real_rows(config, executor=executor)
    return {
        "real": real,
        "real_sample": sample,
        "synthetic": read_frame(synthetic_path),
        "schema": Schema.load(schema_path),
        "holdout": read_frame(config.holdout) if config.holdout else None,
    }


def real_rows(
    config: RunConfig, *, executor: Executor | None = None
) -> tuple[Any, dict[str, Any] | None]:
    """The real rows the metrics read, and what sample they are (None: the whole table).

    A single file is read whole. A partitioned input is never loaded: the metrics read a
    uniform sample of ``config.eval_sample_rows`` rows (default
    :data:`~privsynth_core.partitions.DEFAULT_EVAL_SAMPLE_ROWS`) drawn on ``executor``, seeded
    by the run's seed (the evaluation is custodian-only and not DP), and the report says so.
    """
    from ..partitions import (
        DEFAULT_EVAL_SAMPLE_ROWS,
        discover_partitions,
        is_partitioned,
        partition_rows,
        sample_partitions,
    )
    from ..table import read_frame

    if not is_partitioned(config.input):
        return read_frame(config.input), None
    files = [str(p) for p in discover_partitions(config.input)]
    rows = partition_rows(files, executor)
    size = config.eval_sample_rows or DEFAULT_EVAL_SAMPLE_ROWS
    frame = sample_partitions(
        files, rows, size, columns=_header(files[0]), seed=config.seed, executor=executor
    )
    return frame, {
        "rows": frame.height,
        "requested": size,
        "partitions": len(files),
        "population_rows": sum(rows),
        "uniform": True,
    }


def _header(path: str) -> list[str]:
    import polars as pl

    from ..table import read_frame

    if path.lower().endswith((".parquet", ".pq")):
        return list(pl.scan_parquet(path).collect_schema().names())
    return read_frame(path).columns


def evaluate_metric(
    config: RunConfig,
    schema_path: str | Path,
    synthetic_path: str | Path,
    model_dir: str | Path,
    metric_id: str,
    *,
    required: bool,
    executor: Executor | None = None,
) -> EvaluationResult:
    """Compute one metric (with its reference points) on the real and synthetic tables.

    A metric that is not ``required`` and cannot run on these inputs comes back as skipped.
    The result reads the real data: it is NOT covered by the DP guarantee.

    Raises:
        MetricError: a required metric cannot run.
    """
    from ..evaluation.results import EvaluationResult, SkippedMetric
    from ..evaluation.runner import evaluate, load_manifest

    inputs = _evaluation_inputs(config, schema_path, synthetic_path, executor)
    inputs.pop("real_sample")
    try:
        return evaluate(
            **inputs,
            metric_ids=[metric_id],
            target=config.target,
            manifest=load_manifest(model_dir),
            seed=config.seed,
        )
    except MetricError as exc:
        if required:
            raise
        return EvaluationResult([], [], {}, [SkippedMetric(metric_id, str(exc))], None, {})


def merge_evaluations(parts: list[EvaluationResult]) -> EvaluationResult:
    """One evaluation from per-metric ones (results in the order of ``parts``)."""
    from ..evaluation.results import EvaluationResult

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


def write_report(
    config: RunConfig,
    schema_path: str | Path,
    synthetic_path: str | Path,
    model_dir: str | Path,
    parts: list[EvaluationResult],
    destination: str | Path,
    *,
    executor: Executor | None = None,
) -> Path:
    """Write ``metrics.json`` and ``report.html`` (custodian-only, NOT DP) to ``destination``.

    For a partitioned input the report states the sample the metrics read
    (``inputs.real_sample``: its size, of how many rows in how many partitions).
    """
    from ..evaluation.report_html import write_report as write_html
    from ..evaluation.runner import load_manifest, type_frame

    evaluation = merge_evaluations(parts)
    inputs = _evaluation_inputs(config, schema_path, synthetic_path, executor)
    schema = inputs["schema"]
    if not evaluation.inputs:  # no metric ran (e.g. `metrics: []`)
        holdout_frame = inputs["holdout"]
        evaluation.inputs = {
            "columns": schema.names,
            "target": config.target,
            "seed": config.seed,
            "real_rows": inputs["real"].height,
            "synthetic_rows": inputs["synthetic"].height,
            "holdout_rows": None if holdout_frame is None else holdout_frame.height,
        }
    if inputs["real_sample"] is not None:
        evaluation.inputs["real_sample"] = inputs["real_sample"]
    holdout = inputs["holdout"]
    write_html(
        evaluation,
        Path(destination),
        real=type_frame(inputs["real"], schema, "real"),
        synthetic=type_frame(inputs["synthetic"], schema, "synthetic"),
        holdout=type_frame(holdout, schema, "holdout") if holdout is not None else None,
        schema=schema,
        target=config.target,
        manifest=load_manifest(model_dir),
        seed=config.seed,
        overwrite=True,
    )
    atomic_write_text(
        Path(destination) / "metrics.json",
        json.dumps(evaluation.to_dict(), indent=2, ensure_ascii=False),
    )
    return Path(destination)


def headline_rows(report_dir: str | Path) -> list[dict[str, Any]]:
    """The headline scores of a written report (metric, value, verdict), from metrics.json."""
    data = json.loads((Path(report_dir) / "metrics.json").read_text(encoding="utf-8"))
    return [
        {
            "metric_id": h["metric_id"],
            "name": h["name"],
            "group": h["group"],
            "value": h["value"],
            "verdict": h.get("verdict", "unknown"),
        }
        for h in data.get("headline", [])
    ]


def new_run_id() -> str:
    """A fresh run id."""
    return uuid.uuid4().hex


__all__ = [
    "FIT_RECORD",
    "MODEL_SUBDIR",
    "RELEASED_SCHEMA",
    "InputInfo",
    "cache_dir",
    "check_holdout",
    "default_rows",
    "domain_key",
    "domain_parts",
    "domain_record",
    "evaluate_metric",
    "file_sha256",
    "fit_key",
    "fit_model",
    "fit_record",
    "fit_reused",
    "headline_rows",
    "is_complete_domain",
    "is_complete_model",
    "load_input",
    "merge_evaluations",
    "metric_plan",
    "model_store_entry",
    "new_run_id",
    "real_rows",
    "refuse_partitioned_fit",
    "resolve_domain",
    "sample_synthetic",
    "validate_input",
    "write_report",
]
