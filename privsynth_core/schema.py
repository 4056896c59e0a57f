"""Schema and domain: what each column is, and which values it may take.

A :class:`Schema` lists one :class:`Column` per synthesised column with its kind, nullability and
**domain** (bounds for numbers and datetimes, the category list for categoricals). The domain is a
privacy input (DESIGN §4.1): where it came from is recorded in :attr:`Schema.domain`:

- ``"inferred"``: read off the private data by :func:`privsynth_core.inference.infer_schema`. Not
  private (bounds are the data's min/max, categories include rare values); usable for non-DP
  runs and as a starting point, but a DP run refuses it until a person reviews it and confirms it
  as public (:meth:`Schema.confirm_public`, or ``domain: public`` in the file).
- ``"public"``: declared public by the user: written by hand, taken from documentation, or
  inferred and then explicitly confirmed. The run manifest records it as "declared public".
- ``"dp"``: learned from the private data with DP mechanisms charged to the ledger
  (:mod:`privsynth_core.privacy.domain`).

Schemas serialise to a small YAML or JSON file that a person can read and edit, and round-trip
exactly.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from .errors import SchemaError
from .fileio import atomic_write_text

DomainMode = Literal["inferred", "public", "dp"]
SCHEMA_FORMAT_VERSION = 1


class ColumnKind(StrEnum):
    """The kinds of column privsynth synthesises."""

    CONTINUOUS = "continuous"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"

    @property
    def is_numeric(self) -> bool:
        """Continuous and integer columns have numeric bounds."""
        return self in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER)


Bound = float | datetime


class Column(BaseModel):
    """One column: its name, kind, nullability and domain.

    Attributes:
        name: the column name in the data.
        kind: continuous, integer, categorical, boolean or datetime.
        nullable: whether nulls may appear (synthetic nulls are generated at a learned rate).
        bounds: ``[lower, upper]`` for continuous, integer and datetime columns (ISO-8601
            strings in files for datetimes); values outside are clamped before training.
        categories: the allowed values of a categorical column, as strings; other values in the
            data are treated as missing, and never appear in synthetic output.
        format: how a datetime column is written in text files (a ``strftime`` pattern such as
            ``"%d/%m/%Y"``). Without one, each value is read by the first of a fixed list of ISO
            8601 patterns that fits it (:data:`privsynth_core.validation.DATETIME_FORMATS`),
            value by value, so no row decides how the others are read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: ColumnKind
    nullable: bool = False
    bounds: tuple[Bound, Bound] | None = None
    categories: tuple[str, ...] | None = None
    format: str | None = None

    @model_validator(mode="after")
    def _check_domain(self) -> Column:
        kind, name = self.kind, self.name
        if kind.is_numeric or kind is ColumnKind.DATETIME:
            if self.categories is not None:
                raise ValueError(f"column {name!r}: a {kind} column has bounds, not categories")
            if self.bounds is not None:
                lower, upper = self.bounds
                want = datetime if kind is ColumnKind.DATETIME else float
                if not (isinstance(lower, want) and isinstance(upper, want)):
                    raise ValueError(
                        f"column {name!r}: {kind} bounds must be "
                        f"{'ISO-8601 datetimes' if want is datetime else 'numbers'}"
                    )
                finite = not isinstance(lower, float) or (
                    math.isfinite(lower) and math.isfinite(float(upper))  # type: ignore[arg-type]
                )
                if not finite:
                    raise ValueError(f"column {name!r}: bounds must be finite")
                if lower > upper:  # type: ignore[operator]
                    raise ValueError(f"column {name!r}: lower bound {lower} > upper bound {upper}")
        elif kind is ColumnKind.CATEGORICAL:
            if self.bounds is not None:
                raise ValueError(
                    f"column {name!r}: a categorical column has categories, not bounds"
                )
            if self.categories is not None:
                if len(self.categories) == 0:
                    raise ValueError(f"column {name!r}: the category list is empty")
                if len(set(self.categories)) != len(self.categories):
                    raise ValueError(f"column {name!r}: the category list has duplicates")
        elif self.bounds is not None or self.categories is not None:
            raise ValueError(f"column {name!r}: a boolean column takes no bounds or categories")
        if self.format is not None and kind is not ColumnKind.DATETIME:
            raise ValueError(f"column {name!r}: only a datetime column takes a format")
        return self

    @field_serializer("bounds")
    def _dump_bounds(self, bounds: tuple[Bound, Bound] | None) -> list[Any] | None:
        if bounds is None:
            return None
        if self.kind is ColumnKind.INTEGER:
            return [int(b) if float(b).is_integer() else b for b in bounds]  # type: ignore[arg-type]
        if self.kind is ColumnKind.DATETIME:
            return [b.isoformat() for b in bounds]  # type: ignore[union-attr]
        return list(bounds)

    @property
    def has_domain(self) -> bool:
        """Whether the column's domain is fully specified (booleans need none)."""
        if self.kind is ColumnKind.BOOLEAN:
            return True
        if self.kind is ColumnKind.CATEGORICAL:
            return self.categories is not None
        return self.bounds is not None


