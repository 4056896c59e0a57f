"""Schema inference from a table. **Not differentially private.**

:func:`infer_schema` reads the data itself: the bounds it writes are the data's min/max and the
categories include values that a single person may hold. Its output is marked
``domain: inferred``; a DP run refuses it until a person reviews it and declares it public, or
replaces the domain with one learned under DP (:mod:`privsynth_core.domain`). Use it on public or
development data, or as a draft to edit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import polars as pl

from .errors import SchemaError
from .schema import Column, ColumnKind, ExcludedColumn, ReviewFlag, Schema
from .validation import _FALSE, _TRUE, DATETIME_FORMATS, NULL_TOKENS

ID_NAME = re.compile(r"(^|[_\-\s])(id|uuid|guid|key|ssn|email|e-mail|name|phone)s?$", re.I)
MIN_ROWS_FOR_ID = 20
FREE_TEXT_MIN_DISTINCT = 100
FREE_TEXT_DISTINCT_RATIO = 0.5
#: Categories held by fewer rows than this are flagged for review in a draft.
RARE_CATEGORY_ROWS = 10


def _clean(series: pl.Series) -> pl.Series:
    if series.dtype != pl.String:
        return series
    stripped = series.str.strip_chars()
    return pl.select(
        pl.when(stripped.is_in(list(NULL_TOKENS))).then(None).otherwise(stripped)
        .alias(series.name)
    ).to_series()


_DATE_SHAPE = r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"


def _date_format(values: pl.Series) -> tuple[str | None, pl.Series | None, list[str]]:
    """The one datetime format that reads every value, the parsed values, and (when no single
    format does but several together would) the formats found.

    Every value is tried against the same fixed list (:data:`DATETIME_FORMATS`), so the order of
    the rows never decides how they are read.
    """
    if not values.str.contains(_DATE_SHAPE).all():
        return None, None, []
    found = []
    for fmt in DATETIME_FORMATS:
        parsed = values.str.strptime(pl.Datetime("us"), fmt, strict=False)
        ok = int(parsed.is_not_null().sum())
        if ok == len(values):
            return fmt, parsed, []
        if ok:
            found.append(fmt)
    return None, None, found


def _kind_of(series: pl.Series) -> tuple[ColumnKind | None, pl.Series, str | None]:
    """Return (kind, typed non-null values, problem); kind None means "text".

    A datetime column read from text comes back named after the format that read it.
    """
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
    fmt, dates, several = _date_format(values)
    if dates is not None:
        return ColumnKind.DATETIME, dates.alias(fmt or ""), None  # the format, for the Column
    if several:
        return None, values, (
            f"column {series.name!r} holds dates in several formats ({', '.join(several)}); "
            f"declare it in a schema file as `kind: datetime` with the `format:` it is written "
            f"in (values in other formats are read as missing), or clean the column"
        )
    return None, values, None


def infer_schema(
    frame: pl.DataFrame, *, exclude: Iterable[str] = (), max_categories: int = 1000,
    lenient: bool = False,
) -> Schema:
    """Infer a schema (kinds, nullability, domain) from ``frame``. **Reads the data: not DP.**

    ID-like columns (one distinct value per row, or free text) are left out and listed in
    :attr:`Schema.excluded` with the reason.

    Args:
        frame: the data (CSV text or typed columns).
        exclude: columns to leave out on purpose.
        max_categories: text columns with more distinct values are treated as free text.
        lenient: leave out (with their reason) the columns that cannot be inferred, instead of
            refusing: for a draft a person completes by hand (the web app's schema table).

    Raises:
        SchemaError: a column is entirely empty, constant, or mixes numbers and text (unless
            ``lenient``); every problem is listed, each with what to do.
    """
    exclude = set(exclude)
    unknown = sorted(exclude - set(frame.columns))
    if unknown:
        raise SchemaError(f"cannot exclude column(s) not in the data: {', '.join(unknown)}")
    columns: list[Column] = []
    review: list[ReviewFlag] = []
    excluded = [ExcludedColumn(name=n, reason="requested") for n in sorted(exclude)]
    problems: list[str] = []
    n_rows = frame.height
    for name in frame.columns:
        if name in exclude:
            continue
        series = _clean(frame[name])
        nulls = series.null_count()
        if nulls == n_rows:
            problems.append(f"column {name!r} is entirely empty; exclude it (--exclude {name})")
            excluded.append(ExcludedColumn(name=name, reason="empty"))
            continue
        kind, values, problem = _kind_of(series)
        if problem:
            problems.append(problem)
            excluded.append(ExcludedColumn(name=name, reason="mixed"))
            continue
        distinct = values.n_unique()
        if distinct == 1 and nulls == 0:
            problems.append(
                f"column {name!r} holds one value only ({values[0]!r}); it carries no "
                f"information: exclude it (--exclude {name}) or declare it in a schema file"
            )
            excluded.append(ExcludedColumn(name=name, reason="constant"))
            continue
        unique_per_row = distinct == len(values) == n_rows and n_rows >= MIN_ROWS_FOR_ID
        if kind is None or kind is ColumnKind.INTEGER:
            consecutive = (
                kind is ColumnKind.INTEGER
                and unique_per_row
                and int(values.max()) - int(values.min()) + 1 == n_rows  # type: ignore[arg-type]
            )
            if unique_per_row and (kind is None or consecutive or ID_NAME.search(name)):
                excluded.append(ExcludedColumn(name=name, reason="id_like"))
                continue
        if kind is None:
            if distinct > max_categories or (
                distinct >= FREE_TEXT_MIN_DISTINCT and distinct > FREE_TEXT_DISTINCT_RATIO * n_rows
            ):
                excluded.append(ExcludedColumn(name=name, reason="free_text"))
                continue
            counts = values.cast(pl.String).value_counts()
            categories = tuple(sorted(str(v) for v in counts[counts.columns[0]].to_list()))
            rare = sorted(str(v) for v, n in counts.iter_rows() if n < RARE_CATEGORY_ROWS)
            if rare:
                review.append(ReviewFlag(column=name, issue="rare_categories", values=tuple(rare)))
            columns.append(Column(name=name, kind=ColumnKind.CATEGORICAL, nullable=nulls > 0,
                                  categories=categories))
        elif kind is ColumnKind.BOOLEAN:
            columns.append(Column(name=name, kind=kind, nullable=nulls > 0))
        else:
            lower, upper = values.min(), values.max()
            # A datetime read from text carries its format as the series name (_kind_of).
            fmt = (values.name or None) if kind is ColumnKind.DATETIME and series.dtype == \
                pl.String else None
            if kind is not ColumnKind.DATETIME:
                lower, upper = float(lower), float(upper)  # type: ignore[arg-type]
            columns.append(Column(name=name, kind=kind, nullable=nulls > 0, format=fmt,
                                  bounds=(lower, upper)))  # type: ignore[arg-type]
            review.append(ReviewFlag(
                column=name, issue="bounds_at_extremes",
                values=_review_values(lower, upper), suggestion=round_limits(lower, upper)))
    if problems and not lenient:
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
    return Schema(domain="inferred", columns=tuple(columns), excluded=tuple(excluded),
                  review=tuple(review))


def skeleton(schema: Schema) -> Schema:
    """Names, kinds and formats only (no bounds, no categories, no review notes): the public
    metadata a DP-learned domain starts from, once a person has reviewed and confirmed it."""
    columns = [Column(name=c.name, kind=c.kind, nullable=c.nullable, format=c.format)
               for c in schema.columns]
    return Schema(domain="inferred", columns=tuple(columns), excluded=schema.excluded)


def _review_values(lower: Any, upper: Any) -> tuple[Any, Any]:
    if isinstance(lower, datetime):
        return lower.isoformat(), upper.isoformat()
    return float(lower), float(upper)


def round_limits(lower: Any, upper: Any) -> tuple[Any, Any] | None:
    """Round public limits around ``[lower, upper]``, to offer instead of the data's extremes.

    Numbers go out to multiples of the power of ten just below the range's width (``17..90`` ->
    ``10..90``; ``3..99,999`` -> ``0..100,000``); datetimes to whole years. A person still decides
    whether they are public.
    """
    if isinstance(lower, datetime):
        return (datetime(lower.year, 1, 1).isoformat(),
                datetime(upper.year + 1, 1, 1).isoformat())
    low, high = float(lower), float(upper)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    width = high - low
    scale = width if width > 0 else max(abs(low), 1.0)
    step = 10.0 ** math.floor(math.log10(scale))
    return float(math.floor(low / step) * step), float(math.ceil(high / step) * step)
