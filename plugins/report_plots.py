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
from privsynth_core.evaluation.report import ReportContext, ReportSection, SectionOutput

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
                self._histogram(
                    ax,
                    enc.tables[0][column],
                    enc.tables[1][column],
                    schema.column(column).kind.value,
                )
            else:
                self._bars(ax, enc.tables[0][column], enc.tables[1][column], enc.labels[column])
            score = _column_score(context, column)
            ax.set_title(column + (f"  ({score})" if score else ""), fontsize=9)
            ax.tick_params(labelsize=7)
            rel, img = _save(fig, directory, _safe_name(column, index))
            files.append(rel)
            cells.append(f'<figure class="plot">{img}</figure>')
        legend = (
            f'<p class="legend"><span style="color:{REAL_COLOUR}">■ real</span> '
            f'<span style="color:{SYNTHETIC_COLOUR}">■ synthetic</span> — shares of rows; '
            f"numeric columns over the real data's 0.5-99.5 % range (the share of rows "
            f'outside it is printed as "not shown: real / synthetic"); bar charts show the '
            f"{MAX_BARS} most frequent real categories.</p>"
        )
        return SectionOutput(
            html=legend + '<div class="grid">' + "".join(cells) + "</div>",
            files=files,
        )

    @staticmethod
    def _histogram(ax: Any, real: np.ndarray, synthetic: np.ndarray, kind: str) -> None:
        r, s = real[np.isfinite(real)], synthetic[np.isfinite(synthetic)]
        if r.size == 0:
            ax.text(0.5, 0.5, "no values", ha="center", transform=ax.transAxes)
            return
        low, high = np.quantile(r, [0.005, 0.995])
        if kind == "integer" and high - low <= 40:
            edges = np.arange(np.floor(low) - 0.5, np.ceil(high) + 1.0)
        else:
            if high <= low:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, 31)
        scale = 86400.0 if kind == "datetime" else 1.0
        outside = []
        for values, colour, style in ((r, REAL_COLOUR, "bar"), (s, SYNTHETIC_COLOUR, "step")):
            if values.size == 0:
                outside.append(0.0)
                continue
            inside = (values >= edges[0]) & (values <= edges[-1])
            outside.append(1 - inside.mean())
            weights = np.full(int(inside.sum()), 1 / values.size)
            ax.hist(
                values[inside] / scale,
                bins=edges / scale,
                weights=weights,
                histtype=style,
                color=colour,
                alpha=0.55 if style == "bar" else 1.0,
                linewidth=1.6,
            )
        if kind == "datetime":
            ax.xaxis_date()
        nulls = (1 - r.size / real.size, 1 - s.size / max(synthetic.size, 1))
        lines = []
        if max(outside) > 0:
            lines.append(f"not shown: {outside[0]:.1%} / {outside[1]:.1%}")
        if max(nulls) > 0:
            lines.append(f"missing: {nulls[0]:.1%} / {nulls[1]:.1%}")
        if lines:
            ax.text(
                0.98,
                0.95,
                "\n".join(lines),
                ha="right",
                va="top",
                fontsize=7,
                transform=ax.transAxes,
            )

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
        from .metrics._associations import association_matrix

        corr = context.result("correlation_diff")
        if corr is not None:
            columns = corr.details["columns"]
            real_m = np.array(corr.details["real"])
            syn_m = np.array(corr.details["synthetic"])
        else:
            enc = encode(context.schema, [context.real, context.synthetic])
            columns = enc.columns
            sizes = {n: len(enc.labels[n]) for n in enc.categorical}
            real_m, syn_m = (association_matrix(t, enc.numeric, sizes, columns) for t in enc.tables)
        panels = [
            ("correlation_real.png", "real", real_m, "RdBu_r", -1.0, 1.0),
            ("correlation_synthetic.png", "synthetic", syn_m, "RdBu_r", -1.0, 1.0),
            (
                "correlation_difference.png",
                "|real − synthetic|",
                np.abs(real_m - syn_m),
                "Reds",
                0.0,
                0.5,
            ),
        ]
        tvd = context.result("marginal_2way_tvd")
        if tvd is not None and len(tvd.details.get("columns", [])) >= 2:
            pair = np.array(tvd.details["pair_tvd"])
            panels.append(
                (
                    "pair_tvd.png",
                    "2-way marginal TVD per pair",
                    pair,
                    "Reds",
                    0.0,
                    max(0.2, float(pair.max())),
                )
            )
            columns_for = {"pair_tvd.png": tvd.details["columns"]}
        else:
            columns_for = {}
        files, cells = [], []
        for name, title, matrix, cmap, vmin, vmax in panels:
            rel, img = self._heatmap(
                directory, name, title, matrix, columns_for.get(name, columns), cmap, vmin, vmax
            )
            files.append(rel)
            cells.append(f"<figure>{img}</figure>")
        intro = (
            "<p>Association of every pair of columns: Pearson correlation for numeric pairs "
            "(−1 to 1), Cramér's V for categorical pairs and the correlation ratio for mixed "
            "pairs (0 to 1). The difference panel saturates at 0.5. The last panel shows the "
            "total variation distance of each 2-way marginal (the headline fidelity score is "
            "their mean): dark cells are the pairs the synthetic table gets most wrong.</p>"
        )
        return SectionOutput(
            html=intro + '<div class="grid2">' + "".join(cells) + "</div>", files=files
        )

    @staticmethod
    def _heatmap(
        directory: Path,
        name: str,
        title: str,
        matrix: np.ndarray,
        columns: list[str],
        cmap: str,
        vmin: float,
        vmax: float,
    ) -> tuple[str, str]:
        side = max(3.6, 0.22 * len(columns) + 1.8)
        fig = _figure(side + 1.0, side)
        ax = fig.add_subplot()
        image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax)
        ticks = range(len(columns))
        short = [c[:18] for c in columns]
        ax.set_xticks(ticks, short, rotation=90, fontsize=8)
        ax.set_yticks(ticks, short, fontsize=8)
        ax.set_title(title, fontsize=11)
        fig.colorbar(image, ax=ax, shrink=0.75)
        return _save(fig, directory, name)


@hookimpl
def register_report_sections(register: Callable[[type[ReportSection]], None]) -> None:
    """Register the plot sections of the report."""
    register(DistributionsSection)
    register(CorrelationsSection)
