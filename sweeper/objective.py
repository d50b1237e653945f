"""The objective: which metric says a run is good, and in which direction (one rule when none is given)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


def minimize_by_name(metric: str) -> bool:
    """The direction a metric improves in, when nobody says: losses and errors go down."""
    return "loss" in metric or "error" in metric


@dataclass(init=False, frozen=True)
class Objective:
    metric: str = "valid/acc"
    direction: Literal["maximize", "minimize"] | None = None  # None in a spec: by the metric's name

    def __init__(
        self,
        metric: str = "valid/acc",
        direction: Literal["maximize", "minimize"] | None = None,
        *,
        maximize: bool | None = None,
    ):
        if direction is None:
            if maximize is None:
                maximize = not minimize_by_name(metric)
            direction = "maximize" if maximize else "minimize"
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "direction", direction)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def better(self, a: float, b: float) -> float:
        return max(a, b) if self.maximize else min(a, b)

    def to_json(self) -> dict[str, str]:
        return {"metric": self.metric, "direction": self.direction}

    @classmethod
    def of(cls, value: Objective | dict[str, Any] | str | None) -> Objective:
        """From what a caller has: an Objective, its JSON ({metric, direction}), a metric name, or nothing."""
        if isinstance(value, Objective):
            return value
        if isinstance(value, str):
            return cls(value)
        value = value or {}
        return cls(value.get("metric") or "valid/acc", value.get("direction"))
