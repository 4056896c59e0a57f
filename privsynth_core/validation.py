"""Typing and validating tables against their schema (pandera over polars).

- :func:`conform` types a raw frame (CSV text, or Parquet types) to the schema for a fit. Every
  problem with a value is handled **row by row**, the documented way, so that no single record
  can decide whether a fit runs (a release that fails for ``D`` + one row but not for ``D``
  reveals that row): a value that does not convert becomes missing; numbers and datetimes
  outside the bounds are clamped to them; a category outside the list becomes missing; and a
  row left with a missing value in a column the schema says is not nullable is dropped. Only a
  column missing from the header (public metadata) is an error. What was done is counted
  (:class:`ConformReport`: counts, never values), for the custodian's log.
- :func:`validate` is the strict check a person runs on their data (``privsynth data validate``):
  domain violations are reported too.
- :func:`check_synthetic` guards every generator's output: exact columns and dtypes, values
  inside the domain, nulls only where allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandera.polars as pa
import polars as pl

from .errors import GeneratorError, SchemaError
from .schema import Column, ColumnKind, Schema

NULL_TOKENS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
#: How a datetime column without a declared ``format`` is read: each value by the first of these
#: that fits it, so the order of rows never changes how a value is read. ISO 8601 first.
DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
)
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_EXAMPLES = 3


def polars_dtype(kind: ColumnKind) -> pl.DataType:
    """The polars dtype privsynth uses for a column kind."""
    return {
        ColumnKind.CONTINUOUS: pl.Float64(),
        ColumnKind.INTEGER: pl.Int64(),
        ColumnKind.CATEGORICAL: pl.String(),
        ColumnKind.BOOLEAN: pl.Boolean(),
        ColumnKind.DATETIME: pl.Datetime("us"),
    }[kind]


def _null_tokens(series: pl.Series, kind: ColumnKind) -> pl.Series:
    """Blank cells are missing for every kind; NA-like words too, except in categoricals."""
    if series.dtype != pl.String:
        return series
    stripped = series.str.strip_chars()
    tokens = ("",) if kind is ColumnKind.CATEGORICAL else NULL_TOKENS
    return pl.select(
        pl.when(stripped.is_in(list(tokens))).then(None).otherwise(stripped).alias(series.name)
    ).to_series()


def cast_column(series: pl.Series, column: Column) -> tuple[pl.Series, list[Any]]:
    """Convert ``series`` to ``column``'s dtype; return it and examples of values that failed."""
    series = _null_tokens(series, column.kind)
    kind = column.kind
    if kind is ColumnKind.CATEGORICAL:
        if series.dtype == pl.Boolean:
            series = series.cast(pl.String).str.to_lowercase()
        return series.cast(pl.String), []
    if kind is ColumnKind.BOOLEAN:
        if series.dtype == pl.Boolean:
            return series, []
        text = series.cast(pl.String).str.to_lowercase()
        cast = pl.select(
            pl.when(text.is_in(list(_TRUE)))
            .then(True)
            .when(text.is_in(list(_FALSE)))
            .then(False)
            .otherwise(None)
            .alias(series.name)
        ).to_series()
    elif kind is ColumnKind.DATETIME:
        if series.dtype == pl.String:
            cast = parse_datetimes(series, column.format)
        elif series.dtype in (pl.Date, pl.Datetime) or isinstance(series.dtype, pl.Datetime):
            cast = series.cast(pl.Datetime("us"))
        else:
            return series, series.drop_nulls().head(_EXAMPLES).to_list() or ["(wrong type)"]
        if cast.dtype.time_zone is not None:  # type: ignore[attr-defined]
            cast = cast.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    else:
        as_float = series.cast(pl.Float64, strict=False)
        if kind is ColumnKind.INTEGER:
            fractional = as_float.is_not_null() & (as_float.round(0) != as_float)
            bad = series.filter(fractional | (series.is_not_null() & as_float.is_null()))
            cast = pl.select(
                pl.when(fractional).then(None).otherwise(as_float).cast(pl.Int64).alias(series.name)
            ).to_series()
            return cast, bad.head(_EXAMPLES).to_list()
        cast = pl.select(
            pl.when(as_float.is_nan() | as_float.is_infinite())
            .then(None)
            .otherwise(as_float)
            .alias(series.name)
        ).to_series()
    failed = series.is_not_null() & cast.is_null()
    return cast, series.filter(failed).head(_EXAMPLES).to_list()


def parse_datetimes(series: pl.Series, fmt: str | None) -> pl.Series:
    """Text to datetimes, value by value: by ``fmt``, or by the first of
    :data:`DATETIME_FORMATS` that reads the value (never a format guessed from one row)."""
    if fmt is not None:
        return series.str.strptime(pl.Datetime("us"), fmt, strict=False)
    tries = [series.str.strptime(pl.Datetime("us"), f, strict=False) for f in DATETIME_FORMATS]
    return pl.select(pl.coalesce(tries).alias(series.name)).to_series()