ExclusionReason = Literal[
    "requested", "id_like", "free_text", "many_values", "split_marker", "empty", "constant", "mixed"
]

#: What each exclusion code means; fixed texts, so no count or value of the data is ever stored
#: with a schema (and excluded columns never appear in a release at all).
EXCLUSION_TEXT: dict[str, str] = {
    "requested": "left out on request",
    "id_like": "ID-like: a different value in (almost) every row; synthesising it would copy "
    "identifiers (add it back in the schema file only if it is not an identifier)",
    "free_text": "free text (sentences, notes): too many distinct values to treat as "
    "categories, and text can name people; privsynth does not synthesise it",
    "many_values": "too many distinct values to treat as categories (codes or identifiers?); "
    "declare it categorical in the schema file only if every value is public "
    "and it is not an identifier",
    "split_marker": "a train/test split marker, not data: synthesising it would invent a split "
    "(add it back in the schema file if it is data)",
    "empty": "entirely empty",
    "constant": "holds one value only (apart from missing values): it carries no information",
    "mixed": "mixed values (numbers and text, or dates in several formats): declare its kind "
    "(and a date format) in the schema to keep it",
}


def _reason_code(value: Any) -> Any:
    """Read schema files written before reasons were codes (free text) as their code."""
    if not isinstance(value, str) or value in EXCLUSION_TEXT:
        return value
    lowered = value.lower()
    for code, marker in (
        ("id_like", "id-like"),
        ("free_text", "free text"),
        ("requested", "on request"),
    ):
        if marker in lowered:
            return code
    return value


class ExcludedColumn(BaseModel):
    """A column of the data that is not synthesised, and why (a fixed code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    reason: ExclusionReason

    @field_validator("reason", mode="before")
    @classmethod
    def _legacy(cls, value: Any) -> Any:
        return _reason_code(value)

    @property
    def text(self) -> str:
        """What the reason means, for people."""
        return EXCLUSION_TEXT[self.reason]


ReviewIssue = Literal["bounds_at_extremes", "rare_categories"]


class ReviewFlag(BaseModel):
    """Something in an inferred draft a person must look at before declaring it public.

    Attributes:
        column: the column.
        issue: ``bounds_at_extremes`` (the bounds are the data's own min and max, so they reveal
            the most extreme people) or ``rare_categories`` (categories held by few rows).
        values: the flagged values: ``[min, max]`` or the rare categories. The flag is resolved
            when the file no longer holds them.
        suggestion: a public alternative (round limits), when there is one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    issue: ReviewIssue
    values: tuple[Any, ...]
    suggestion: tuple[Any, ...] | None = None

    def describe(self) -> str:
        """One line for people."""
        if self.issue == "bounds_at_extremes":
            hint = (
                f"; round public limits would be {list(self.suggestion)}" if self.suggestion else ""
            )
            return (
                f"column {self.column!r}: the bounds {list(self.values)} are the data's own "
                f"min and max{hint}, or learn them with DP (--domain dp)"
            )
        shown = ", ".join(repr(v) for v in self.values[:10])
        more = f" and {len(self.values) - 10} more" if len(self.values) > 10 else ""
        return (
            f"column {self.column!r}: {len(self.values)} rare categor"
            f"{'y' if len(self.values) == 1 else 'ies'} ({shown}{more}) held by few rows; "
            f"remove them from the list unless they are public knowledge"
        )


