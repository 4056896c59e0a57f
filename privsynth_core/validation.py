"""Typing and validating tables against their schema (pandera over polars).

- :func:`conform` types a raw frame (CSV text, or Parquet types) to the schema and checks it,
  reporting **every** problem at once in one :class:`~privsynth_core.errors.SchemaError`.
  Values outside the domain are not errors there: numbers are clamped to the bounds and unknown
  categories become missing, as a DP pipeline must do with a public domain.
- :func:`validate` is the strict check a person runs on their data (``privsynth data validate``):
  domain violations are reported too.
- :func:`check_synthetic` guards every generator's output: exact columns and dtypes, values
  inside the domain, nulls only where allowed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandera.polars as pa
import polars as pl

from .errors import GeneratorError, SchemaError
from .schema import Column, ColumnKind, Schema

NULL_TOKENS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
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
            pl.when(text.is_in(list(_TRUE))).then(True)
            .when(text.is_in(list(_FALSE))).then(False)
            .otherwise(None).alias(series.name)
        ).to_series()
    elif kind is ColumnKind.DATETIME:
        if series.dtype == pl.String:
            cast = series.str.to_datetime(strict=False, time_unit="us")
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
                pl.when(fractional).then(None).otherwise(as_float).cast(pl.Int64)
                .alias(series.name)
            ).to_series()
            return cast, bad.head(_EXAMPLES).to_list()
        cast = pl.select(
            pl.when(as_float.is_nan() | as_float.is_infinite()).then(None).otherwise(as_float)
            .alias(series.name)
        ).to_series()
    failed = series.is_not_null() & cast.is_null()
    return cast, series.filter(failed).head(_EXAMPLES).to_list()


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
            problems.append(f"column {col!r}: {n} value(s) outside the bounds {check[8:]} "
                            f"(e.g. {examples})")
        elif check and check.startswith("isin"):
            problems.append(f"column {col!r}: {n} value(s) not among its categories "
                            f"(e.g. {examples})")
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


def conform(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Type ``frame`` to ``schema``, check it, and bring it inside the domain.

    Returns a frame with exactly the schema's columns in schema order.

    Raises:
        SchemaError: columns are missing, values cannot be converted, or nulls appear where the
            schema forbids them; every problem is listed.
    """
    typed, problems = _type_frame(frame, schema)
    if not problems:
        problems = _run_pandera(typed, schema, check_domain=False)
    if problems:
        raise SchemaError(f"the data does not fit its schema ({len(problems)} problem(s)):",
                          problems)
    return clamp_to_domain(typed, schema)


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
        raise GeneratorError(f"generator {generator_id} produced no column(s) {missing}; "
                             f"this is a bug in the plugin")
    try:
        frame = frame.select(
            pl.col(c.name).cast(polars_dtype(c.kind), strict=True) for c in schema.columns
        )
    except pl.exceptions.PolarsError as exc:
        raise GeneratorError(f"generator {generator_id} produced values of the wrong type: "
                             f"{str(exc).splitlines()[0]}; this is a bug in the plugin") from None
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
