"""What the Data tab does to add a table: an upload or a server file, its data source, the holdout
split, the inferred draft (the schema and the domain are :mod:`privsynth_ui.domain_handlers`).

The functions take the user's :class:`~privsynth_ui.workspace.Workspace` and plain values and
call privsynth_core; they know nothing about Gradio (``app.py`` wires them to the page). Errors
are :class:`~privsynth_core.errors.PrivsynthError` subclasses with messages for the user.

Roles are enforced here, not by the page: only a custodian declares a source id, and no message
says how many rows a file has.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import ConfigError, InputFileError
from privsynth_core.privacy.ledger import budget_key, short_key

from .sources import (
    check_declarable,
    server_origin,
    server_source_id,
    upload_origin,
)
from .workspace import DatasetRecord, Workspace, now

if TYPE_CHECKING:
    import polars as pl

    from .settings import UISettings

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
UPLOAD_TYPES = [".csv", ".tsv", ".gz", ".parquet", ".pq"]
HOLDOUT_SEED = 0
_MAX_LISTED = 500


def _suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in TABLE_SUFFIXES:
        if lowered.endswith(suffix):
            return suffix
    raise InputFileError(
        f"{name}: privsynth reads CSV (.csv, .csv.gz, .tsv) and Parquet (.parquet) files"
    )


def _check_size(path: Path, limit: int, shown: str) -> None:
    size = path.stat().st_size
    if size > limit:
        raise InputFileError(
            f"{shown} is {size / 2**20:.1f} MB, over this server's limit of "
            f"{limit / 2**20:.1f} MB; use a smaller extract, or ask the operator "
            f"to raise the limit"
        )


# -- adding a dataset -------------------------------------------------------------------------


def add_uploaded(
    ws: Workspace,
    settings: UISettings,
    upload: str | Path | None,
    *,
    name: str,
    holdout_share: float,
    exclude: str,
    source_id: str = "",
) -> DatasetRecord:
    """Add a file the user uploaded; the upload's temporary copy is deleted once it is added
    (kept after a refusal, so the user can retry with other settings).

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
    if (
        not path.is_relative_to(uploads)
        or path.is_relative_to(uploads / "staging")
        or not path.is_file()
    ):
        raise InputFileError(
            "refused: that file was not uploaded to this server; upload a CSV or Parquet file"
        )
    try:
        _suffix(path.name)
        _check_size(path, settings.max_upload_bytes, path.name)
    except InputFileError:
        path.unlink(missing_ok=True)  # no retry can make it fit: do not keep its rows
        raise
    record = _add(
        ws,
        settings,
        path,
        name=name or path.name,
        origin=f"upload: {path.name}",
        server_path=None,
        holdout_share=holdout_share,
        exclude=exclude,
        declare=source_id,
    )
    # Added: private rows must not linger in the server's upload cache. A refused add keeps
    # the upload for a retry; it is served to its uploader only and deleted when they sign
    # out, or when the app restarts (privsynth_ui.guard, privsynth_ui.custody).
    path.unlink(missing_ok=True)
    return record


def server_files(settings: UISettings) -> list[str]:
    """The tables in the operator's allowed folders, as ``folder/relative/path`` choices; a
    folder of Parquet partitions (:mod:`privsynth_ui.partitioned`) as ``folder/relative/dir/``
    (the trailing ``/`` says it is a partitioned table), before the files."""
    from .partitioned import partition_folders

    out: list[str] = []
    for label, root in _roots(settings).items():
        tables = partition_folders(root, _MAX_LISTED)
        out.extend(f"{label}/{folder.relative_to(root).as_posix()}/" for folder in tables)
        for path in sorted(root.rglob("*")):
            if len(out) >= _MAX_LISTED:
                return out
            if (
                path.is_file()
                and path.name.lower().endswith(TABLE_SUFFIXES)
                and _inside(path, root)
                # a part of a partitioned table is picked as the folder (one table, one budget)
                and not any(path.is_relative_to(folder) for folder in tables)
            ):
                out.append(f"{label}/{path.relative_to(root).as_posix()}")
    return out


