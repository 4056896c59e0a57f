"""Run directories: the work area of a run in progress, the manifest, and the atomic publish.

A run writes to ``RUN_DIR`` (the config's ``output_dir``) only at the very end, in one atomic
step: until then everything lives in the hidden work area ``.<RUN_DIR name>.work/`` beside it
(the run's state, the synthetic table and report being written, training checkpoints). A run
killed at any point therefore leaves ``RUN_DIR`` as it was (absent, or the previous complete
run) and no half-written output; ``privsynth run --resume RUN_DIR`` finds the work area and
continues. A published run directory holds::

    manifest.json     config, hashes, versions, epsilon spent by step, domain mode, seed
    synthetic.csv     the synthetic table (shareable)
    model/            the trained generator (shareable: DP post-processing)
    report/           report.html + metrics.json (custodian-only: NOT DP)

:func:`run_pipeline` runs every step in sequence with no orchestrator (no caching, no retries):
the baseline the Prefect flows are measured against.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputFileError
from .fileio import atomic_directory, atomic_write_text
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
NOT_DP_LABEL = "computed on real data: not DP, custodian-only"
_VERSIONED = ("privsynth", "polars", "numpy", "pydantic", "torch", "opacus", "prefect",
              "prefect-dask", "sdv", "evidently")


def work_dir_for(run_dir: str | Path) -> Path:
    """The hidden work area of the run that publishes ``run_dir``."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.work"


def begin_run(config: RunConfig, *, resume: bool = False) -> tuple[str, Path]:
    """Open the run's work area; return ``(run_id, work_dir)``.

    Without ``resume``, an interrupted run's work area is discarded (its ledger reservations
    stay counted). With ``resume``, its run id is reused, so its checkpoints are picked up.

    Raises:
        ConfigError: ``resume`` was asked for a different configuration.
    """
    from .pipeline import new_run_id

    work = work_dir_for(config.output_dir)
    state_path = work / STATE_FILE
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state["config_hash"] != config.config_hash():
            raise ConfigError(f"the interrupted run in {work} used another configuration; "
                              f"resume it with `privsynth run --resume {config.output_dir}` "
                              f"alone, or start afresh without --resume")
        return str(state["run_id"]), work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    run_id = new_run_id()
    atomic_write_text(state_path, json.dumps(
        {"run_id": run_id, "config_hash": config.config_hash(),
         "config": config.model_dump(mode="json"),
         "started": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2))
    return run_id, work


def interrupted_config(run_dir: str | Path) -> RunConfig:
    """The configuration of the interrupted run that would have published ``run_dir``.

    Raises:
        InputFileError: there is no interrupted run for ``run_dir``.
    """
    from .config import run_config_from_dict

    state_path = work_dir_for(run_dir) / STATE_FILE
    if not state_path.is_file():
        raise InputFileError(f"no interrupted run found for {run_dir} (no {state_path}); "
                             f"give the run directory an interrupted `privsynth run` was writing")
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
        manifest: its manifest (shareable).
        headlines: headline scores (custodian-only: computed on real data, NOT DP).
        report: the report page.
    """

    run_dir: Path
    manifest: dict[str, Any]
    headlines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def report(self) -> Path:
        """The custodian-only report page."""
        return self.run_dir / "report" / "report.html"

    @property
    def epsilon(self) -> float | None:
        """Epsilon of the released outputs (domain + training), None for a non-DP run."""
        value = self.manifest["privacy"]["epsilon"]
        return None if value is None else float(value)


def build_manifest(config: RunConfig, *, run_id: str, info: InputInfo, schema_path: Path,
                   model_dir: Path, synthetic_path: Path,
                   timings: dict[str, float]) -> dict[str, Any]:
    """The run manifest: what was run, on what, with which versions, and what it spent."""
    domain = domain_record(schema_path)
    model = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    fit = model.get("fit", {})
    private = bool(model.get("differentially_private"))
    steps = [
        {"step": "domain", "mode": domain["mode"], "epsilon": domain["epsilon"],
         "delta": domain["delta"], "charged_by_this_run": domain["run_id"] == run_id
         and domain["mode"] == "dp", "ledger_entries": domain["ledger_entries"]},
        {"step": "fit", "generator": config.generator, "epsilon": fit.get("epsilon"),
         "delta": fit.get("delta"), "accountant": fit.get("accountant_id"),
         "charged_by_this_run": fit.get("run_id") == run_id,
         "ledger_entries": [fit.get("ledger_entry_id")]},
        {"step": "sample", "epsilon": 0.0, "delta": 0.0,
         "note": "post-processing of the DP model: costs nothing"},
        {"step": "evaluate+report", "epsilon": None, "delta": None,
         "note": f"{NOT_DP_LABEL}; not part of the release"},
    ]
    total_eps = (domain["epsilon"] + (fit.get("epsilon") or 0.0)) if private else None
    total_delta = (domain["delta"] + (fit.get("delta") or 0.0)) if private else None
    return {
        "kind": RUN_KIND, "format_version": 1, "name": config.label, "run_id": run_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "seed": config.seed,
        "config": config.model_dump(mode="json"), "config_hash": config.config_hash(),
        "fit_hash": config.fit_hash(),
        "dataset": {"fingerprint": info.fingerprint, "input_sha256": info.sha256,
                    "rows": info.rows},
        "domain": {"mode": domain["mode"], "schema_sha256": file_sha256(schema_path)},
        "privacy": {"differentially_private": private, "epsilon": total_eps,
                    "delta": total_delta, "by_step": steps,
                    "label": None if private else "NOT differentially private"},
        "outputs": {"synthetic": {"path": SYNTHETIC_FILE, "sha256": file_sha256(synthetic_path)},
                    "model": {"path": "model",
                              "manifest_sha256": file_sha256(model_dir / "manifest.json")},
                    "report": {"path": "report/report.html", "label": NOT_DP_LABEL}},
        "versions": _versions(),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def _replaceable(run_dir: Path) -> bool:
    """A run directory may be replaced only by another run (a nightly refresh)."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return True
    manifest = run_dir / RUN_MANIFEST
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("kind") == RUN_KIND)
    except (OSError, ValueError):
        return False


