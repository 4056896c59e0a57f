"""Schema inference from a table. **Not differentially private.**

:func:`infer_schema` reads the data itself: the bounds it writes are the data's min/max and the
categories include values that a single person may hold. Its output is marked
``domain: inferred``; a DP run refuses it until a person reviews it and declares it public, or
replaces the domain with one learned under DP (:mod:`privsynth_core.domain`). Use it on public or
development data, or as a draft to edit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

from .errors import SchemaError
from .schema import Column, ColumnKind, ExcludedColumn, Schema
from .validation import _FALSE, _TRUE, NULL_TOKENS

ID_NAME = re.compile(r"(^|[_\-\s])(id|uuid|guid|key|ssn|email|e-mail|name|phone)s?$", re.I)
MIN_ROWS_FOR_ID = 20
FREE_TEXT_MIN_DISTINCT = 100
FREE_TEXT_DISTINCT_RATIO = 0.5


def _clean(series: pl.Series) -> pl.Series:
    if series.dtype != pl.String:
        return series
    stripped = series.str.strip_chars()
    return pl.select(
        pl.when(stripped.is_in(list(NULL_TOKENS))).then(None).otherwise(stripped)
        .alias(series.name)
    ).to_series()


def _looks_like_dates(values: pl.Series) -> pl.Series | None:
    sample = values.head(50)
    if not sample.str.contains(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}").all():
        return None
    try:
        parsed = values.str.to_datetime(strict=False, time_unit="us")
    except pl.exceptions.PolarsError:
        return None
    return parsed if parsed.null_count() == 0 else None


def _kind_of(series: pl.Series) -> tuple[ColumnKind | None, pl.Series, str | None]:
    """Return (kind, typed non-null values, problem); kind None means "text"."""
    values = series.drop_nulls()
    dtype = series.dtype
    if dtype == pl.Boolean:
        return ColumnKind.BOOLEAN, values, None
    if dtype in (pl.Date,) or isinstance(dtype, pl.Datetime):
        return ColumnKind.DATETIME, values.cast(pl.Datetime("us")), None
    if dtype.is_integer():
        return ColumnKind.INTEGER, values.cast(pl.Int64), None
    if dtype.is_float():
        finite = values.filter(values.is_finite())
        return ColumnKind.CONTINUOUS, finite.cast(pl.Float64), None
    if dtype != pl.String:
        return None, values.cast(pl.String), None
    lowered = values.str.to_lowercase()
    if lowered.is_in(["true", "false", "yes", "no"]).all() and lowered.n_unique() <= 2 and (
        lowered.is_in(list(_TRUE)).any() or lowered.is_in(list(_FALSE)).any()
    ):
        return ColumnKind.BOOLEAN, values, None
    as_float = values.cast(pl.Float64, strict=False)
    numeric = int(as_float.is_not_null().sum())
    if numeric == len(values):
        integral = not values.str.contains(r"[.eE]").any()
        if integral:
            return ColumnKind.INTEGER, as_float.cast(pl.Int64), None
        return ColumnKind.CONTINUOUS, as_float, None
    if numeric >= 0.5 * len(values):
        text = values.filter(as_float.is_null())
        examples = ", ".join(repr(v) for v in text.unique(maintain_order=True).head(3).to_list())
        return None, values, (
            f"column {series.name!r} mixes numbers ({numeric} values) and text "
            f"({len(values) - numeric} values, e.g. {examples}); clean the text out, or declare "
            f"the column categorical in a schema file"
        )
    dates = _looks_like_dates(values)
    if dates is not None:
        return ColumnKind.DATETIME, dates, None
    return None, values, None


def infer_schema(
    frame: pl.DataFrame, *, exclude: Iterable[str] = (), max_categories: int = 1000
) -> Schema:
    """Infer a schema (kinds, nullability, domain) from ``frame``. **Reads the data: not DP.**

    ID-like columns (one distinct value per row, or free text) are left out and listed in
    :attr:`Schema.excluded` with the reason.

    Args:
        frame: the data (CSV text or typed columns).
        exclude: columns to leave out on purpose.
        max_categories: text columns with more distinct values are treated as free text.

    Raises:
        SchemaError: a column is entirely empty, constant, or mixes numbers and text; every
            problem is listed, each with what to do.
    """
    exclude = set(exclude)
    unknown = sorted(exclude - set(frame.columns))
    if unknown:
        raise SchemaError(f"cannot exclude column(s) not in the data: {', '.join(unknown)}")
    columns: list[Column] = []
    excluded = [ExcludedColumn(name=n, reason="excluded on request") for n in sorted(exclude)]
    problems: list[str] = []
    n_rows = frame.height
    for name in frame.columns:
        if name in exclude:
            continue
        series = _clean(frame[name])
        nulls = series.null_count()
        if nulls == n_rows:
            problems.append(f"column {name!r} is entirely empty; exclude it (--exclude {name})")
            continue
        kind, values, problem = _kind_of(series)
        if problem:
            problems.append(problem)
            continue
        distinct = values.n_unique()
        if distinct == 1 and nulls == 0:
            problems.append(
                f"column {name!r} holds one value only ({values[0]!r}); it carries no "
                f"information: exclude it (--exclude {name}) or declare it in a schema file"
            )
            continue
        unique_per_row = distinct == len(values) == n_rows and n_rows >= MIN_ROWS_FOR_ID
        if kind is None or kind is ColumnKind.INTEGER:
            consecutive = (
                kind is ColumnKind.INTEGER
                and unique_per_row
                and int(values.max()) - int(values.min()) + 1 == n_rows  # type: ignore[arg-type]
            )
            if unique_per_row and (kind is None or consecutive or ID_NAME.search(name)):
                excluded.append(ExcludedColumn(
                    name=name,
                    reason="ID-like: a different value in every row; synthesising it would copy "
                    "identifiers (add it back in a schema file if it is not an identifier)",
                ))
                continue
        if kind is None:
            if distinct > max_categories or (
                distinct >= FREE_TEXT_MIN_DISTINCT and distinct > FREE_TEXT_DISTINCT_RATIO * n_rows
            ):
                excluded.append(ExcludedColumn(
                    name=name,
                    reason=f"free text: {distinct} distinct values in {n_rows} rows; declare it "
                    f"categorical in a schema file to keep it",
                ))
                continue
            categories = tuple(sorted(str(v) for v in values.unique().to_list()))
            columns.append(Column(name=name, kind=ColumnKind.CATEGORICAL, nullable=nulls > 0,
                                  categories=categories))
        elif kind is ColumnKind.BOOLEAN:
            columns.append(Column(name=name, kind=kind, nullable=nulls > 0))
        else:
            lower, upper = values.min(), values.max()
            if kind is not ColumnKind.DATETIME:
                lower, upper = float(lower), float(upper)  # type: ignore[arg-type]
            columns.append(Column(name=name, kind=kind, nullable=nulls > 0,
                                  bounds=(lower, upper)))  # type: ignore[arg-type]
    if problems:
        raise SchemaError(
            f"cannot infer a schema ({len(problems)} problem(s)); fix the data or write a schema "
            f"file (see `privsynth schema infer --help`):",
            problems,
        )
    if not columns:
        raise SchemaError(
            "no column is left to synthesise after excluding ID-like and free-text columns",
            [f"{e.name}: {e.reason}" for e in excluded],
        )
    return Schema(domain="inferred", columns=tuple(columns), excluded=tuple(excluded))