def _domain_checks(column: Column) -> list[pa.Check]:
    if column.bounds is not None:
        lower, upper = column.bounds
        if column.kind is ColumnKind.INTEGER:
            lower, upper = int(lower), int(upper)  # type: ignore[arg-type]
        return [pa.Check.in_range(lower, upper)]
    if column.categories is not None:
        return [pa.Check.isin(list(column.categories))]
    return []


def to_pandera(schema: Schema, *, check_domain: bool) -> pa.DataFrameSchema:
    """The pandera schema of a typed table: dtypes, nullability and (optionally) the domain."""
    return pa.DataFrameSchema(
        {
            col.name: pa.Column(
                polars_dtype(col.kind),
                nullable=col.nullable,
                checks=_domain_checks(col) if check_domain else [],
            )
            for col in schema.columns
        },
        strict="filter",
        ordered=False,
    )


def _describe_failures(failure_cases: pl.DataFrame) -> list[str]:
    problems = []
    grouped = failure_cases.group_by(["column", "check"], maintain_order=True).agg(
        pl.len().alias("n"), pl.col("failure_case").head(_EXAMPLES).alias("examples")
    )
    for row in grouped.iter_rows(named=True):
        col, check, n = row["column"], row["check"], row["n"]
        examples = ", ".join(repr(v) for v in row["examples"] if v is not None)
        if check == "not_nullable":
            problems.append(
                f"column {col!r}: {n} missing value(s), but the schema says it is not nullable "
                f"(set `nullable: true` for it, or fill the gaps)"
            )
        elif check and check.startswith("in_range"):
            problems.append(
                f"column {col!r}: {n} value(s) outside the bounds {check[8:]} (e.g. {examples})"
            )
        elif check and check.startswith("isin"):
            problems.append(
                f"column {col!r}: {n} value(s) not among its categories (e.g. {examples})"
            )
        else:
            problems.append(f"column {col!r}: failed {check} ({n} case(s), e.g. {examples})")
    return problems


def _type_frame(frame: pl.DataFrame, schema: Schema) -> tuple[pl.DataFrame, list[str]]:
    problems = []
    missing = [c.name for c in schema.columns if c.name not in frame.columns]
    if missing:
        problems.append(
            f"column(s) missing from the data: {', '.join(missing)} (the data has: "
            f"{', '.join(frame.columns)})"
        )
    typed = {}
    for col in schema.columns:
        if col.name not in frame.columns:
            continue
        cast, bad = cast_column(frame[col.name], col)
        if bad:
            n_bad = int((frame[col.name].is_not_null() & cast.is_null()).sum())
            examples = ", ".join(repr(v) for v in bad)
            problems.append(
                f"column {col.name!r}: {n_bad} value(s) are not {col.kind} (e.g. {examples}); fix "
                f"them or change the column's kind in the schema"
            )
        typed[col.name] = cast
    return pl.DataFrame(typed), problems


def _run_pandera(frame: pl.DataFrame, schema: Schema, *, check_domain: bool) -> list[str]:
    try:
        to_pandera(schema, check_domain=check_domain).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return _describe_failures(exc.failure_cases)
    return []


