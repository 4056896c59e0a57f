"""Run directories: the work area of a run in progress, the manifests, and the atomic publish.

A run writes to ``RUN_DIR`` (the config's ``output_dir``) only at the very end, in one atomic
step: until then everything lives in the hidden work area ``.<RUN_DIR name>.work/`` beside it
(the run's state, the synthetic table and report being written, training checkpoints). A run
killed at any point therefore leaves ``RUN_DIR`` as it was (absent, or the previous complete
run) and no half-written output; ``privsynth run --resume RUN_DIR`` finds the work area and
continues. A published run directory holds two folders, kept apart because only one may leave::

    release/          what may be shared (nothing in it is computed from the rows outside a
      synthetic.csv     charged mechanism: see privsynth_core.privacy.release)
      model/            the trained generator, its manifest and the released schema
      release.json      the end-to-end guarantee (domain + row count + training, with parts)
    custodian/        NOT for release: computed on the real data
      manifest.json     config, input hash and exact row count, timings, ledger entries
      schema.yaml       the run's full schema (with excluded columns)
      report/           report.html + metrics.json (NOT DP)
      validation.log    what conforming the data changed, with example values (if anything)

:func:`run_pipeline` runs every step in sequence with no orchestrator (no retries), reusing the
model store like the flows do. One run at a time writes a run directory: a run holds it
(:func:`claim_run_dir`) from :func:`begin_run` to :func:`publish_run`, and a second run of the
same directory waits for the first. Both remove the temporary siblings that killed writers left
beside the run directory (:func:`privsynth_core.fileio.remove_stale_siblings`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InputFileError
from ..fileio import atomic_directory, atomic_write_text, remove_stale_siblings
from ..privacy.release import CUSTODIAN_DIR, RELEASE_DIR, RELEASE_MANIFEST
from .pipeline import (
    SYNTHETIC_FILE,
    InputInfo,
    domain_record,
    file_sha256,
    headline_rows,
)

if TYPE_CHECKING:
    from .config import RunConfig

RUN_MANIFEST = "manifest.json"
RUN_KIND = "privsynth-run"
STATE_FILE = "run.json"
CHECKPOINTS_DIR = "checkpoints"
VALIDATION_LOG = "validation.log"
NOT_DP_LABEL = "computed on real data: not DP, custodian-only"
_VERSIONED = (
    "privsynth",
    "polars",
    "numpy",
    "pydantic",
    "torch",
    "opacus",
    "prefect",
    "prefect-dask",
    "sdv",
    "evidently",
    "opendp",
)


def work_dir_for(run_dir: str | Path) -> Path:
    """The hidden work area of the run that publishes ``run_dir``."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.work"


