"""One `analyze` invocation, minus the rendering: read, filter, group, sort, effects, comparison, best."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sweeper.analysis import aggregate, query
from sweeper.analysis.aggregate import Comparison, Effects, Group
from sweeper.analysis.correlate import Correlation, correlate
from sweeper.analysis.runs import Analysis, RunSummary, analyze, paused_gc, require_metric
from sweeper.display import format_value, short_names
from sweeper.errors import SweeperError
from sweeper.marks import Validity
from sweeper.states import FAILURES


@dataclass
class ReportOptions:
    split: str = "valid"
    metric: str | None = None
    direction: str | None = None  # maximize | minimize; default: the sweep's, else by the metric's name
    sort: str | None = None  # FIELD[:asc|:desc]; default: the objective, best first
    top: int | None = None  # rows shown (None or 0: all)
    filters: Sequence[str] = ()
    group: bool = True  # seeds of one config as one row
    compare_by: str | None = None  # a config key: one side per value
    pivot: tuple[str, str] | None = None
    use_cache: bool = True
    cache_dir: str | None = None
    include_invalid: bool = False  # runs marked invalid count like the others (by default: left out)
    correlate: tuple[str, str] | None = None  # two numeric keys: Spearman and Pearson over the rows


@dataclass
class Report:
    analysis: Analysis  # every run found (all paths)
    runs: list[RunSummary]  # after --filter, without superseded attempts
    rows: list[Group]  # what the table shows: sorted, --top applied
    total_rows: int  # rows before --top
    grouped: bool  # rows are seed groups (some config ran with several seeds)
    effects: Effects
    comparison: Comparison | None
    best: Group | None
    superseded: int = 0
    filtered_out: int = 0
    notes: list[str] = field(default_factory=list)
    correlation: Correlation | None = None
    invalid: list[RunSummary] = field(default_factory=list)  # marked invalid, left out (unless included)

    @property
    def objective(self):
        return self.analysis.objective

    @property
    def split(self) -> str:
        return self.analysis.split


def build_report(paths: Sequence[str], options: ReportOptions) -> Report:
    with paused_gc():
        return _build_report(paths, options)


def _build_report(paths: Sequence[str], options: ReportOptions) -> Report:
    sides = _read_sides(paths, options)
    analysis = _merge(sides)
    if not analysis.runs:
        where = " or ".join(str(p) for p in paths)
        raise SweeperError(f"no runs under {where} (a run dir holds metrics.parquet or config.json)")
    logged, splits = _check_metric(analysis, options)
    swept = analysis.swept_keys

    current = [r for r in analysis.runs if not r.superseded]
    superseded = len(analysis.runs) - len(current)
    unknown = [r for r in current if not r.has_config]  # no params: not a config to rank
    current = [r for r in current if r.has_config]
    invalid = [r for r in current if r.mark == Validity.INVALID]
    if not options.include_invalid:
        current = [r for r in current if r.mark != Validity.INVALID]
    runs = query.apply_filters(current, options.filters, options.split, swept)
    sort_key = query.parse_sort(options.sort, options.split, analysis.objective.maximize, swept)
    groups = aggregate.group_runs(runs, by_seed=True)
    grouped = options.group and any(g.n > 1 for g in groups)
    rows = groups if grouped else aggregate.group_runs(runs, by_seed=False)
    best = aggregate.best_group(rows, analysis.objective)
    rows = sort_rows(rows, sort_key, options.split, swept)
    total = len(rows)
    correlation = None
    if options.correlate is not None:  # over every row, not just the --top ones shown
        correlation = correlate(rows, options.correlate, options.split, swept, grouped)
    if options.top:
        rows = rows[: options.top]

    pivot = _pivot_keys(options.pivot, swept)
    effects = aggregate.effects(runs, swept, analysis.objective, pivot)
    comparison = None
    if len(sides) == 2:
        labels = _side_labels(paths)
        members = [{id(r) for r in side.runs} for side in sides]
        side_runs = [[r for r in runs if id(r) in side] for side in members]
        comparison = aggregate.compare(
            "path", list(zip(labels, side_runs, strict=True)), lambda r: r.name, analysis.objective
        )
    elif options.compare_by:
        comparison = compare_by(runs, options.compare_by, options.split, swept, analysis)
    notes = []
    if splits and analysis.objective.metric not in logged:
        notes.append(f"no run logged {analysis.objective.metric}, the objective (--metric chooses another)")
    if superseded:
        notes.append(
            f"{superseded} earlier attempt(s) of retried trials left out (their later run dir counts)"
        )
    if len(runs) < len(current):
        notes.append(f"{len(current) - len(runs)} of {len(current)} runs left out by --filter")
    if unknown:
        names = ", ".join(os.path.basename(r.run_dir) for r in unknown[:NAMED])
        more = f" and {len(unknown) - NAMED} more" if len(unknown) > NAMED else ""
        notes.append(f"{len(unknown)} run dir(s) without a readable config.json not ranked: {names}{more}")
    if invalid:
        notes.append(invalid_note(invalid, options.include_invalid))
    if grouped:
        notes += left_out_notes(rows, analysis.objective.metric)
        shown = {id(g) for g in rows}
        hidden = sum(1 for g in groups if id(g) not in shown and _partly_left_out(g))
        if hidden:  # a --top table is not buried under notes on configs it does not show
            notes.append(
                f"{hidden} more config(s), not shown, have seeds left out of their mean (--top 0 shows every row)"
            )
    notes += failure_notes(runs)
    return Report(
        analysis=analysis,
        runs=runs,
        rows=rows,
        total_rows=total,
        grouped=grouped,
        effects=effects,
        comparison=comparison,
        best=best,
        superseded=superseded,
        filtered_out=len(current) - len(runs),
        notes=notes,
        correlation=correlation,
        invalid=[] if options.include_invalid else invalid,
    )


def _read_sides(paths: Sequence[str], options: ReportOptions) -> list[Analysis]:
    """The analysis of each path (one, or two to compare), after the options are checked."""
    if not paths:
        raise SweeperError("no path to analyze (give --checkpoints-path or a path)")
    if len(paths) > 2:
        raise SweeperError(f"at most two paths (to compare them side by side), got {len(paths)}")
    if options.top is not None and options.top < 0:
        raise SweeperError(f"--top {options.top}: give a number of rows (0: all)")
    if len(paths) == 2 and options.compare_by:
        raise SweeperError("compare either two paths or by --compare-by KEY, not both")
    read = {"split": options.split, "use_cache": options.use_cache, "cache_dir": options.cache_dir}
    first = analyze(paths[0], metric=options.metric, direction=options.direction, **read)
    sides = [first]
    if len(paths) == 2:  # the second path is summarized against the first one's objective
        sides.append(
            analyze(paths[1], metric=first.objective.metric, direction=first.objective.direction, **read)
        )
    return sides


def _check_metric(analysis: Analysis, options: ReportOptions) -> tuple[set[str], list[str]]:
    """The metrics and splits some run logged; --metric and --split must be among them."""
    if options.metric is not None:
        require_metric(analysis, options.metric)
    logged = set(analysis.metrics)
    splits = sorted({m.split("/")[0] for m in logged if "/" in m})
    if splits and options.split not in splits:  # (runs before their first epoch have no metric yet)
        raise SweeperError(
            f"--split {options.split}: no run logged {options.split}/ metrics; splits: {', '.join(splits)}"
        )
    return logged, splits


NAMED = 10  # run dirs named in one note


def invalid_note(invalid: Sequence[RunSummary], included: bool) -> str:
    """How many runs are marked invalid, why, and whether they count."""
    reasons = Counter(r.mark_reason or "no reason given" for r in invalid)
    why = "; ".join(f"{reason} ({n})" if len(reasons) > 1 else reason for reason, n in reasons.most_common())
    if included:
        return f"{len(invalid)} run(s) marked invalid are included (--include-invalid): {why}"
    return f"{len(invalid)} run(s) marked invalid left out: {why} (--include-invalid counts them)"


def _partly_left_out(group: Group) -> bool:
    return 0 < len(group.left_out) < group.n


def left_out_notes(groups: Sequence[Group], metric: str) -> list[str]:
    """Per seed group with runs whose numbers are not in its mean: which, and why."""
    notes = []
    for group in groups:
        if not _partly_left_out(group):
            continue
        missing = group.left_out
        why = [
            f"seed {r.seed} ({r.state}, "
            + (f"no {metric} value" if r.objective is None else "not finished")
            + f"; {os.path.basename(r.run_dir)})"
            for r in missing[:NAMED]
        ]
        notes.append(
            f"{group.name}: mean over {len(group.used)} of {group.n} seeds; left out: {', '.join(why)}"
        )
    return notes


def failure_notes(runs: Sequence[RunSummary]) -> list[str]:
    """How the runs that failed ended (their error line), named by run dir."""
    failed = [r for r in runs if r.state in FAILURES and r.error]
    notes = [f"{r.state} {os.path.basename(r.run_dir)} ({r.trial_id}): {r.error}" for r in failed[:NAMED]]
    if len(failed) > NAMED:
        notes.append(f"... and {len(failed) - NAMED} more failed runs (--format json lists every error)")
    return notes


def sort_rows(rows: list[Group], key: query.SortKey, split: str, swept: Sequence[str]) -> list[Group]:
    if key.is_field:
        values = [g.stat(key.key).mean for g in rows]
    else:
        values = [query.lookup(g.first, key.key, split, swept) for g in rows]
    return [rows[i] for i in query.sort_order(values, key.descending)]


def compare_by(
    runs: list[RunSummary], key: str, split: str, swept: Sequence[str], analysis: Analysis
) -> Comparison:
    query.check_key(runs, key, split, swept, "--compare-by")
    param = query.param_key(key, swept)
    sides: dict[str, tuple[object, list[RunSummary]]] = {}
    for run in runs:
        value = query.lookup(run, key, split, swept)
        label = "(missing)" if value is query.MISSING else format_value(value)
        sides.setdefault(label, (value, []))[1].append(run)
    if len(sides) < 2:
        raise SweeperError(f"--compare-by {key}: every run has the same value ({next(iter(sides), '-')})")
    ordered = sorted(sides.items(), key=lambda item: aggregate.value_order(item[1][0]))
    others = [k for k in swept if k != (param or key)]
    names = short_names(others)

    def row_key(run: RunSummary) -> str:
        parts = [f"{names[k]}={format_value(run.params[k])}" for k in others if k in run.params]
        return ", ".join(parts) or "all"

    short = key.rsplit(".", 1)[-1]
    labels = [f"{short}={label}" for label, _ in ordered]
    return aggregate.compare(
        key, list(zip(labels, [r for _, (_, r) in ordered], strict=True)), row_key, analysis.objective
    )


def _pivot_keys(pivot: tuple[str, str] | None, swept: Sequence[str]) -> tuple[str, str] | None:
    if pivot is None:
        return None
    keys = []
    for name in pivot:
        key = query.param_key(name, swept)
        if key is None:
            from sweeper.schema import did_you_mean

            raise SweeperError(f"--pivot {name}: not a swept parameter{did_you_mean(name, swept)}")
        keys.append(key)
    if keys[0] == keys[1]:
        raise SweeperError("--pivot needs two different parameters, e.g. --pivot weight_decay,dropout")
    return keys[0], keys[1]


def _side_labels(paths: Sequence[str]) -> list[str]:
    labels = [os.path.normpath(p) for p in paths]
    if labels[0] == labels[1]:
        return ["A", "B"]
    return labels


def _merge(sides: list[Analysis]) -> Analysis:
    if len(sides) == 1:
        return sides[0]
    first = sides[0]
    swept: dict[str, None] = {}
    for side in sides:
        swept.update(dict.fromkeys(side.swept_keys))
    return Analysis(
        runs=[r for side in sides for r in side.runs],
        problems=[p for side in sides for p in side.problems],
        swept_keys=list(swept),
        split=first.split,
        objective=first.objective,
        paths=[p for side in sides for p in side.paths],
        cache_hits=sum(s.cache_hits for s in sides),
        cache_misses=sum(s.cache_misses for s in sides),
    )
