"""What the Data tab does: add a table, show and edit its inferred schema, fix its domain.

The functions take the user's :class:`~privsynth_ui.workspace.Workspace` and plain values and
call privsynth_core; they know nothing about Gradio (``app.py`` wires them to the page). Errors
are :class:`~privsynth_core.errors.PrivsynthError` subclasses with messages for the user.

Roles are enforced here, not by the page: only a custodian edits a draft, fixes a domain or
declares a source id; an analyst never gets a draft (:func:`visible_schema`), and no message
says how many rows a file has.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import (
    BudgetNotSetError,
    ConfigError,
    DomainError,
    InputFileError,
    SchemaError,
)
from privsynth_core.ledger import budget_key, short_key
from privsynth_core.schema import ColumnKind, ExcludedColumn, ReviewFlag, Schema

from .sources import (
    SourceDomain,
    check_declarable,
    server_origin,
    server_source_id,
    upload_origin,
)
from .workspace import DatasetRecord, NotFoundError, Workspace, new_id, now

if TYPE_CHECKING:
    import polars as pl

    from .settings import UISettings

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
UPLOAD_TYPES = [".csv", ".tsv", ".gz", ".parquet", ".pq"]
SCHEMA_HEADERS = ["column", "kind", "nulls", "lower", "upper", "categories (separated by |)",
                  "review"]
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
                 holdout_share: float, exclude: str, source_id: str = "") -> DatasetRecord:
    """Add a file the user uploaded; the upload's temporary copy is deleted afterwards.

    Its data source is its content (the whole file's fingerprint), unless a custodian declared a
    source id for that content, or declares one now (``source_id``, custodians only).

    Raises:
        InputFileError: no file, an unsupported type, too large, or unreadable.
        SchemaError: no schema can be inferred (the problems say what to leave out).
        RoleError: an analyst declaring a source id.
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
        return _add(ws, settings, path, name=name or path.name, origin=f"upload: {path.name}",
                    server_path=None, holdout_share=holdout_share, exclude=exclude,
                    declare=source_id)
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
                    holdout_share: float, exclude: str, source_id: str = "") -> DatasetRecord:
    """Add a table from an operator-allowed server folder (its train split is copied into the
    workspace).

    Its data source is the one a custodian declared for the file (now, with ``source_id``, or
    before), else the file's own (:func:`privsynth_ui.sources.server_source_id`): every add of
    it, by anyone, with any holdout share, spends from that source's budget.

    Raises:
        InputFileError, SchemaError, RoleError, ConfigError.
    """
    path = resolve_server_file(settings, choice)
    _check_size(path, settings.max_upload_bytes, choice)
    text = str(choice).strip().replace("\\", "/")
    return _add(ws, settings, path, name=name or path.name, origin=f"server: {text}",
                server_path=(text, path), holdout_share=holdout_share, exclude=exclude,
                declare=source_id)


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


