"""Schema inference from a table. **Not differentially private.**

:func:`infer_schema` reads the data itself: the bounds it writes are the data's min/max and the
categories include values that a single person may hold. Its output is marked
``domain: inferred``; a DP run refuses it until a person reviews it and declares it public, or
replaces the domain with one learned under DP (:mod:`privsynth_core.privacy.domain`). Use it on
public or
development data, or as a draft to edit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
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
        pl.when(stripped.is_in(list(NULL_TOKENS))).then(None).otherwise(stripped).alias(series.name)
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


#: Values of a train/test split marker (lowercase).
SPLIT_VALUES = frozenset(
    {
        "train",
        "training",
        "test",
        "testing",
        "valid",
        "validation",
        "val",
        "dev",
        "holdout",
        "eval",
        "evaluation",
    }
)
SPLIT_NAME = re.compile(
    r"^(split|data_?split|subset|partition|fold|is_?train|is_?test|"
    r"train_?test|sample_?set)$",
    re.I,
)
_DECIMAL_COMMA = r"^[-+]?\d+,\d+$"
#: Floats beyond this are not read as integers (float64 holds every integer up to 2^53).
_EXACT_INT = 2.0**53


def _whole(values: pl.Series) -> bool:
    """Whether every (finite) value is a whole number that an int64 holds exactly."""
    return bool(((values.round(0) == values) & (values.abs() < _EXACT_INT)).all())


def _kind_of(series: pl.Series) -> tuple[ColumnKind | None, pl.Series, str | None, str]:
    """Return (kind, typed non-null values, problem, why); kind None means "text".

    ``why`` says in a few words what the guess rests on (for the table ``privsynth schema
    infer`` prints); it names no value of the data. A datetime column read from text comes back
    named after the format that read it.
    """
    values = series.drop_nulls()
    dtype = series.dtype
    if dtype == pl.Boolean:
        return ColumnKind.BOOLEAN, values, None, "boolean type in the file"
    if dtype in (pl.Date,) or isinstance(dtype, pl.Datetime):
        return ColumnKind.DATETIME, values.cast(pl.Datetime("us")), None, "date type in the file"
    if dtype.is_integer():
        if len(values) and values.is_in([0, 1]).all():
            return ColumnKind.BOOLEAN, values, None, "only the values 0 and 1"
        return ColumnKind.INTEGER, values.cast(pl.Int64), None, "integer type in the file"
    if dtype.is_float():
        finite = values.filter(values.is_finite()).cast(pl.Float64)
        if len(finite) and _whole(finite):
            return (
                ColumnKind.INTEGER,
                finite,
                None,
                ("whole numbers stored as decimals (integers with gaps, as pandas exports them)"),
            )
        return ColumnKind.CONTINUOUS, finite, None, "numbers with decimals"
    if dtype != pl.String:
        return None, values.cast(pl.String), None, "text"
    lowered = values.str.to_lowercase()
    if (
        lowered.is_in(["true", "false", "yes", "no"]).all()
        and lowered.n_unique() <= 2
        and (lowered.is_in(list(_TRUE)).any() or lowered.is_in(list(_FALSE)).any())
    ):
        return ColumnKind.BOOLEAN, values, None, "yes/no or true/false values"
    as_float = values.cast(pl.Float64, strict=False)
    numeric = int(as_float.is_not_null().sum())
    if numeric == len(values):
        finite = as_float.filter(as_float.is_finite())
        if not values.str.contains(r"[.eE]").any():
            if values.is_in(["0", "1"]).all():
                return ColumnKind.BOOLEAN, values, None, "only the values 0 and 1"
            return ColumnKind.INTEGER, as_float.cast(pl.Int64), None, "whole numbers"
        if len(finite) and _whole(finite) and not values.str.contains(r"[eE]").any():
            return (
                ColumnKind.INTEGER,
                finite,
                None,
                ("whole numbers written with '.0' (integers with gaps, as pandas exports them)"),
            )
        return ColumnKind.CONTINUOUS, as_float, None, "numbers with decimals"
    if (
        values.str.contains(_DECIMAL_COMMA).any()
        and values.str.contains(rf"{_DECIMAL_COMMA}|^[-+]?\d+$").all()
    ):
        example = values.filter(values.str.contains(_DECIMAL_COMMA))[0]
        return (
            None,
            values,
            (
                f"column {series.name!r} holds numbers written with a decimal comma (e.g. "
                f"{example!r}); privsynth reads '1.5', not '1,5': export the file with a decimal "
                f"point (and a separator other than the comma)"
            ),
            "",
        )
    if numeric >= 0.5 * len(values):
        text = values.filter(as_float.is_null())
        examples = ", ".join(repr(v) for v in text.unique(maintain_order=True).head(3).to_list())
        return (
            None,
            values,
            (
                f"column {series.name!r} mixes numbers ({numeric} values) and text "
                f"({len(values) - numeric} values, e.g. {examples}); clean the text out, or "
                f"declare the column categorical in a schema file"
            ),
            "",
        )
    fmt, dates, several = _date_format(values)
    if dates is not None:
        # the format, for the Column
        return ColumnKind.DATETIME, dates.alias(fmt or ""), None, f"dates written as {fmt}"
    if several:
        return (
            None,
            values,
            (
                f"column {series.name!r} holds dates in several formats ({', '.join(several)}); "
                f"declare it in a schema file as `kind: datetime` with the `format:` it is written "
                f"in (values in other formats are read as missing), or clean the column"
            ),
            "",
        )
    return None, values, None, "text with few distinct values"


def _is_split_marker(name: str, kind: ColumnKind | None, values: pl.Series) -> bool:
    """A column that marks rows as train/test/validation: by its values, or by its name when it
    holds a handful of values."""
    if (
        kind is None
        and values.dtype == pl.String
        and values.n_unique() >= 2
        and bool(values.str.strip_chars().str.to_lowercase().is_in(list(SPLIT_VALUES)).all())
    ):
        return True
    return (
        bool(SPLIT_NAME.match(name))
        and kind in (None, ColumnKind.INTEGER, ColumnKind.BOOLEAN)
        and values.n_unique() <= 10
    )


def _prose(values: pl.Series) -> bool:
    """Whether text reads like sentences (three or more words in most values), not codes."""
    words = values.cast(pl.String).str.strip_chars().str.count_matches(r"\s+") + 1
    return bool(words.median() >= 3)  # type: ignore[operator]


@dataclass(frozen=True)
class Draft:
    """An inferred schema and, per column, what the guess rests on.

    Attributes:
        schema: the draft schema (``domain: inferred``).
        why: column name -> a few words on why it got its kind (or was left out). Shown to the
            custodian by ``privsynth schema infer``; never written into a schema file.
    """

    schema: Schema
    why: dict[str, str] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    def rows(self) -> list[list[str]]:
        """One row per column of the data, in file order: name, kind (or "left out"), why,
        flags (or the reason code of a column left out)."""
        flagged: dict[str, list[str]] = {}
        for flag in self.schema.review:
            text = (
                "bounds are the data's min/max"
                if flag.issue == "bounds_at_extremes"
                else "rare categories"
            )
            flagged.setdefault(flag.column, []).append(f"review: {text}")
        rows = []
        for col in self.schema.columns:
            flags = (["nullable"] if col.nullable else []) + flagged.get(col.name, [])
            rows.append([col.name, str(col.kind), self.why.get(col.name, ""), "; ".join(flags)])
        for ex in self.schema.excluded:
            rows.append(
                [ex.name, "left out", self.why.get(ex.name) or _SHORT[ex.reason], ex.reason]
            )
        position = {name: i for i, name in enumerate(self.order)}
        return sorted(rows, key=lambda row: position.get(row[0], len(position)))


#: Why a column was left out, in a few words (the full text: :data:`EXCLUSION_TEXT`).
_SHORT = {
    "requested": "left out with --exclude",
    "id_like": "a different value in every row",
    "free_text": "sentences or notes",
    "many_values": "too many distinct text values",
    "split_marker": "marks train/test rows",
    "empty": "entirely empty",
    "constant": "one value only",
    "mixed": "cannot be read as one kind",
}


def infer_schema(
    frame: pl.DataFrame,
    *,
    exclude: Iterable[str] = (),
    max_categories: int = 1000,
    lenient: bool = False,
) -> Schema:
    """Infer a schema (kinds, nullability, domain) from ``frame``. **Reads the data: not DP.**

    See :func:`infer_draft` (this is its schema).

    Raises:
        SchemaError: as :func:`infer_draft`.
    """
    return infer_draft(
        frame, exclude=exclude, max_categories=max_categories, lenient=lenient
    ).schema


def infer_draft(
    frame: pl.DataFrame,
    *,
    exclude: Iterable[str] = (),
    max_categories: int = 1000,
    lenient: bool = False,
) -> Draft:
    """Infer a schema (kinds, nullability, domain) from ``frame``, with why each column got its
    kind. **Reads the data: not DP.**

    - Whole numbers are integers, also when written ``2005.0`` (a column of integers with
      missing values exported by pandas); a column of only 0 and 1 is boolean.
    - ID-like columns (a different value in every row, missing values aside), free text,
      text codes with too many distinct values and train/test split markers are left out and
      listed in :attr:`Schema.excluded` with a fixed reason code.
    - A column that is empty, holds one value only (missing values aside), mixes numbers and
      text, writes numbers with a decimal comma or dates in several formats is a problem: the
      inference refuses (each problem says what to do), or with ``lenient`` leaves it out.

    Args:
        frame: the data (CSV text or typed columns).
        exclude: columns to leave out on purpose.
        max_categories: text columns with more distinct values are not categories.
        lenient: leave out (with their reason) the columns that cannot be inferred, instead of
            refusing: for a draft a person completes by hand (the web app's schema table).

    Raises:
        SchemaError: a problem column (unless ``lenient``), or no column left; every problem is
            listed, each with what to do.
    """
    exclude = set(exclude)
    unknown = sorted(exclude - set(frame.columns))
    if unknown:
        raise SchemaError(f"cannot exclude column(s) not in the data: {', '.join(unknown)}")
    columns: list[Column] = []
    review: list[ReviewFlag] = []
    excluded = [ExcludedColumn(name=n, reason="requested") for n in sorted(exclude)]
    why: dict[str, str] = {}
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
        kind, values, problem, why[name] = _kind_of(series)
        if problem:
            problems.append(problem)
            excluded.append(ExcludedColumn(name=name, reason="mixed"))
            continue
        distinct = values.n_unique()
        if distinct == 1:
            besides = ", apart from missing values" if nulls else ""
            problems.append(
                f"column {name!r} holds one value only ({values[0]!r}{besides}); it carries no "
                f"information: exclude it (--exclude {name}) or declare it in a schema file"
            )
            excluded.append(ExcludedColumn(name=name, reason="constant"))
            continue
        if _is_split_marker(name, kind, values):
            excluded.append(ExcludedColumn(name=name, reason="split_marker"))
            continue
        # Unique among the values present (a missing value or two does not make an ID less so).
        unique = distinct == len(values) and len(values) >= MIN_ROWS_FOR_ID
        if kind is None or kind is ColumnKind.INTEGER:
            consecutive = (
                kind is ColumnKind.INTEGER
                and unique
                and int(values.max()) - int(values.min()) + 1 == len(values)  # type: ignore[arg-type]
            )
            named = bool(ID_NAME.search(name))
            nearly = named and len(values) >= MIN_ROWS_FOR_ID and distinct >= 0.9 * len(values)
            if (unique and (kind is None or consecutive or named)) or (kind is None and nearly):
                # Sentences differ from row to row too: notes are free text, not identifiers.
                prose = kind is None and _prose(values)
                excluded.append(
                    ExcludedColumn(name=name, reason="free_text" if prose else "id_like")
                )
                continue
        if kind is None:
            if distinct > max_categories or (
                distinct >= FREE_TEXT_MIN_DISTINCT and distinct > FREE_TEXT_DISTINCT_RATIO * n_rows
            ):
                excluded.append(
                    ExcludedColumn(
                        name=name, reason="free_text" if _prose(values) else "many_values"
                    )
                )
                continue
            counts = values.cast(pl.String).value_counts()
            categories = tuple(sorted(str(v) for v in counts[counts.columns[0]].to_list()))
            rare = sorted(str(v) for v, n in counts.iter_rows() if n < RARE_CATEGORY_ROWS)
            if rare:
                review.append(ReviewFlag(column=name, issue="rare_categories", values=tuple(rare)))
            columns.append(
                Column(
                    name=name,
                    kind=ColumnKind.CATEGORICAL,
                    nullable=nulls > 0,
                    categories=categories,
                )
            )
        elif kind is ColumnKind.BOOLEAN:
            columns.append(Column(name=name, kind=kind, nullable=nulls > 0))
        else:
            lower, upper = values.min(), values.max()
            # A datetime read from text carries its format as the series name (_kind_of).
            fmt = (
                (values.name or None)
                if kind is ColumnKind.DATETIME and series.dtype == pl.String
                else None
            )
            if kind is not ColumnKind.DATETIME:
                lower, upper = float(lower), float(upper)  # type: ignore[arg-type]
            columns.append(
                Column(
                    name=name,
                    kind=kind,
                    nullable=nulls > 0,
                    format=fmt,
                    bounds=(lower, upper),  # type: ignore[arg-type]
                )
            )
            review.append(
                ReviewFlag(
                    column=name,
                    issue="bounds_at_extremes",
                    values=_review_values(lower, upper),
                    suggestion=round_limits(lower, upper),
                )
            )
    for ex in excluded:
        why[ex.name] = _SHORT[ex.reason]
    if problems and not lenient:
        raise SchemaError(
            f"cannot infer a schema ({len(problems)} problem(s)); fix the data or write a schema "
            f"file (see `privsynth schema infer --help`):",
            problems,
        )
    if not columns:
        raise SchemaError(
            "no column is left to synthesise after leaving out ID-like, free-text and other "
            "columns; if the file is not comma-separated, give its --separator",
            [f"{e.name}: {e.text}" for e in excluded],
        )
    schema = Schema(
        domain="inferred", columns=tuple(columns), excluded=tuple(excluded), review=tuple(review)
    )
    return Draft(schema, {n: w for n, w in why.items() if w}, tuple(frame.columns))


def skeleton(schema: Schema) -> Schema:
    """Names, kinds and formats only (no bounds, no categories, no review notes): the public
    metadata a DP-learned domain starts from, once a person has reviewed and confirmed it."""
    columns = [
        Column(name=c.name, kind=c.kind, nullable=c.nullable, format=c.format)
        for c in schema.columns
    ]
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
        return (datetime(lower.year, 1, 1).isoformat(), datetime(upper.year + 1, 1, 1).isoformat())
    low, high = float(lower), float(upper)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    width = high - low
    scale = width if width > 0 else max(abs(low), 1.0)
    step = 10.0 ** math.floor(math.log10(scale))
    return float(math.floor(low / step) * step), float(math.ceil(high / step) * step)
