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
  (:mod:`privsynth_core.domain`).

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
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: ColumnKind
    nullable: bool = False
    bounds: tuple[Bound, Bound] | None = None
    categories: tuple[str, ...] | None = None

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


class ExcludedColumn(BaseModel):
    """A column of the data that is not synthesised, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    reason: str


class Schema(BaseModel):
    """The columns to synthesise, their domains, and where the domain came from.

    Attributes:
        columns: the synthesised columns, in output order.
        domain: ``"inferred"``, ``"public"`` or ``"dp"`` (see the module docstring).
        excluded: columns of the data left out of synthesis (ID-like, free text, ...).
        version: the file format version.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = SCHEMA_FORMAT_VERSION
    domain: DomainMode = "inferred"
    columns: tuple[Column, ...]
    excluded: tuple[ExcludedColumn, ...] = ()

    @model_validator(mode="after")
    def _check_columns(self) -> Schema:
        if not self.columns:
            raise ValueError("a schema needs at least one column")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
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

    def confirm_public(self) -> Schema:
        """Return this schema declared public: the user vouches that nothing in its domain
        (bounds, categories) reveals anything about individuals in the private data.

        Raises:
            SchemaError: a column has no domain yet.
        """
        if self.missing_domains:
            raise SchemaError(
                "cannot declare the domain public: these columns have no domain yet; add "
                "bounds/categories or learn them with DP",
                self.missing_domains,
            )
        return self.model_copy(update={"domain": "public"})

    def with_columns(self, columns: list[Column], *, domain: DomainMode) -> Schema:
        """A copy with the given columns and domain mode."""
        return Schema(version=self.version, domain=domain, columns=tuple(columns),
                      excluded=self.excluded)

    # -- files -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (nulls and empty lists left out, for a readable file)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if not data.get("excluded"):
            data.pop("excluded", None)
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
            raise SchemaError(f"schema file {path} does not exist (or is not a file)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SchemaError(f"cannot read schema file {path}: {exc}") from None
        return cls.from_dict(data, source=f"schema file {path}")