class Schema(BaseModel):
    """The columns to synthesise, their domains, and where the domain came from.

    Attributes:
        columns: the synthesised columns, in output order.
        domain: ``"inferred"``, ``"public"`` or ``"dp"`` (see the module docstring).
        excluded: columns of the data left out of synthesis (ID-like, free text, ...).
        review: in an inferred draft, what a person must look at before declaring it public.
        version: the file format version.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = SCHEMA_FORMAT_VERSION
    domain: DomainMode = "inferred"
    columns: tuple[Column, ...]
    excluded: tuple[ExcludedColumn, ...] = ()
    review: tuple[ReviewFlag, ...] = ()

    @model_validator(mode="after")
    def _check_columns(self) -> Schema:
        if not self.columns:
            raise ValueError("a schema needs at least one column")
        names = [c.name for c in self.columns]
        dupes = (
            sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
        )
        if dupes:
            raise ValueError(f"duplicate column names: {', '.join(dupes)}")
        if self.version != SCHEMA_FORMAT_VERSION:
            raise ValueError(f"unsupported schema version {self.version}")
        return self

    # -- access ------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name``.

        Raises:
            SchemaError: no such column.
        """
        for col in self.columns:
            if col.name == name:
                return col
        raise SchemaError(f"the schema has no column {name!r}; columns: {', '.join(self.names)}")

    @property
    def missing_domains(self) -> list[str]:
        """Columns whose domain is not specified yet."""
        return [c.name for c in self.columns if not c.has_domain]

    def unresolved_review(self) -> list[ReviewFlag]:
        """Review flags the file still holds (bounds still at the extremes, rare categories
        still listed)."""
        out = []
        by_name = {c.name: c for c in self.columns}
        for flag in self.review:
            col = by_name.get(flag.column)
            if col is None:
                continue
            if flag.issue == "bounds_at_extremes":
                if col.bounds is not None and [_plain(b) for b in col.bounds] == [
                    _plain(v) for v in flag.values
                ]:
                    out.append(flag)
            elif set(col.categories or ()) & {str(v) for v in flag.values}:
                out.append(flag)
        return out

    def confirm_public(self, *, accept_flagged: bool = False) -> Schema:
        """Return this schema declared public: the user vouches that nothing in its domain
        (bounds, categories) reveals anything about individuals in the private data.

        A skeleton (names and kinds, no bounds or categories) may be confirmed too: its names
        and kinds become public metadata, and its domain is then learned with DP.

        Args:
            accept_flagged: the person has read the review flags that are still unresolved
                (bounds at the data's extremes, rare categories) and declares them public anyway.

        Raises:
            SchemaError: review flags are unresolved and not accepted; every one is listed.
        """
        unresolved = self.unresolved_review()
        if unresolved and not accept_flagged:
            raise SchemaError(
                "the draft still holds values read off the private rows that need a decision "
                "(edit the file, `privsynth schema confirm --round-bounds`, learn the domain with "
                "DP, or `--accept-flagged` once you have checked they are public):",
                [f.describe() for f in unresolved],
            )
        return self.model_copy(update={"domain": "public", "review": ()})

    def with_round_bounds(self) -> Schema:
        """A copy whose flagged bounds are replaced by their round public suggestions."""
        suggestions = {
            f.column: f.suggestion
            for f in self.unresolved_review()
            if f.issue == "bounds_at_extremes" and f.suggestion
        }
        # Validated, not copied: a datetime's suggestion is ISO text until parsed.
        columns = [
            Column.model_validate({**c.model_dump(), "bounds": list(suggestions[c.name])})
            if c.name in suggestions
            else c
            for c in self.columns
        ]
        return self.model_copy(update={"columns": tuple(columns)})

    def release_dict(self) -> dict[str, Any]:
        """The schema as a release may hold it: no excluded columns, no review notes."""
        data = self.to_dict()
        data.pop("excluded", None)
        data.pop("review", None)
        return data

    def with_columns(self, columns: list[Column], *, domain: DomainMode) -> Schema:
        """A copy with the given columns and domain mode (review notes dropped)."""
        return Schema(
            version=self.version, domain=domain, columns=tuple(columns), excluded=self.excluded
        )

    def save_release(self, path: str | Path) -> Path:
        """Write the schema as a release holds it (:meth:`release_dict`), YAML, atomically."""
        header = self.to_yaml().split("\n", 1)[0] + "\n"
        atomic_write_text(
            path, header + yaml.safe_dump(self.release_dict(), sort_keys=False, allow_unicode=True)
        )
        return Path(path)

    # -- files -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (nulls and empty lists left out, for a readable file)."""
        data = self.model_dump(mode="json", exclude_none=True)
        for key in ("excluded", "review"):
            if not data.get(key):
                data.pop(key, None)
        for col in data["columns"]:
            if col.get("nullable") is False:
                col.pop("nullable")
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "schema") -> Schema:
        """Build a schema from a dict as written by :meth:`to_dict`.

        Raises:
            SchemaError: the dict is not a valid schema; every problem is listed.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(top level)"
                given = err.get("input")
                shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
                problems.append(f"{where}: {err['msg']}{shown}")
            raise SchemaError(f"{source} is not a valid privsynth schema:", problems) from None

    def to_yaml(self) -> str:
        """The schema as YAML, with a header comment saying what the domain mode means."""
        header = {
            "inferred": "# Domain INFERRED from the private data: bounds are its min/max and the\n"
            "# categories include rare values. Review, edit, then set `domain: public` to declare\n"
            "# it public (or learn it with DP) before a DP run.\n",
            "public": "# Domain declared PUBLIC: nothing here may reveal an individual's data.\n",
            "dp": "# Domain learned with DP mechanisms, charged to the privacy ledger.\n",
        }[self.domain]
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write the schema to ``path`` (``.json``, else YAML), atomically."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) if path.suffix == ".json" else self.to_yaml()
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read a schema file (YAML or JSON).

        Raises:
            SchemaError: the file is missing, unreadable or not a valid schema.
        """
        path = Path(path)
        if not path.is_file():
            raise SchemaError(
                f"schema file {path} does not exist (or is not a file); give the "
                f"schema written by `privsynth schema infer` (and reviewed)"
            )
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise SchemaError(
                f"schema file {path} is not UTF-8 text; save it as UTF-8 YAML or JSON"
            ) from None
        except OSError as exc:
            raise SchemaError(f"cannot read schema file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            what = getattr(exc, "problem", None) or "it is not valid YAML"
            raise SchemaError(
                f"schema file {path} is not valid YAML{where} ({what}); fix "
                f"that line, or write the schema again with `privsynth schema "
                f"infer`"
            ) from None
        if not isinstance(data, dict):
            shown = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
            raise SchemaError(
                f"schema file {path} is {shown}; a schema is a mapping with "
                f"`columns:` (write one with `privsynth schema infer DATA -o "
                f"{path.name}`)"
            )
        return cls.from_dict(data, source=f"schema file {path}")


def _plain(value: Any) -> Any:
    """Bounds as they compare in review flags: datetimes as ISO text, numbers as floats."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, int | float):
        return float(value)
    return value
