"""Terminal and markdown rendering of analyses and statuses (the launcher side only: jobs never import rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.console import Group as Renderables
from rich.table import Table
from rich.text import Text

from sweeper.ledger import Ledger
from sweeper.space import format_value, short_names
from sweeper.status import FAILURES, Refresh, SweepOverview, TrialStatus, count_states

RICH_TABLE_MAX_ROWS = 200

SOURCES = {
    "sacct": "sacct (one call)",
    "squeue": "squeue + heartbeats (sacct unavailable)",
    "local": "local processes + heartbeats",
    "none": "the ledger and heartbeats (no unfinished job to ask the scheduler about)",
    "unreachable": "the ledger and heartbeats only",
}

STATE_STYLES = {
    "COMPLETED": "green",
    "RUNNING": "cyan",
    "PENDING": "yellow",
    "QUEUED": "yellow",
    "FAILED": "bold red",
    "TIMEOUT": "red",
    "CANCELLED": "magenta",
    "PRUNED": "blue",
    "OUT_OF_MEMORY": "bold red",
    "NOT_SUBMITTED": "dim",
    "REQUEUED": "yellow",
    "PREEMPTED": "yellow",
    "SKIPPED": "dim",
    "UNKNOWN": "dim",
    # Optuna's trial states
    "COMPLETE": "green",
    "FAIL": "bold red",
    "WAITING": "yellow",
}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_epoch(text: str, epoch: int | None) -> str:
    return text if epoch is None else f"{text} ({epoch})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# -- analysis: run / seed-group tables, effects, comparisons (rich and markdown from the same cells) ---------


def markdown_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table (pipes in cells escaped)."""

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


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
        value = s.last.get(metric)
        shown = pct(value) if value is not None and metric.endswith("acc") else num(value)
        attempt = str(s.attempt or "-") + (f" +{s.restarts} requeue(s)" if s.restarts else "")
        message = s.error if s.state in FAILURES or s.state == "CANCELLED" else s.note
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


def study_table(rows: Sequence[dict], spec, title: str | None = None) -> Table:
    """Optuna trials: number, state, params, value (mean over seeds), epoch reached, worker job."""
    keys = list(spec.search.params)
    names = short_names(keys)
    table = Table(title=title, header_style="bold")
    for column in [
        "trial",
        "state",
        *[names[k] for k in keys],
        spec.objective.metric,
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


def sweep_status(
    ledger: Ledger, statuses: Sequence[TrialStatus], result: Refresh, only: set[str] | None = None
) -> Renderables:
    """`sweeper status <sweep>`: the trials table, the counts by state, and where the states came from."""
    metric = (ledger.meta.get("objective") or {}).get("metric", "valid/acc")
    shown = [s for s in statuses if only is None or s.state in only]
    title = f"{ledger.name} {ledger.dir.name} ({ledger.meta.get('executor')}, {len(statuses)} trials)"
    parts: list[Any] = [status_table(shown, title=title, metric=metric), counts_text(count_states(statuses))]
    parts.append(Text(f"states from {SOURCES.get(result.source, result.source)}", style="dim"))
    if result.warning:
        parts.append(Text(f"warning: {result.warning}", style="yellow"))
    return Renderables(*parts)


def sweeps_table(overviews: Sequence[SweepOverview], result: Refresh) -> Renderables:
    table = Table(title="sweeps", header_style="bold")
    for column in ("sweep", "launched", "executor", "trials", "states", "best"):
        table.add_column(column)
    for item in overviews:
        meta = item.ledger.meta
        metric = (meta.get("objective") or {}).get("metric", "valid/acc")
        best = item.best()
        shown = "-" if best is None else (pct(best) if metric.endswith("acc") else num(best))
        table.add_row(
            f"{item.ledger.name}/{item.ledger.dir.name}",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.get("created_at", 0))),
            meta.get("executor", "?"),
            str(len(item.statuses))
            if item.study is None  # an Optuna sweep: trials spent of the budget, by its workers
            else f"{sum(r['counted'] for r in item.study)}/{item.budget} by {len(item.statuses)} "
            + ("worker" if len(item.statuses) == 1 else "workers"),
            counts_text(item.counts),
            f"{metric} {shown}",
        )
    parts: list[Any] = [table, Text(f"states from {SOURCES.get(result.source, result.source)}", style="dim")]
    if result.warning:
        parts.append(Text(f"warning: {result.warning}", style="yellow"))
    return Renderables(*parts)
