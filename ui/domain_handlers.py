"""What the Data tab does with a dataset's schema: the draft table with its review flags, edits,
round public limits, and fixing the data source's domain (declared public or learned with DP).

A domain is fixed once per data source, by a custodian, for every extract of it (stored through
:class:`privsynth_ui.sources.Sources`). Only a custodian edits a draft or fixes a domain; an
analyst never gets a draft (:func:`visible_schema`). No Gradio here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privsynth_core.errors import BudgetNotSetError, DomainError, SchemaError
from privsynth_core.generator import ProgressCallback
from privsynth_core.schema import Column, ColumnKind, ExcludedColumn, ReviewFlag, Schema

from .budget_handlers import NO_BUDGET
from .sources import SourceDomain
from .workspace import DatasetRecord, NotFoundError, Workspace, new_id, now

SCHEMA_HEADERS = [
    "column",
    "kind",
    "nulls",
    "lower",
    "upper",
    "categories (separated by |)",
    "review",
]


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
        hint = (
            f" (round: {_text(flag.suggestion[0])} to {_text(flag.suggestion[1])})"
            if flag.suggestion
            else ""
        )
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
        rows.append(
            [
                col.name,
                col.kind.value,
                col.nullable,
                _text(lower),
                _text(upper),
                " | ".join(col.categories or ()),
                "; ".join(flags.get(col.name, [])),
            ]
        )
    return rows


def review_text(schema: Schema | None) -> str:
    """Markdown: what the custodian must still decide before declaring the draft public."""
    if schema is None or schema.domain != "inferred":
        return ""
    unresolved = schema.unresolved_review()
    if not unresolved:
        return (
            "✅ **No review flags left**: no bound is the data's own min or max, no rare category."
        )
    bounds = sum(f.issue == "bounds_at_extremes" for f in unresolved)
    rare = len(unresolved) - bounds
    return (
        f"⚠ **{len(unresolved)} value(s) to review** (marked in the table's last column): "
        f"{bounds} column(s) whose bounds are the data's own min and max, {rare} with rare "
        f"categories. Edit them to public values, use **round public limits**, or learn the "
        f"domain with DP; or tick *I have checked these values are public*."
    )


def excluded_text(schema: Schema | None) -> str:
    """Markdown list of the columns left out, and why."""
    if schema is None or not schema.excluded:
        return ""
    items = "\n".join(f"- **{e.name}**: {e.text}" for e in schema.excluded)
    return f"Columns left out of synthesis:\n\n{items}"


def rows_to_schema(
    rows: list[list[Any]], base: Schema, all_columns: list[str] | None = None
) -> Schema:
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
        column: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "nullable": str(cells[2]).lower() in ("true", "1", "yes"),
        }
        lower, upper = _text(cells[3]).strip(), _text(cells[4]).strip()
        if lower or upper:
            column["bounds"] = [
                _bound(name, kind, lower, problems),
                _bound(name, kind, upper, problems),
            ]
        categories = [c.strip() for c in str(cells[5] or "").split("|") if c.strip()]
        if categories:
            column["categories"] = categories
        columns.append(column)
    if problems:
        raise SchemaError("the schema table has problems:", problems)
    kept = {c["name"] for c in columns}
    excluded = [e.model_dump() for e in base.excluded if e.name not in kept] + [
        ExcludedColumn(name=n, reason="requested").model_dump() for n in base.names if n not in kept
    ]
    # The draft's review flags stay with it: a flag is resolved only by changing its values.
    review = [f.model_dump(mode="json") for f in base.review if f.column in kept]
    return Schema.from_dict(
        {"domain": "inferred", "columns": columns, "excluded": excluded, "review": review},
        source="the schema table",
    )


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


def include_column(
    ws: Workspace,
    dataset_id: str,
    rows: list[list[Any]],
    column: str,
    *,
    dask_address: str | None = None,
) -> str:
    """Bring back a column left out of the draft (at Add, or by the inference), with the
    table's other edits, and save the draft (custodians only). Returns what was done.

    Its kind and domain are inferred again from the dataset's rows (NOT private, as the whole
    draft); a column the inference would leave out again (ID-like, free text, ...) comes back
    as categorical with no categories, for the custodian to complete or learn with DP.

    Only before the source's domain is fixed: a fixed domain names its columns, so a column
    brought back needs a new domain. A partitioned dataset's column is inferred from the same
    bounded sample its draft came from, read on ``dask_address`` (the operator's cluster, else
    a local one).

    Raises:
        NotFoundError, SchemaError, DomainError, RoleError.
    """
    from privsynth_core.inference import infer_schema
    from privsynth_core.table import read_frame

    ws.require_custodian("bring back a column (its draft is read off the private rows)")
    record = ws.dataset(dataset_id)
    name = str(column or "").strip()
    state = domain_of(ws, record)
    if state.fixed:
        how = "declared public" if state.mode == "public" else "learned with DP"
        raise DomainError(
            f"the domain of this data source is fixed ({how}) without {name!r}: bringing a "
            f"column back needs a new domain. Save edits to reopen the draft (the domain is "
            f"then not fixed for anyone until it is fixed again), include the column, and fix "
            f"the domain again"
        )
    draft = _edited(ws, record, rows)
    left_out = {e.name: e for e in draft.excluded}
    if name not in left_out:
        listed = ", ".join(left_out) or "none"
        raise SchemaError(f"{name!r} is not a column left out of this draft (left out: {listed})")
    if record.partitioned:
        from .partitioned import draft_sample

        frame = draft_sample(record, dask_address)
    else:
        frame = read_frame(record.train_path)
    if record.holdout_path is not None:
        import polars as pl

        frame = pl.concat([frame, read_frame(record.holdout_path)], how="vertical_relaxed")
    why = left_out[name].text
    try:
        inferred = infer_schema(frame.select(name), lenient=True)
        found, review = inferred.column(name), inferred.review
        done = f"{name!r} is back in the draft as {found.kind.value}: check its domain."
    except SchemaError:
        found = Column(name=name, kind=ColumnKind.CATEGORICAL, nullable=True)
        review = ()
        done = (
            f"{name!r} is back in the draft as categorical with no categories (it was left "
            f"out as {why}): give its kind and domain, or learn the domain with DP."
        )
    order = {n: i for i, n in enumerate(record.columns)}
    columns = sorted([*draft.columns, found], key=lambda c: order.get(c.name, len(order)))
    schema = draft.model_copy(
        update={
            "columns": tuple(columns),
            "excluded": tuple(e for e in draft.excluded if e.name != name),
            "review": (*draft.review, *review),
        }
    )
    schema.save(record.draft_schema_path)
    return done


# -- the domain -------------------------------------------------------------------------------


def set_domain(
    ws: Workspace,
    dataset_id: str,
    rows: list[list[Any]],
    *,
    mode: str | None,
    epsilon: float | None,
    delta: float | None,
    accept_flagged: bool = False,
    progress: ProgressCallback | None = None,
    dask_address: str | None = None,
) -> DatasetRecord:
    """Fix the domain of the dataset's data source (custodians only), for every extract of it.

    ``public``: the custodian, having reviewed the table on the page, declares that its bounds
    and categories reveal nothing about any individual. Review flags still unresolved (bounds
    that are the data's own min/max, rare categories) refuse the step unless ``accept_flagged``
    (the custodian ticked "I have checked these values are public").
    ``dp``: only the names and kinds in the table (reviewed on the page) are used; bounds and
    categories are learned from this dataset's train rows by DP mechanisms charged to the
    source's budget, and every release made with the domain includes their cost; ``progress``
    is called once per column learned (its place, the total and its name: nothing from the rows).

    A partitioned dataset is never loaded: a declared domain is checked against every
    partition, and a DP domain is learned from counts summed over the partitions
    (:mod:`privsynth_ui.partitioned`), both read on ``dask_address`` (the operator's cluster,
    else a local one); ``progress`` is not called there (the columns are learned together).

    Raises:
        NotFoundError, SchemaError, DomainError, RoleError, BudgetNotSetError,
        BudgetExceededError.
    """
    from privsynth_core.inference import skeleton
    from privsynth_core.table import Table

    ws.require_custodian("fix the domain of a data source (declare it public or learn it with DP)")
    if mode not in ("public", "dp"):
        raise DomainError("choose how to fix the domain: declare it public, or learn it with DP")
    record = ws.dataset(dataset_id)
    draft = _edited(ws, record, rows)
    state = domain_of(ws, record)
    if mode == "public":
        fixed = draft.confirm_public(accept_flagged=bool(accept_flagged))
        if record.partitioned:
            from .partitioned import check_public

            check_public(record, fixed, dask_address)
        else:
            Table.load(record.train_path, fixed)  # the rows must fit it (names, kinds)
        epsilon = delta = 0.0
        parts: list[dict[str, Any]] = []
    else:
        if not epsilon or epsilon <= 0:
            raise DomainError("learning the domain with DP needs an epsilon > 0 (e.g. 0.1)")
        delta = float(delta or 1e-6)
        # The names and kinds were reviewed on the page; the bounds are learned, not used.
        fixed, parts = _learn_domain(
            ws,
            record,
            skeleton(draft).confirm_public(),
            float(epsilon),
            delta,
            progress,
            dask_address=dask_address,
        )
    draft.save(record.draft_schema_path)
    state.directory.mkdir(parents=True, exist_ok=True)
    fixed.save(state.schema_path)
    state.mode, state.epsilon, state.delta, state.parts = mode, float(epsilon), float(delta), parts
    state.fixed_by, state.fixed_at = ws.user, now()
    ws.sources.save_domain(state)
    return record


def _learn_domain(
    ws: Workspace,
    record: DatasetRecord,
    skeleton: Schema,
    epsilon: float,
    delta: float,
    progress: ProgressCallback | None = None,
    *,
    dask_address: str | None = None,
) -> tuple[Schema, list[dict[str, Any]]]:
    """Learn the domain from the dataset's train rows (a partitioned dataset's partitions, on
    the cluster), charged to the source's budget."""
    import tempfile

    from privsynth_core.privacy.domain import prepare_table

    run_id = f"domain-{record.dataset_id}-{new_id()}"
    key = record.key
    with tempfile.TemporaryDirectory(prefix="privsynth-skeleton-") as tmp:
        path = skeleton.save(Path(tmp) / "skeleton.yaml")
        try:
            if record.partitioned:
                from .partitioned import learn_domain

                return learn_domain(
                    ws,
                    record,
                    skeleton,
                    epsilon=epsilon,
                    delta=delta,
                    run_id=run_id,
                    address=dask_address,
                )
            table = prepare_table(
                record.train_path,
                schema_path=path,
                domain="dp",
                domain_epsilon=epsilon,
                domain_delta=delta,
                ledger=ws.ledger,
                run_id=run_id,
                source=record.source,
                parent_key=key,
                progress=progress,
            )
        except BudgetNotSetError:
            raise BudgetNotSetError(NO_BUDGET) from None
        except DomainError as exc:
            # Each column is charged as it is learned: say what this failed attempt spent.
            spent = [e for e in ws.ledger.entries(key) if e.run_id == run_id]
            if spent:
                raise DomainError(
                    f"{exc}. The {len(spent)} column(s) learned before this one were charged "
                    f"ε = {sum(e.epsilon for e in spent):.4g} (see Budget & runs)"
                ) from None
            raise
    parts = [{**p.public(), "entry_id": p.entry_id} for p in table.spent]
    return table.schema, parts


