"""Rich rendering of what the launcher, `status` and the sweep kinds hand the CLI: trial and study tables,
state counts, dry-run plans, outcomes (the launcher side only: jobs never import rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import singledispatch
from typing import Any, Literal

from rich.console import Group as Renderables
from rich.text import Text

from sweeper.display import STATE_STYLES, duration, format_value, metric_value, num, short_names
from sweeper.kinds.base import Counts, Lines, OverviewRow, Rows, StudyTable, TrialTable
from sweeper.ledger import Ledger
from sweeper.states import FAILURES, TrialState
from sweeper.status import Refresh, TrialStatus
from sweeper.tables import NO_LIMIT, Room, TableColumn, fitted_table

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


# The order columns are dropped in when a status table is too wide (first dropped first); identity
# columns (trial, parameters, state) never are. docs/slurm.md states it.
TRIAL_DROP_ORDER = ("error / note", "attempt", "rev", "seed", "job", "elapsed", "valid loss", "epoch")


def _priority(name: str, order: Sequence[str]) -> int:
    return order.index(name) if name in order else len(order)


def mark_text(s: TrialStatus) -> str:
    if not s.mark:
        return ""
    return f"{s.mark}: {s.mark_reason}" if s.mark_reason else s.mark


def status_table(
    statuses: Sequence[TrialStatus],
    title: str | None = None,
    metric: str = "valid/acc",
    room: Room = NO_LIMIT,
) -> Renderables:
    """One row per trial: state, epoch/total, latest valid metrics, elapsed, job, attempt, error or note;
    and the revision that added it, once the sweep has grown (`launch --into`)."""
    keys: list[str] = []
    for s in statuses:
        keys += [k for k in s.params if k not in keys]
    names = short_names(keys)
    drop = [*TRIAL_DROP_ORDER, metric]

    def column(name: str, justify: Literal["left", "right"] = "right", detail: bool = False) -> TableColumn:
        return TableColumn(name, name, _priority(name, drop), justify, detail)

    columns = [TableColumn("trial", "trial"), *[TableColumn(names[k], names[k]) for k in keys]]
    columns += [column("seed"), TableColumn("state", "state"), column("epoch"), column("valid loss")]
    columns += [column(metric)] if metric != "valid/loss" else []
    columns += [column("elapsed"), column("job"), column("attempt", "left")]
    grown = any(s.revision > 1 for s in statuses)
    columns += [column("rev")] if grown else []
    marked = any(s.mark for s in statuses)
    columns += [column("mark", "left", detail=True)] if marked else []
    columns += [column("error / note", "left", detail=True)]
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
                *([str(s.revision)] if grown else []),
                *([one_line(mark_text(s))[:80]] if marked else []),
                one_line(message or "")[:160],
            ]
        )
    return fitted_table(columns, rows, room, title)


STUDY_DROP_ORDER = ("note", "job", "epoch")


def study_table(
    rows: Sequence[dict], keys: list[str], metric: str, title: str | None = None, room: Room = NO_LIMIT
) -> Renderables:
    """Optuna trials: number, state, params, value (mean over seeds), epoch reached, worker job."""
    names = short_names(keys)
    drop = [*STUDY_DROP_ORDER, metric]
    columns = [
        TableColumn("trial", "trial", justify="right"),
        TableColumn("state", "state"),
        *[TableColumn(names[k], names[k]) for k in keys],
        *[
            TableColumn(
                name, name, _priority(name, drop), "left" if name == "note" else "right", name == "note"
            )
            for name in (metric, "epoch", "job", "note")
        ],
    ]
    cells: list[list[str | Text]] = []
    for row in rows:
        epoch = f"{row['epoch']}/{row['epochs']}" if row.get("epochs") else str(row.get("epoch") or "-")
        note = row.get("error") or ""
        if row.get("retry_of") is not None:
            note = f"retry of trial {row['retry_of']}" + (f"; {note}" if note else "")
        cells.append(
            [
                str(row["number"]),
                Text(row["state"], style=STATE_STYLES.get(row["state"], "")),
                *[format_value(row["params"][k]) if k in row["params"] else "-" for k in keys],
                num(row["value"]),
                epoch,
                row.get("job_id") or "-",
                one_line(note)[:100],
            ]
        )
    return fitted_table(columns, cells, room, title)


def one_line(text: str) -> str:
    """A cell never holds a newline (it would break the row for grep and awk)."""
    return " ".join(text.split()) if "\n" in text else text


def sources_text(result: Refresh) -> list[Text]:
    """Where the states came from, and why that is less than usual."""

    # one line each, never wrapped (a warning names a path that grep must find whole)
    def line(text: str, style: str) -> Text:
        return Text(text, style=style, no_wrap=True, overflow="ignore")

    parts = [line(f"states from {SOURCES.get(result.source, result.source)}", "dim")]
    if result.warning:
        parts.append(line(f"warning: {result.warning}", "yellow"))
    parts += [line(f"warning: {problem}", "yellow") for problem in result.problems]
    return parts


SWEEPS_DROP_ORDER = ("executor", "launched", "trials", "best", "states")


def sweeps_table(
    rows: Sequence[tuple[Ledger, OverviewRow]], result: Refresh, room: Room = NO_LIMIT
) -> Renderables:
    """`sweeper status`: one row per sweep."""
    # "best": the best config's mean over its seeds of each run's best epoch, what analyze's "Best config" says
    columns = [TableColumn("sweep", "sweep")] + [
        TableColumn(
            "best config (seed mean)" if name == "best" else name, name, SWEEPS_DROP_ORDER.index(name)
        )
        for name in ("launched", "executor", "trials", "states", "best")
    ]
    warnings = [row.warning for _ledger, row in rows if row.warning]
    cells: list[list[str | Text]] = []
    for ledger, row in rows:
        meta = ledger.meta
        metric = (meta.get("objective") or {}).get("metric", "valid/acc")
        cells.append(
            [
                f"{ledger.name}/{ledger.dir.name}",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(meta.get("created_at", 0))),
                meta.get("executor", "?"),
                row.trials,
                counts_text(row.counts),
                f"{metric} {metric_value(metric, row.best)}",
            ]
        )
    if warnings:
        result.warning = "; ".join(w for w in (result.warning, *warnings) if w)
    return Renderables(fitted_table(columns, cells, room, "sweeps"), *sources_text(result))


def overview_json(rows: Sequence[tuple[Ledger, OverviewRow]], result: Refresh) -> dict[str, Any]:
    """`sweeper status --format json`: one object per sweep, as plain data."""
    sweeps = []
    for ledger, row in rows:
        meta = ledger.meta
        sweeps.append(
            {
                "sweep": ledger.name,
                "dir": str(ledger.dir),
                "created_at": meta.get("created_at"),
                "executor": meta.get("executor"),
                "metric": (meta.get("objective") or {}).get("metric", "valid/acc"),
                **row.to_json(),
            }
        )
    return {"sweeps": sweeps, **_source_json(result)}


def sweep_json(ledger: Ledger, result: Refresh, found: Sequence[Any]) -> dict[str, Any]:
    """`sweeper status SWEEP --format json`: the kind's parts (trials, counts, ...) as plain data."""
    data: dict[str, Any] = {"sweep": ledger.name, "dir": str(ledger.dir)}
    for item in found:
        data.update(item.to_json())
    return data | _source_json(result)


