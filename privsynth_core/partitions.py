"""Partitioned tables: a directory or glob of Parquet (or CSV) files, read one partition at a time.

A table too large for one process is given as its parts: ``data/`` (every ``.parquet`` /
``.csv`` file under it, Hive-style subfolders included; names starting with ``_`` or ``.``,
such as ``_SUCCESS``, are skipped) or a glob (``data/part-*.parquet``). Each partition is read
with the single-file reader (:func:`privsynth_core.table.read_frame`, so every bad-input check
applies, naming the file), conformed to the schema (:func:`privsynth_core.validation.conform`,
which works row by row, so conforming the parts is conforming the whole) and reduced, in the
same task, to what the run needs:

- the header, the number of rows, and counts of what conforming changed (never values);
- a content fingerprint that does not depend on how the rows are split into files or ordered
  (:func:`partition_fingerprint`);
- the exact counts of :mod:`privsynth_core.privacy.histograms` that a :class:`CountPlan` asks
  for: the ``independent`` generator's per-column histograms and the DP domain's magnitude
  histograms and category counts;
- a generator's own exact counts (``CountPlan.reduce``, :meth:`PartitionedTable.reduce`): its
  module-level function of the conformed partition, whose arrays are summed key by key (MST's
  and AIM's fine counts and marginals).

The tasks run on any :class:`concurrent.futures.Executor`: a Dask cluster's
(``distributed.Client(address).get_executor()``, see :mod:`privsynth_flows.runtime`), a process
pool, or none (one partition after another in this process). Only those small results travel
back; the caller sums them (:func:`count_partitions`) and releases them with the same mechanism
code as a single-machine run (noise once, centrally). No process ever holds more than one
partition. Errors in a partition come back as one message that names its file.

A generator fits from partitions through a :class:`PartitionedTable`: the schema, the rows'
fingerprint and exact size (for the row-count mechanism only) and the partition files, with no
frame. A generator that declares ``fits_from_partitions``
(:attr:`privsynth_core.generator.Generator.fits_from_partitions`; today every DP generator:
``independent``, ``dpwgan``, ``dpctgan``, and the ``privsynth-marginal`` plugin's ``mst`` and
``aim``) reads its counts through
:meth:`PartitionedTable.column_histograms` or :meth:`PartitionedTable.reduce`, the same methods
and functions a single-file :class:`~privsynth_core.table.Table` answers, summed over the
partitions; DP-SGD draws its batches from the rows copied, one partition at a time, to the
trainer's own disk (:meth:`PartitionedTable.spool`).

The DP domain of a partitioned table is learned from its counts too
(:func:`privsynth_core.privacy.domain.learn_domain_from_partitions`: the magnitude histograms and
category counts, then the quantiles' grid counts of ``CountPlan.quantile_ranges``).

What this module does **not** do yet (issue #19): DP-CTGAN's marginals and DP-SGD's batches
(those generators still need the whole table in one process and are refused a partitioned one).
"""

from __future__ import annotations

import glob
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import polars as pl

from .errors import GeneratorError, InputFileError, PrivsynthError, SchemaError
from .privacy.histograms import (
    QUANTILE_GRID,
    IntArray,
    add_category_counts,
    category_counts,
    column_histogram,
    grid_counts,
    magnitude_counts,
    numeric_values,
)
from .schema import ColumnKind, Schema
from .table import CSV_SUFFIXES, PARQUET_SUFFIXES, Table
from .validation import ConformReport, cast_column, conform_report

_GLOB_CHARS = "*?["
#: Real rows the metrics read from a partitioned table unless the run says otherwise.
DEFAULT_EVAL_SAMPLE_ROWS = 100_000
_T = TypeVar("_T")
_R = TypeVar("_R")


def is_partitioned(spec: str | Path) -> bool:
    """Whether ``spec`` names a partitioned table (a directory, or a glob pattern); an existing
    file is never one, even with ``[`` or ``*`` in its name."""
    path = Path(str(spec)).expanduser()
    if path.is_file():
        return False
    return path.is_dir() or any(ch in str(spec) for ch in _GLOB_CHARS)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def _skipped(path: Path) -> bool:
    return path.name.startswith(("_", "."))


