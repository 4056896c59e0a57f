"""How things look on the page: small formatting helpers (HTML, markdown, plot frames) and the
staging of files handed to the browser. No Gradio import, no privacy logic."""

from __future__ import annotations

import html
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth_core.errors import BudgetNotSetError

if TYPE_CHECKING:
    import pandas as pd

    from privsynth_core.generator import Progress

    from .training import TrainingJob
    from .workspace import DatasetRecord, Workspace

NOT_DP_BANNER = (
    '<div class="ps-notdp"><strong>NOT differentially private.</strong> Everything on this tab '
    "compares the synthetic rows with the real ones, so it contains statistics of the private "
    "data. It is not covered by the DP guarantee: keep it with the data custodian. Only the "
    "synthetic table and the model are for release.</div>"
)

PLOT_COLOURS = ("#2e6bd9", "#e07b39", "#12b76a", "#d92d20", "#7a5af8", "#667085")
COLOUR_NAMES = dict(zip(PLOT_COLOURS, ("blue", "orange", "green", "red", "purple", "grey"),
                        strict=True))

CSS = """
.ps-notdp{border:2px solid #b42318;background:#fef3f2;color:#7a1a12;padding:10px 14px;
border-radius:8px;margin:4px 0 8px}
.ps-bar{height:14px;background:#e4e7ec;border-radius:7px;overflow:hidden;margin:6px 0}
.ps-bar>div{height:100%;background:#2e6bd9;transition:width .4s}
.ps-bar.done>div{background:#12b76a}.ps-bar.failed>div{background:#d92d20}
.ps-bar.cancelled>div{background:#f79009}
.ps-user{text-align:right}
.ps-notice p{color:#b42318;font-weight:600}
"""


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for display ("–" for none)."""
    return "–" if value is None else f"{value:.{digits}g}"


NO_DATASET = "No dataset yet: add a CSV or Parquet table on the **Data** tab."


def dataset_info(ws: Workspace, record: DatasetRecord | None) -> str:
    """One paragraph about the current dataset: source, size, domain state, budget.

    The exact size goes only to a custodian; an analyst sees the released count n̂ (a DP
    output), once a training has released it.
    """
    from privsynth_core.ledger import short_key

    from .budget_handlers import noisy_rows
    from .domain_handlers import domain_of

    if record is None:
        return NO_DATASET
    state = domain_of(ws, record)
    who = f" by {html.escape(state.fixed_by)}" if state.fixed_by else ""
    domain = {"public": f"declared public{who}",
              "dp": f"learned with DP{who} (ε = {state.epsilon:g})"}.get(
        state.mode if state.fixed else "",
        "**not fixed yet** (" + ("declare it public or learn it with DP below"
                                 if ws.is_custodian else "ask the data custodian") + ")")
    try:
        status = ws.ledger.status(record.key)
        budget = (f"budget ε = {status.budget.epsilon:g}, δ = {status.budget.delta:g}; "
                  f"left ε = {status.remaining.epsilon:.4g}, δ = {status.remaining.delta:.3g}")
        if status.unbounded:
            budget += " · ⚠ **unbounded**: a non-DP run is not acknowledged"
    except BudgetNotSetError:
        budget = "**no budget set yet**" + (
            ": set one on the Budget & runs tab" if ws.is_custodian
            else ": ask the data custodian")
    if ws.is_custodian:
        holdout = f" + {record.holdout_rows:,} holdout" if record.holdout_rows else ""
        size = f"{record.rows:,} training rows{holdout}"
    else:
        released = noisy_rows(ws, record)
        size = (f"about {released:,} training rows (released noisy count)" if released
                else "size not released yet (the first training releases a noisy count)")
    return (f"**{html.escape(record.name)}** · data source `{html.escape(short_key(record.key))}`"
            f" · {size}, {len(record.columns)} columns · domain {domain} · {budget}")


def progress_html(job: TrainingJob, *, show_losses: bool = True) -> str:
    """The live progress of a training: bar, epoch, losses (custodians: they are computed on
    the real rows), epsilon so far, and at the end what the release states."""
    from .run_handlers import privacy_text

    last: Progress | None = job.history[-1] if job.history else None
    run = job.run
    state = job.outcome if job.finished.is_set() else "running"
    fraction = 0.0
    if last is not None:
        fraction = last.epoch / max(last.epochs, 1)
    if state == "done":
        fraction = 1.0
    parts = []
    if last is not None:
        parts.append(f"epoch {last.epoch} / {last.epochs}")
        if show_losses:
            parts += [f"{k} loss {v:.4g}" for k, v in last.losses.items()]
        if last.epsilon is not None and run.epsilon is not None:
            parts.append(f"ε so far {last.epsilon:.4g} of {run.epsilon:g}")
    else:
        parts.append("preparing (loading the data, planning the noise)…")
    headline = {
        "running": "Training",
        "done": "Training finished",
        "failed": "Training failed",
        "cancelled": "Training cancelled",
    }[state]
    detail = " · ".join(parts)
    message = f"<p>{html.escape(job.message)}</p>" if job.message else ""
    if state == "done":
        message = (f"<p>Run <code>{run.run_id}</code>: {html.escape(privacy_text(run))}. Draw "
                   f"rows on the <b>Generate</b> tab.</p>")
    return (f"<div><b>{headline}</b> — {html.escape(run.generator)}, run "
            f"<code>{run.run_id}</code><div class='ps-bar {state}'><div style='width:"
            f"{fraction * 100:.0f}%'></div></div>{html.escape(detail)}{message}</div>")


def loss_frame(job: TrainingJob | None) -> pd.DataFrame | None:
    """The losses so far, long format (epoch, loss, value) for a line plot; None before any.

    Never an empty frame: the plot fixes its scales from the first value it gets, and an empty
    one leaves it unable to draw the lines that come later.
    """
    import pandas as pd

    rows = []
    for progress in job.history if job is not None else []:
        for name, value in progress.losses.items():
            if value == value:  # NaN losses are not plotted
                rows.append({"epoch": progress.epoch, "loss": name, "value": float(value)})
    if not rows:
        return None
    return pd.DataFrame({
        "epoch": pd.Series([r["epoch"] for r in rows], dtype="int64"),
        "loss": pd.Series([r["loss"] for r in rows], dtype="str"),
        "value": pd.Series([r["value"] for r in rows], dtype="float64"),
    })


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


__all__ = ["CSS", "NOT_DP_BANNER", "dataset_info", "loss_frame", "progress_html", "stage"]
