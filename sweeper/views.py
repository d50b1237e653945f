"""Rich rendering of what the launcher, `status` and the sweep kinds hand the CLI: trial and study tables,
state counts, dry-run plans, outcomes (the launcher side only: jobs never import rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import singledispatch
from typing import Any

from rich.console import Group as Renderables
from rich.table import Table
from rich.text import Text

from sweeper.display import STATE_STYLES, duration, format_value, metric_value, num, short_names
from sweeper.kinds.base import Counts, Lines, OverviewRow, Rows, StudyTable, TrialTable
from sweeper.ledger import Ledger
from sweeper.states import FAILURES
from sweeper.status import Refresh, TrialStatus

RICH_TABLE_MAX_ROWS = 200

SOURCES = {
    "sacct": "sacct (one call)",
    "squeue": "squeue + heartbeats (sacct unavailable)",
    "local": "local processes + heartbeats",
    "none": "the ledger and heartbeats (no unfinished job to ask the scheduler about)",
    "unreachable": "the ledger and heartbeats only",
}


def counts_text(counts: dict[str, int]) -> Text:
    text = Text()
    for i, (state, n) in enumerate(sorted(counts.items(), key=lambda kv: -kv[1])):
        if i:
            text.append("  ")
        text.append(f"{state} {n}", style=STATE_STYLES.get(state, ""))
    return text


def status_table(
    statuses: Sequence[TrialStatus], title: str | None = None, metric: str = "valid/acc"
) -> Table | Text:
    """One row per trial: state, epoch/total, latest valid metrics, elapsed, job, attempt, error or note."""
    keys: list[str] = []
    for s in statuses:
        keys += [k for k in s.params if k not in keys]
    names = short_names(keys)
    columns = ["trial", *[names[k] for k in keys], "seed", "state", "epoch", "valid loss"]
    columns += [metric] if metric != "valid/loss" else []
    columns += ["elapsed", "job", "attempt", "error / note"]
    rows: list[list[str | Text]] = []
    for s in statuses:
        epoch = f"{s.epoch}/{s.epochs}" if s.epochs else str(s.epoch or "-")
        shown = metric_value(metric, s.last.get(metric))
        attempt = str(s.attempt or "-") + (f" +{s.restarts} requeue(s)" if s.restarts else "")
        message = s.error if s.state in FAILURES else s.note
        rows.append(
            [
                s.trial_id,
                *[format_value(s.params[k]) if k in s.params else "-" for k in keys],
                str(s.seed),
                Text(s.state, style=STATE_STYLES.get(s.state, "")),
                epoch,
                num(s.last.get("valid/loss")),
                *([shown] if metric != "valid/loss" else []),
                duration(s.elapsed_s),
                s.job_id or "-",
                attempt,
                (message or "")[:160],
            ]
        )
    if len(rows) > RICH_TABLE_MAX_ROWS:
        return aligned_table(columns, rows, title)
    table = Table(title=title, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def study_table(rows: Sequence[dict], keys: list[str], metric: str, title: str | None = None) -> Table:
    """Optuna trials: number, state, params, value (mean over seeds), epoch reached, worker job."""
    names = short_names(keys)
    table = Table(title=title, header_style="bold")
    for column in [
        "trial",
        "state",
        *[names[k] for k in keys],
        metric,
        "epoch",
        "job",
        "note",
    ]:
        table.add_column(column, overflow="fold")
    for row in rows:
        epoch = f"{row['epoch']}/{row['epochs']}" if row.get("epochs") else str(row.get("epoch") or "-")
        note = row.get("error") or ""
        if row.get("retry_of") is not None:
            note = f"retry of trial {row['retry_of']}" + (f"; {note}" if note else "")
        table.add_row(
            str(row["number"]),
            Text(row["state"], style=STATE_STYLES.get(row["state"], "")),
            *[format_value(row["params"][k]) if k in row["params"] else "-" for k in keys],
            num(row["value"]),
            epoch,
            row.get("job_id") or "-",
            note[:100],
        )
    return table


def aligned_table(
    columns: Sequence[str], rows: Sequence[Sequence[str | Text]], title: str | None = None
) -> Text:
    """Plain aligned columns (like squeue's), styles kept: rich's Table costs ~0.6 ms a row, too slow for the
    status of a 1000-trial sweep; this costs a few microseconds a row."""
    widths = [len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell.plain if isinstance(cell, Text) else cell))
    text = Text(no_wrap=True, overflow="ellipsis")
    if title:
        text.append(title + "\n", style="italic")
    for i, column in enumerate(columns):
        text.append(column.ljust(widths[i] + 2) if i < len(columns) - 1 else column, style="bold")
    for row in rows:
        text.append("\n")
        for i, cell in enumerate(row):
            plain, style = (cell.plain, str(cell.style)) if isinstance(cell, Text) else (cell, "")
            text.append(plain.ljust(widths[i] + 2) if i < len(row) - 1 else plain, style=style or None)
    return text


def sources_text(result: Refresh) -> list[Text]:
    """Where the states came from, and why that is less than usual."""
    parts = [Text(f"states from {SOURCES.get(result.source, result.source)}", style="dim")]
    if result.warning:
        parts.append(Text(f"warning: {result.warning}", style="yellow"))
    parts += [Text(f"warning: {problem}", style="yellow") for problem in result.problems]
    return parts


def sweeps_table(rows: Sequence[tuple[Ledger, OverviewRow]], result: Refresh) -> Renderables:
    """`sweeper status`: one row per sweep."""
    table = Table(title="sweeps", header_style="bold")
    # the best config's mean over its seeds of each run's best epoch: what analyze's "Best config" says
    for column in ("sweep", "launched", "executor", "trials", "states", "best config (seed mean)"):
        table.add_column(column)
    warnings = [row.warning for _ledger, row in rows if row.warning]
    for ledger, row in rows:
        meta = ledger.meta
        metric = (meta.get("objective") or {}).get("metric", "valid/acc")
        table.add_row(
            f"{ledger.name}/{ledger.dir.name}",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.get("created_at", 0))),
            meta.get("executor", "?"),
            row.trials,
            counts_text(row.counts),
            f"{metric} {metric_value(metric, row.best)}",
        )
    if warnings:
        result.warning = "; ".join(w for w in (result.warning, *warnings) if w)
    return Renderables(table, *sources_text(result))


# -- the sweep kinds' parts --------------------------------------------------------------------------------
@singledispatch
def part(item: Any) -> Any:
    """A renderable for one part a sweep kind handed over."""
    raise TypeError(f"no view for {type(item).__name__}")


@part.register
def _(item: TrialTable) -> Any:
    return status_table(item.statuses, item.title, item.metric)


@part.register
def _(item: StudyTable) -> Any:
    return study_table(item.rows, item.keys, item.metric, item.title)


@part.register
def _(item: Counts) -> Any:
    return counts_text(item.counts)


@part.register
def _(item: Rows) -> Any:
    table = Table(title=item.title, header_style="bold")
    for column in item.columns:
        table.add_column(column)
    for row in item.rows:
        table.add_row(*row)
    return table


@part.register
def _(item: Lines) -> Any:
    return Text("\n".join(item.lines), style=item.style or "")


def parts(items: Sequence[Any]) -> Renderables:
    return Renderables(*[part(item) for item in items if not (isinstance(item, Lines) and not item.lines)])


def failure_lines(failures: Sequence[tuple[str, str | None]]) -> Text:
    text = Text()
    for who, error in failures:
        if error:
            if text:
                text.append("\n")
            text.append(f"  {who}", style="red")
            text.append(f": {error}")
    return text


def plan_lines(plan) -> list[str]:
    """A dry run's lines about where and how the jobs would run."""
    lines = [f"  {key} = {value}" for key, value in plan.executor_params.items()]
    if plan.profile:
        lines.append(f"cluster profile: {plan.profile}")
    return lines + plan.backend.preview(plan.spec, plan.resources)
