"""Reading private tables: CSV or Parquet through polars, with clear errors for bad files.

A :class:`Table` is a polars DataFrame plus its :class:`~privsynth_core.schema.Schema`. Files are
read with polars' streaming engine, so a file larger than memory would like is read in chunks; a
file that cannot be read becomes an :class:`~privsynth_core.errors.InputFileError` that says what
was wrong and what to do, never a traceback from inside polars.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

from .csv_text import (
    SEPARATORS,
    check_separator,
    csv_separator,
    header_line,
    read_head,
    separator_name,
    sniff_separator,
    text_head,
    unescape_quoted_names,
)
from .errors import InputFileError, PrivsynthError, SchemaError
from .privacy.release import SpentPart
from .schema import ColumnKind, Schema

if TYPE_CHECKING:
    from .privacy.histograms import IntArray

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise InputFileError(
        f"{path}: unsupported file type; privsynth reads CSV (.csv, .csv.gz, .tsv) and Parquet "
        f"(.parquet) files"
    )


def check_input_path(path: str | Path, *, max_bytes: int | None = None) -> Path:
    """Return ``path`` as a Path if it is a readable, non-empty data file.

    Raises:
        InputFileError: it does not exist, is a directory, is empty, or exceeds ``max_bytes``.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(
            f"{path} does not exist; check the path (relative to {Path.cwd()})", retryable=True
        )
    if path.is_dir():
        raise InputFileError(f"{path} is a directory; give the path of a CSV or Parquet file")
    size = path.stat().st_size
    if size == 0:
        raise InputFileError(f"{path} is empty (0 bytes); give a file with a header and rows")
    if max_bytes is not None and size > max_bytes:
        raise InputFileError(
            f"{path} is {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.1f} MB; "
            f"use a smaller extract or ask the operator to raise the limit"
        )
    _file_kind(path)
    return path


def _check_columns(path: Path, names: list[str]) -> None:
    problems = []
    blanks = [i + 1 for i, n in enumerate(names) if not n]
    if blanks:
        problems.append(f"columns at positions {blanks} have no name")
    broken = [n for n in names if any(ch in n for ch in "\r\n\t\x00")]
    if broken:
        problems.append(
            f"column names {', '.join(repr(n) for n in broken)} hold a line break or tab"
        )
    # Counted once (names.count per name was quadratic: seconds at a few thousand columns).
    dupes = sorted(n for n, times in Counter(names).items() if n and times > 1)
    if dupes:
        problems.append(f"duplicate column names: {', '.join(dupes)}")
    if problems:
        raise InputFileError(
            f"{path}: the header is not usable ({'; '.join(problems)}); give every column a "
            f"unique name on one line"
        )


def read_frame(
    path: str | Path,
    *,
    schema: Schema | None = None,
    max_bytes: int | None = None,
    separator: str | None = None,
    allow_empty: bool = False,
) -> pl.DataFrame:
    """Read a CSV or Parquet file into a polars DataFrame.

    CSV columns are read as text, exactly as written: typing is the job of the schema
    (:func:`privsynth_core.validation.conform`) or of inference, so codes like ``"007"`` keep
    their zeros and a stray word in a numeric column is reported, not guessed around. The field
    separator is found in the header line (:func:`csv_separator`) unless one is given.

    Args:
        path: the file.
        schema: unused by the reader itself (kept for symmetry with :meth:`Table.load`).
        max_bytes: refuse files larger than this.
        separator: CSV field separator; default: sniffed from the header among ``, ; \\t |``.
        allow_empty: accept a header (or Parquet columns) with no rows: one partition of a
            partitioned table may hold none, and refusing it would make a run fail or not
            depending on whether a part holds 0 rows or 1.

    Raises:
        InputFileError: the file is missing, empty, not UTF-8 text, damaged, ragged, has a bad
            header, nested (non-tabular) Parquet columns, or no rows (unless ``allow_empty``).
    """
    return read_table_file(path, max_bytes=max_bytes, separator=separator, allow_empty=allow_empty)[
        0
    ]


