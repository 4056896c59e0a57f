"""Partitioned server datasets: a folder of Parquet partitions in an operator's data folder,
read where it lies, partition by partition, on a Dask cluster (the app's ``--dask-address``,
else a local cluster started for the step, as ``privsynth run`` starts one).

Nothing of its rows is copied into the workspace and no process ever holds the whole table:

- **Adding** (:func:`read_partitioned`): one pass for each partition's row count (Parquet
  metadata), a bounded uniform sample (:data:`DRAFT_SAMPLE_ROWS` rows,
  :func:`privsynth_core.partitions.sample_partitions`) that the custodian's draft schema is
  inferred from, and one pass for the partitioned multiset fingerprint
  (:func:`privsynth_core.partitions.count_partitions`: the content key privsynth_core gives a
  partitioned table). No holdout: a split would have to write the rows somewhere.
- **The domain** (:func:`check_public`, :func:`learn_domain`): a declared domain is checked
  against every partition; a DP domain is learned from counts summed over the partitions
  (:func:`privsynth_core.privacy.domain.learn_domain_from_partitions`), charged to the source
  exactly as ``privsynth run --domain dp`` on a partitioned input charges it.
- **Training and evaluation** are the flows' (the run configuration's ``input`` is the folder):
  they read the partitions on the cluster, and the evaluation reads a sample.

What is not offered for such a dataset is refused with :data:`NOT_AVAILABLE` in the message:
the audit (its trainings read the whole table in one process), generators that cannot fit
from partitions (the non-DP ones), and a holdout share.

No Gradio here; nothing derived from the rows leaves this module except to a custodian's
draft (as for a file) or through a charged mechanism.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import InputFileError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import polars as pl

    from privsynth_core.schema import Schema

    from .workspace import DatasetRecord, Workspace

#: Rows drawn, without replacement, for the custodian's draft schema of a partitioned dataset.
DRAFT_SAMPLE_ROWS = 20_000
#: Seed of that draw: the same sample every time (the draft is custodian-only and not DP).
DRAFT_SEED = 0
#: What every refusal for a partitioned dataset says.
NOT_AVAILABLE = "not available for partitioned datasets"

HOLDOUT_REFUSED = (
    "a partitioned dataset takes no holdout: set the holdout share to 0. A holdout split "
    "would copy the rows into this server's workspace, and a partitioned table's rows stay in "
    "the operator's folder (an evaluation reads a sample of them instead)"
)


@contextmanager
def reading(address: str | None) -> Iterator[Executor | None]:
    """Where this app reads partitions: the operator's cluster, else a local one for the step.

    Raises:
        ConfigError: the operator's cluster does not answer.
    """
    from privsynth_flows.runtime import partition_cluster

    with partition_cluster(address) as executor:
        yield executor


def is_partition_folder(path: Path, root: Path) -> bool:
    """Whether ``path`` is a folder of Parquet partitions lying wholly inside ``root``.

    Every file :func:`~privsynth_core.partitions.discover_partitions` would read must be
    Parquet and resolve inside ``root``: a link in the folder to a file elsewhere would have
    the app read what the operator did not expose.
    """
    from privsynth_core.partitions import discover_partitions
    from privsynth_core.table import PARQUET_SUFFIXES

    if not path.is_dir():
        return False
    try:
        files = discover_partitions(path)
    except InputFileError:
        return False
    top = root.resolve()
    return all(
        f.name.lower().endswith(PARQUET_SUFFIXES) and f.resolve().is_relative_to(top) for f in files
    )


def partition_folders(root: Path, limit: int) -> list[Path]:
    """The topmost folders of Parquet partitions under ``root`` (``root`` itself excluded:
    its loose files are tables of their own), at most ``limit``."""
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        if len(found) >= limit:
            break
        if any(part.startswith(("_", ".")) for part in path.relative_to(root).parts):
            continue
        if any(path.is_relative_to(f) for f in found):
            continue  # a Hive subfolder of a table already listed is part of it
        if path.is_dir() and is_partition_folder(path, root):
            found.append(path)
    return found


def enclosing_table(path: Path, root: Path) -> Path | None:
    """The topmost folder of Parquet partitions under ``root`` that holds ``path``, if any.

    A part of a partitioned table is not a table of its own on this server: picked alone it
    would be an extract with a budget of its own, beside the folder's, for the same people.
    """
    top = root.resolve()
    for folder in reversed(path.resolve().parents):
        if folder.is_relative_to(top) and folder != top and is_partition_folder(folder, root):
            return folder
    return None


@dataclass(frozen=True)
class PartitionedRead:
    """What adding a partitioned dataset learned. **Private** (custodian-only or a key):
    ``rows`` is exact, ``fingerprint`` a hash of the rows, ``draft`` read off a sample."""

    files: tuple[str, ...]
    columns: tuple[str, ...]
    rows: int
    fingerprint: str
    draft: Schema
    sample_rows: int


def _sample(files: list[str], executor: Executor | None) -> pl.DataFrame:
    from privsynth_core.partitions import partition_rows, sample_partitions

    rows = partition_rows(files, executor)
    return sample_partitions(
        files,
        rows,
        DRAFT_SAMPLE_ROWS,
        columns=_header(files[0]),
        seed=DRAFT_SEED,
        executor=executor,
    )


def _header(path: str) -> list[str]:
    import polars as pl

    return list(pl.scan_parquet(path).collect_schema().names())


def read_partitioned(folder: Path, *, exclude: list[str], address: str | None) -> PartitionedRead:
    """Read a partitioned table for adding it: the draft from a sample, the fingerprint and
    the size from a pass over every partition on the cluster (only counts come back).

    Raises:
        InputFileError, SchemaError: a partition cannot be read, the partitions disagree, or
            no schema can be inferred from the sample.
        ConfigError: the operator's cluster does not answer.
    """
    from privsynth_core.inference import infer_schema
    from privsynth_core.partitions import count_partitions, discover_partitions

    files = [str(p) for p in discover_partitions(folder)]
    with reading(address) as executor:
        sample = _sample(files, executor)
        # Lenient, as for a file: a column that cannot be inferred is left out with its reason.
        draft = infer_schema(sample, exclude=exclude, lenient=True)
        counts = count_partitions(files, draft, executor=executor)
    return PartitionedRead(
        files=tuple(files),
        columns=counts.columns,
        rows=counts.raw_rows,
        fingerprint=counts.fingerprint,
        draft=draft,
        sample_rows=sample.height,
    )


def draft_sample(record: DatasetRecord, address: str | None) -> pl.DataFrame:
    """The sample the dataset's draft was inferred from, drawn again (same seed), for
    inferring a column brought back into the draft (custodians only: NOT private)."""
    from privsynth_core.partitions import discover_partitions

    files = [str(p) for p in discover_partitions(record.partitions)]
    with reading(address) as executor:
        return _sample(files, executor)


def _changed(record: DatasetRecord) -> InputFileError:
    return InputFileError(
        f"the partitions of {record.name} changed since the dataset was added (its budget "
        f"and domain are for the rows it was added with); add the folder again as a new "
        f"dataset. Nothing was charged"
    )


def check_public(record: DatasetRecord, schema: Schema, address: str | None) -> None:
    """Check every partition against a declared domain (names, kinds), on the cluster.

    Raises:
        InputFileError, SchemaError: a partition does not fit, or the partitions changed.
    """
    from privsynth_core.partitions import count_partitions

    with reading(address) as executor:
        counts = count_partitions(record.partitions, schema, executor=executor)
    if counts.fingerprint != record.fingerprint:
        raise _changed(record)


def learn_domain(
    ws: Workspace,
    record: DatasetRecord,
    skeleton: Schema,
    *,
    epsilon: float,
    delta: float,
    run_id: str,
    address: str | None,
) -> tuple[Schema, list[dict[str, Any]]]:
    """Learn the source's domain with DP from counts summed over the partitions, charged to
    the source under ``run_id`` (one ledger entry per column, as on one machine). Returns the
    domain and its charged parts.

    Raises:
        BudgetNotSetError, BudgetExceededError, DomainError: as the DP domain's mechanisms.
        InputFileError: the partitions changed since the dataset was added (nothing charged).
    """
    from privsynth_core.privacy.coupling import replayed
    from privsynth_core.privacy.domain import learn_domain_from_partitions
    from privsynth_core.privacy.release import SpentPart

    key = record.key
    first = max((e.entry_id for e in ws.ledger.entries(key)), default=0)
    with reading(address) as executor:
        learned = replayed(
            "dp domain",
            lambda: learn_domain_from_partitions(
                record.partitions,
                skeleton,
                epsilon=epsilon,
                delta=delta,
                ledger=ws.ledger,
                fingerprint=key,
                run_id=run_id,
                executor=executor,
                # The budget key was given to the rows read at Add: charge only that table.
                extract=record.fingerprint,
            ),
        )
    parts = [
        {
            **SpentPart("domain", e.mechanism, e.epsilon, e.delta, e.entry_id).public(),
            "entry_id": e.entry_id,
        }
        for e in ws.ledger.entries(key)
        if e.entry_id > first and e.run_id == run_id and e.status == "spent"
    ]
    return learned, parts


def refuse(what: str) -> str:
    """The message that refuses ``what`` for a partitioned dataset."""
    return f"{what}: {NOT_AVAILABLE}"


__all__ = [
    "DRAFT_SAMPLE_ROWS",
    "HOLDOUT_REFUSED",
    "NOT_AVAILABLE",
    "PartitionedRead",
    "check_public",
    "draft_sample",
    "enclosing_table",
    "is_partition_folder",
    "learn_domain",
    "partition_folders",
    "read_partitioned",
    "refuse",
]
