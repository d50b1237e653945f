"""`analyze --correlate A,B`: Spearman and Pearson correlation of two numeric keys over the rows (seed
groups: their means; --no-group: runs), with n and two-sided p-values (scipy.stats)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sweeper.analysis import query
from sweeper.analysis.aggregate import Group
from sweeper.errors import SweeperError


@dataclass
class Correlation:
    x: str
    y: str
    over: str  # "configs" (seed-group means) or "runs"
    n: int
    spearman: float | None
    spearman_p: float | None
    pearson: float | None
    pearson_p: float | None
    points: list[tuple[str, float, float]] = field(default_factory=list)  # (row name, x, y)
    left_out: int = 0  # rows without a number for both keys

    def to_json(self) -> dict[str, Any]:
        return {
            "x": self.x,
            "y": self.y,
            "over": self.over,
            "n": self.n,
            "spearman": self.spearman,
            "spearman_p": self.spearman_p,
            "pearson": self.pearson,
            "pearson_p": self.pearson_p,
            "left_out": self.left_out,
            "points": [{"name": name, "x": x, "y": y} for name, x, y in self.points],
        }


def parse_pair(text: str) -> tuple[str, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise SweeperError(
            f"--correlate {text}: expected two different keys, e.g. --correlate h0,retention@100"
        )
    return parts[0], parts[1]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def row_value(group: Group, key: str, split: str, swept: Sequence[str]) -> float | None:
    """The key's number for a row: a summary field's group mean, else the mean of its runs' values (the
    finished ones where the group has any, as for every other group number)."""
    field_name = query.summary_field(key, split) or ("objective" if key == "objective" else None)
    if field_name is not None:
        return group.stat(field_name).mean
    counted = [r for r in group.runs if r.has_result] or group.runs
    values = [_number(query.lookup(r, key, split, swept)) for r in counted]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def correlate(
    rows: Sequence[Group], keys: tuple[str, str], split: str, swept: Sequence[str], grouped: bool
) -> Correlation:
    runs = [r for g in rows for r in g.runs]
    for key in keys:
        query.check_key(runs, key, split, swept, "--correlate")
    points = []
    for group in rows:
        x, y = (row_value(group, key, split, swept) for key in keys)
        if x is not None and y is not None:
            points.append((group.name, x, y))
    over = "configs" if grouped else "runs"
    result = Correlation(keys[0], keys[1], over, len(points), None, None, None, None, points)
    result.left_out = len(rows) - len(points)
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    if len(points) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return result  # undefined: too few points, or a constant
    from scipy import stats

    spearman, pearson = stats.spearmanr(xs, ys), stats.pearsonr(xs, ys)
    result.spearman, result.spearman_p = float(spearman.statistic), float(spearman.pvalue)
    result.pearson, result.pearson_p = float(pearson.statistic), float(pearson.pvalue)
    return result


def correlation_line(result: Correlation) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:+.3f}"

    def p(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    head = f"Correlation of {result.x} and {result.y} over {result.n} {result.over}"
    if result.spearman is None:
        why = "fewer than 3 points" if result.n < 3 else "a constant"
        return f"{head}: undefined ({why})"
    left = f"; {result.left_out} without both numbers left out" if result.left_out else ""
    return (
        f"{head}: Spearman ρ {number(result.spearman)} (p {p(result.spearman_p)}), "
        f"Pearson r {number(result.pearson)} (p {p(result.pearson_p)}){left}"
    )
