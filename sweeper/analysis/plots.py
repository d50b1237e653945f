"""PNG (or PDF/SVG) figures of a report with matplotlib's Agg backend (no display needed, e.g. on a node).

- curves: valid (or --split) loss and accuracy per epoch, one line per run of the rows shown (seeds of a
  config share a colour), each run's best epoch (of the objective) marked with a dot
- heatmap: a two-parameter pivot of the objective (mean over seeds and the other parameters), best cell boxed
- scatter: the points of `--correlate A,B`, one per row
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sweeper import extras
from sweeper.analysis.aggregate import Group, Pivot
from sweeper.analysis.correlate import Correlation, correlation_line
from sweeper.display import format_value, short_names
from sweeper.errors import SweeperError
from sweeper.objective import Objective
from sweeper.run_files import METRICS_FILE

KINDS = ("curves", "heatmap", "scatter")
MAX_CURVE_ROWS = 12
CURVES_SIZE = (13.0, 4.8)  # inches, at DPI
HEATMAP_SIZE = (7.5, 6.0)
DPI = 100


@dataclass(frozen=True)
class PlotRequest:
    kind: str
    path: str


def parse_plot(text: str) -> PlotRequest:
    """`curves=out.png`, `heatmap=out.png`, or a file name that says which (`curves.png`, `wd_heatmap.png`)."""
    extras.check("plots", "--plot")  # before any run is read
    kind, sep, path = text.partition("=")
    if sep and kind in KINDS:
        return PlotRequest(kind, path)
    stem = Path(text).stem.lower()
    if "heatmap" in stem or "pivot" in stem:
        return PlotRequest("heatmap", text)
    if "curve" in stem:
        return PlotRequest("curves", text)
    if "scatter" in stem or "correl" in stem:
        return PlotRequest("scatter", text)
    raise SweeperError(f"--plot {text}: say which plot, e.g. --plot curves={text} or --plot heatmap={text}")


def _pyplot():
    matplotlib = extras.require("matplotlib", "plots", "--plot")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _is_fraction(metric: str) -> bool:
    return metric.endswith("acc") or metric.endswith("accuracy")


def plot_curves(rows: Sequence[Group], path: str, split: str, objective: Objective) -> str:
    """Learning curves of the first MAX_CURVE_ROWS rows; returns a one-line description."""
    plt = _pyplot()
    metrics = [f"{split}/loss", f"{split}/acc"]
    if objective.metric not in metrics:
        metrics.append(objective.metric)
    shown = list(rows[:MAX_CURVE_ROWS])
    figure, axes = plt.subplots(1, len(metrics), figsize=CURVES_SIZE, dpi=DPI, squeeze=False)
    axes = axes[0]
    colors = plt.get_cmap("tab20" if len(shown) > 10 else "tab10")
    lines = continuations = 0
    for index, group in enumerate(shown):
        color = colors(index % colors.N)
        for run in group.runs:
            try:
                table = pq.read_table(
                    os.path.join(run.run_dir, METRICS_FILE),
                    columns=[c for c in ["epoch", *metrics] if c in run.metrics],
                )
            except Exception:  # reported by the analysis already: draw the others
                continue
            columns = {
                name: np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)
                for name in table.column_names
            }
            epochs = columns["epoch"]
            label = run.name if group.n == 1 or run is group.first else None
            if label is not None and group.n > 1:
                label = f"{run.name} (n={group.n})"
            for axis, metric in zip(axes, metrics, strict=True):
                if metric not in columns:
                    continue
                axis.plot(
                    epochs, columns[metric], color=color, alpha=0.9 if group.n == 1 else 0.6, label=label
                )
                if run.objective_epoch is not None:
                    at = np.flatnonzero(epochs == run.objective_epoch)
                    if len(at) and math.isfinite(columns[metric][at[0]]):
                        axis.plot(run.objective_epoch, columns[metric][at[0]], "o", color=color, markersize=6)
                for start in run.continued_at:  # `sweeper continue`: where the run trained on
                    axis.axvline(start + 0.5, color=color, linestyle=":", linewidth=1.2)
            lines += 1
            continuations += len(run.continued_at)
    from matplotlib.ticker import MaxNLocator

    for axis, metric in zip(axes, metrics, strict=True):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_title(metric + (" (objective)" if metric == objective.metric else ""))
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="center right", fontsize="small", frameon=False)
    figure.suptitle(f"learning curves ({'dot' if lines else 'no runs'}: best epoch of {objective.metric})")
    figure.tight_layout(rect=(0, 0, 0.8, 1))
    _save(figure, path)
    plt.close(figure)
    more = (
        f" (the first {len(shown)} of {len(rows)} rows: --top/--sort choose)"
        if len(rows) > len(shown)
        else ""
    )
    marks = f", {continuations} continuation(s) as dotted lines" if continuations else ""
    return f"curves of {lines} run(s){marks} -> {path}{more}"


def plot_heatmap(pivot: Pivot | None, path: str, objective: Objective) -> str:
    if pivot is None:
        raise SweeperError(
            "--plot heatmap: needs two swept parameters with at least two values each (--pivot KEY1,KEY2)"
        )
    plt = _pyplot()
    grid = np.full((len(pivot.row_values), len(pivot.col_values)), np.nan)
    for (i, j), stat in pivot.cells.items():
        if stat.mean is not None:
            grid[i, j] = stat.mean
    names = short_names([pivot.row_key, pivot.col_key])
    figure, axis = plt.subplots(figsize=HEATMAP_SIZE, dpi=DPI)
    cmap = plt.get_cmap("viridis" if objective.maximize else "viridis_r").copy()
    cmap.set_bad("#dddddd")
    image = axis.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    figure.colorbar(image, ax=axis, label=f"mean {objective.metric}")
    axis.set_xticks(range(len(pivot.col_values)), [format_value(v) for v in pivot.col_values])
    axis.set_yticks(range(len(pivot.row_values)), [format_value(v) for v in pivot.row_values])
    axis.set_xlabel(names[pivot.col_key])
    axis.set_ylabel(names[pivot.row_key])
    fraction = _is_fraction(objective.metric)
    for (i, j), stat in pivot.cells.items():
        if stat.mean is None:
            continue
        text = f"{100 * stat.mean:.1f}%" if fraction else f"{stat.mean:.4g}"
        red, green, blue, _ = image.cmap(image.norm(stat.mean))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"  # readable on the cell
        axis.text(j, i, f"{text}\nn={stat.n}", ha="center", va="center", color=ink, fontsize=9)
    if pivot.best is not None:
        i, j = pivot.best
        axis.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    axis.set_title(f"mean {objective.metric}: {names[pivot.row_key]} x {names[pivot.col_key]}")
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
    return f"heatmap of {names[pivot.row_key]} x {names[pivot.col_key]} -> {path}"


def plot_scatter(correlation: Correlation | None, path: str) -> str:
    """The points of `--correlate A,B`, one per row, labelled, with both coefficients in the title."""
    if correlation is None:
        raise SweeperError("--plot scatter: needs --correlate A,B (the two keys to plot)")
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=HEATMAP_SIZE, dpi=DPI)
    xs, ys = [p[1] for p in correlation.points], [p[2] for p in correlation.points]
    axis.scatter(xs, ys, color="tab:blue")
    for name, x, y in correlation.points[:MAX_LABELS]:
        axis.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xlabel(correlation.x)
    axis.set_ylabel(correlation.y)
    axis.grid(alpha=0.3)
    axis.set_title(correlation_line(correlation).replace(": ", ":\n", 1), fontsize=9)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
    return f"scatter of {correlation.x} x {correlation.y} ({correlation.n} {correlation.over}) -> {path}"


MAX_LABELS = 40  # points labelled with their row's name


def _save(figure, path: str) -> None:
    target = Path(path)
    if target.parent and not target.parent.exists():
        raise SweeperError(f"--plot {path}: no directory {target.parent}")
    try:
        figure.savefig(target)
    except (OSError, ValueError) as exc:
        raise SweeperError(f"--plot {path}: {exc}") from exc
