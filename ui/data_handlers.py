"""What the Data tab does: add a table, show and edit its inferred schema, fix its domain.

The functions take the user's :class:`~privsynth_ui.workspace.Workspace` and plain values and
call privsynth_core; they know nothing about Gradio (``app.py`` wires them to the page). Errors
are :class:`~privsynth_core.errors.PrivsynthError` subclasses with messages for the user.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import DomainError, InputFileError, SchemaError
from privsynth_core.schema import ColumnKind, ExcludedColumn, Schema

from .workspace import DatasetRecord, NotFoundError, Workspace, new_id, now

if TYPE_CHECKING:
    from .settings import UISettings

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
UPLOAD_TYPES = [".csv", ".tsv", ".gz", ".parquet", ".pq"]
SCHEMA_HEADERS = ["column", "kind", "nulls", "lower", "upper", "categories (separated by |)"]
HOLDOUT_SEED = 0
_MAX_LISTED = 500


def _suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in TABLE_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix
    raise InputFileError(f"{name}: privsynth reads CSV (.csv, .csv.gz, .tsv) and Parquet "
                         f"(.parquet) files")


def _check_size(path: Path, limit: int, shown: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise InputFileError(f"{shown} is {size / 2**20:.1f} MB, over this server's limit of "
                             f"{limit / 2**20:.1f} MB; use a smaller extract, or ask the operator "
                             f"to raise the limit")


# -- adding a dataset -------------------------------------------------------------------------


def add_uploaded(ws: Workspace, settings: UISettings, upload: str | Path | None, *, name: str,
                 holdout_share: float, exclude: str) -> DatasetRecord:
    """Add a file the user uploaded; the upload's temporary copy is deleted afterwards.

    Raises:
        InputFileError: no file, an unsupported type, too large, or unreadable.
        SchemaError: no schema can be inferred (the problems say what to leave out).
    """
    if not upload:
        raise InputFileError("choose a CSV or Parquet file to upload first")
    path = Path(upload).resolve()
    uploads = settings.cache_dir.resolve()
    # Only a file that really came through the upload route: a client of the HTTP API could
    # otherwise name any path on the server (and have it read, then deleted).
    if not path.is_relative_to(uploads) or path.is_relative_to(uploads / "staging") or \
            not path.is_file():
        raise InputFileError("refused: that file was not uploaded to this server; upload a "
                             "CSV or Parquet file")
    try:
        _suffix(path.name)
        _check_size(path, settings.max_upload_bytes, path.name)
        return _add(ws, settings, path, name=name or path.name, source=f"upload: {path.name}",
                    holdout_share=holdout_share, exclude=exclude)
    finally:
        # Private rows must not linger in the server's shared upload cache.
        path.unlink(missing_ok=True)


def server_files(settings: UISettings) -> list[str]:
    """The tables in the operator's allowed folders, as ``folder/relative/path`` choices."""
    out: list[str] = []
    for label, root in _roots(settings).items():
        for path in sorted(root.rglob("*")):
            if len(out) >= _MAX_LISTED:
                return out
            if path.is_file() and path.name.lower().endswith(TABLE_SUFFIXES) and \
                    _inside(path, root):
                out.append(f"{label}/{path.relative_to(root).as_posix()}")
    return out


def resolve_server_file(settings: UISettings, choice: str) -> Path:
    """The file a ``folder/relative/path`` choice names, if it lies inside an allowed folder.

    Raises:
        InputFileError: the choice escapes the allowed folders (``..``, absolute paths,
            symbolic links pointing outside), or names no table file.
    """
    roots = _roots(settings)
    allowed = ", ".join(roots) or "(none: the operator allowed no server folder)"
    text = str(choice or "").strip().replace("\\", "/")
    refused = InputFileError(f"refused: {text[:200]!r} is not a table file inside the server "
                             f"folders this server allows ({allowed})")
    if not text:
        raise InputFileError("choose a file from the server folders first")
    label, _, rest = text.partition("/")
    parts = rest.split("/")
    if label not in roots or not rest or text.startswith("/") or ".." in parts:
        raise refused
    root = roots[label]
    path = (root / rest).resolve()
    if not _inside(path, root) or not path.is_file():
        raise refused
    _suffix(path.name)
    return path


def add_server_file(ws: Workspace, settings: UISettings, choice: str, *, name: str,
                    holdout_share: float, exclude: str) -> DatasetRecord:
    """Add a table from an operator-allowed server folder (copied into the workspace)."""
    path = resolve_server_file(settings, choice)
    _check_size(path, settings.max_upload_bytes, choice)
    return _add(ws, settings, path, name=name or path.name, source=f"server: {choice}",
                holdout_share=holdout_share, exclude=exclude)