def discover_partitions(spec: str | Path) -> list[Path]:
    """The partition files of ``spec`` (a directory or a glob), sorted by path.

    Raises:
        InputFileError: nothing matches; a match is not a data file; or Parquet and CSV files
            are mixed (one table is one format).
    """
    text = (
        str(Path(spec).expanduser()) if not any(c in str(spec) for c in _GLOB_CHARS) else str(spec)
    )
    if Path(text).is_dir():
        found = sorted(
            p
            for p in Path(text).rglob("*")
            if p.is_file()
            and not _skipped(p)
            and _kind(p) is not None
            and not any(_skipped(Path(part)) for part in p.relative_to(text).parts)
        )
        where = f"the directory {text}"
    else:
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        found = [p for p in matches if p.is_file()]
        unsupported = [p for p in found if _kind(p) is None]
        if unsupported:
            raise InputFileError(
                f"{text} matches {len(unsupported)} file(s) that are not Parquet or CSV (e.g. "
                f"{unsupported[0]}); narrow the pattern to the table's parts (e.g. "
                f"'part-*.parquet')"
            )
        where = f"the pattern {text}"
    if not found:
        raise InputFileError(
            f"{where} holds no Parquet (.parquet) or CSV (.csv, .csv.gz, .tsv) files; give a "
            f"directory of the table's parts or a glob that matches them"
        )
    kinds = {_kind(p) for p in found}
    if len(kinds) > 1:
        first_csv = next(p for p in found if _kind(p) == "csv")
        raise InputFileError(
            f"{where} mixes Parquet and CSV files (e.g. {first_csv}); a partitioned table is "
            f"one format: convert or move the odd ones out"
        )
    return found


