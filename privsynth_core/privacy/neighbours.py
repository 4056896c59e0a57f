"""The neighbour check: release for a table and for the table plus one adversarial row, and diff.

Differential privacy is a statement about neighbouring tables: whatever is released for ``D``
must be (almost) as likely for ``D`` plus one person. The mechanisms are random, so two releases
always differ in their mechanism outputs; the check makes everything else visible by
*coupling* the two releases (:mod:`.coupling`: the released row count and a DP-learned domain
come out the same on both sides) and then comparing the two release folders file by file, field
by field. Every difference must be listed in
:data:`privsynth_core.privacy.release.RELEASE_FIELDS` as the output of a charged mechanism (or a
random id, or the release date). Anything else (a hash of the rows, the exact row count, a kind
or a bound read off the rows, a timing, a value that only one row can move) is a leak, and is
reported as one.

The adversarial row (:func:`adversarial_row`) is built from the schema to be as disruptive as
one record can be, in every column at once, while still being kept by conforming (so the
neighbour really has one more row everywhere, its size included): a number far beyond its
bounds, a category nobody else has, a fractional value in an integer column and a word in a
boolean (each of which would flip an inferred kind), a date written in another format.

Used by the test suite for every DP generator, domain mode and front end, and by ``privsynth
audit --release RUN_DIR`` on the custodian's own data.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from ..schema import ColumnKind, Schema
from .coupling import coupled
from .release import ReleaseField, field_allowed

_MISSING = "<absent>"


@dataclass(frozen=True)
class Difference:
    """One field that differs between the two releases.

    Attributes:
        path: the file, relative to the release folder.
        field: the dotted field (``<content>``, ``<header>``, ``<row count>``, ``<rows>`` for
            whole files and tables; ``<file>`` when the file exists on one side only).
        first, second: the two values (shortened).
        allowed: the entry of ``RELEASE_FIELDS`` that lets it differ; None: a leak.
    """

    path: str
    field: str
    first: Any
    second: Any
    allowed: ReleaseField | None

    def describe(self) -> str:
        """One line for people."""
        why = (
            f"allowed: {self.allowed.source}"
            if self.allowed
            else "NOT allowed: depends on the rows outside a charged mechanism"
        )
        return f"{self.path} :: {self.field}: {_short(self.first)} vs {_short(self.second)} ({why})"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if not value:
            yield prefix, {}
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        if not value:
            yield prefix, []
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}.{index}" if prefix else str(index))
    else:
        yield prefix, value


def _table_fields(frame: pl.DataFrame) -> dict[str, Any]:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    return {
        "<header>": frame.columns,
        "<row count>": frame.height,
        "<rows>": hashlib.sha256(buffer.getvalue()).hexdigest(),
    }


def release_fields(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every file of a release folder, as ``{relative path: {field: value}}``.

    JSON and YAML files are flattened to dotted fields; tables (CSV, Parquet) become their
    header, their row count and a digest of their rows; anything else is one ``<content>``
    digest.
    """
    import yaml

    folder = Path(folder)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        name = path.name.lower()
        if name.endswith(".json"):
            out[rel] = dict(_flatten(json.loads(path.read_text(encoding="utf-8"))))
        elif name.endswith((".yaml", ".yml")):
            out[rel] = dict(_flatten(yaml.safe_load(path.read_text(encoding="utf-8"))))
        elif name.endswith(".csv"):
            out[rel] = _table_fields(pl.read_csv(path, infer_schema=False))
        elif name.endswith(".parquet"):
            out[rel] = _table_fields(pl.read_parquet(path))
        else:
            out[rel] = {"<content>": hashlib.sha256(path.read_bytes()).hexdigest()}
    return out


def diff_releases(first: str | Path, second: str | Path) -> list[Difference]:
    """Every field that differs between two release folders, each marked allowed or not."""
    a, b = release_fields(first), release_fields(second)
    differences = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            differences.append(Difference(rel, "<file>", rel in a, rel in b, None))
            continue
        fields_a, fields_b = a[rel], b[rel]
        for name in sorted(set(fields_a) | set(fields_b)):
            value_a, value_b = fields_a.get(name, _MISSING), fields_b.get(name, _MISSING)
            if value_a != value_b:
                differences.append(
                    Difference(rel, name, value_a, value_b, field_allowed(rel, name))
                )
    return differences


def leaks(differences: list[Difference]) -> list[Difference]:
    """The differences that no charged mechanism explains."""
    return [d for d in differences if d.allowed is None]


# -- the adversarial row ------------------------------------------------------------------------


