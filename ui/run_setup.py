"""A web training as a run configuration: what the ``synthesize`` flow run of a web run reads.

A web run is a ``privsynth run`` of the dataset's train split (:func:`write_config`): the
configuration goes to the run's folder (``config.yaml``), and the flow run gets its path, never
its content, because it holds the data source's ledger key, which for an upload is the content
fingerprint of the whole file (a hash of private rows must not reach Prefect's server).

- **Input**: the train split, or a partitioned dataset's folder of partitions (the flow run
  reads them on the cluster at ``dask_address``, else on the local cluster it starts).
- **Budget**: ``budget_key`` is the dataset's :attr:`~privsynth_ui.workspace.DatasetRecord.key`,
  so the run charges the source's budget in the shared ledger, as every other front end does.
- **Cluster**: ``dask_address`` is the operator's setting (``privsynth ui --dask-address``),
  never a user's: the flow run sends its tasks and a partitioned input's passes there, as
  ``privsynth run --dask-address`` does. It is not part of the run's hash, so a training is
  the same run (and reuses the same model) on any cluster or none.
- **Domain**: the source's fixed domain (:mod:`privsynth_ui.sources`), copied into the run's
  folder. A domain declared public is the run's ``schema_path`` with ``domain: public``. A domain
  learned with DP (once, by a custodian, charged to the source) is written into the model store's
  DP-domain entry of this extract (:func:`seed_dp_domain`), the place ``pipeline.resolve_domain``
  looks first: the flow run reuses it instead of learning (and paying for) a domain again, and
  ``pipeline.fit_model`` reads the parts it was charged in, so every release made with it states
  their cost.

Nothing here imports Gradio or Prefect.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import DomainError

if TYPE_CHECKING:
    from privsynth_core.runs.config import RunConfig

    from .sources import SourceDomain
    from .workspace import DatasetRecord, RunRecord, Workspace


def run_config(
    ws: Workspace,
    record: RunRecord,
    dataset: DatasetRecord,
    domain: SourceDomain,
    *,
    dask_address: str | None = None,
) -> RunConfig:
    """The run configuration of a web training (its schema copied into the run's folder);
    ``dask_address``: the operator's cluster, if any.

    Raises:
        DomainError: the source's domain is not fixed.
        ConfigError: the settings are invalid (checked again by the flow run).
    """
    from privsynth_core.runs.config import run_config_from_dict

    if not domain.fixed:
        raise DomainError(
            "the domain of this data source is not fixed; ask the data custodian "
            "to fix it, then train"
        )
    schema = record.directory / "schema.yaml"
    shutil.copy2(domain.schema_path, schema)
    data: dict[str, Any] = {
        "name": f"web-{ws.user}-{record.run_id}",
        # A partitioned dataset's folder: the flow run reads its partitions on the cluster.
        "input": str(dataset.input_path),
        "source": dataset.source,
        "budget_key": dataset.key,
        "schema_path": str(schema),
        "domain": domain.mode,
        "generator": record.generator,
        "params": record.params,
        "epsilon": record.epsilon,
        "delta": record.delta,
        "accountant": record.accountant or "rdp",
        # the user's target: RunConfig hands it to the generator (params_for_target)
        "target": record.target,
        # A DP model samples n̂ rows by default; a non-DP one has no released count.
        "rows": None if record.private else dataset.rows,
        # The custodian evaluates on the Evaluate tab; the run itself computes no metric.
        "metrics": [],
        "holdout": str(dataset.holdout_path) if dataset.holdout_path else None,
        "output_dir": str(record.run_dir),
        "dask_address": dask_address,
    }
    if domain.mode == "dp":
        data.update(domain_epsilon=domain.epsilon, domain_delta=domain.delta)
    return run_config_from_dict(data, source=record.config_path)


def write_config(
    ws: Workspace,
    record: RunRecord,
    dataset: DatasetRecord,
    domain: SourceDomain,
    *,
    dask_address: str | None = None,
) -> Path:
    """Write the run's configuration (and, for a DP domain, its store entry); return its path."""
    import yaml

    from privsynth_core.fileio import atomic_write_text

    config = run_config(ws, record, dataset, domain, dask_address=dask_address)
    if domain.mode == "dp":
        seed_dp_domain(ws, config, dataset, domain)
    atomic_write_text(
        record.config_path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    return record.config_path


def seed_dp_domain(
    ws: Workspace, config: RunConfig, dataset: DatasetRecord, domain: SourceDomain
) -> Path:
    """Put the source's DP-learned domain where the flow run's domain step finds it.

    The entry is ``<home>/cache/domains/<pipeline.domain_key(config, extract)>/`` with the
    schema and ``domain.json`` (mode, the run that learned it, its parts with their ledger
    entries): exactly what ``pipeline.resolve_domain`` writes after learning one itself.
    """
    from privsynth_core.fileio import atomic_directory
    from privsynth_core.runs import pipeline
    from privsynth_core.store import exclusive_lock

    # $PRIVSYNTH_HOME/cache, for this app's home (the flow run gets the home as a parameter).
    destination = ws.home / "cache" / "domains" / pipeline.domain_key(config, dataset.fingerprint)
    if pipeline.is_complete_domain(destination):
        return destination
    parts = [
        {
            "step": p["step"],
            "mechanism": p["mechanism"],
            "epsilon": p["epsilon"],
            "delta": p["delta"],
            "ledger_entry": p.get("entry_id"),
        }
        for p in domain.parts
    ]
    learned_by = ""
    if parts and parts[0]["ledger_entry"] is not None:
        learned_by = ws.ledger.entry(int(parts[0]["ledger_entry"])).run_id
    with exclusive_lock(destination, what="the DP domain of this extract"):
        if not pipeline.is_complete_domain(destination):
            with atomic_directory(destination, overwrite=True) as tmp:
                shutil.copy2(domain.schema_path, tmp / pipeline.SCHEMA_FILE)
                (tmp / pipeline.DOMAIN_RECORD).write_text(
                    json.dumps({"mode": "dp", "run_id": learned_by, "parts": parts}, indent=2),
                    encoding="utf-8",
                )
    return destination


__all__ = ["run_config", "seed_dp_domain", "write_config"]