def read_table_file(
    path: str | Path,
    *,
    max_bytes: int | None = None,
    separator: str | None = None,
    allow_empty: bool = False,
) -> tuple[pl.DataFrame, str | None]:
    """:func:`read_frame`, and the separator the CSV was read with (None for Parquet), so a
    command can say which one it used.

    Raises:
        InputFileError: as :func:`read_frame`.
    """
    path = check_input_path(path, max_bytes=max_bytes)
    kind = _file_kind(path)
    sep: str | None = None
    try:
        if kind == "parquet":
            _check_flat(path, pl.scan_parquet(path).collect_schema())
            frame = pl.scan_parquet(path).collect(engine="streaming")
        else:
            header = header_line(text_head(path, read_head(path, max_bytes)))
            if separator is not None:
                check_separator(separator)
            default = "\t" if path.name.lower().endswith(".tsv") else ","
            sep = separator or sniff_separator(header, default=default)
            raw_names = next(csv.reader(io.StringIO(header), delimiter=sep), [])
            names = [h.strip() for h in raw_names]
            _check_columns(path, names)
            _check_ragged(path, sep, len(names))
            if path.name.lower().endswith(".gz"):
                # scan_csv cannot stream compressed input; read_csv decompresses in one go.
                frame = pl.read_csv(path, separator=sep, infer_schema=False, encoding="utf8")
            else:
                frame = pl.scan_csv(
                    path, separator=sep, infer_schema=False, encoding="utf8"
                ).collect(engine="streaming")
            # Blank lines (often a trailing one) come back as all-null rows: not data.
            frame = frame.filter(~pl.all_horizontal(pl.all().is_null()))
            frame = unescape_quoted_names(frame, raw_names)
    except InputFileError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputFileError(
            _explain_read_error(path, exc), retryable=isinstance(exc, OSError)
        ) from None
    _check_columns(path, frame.columns)
    if frame.height == 0 and not allow_empty:
        what = "columns" if kind == "parquet" else "a header"
        raise InputFileError(f"{path} has {what} but no data rows; give a file with rows")
    return frame, sep


def _check_flat(path: Path, schema: pl.Schema) -> None:
    """Refuse Parquet columns that are not flat values (lists, structs, raw bytes)."""
    nested = {
        name: dtype
        for name, dtype in schema.items()
        if isinstance(dtype, pl.List | pl.Array | pl.Struct) or dtype in (pl.Binary, pl.Object)
    }
    if nested:
        shown = ", ".join(f"{name!r} ({_dtype_word(dtype)})" for name, dtype in nested.items())
        raise InputFileError(
            f"{path}: column(s) {shown} do not hold one plain value per row; privsynth "
            f"synthesises flat tables (numbers, text, booleans, dates): flatten those columns "
            f"(e.g. one column per field, or a list joined into one text value) or drop them, "
            f"and export the file again"
        )


def _dtype_word(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List | pl.Array):
        return "lists"
    if isinstance(dtype, pl.Struct):
        return "nested records"
    return "raw bytes" if dtype == pl.Binary else "objects"


def _check_ragged(path: Path, separator: str, n_fields: int) -> None:
    """Refuse rows with more or fewer fields than the header (polars pads short rows with nulls).

    Lines with a quote character are skipped (a quoted field may hold the separator); polars
    refuses those when they have too many fields.
    """
    options: dict[str, Any] = {
        "has_header": False,
        "separator": "\x1f",
        "quote_char": None,
        "infer_schema": False,
        "schema": {"line": pl.String},
        "truncate_ragged_lines": True,
    }
    lines = (
        pl.read_csv(path, **options).lazy()
        if path.name.lower().endswith(".gz")
        else pl.scan_csv(path, **options)
    )
    bad = (
        lines.with_row_index("line_number", offset=1)
        .filter(
            ~pl.col("line").str.contains('"', literal=True)
            & (pl.col("line").str.strip_chars().str.len_bytes() > 0)
            & (pl.col("line").str.count_matches(separator, literal=True) != n_fields - 1)
        )
        .head(3)
        .collect()
    )
    if bad.height:
        where = ", ".join(str(n) for n in bad["line_number"].to_list())
        raise InputFileError(
            f"{path} has rows with a different number of fields than its {n_fields}-column "
            f"header (ragged rows, e.g. line(s) {where}); fix those rows, or quote fields that "
            f"contain the separator"
        )


