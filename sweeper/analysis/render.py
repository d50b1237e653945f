"""Terminal and markdown rendering of an analysis report: run tables, seed groups, effects, pivots, comparisons.

Lives with the analysis (imported only by `analyze`), so `sweeper status` never pays for numpy or pyarrow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from sweeper.analysis.aggregate import Comparison, Effects, Group, Pivot, Stat, summary_stat
from sweeper.analysis.correlate import correlation_line
from sweeper.analysis.query import export_name
from sweeper.analysis.report import Report
from sweeper.display import STATE_STYLES, format_value, markdown_table, short_names
from sweeper.tables import KEEP, NO_LIMIT, Room, TableColumn, choose, fitted_table

TABLE_ROWS = 50  # rows a terminal table shows unless --top says otherwise (rich needs ~1 ms a row)


def signed(value: float | None, digits: int = 4, suffix: str = "") -> str:
    return "-" if value is None else f"{value:+.{digits}f}{suffix}"


def _is_fraction(metric: str) -> bool:
    return metric.endswith("acc") or metric.endswith("accuracy")


def metric_label(metric: str) -> str:
    return metric.replace("/", " ")


def value_text(stat: Stat, fmt: str, epoch: Stat | None = None) -> str:
    """One number (a run) or mean±std (a seed group) as fmt: pct | pts | num | signed | signed% | int."""
    if stat.mean is None:
        return "-"
    mean, std = stat.mean, stat.std
    if fmt == "pct":
        text = f"{100 * mean:.1f}%" if std is None else f"{100 * mean:.1f}±{100 * std:.1f}%"
    elif fmt == "pts":
        text = f"{100 * mean:+.1f}" + ("" if std is None else f"±{100 * std:.1f}") + " pts"
    elif fmt == "signed":
        text = f"{mean:+.4f}" + ("" if std is None else f"±{std:.4f}")
    elif fmt == "signed%":
        text = f"{mean:+.1f}%" if std is None else f"{mean:+.1f}±{std:.1f}%"
    elif fmt == "int":
        text = f"{mean:.0f}" if std is None else f"{mean:.1f}±{std:.1f}"
    else:
        text = f"{mean:.4f}" + ("" if std is None else f"±{std:.4f}")
    if epoch is not None and epoch.mean is not None:
        text += f" ({epoch.mean:.0f})"
    return text


def objective_format(metric: str) -> str:
    return "pct" if _is_fraction(metric) else "num"


@dataclass
class Column:
    header: str
    cell: Callable[[Group], str]
    numeric: bool = True
    name: str = ""  # what --columns and the terminal's footer call it (the export name); the header if empty
    priority: int = KEEP  # the terminal drops the lowest first when it is too narrow (tables.py)


# The order in which a narrow terminal drops the table's columns, first dropped first (their export names;
# `{split}` is the split analyzed). The identity columns (config, sweep, trial, swept parameters) never go.
DROP_ORDER = (
    "flags",
    "degradation",
    "last_{split}_loss",
    "final_train_acc",
    "gap",
    "train_acc_at_best",
    "early_stop_epoch",
    "epochs_since_best",
    "seed",
    "degradation_pct",
    "still_improving",
    "epochs",
    "gap_at_best",
    "n",
    "status",
    "best_{split}_loss",
    "best_{split}_acc",
    "objective",
)


def _fraction_text(group: Group, name: str) -> str:
    values = [getattr(r, name) for r in group.runs if getattr(r, name) is not None]
    if not values:
        return "-"
    if group.n == 1:
        return "yes" if values[0] else "no"
    return f"{sum(values)}/{len(values)}"


def _mean_only(stat: Stat) -> Stat:
    return Stat(stat.mean, None, stat.n)


def flags_text(group: Group) -> str:
    """NaN/inf losses and divergence: for a run `NaN@12, diverged`, for a group `NaN 1/3, diverged 1/3`."""
    flags: list[str] = []
    nonfinite = [r for r in group.runs if r.nonfinite_epoch is not None]
    diverged = [r for r in group.runs if r.diverged]
    if group.n == 1:
        if nonfinite:
            flags.append(f"NaN/inf@{nonfinite[0].nonfinite_epoch}")
        if diverged:
            flags.append("diverged")
        return ", ".join(flags)
    if nonfinite:
        flags.append(f"NaN/inf {len(nonfinite)}/{group.n}")
    if diverged:
        flags.append(f"diverged {len(diverged)}/{group.n}")
    return ", ".join(flags)


def epochs_text(group: Group) -> str:
    reached = sorted({r.epochs_run for r in group.runs})
    planned = sorted({r.epochs_planned for r in group.runs if r.epochs_planned})
    done = str(reached[0]) if len(reached) == 1 else f"{reached[0]}-{reached[-1]}"
    return f"{done}/{planned[-1]}" if planned else done


def states_text(group: Group) -> str:
    if group.n == 1:
        return group.first.state
    return " · ".join(f"{state} {n}" for state, n in group.states.most_common())


def mark_text(group: Group) -> str:
    """A run's validity mark; for a seed group the marked runs counted, e.g. `partial 1/3`."""
    if group.n == 1:
        return group.first.mark or ""
    counts = Counter(r.mark for r in group.runs if r.mark and r.mark != "valid")
    return " · ".join(f"{mark} {n}/{group.n}" for mark, n in counts.most_common()) or (
        "valid" if all(r.mark for r in group.runs) else ""
    )