def resolve_server_file(settings: UISettings, choice: str) -> Path:
    """The file a ``folder/relative/path`` choice names, if it lies inside an allowed folder;
    or the folder of Parquet partitions it names (``folder/relative/dir/``).

    Raises:
        InputFileError: the choice escapes the allowed folders (``..``, absolute paths,
            symbolic links pointing outside, a partition linked from outside), or names no
            table file and no folder of Parquet partitions.
    """
    roots = _roots(settings)
    allowed = ", ".join(roots) or "(none: the operator allowed no server folder)"
    text = str(choice or "").strip().replace("\\", "/")
    refused = InputFileError(
        f"refused: {text[:200]!r} is not a table file inside the server "
        f"folders this server allows ({allowed})"
    )
    if not text:
        raise InputFileError("choose a file from the server folders first")
    label, _, rest = text.partition("/")
    parts = rest.split("/")
    if label not in roots or not rest or text.startswith("/") or ".." in parts:
        raise refused
    root = roots[label]
    path = (root / rest).resolve()
    if not _inside(path, root):
        raise refused
    if path.is_dir():
        from .partitioned import is_partition_folder

        # A folder only as a whole partitioned table, every part of it inside the root.
        if path == root.resolve() or not is_partition_folder(path, root):
            raise refused
        return path
    if not path.is_file():
        raise refused
    _suffix(path.name)
    from .partitioned import enclosing_table

    table = enclosing_table(path, root)
    if table is not None:
        shown = f"{label}/{table.relative_to(root.resolve()).as_posix()}/"
        raise InputFileError(
            f"{text[:200]!r} is a part of the partitioned table {shown}: add the folder "
            f"(one table, one budget for the same people)"
        )
    return path


def add_server_file(
    ws: Workspace,
    settings: UISettings,
    choice: str,
    *,
    name: str,
    holdout_share: float,
    exclude: str,
    source_id: str = "",
) -> DatasetRecord:
    """Add a table from an operator-allowed server folder (its train split is copied into the
    workspace); or a folder of Parquet partitions there, read in place on the cluster and
    never copied (:func:`_add_partitioned`).

    Its data source is the one a custodian declared for the file (now, with ``source_id``, or
    before), else the file's own (:func:`privsynth_ui.sources.server_source_id`): every add of
    it, by anyone, with any holdout share, spends from that source's budget.

    Raises:
        InputFileError, SchemaError, RoleError, ConfigError.
    """
    path = resolve_server_file(settings, choice)
    text = str(choice).strip().replace("\\", "/")
    if path.is_dir():
        # Its place as the picker lists it, whatever way the choice spelled it ("a/./b/"):
        # the source id is derived from it, and one folder must be one source.
        label = text.partition("/")[0]
        canonical = f"{label}/{path.relative_to(_roots(settings)[label].resolve()).as_posix()}"
        return _add_partitioned(
            ws,
            settings,
            path,
            choice=canonical,
            name=name or path.name,
            holdout_share=holdout_share,
            exclude=exclude,
            declare=source_id,
        )
    _check_size(path, settings.max_upload_bytes, choice)
    return _add(
        ws,
        settings,
        path,
        name=name or path.name,
        origin=f"server: {text}",
        server_path=(text, path),
        holdout_share=holdout_share,
        exclude=exclude,
        declare=source_id,
    )


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


def check_header_quotes(path: Path, shown: str) -> None:
    """Refuse a CSV whose header line holds an unbalanced double quote, saying so.

    A CSV reader takes a bare ``"`` as the start of a quoted field that runs on through the
    rows below it, and the file would be refused for something else (no data rows, a name
    with line breaks), which does not tell the user what to fix.

    Raises:
        InputFileError: an odd number of ``"`` on the first line (names the columns).
    """
    import gzip

    lowered = path.name.lower()
    if lowered.endswith((".parquet", ".pq")):
        return
    opener: Any = gzip.open if lowered.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            first = handle.readline(1 << 20)
    except (OSError, EOFError):
        return  # the reader says what is wrong with the file
    header = first.decode("utf-8", errors="replace").rstrip("\r\n")
    if header.count('"') % 2 == 0:
        return
    separator = "\t" if lowered.endswith((".tsv", ".tsv.gz")) else ","
    names = [n for n in header.split(separator) if '"' in n]
    shown_names = ", ".join(repr(n) for n in names[:5]) or repr(header[:80])
    raise InputFileError(
        f"{Path(shown).name}: the header (first line) holds an unbalanced double quote "
        f'(") in {shown_names}; a CSV reader takes it as the start of a quoted name that runs '
        f"on into the rows. Remove the quote from the column name, or quote the whole name "
        f'and double the quote inside it ("b""c"), then upload the file again'
    )