def _explain_read_error(path: Path, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lowered = str(exc).lower()
    if "utf-8" in lowered or "utf8" in lowered or "invalid utf" in lowered:
        return (
            f"{path} is not valid UTF-8 text; re-save it as UTF-8 (e.g. `iconv -f latin1 -t "
            f"utf-8`) or export it as Parquet"
        )
    if ("expected" in lowered and "field" in lowered) or "found more fields" in lowered:
        return (
            f"{path} has rows with a different number of fields than the header (ragged rows): "
            f"{text}. Fix the rows, or quote fields that contain the separator"
        )
    if "parquet" in lowered or "magic" in lowered:
        return f"{path} is not a valid Parquet file ({text}); re-export it"
    return f"cannot read {path}: {text}. Check that it is a well-formed CSV or Parquet file"


@dataclass
class Table:
    """A private table: a polars DataFrame and the schema of the columns to synthesise.

    Attributes:
        frame: the data, with the schema's columns (in schema order) and dtypes.
        schema: its schema.
        name: a label for messages and the ledger (usually the file name).
    """

    frame: pl.DataFrame
    schema: Schema
    name: str = "table"
    fingerprint_: str | None = field(default=None, repr=False)
    #: The custodian-named data source the table is an extract of (its budget is the
    #: source's); None: the table's own content fingerprint keys its budget.
    source: str | None = None
    #: The budget key of the source this table was split from, when the caller knows it (the
    #: web app's train split of an upload is charged to the whole file's key); overrides both.
    parent_key: str | None = field(default=None, repr=False)
    #: The released row count n̂ (:mod:`privsynth_core.privacy.count`), once a fit released it.
    noisy_rows: int | None = field(default=None, repr=False)
    #: The charged mechanisms this table's domain came from (a DP-learned domain's entries).
    spent: list[SpentPart] = field(default_factory=list, repr=False)
    #: Whether the rows are held as partitions with no frame in this process
    #: (:class:`~privsynth_core.partitions.PartitionedTable`): only generators that declare
    #: ``fits_from_partitions`` can fit such a table.
    partitioned: ClassVar[bool] = False

    @property
    def n_rows(self) -> int:
        """Number of rows. **Private**: read it only inside a DP mechanism; every public choice
        that needs a size uses :attr:`planning_rows`."""
        return self.frame.height

    @property
    def planning_rows(self) -> int:
        """The released row count n̂, the only size a plan or default may use.

        Raises:
            PrivsynthError: no count has been released for this table yet (a bug in the caller:
                :meth:`privsynth_core.generator.Generator.fit` releases it first).
        """
        if self.noisy_rows is None:
            raise PrivsynthError(
                "no row count has been released for this table; plans must use the released "
                "count n̂, never the exact size (this is a bug in the caller)"
            )
        return self.noisy_rows

    def column_histograms(self, bins: int) -> dict[str, IntArray]:
        """The exact histogram of every schema column over its domain, then its null count
        (:func:`~privsynth_core.privacy.histograms.column_histogram`, ``bins`` bins per numeric
        or datetime column). **Private**: for a mechanism to noise (the ``independent``
        generator's). A partitioned table sums the same function over its partitions.
        """
        from .privacy.histograms import column_histogram

        return {
            col.name: column_histogram(self.frame[col.name], col, bins)
            for col in self.schema.columns
        }

    def reduce(
        self, fn: Callable[[pl.DataFrame], Mapping[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """A generator's own exact counts: ``fn`` on the (conformed) frame, its arrays by name.

        **Private**: for a mechanism to noise. A partitioned table
        (:meth:`PartitionedTable.reduce <privsynth_core.partitions.PartitionedTable.reduce>`)
        runs the same ``fn`` on each partition on its cluster and adds the arrays up key by
        key, so ``fn`` must return counts that sum (each row counted in one partition), the
        same keys and shapes whatever the rows, and be picklable (module-level, or a
        ``functools.partial`` of a module-level function).
        """
        return {k: np.asarray(v) for k, v in fn(self.frame).items()}

    def budget_key(self) -> str:
        """The ledger key of the table's budget: its parent's key, its source id, or its content
        fingerprint, in that order."""
        from .privacy.ledger import budget_key

        return self.parent_key or budget_key(self.source, self.fingerprint())

    def fingerprint(self) -> str:
        """A content hash of the data as read, all columns (independent of row order).

        It is taken over every column of the source, not just the synthesised ones, so leaving
        a column out of the schema does not make a "new" dataset with a fresh budget. The
        privacy budget is kept per fingerprint: the same rows in any order share one budget.
        Any change to the content (a row more or less) makes a different dataset with a budget
        of its own, so custodians should budget the source table they extract from, not each
        extract.
        """
        if self.fingerprint_ is None:
            self.fingerprint_ = fingerprint_frame(self.frame)
        return self.fingerprint_

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, schema: Schema, *, name: str = "table", source: str | None = None
    ) -> Table:
        """Conform ``frame`` to ``schema`` (select, cast, check) and wrap it.

        The fingerprint is taken over ``frame`` as given, with all its columns.

        Raises:
            SchemaError: a schema column is missing or a value cannot be converted to its kind.
        """
        from .validation import conform

        return cls(conform(frame, schema), schema, name, fingerprint_frame(frame), source=source)

    @classmethod
    def load(
        cls,
        path: str | Path,
        schema: Schema | None = None,
        *,
        max_bytes: int | None = None,
        source: str | None = None,
    ) -> Table:
        """Read a file and conform it to ``schema``; without a schema, infer one (not DP).

        Raises:
            InputFileError: the file cannot be read.
            SchemaError: the data does not fit the schema, or no schema can be inferred.
        """
        frame = read_frame(path, schema=schema, max_bytes=max_bytes)
        if schema is None:
            from .inference import infer_schema

            schema = infer_schema(frame)
        return cls.from_frame(frame, schema, name=Path(path).name, source=source)


def fingerprint_frame(frame: pl.DataFrame) -> str:
    """SHA-256 over the column names and the sorted hashes of the rows as text.

    Values are hashed as their text form, so a CSV read as text and the same CSV typed give the
    same fingerprint. Row hashes use fixed seeds: stable for a given polars version.
    """
    ordered = frame.select(pl.col(c).cast(pl.String) for c in sorted(frame.columns))
    digest = hashlib.sha256()
    digest.update(repr(ordered.columns).encode())
    if ordered.height:
        hashes = ordered.hash_rows(seed=42).sort()
        digest.update(hashes.to_numpy().tobytes())
    return digest.hexdigest()


def kinds_summary(schema: Schema) -> dict[ColumnKind, int]:
    """How many columns of each kind the schema has (for messages and listings)."""
    counts: dict[ColumnKind, int] = {}
    for col in schema.columns:
        counts[col.kind] = counts.get(col.kind, 0) + 1
    return counts


__all__ = [
    "SEPARATORS",
    "SchemaError",
    "Table",
    "check_input_path",
    "csv_separator",
    "fingerprint_frame",
    "read_frame",
    "read_table_file",
    "separator_name",
    "sniff_separator",
]