def clamp_to_domain(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Clamp numbers and datetimes to their bounds; unknown categories become missing."""
    exprs = []
    for col in schema.columns:
        expr = pl.col(col.name)
        if col.bounds is not None:
            lower, upper = col.bounds
            if col.kind is ColumnKind.INTEGER:
                lower, upper = int(lower), int(upper)  # type: ignore[arg-type]
            expr = expr.clip(lower, upper)
        elif col.categories is not None:
            expr = pl.when(expr.is_in(list(col.categories))).then(expr).otherwise(None)
        exprs.append(expr.alias(col.name))
    return frame.select(exprs)


@dataclass
class ConformReport:
    """What :func:`conform` did to fit the data to its schema: counts per column, never values.

    Attributes:
        unreadable: values that did not convert to the column's kind (made missing).
        clamped: numbers and datetimes outside the bounds (clamped to them).
        unknown: categories outside the list (made missing).
        dropped_rows: rows dropped for a missing value in a column that is not nullable.
    """

    unreadable: dict[str, int] = field(default_factory=dict)
    clamped: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    dropped_rows: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was changed."""
        return bool(self.unreadable or self.clamped or self.unknown or self.dropped_rows)

    def lines(self) -> list[str]:
        """One line per change, counts only (safe for logs the custodian does not control)."""
        out = [
            f"column {c!r}: {n} value(s) not readable as its kind, read as missing"
            for c, n in self.unreadable.items()
        ]
        out += [
            f"column {c!r}: {n} value(s) outside the bounds, clamped to them"
            for c, n in self.clamped.items()
        ]
        out += [
            f"column {c!r}: {n} value(s) not among its categories, read as missing"
            for c, n in self.unknown.items()
        ]
        if self.dropped_rows:
            out.append(
                f"{self.dropped_rows} row(s) dropped: a missing value in a column that is "
                f"not nullable"
            )
        return out


def conform(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Type ``frame`` to ``schema`` and bring every row inside the domain, row by row.

    Returns a frame with exactly the schema's columns in schema order; see the module docstring
    for what happens to values that do not fit. :func:`conform_report` also says what was done.

    Raises:
        SchemaError: columns of the schema are missing from the data.
    """
    return conform_report(frame, schema)[0]


def conform_report(frame: pl.DataFrame, schema: Schema) -> tuple[pl.DataFrame, ConformReport]:
    """:func:`conform`, and the counts of what it changed.

    Raises:
        SchemaError: columns of the schema are missing from the data.
    """
    missing = sorted(set(schema.names) - set(frame.columns), key=schema.names.index)
    if missing:
        raise SchemaError(
            f"the data does not fit its schema: column(s) missing from the data: "
            f"{', '.join(missing)} (the data has: {', '.join(frame.columns)})"
        )
    report = ConformReport()
    typed = {}
    for col in schema.columns:
        raw = _null_tokens(frame[col.name], col.kind)
        cast, _ = cast_column(raw, col)
        unreadable = int((raw.is_not_null() & cast.is_null()).sum())
        if unreadable:
            report.unreadable[col.name] = unreadable
        if col.bounds is not None:
            lower, upper = col.bounds
            if col.kind is ColumnKind.INTEGER:
                lower, upper = int(lower), int(upper)  # type: ignore[arg-type]
            outside = int(((cast < lower) | (cast > upper)).fill_null(False).sum())
            if outside:
                report.clamped[col.name] = outside
        elif col.categories is not None:
            unknown = int((cast.is_not_null() & ~cast.is_in(list(col.categories))).sum())
            if unknown:
                report.unknown[col.name] = unknown
        typed[col.name] = cast
    inside = clamp_to_domain(pl.DataFrame(typed), schema)
    required = [c.name for c in schema.columns if not c.nullable]
    if required:
        keep = pl.all_horizontal(pl.col(name).is_not_null() for name in required)
        kept = inside.filter(keep)
        report.dropped_rows = inside.height - kept.height
        inside = kept
    return inside, report


def validate(frame: pl.DataFrame, schema: Schema) -> list[str]:
    """Every way ``frame`` departs from ``schema``, domain included (empty list: it fits)."""
    typed, problems = _type_frame(frame, schema)
    present = schema.with_columns(
        [c for c in schema.columns if c.name in typed.columns] or list(schema.columns),
        domain=schema.domain,
    )
    if typed.width:
        problems += _run_pandera(typed, present, check_domain=True)
    return problems


def check_synthetic(frame: pl.DataFrame, schema: Schema, *, generator_id: str) -> pl.DataFrame:
    """Return ``frame`` with the schema's exact columns and dtypes, or raise.

    Raises:
        GeneratorError: the generator produced something outside the schema (a plugin bug);
            the output is withheld rather than released with an out-of-domain value.
    """
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise GeneratorError(
            f"generator {generator_id} produced no column(s) {missing}; this is a bug in the plugin"
        )
    try:
        frame = frame.select(
            pl.col(c.name).cast(polars_dtype(c.kind), strict=True) for c in schema.columns
        )
    except pl.exceptions.PolarsError as exc:
        raise GeneratorError(
            f"generator {generator_id} produced values of the wrong type: "
            f"{str(exc).splitlines()[0]}; this is a bug in the plugin"
        ) from None
    problems = _run_pandera(frame, schema, check_domain=True)
    if problems:
        raise GeneratorError(
            f"generator {generator_id} produced output outside the schema; it was withheld. "
            f"This is a bug in the plugin:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return frame


def datetime_to_float(value: datetime) -> float:
    """Seconds since the epoch of a naive (UTC) datetime; the encoding privsynth uses."""
    return (value - datetime(1970, 1, 1)).total_seconds()


def datetime_to_micros(value: datetime) -> int:
    """Whole microseconds since the epoch of a naive-UTC (or aware) datetime, exactly as
    polars' ``dt.epoch("us")`` counts them (``seconds * 1e6`` in floats can land a fraction
    off, which moves a value at a bound out of its own cell)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - datetime(1970, 1, 1)) // timedelta(microseconds=1)