def trial_text(group: Group) -> str:
    run = group.first
    if run.optuna_trial is None:
        return "-"
    return f"#{run.optuna_trial}" + (f" {run.optuna_state}" if run.optuna_state else "")


def report_columns(report: Report, every_std: bool = True) -> list[Column]:
    """The columns of the run / seed-group table. every_std=False (the terminal, where width is short):
    ± std only on the objective, the best loss, gap @best and degr. %; the other columns show the mean."""
    split, metric = report.split, report.objective.metric
    swept = report.analysis.swept_keys
    names = short_names(list(swept))
    runs = report.runs

    key_columns = {"objective", "best_acc", "best_loss", "gap_at_best", "degradation_pct"}

    def stat_cell(name: str, fmt: str, epoch: str | None = None) -> Callable[[Group], str]:
        if every_std or name in key_columns:
            return lambda g: value_text(g.stat(name), fmt, g.stat(epoch) if epoch else None)
        return lambda g: value_text(_mean_only(g.stat(name)), fmt, g.stat(epoch) if epoch else None)

    columns = [Column("config", lambda g: g.name, numeric=False)]
    if len({r.sweep_dir for r in runs}) > 1:
        columns.append(Column("sweep", lambda g: f"{g.sweep}/{Path(g.first.sweep_dir).name}", numeric=False))
    if any(r.optuna_trial is not None for r in runs):
        columns.append(Column("trial", trial_text, numeric=False))
    for key in swept:
        columns.append(
            Column(names[key], lambda g, k=key: format_value(g.params[k]) if k in g.params else "-", False)
        )
    ranked: list[Column] = []
    if report.grouped:
        ranked.append(Column("n", lambda g: str(len(g.used))))  # seeds in the mean (notes name the rest)
    elif len({r.seed for r in runs}) > 1:
        ranked.append(Column("seed", lambda g: "-" if g.first.seed is None else str(g.first.seed)))
    summary_names = report.analysis.summary_names
    from_summary = metric in summary_names and not any(metric in r.metrics for r in runs)
    if metric not in (f"{split}/acc", f"{split}/loss") and not from_summary:
        ranked.append(
            Column(
                f"best {metric} (ep)",
                stat_cell("objective", objective_format(metric), "objective_epoch"),
                name="objective",
            )
        )
    ranked += [
        Column(f"best {split} acc (ep)", stat_cell("best_acc", "pct", "best_acc_epoch"), name="best_acc"),
        Column(f"best {split} loss (ep)", stat_cell("best_loss", "num", "best_loss_epoch"), name="best_loss"),
        *[
            Column(name, lambda g, k=name: value_text(summary_stat(g, k), objective_format(k)), name=name)
            for name in summary_names
        ],
        Column("train acc @best", stat_cell("train_acc_at_best", "pct"), name="train_acc_at_best"),
        Column("gap @best", stat_cell("gap_at_best", "pts"), name="gap_at_best"),
        Column("final train acc", stat_cell("final_train_acc", "pct"), name="final_train_acc"),
        Column("gap", stat_cell("gap", "pts")),
        Column(f"latest {split} loss", stat_cell("last_loss", "num"), name="last_loss"),
        Column("degr.", stat_cell("degradation", "signed"), name="degradation"),
        Column("degr. %", stat_cell("degradation_pct", "signed%"), name="degradation_pct"),
        Column("since best", stat_cell("epochs_since_best", "int"), name="epochs_since_best"),
        Column("early stop", stat_cell("early_stop_epoch", "int"), name="early_stop_epoch"),
        Column("improving", lambda g: _fraction_text(g, "still_improving"), name="still_improving"),
        Column("flags", flags_text, numeric=False),
        Column("epochs", epochs_text),
        Column("status", states_text, numeric=False),
    ]
    if any(r.mark for r in runs):
        ranked.append(Column("mark", mark_text, numeric=False))
    if not any(r.nonfinite_epoch is not None or r.diverged for r in runs):
        ranked = [c for c in ranked if c.header != "flags"]
    order = [name.format(split=split) for name in DROP_ORDER]
    for column in ranked:
        column.name = export_name(column.name or column.header, split)
        column.priority = order.index(column.name) if column.name in order else len(order)
    for column in columns:
        column.name = column.header
    return columns + ranked