def split_rows(frame: pl.DataFrame, share: float) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(train, holdout): each row goes to the holdout by a hash of its own values.

    Row by row, so the split is stable under adding or removing one person: the train split of
    a neighbouring file differs from this one's by at most that row, and what a DP mechanism
    spends on the train split is spent on the file (its source) too.
    """
    import polars as pl

    if not share:
        return frame, None
    position = frame.hash_rows(seed=HOLDOUT_SEED).cast(pl.Float64) / 2.0**64
    held = position < share
    return frame.filter(~held), frame.filter(held)


def _source_of(ws: Workspace, *, fingerprint: str, server_path: tuple[str, Path] | None,
               declare: str) -> str | None:
    """The data source id of a file being added (None: its content is its source)."""
    origins = [upload_origin(fingerprint)]
    if server_path is not None:
        origins.insert(0, server_origin(server_path[1]))
    declared = ws.sources.declared(origins[0])
    current = declared or (server_source_id(*server_path) if server_path else None)
    if declare.strip():
        ws.require_custodian("declare the data source of a file")
        wanted = check_declarable(declare)
        if declared is not None and declared != wanted:
            raise ConfigError(f"this file's data source was declared {declared!r} already; a "
                              f"source id never changes (its budget would start over)")
        if declared is None:
            if ws.ledger.entries(budget_key(current, fingerprint)):
                raise ConfigError(
                    f"budget has been spent on this file as "
                    f"{short_key(budget_key(current, fingerprint))!r} already; declaring another "
                    f"source id would start its budget over. Set budgets on that source instead")
            if not ws.sources.declare(origins[0], wanted, by=ws.user):
                return _source_of(ws, fingerprint=fingerprint, server_path=server_path,
                                  declare=declare)  # declared meanwhile: check against it
        current = wanted
    if server_path is not None and current is not None and \
            not ws.ledger.entries(fingerprint) and ws.sources.declared(origins[1]) is None:
        # The same rows uploaded later spend from this source too, not from a budget of their
        # own (only while nothing was spent on the content on its own).
        ws.sources.declare(origins[1], current, by=ws.user)
    return current


def _add(ws: Workspace, settings: UISettings, source_path: Path, *, name: str, origin: str,
         server_path: tuple[str, Path] | None, holdout_share: float, exclude: str,
         declare: str) -> DatasetRecord:
    from privsynth_core.inference import infer_schema
    from privsynth_core.table import fingerprint_frame, read_frame

    if not 0 <= holdout_share <= 0.5:
        raise InputFileError("the holdout share must be between 0 and 0.5")
    frame = read_frame(source_path, max_bytes=settings.max_upload_bytes)
    excluded = [c.strip() for c in exclude.split(",") if c.strip()]
    whole = fingerprint_frame(frame)
    source = _source_of(ws, fingerprint=whole, server_path=server_path, declare=declare)
    train, holdout = split_rows(frame, holdout_share)
    if holdout is not None and train.height < 10:
        # No size in the message: an analyst must not learn the file's size from an error.
        raise InputFileError(f"{name}: too few rows to keep a holdout; set the holdout share to "
                             f"0")
    # The draft is read off every row of the file (custodians only: it is not private). Lenient:
    # a column that cannot be inferred is left out of the draft (with its reason), not a
    # refusal: the custodian completes the schema table by hand.
    schema = infer_schema(frame, exclude=excluded, lenient=True)
    dataset_id, folder = ws.new_dataset_dir()
    try:
        train.write_csv(folder / "train.csv")
        if holdout is not None and holdout.height:
            holdout.write_csv(folder / "holdout.csv")
        schema.save(folder / "schema.draft.yaml")
        # The fingerprint of the rows as a run will read them back: the extract of the ledger.
        fingerprint = fingerprint_frame(read_frame(folder / "train.csv"))
        record = DatasetRecord(
            dataset_id=dataset_id, name=Path(name).name[:80], origin=origin[:300],
            created=now(), rows=train.height,
            holdout_rows=0 if holdout is None else holdout.height, columns=frame.columns,
            fingerprint=fingerprint, source_fingerprint=whole, source=source, added_by=ws.user,
            directory=folder)
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


def _flag_text(flag: ReviewFlag) -> str:
    if flag.issue == "bounds_at_extremes":
        hint = (f" (round: {_text(flag.suggestion[0])} to {_text(flag.suggestion[1])})"
                if flag.suggestion else "")
        return f"⚠ bounds are the data's own min and max{hint}"
    shown = ", ".join(str(v) for v in flag.values[:5])
    more = f" and {len(flag.values) - 5} more" if len(flag.values) > 5 else ""
    return f"⚠ rare: {shown}{more}"


def schema_rows(schema: Schema) -> list[list[Any]]:
    """The schema as rows of the editable table (see ``SCHEMA_HEADERS``).

    The last column shows the draft's unresolved review flags: bounds that are the data's own
    min and max, categories held by few rows. A flag goes once its values are edited away.
    """
    flags: dict[str, list[str]] = {}
    for flag in schema.unresolved_review():
        flags.setdefault(flag.column, []).append(_flag_text(flag))
    rows = []
    for col in schema.columns:
        lower, upper = col.bounds or (None, None)
        rows.append([col.name, col.kind.value, col.nullable, _text(lower), _text(upper),
                     " | ".join(col.categories or ()), "; ".join(flags.get(col.name, []))])
    return rows


def review_text(schema: Schema | None) -> str:
    """Markdown: what the custodian must still decide before declaring the draft public."""
    if schema is None or schema.domain != "inferred":
        return ""
    unresolved = schema.unresolved_review()
    if not unresolved:
        return ("✅ **No review flags left**: no bound is the data's own min or max, no rare "
                "category.")
    bounds = sum(f.issue == "bounds_at_extremes" for f in unresolved)
    rare = len(unresolved) - bounds
    return (f"⚠ **{len(unresolved)} value(s) to review** (marked in the table's last column): "
            f"{bounds} column(s) whose bounds are the data's own min and max, {rare} with rare "
            f"categories. Edit them to public values, use **round public limits**, or learn the "
            f"domain with DP; or tick *I have checked these values are public*.")


def excluded_text(schema: Schema | None) -> str:
    """Markdown list of the columns left out, and why."""
    if schema is None or not schema.excluded:
        return ""
    items = "\n".join(f"- **{e.name}**: {e.text}" for e in schema.excluded)
    return f"Columns left out of synthesis:\n\n{items}"


def rows_to_schema(rows: list[list[Any]], base: Schema,
                   all_columns: list[str] | None = None) -> Schema:
    """Rebuild a (still unconfirmed) schema from the edited table.

    Rows deleted in the table leave their column out; a column of the data that the draft left
    out (``all_columns`` lists them all) can be added back; every problem is reported at once.
    Only what the table shows is kept: a datetime format the draft read off the rows is not
    (nobody reviewed it, and it would carry the rows into the domain).

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