def domain_cost_text(
    ws: Workspace,
    dataset_id: str | None,
    mode: str | None,
    epsilon: float | None,
    delta: float | None,
) -> str:
    """What the chosen domain step costs, against the budget left."""
    if not ws.is_custodian:
        return (
            "Only a data custodian fixes the domain of a data source (once, for everyone "
            "who uses it)."
        )
    if mode not in ("public", "dp"):
        return "Choose how to fix the domain: declare it public, or learn it with DP."
    if mode == "public":
        return (
            "**Declaring the domain public costs nothing**, but only you can vouch for it: "
            "the bounds and categories above were read off the private rows. Resolve the "
            "flagged values (edit them, or use round public limits), or tick the box once "
            "you have checked they are public knowledge."
        )
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
    verdict = "fits in" if eps <= left.epsilon and dlt <= left.delta else "**does not fit** in"
    return (
        f"**Learning the domain with DP spends ε = {eps:g}, δ = {dlt:g}** (split over the "
        f"columns), which {verdict} the ε = {left.epsilon:.4g}, δ = {left.delta:.3g} left "
        f"of this data source's budget. Only column names and kinds are kept from the table."
    )


__all__ = [
    "SCHEMA_HEADERS",
    "domain_cost_text",
    "domain_of",
    "excluded_text",
    "include_column",
    "review_text",
    "rows_to_schema",
    "save_draft",
    "schema_rows",
    "set_domain",
    "use_round_limits",
    "visible_schema",
]