def report_title(report: Report) -> str:
    what = "configs" if report.grouped else "runs"
    shown = (
        f"{len(report.rows)} of {report.total_rows}"
        if len(report.rows) < report.total_rows
        else str(report.total_rows)
    )
    seeds = f" ({len(report.runs)} runs, mean ± std over seeds)" if report.grouped else ""
    return f"{shown} {what}{seeds} in {', '.join(report.analysis.paths)}, by {metric_label(report.objective.metric)}"


def two_lines(header: str) -> str:
    """A long header broken at its middle space: columns in the terminal are as wide as their numbers."""
    if len(header) <= 9 or " " not in header:
        return header
    spaces = [i for i, c in enumerate(header) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - len(header) / 2))
    return header[:cut] + "\n" + header[cut + 1 :]


def table_columns(columns: list[Column]) -> list[TableColumn]:
    return [
        TableColumn(
            two_lines(c.header),
            c.name,
            c.priority,
            "right" if c.numeric else "left",
            detail=c.header == "flags",
        )
        for c in columns
    ]


def runs_table(report: Report, room: Room = NO_LIMIT) -> RenderableType:
    """The terminal's table: the columns that fit the room, numbers never cut or wrapped."""
    columns = report_columns(report, every_std=False)
    rows: list[list[Any]] = []
    for group in report.rows:
        cells: list[Any] = [column.cell(group) for column in columns]
        for i, column in enumerate(columns):
            if column.header == "status":
                cells[i] = Text(cells[i], style=STATE_STYLES.get(cells[i], ""))
            elif column.header == "flags" and cells[i]:
                cells[i] = Text(cells[i], style="bold red")
        rows.append(cells)
    return fitted_table(table_columns(columns), rows, room, report_title(report))


def runs_markdown(report: Report, chosen: tuple[str, ...] | None = None) -> str:
    """Every column, or the --columns ones (and the identity columns)."""
    columns = report_columns(report)
    if chosen is not None:
        columns = [columns[i] for i in choose(table_columns(columns), [], Room(None, chosen))]
    return markdown_table([c.header for c in columns], [[c.cell(g) for c in columns] for g in report.rows])