def _roots(settings: UISettings) -> dict[str, Path]:
    roots: dict[str, Path] = {}
    for folder in settings.data_dirs:
        label, n = folder.name or "data", 2
        while label in roots:
            label, n = f"{folder.name}-{n}", n + 1
        roots[label] = folder
    return roots


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _add(ws: Workspace, settings: UISettings, source_path: Path, *, name: str, source: str,
         holdout_share: float, exclude: str) -> DatasetRecord:
    from privsynth_core.inference import infer_schema
    from privsynth_core.table import fingerprint_frame, read_frame

    if not 0 <= holdout_share <= 0.5:
        raise InputFileError("the holdout share must be between 0 and 0.5")
    frame = read_frame(source_path, max_bytes=settings.max_upload_bytes)
    excluded = [c.strip() for c in exclude.split(",") if c.strip()]
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=HOLDOUT_SEED)
    n_holdout = round(frame.height * holdout_share)
    if holdout_share and frame.height - n_holdout < 10:
        raise InputFileError(f"{name} has {frame.height} rows: too few to keep a holdout; set "
                             f"the holdout share to 0")
    train = shuffled.head(frame.height - n_holdout) if n_holdout else frame
    # Lenient: a column that cannot be inferred is left out of the draft (with its reason), not
    # a refusal: the person completes the schema table by hand, and one odd row must never
    # decide whether a dataset can be used at all.
    schema = infer_schema(train, exclude=excluded, lenient=True)
    dataset_id, folder = ws.new_dataset_dir()
    try:
        train.write_csv(folder / "train.csv")
        if n_holdout:
            shuffled.tail(n_holdout).write_csv(folder / "holdout.csv")
        schema.save(folder / "schema.draft.yaml")
        # The fingerprint of the rows as a run will read them back, so budgets line up.
        fingerprint = fingerprint_frame(read_frame(folder / "train.csv"))
        record = DatasetRecord(
            dataset_id=dataset_id, name=Path(name).name[:80], source=source[:300],
            created=now(), rows=train.height, holdout_rows=n_holdout, columns=frame.columns,
            fingerprint=fingerprint, directory=folder)
        if not ws.ledger.has_budget(fingerprint):
            epsilon, delta = settings.default_budget
            ws.ledger.set_budget(fingerprint, epsilon=epsilon, delta=delta, label=record.name)
        ws.save_dataset(record)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return record


# -- the schema table -------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".15g")
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def schema_rows(schema: Schema) -> list[list[Any]]:
    """The schema as rows of the editable table (see ``SCHEMA_HEADERS``)."""
    rows = []
    for col in schema.columns:
        lower, upper = col.bounds or (None, None)
        rows.append([col.name, col.kind.value, col.nullable, _text(lower), _text(upper),
                     " | ".join(col.categories or ())])
    return rows


def excluded_text(schema: Schema) -> str:
    """Markdown list of the columns left out, and why."""
    if not schema.excluded:
        return ""
    items = "\n".join(f"- **{e.name}**: {e.text}" for e in schema.excluded)
    return f"Columns left out of synthesis:\n\n{items}"


def rows_to_schema(rows: list[list[Any]], base: Schema,
                   all_columns: list[str] | None = None) -> Schema:
    """Rebuild a (still unconfirmed) schema from the edited table.

    Rows deleted in the table leave their column out; a column of the data that the draft left
    out (``all_columns`` lists them all) can be added back; every problem is reported at once.

    Raises:
        SchemaError: unknown columns, bad kinds, bounds that are not numbers, an invalid domain.
    """
    known = set(all_columns or ()) | set(base.names)
    problems: list[str] = []
    columns: list[dict[str, Any]] = []
    kinds = ", ".join(k.value for k in ColumnKind)
    for row in rows:
        cells = [*list(row), "", "", "", "", ""][:6]
        name = str(cells[0] or "").strip()
        if not name:
            continue
        if name not in known:
            problems.append(f"{name!r} is not a column of this dataset")
            continue
        kind = str(cells[1] or "").strip().lower()
        if kind not in {k.value for k in ColumnKind}:
            problems.append(f"column {name!r}: kind {kind!r} is not one of {kinds}")
            continue
        column: dict[str, Any] = {"name": name, "kind": kind,
                                  "nullable": str(cells[2]).lower() in ("true", "1", "yes")}
        lower, upper = _text(cells[3]).strip(), _text(cells[4]).strip()
        if lower or upper:
            column["bounds"] = [_bound(name, kind, lower, problems),
                                _bound(name, kind, upper, problems)]
        categories = [c.strip() for c in str(cells[5] or "").split("|") if c.strip()]
        if categories:
            column["categories"] = categories
        columns.append(column)
    if problems:
        raise SchemaError("the schema table has problems:", problems)
    kept = {c["name"] for c in columns}
    excluded = [e.model_dump() for e in base.excluded if e.name not in kept] + [
        ExcludedColumn(name=n, reason="requested").model_dump()
        for n in base.names if n not in kept]
    # The draft's review flags stay with it: a flag is resolved only by changing its values.
    review = [f.model_dump(mode="json") for f in base.review if f.column in kept]
    return Schema.from_dict({"domain": "inferred", "columns": columns, "excluded": excluded,
                             "review": review}, source="the schema table")


def _bound(name: str, kind: str, text: str, problems: list[str]) -> Any:
    if kind == ColumnKind.DATETIME.value:
        return text
    try:
        return float(text)
    except ValueError:
        problems.append(f"column {name!r}: bound {text!r} is not a number")
        return 0.0