def domain_of(ws: Workspace, record: DatasetRecord) -> SourceDomain:
    """The fixed domain of the dataset's data source (shared by every extract of it)."""
    return ws.sources.domain(record.key)


def visible_schema(ws: Workspace, record: DatasetRecord) -> Schema | None:
    """The schema the caller may see: the source's fixed domain (public, or a DP output); before
    it is fixed, the inferred draft to a custodian and nothing to an analyst."""
    domain = domain_of(ws, record)
    if domain.fixed:
        return Schema.load(domain.schema_path)
    if ws.is_custodian:
        return Schema.load(record.draft_schema_path)
    return None


def _edited(ws: Workspace, record: DatasetRecord, rows: list[list[Any]]) -> Schema:
    return rows_to_schema(rows, Schema.load(record.draft_schema_path), record.columns)


def save_draft(ws: Workspace, dataset_id: str, rows: list[list[Any]]) -> Schema:
    """Store the edited table as the dataset's draft (custodians only). A domain fixed for the
    data source is unfixed: it must be fixed again before anyone trains on it.

    Raises:
        NotFoundError, SchemaError, RoleError.
    """
    ws.require_custodian("edit a draft schema (it holds values read off the private rows)")
    record = ws.dataset(dataset_id)
    schema = _edited(ws, record, rows)
    schema.save(record.draft_schema_path)
    ws.sources.unfix_domain(record.key)
    return schema


def use_round_limits(ws: Workspace, dataset_id: str, rows: list[list[Any]]) -> Schema:
    """Replace every flagged bound (the data's own min and max) with round public limits, and
    save the draft (custodians only).

    Raises:
        NotFoundError, SchemaError, RoleError.
    """
    ws.require_custodian("edit a draft schema")
    record = ws.dataset(dataset_id)
    schema = _edited(ws, record, rows).with_round_bounds()
    schema.save(record.draft_schema_path)
    ws.sources.unfix_domain(record.key)
    return schema


# -- the domain -------------------------------------------------------------------------------


def set_domain(ws: Workspace, dataset_id: str, rows: list[list[Any]], *, mode: str | None,
               epsilon: float | None, delta: float | None,
               accept_flagged: bool = False) -> DatasetRecord:
    """Fix the domain of the dataset's data source (custodians only), for every extract of it.

    ``public``: the custodian, having reviewed the table on the page, declares that its bounds
    and categories reveal nothing about any individual. Review flags still unresolved (bounds
    that are the data's own min/max, rare categories) refuse the step unless ``accept_flagged``
    (the custodian ticked "I have checked these values are public").
    ``dp``: only the names and kinds in the table (reviewed on the page) are used; bounds and
    categories are learned from this dataset's train rows by DP mechanisms charged to the
    source's budget, and every release made with the domain includes their cost.

    Raises:
        NotFoundError, SchemaError, DomainError, RoleError, BudgetNotSetError,
        BudgetExceededError.
    """
    from privsynth_core.inference import skeleton
    from privsynth_core.table import Table

    ws.require_custodian("fix the domain of a data source (declare it public or learn it "
                         "with DP)")
    if mode not in ("public", "dp"):
        raise DomainError("choose how to fix the domain: declare it public, or learn it with DP")
    record = ws.dataset(dataset_id)
    draft = _edited(ws, record, rows)
    state = domain_of(ws, record)
    if mode == "public":
        fixed = draft.confirm_public(accept_flagged=bool(accept_flagged))
        Table.load(record.train_path, fixed)  # the rows must fit it (names, kinds)
        epsilon = delta = 0.0
        parts: list[dict[str, Any]] = []
    else:
        if not epsilon or epsilon <= 0:
            raise DomainError("learning the domain with DP needs an epsilon > 0 (e.g. 0.1)")
        delta = float(delta or 1e-6)
        # The names and kinds were reviewed on the page; the bounds are learned, not used.
        fixed, parts = _learn_domain(ws, record, skeleton(draft).confirm_public(),
                                     float(epsilon), delta)
    draft.save(record.draft_schema_path)
    state.directory.mkdir(parents=True, exist_ok=True)
    fixed.save(state.schema_path)
    state.mode, state.epsilon, state.delta, state.parts = mode, float(epsilon), float(delta), \
        parts
    state.fixed_by, state.fixed_at = ws.user, now()
    ws.sources.save_domain(state)
    return record