def best_line(report: Report) -> str | None:
    group = report.best
    if group is None:
        return None
    metric = report.objective.metric
    fmt = objective_format(metric)
    run = group.best_run(report.objective) or group.first
    order = [k for k in report.analysis.swept_keys if k in group.params]
    params = ", ".join(f"{k}={format_value(group.params[k])}" for k in order)
    head = f"Best config: {group.name}" + (f" ({params})" if params else "")
    label = metric_label(metric)
    at = f"at epoch {run.objective_epoch}, run dir {run.run_dir}"
    if report.grouped and group.n > 1:
        seeds = f"{len(group.used)} seed" + ("s" if len(group.used) != 1 else "")
        return (
            f"{head} - {label} {value_text(group.stat('objective'), fmt)} over {seeds}; "
            f"best seed {run.seed}: {value_text(Stat(run.objective, None, 1), fmt)} {at}"
        )
    return f"{head} - {label} {value_text(Stat(run.objective, None, 1), fmt)} {at}"


# -- effects ----------------------------------------------------------------------------------------------
def effect_lines(effects: Effects) -> list[str]:
    fmt = objective_format(effects.objective.metric)
    names = short_names([p.key for p in effects.params])
    lines = []
    for effect in effects.params:
        levels = " · ".join(
            f"{format_value(level.value)}: {value_text(level.stat, fmt)} (n={level.stat.n})"
            for level in effect.levels
        )
        lines.append(f"{names[effect.key]}: best {format_value(effect.best.value)}  [{levels}]")
    return lines


def effects_header(effects: Effects) -> str:
    left_out = f"; {effects.runs_left_out} unfinished run(s) left out" if effects.runs_left_out else ""
    return (
        f"Effects on {metric_label(effects.objective.metric)} (mean over seeds and the other parameters, "
        f"{effects.runs_used} runs{left_out}):"
    )


def pivot_cells(pivot: Pivot, fmt: str) -> tuple[list[str], list[list[str]]]:
    names = short_names([pivot.row_key, pivot.col_key])
    header = [
        f"{names[pivot.row_key]} \\ {names[pivot.col_key]}",
        *[format_value(v) for v in pivot.col_values],
    ]
    counts = {s.n for s in pivot.cells.values()}
    rows = []
    for i, value in enumerate(pivot.row_values):
        row = [format_value(value)]
        for j in range(len(pivot.col_values)):
            stat = pivot.cells.get((i, j))
            text = "-" if stat is None else value_text(Stat(stat.mean, None, stat.n), fmt)
            if stat is not None and len(counts) > 1:
                text += f" (n={stat.n})"
            row.append(text)
        rows.append(row)
    return header, rows


def pivot_table(pivot: Pivot, objective) -> Table:
    header, rows = pivot_cells(pivot, objective_format(objective.metric))
    table = Table(title=f"mean {metric_label(objective.metric)}", header_style="bold", box=box.SIMPLE_HEAD)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    for i, row in enumerate(rows):
        cells: list[Any] = list(row)
        if pivot.best is not None and pivot.best[0] == i:
            cells[pivot.best[1] + 1] = Text(cells[pivot.best[1] + 1], style="bold green")
        table.add_row(*cells)
    return table


def pivot_markdown(pivot: Pivot, objective) -> str:
    header, rows = pivot_cells(pivot, objective_format(objective.metric))
    if pivot.best is not None:
        i, j = pivot.best
        rows[i][j + 1] = f"**{rows[i][j + 1]}**"
    return markdown_table(header, rows)


# -- comparison -------------------------------------------------------------------------------------------
COMPARE_FORMATS = {"objective": None, "best_loss": "num", "gap_at_best": "pts", "epochs_run": "int"}