def check_output_dir(config: RunConfig) -> None:
    """Refuse, before any work, an output directory that holds something other than a run.

    Raises:
        InputFileError: ``output_dir`` is a file, or a non-empty folder that is not a run.
    """
    if not _replaceable(Path(config.output_dir)):
        raise InputFileError(f"{config.output_dir} exists and is not a privsynth run directory; "
                             f"choose another output_dir (a previous run there is replaced)")


def publish_run(config: RunConfig, *, run_id: str, info: InputInfo, schema_path: str | Path,
                model_dir: str | Path, synthetic_path: str | Path, report_dir: str | Path,
                timings: dict[str, float]) -> RunResult:
    """Assemble the run directory in one atomic step, then drop the work area.

    Raises:
        InputFileError: ``output_dir`` holds something other than a privsynth run.
    """
    check_output_dir(config)
    run_dir = Path(config.output_dir)
    manifest = build_manifest(config, run_id=run_id, info=info, schema_path=Path(schema_path),
                              model_dir=Path(model_dir), synthetic_path=Path(synthetic_path),
                              timings=timings)
    with atomic_directory(run_dir, overwrite=True) as tmp:
        shutil.copy2(synthetic_path, tmp / SYNTHETIC_FILE)
        shutil.copytree(model_dir, tmp / "model")
        shutil.copytree(report_dir, tmp / "report")
        shutil.copy2(schema_path, tmp / "model" / "domain.schema.yaml")
        # The manifest goes in last: a run directory with a manifest is complete.
        (tmp / RUN_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    shutil.rmtree(work_dir_for(run_dir), ignore_errors=True)
    return RunResult(run_dir, manifest, headline_rows(run_dir / "report"))


def run_pipeline(config: RunConfig) -> RunResult:
    """Run every step in sequence with no orchestrator: no caching, no retries, one process.

    Each call spends the budget again (the flows cache training; this does not).
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

    run_id, work = begin_run(config)
    info = p.load_input(config)
    tick("load")
    p.validate_input(config)
    p.check_holdout(config, info.fingerprint)
    tick("validate")
    schema = p.resolve_domain(config, work / "domain", run_id=run_id)
    tick("domain")
    model = p.fit_model(config, schema, work / "model", run_id=run_id,
                        checkpoint_dir=work / "checkpoints")
    tick("fit")
    synthetic = p.sample_synthetic(model, config.rows or info.rows, seed=config.seed,
                                   destination=work / SYNTHETIC_FILE)
    tick("sample")
    parts = [p.evaluate_metric(config, schema, synthetic, model, metric_id, required=required)
             for metric_id, required in p.metric_plan(config)]
    tick("evaluate")
    report = p.write_report(config, schema, synthetic, model, parts, work / "report")
    tick("report")
    result = publish_run(config, run_id=run_id, info=info, schema_path=schema, model_dir=model,
                         synthetic_path=synthetic, report_dir=report, timings=timings)
    tick("publish")
    return result


__all__ = [
    "NOT_DP_LABEL",
    "RUN_MANIFEST",
    "RunResult",
    "begin_run",
    "build_manifest",
    "check_output_dir",
    "interrupted_config",
    "publish_run",
    "run_pipeline",
    "work_dir_for",
]