def _learn_domain(ws: Workspace, record: DatasetRecord, skeleton: Schema, epsilon: float,
                  delta: float) -> tuple[Schema, list[dict[str, Any]]]:
    """Learn the domain from the dataset's train rows, charged to the source's budget.

    (Not :func:`privsynth_core.domain.prepare_table`: it charges the key of a source id or of
    the rows it reads, and an upload's source is the whole file's content, not the train
    split's.)
    """
    from privsynth_core.domain import learn_domain
    from privsynth_core.privacy.coupling import replayed
    from privsynth_core.table import read_frame

    frame = read_frame(record.train_path)
    run_id = f"domain-{record.dataset_id}-{new_id()}"
    key = record.key
    first = max((e.entry_id for e in ws.ledger.entries(key)), default=0)
    try:
        schema = replayed("dp domain", lambda: learn_domain(
            frame, skeleton, epsilon=epsilon, delta=delta, ledger=ws.ledger, fingerprint=key,
            run_id=run_id))
    except BudgetNotSetError:
        raise BudgetNotSetError(NO_BUDGET) from None
    except DomainError as exc:
        # Each column is charged as it is learned: say what this failed attempt spent.
        spent = [e for e in ws.ledger.entries(key) if e.run_id == run_id]
        if spent:
            raise DomainError(
                f"{exc}. The {len(spent)} column(s) learned before this one were charged "
                f"ε = {sum(e.epsilon for e in spent):.4g} (see Budget & runs)") from None
        raise
    parts = [{"step": "domain", "mechanism": e.mechanism, "epsilon": e.epsilon,
              "delta": e.delta, "entry_id": e.entry_id}
             for e in ws.ledger.entries(key)
             if e.entry_id > first and e.run_id == run_id and e.status == "spent"]
    return schema, parts


NO_BUDGET = ("no budget set yet for this data source: ask the data custodian to set one (on the "
             "Budget & runs tab, or `privsynth budget set`)")


def domain_cost_text(ws: Workspace, dataset_id: str | None, mode: str | None,
                     epsilon: float | None, delta: float | None) -> str:
    """What the chosen domain step costs, against the budget left."""
    if not ws.is_custodian:
        return ("Only a data custodian fixes the domain of a data source (once, for everyone "
                "who uses it).")
    if mode not in ("public", "dp"):
        return "Choose how to fix the domain: declare it public, or learn it with DP."
    if mode == "public":
        return ("**Declaring the domain public costs nothing**, but only you can vouch for it: "
                "the bounds and categories above were read off the private rows. Resolve the "
                "flagged values (edit them, or use round public limits), or tick the box once "
                "you have checked they are public knowledge.")
    if not dataset_id:
        return "Choose a dataset first."
    try:
        status = ws.ledger.status(ws.dataset(dataset_id).key)
    except NotFoundError:
        return "Choose a dataset first."
    except BudgetNotSetError:
        return "**No budget set yet** for this data source: set one on the Budget & runs tab."
    eps, dlt = float(epsilon or 0), float(delta or 0)
    left = status.remaining
    verdict = ("fits in" if eps <= left.epsilon and dlt <= left.delta
               else "**does not fit** in")
    return (f"**Learning the domain with DP spends ε = {eps:g}, δ = {dlt:g}** (split over the "
            f"columns), which {verdict} the ε = {left.epsilon:.4g}, δ = {left.delta:.3g} left "
            f"of this data source's budget. Only column names and kinds are kept from the table.")


__all__ = [
    "NO_BUDGET",
    "SCHEMA_HEADERS",
    "add_server_file",
    "add_uploaded",
    "domain_cost_text",
    "domain_of",
    "excluded_text",
    "resolve_server_file",
    "review_text",
    "rows_to_schema",
    "save_draft",
    "schema_rows",
    "server_files",
    "set_domain",
    "split_rows",
    "use_round_limits",
    "visible_schema",
]