def _source_of(
    ws: Workspace, *, fingerprint: str, server_path: tuple[str, Path] | None, declare: str
) -> str | None:
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
            raise ConfigError(
                f"this file's data source was declared {declared!r} already; a "
                f"source id never changes (its budget would start over)"
            )
        if declared is None:
            if ws.ledger.entries(budget_key(current, fingerprint)):
                raise ConfigError(
                    f"budget has been spent on this file as "
                    f"{short_key(budget_key(current, fingerprint))!r} already; declaring another "
                    f"source id would start its budget over. Set budgets on that source instead"
                )
            if not ws.sources.declare(origins[0], wanted, by=ws.user):
                return _source_of(
                    ws, fingerprint=fingerprint, server_path=server_path, declare=declare
                )  # declared meanwhile: check against it
        current = wanted
    if (
        server_path is not None
        and current is not None
        and not ws.ledger.entries(fingerprint)
        and ws.sources.declared(origins[1]) is None
    ):
        # The same rows uploaded later spend from this source too, not from a budget of their
        # own (only while nothing was spent on the content on its own).
        ws.sources.declare(origins[1], current, by=ws.user)
    return current


def _add(
    ws: Workspace,
    settings: UISettings,
    source_path: Path,
    *,
    name: str,
    origin: str,
    server_path: tuple[str, Path] | None,
    holdout_share: float,
    exclude: str,
    declare: str,
) -> DatasetRecord:
    from privsynth_core.inference import infer_schema
    from privsynth_core.table import fingerprint_frame, read_frame

    if not 0 <= holdout_share <= 0.5:
        raise InputFileError("the holdout share must be between 0 and 0.5")
    check_header_quotes(source_path, source_path.name)
    frame = read_frame(source_path, max_bytes=settings.max_upload_bytes)
    excluded = [c.strip() for c in exclude.split(",") if c.strip()]
    whole = fingerprint_frame(frame)
    source = _source_of(ws, fingerprint=whole, server_path=server_path, declare=declare)
    train, holdout = split_rows(frame, holdout_share)
    if holdout is not None and train.height < 10:
        # No size in the message: an analyst must not learn the file's size from an error.
        raise InputFileError(f"{name}: too few rows to keep a holdout; set the holdout share to 0")
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
            dataset_id=dataset_id,
            name=Path(name).name[:80],
            origin=origin[:300],
            created=now(),
            rows=train.height,
            holdout_rows=0 if holdout is None else holdout.height,
            columns=frame.columns,
            fingerprint=fingerprint,
            source_fingerprint=whole,
            source=source,
            added_by=ws.user,
            directory=folder,
        )
        ws.save_dataset(record)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return record


def _add_partitioned(
    ws: Workspace,
    settings: UISettings,
    folder: Path,
    *,
    choice: str,
    name: str,
    holdout_share: float,
    exclude: str,
    declare: str,
) -> DatasetRecord:
    """Add a folder of Parquet partitions: the record points at the folder, and only the
    draft (inferred from a sample: :mod:`privsynth_ui.partitioned`) is written here.

    Its source is the folder's (:func:`~privsynth_ui.sources.server_source_id` of its place,
    or a declared one); its content key is the partitioned multiset fingerprint.
    """
    from .partitioned import HOLDOUT_REFUSED, read_partitioned

    if holdout_share:
        raise InputFileError(HOLDOUT_REFUSED)
    excluded = [c.strip() for c in exclude.split(",") if c.strip()]
    read = read_partitioned(folder, exclude=excluded, address=settings.dask_address)
    source = _source_of(
        ws, fingerprint=read.fingerprint, server_path=(choice, folder), declare=declare
    )
    dataset_id, directory = ws.new_dataset_dir()
    try:
        read.draft.save(directory / "schema.draft.yaml")
        record = DatasetRecord(
            dataset_id=dataset_id,
            name=Path(name).name[:80],
            origin=f"server: {choice}/"[:300],
            created=now(),
            rows=read.rows,
            holdout_rows=0,
            columns=list(read.columns),
            # No split: the extract is the whole table, under its partitioned fingerprint
            # (the one a flow run's load computes again, so the run's store keys agree).
            fingerprint=read.fingerprint,
            source_fingerprint=read.fingerprint,
            source=source,
            added_by=ws.user,
            partitions=str(folder),
            draft_sample_rows=read.sample_rows,
            directory=directory,
        )
        ws.save_dataset(record)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return record


__all__ = [
    "add_server_file",
    "add_uploaded",
    "resolve_server_file",
    "server_files",
    "split_rows",
]