def comparison_cells(comparison: Comparison, report: Report) -> tuple[list[str], list[list[str]]]:
    metric, split = report.objective.metric, report.split
    titles = {
        "objective": f"best {metric_label(metric)}",
        "best_loss": f"best {split} loss",
        "gap_at_best": "gap @best",
        "epochs_run": "epochs",
    }
    header = [f"by {comparison.by}" if comparison.by != "path" else "config"]
    for name in comparison.fields:
        header += [f"{titles[name]} {label}" for label in comparison.labels[:1]]
        for label in comparison.labels[1:]:
            header += [f"{titles[name]} {label}", "Δ"]
    rows = []
    for row in comparison.rows:
        cells = [row.label]
        for name in comparison.fields:
            fmt = COMPARE_FORMATS[name] or objective_format(metric)
            first = row.cells[0][name]
            cells.append(value_text(first, fmt) + (f" n={first.n}" if first.n > 1 else ""))
            for side in row.cells[1:]:
                stat = side[name]
                cells.append(value_text(stat, fmt) + (f" n={stat.n}" if stat.n > 1 else ""))
                if stat.mean is None or first.mean is None:
                    cells.append("-")
                else:
                    delta = stat.mean - first.mean
                    cells.append(
                        {
                            "pct": f"{100 * delta:+.1f} pts",
                            "pts": f"{100 * delta:+.1f} pts",
                            "int": f"{delta:+.0f}",
                        }.get(fmt, f"{delta:+.4f}")
                    )
        rows.append(cells)
    return header, rows


def comparison_title(comparison: Comparison) -> str:
    sides = " vs ".join(comparison.labels)
    return f"{sides} (Δ: difference to {comparison.labels[0]})"


def comparison_table(comparison: Comparison, report: Report) -> Table:
    header, rows = comparison_cells(comparison, report)
    table = Table(title=comparison_title(comparison), header_style="bold", box=box.SIMPLE_HEAD)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i == 0 else "right")
    totals = [row for row in rows if row[0] in ("all runs", "best run")]
    matched = [row for row in rows if row[0] not in ("all runs", "best run")]
    for row in matched[:TABLE_ROWS]:
        table.add_row(*row)
    if len(matched) > TABLE_ROWS:
        table.add_row(
            Text(f"... {len(matched) - TABLE_ROWS} more (--format markdown/json: all)", style="dim")
        )
    for row in totals:
        table.add_row(*row, style="bold")
    return table


def comparison_markdown(comparison: Comparison, report: Report) -> str:
    header, rows = comparison_cells(comparison, report)
    return f"**{comparison_title(comparison)}**\n\n" + markdown_table(header, rows)


def report_markdown(report: Report, columns: tuple[str, ...] | None = None) -> str:
    """Everything the terminal shows, as markdown (for a lab notebook, a PR, an issue)."""
    parts = [f"**{report_title(report)}**", runs_markdown(report, columns)]
    if report.comparison is not None:
        parts.append(comparison_markdown(report.comparison, report))
    if report.effects.params:
        parts.append(
            effects_header(report.effects)
            + "\n\n"
            + "\n".join(f"- {line}" for line in effect_lines(report.effects))
        )
        for pivot in report.effects.pivots:
            parts.append(
                f"_mean {metric_label(report.objective.metric)}_\n\n"
                + pivot_markdown(pivot, report.objective)
            )
    best = best_line(report)
    if best:
        parts.append(f"**{best}**")
    if report.correlation is not None:
        parts.append(f"**{correlation_line(report.correlation)}**")
    parts += [f"_{note}_" for note in report.notes]
    return "\n\n".join(parts)


def report_renderables(report: Report, room: Room = NO_LIMIT) -> list[Any]:
    """The terminal view: the table, the comparison, the effects, the best config, notes."""
    out: list[Any] = [runs_table(report, room)]
    if len(report.rows) < report.total_rows:
        out.append(
            Text(
                f"{report.total_rows - len(report.rows)} more rows not shown (--top N shows N, --top 0 all; "
                "--format csv exports them)",
                style="dim",
            )
        )
    if report.comparison is not None:
        out.append(comparison_table(report.comparison, report))
    if report.effects.params:
        out.append(Text(effects_header(report.effects), style="bold"))
        out += [Text("  " + line) for line in effect_lines(report.effects)]
        out += [pivot_table(pivot, report.objective) for pivot in report.effects.pivots]
        if report.effects.pivot_hint:
            out.append(Text(report.effects.pivot_hint, style="dim"))
    best = best_line(report)
    if best:
        out.append(Text(best))
    if report.correlation is not None:
        out.append(Text(correlation_line(report.correlation), style="bold"))
    out += [Text(note, style="dim") for note in report.notes]
    return out


# -- status ---------------------------------------------------------------------------------------------
