"""Runs -> what a researcher compares: seed groups (mean +- std), parameter effects and pivots, side by sides.

- Seeds: runs of one trial name in one sweep dir (same config, different seeds) form a group; every summary
  number gets its mean, sample standard deviation (n-1; none for a single value) and the count of runs
  that have it. Booleans (still improving, diverged) average to the fraction of runs. As for effects, a
  group's numbers come from its finished runs when it has any: a seed that crashed at epoch 2 would drag
  the mean down (the status column still counts every run). A group's `used` runs are those whose
  objective value is in its mean: what `n` and "over N seeds" count; the others are named in a note.
- Effects: for each swept parameter, the objective averaged over the runs at each of its values (so over
  seeds and over the other parameters), and pivots of two parameters. Only finished runs count (running
  or failed runs would drag a value down), unless no run has finished yet.
- Comparison: two sides (two paths, or the values of one config key), rows matched by trial name or by
  the other swept parameters, with differences to the first side.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeper.analysis.runs import RunSummary
from sweeper.display import format_value, short_names
from sweeper.objective import Objective


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample standard deviation; None for fewer than two values
    n: int  # values it is made of


def stat_of(values: Sequence[float | None]) -> Stat:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Stat(None, None, 0)
    mean = math.fsum(finite) / len(finite)
    if len(finite) < 2:
        return Stat(mean, None, 1)
    variance = math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return Stat(mean, math.sqrt(variance), len(finite))


@dataclass
class Group:
    """Runs of one config (its seeds); a single run is a group of one."""

    name: str
    sweep: str
    params: dict[str, Any]
    runs: list[RunSummary]
    # the runs its mean ± std are over (its finished ones, where it has any); None: a group of one run
    counted: list[RunSummary] | None = field(default=None, repr=False)
    used: list[RunSummary] = field(default_factory=list)  # the runs whose objective value is in the mean
    _stats: dict[str, Stat] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def left_out(self) -> list[RunSummary]:
        """Runs of the group whose numbers are not in its mean (no objective value, or not finished)."""
        used = {id(r) for r in self.used}
        return [r for r in self.runs if id(r) not in used]

    @property
    def first(self) -> RunSummary:
        return self.runs[0]

    def stat(self, name: str) -> Stat:
        """A summary number's mean ± std over the counted runs (computed on first use: a table shows a
        few groups' numbers, a sort one number of every group). A NaN-free value is counted, inf included."""
        if self.counted is None or self.n == 1:
            value = getattr(self.first, name)
            return Stat(None, None, 0) if value is None else Stat(float(value), None, 1)
        known = self._stats.get(name)
        if known is None:
            values = [
                float(v) for v in map(operator.attrgetter(name), self.counted) if v is not None and v == v
            ]
            count = len(values)
            mean = sum(values) / count if count else math.nan
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (count - 1)) if count >= 2 else math.nan
            known = self._stats[name] = Stat(
                None if mean != mean else mean, None if std != std else std, count
            )
        return known

    @property
    def seeds(self) -> list:
        return sorted((r.seed for r in self.runs if r.seed is not None), key=str)

    @property
    def states(self) -> Counter:
        return Counter(r.state for r in self.runs)

    def best_run(self, objective: Objective) -> RunSummary | None:
        """The best of the runs in the mean (a seed left out is not its best seed)."""
        return best_run(self.used or self.runs, objective)


def summary_stat(group: Group, name: str) -> Stat:
    """A summary.json number of a run, or its mean ± std over a group's seeds (finished ones, as for the
    other numbers, where the group has any)."""
    counted = [r for r in group.runs if r.has_result] or group.runs
    return stat_of([r.summary.get(name) for r in counted])


def group_runs(runs: Sequence[RunSummary], by_seed: bool = True) -> list[Group]:
    """Seed groups (same trial name in the same sweep dir), in order of first appearance."""
    if not by_seed:
        return [
            Group(r.name, r.sweep, r.params, [r], None, [r] if r.objective is not None else []) for r in runs
        ]
    members: dict[tuple[str, str], list[RunSummary]] = {}
    for run in runs:
        members.setdefault((run.sweep_dir, run.name), []).append(run)
    groups = []
    for m in members.values():
        counted = [r for r in m if r.has_result] or m
        used = [r for r in counted if r.objective is not None and r.objective == r.objective]
        groups.append(Group(m[0].name, m[0].sweep, m[0].params, m, counted, used))
    return groups


