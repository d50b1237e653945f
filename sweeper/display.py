"""How values and names are shown to a person (terminal, markdown, plots): one place for every view."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if not isinstance(value, str) else value


def short_names(keys: list[str]) -> dict[str, str]:
    """Display names for swept keys: the last path component where that is unambiguous."""
    leafs = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (leaf if leafs.count(leaf) == 1 else k) for k, leaf in zip(keys, leafs, strict=True)}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metric_value(metric: str, value: float | None) -> str:
    """An accuracy as a percentage, anything else as a number."""
    return pct(value) if value is not None and metric.endswith("acc") else num(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _state_styles() -> dict[str, str]:
    from sweeper.states import StudyState, TrialState

    styles = {
        TrialState.COMPLETED: "green",
        TrialState.RUNNING: "cyan",
        TrialState.PENDING: "yellow",
        TrialState.QUEUED: "yellow",
        TrialState.FAILED: "bold red",
        TrialState.TIMEOUT: "red",
        TrialState.CANCELLED: "magenta",
        TrialState.PRUNED: "blue",
        TrialState.OUT_OF_MEMORY: "bold red",
        TrialState.NODE_FAIL: "bold red",
        TrialState.NOT_SUBMITTED: "dim",
        TrialState.REQUEUED: "yellow",
        TrialState.PREEMPTED: "yellow",
        TrialState.SUSPENDED: "yellow",
        TrialState.SKIPPED: "dim",
        TrialState.UNKNOWN: "dim",
        StudyState.COMPLETE: "green",
        StudyState.FAIL: "bold red",
        StudyState.WAITING: "yellow",
    }
    return {str(state): style for state, style in styles.items()}


STATE_STYLES = _state_styles()  # rich style of each state's name, wherever a state is shown


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table (pipes in cells escaped)."""

    def escape(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(escape(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
