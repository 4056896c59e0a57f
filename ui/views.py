"""How things look on the page: small formatting helpers (HTML, markdown, plot frames), the
changes a handler asks of the page's components (:class:`Update`), what an error may say
(:func:`redact_paths`) and the staging of files handed to the browser. No Gradio import, no
privacy logic."""

from __future__ import annotations

import html
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import BudgetNotSetError

if TYPE_CHECKING:
    import pandas as pd

    from privsynth_flows.served import RunView

    from .workspace import DatasetRecord, RunRecord, Workspace

NOT_DP_BANNER = (
    '<div class="ps-notdp"><strong>NOT differentially private.</strong> Everything on this tab '
    "compares the synthetic rows with the real ones, so it contains statistics of the private "
    "data. It is not covered by the DP guarantee: keep it with the data custodian. Only the "
    "synthetic table and the model are for release.</div>"
)

PLOT_COLOURS = ("#2e6bd9", "#e07b39", "#12b76a", "#d92d20", "#7a5af8", "#667085")
COLOUR_NAMES = dict(
    zip(PLOT_COLOURS, ("blue", "orange", "green", "red", "purple", "grey"), strict=True)
)

CSS = """
.ps-notdp{border:2px solid #b42318;background:#fef3f2;color:#7a1a12;padding:10px 14px;
border-radius:8px;margin:4px 0 8px}
.ps-bar{height:14px;background:#e4e7ec;border-radius:7px;overflow:hidden;margin:6px 0}
.ps-bar>div{height:100%;background:#2e6bd9;transition:width .4s}
.ps-bar.done>div{background:#12b76a}.ps-bar.failed>div{background:#d92d20}
.ps-bar.cancelled>div,.ps-bar.cancelling>div{background:#f79009}
.ps-bar.crashed>div{background:#d92d20}
.ps-flow{color:#475467;font-size:13px}
.ps-user{text-align:right}
.ps-notice p{color:#b42318;font-weight:600}
"""


class Update(dict[str, Any]):
    """What to change on one component of the page, by the names its Gradio component takes
    (``value``, ``choices``, ``visible``, ``interactive``, ``label``, ``color_map``); a name
    left out stays as it is, so ``Update()`` changes nothing (an input keeps what the user
    typed). Plain data: the page's handlers (:mod:`privsynth_ui.events`) return it without
    knowing Gradio, and :func:`privsynth_ui.gate.gated` hands Gradio the same change as its
    own ``gr.update``."""

    def __init__(self, **changes: Any) -> None:
        super().__init__(changes)

    def __repr__(self) -> str:
        return f"Update({super().__repr__()})"