def _source_json(result: Refresh) -> dict[str, Any]:
    return {"source": result.source, "warning": result.warning, "degraded": result.degraded}


STATUS_ROWS = 50  # `sweeper status` of a bigger sweep shows this many trials (and the counts) unless --all


# -- the sweep kinds' parts --------------------------------------------------------------------------------
@singledispatch
def part(item: Any, room: Room = NO_LIMIT) -> Any:
    """A renderable for one part a sweep kind handed over."""
    raise TypeError(f"no view for {type(item).__name__}")


@part.register
def _(item: TrialTable, room: Room = NO_LIMIT) -> Any:
    shown = summarized(item.statuses, room.rows)
    table = status_table(shown, item.title, item.metric, room)
    if len(shown) == len(item.statuses):
        return table
    more = f"... {len(item.statuses) - len(shown)} more trial(s) not shown (counts below): --all shows every"
    return Renderables(table, Text(f"{more} trial, --state picks some", style="dim"))


def summarized(statuses: Sequence[TrialStatus], rows: int | None) -> Sequence[TrialStatus]:
    """At most `rows` of the trials, in their order: those that failed or run first, then the others."""
    if rows is None or len(statuses) <= rows:
        return statuses
    first = [i for i, s in enumerate(statuses) if s.state in FAILURES or s.state == TrialState.RUNNING]
    rest = [i for i, s in enumerate(statuses) if not (s.state in FAILURES or s.state == TrialState.RUNNING)]
    return [statuses[i] for i in sorted((first + rest)[:rows])]


@part.register
def _(item: StudyTable, room: Room = NO_LIMIT) -> Any:
    return study_table(item.rows, item.keys, item.metric, item.title, room)


@part.register
def _(item: Counts, room: Room = NO_LIMIT) -> Any:
    return counts_text(item.counts)


@part.register
def _(item: Rows, room: Room = NO_LIMIT) -> Any:
    return fitted_table([TableColumn(c, c) for c in item.columns], item.rows, room, item.title)


@part.register
def _(item: Lines, room: Room = NO_LIMIT) -> Any:
    return Text("\n".join(item.lines), style=item.style or "")


def parts(items: Sequence[Any], room: Room = NO_LIMIT) -> Renderables:
    shown = [item for item in items if not (isinstance(item, Lines) and not item.lines)]
    return Renderables(*[part(item, room) for item in shown])


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