def current_schema(record: DatasetRecord) -> Schema:
    """The confirmed domain if there is one, else the (edited) inferred draft."""
    if record.domain and record.schema_path.is_file():
        return Schema.load(record.schema_path)
    return Schema.load(record.draft_schema_path)


def save_draft(ws: Workspace, dataset_id: str, rows: list[list[Any]]) -> Schema:
    """Store the edited table as the dataset's draft; a confirmed domain must be confirmed again.

    Raises:
        NotFoundError, SchemaError.
    """
    record = ws.dataset(dataset_id)
    schema = rows_to_schema(rows, Schema.load(record.draft_schema_path), record.columns)
    schema.save(record.draft_schema_path)
    if record.domain:
        record.schema_path.unlink(missing_ok=True)
        record.domain = ""
        ws.save_dataset(record)
    return schema


# -- the domain -------------------------------------------------------------------------------


def set_domain(ws: Workspace, dataset_id: str, rows: list[list[Any]], *, mode: str,
               epsilon: float | None, delta: float | None,
               accept_flagged: bool = False) -> DatasetRecord:
    """Fix the dataset's domain: the table declared public, or learned with DP (charged).

    ``public``: the user, having reviewed the table on the page, declares that its bounds and
    categories reveal nothing about any individual. Review flags still unresolved (bounds that
    are the data's own min/max, rare categories) refuse the step unless ``accept_flagged``.
    ``dp``: only the names and kinds in the table (reviewed on the page) are used; bounds and
    categories are learned by DP mechanisms charged to the ledger.

    Raises:
        NotFoundError, SchemaError, DomainError, BudgetNotSetError, BudgetExceededError.
    """
    from privsynth_core.domain import prepare_table
    from privsynth_core.inference import skeleton

    record = ws.dataset(dataset_id)
    draft = save_draft(ws, dataset_id, rows)
    record = ws.dataset(dataset_id)
    reviewed = record.directory / "schema.reviewed.yaml"
    if mode == "public":
        draft.confirm_public(accept_flagged=accept_flagged).save(reviewed)
        table = prepare_table(record.train_path, schema_path=reviewed, domain="public",
                              ledger=ws.ledger)
        record.domain_epsilon = record.domain_delta = 0.0
        record.domain_parts = []
    elif mode == "dp":
        if not epsilon or epsilon <= 0:
            raise DomainError("learning the domain with DP needs an epsilon > 0 (e.g. 0.1)")
        run_id = f"domain-{record.dataset_id}-{new_id()}"
        # The names and kinds were reviewed on the page; the bounds are learned, not used.
        skeleton(draft).confirm_public().save(reviewed)
        try:
            table = prepare_table(record.train_path, schema_path=reviewed,
                                  domain="dp", domain_epsilon=float(epsilon),
                                  domain_delta=float(delta or 1e-6), ledger=ws.ledger,
                                  run_id=run_id)
        except DomainError as exc:
            # Each column is charged as it is learned: say what this failed attempt spent.
            spent = [e for e in ws.ledger.entries(record.fingerprint) if e.run_id == run_id]
            if spent:
                raise DomainError(
                    f"{exc}. The {len(spent)} column(s) learned before this one were charged "
                    f"ε = {sum(e.epsilon for e in spent):.4g} (see Budget & runs)") from None
            raise
        record.domain_epsilon, record.domain_delta = float(epsilon), float(delta or 1e-6)
        record.domain_parts = [{**p.public(), "entry_id": p.entry_id} for p in table.spent]
    else:
        raise DomainError(f"unknown domain choice {mode!r}: public or dp")
    table.schema.save(record.schema_path)
    record.domain = mode
    ws.save_dataset(record)
    return record


def domain_cost_text(ws: Workspace, dataset_id: str | None, mode: str, epsilon: float | None,
                     delta: float | None) -> str:
    """What the chosen domain step costs, against the budget left."""
    if mode == "public":
        return ("**Declaring the domain public costs nothing**, but only you can vouch for it: "
                "the bounds and categories above were read off the private rows. Confirm only "
                "if none of them could reveal an individual (e.g. edit an outlier's bound to a "
                "round public limit, remove rare categories).")
    if not dataset_id:
        return "Choose a dataset first."
    try:
        status = ws.ledger.status(ws.dataset(dataset_id).fingerprint)
    except NotFoundError:
        return "Choose a dataset first."
    eps, dlt = float(epsilon or 0), float(delta or 0)
    left = status.remaining
    verdict = ("fits in" if eps <= left.epsilon and dlt <= left.delta
               else "**does not fit** in")
    return (f"**Learning the domain with DP spends ε = {eps:g}, δ = {dlt:g}** (split over the "
            f"columns), which {verdict} the ε = {left.epsilon:.4g}, δ = {left.delta:.3g} left "
            f"of this dataset's budget. Only column names and kinds are kept from the table.")


__all__ = [
    "SCHEMA_HEADERS",
    "add_server_file",
    "add_uploaded",
    "current_schema",
    "domain_cost_text",
    "excluded_text",
    "resolve_server_file",
    "rows_to_schema",
    "save_draft",
    "schema_rows",
    "server_files",
    "set_domain",
]
