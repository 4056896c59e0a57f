"""Report sections with plots: per-column distributions and association heatmaps (matplotlib).

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, so no global backend state),
written as PNG under ``plots/`` in the report folder and embedded in the page as ``data:`` URIs
so ``report.html`` stays one self-contained file. matplotlib is imported inside ``render``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from privsynth_core import hookimpl
from privsynth_core.report import ReportContext, ReportSection, SectionOutput

from .metrics._common import MISSING, encode, is_numeric_kind

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REAL_COLOUR = "#3b6ea8"
SYNTHETIC_COLOUR = "#e07b39"
MAX_BARS = 12
PLOTS_DIR = "plots"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, directory: Path, name: str) -> tuple[str, str]:
    """Write ``fig`` as PNG; return its relative path and an ``<img>`` tag embedding it."""
    folder = directory / PLOTS_DIR
    folder.mkdir(exist_ok=True)
    path = folder / name
    fig.savefig(path, format="png")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    rel = f"{PLOTS_DIR}/{name}"
    return rel, f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'


def _safe_name(column: str, index: int) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in column)[:40]
    return f"dist_{index:02d}_{cleaned}.png"


def _column_score(context: ReportContext, column: str) -> str:
    for metric_id, key in (("ks", "ks"), ("tvd", "tvd")):
        res = context.result(metric_id)
        if res is not None and column in res.details.get("per_column", {}):
            return f"{key.upper()} {res.details['per_column'][column][key]:.3f}"
    return ""


class DistributionsSection(ReportSection):
    """One small plot per column: real vs synthetic histogram or bar chart."""

    section_id = "distributions"
    title = "Per-column distributions"
    description = "histograms / bar charts of each column, real vs synthetic (matplotlib)"
    order = 20

    def render(self, context: ReportContext, directory: Path) -> SectionOutput:
        """Draw one PNG per column; embed them in a grid."""
        schema = context.schema
        enc = encode(schema, [context.real, context.synthetic])
        files, cells = [], []
        for index, column in enumerate(schema.names):
            fig = _figure(3.6, 2.5)
            ax = fig.add_subplot()
            if is_numeric_kind(schema.column(column).kind):
                self._histogram(ax, enc.tables[0][column], enc.tables[1][column],
                                schema.column(column).kind.value == "datetime")
            else:
                self._bars(ax, enc.tables[0][column], enc.tables[1][column], enc.labels[column])
            score = _column_score(context, column)
            ax.set_title(column + (f"  ({score})" if score else ""), fontsize=9)
            ax.tick_params(labelsize=7)
            rel, img = _save(fig, directory, _safe_name(column, index))
            files.append(rel)
            cells.append(f'<figure class="plot">{img}</figure>')
        legend = (f'<p class="legend"><span style="color:{REAL_COLOUR}">■ real</span> '
                  f'<span style="color:{SYNTHETIC_COLOUR}">■ synthetic</span> — shares of rows; '
                  f'numeric columns in 30 bins over the real data\'s 0.5-99.5 % range (values '
                  f'outside fall in the end bins); bar charts show the {MAX_BARS} most frequent '
                  f'real categories.</p>')
        return SectionOutput(
            html=legend + '<div class="grid">' + "".join(cells) + "</div>", files=files,
        )

    @staticmethod
    def _histogram(ax: Any, real: np.ndarray, synthetic: np.ndarray, is_date: bool) -> None:
        r, s = real[np.isfinite(real)], synthetic[np.isfinite(synthetic)]
        if r.size == 0:
            ax.text(0.5, 0.5, "no values", ha="center", transform=ax.transAxes)
            return
        low, high = np.quantile(r, [0.005, 0.995])
        if high <= low:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, 31)
        scale = 86400.0 if is_date else 1.0
        for values, colour, style in ((r, REAL_COLOUR, "bar"), (s, SYNTHETIC_COLOUR, "step")):
            if values.size == 0:
                continue
            clipped = np.clip(values, low, high)
            weights = np.full(values.size, 1 / values.size)
            ax.hist(clipped / scale, bins=edges / scale, weights=weights, histtype=style,
                    color=colour, alpha=0.55 if style == "bar" else 1.0, linewidth=1.6)
        if is_date:
            ax.xaxis_date()
        nulls = (1 - r.size / real.size, 1 - s.size / max(synthetic.size, 1))
        if max(nulls) > 0:
            ax.text(0.98, 0.95, f"missing: {nulls[0]:.1%} / {nulls[1]:.1%}", ha="right",
                    va="top", fontsize=7, transform=ax.transAxes)

    @staticmethod
    def _bars(ax: Any, real: np.ndarray, synthetic: np.ndarray, labels: list[str]) -> None:
        size = len(labels)
        p = np.bincount(real, minlength=size) / max(real.size, 1)
        q = np.bincount(synthetic, minlength=size) / max(synthetic.size, 1)
        order = [i for i in np.argsort(-(p + q / 1e6), kind="stable") if p[i] > 0 or q[i] > 0]
        shown, rest = order[:MAX_BARS], order[MAX_BARS:]
        names = [labels[i] if labels[i] != MISSING else "(missing)" for i in shown]
        pv, qv = list(p[shown]), list(q[shown])
        if rest:
            names.append(f"({len(rest)} others)")
            pv.append(float(p[rest].sum()))
            qv.append(float(q[rest].sum()))
        y = np.arange(len(names))
        ax.barh(y - 0.2, pv, height=0.4, color=REAL_COLOUR, alpha=0.75)
        ax.barh(y + 0.2, qv, height=0.4, color=SYNTHETIC_COLOUR)
        ax.set_yticks(y, [n[:22] for n in names], fontsize=7)
        ax.invert_yaxis()


class CorrelationsSection(ReportSection):
    """Association heatmaps (real, synthetic, difference) and the 2-way TVD of every pair."""

    section_id = "correlations"
    title = "Correlations and pairwise fidelity"
    description = "association heatmaps real / synthetic / difference and pairwise TVD"
    order = 30

    def render(self, context: ReportContext, directory: Path) -> SectionOutput:
        """Reuse the matrices of ``correlation_diff`` / ``marginal_2way_tvd`` if they ran."""
        from .metrics.fidelity import association_matrix

        files, parts = [], []
        corr = context.result("correlation_diff")
        if corr is not None:
            columns = corr.details["columns"]
            real_m = np.array(corr.details["real"])
            syn_m = np.array(corr.details["synthetic"])
        else:
            enc = encode(context.schema, [context.real, context.synthetic])
            columns = enc.columns
            sizes = {n: len(enc.labels[n]) for n in enc.categorical}
            real_m, syn_m = (association_matrix(t, enc.numeric, sizes, columns)
                             for t in enc.tables)
        n = len(columns)
        side = max(3.2, 0.24 * n + 1.6)
        fig = _figure(3 * side + 1.2, side + 0.4)
        axes = fig.subplots(1, 3)
        panels = (("real", real_m, "viridis", -1.0, 1.0),
                  ("synthetic", syn_m, "viridis", -1.0, 1.0),
                  ("|real − synthetic|", np.abs(real_m - syn_m), "Reds", 0.0, 0.5))
        for ax, (title, matrix, cmap, vmin, vmax) in zip(axes, panels, strict=True):
            image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
            self._label(ax, columns, title)
            fig.colorbar(image, ax=ax, shrink=0.7)
        rel, img = _save(fig, directory, "correlations.png")
        files.append(rel)
        parts.append(
            "<p>Association of every pair of columns: Pearson correlation (numeric pairs), "
            "Cramér's V (categorical pairs), correlation ratio (mixed pairs). Differences above "
            "0.5 show as the darkest red.</p>" + f'<figure class="wide">{img}</figure>'
        )
        tvd = context.result("marginal_2way_tvd")
        if tvd is not None and len(tvd.details.get("columns", [])) >= 2:
            cols = tvd.details["columns"]
            side = max(3.2, 0.24 * len(cols) + 1.6)
            fig = _figure(side + 1.2, side + 0.4)
            ax = fig.add_subplot()
            image = ax.imshow(np.array(tvd.details["pair_tvd"]), cmap="Reds", vmin=0,
                              vmax=max(0.2, float(np.max(tvd.details["pair_tvd"]))))
            self._label(ax, cols, "2-way marginal TVD per pair")
            fig.colorbar(image, ax=ax, shrink=0.7)
            rel, img = _save(fig, directory, "pair_tvd.png")
            files.append(rel)
            parts.append("<p>Total variation distance of each 2-way marginal (the headline "
                         "fidelity score is their mean): dark cells are the pairs the synthetic "
                         f"table gets most wrong.</p><figure>{img}</figure>")
        return SectionOutput(html="".join(parts), files=files)

    @staticmethod
    def _label(ax: Any, columns: list[str], title: str) -> None:
        ticks = range(len(columns))
        short = [c[:18] for c in columns]
        ax.set_xticks(ticks, short, rotation=90, fontsize=7)
        ax.set_yticks(ticks, short, fontsize=7)
        ax.set_title(title, fontsize=10)


@hookimpl
def register_report_sections(register: Callable[[type[ReportSection]], None]) -> None:
    """Register the plot sections of the report."""
    register(DistributionsSection)
    register(CorrelationsSection)
