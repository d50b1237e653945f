"""The objective: which metric says a run is good, and in which direction (one rule when none is given)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

# Words in a metric's name (split at '/', '_', '-', '.', '@') that say which way it improves. A name with none
# of them is maximized, and `launch` warns when a spec relies on that (objective_warning).
MINIMIZED = frozenset(
    "loss nll err error errors mse rmse mae mape smape perplexity ppl wer cer ter fid kid bpd bpc regret "
    "latency time eer brier ece kl distance".split()
)
MAXIMIZED = frozenset(
    "acc accuracy top1 top5 auroc auc roc ap map precision recall f1 f1score iou miou dice bleu rouge "
    "meteor chrf r2 score reward return silhouette ndcg mrr hit hits retention psnr ssim spearman pearson "
    "kappa mcc".split()
)


def _words(metric: str) -> list[str]:
    return [w for w in re.split(r"[/_\-.@\s]+", metric.lower()) if w]


def known_direction(metric: str) -> Literal["maximize", "minimize"] | None:
    """The direction a metric's name says it improves in (losses, errors, distances go down; accuracies,
    scores go up), or None when the name says nothing (e.g. `valid/h0`)."""
    words = _words(metric)
    if "loss" in metric.lower() or "error" in metric.lower() or any(w in MINIMIZED for w in words):
        return "minimize"
    if any(w in MAXIMIZED or re.fullmatch(r"(acc|top)\d*|knn|.*acc", w) for w in words):
        return "maximize"
    return None


def minimize_by_name(metric: str) -> bool:
    """The direction a metric improves in, when nobody says: see known_direction (unknown names: maximize)."""
    return known_direction(metric) == "minimize"


def objective_warning(metric: str, direction: str | None) -> str | None:
    """Launch's warning for an objective whose direction nobody gave and whose name does not tell."""
    if direction is not None or known_direction(metric) is not None:
        return None
    return (
        f"objective {metric!r}: its name does not say which way is better, so it is maximized; "
        "give `objective: {direction: minimize}` if lower is better"
    )


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