@contextmanager
def claim_run_dir(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir`` for one run, from :func:`begin_run` to :func:`publish_run`.

    Runs that publish the same directory take turns: a second one waits for the first (and
    then reuses its model from the store) instead of discarding the first one's work area under
    it. The hold is an OS lock (:func:`privsynth_core.store.exclusive_lock`), released when
    the block ends or the process dies; so a work area found while holding it has no live
    owner.
    """
    from ..privacy.ledger import PrivacyLedger
    from ..store import exclusive_lock

    # The ledger before the lock file: in a fresh home it is created (with its marker) before
    # any other state, so a first run under $PRIVSYNTH_HOME/runs never looks like a lost ledger.
    PrivacyLedger()
    with exclusive_lock(run_dir, what=f"the run directory {run_dir} (another run is writing it)"):
        yield


def _interrupted_reservation(work: Path) -> str | None:
    """Why an interrupted run's work area must be kept: its training reservation is still open
    and its checkpoints can resume it (None when it can be discarded)."""
    from ..errors import BudgetError
    from ..privacy.ledger import PrivacyLedger
    from ..store import describe_reservations, resumable_entry

    entry_id = resumable_entry(work / CHECKPOINTS_DIR)
    if entry_id is None:
        return None
    try:
        entry = PrivacyLedger().entry(entry_id)
    except BudgetError:
        return None
    return describe_reservations([entry]) if entry.status == "reserved" else None


def begin_run(config: RunConfig, *, resume: bool = False) -> tuple[str, Path]:
    """Open the run's work area; return ``(run_id, work_dir)``. Call it inside
    :func:`claim_run_dir`.

    Stale temporary siblings of the run directory (left by killed writers) are removed first.
    Without ``resume``, an interrupted run's work area is discarded (its ledger reservations
    stay counted), unless its checkpoints can still resume a training whose reservation is open:
    that is refused, so the only way on is ``--resume`` or a custodian's close, never a second
    payment. With ``resume``, its run id is reused, so its checkpoints are picked up.

    Raises:
        ConfigError: ``resume`` was asked for a different configuration.
        UnfinishedFitError: an interrupted run's training can still be resumed.
    """
    from ..store import UnfinishedFitError
    from .pipeline import new_run_id

    remove_stale_siblings(config.output_dir)
    work = work_dir_for(config.output_dir)
    state_path = work / STATE_FILE
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state["config_hash"] != config.config_hash():
            raise ConfigError(
                f"the interrupted run in {work} used another configuration; "
                f"resume it with `privsynth run --resume {config.output_dir}` "
                f"alone, or start afresh without --resume"
            )
        return str(state["run_id"]), work
    if work.exists():
        reason = _interrupted_reservation(work)
        if reason is not None:
            raise UnfinishedFitError(
                f"an earlier run writing {config.output_dir} was interrupted mid-training and "
                f"its work area is kept:\n{reason}",
                [],
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    run_id = new_run_id()
    atomic_write_text(
        state_path,
        json.dumps(
            {
                "run_id": run_id,
                "config_hash": config.config_hash(),
                "config": config.model_dump(mode="json"),
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
                "owner": {"pid": os.getpid(), "host": socket.gethostname()},
            },
            indent=2,
        ),
    )
    return run_id, work


def interrupted_config(run_dir: str | Path) -> RunConfig:
    """The configuration of the interrupted run that would have published ``run_dir``.

    Raises:
        InputFileError: there is no interrupted run for ``run_dir``.
    """
    from .config import run_config_from_dict

    state_path = work_dir_for(run_dir) / STATE_FILE
    if not state_path.is_file():
        raise InputFileError(
            f"no interrupted run found for {run_dir} (no {state_path}); "
            f"give the run directory an interrupted `privsynth run` was writing"
        )
    state = json.loads(state_path.read_text(encoding="utf-8"))
    return run_config_from_dict(state["config"], source=state_path)


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class RunResult:
    """A published run.

    Attributes:
        run_dir: the run directory.
        manifest: its custodian manifest (NOT for release).
        release: its release manifest (shareable).
        headlines: headline scores (custodian-only: computed on real data, NOT DP).
    """

    run_dir: Path
    manifest: dict[str, Any]
    release: dict[str, Any] = field(default_factory=dict)
    headlines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def release_dir(self) -> Path:
        """What may leave the custodian."""
        return self.run_dir / RELEASE_DIR

    @property
    def custodian_dir(self) -> Path:
        """What must not."""
        return self.run_dir / CUSTODIAN_DIR

    @property
    def report(self) -> Path:
        """The custodian-only report page."""
        return self.custodian_dir / "report" / "report.html"

    @property
    def epsilon(self) -> float | None:
        """End-to-end epsilon of the release (domain + row count + training), None if not DP."""
        value = self.release["privacy"].get("epsilon")
        return None if value is None else float(value)


def custodian_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The custodian manifest of a published run.

    Raises:
        InputFileError: ``run_dir`` is not a published privsynth run.
    """
    path = Path(run_dir) / CUSTODIAN_DIR / RUN_MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise InputFileError(
            f"{run_dir} is not a published privsynth run (no readable "
            f"{CUSTODIAN_DIR}/{RUN_MANIFEST})"
        ) from None
    return data


def build_release_manifest(
    config: RunConfig, *, model_dir: Path, release_id: str
) -> dict[str, Any]:
    """The release manifest: what was released and its end-to-end guarantee, nothing else.

    Every field is public (the settings, versions), random (the id), or the output of a charged
    mechanism; the totals are the model's (domain + row count + training).
    """
    from ..privacy.release import RELEASE_KIND, release_date

    model = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    private = bool(model.get("differentially_private"))
    return {
        "kind": RELEASE_KIND,
        "format_version": 1,
        "release_id": release_id,
        "created": release_date(),
        "generator": config.generator,
        "params": config.params,
        "target": {
            "epsilon": config.epsilon,
            "delta": config.delta,
            "accountant": config.accountant if private else None,
        },
        "privacy": model["privacy"]
        if private
        else {"label": "NOT differentially private: do not release these outputs"},
        "differentially_private": private,
        "outputs": {"synthetic": SYNTHETIC_FILE, "model": "model"},
        "versions": _versions(),
    }