def redact_paths(message: str, home: Any) -> str:
    """``message`` with every path under privsynth's state folder ``home`` cut to its file
    name: the page never shows where the server keeps its files."""
    root = re.escape(str(Path(home).resolve()))
    return re.sub(root + r"(?:/[^\s'\"/:;,]+)*/([^\s'\"/:;,]+)", r"\1", message)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for display ("–" for none)."""
    return "–" if value is None else f"{value:.{digits}g}"


NO_DATASET = "No dataset yet: add a CSV or Parquet table on the **Data** tab."


def dataset_info(ws: Workspace, record: DatasetRecord | None) -> str:
    """One paragraph about the current dataset: source, size, domain state, budget.

    The exact size goes only to a custodian; an analyst sees the released count n̂ (a DP
    output), once a training has released it.
    """
    from privsynth_core.privacy.ledger import short_key

    from .budget_handlers import noisy_rows
    from .domain_handlers import domain_of

    if record is None:
        return NO_DATASET
    state = domain_of(ws, record)
    who = f" by {html.escape(state.fixed_by)}" if state.fixed_by else ""
    domain = {
        "public": f"declared public{who}",
        "dp": f"learned with DP{who} (ε = {state.epsilon:g})",
    }.get(
        state.mode if state.fixed else "",
        "**not fixed yet** ("
        + (
            "declare it public or learn it with DP below"
            if ws.is_custodian
            else "ask the data custodian"
        )
        + ")",
    )
    try:
        status = ws.ledger.status(record.key)
        budget = (
            f"budget ε = {status.budget.epsilon:g}, δ = {status.budget.delta:g}; "
            f"left ε = {status.remaining.epsilon:.4g}, δ = {status.remaining.delta:.3g}"
        )
        if status.unbounded:
            budget += " · ⚠ **unbounded**: a non-DP run is not acknowledged"
    except BudgetNotSetError:
        budget = "**no budget set yet**" + (
            ": set one on the Budget & runs tab" if ws.is_custodian else ": ask the data custodian"
        )
    if ws.is_custodian and record.partitioned:
        # The draft's bounds and categories come from a sample: rarer values may be missing.
        size = (
            f"{record.rows:,} training rows in a partitioned folder (read in place on the "
            f"cluster) · **the draft schema was inferred from a sample of "
            f"{record.draft_sample_rows:,} rows**"
        )
    elif ws.is_custodian:
        holdout = f" + {record.holdout_rows:,} holdout" if record.holdout_rows else ""
        size = f"{record.rows:,} training rows{holdout}"
    else:
        released = noisy_rows(ws, record)
        size = (
            f"about {released:,} training rows (released noisy count)"
            if released
            else "size not released yet (the first training releases a noisy count)"
        )
    return (
        f"**{html.escape(record.name)}** · data source `{html.escape(short_key(record.key))}`"
        f" · {size}, {len(record.columns)} columns · domain {domain} · {budget}"
    )


#: The synthesize flow's tasks as the progress line names them.
STEP_NAMES = {
    "load_input": "load",
    "validate_input": "validate",
    "resolve_domain": "domain",
    "fit_model": "fit",
    "sample_synthetic": "sample",
    "evaluate_metric": "metrics",
    "write_report": "report",
    "publish": "publish",
}
_MARK = {"COMPLETED": "✓", "RUNNING": "…", "FAILED": "✗", "CRASHED": "✗", "CANCELLED": "✗"}
_HEADLINE = {
    "running": "Training",
    "cancelling": "Cancelling the training",
    "done": "Training finished",
    "failed": "Training failed",
    "cancelled": "Training cancelled",
    "crashed": "Training crashed",
}


def step_text(what: str, view: RunView, seconds: float) -> str:
    """One line on a flow run that a page step waits for: its state, its tasks so far
    (``load ✓ · metrics …``), and how long it has taken (for a progress tracker's text)."""
    tasks = " · ".join(
        f"{STEP_NAMES.get(name, name)} {_MARK.get(kind, '·')}" for name, kind in _unique_steps(view)
    )
    return (
        f"{what}: {view.state_name.lower()}"
        + (f" ({tasks})" if tasks else "")
        + (f", {seconds:.0f} s")
    )


def progress_html(
    run: RunRecord,
    view: RunView | None,
    *,
    show_losses: bool = True,
    losses: list[dict[str, Any]] | None = None,
) -> str:
    """A training's progress: its flow run's state, the fit's units and epsilon so far (from
    the flow run's progress artifact), the last losses (custodians: they are computed on the
    real rows, and never pass through Prefect), and at the end what the release states."""
    from .run_handlers import privacy_text

    state = run.status
    progress = view.progress if view is not None else None
    fraction = 1.0 if state == "done" else progress.fraction if progress is not None else 0.0
    parts = []
    if progress is not None:
        parts.append(f"{progress.unit} {progress.done} / {progress.planned}")
        if show_losses and losses:
            parts += [f"{k} loss {v:.4g}" for k, v in losses[-1].get("losses", {}).items()]
        if progress.epsilon is not None and run.epsilon is not None:
            parts.append(f"ε so far {progress.epsilon:.4g} of {run.epsilon:g}")
    elif state == "running":
        waiting = view is None or view.state in ("SCHEDULED", "PENDING")
        parts.append(
            "waiting for the flow runner…"
            if waiting
            else "preparing (loading the data, fixing the domain)…"
        )
    steps = " · ".join(
        f"{STEP_NAMES.get(name, name)} {_MARK.get(kind, '·')}" for name, kind in _unique_steps(view)
    )
    message = f"<p>{html.escape(run.message)}</p>" if run.message else ""
    if state == "done":
        spending = "".join(f"<li>{html.escape(line)}</li>" for line in run.spending)
        message = (
            f"<p>Run <code>{run.run_id}</code>: {html.escape(privacy_text(run))}. Draw "
            f"rows on the <b>Generate</b> tab.</p>"
            + (f"<ul class='ps-spending'>{spending}</ul>" if spending else "")
            + message
        )
    link = (
        f" · <a href='{html.escape(run.flow_run_url)}' target='_blank' rel='noopener'>flow "
        f"run in Prefect</a>"
        if run.flow_run_url
        else ""
    )
    flow = (
        f"<p class='ps-flow'>Prefect flow run <code>{html.escape(run.flow_run_id)}</code> "
        f"({html.escape(view.state_name if view else state)}){link}"
        + (f"<br>steps: {html.escape(steps)}" if steps else "")
        + "</p>"
        if run.flow_run_id
        else ""
    )
    return (
        f"<div><b>{_HEADLINE.get(state, state)}</b> — {html.escape(run.generator)}, run "
        f"<code>{run.run_id}</code><div class='ps-bar {state}'><div style='width:"
        f"{fraction * 100:.0f}%'></div></div>{html.escape(' · '.join(parts))}{message}"
        f"{flow}</div>"
    )


def _unique_steps(view: RunView | None) -> list[tuple[str, str]]:
    """The flow run's tasks in order, one entry per task (the metric tasks fan out)."""
    seen: dict[str, str] = {}
    for name, kind in view.tasks if view is not None else []:
        if name not in seen or kind != "COMPLETED":
            seen[name] = kind
    return list(seen.items())


def loss_frame(rows: list[dict[str, Any]]) -> pd.DataFrame | None:
    """The losses so far, long format (epoch, loss, value) for a line plot; None before any.

    Never an empty frame: the plot fixes its scales from the first value it gets, and an empty
    one leaves it unable to draw the lines that come later.
    """
    import pandas as pd

    points = []
    for row in rows:
        for name, value in row.get("losses", {}).items():
            if value == value:  # NaN losses are not plotted
                points.append({"epoch": row.get("epoch", 0), "loss": name, "value": float(value)})
    if not points:
        return None
    return pd.DataFrame(
        {
            "epoch": pd.Series([r["epoch"] for r in points], dtype="int64"),
            "loss": pd.Series([r["loss"] for r in points], dtype="str"),
            "value": pd.Series([r["value"] for r in points], dtype="float64"),
        }
    )


def stage(cache_dir: Path, source: Path, *, name: str | None = None) -> str:
    """Copy ``source`` into the app's private cache for the browser to download.

    Gradio serves only files in its cache; the workspace is never exposed as a whole. Staged
    copies older than ten minutes are removed as new ones come (Gradio has copied them into
    its own cache by then, which it clears after an hour).
    """
    root = cache_dir / "staging"
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - 600
    for old in root.iterdir():
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(dir=root))
    target = folder / (name or source.name)
    if source.is_dir():
        archive = shutil.make_archive(str(target.with_suffix("")), "zip", source)
        return archive
    shutil.copy2(source, target)
    return str(target)


def table_value(rows: list[list[Any]], headers: list[str]) -> dict[str, Any]:
    """A Dataframe value with its headers (an empty table keeps its columns)."""
    return {"data": rows or [], "headers": headers}


__all__ = [
    "CSS",
    "NOT_DP_BANNER",
    "Update",
    "dataset_info",
    "loss_frame",
    "progress_html",
    "redact_paths",
    "stage",
]