def best_run(runs: Sequence[RunSummary], objective: Objective) -> RunSummary | None:
    candidates = [r for r in runs if r.objective is not None]
    if not candidates:
        return None
    sign = 1 if objective.maximize else -1
    return max(candidates, key=lambda r: sign * r.objective)


def best_group(groups: Sequence[Group], objective: Objective) -> Group | None:
    candidates = [g for g in groups if g.stat("objective").mean is not None]
    if not candidates:
        return None
    sign = 1 if objective.maximize else -1
    return max(candidates, key=lambda g: sign * g.stat("objective").mean)


# -- effects ------------------------------------------------------------------------------------------------
def value_key(value: Any) -> Any:
    """A hashable key telling parameter values apart (lists and dicts by their text)."""
    if isinstance(value, (int, float, str, bool)) or value is None:
        return (type(value).__name__, value)
    return ("text", format_value(value))


def value_order(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


@dataclass
class Level:
    value: Any
    stat: Stat


@dataclass
class ParamEffect:
    key: str
    levels: list[Level]
    best: Level

    @property
    def spread(self) -> float:
        means = [level.stat.mean for level in self.levels if level.stat.mean is not None]
        return max(means) - min(means) if means else 0.0


@dataclass
class Pivot:
    row_key: str
    col_key: str
    row_values: list[Any]
    col_values: list[Any]
    cells: dict[tuple[int, int], Stat]
    best: tuple[int, int] | None


@dataclass
class Effects:
    objective: Objective
    runs_used: int
    runs_left_out: int  # unfinished runs not counted
    params: list[ParamEffect]
    pivots: list[Pivot]
    pivot_hint: str | None = None  # why some pivots are not shown


MAX_LEVELS = 12  # a numeric parameter with more distinct values (random or Optuna search) is binned
BINS = 5


_ABSENT = object()


def binning(runs: Sequence[RunSummary], key: str) -> tuple[list[Any], list[int | None]]:
    """How a parameter's values become levels: each distinct value, or (more than MAX_LEVELS numbers)
    quantile ranges labelled "low..high". Returns the levels and each run's level (None where the run does
    not have the parameter); every value's key is computed once."""
    values = [run.params.get(key, _ABSENT) for run in runs]
    keys = [None if value is _ABSENT else value_key(value) for value in values]
    distinct: dict[Any, Any] = {}
    for value_id, value in zip(keys, values, strict=True):
        if value_id is not None:
            distinct.setdefault(value_id, value)
    by_order = sorted(distinct.items(), key=lambda item: value_order(item[1]))
    ordered = [value for _, value in by_order]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ordered)
    if len(ordered) <= MAX_LEVELS or not numeric:
        position = {value_id: i for i, (value_id, _) in enumerate(by_order)}
        return ordered, [None if value_id is None else position[value_id] for value_id in keys]
    import numpy as np  # only here (a search's continuous values): the rest of analyze never imports it

    edges = np.unique(np.quantile(np.array(ordered, dtype=float), np.linspace(0, 1, BINS + 1)))
    bounds = edges.tolist()
    labels = [f"{lo:.3g}..{hi:.3g}" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    numbers = np.array(
        [math.nan if value_id is None else v for value_id, v in zip(keys, values, strict=True)]
    )
    level = np.clip(np.searchsorted(edges, numbers, "right") - 1, 0, len(labels) - 1).tolist()
    return labels, [None if value_id is None else i for value_id, i in zip(keys, level, strict=True)]


def _objectives_by_level(runs: Sequence[RunSummary], levels: list[Any], level_of: list[int | None]):
    values: list[list[float]] = [[] for _ in levels]
    for run, level in zip(runs, level_of, strict=True):
        if level is not None:
            values[level].append(run.objective)
    return values


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def pivot_table(
    runs: Sequence[RunSummary],
    row_key: str,
    col_key: str,
    objective: Objective,
    known: dict[str, tuple[list[Any], list[int | None]]] | None = None,
) -> Pivot:
    """`known`: binnings and levels per key already computed for these runs (effects passes its own)."""
    known = dict(known or {})
    for key in (row_key, col_key):
        if key not in known:
            known[key] = binning(runs, key)
    (rows, row_level), (cols, col_level) = known[row_key], known[col_key]
    values: dict[tuple[int, int], list[float]] = {}
    for run, row, col in zip(runs, row_level, col_level, strict=True):
        if row is not None and col is not None:
            values.setdefault((row, col), []).append(run.objective)
    cells = {cell: stat_of(v) for cell, v in values.items()}
    best = None
    for cell, cell_stat in cells.items():
        if cell_stat.mean is not None and (
            best is None or _better(cell_stat.mean, cells[best].mean, objective.maximize)
        ):
            best = cell
    return Pivot(row_key, col_key, rows, cols, cells, best)


def effects(
    runs: Sequence[RunSummary],
    swept_keys: Sequence[str],
    objective: Objective,
    pivot_keys: tuple[str, str] | None = None,
    max_pivots: int = 3,
) -> Effects:
    with_value = [r for r in runs if r.objective is not None]
    finished = [r for r in with_value if r.has_result]
    used = finished or with_value
    params = []
    known: dict[str, tuple[list[Any], list[int | None]]] = {}
    for key in swept_keys:
        known[key] = level_values, level_of = binning(used, key)
        per_level = _objectives_by_level(used, level_values, level_of)
        levels = [Level(value, stat_of(v)) for value, v in zip(level_values, per_level, strict=True)]
        if len(levels) < 2:
            continue
        best = levels[0]
        for level in levels[1:]:
            if _better(level.stat.mean, best.stat.mean, objective.maximize):
                best = level
        params.append(ParamEffect(key, levels, best))
    varied = [p.key for p in params]
    hint = None
    if pivot_keys is not None:
        pairs = [pivot_keys]
    else:
        pairs = list(itertools.combinations(varied, 2))
        if len(pairs) > max_pivots:
            strongest = sorted(params, key=lambda p: -p.spread)[:2]
            pairs = [(strongest[0].key, strongest[1].key)]
            names = short_names(varied)
            hint = (
                f"pivot of the two parameters with the largest effect; others with "
                f"--pivot {names[varied[0]]},{names[varied[1]]} (any two of: {', '.join(names.values())})"
            )
    pivots = [pivot_table(used, a, b, objective, known) for a, b in pairs]
    return Effects(objective, len(used), len(with_value) - len(used), params, pivots, hint)


# -- comparison ---------------------------------------------------------------------------------------------
COMPARE_FIELDS = ("objective", "best_loss", "gap_at_best", "epochs_run")


@dataclass
class CompareRow:
    label: str
    cells: list[dict[str, Stat]]  # per side, per field


@dataclass
class Comparison:
    by: str  # what tells the sides apart
    labels: list[str]
    rows: list[CompareRow]
    fields: tuple[str, ...] = COMPARE_FIELDS


def _side_cells(runs: Sequence[RunSummary]) -> dict[str, Stat]:
    return {name: stat_of([getattr(r, name) for r in runs]) for name in COMPARE_FIELDS}


def compare(
    by: str,
    sides: Sequence[tuple[str, Sequence[RunSummary]]],
    row_key: Callable[[RunSummary], str],
    objective: Objective,
) -> Comparison:
    grouped: list[dict[str, list[RunSummary]]] = []
    for _, runs in sides:
        by_key: dict[str, list[RunSummary]] = {}
        for run in runs:
            by_key.setdefault(row_key(run), []).append(run)
        grouped.append(by_key)
    keys = sorted({key for by_key in grouped for key in by_key}, key=str)
    rows = [CompareRow(key, [_side_cells(by_key.get(key, [])) for by_key in grouped]) for key in keys]
    if len(keys) > 1:
        rows.append(CompareRow("all runs", [_side_cells(runs) for _, runs in sides]))
    best = [best_run(runs, objective) for _, runs in sides]
    rows.append(CompareRow("best run", [_side_cells([b] if b else []) for b in best]))
    return Comparison(by, [label for label, _ in sides], rows)