def build_manifest(
    config: RunConfig,
    *,
    run_id: str,
    release_id: str,
    info: InputInfo,
    schema_path: Path,
    model_dir: Path,
    synthetic_path: Path,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The custodian manifest: what was run, on what, what it spent (with ledger entries)."""
    from .pipeline import fit_record

    fit = fit_record(model_dir)
    domain = domain_record(schema_path)
    return {
        "kind": RUN_KIND,
        "format_version": 2,
        "name": config.label,
        "run_id": run_id,
        "release_id": release_id,
        "label": NOT_DP_LABEL,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": config.seed,
        "config": config.model_dump(mode="json"),
        "config_hash": config.config_hash(),
        "fit_hash": config.fit_hash(),
        "dataset": {
            "fingerprint": info.fingerprint,
            "input_sha256": info.sha256,
            "rows": info.rows,
            "noisy_rows": fit.get("noisy_rows"),
            "source": config.source,
        },
        "domain": {
            "mode": domain["mode"],
            "charged_by_run": domain["run_id"],
            "schema_sha256": file_sha256(schema_path),
        },
        "spent": fit.get("spent", []),
        "fit": {
            "run_id": fit.get("run_id"),
            "ledger_entry": fit.get("ledger_entry_id"),
            "wall_seconds": fit.get("wall_seconds"),
            "reused_from_store": fit.get("run_id") != run_id,
        },
        "outputs": {
            "synthetic_sha256": file_sha256(synthetic_path),
            "model_manifest_sha256": file_sha256(model_dir / "manifest.json"),
            "report": "report/report.html",
        },
        "versions": _versions(),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def _replaceable(run_dir: Path) -> bool:
    """A run directory may be replaced only by another run (a nightly refresh)."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return True
    try:
        return custodian_manifest(run_dir).get("kind") == RUN_KIND
    except InputFileError:
        return False


def check_output_dir(config: RunConfig) -> None:
    """Refuse, before any work, an output directory that holds something other than a run.

    Raises:
        InputFileError: ``output_dir`` is a file, or a non-empty folder that is not a run.
    """
    if not _replaceable(Path(config.output_dir)):
        raise InputFileError(
            f"{config.output_dir} exists and is not a privsynth run directory; "
            f"choose another output_dir (a previous run there is replaced)"
        )


def publish_run(
    config: RunConfig,
    *,
    run_id: str,
    info: InputInfo,
    schema_path: str | Path,
    model_dir: str | Path,
    synthetic_path: str | Path,
    report_dir: str | Path,
    timings: dict[str, float],
) -> RunResult:
    """Assemble the run directory (``release/`` and ``custodian/``) in one atomic step, then
    drop the work area.

    Raises:
        InputFileError: ``output_dir`` holds something other than a privsynth run.
    """
    import uuid

    check_output_dir(config)
    run_dir = Path(config.output_dir)
    remove_stale_siblings(run_dir)
    model_dir, schema_path = Path(model_dir), Path(schema_path)
    release_id = uuid.uuid4().hex
    release = build_release_manifest(config, model_dir=model_dir, release_id=release_id)
    manifest = build_manifest(
        config,
        run_id=run_id,
        release_id=release_id,
        info=info,
        schema_path=schema_path,
        model_dir=model_dir,
        synthetic_path=Path(synthetic_path),
        timings=timings,
    )
    log = work_dir_for(run_dir) / VALIDATION_LOG
    with atomic_directory(run_dir, overwrite=True) as tmp:
        shared, kept = tmp / RELEASE_DIR, tmp / CUSTODIAN_DIR
        shared.mkdir()
        kept.mkdir()
        shutil.copy2(synthetic_path, shared / SYNTHETIC_FILE)
        shutil.copytree(model_dir, shared / "model")
        (shared / RELEASE_MANIFEST).write_text(json.dumps(release, indent=2), encoding="utf-8")
        shutil.copytree(report_dir, kept / "report")
        shutil.copy2(schema_path, kept / "schema.yaml")
        if log.is_file():
            shutil.copy2(log, kept / VALIDATION_LOG)
        # The custodian manifest goes in last: a run directory with it is complete.
        (kept / RUN_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.rmtree(work_dir_for(run_dir), ignore_errors=True)
    return RunResult(run_dir, manifest, release, headline_rows(run_dir / CUSTODIAN_DIR / "report"))


def run_pipeline(config: RunConfig) -> RunResult:
    """Run every step in sequence with no orchestrator: no retries, one process.

    Training goes through the model store, so a second identical run reuses the model instead
    of paying again, exactly as the flows do; two runs of one run directory take turns
    (:func:`claim_run_dir`).
    """
    from . import pipeline as p

    check_output_dir(config)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def tick(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[step] = now - clock
        clock = now

    with claim_run_dir(config.output_dir):
        run_id, work = begin_run(config)
        info = p.load_input(config)
        tick("load")
        p.validate_input(config, work / VALIDATION_LOG)
        p.check_holdout(config, info.fingerprint)
        tick("validate")
        schema = p.resolve_domain(
            config,
            p.cache_dir() / "domains" / p.domain_key(config, info.fingerprint),
            run_id=run_id,
        )
        tick("domain")
        model = p.fit_model(config, schema, run_id=run_id, checkpoint_dir=work / CHECKPOINTS_DIR)
        tick("fit")
        synthetic = p.sample_synthetic(
            model, config.rows, seed=config.seed, destination=work / SYNTHETIC_FILE
        )
        tick("sample")
        parts = [
            p.evaluate_metric(config, schema, synthetic, model, metric_id, required=required)
            for metric_id, required in p.metric_plan(config)
        ]
        tick("evaluate")
        report = p.write_report(config, schema, synthetic, model, parts, work / "report")
        tick("report")
        result = publish_run(
            config,
            run_id=run_id,
            info=info,
            schema_path=schema,
            model_dir=model,
            synthetic_path=synthetic,
            report_dir=report,
            timings=timings,
        )
        tick("publish")
    return result


__all__ = [
    "CHECKPOINTS_DIR",
    "NOT_DP_LABEL",
    "RUN_MANIFEST",
    "VALIDATION_LOG",
    "RunResult",
    "begin_run",
    "build_manifest",
    "build_release_manifest",
    "check_output_dir",
    "claim_run_dir",
    "custodian_manifest",
    "interrupted_config",
    "publish_run",
    "run_pipeline",
    "work_dir_for",
]