def adversarial_row(schema: Schema, template: pl.DataFrame) -> pl.DataFrame:
    """One row, as raw text like a CSV holds it, that is adversarial in every column at once,
    and still kept by :func:`~privsynth_core.validation.conform` (so it really is one more
    person in everything the mechanisms see, row count included).

    Per column: a number far beyond its bounds (clamped); in a nullable column, a value that
    would flip an inferred kind (a fractional integer, a word in a boolean, a category nobody
    else has: read as missing); a date ten years past the bound, written in another format;
    in a column that is not nullable, where a missing value would drop the row, a category at
    the end of the list. ``template`` gives the file's columns (those outside the schema get a
    new, unique value, as an excluded ID column would).
    """
    row: dict[str, str] = {name: "" for name in template.columns}
    by_name = {c.name: c for c in schema.columns}
    for name in template.columns:
        column = by_name.get(name)
        if column is None:
            row[name] = "neighbour-0001"
            continue
        upper = column.bounds[1] if column.bounds else None
        if column.kind is ColumnKind.CATEGORICAL:
            row[name] = (
                "Atlantis (a category nobody else has)"
                if column.nullable
                else (column.categories or ("Atlantis",))[-1]
            )
        elif column.kind is ColumnKind.BOOLEAN:
            row[name] = "maybe" if column.nullable else "true"
        elif column.kind is ColumnKind.INTEGER:
            big = abs(float(upper)) * 10 + 1000 if upper is not None else 1e6  # type: ignore[arg-type]
            # Fractional (an inferred integer would become a float) where it may be missing.
            row[name] = f"{big:.0f}.5" if column.nullable else f"{big:.0f}"
        elif column.kind is ColumnKind.CONTINUOUS:
            big = abs(float(upper)) * 1000 + 1e6 if upper is not None else 1e9  # type: ignore[arg-type]
            row[name] = repr(big)
        else:
            stamp = (upper if isinstance(upper, datetime) else datetime(2000, 1, 1)) + timedelta(
                days=3650
            )
            row[name] = stamp.strftime("%d.%m.%Y")  # another format than the file's
    return pl.DataFrame({k: [v] for k, v in row.items()}, schema={k: pl.String for k in row})


def with_neighbour(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """``frame`` (raw text) plus the adversarial row, appended last."""
    text = frame.select(pl.col(c).cast(pl.String) for c in frame.columns)
    return pl.concat([text, adversarial_row(schema, text)], how="vertical")


# -- running a coupled pair ---------------------------------------------------------------------


@contextmanager
def scratch_home(path: Path) -> Iterator[Path]:
    """Point ``$PRIVSYNTH_HOME`` at ``path`` (a throwaway ledger and store) inside the block."""
    from .ledger import HOME_ENV

    before = os.environ.get(HOME_ENV)
    os.environ[HOME_ENV] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = before


def coupled_pair(
    release: Callable[[str], Path], *, first: str = "first", second: str = "second"
) -> list[Difference]:
    """Run ``release(side)`` for both sides of a coupled pair and diff the folders it returns.

    ``release`` makes one release (in whatever scratch home it sets up for ``side``) and returns
    its release folder; the first call records the mechanism outputs, the second replays them.
    """
    with coupled() as replay:
        folder_a = release(first)
        replay()
        folder_b = release(second)
    return diff_releases(folder_a, folder_b)


@dataclass
class ReleaseCheck:
    """The verdict of :func:`check_run_release`."""

    run_dir: Path
    differences: list[Difference]

    @property
    def leaks(self) -> list[Difference]:
        """Differences no charged mechanism explains."""
        return leaks(self.differences)

    def report(self) -> str:
        """Markdown for people."""
        lines = [
            f"# Neighbour check of {self.run_dir}",
            "",
            "The run was released again for its table and for its table plus one "
            "adversarial row (coupled: the same row count and domain on both sides), in "
            "scratch ledgers; the two release folders were compared field by field.",
            "",
        ]
        if self.leaks:
            lines += [
                f"**{len(self.leaks)} field(s) differ that no charged mechanism "
                f"explains: a leak.**",
                "",
            ] + [f"- {d.describe()}" for d in self.leaks]
        else:
            lines.append(
                "**No leak:** every field that differs is the output of a charged "
                "mechanism, a random id or the date."
            )
        allowed = [d for d in self.differences if d.allowed is not None]
        if allowed:
            lines += ["", "Differences explained by a mechanism:", ""]
            lines += [f"- {d.describe()}" for d in allowed]
        return "\n".join(lines) + "\n"


def check_run_release(run_dir: str | Path, work: str | Path) -> ReleaseCheck:
    """Re-run a published run on its table and on the table plus one adversarial row, coupled,
    in scratch homes under ``work``, and diff the two releases.

    Custodian-only: it reads the private table; the scratch ledgers are thrown away with
    ``work``; the user's ledger is neither charged nor consulted.

    Raises:
        InputFileError: ``run_dir`` is not a published run, or its input is gone.
    """
    from ..runs.config import run_config_from_dict
    from ..runs.rundir import custodian_manifest, run_pipeline
    from ..table import fingerprint_frame, read_frame
    from .ledger import PrivacyLedger, budget_key
    from .release import RELEASE_DIR

    run_dir, work = Path(run_dir), Path(work)
    config_data = dict(custodian_manifest(run_dir)["config"])
    schema = Schema.load(config_data["schema_path"])
    original = read_frame(config_data["input"])
    neighbour = with_neighbour(original, schema)
    tables = {"first": original, "second": neighbour}

    def release(side: str) -> Path:
        folder = work / side
        folder.mkdir(parents=True, exist_ok=True)
        data_path = folder / "input.csv"
        tables[side].write_csv(data_path)
        config = run_config_from_dict(
            {
                **config_data,
                "input": str(data_path),
                "holdout": None,
                "metrics": [],
                "output_dir": str(folder / "run"),
            }
        )
        with scratch_home(folder / "home"):
            frame = read_frame(data_path)
            PrivacyLedger().set_budget(
                budget_key(config.source, fingerprint_frame(frame)),
                epsilon=10 * ((config.epsilon or 0) + (config.domain_epsilon or 0)) + 10,
                delta=0.5,
                label="neighbour check (throwaway)",
            )
            run_pipeline(config)
        return folder / "run" / RELEASE_DIR

    return ReleaseCheck(run_dir, coupled_pair(release))


__all__ = [
    "Difference",
    "ReleaseCheck",
    "adversarial_row",
    "check_run_release",
    "coupled_pair",
    "diff_releases",
    "leaks",
    "release_fields",
    "scratch_home",
    "with_neighbour",
]