#: A generator's exact counts of one conformed frame, by name (see :meth:`PartitionedTable.
#: reduce`): module-level and picklable (a ``functools.partial`` of one), as it runs on workers.
ReduceFn = Callable[[pl.DataFrame], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class CountPlan:
    """Which exact counts one pass over the partitions takes, besides the row count.

    Attributes:
        histogram_bins: take every schema column's domain histogram
            (:func:`~privsynth_core.privacy.histograms.column_histogram`, the ``independent``
            generator's) with this many bins per numeric column; None: none. Needs a domain.
        domain: take the DP domain's counts on the raw (typed, not yet conformed) values: the
            magnitude histogram of every numeric and datetime column and the category counts of
            every categorical column.
        quantile_ranges: ``(column, lower, upper)`` for the DP domain's second pass: the grid
            counts (:func:`~privsynth_core.privacy.histograms.grid_counts`) of the column's raw
            values, clipped to its released coarse range, over the quantiles' public grid of
            :data:`~privsynth_core.privacy.histograms.QUANTILE_GRID` points spanning it.
        reduce: a generator's own exact counts (:meth:`PartitionedTable.reduce`): run on each
            partition's conformed frame; its arrays are summed key by key.
    """

    histogram_bins: int | None = None
    domain: bool = False
    quantile_ranges: tuple[tuple[str, float, float], ...] = ()
    reduce: ReduceFn | None = None


@dataclass
class PartitionCounts:
    """What one pass over a partitioned table found (summed over its partitions).

    Everything here is **custodian-only**: the row counts and the exact counts are private and
    may leave only through a mechanism (:mod:`privsynth_core.privacy.count` for the rows, the
    release functions of :mod:`privsynth_core.privacy.domain` or the generator for the counts).

    Attributes:
        files: the partition files, in order.
        columns: their (common) header.
        raw_rows: rows read, before conforming (private).
        rows: rows kept by conforming: the table's size ``n`` (private).
        partition_rows: raw rows per partition (private; for sampling the evaluation).
        fingerprint: the content fingerprint of the rows (:func:`partition_fingerprint`).
        report: what conforming changed, summed (counts only).
        histograms: exact domain histogram per column (``CountPlan.histogram_bins``).
        magnitudes: exact magnitude histogram per numeric/datetime column (``CountPlan.domain``).
        categories: exact count per value per categorical column (``CountPlan.domain``).
        quantiles: exact grid counts per numeric/datetime column
            (``CountPlan.quantile_ranges``).
        reduced: ``CountPlan.reduce``'s arrays, summed key by key.
    """

    files: tuple[str, ...]
    columns: tuple[str, ...]
    raw_rows: int
    rows: int
    partition_rows: tuple[int, ...]
    fingerprint: str
    report: ConformReport = field(default_factory=ConformReport)
    histograms: dict[str, IntArray] = field(default_factory=dict)
    magnitudes: dict[str, IntArray] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    quantiles: dict[str, IntArray] = field(default_factory=dict)
    reduced: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _PartResult:
    """One partition's share (or the one-line error that stopped it)."""

    file: str
    error: str | None = None
    schema_error: bool = False
    #: the error is a bug in ``CountPlan.reduce`` (not in the partition)
    reduce_error: bool = False
    columns: tuple[str, ...] = ()
    raw_rows: int = 0
    rows: int = 0
    hash_sums: tuple[int, int] = (0, 0)
    report: ConformReport = field(default_factory=ConformReport)
    histograms: dict[str, IntArray] = field(default_factory=dict)
    magnitudes: dict[str, IntArray] = field(default_factory=dict)
    categories: dict[str, dict[str, int]] = field(default_factory=dict)
    quantiles: dict[str, IntArray] = field(default_factory=dict)
    reduced: dict[str, np.ndarray] = field(default_factory=dict)


_HASH_SEEDS = (42, 7)


def _row_hash_sums(frame: pl.DataFrame) -> tuple[int, int]:
    """Two 64-bit sums (mod 2^64) of the rows' hashes under two seeds, values taken as text."""
    ordered = frame.select(pl.col(c).cast(pl.String) for c in sorted(frame.columns))
    sums = []
    for seed in _HASH_SEEDS:
        hashes = ordered.hash_rows(seed=seed).to_numpy().astype(np.uint64)
        sums.append(int(hashes.sum(dtype=np.uint64)))  # wraps: a sum mod 2^64
    return sums[0], sums[1]


def partition_fingerprint(columns: Sequence[str], rows: int, sums: tuple[int, int]) -> str:
    """The content fingerprint of a partitioned table: SHA-256 over its sorted column names, its
    raw row count and two sums mod 2^64 of its rows' hashes (an additive multiset hash).

    It is the same however the rows are split into files or ordered, and changes with any row
    added, removed or edited (up to a 2^-128 accident). It is **not** the single-file
    fingerprint of :func:`privsynth_core.table.fingerprint_frame` (that one sorts every row hash
    in one process): the same rows as one file and as a partitioned table are different
    extracts, so name their data source (``source:``) to share one budget between them.
    """
    digest = hashlib.sha256(b"privsynth partitioned table v1\n")
    digest.update(repr(sorted(columns)).encode())
    digest.update(f"{rows}:{sums[0]}:{sums[1]}".encode())
    return digest.hexdigest()


def _count_one(path: str, schema: Schema, plan: CountPlan) -> _PartResult:
    """Read, check, conform and count one partition (runs on a worker)."""
    from .table import read_frame

    out = _PartResult(path)
    try:
        frame = read_frame(path, allow_empty=True)
        out.columns = tuple(frame.columns)
        out.raw_rows = frame.height
        out.hash_sums = _row_hash_sums(frame)
        missing = [name for name in schema.names if name not in frame.columns]
        if missing:
            raise SchemaError(f"the partition lacks column(s) of the schema: {', '.join(missing)}")
        if plan.domain:
            for col in schema.columns:
                if col.kind is ColumnKind.CATEGORICAL:
                    series, _ = cast_column(frame[col.name], col)
                    out.categories[col.name] = category_counts(series)
                elif col.kind is not ColumnKind.BOOLEAN:
                    series, _ = cast_column(frame[col.name], col)
                    out.magnitudes[col.name] = magnitude_counts(numeric_values(series, col.kind))
        for name, lower, upper in plan.quantile_ranges:
            out.quantiles[name] = _grid_counts(frame, schema, name, lower, upper)
        conformed, out.report = conform_report(frame, schema)
        out.rows = conformed.height
        if plan.histogram_bins is not None:
            for col in schema.columns:
                out.histograms[col.name] = column_histogram(
                    conformed[col.name], col, plan.histogram_bins
                )
        if plan.reduce is not None:
            out.reduced = _reduce(plan.reduce, conformed, out)
    except PrivsynthError as exc:
        # The message only (the reader's messages name the file; the caller names it in the
        # others), never a traceback from a worker, never a value of the rows.
        out.error = str(exc) or type(exc).__name__
        out.schema_error = isinstance(exc, SchemaError)
    return out


def _reduce(fn: ReduceFn, frame: pl.DataFrame, out: _PartResult) -> dict[str, np.ndarray]:
    """A generator's count function on one conformed partition."""
    try:
        return {k: np.asarray(v) for k, v in fn(frame).items()}
    except PrivsynthError:
        out.reduce_error = True  # our own messages never quote a value
        raise
    except Exception as exc:
        # A bug in the generator's function, not in the partition. Its message stays here: an
        # error from inside numpy or polars may quote a value of the rows.
        name = getattr(fn, "func", fn)
        out.reduce_error = True
        raise GeneratorError(
            f"the count function {getattr(name, '__qualname__', repr(name))} failed with "
            f"{type(exc).__name__} (a bug in the generator; its message is withheld because it "
            f"may quote the rows: fit a one-file sample of the parts to see it)"
        ) from None


def _grid_counts(
    frame: pl.DataFrame, schema: Schema, name: str, lower: float, upper: float
) -> IntArray:
    """A column's grid counts over the DP quantiles' candidates (what ``dp_quantile`` reads:
    the raw typed values, NaN dropped, clipped to the range)."""
    col = schema.column(name)
    series, _ = cast_column(frame[name], col)
    values = numeric_values(series, col.kind)
    values = np.clip(values[~np.isnan(values)], lower, upper)
    return grid_counts(values, np.linspace(lower, upper, QUANTILE_GRID))


#: Results a pass lets wait per slot of its executor (submitted, not yet read).
IN_FLIGHT_PER_SLOT = 2


def _slots(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once: a Dask client executor's threads over all
    workers, a pool's workers; 4 when it does not say."""
    client = getattr(executor, "_client", None)  # distributed's ClientExecutor
    if client is not None:
        try:
            return max(1, int(sum(client.nthreads().values())))
        except Exception:  # a closing client: fall back to the default
            return 4
    return max(1, int(getattr(executor, "_max_workers", 4) or 4))


def bounded_map(
    fn: Callable[[_T], _R], items: Iterable[_T], executor: Executor, *, in_flight: int
) -> Iterator[_R]:
    """``fn`` over ``items`` on ``executor``, results in order, with at most ``in_flight``
    tasks submitted and not yet read.

    ``Executor.map`` submits every item at once and keeps every future until the last result
    is read; a Dask cluster keeps a task's result in its worker's memory for as long as its
    future lives, so a pass over a 100M-row table would hold every partition's arrays on the
    workers until its end. Here each future is dropped as soon as its result is read.
    """
    pending: deque[Future[_R]] = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def map_partitions(
    fn: Callable[[_T], _R], items: Iterable[_T], executor: Executor | None = None
) -> list[_R]:
    """``fn`` over ``items`` on ``executor`` (in order), or one after another in this process."""
    if executor is None:
        return [fn(item) for item in items]
    return list(executor.map(fn, items))


def _add_report(total: ConformReport, part: ConformReport) -> None:
    for mine, theirs in (
        (total.unreadable, part.unreadable),
        (total.clamped, part.clamped),
        (total.unknown, part.unknown),
    ):
        for name, n in theirs.items():
            mine[name] = mine.get(name, 0) + n
    total.dropped_rows += part.dropped_rows


def _sum_arrays(total: dict[str, IntArray], part: dict[str, IntArray]) -> None:
    for name, counts in part.items():
        total[name] = total[name] + counts if name in total else counts.copy()


class _ReducedSum:
    """``CountPlan.reduce``'s arrays summed key by key as the partitions' results arrive, so
    the caller never holds more than one partition's arrays besides the sum (MST's marginals
    are about 1 MB a partition; a 100M-row table has hundreds of partitions). Every partition
    must give the same keys and shapes (the function's output depends on public inputs only);
    a mismatch is kept and raised after the partitions' own errors (:meth:`total`)."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.first: str | None = None
        self.error: str | None = None

    def add(self, part: _PartResult) -> None:
        """Add one error-free partition's arrays (and free them from its result)."""
        reduced, part.reduced = part.reduced, {}
        if self.error is not None:
            return
        if self.first is None:
            self.first, self.sums = part.file, {k: v.copy() for k, v in reduced.items()}
            return
        if set(reduced) != set(self.sums):
            self.error = (
                f"the count function gave {part.file} other keys than {self.first}; it must "
                f"return the same arrays for every partition (a bug in the generator)"
            )
            return
        for name, counts in reduced.items():
            if self.sums[name].shape != counts.shape:
                # the shapes stay out: a buggy function's shape may depend on the rows
                self.error = (
                    f"the count function gave {part.file} an array for {name!r} of another "
                    f"shape than {self.first}'s; it must return the same shapes for every "
                    f"partition (a bug in the generator)"
                )
                return
            self.sums[name] += counts

    def total(self) -> dict[str, np.ndarray]:
        """The sums.

        Raises:
            GeneratorError: two partitions gave different keys or shapes.
        """
        if self.error is not None:
            raise GeneratorError(self.error)
        return self.sums


def count_partitions(
    spec: str | Path | Sequence[str | Path],
    schema: Schema,
    *,
    plan: CountPlan | None = None,
    executor: Executor | None = None,
) -> PartitionCounts:
    """One pass over a partitioned table: check, conform and count every partition, then sum.

    Args:
        spec: a directory or glob (:func:`discover_partitions`), or the partition files.
        schema: the table's schema (a domain is needed for ``plan.histogram_bins``).
        plan: the exact counts to take besides the rows (default: none).
        executor: where the partitions are read (a Dask cluster's executor); default: this
            process, one partition at a time.

    Raises:
        InputFileError: no partitions; a partition cannot be read; or the partitions' columns
            disagree (the file and the columns are named; never a value).
        SchemaError: a partition lacks columns of the schema (the file is named).
    """
    plan = plan or CountPlan()
    if plan.histogram_bins is not None and schema.missing_domains:
        raise SchemaError(
            "per-column histograms need a domain for every column; missing for: "
            + ", ".join(schema.missing_domains)
        )
    files = (
        [str(p) for p in spec]
        if isinstance(spec, list | tuple)
        else [str(p) for p in discover_partitions(spec)]  # type: ignore[arg-type]
    )
    if not files:
        raise InputFileError("a partitioned table needs at least one partition file")
    task = partial(_count_one, schema=schema, plan=plan)
    reduced = _ReducedSum()
    parts = []
    # one result at a time, in order, as the executor delivers them: a generator's arrays are
    # added to the sum at once instead of being held for every partition, here or (with a
    # bounded number in flight) on the workers
    results = (
        bounded_map(task, files, executor, in_flight=IN_FLIGHT_PER_SLOT * _slots(executor))
        if executor is not None
        else map(task, files)
    )
    for part in results:
        if part.error is None:
            reduced.add(part)
        parts.append(part)
    # Unreadable parts first, then parts whose header disagrees (more telling than "lacks a
    # schema column" when one part has a renamed column), then the schema's own checks.
    for part in parts:
        if part.reduce_error:
            raise GeneratorError(f"partition {part.file}: {part.error}")
    for part in parts:
        if part.error is not None and not part.schema_error:
            text = part.error if part.file in part.error else f"{part.file}: {part.error}"
            raise InputFileError(f"partition {text}")
    header = parts[0].columns
    for part in parts[1:]:
        if set(part.columns) != set(header):
            missing = [c for c in header if c not in part.columns]
            extra = [c for c in part.columns if c not in header]
            what = "; ".join(
                s
                for s in (
                    f"lacks {', '.join(missing)}" if missing else "",
                    f"has extra {', '.join(extra)}" if extra else "",
                )
                if s
            )
            raise InputFileError(
                f"the partitions' columns disagree: {part.file} {what} (compared with "
                f"{parts[0].file}); every part of a table must have the same columns"
            )
    for part in parts:
        if part.error is not None:
            raise SchemaError(f"partition {part.file}: {part.error}")
    if not any(part.raw_rows for part in parts):
        # one empty part is fine (it adds nothing); a table of none is refused as one empty
        # file is
        raise InputFileError(
            f"the {len(parts)} partition(s) have columns but no data rows; give files with rows"
        )
    result = PartitionCounts(
        files=tuple(files),
        columns=tuple(header),
        raw_rows=sum(p.raw_rows for p in parts),
        rows=sum(p.rows for p in parts),
        partition_rows=tuple(p.raw_rows for p in parts),
        fingerprint="",
        reduced=reduced.total() if plan.reduce is not None else {},
    )
    sums = [0, 0]
    for part in parts:
        sums = [(s + h) % (1 << 64) for s, h in zip(sums, part.hash_sums, strict=True)]
        _add_report(result.report, part.report)
        _sum_arrays(result.histograms, part.histograms)
        _sum_arrays(result.magnitudes, part.magnitudes)
        _sum_arrays(result.quantiles, part.quantiles)
        for name, counts in part.categories.items():
            add_category_counts(result.categories.setdefault(name, {}), counts)
    result.fingerprint = partition_fingerprint(header, result.raw_rows, (sums[0], sums[1]))
    return result


class PartitionedTable(Table):
    """A private table held as partitions: no frame in this process, counts on request.

    It is a :class:`~privsynth_core.table.Table` to :meth:`Generator.fit
    <privsynth_core.generator.Generator.fit>` (schema, budget key, fingerprint, the released
    row count n̂ and the domain's charged parts), but its rows stay in the partition files:
    reading :attr:`frame` is refused, and a generator reads them only through
    :meth:`column_histograms` or :meth:`reduce`, one pass over the partitions on
    :attr:`executor` that returns exact counts summed across them, or, for DP-SGD, through
    :meth:`spool` (the rows copied to local files, one partition at a time). Only generators
    that declare ``fits_from_partitions`` are given one (``Generator.fit`` refuses the others
    before anything is charged).

    Attributes:
        files: the partition files, in order.
        executor: where the partitions are read (a Dask cluster's); None: in this process.
    """

    partitioned = True

    def __init__(
        self,
        counts: PartitionCounts,
        schema: Schema,
        *,
        name: str = "table",
        source: str | None = None,
        executor: Executor | None = None,
    ) -> None:
        # Not Table.__init__: there is no frame to hold, and ``frame`` is a refusing property.
        self.schema = schema
        self.name = name
        self.fingerprint_ = counts.fingerprint
        self.source = source
        self.parent_key = None
        self.noisy_rows = None
        self.spent = []
        self.files = counts.files
        self.executor = executor
        self._rows = counts.rows

    @classmethod
    def load(
        cls,
        path: str | Path,
        schema: Schema | None = None,
        *,
        max_bytes: int | None = None,
        source: str | None = None,
        executor: Executor | None = None,
    ) -> PartitionedTable:
        """One pass over the partitions of ``path`` (a directory or glob): check and conform
        every partition to ``schema`` and keep its size and fingerprint, never its rows.

        Raises:
            InputFileError, SchemaError: as :func:`count_partitions`; or no schema is given
                (a partitioned table's schema is never inferred from its rows).
        """
        if schema is None:
            raise SchemaError(
                f"{path} is a partitioned table: give its reviewed schema file (a schema is "
                f"never inferred from a partitioned table)"
            )
        counts = count_partitions(path, schema, executor=executor)
        return cls(counts, schema, name=Path(str(path)).name, source=source, executor=executor)

    @property
    def frame(self) -> pl.DataFrame:
        """Refused: a partitioned table has no frame (that is what it is for)."""
        raise GeneratorError(
            f"{self.name} is a partitioned table: its rows are read partition by partition and "
            f"only counts come back; this step needs the whole table in one process (a bug in "
            f"the caller: generators that fit from partitions read column_histograms() or "
            f"reduce())"
        )

    @frame.setter
    def frame(self, value: pl.DataFrame) -> None:
        raise GeneratorError("a partitioned table holds no frame")

    @property
    def n_rows(self) -> int:
        """Rows kept by conforming, summed over the partitions. **Private**: for the row-count
        mechanism only (see :attr:`Table.n_rows <privsynth_core.table.Table.n_rows>`)."""
        return self._rows

    def column_histograms(self, bins: int) -> dict[str, IntArray]:
        """:meth:`Table.column_histograms <privsynth_core.table.Table.column_histograms>`,
        summed over the partitions: one pass on :attr:`executor` (only the count vectors come
        back). **Private**, for a mechanism to noise.

        Raises:
            InputFileError, SchemaError: a partition changed since the table was loaded so it
                no longer reads or fits the schema.
        """
        return self._pass(CountPlan(histogram_bins=bins)).histograms

    def reduce(self, fn: ReduceFn) -> dict[str, np.ndarray]:
        """:meth:`Table.reduce <privsynth_core.table.Table.reduce>`, summed over the
        partitions: ``fn`` runs on each partition's conformed frame on :attr:`executor` (a
        module-level function, or a ``functools.partial`` of one, that Dask can pickle), and
        only its arrays come back, added up key by key. Every partition must give the same keys
        and shapes. **Private**, for a mechanism to noise.

        Raises:
            InputFileError, SchemaError: as :meth:`column_histograms`.
            GeneratorError: ``fn`` failed on a partition (named; its message is withheld), or
                gave partitions different keys or shapes.
        """
        return self._pass(CountPlan(reduce=fn)).reduced

    def _pass(self, plan: CountPlan) -> PartitionCounts:
        """One pass over the partitions, checked to read the rows the table was loaded with."""
        counts = count_partitions(list(self.files), self.schema, plan=plan, executor=self.executor)
        self._check_unchanged(counts.fingerprint)
        return counts

    def _check_unchanged(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint_:
            # The rows read must be the rows whose size was released and charged for.
            raise InputFileError(
                f"the partitions of {self.name} changed while the fit was running; run it "
                f"again on a table that is not being written"
            )

    def spool(self, directory: Path) -> list[tuple[Path, int]]:
        """Copy the conformed rows into ``directory``, one uncompressed Arrow IPC file per
        partition that keeps rows, so a trainer can memory-map them and gather any rows it is
        asked for (DP-SGD's Poisson batches: :mod:`privsynth_core.privacy.dpsgd_spool`).

        One pass, in **this process**, one partition in memory at a time: the trainer needs the
        rows on its own disk, and a cluster's workers may not share it. Checked to read the rows
        the table was loaded with. **Private**: the files hold the rows; the caller keeps them
        in a folder only it can read and removes them when training ends.

        Returns:
            Each file and its rows, in partition order (the rows are private, like
            :attr:`n_rows`).

        Raises:
            InputFileError, SchemaError: a partition no longer reads or fits the schema, or
                the partitions changed since the table was loaded.
        """
        from .table import read_frame

        spooled: list[tuple[Path, int]] = []
        header: tuple[str, ...] = ()
        raw_rows, sums = 0, (0, 0)
        for i, file in enumerate(self.files):
            frame = read_frame(file, allow_empty=True)
            header = header or tuple(frame.columns)
            raw_rows += frame.height
            part = _row_hash_sums(frame)
            sums = ((sums[0] + part[0]) % (1 << 64), (sums[1] + part[1]) % (1 << 64))
            conformed, _ = conform_report(frame, self.schema)
            del frame
            if conformed.height:
                target = directory / f"part-{i:06d}.arrow"
                # oldest: plain (not view) strings, which Arrow can gather from a memory map
                conformed.write_ipc(
                    target, compression="uncompressed", compat_level=pl.CompatLevel.oldest()
                )
                spooled.append((target, conformed.height))
        self._check_unchanged(partition_fingerprint(header, raw_rows, sums))
        return spooled

    def __repr__(self) -> str:
        return f"PartitionedTable({self.name!r}, {len(self.files)} partitions)"

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


def _rows_of(path: str) -> int:
    """Rows of one partition as the reader reads them (Parquet: from its metadata)."""
    from .table import read_frame

    if _kind(Path(path)) == "parquet":
        try:
            return int(pl.scan_parquet(path).select(pl.len()).collect().item())
        except (pl.exceptions.PolarsError, OSError):
            pass  # let the reader say what is wrong with the file
    return read_frame(path, allow_empty=True).height


def partition_rows(files: Sequence[str], executor: Executor | None = None) -> list[int]:
    """The raw row count of each partition (private: for drawing the evaluation's sample)."""
    return map_partitions(_rows_of, list(files), executor)


def _sample_one(task: tuple[str, int, int], columns: Sequence[str]) -> pl.DataFrame:
    """``k`` rows drawn uniformly without replacement from one partition (runs on a worker)."""
    from .table import read_frame

    path, k, seed = task
    frame = read_frame(path, allow_empty=True).select(columns)
    if k >= frame.height:
        return frame
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(frame.height, size=k, replace=False))
    return frame[picks]


def sample_partitions(
    files: Sequence[str],
    partition_rows: Sequence[int],
    n: int,
    *,
    columns: Sequence[str],
    seed: int,
    executor: Executor | None = None,
) -> pl.DataFrame:
    """A uniform sample of ``n`` rows without replacement from a partitioned table.

    How many rows each partition gives is one multivariate hypergeometric draw over the
    partitions' row counts (so every set of ``n`` rows is equally likely); each partition then
    draws its share on a worker and only the sample travels back. For the evaluation, which is
    custodian-only and not DP: the seed may fix it. All rows when ``n`` is at least the total.

    Args:
        files: the partition files (as :attr:`PartitionCounts.files`).
        partition_rows: their raw row counts (:attr:`PartitionCounts.partition_rows`).
        n: the sample size.
        columns: the columns to keep (partitions may order them differently).
        seed: seed of the draw.
        executor: where the partitions are read; default: this process.
    """
    if n < 1:
        raise InputFileError(f"the evaluation sample needs at least one row, got {n}")
    rows = np.asarray(partition_rows, dtype=np.int64)
    seeds = np.random.SeedSequence(seed).spawn(len(files) + 1)
    if n >= int(rows.sum()):
        shares = rows
    else:
        shares = np.random.default_rng(seeds[-1]).multivariate_hypergeometric(
            rows, n, method="marginals"
        )
    tasks = [
        (f, int(k), int(s.generate_state(1)[0]))
        for f, k, s in zip(files, shares, seeds[:-1], strict=True)
        if k > 0
    ]
    frames = map_partitions(partial(_sample_one, columns=list(columns)), tasks, executor)
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


__all__ = [
    "DEFAULT_EVAL_SAMPLE_ROWS",
    "CountPlan",
    "PartitionCounts",
    "PartitionedTable",
    "ReduceFn",
    "count_partitions",
    "discover_partitions",
    "is_partitioned",
    "map_partitions",
    "partition_fingerprint",
    "partition_rows",
    "sample_partitions",
]
