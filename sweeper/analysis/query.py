"""What researchers ask of runs by name: `--filter 'model.layers==6'`, `--sort gap`, `--compare-by KEY`.

A key is looked up, in order, as a summary field (`best_valid_acc`, `gap_at_best`, ...), a run attribute
(`name`, `seed`, `state`, `mark`, ...), a number of the run's summary.json (`test/acc`), a swept parameter (full dotted key, or its last part where that is
unambiguous) and finally a dotted path into the run's training config (config.json's `config`).
Filters are parsed by a small grammar (KEY OP LITERAL), never evaluated as Python.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sweeper.analysis.fields import FIELDS
from sweeper.analysis.runs import RunSummary
from sweeper.errors import SweeperError
from sweeper.schema import did_you_mean, get_path

MISSING = object()
# A run's own attributes, by name (for --sort / --filter, and the exports' columns, in this order).
RUN_ATTRIBUTES = (
    "run_dir",
    "sweep",
    "trial_id",
    "name",
    "seed",
    "state",
    "error",
    "epochs_planned",
    "optuna_trial",
    "optuna_state",
    "mark",
    "mark_reason",
)
# Summary fields where a smaller value is the better one (sorted ascending by default).
SMALLER_IS_BETTER = {
    "best_loss",
    "last_loss",
    "degradation",
    "degradation_pct",
    "gap",
    "gap_at_best",
    "epochs_since_best",
    "diverged",
}
# Field names as exported (and accepted by --sort/--filter), where they depend on the split analyzed.
SPLIT_FIELDS = {
    "best_acc": "best_{split}_acc",
    "best_acc_epoch": "best_{split}_acc_epoch",
    "best_loss": "best_{split}_loss",
    "best_loss_epoch": "best_{split}_loss_epoch",
    "final_acc": "final_{split}_acc",
    "last_loss": "last_{split}_loss",
}


def export_name(field: str, split: str) -> str:
    return SPLIT_FIELDS[field].format(split=split) if field in SPLIT_FIELDS else field


def summary_field(name: str, split: str) -> str | None:
    """The summary field a user-facing name means (`best_valid_acc` -> `best_acc`), else None."""
    if name in FIELDS:
        return name
    for field, template in SPLIT_FIELDS.items():
        if template.format(split=split) == name:
            return field
    return None


def param_key(name: str, params: Sequence[str]) -> str | None:
    if name in params:
        return name
    matches = [k for k in params if k.rsplit(".", 1)[-1] == name]
    return matches[0] if len(matches) == 1 else None


def lookup(run: RunSummary, key: str, split: str, swept: Sequence[str]) -> Any:
    """The value of key for one run (MISSING where the run does not have it)."""
    field = summary_field(key, split)
    if field is not None:
        value = getattr(run, field)
        return MISSING if value is None else value
    if key in RUN_ATTRIBUTES:
        value = getattr(run, key)
        return MISSING if value is None else value
    if key in run.summary:
        return run.summary[key]
    param = param_key(key, list(run.params) or list(swept))
    if param is not None and param in run.params:
        return run.params[param]
    value = get_path(run.config(), key, MISSING)
    return MISSING if value is None else value


def known_keys(runs: Sequence[RunSummary], split: str, swept: Sequence[str]) -> list[str]:
    keys = [export_name(f, split) for f in FIELDS] + list(RUN_ATTRIBUTES) + list(swept)
    keys += list(dict.fromkeys(name for run in runs for name in run.summary))
    if runs:
        from sweeper.schema import flatten

        keys += list(flatten(runs[0].config()))
    return keys


def check_key(runs: Sequence[RunSummary], key: str, split: str, swept: Sequence[str], option: str) -> None:
    if any(lookup(run, key, split, swept) is not MISSING for run in runs):
        return
    if summary_field(key, split) is not None or key in RUN_ATTRIBUTES:
        return  # a known field that no run has a value for: an empty answer, not a typo
    raise SweeperError(
        f"{option} {key}: no run has this key{did_you_mean(key, known_keys(runs, split, swept))}"
    )


# -- filters ------------------------------------------------------------------------------------------------
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
FILTER_RE = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(==|!=|<=|>=|=|<|>)\s*(.*?)\s*$")
NUMBER_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any
    text: str

    def holds(self, value: Any) -> bool:
        if value is MISSING:
            return self.op == "!=" and self.value is not None
        if isinstance(value, float) and math.isnan(value):
            return False
        left, right = _comparable(value), _comparable(self.value)
        if self.op in ("==", "=", "!="):
            return OPERATORS[self.op](left, right)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            return OPERATORS[self.op](left, right)
        if isinstance(left, str) and isinstance(right, str):
            return OPERATORS[self.op](left, right)
        return False


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def parse_literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if NUMBER_RE.match(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    return text


FILTER_USAGE = "expected KEY OP VALUE with OP one of == != < <= > >=, e.g. 'model.layers==6'"
ORDERING = ("<", "<=", ">", ">=")


def parse_condition(text: str) -> Condition:
    match = FILTER_RE.match(text)
    if not match or not match.group(3):
        raise SweeperError(f"--filter {text!r}: {FILTER_USAGE}")
    key, op, literal = match.groups()
    if literal[0] in "=<>!" and not (len(literal) >= 2 and literal[0] == literal[-1] and literal[0] in "'\""):
        written = op + literal[: len(literal) - len(literal.lstrip("=<>!"))]
        close = [o for o in OPERATORS if o != "=" and o in written] or ["=="]
        raise SweeperError(
            f"--filter {text!r}: {written!r} is not an operator (did you mean '{max(close, key=len)}'?); "
            f"{FILTER_USAGE}"
        )
    return Condition(key, op, parse_literal(literal), text)


def apply_filters(
    runs: list[RunSummary], texts: Sequence[str], split: str, swept: Sequence[str]
) -> list[RunSummary]:
    for text in texts:
        condition = parse_condition(text)
        check_key(runs, condition.key, split, swept, "--filter")
        values = [lookup(run, condition.key, split, swept) for run in runs]
        _check_comparable(condition, values)
        runs = [run for run, value in zip(runs, values, strict=True) if condition.holds(value)]
    return runs


def _check_comparable(condition: Condition, values: Sequence[Any]) -> None:
    """`best_valid_acc>high` orders numbers against text: no run could match, so it is a typo, not an answer."""
    if condition.op not in ORDERING or not isinstance(condition.value, str):
        return
    if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise SweeperError(
            f"--filter {condition.text!r}: {condition.key} is a number, {condition.value!r} is not "
            "(quote nothing around numbers, e.g. 'best_valid_acc>0.9')"
        )


# -- sorting ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SortKey:
    key: str  # a summary field (generic name), or a run attribute / parameter key
    descending: bool
    is_field: bool


def parse_sort(text: str | None, split: str, maximize: bool, swept: Sequence[str]) -> SortKey:
    """`--sort FIELD[:asc|:desc]`; default: the objective, best first. Fields sort best first."""
    if not text:
        return SortKey("objective", maximize, True)
    name, _, order = text.partition(":")
    if order not in ("", "asc", "desc"):
        raise SweeperError(f"--sort {text}: the order is asc or desc, e.g. --sort gap:asc")
    if name == "objective":
        field: str | None = "objective"
    else:
        field = summary_field(name, split)
    if field is not None:
        descending = maximize if field == "objective" else field not in SMALLER_IS_BETTER
    elif name in RUN_ATTRIBUTES or param_key(name, swept) is not None:
        descending = False
        name = param_key(name, swept) or name
    else:
        choices = [export_name(f, split) for f in FIELDS] + list(RUN_ATTRIBUTES) + list(swept)
        raise SweeperError(f"--sort {name}: unknown field{did_you_mean(name, choices)}")
    if order:
        descending = order == "desc"
    return SortKey(field or name, descending, field is not None)


def sort_order(values: Sequence[Any], descending: bool) -> list[int]:
    """Indexes sorting values (missing ones last, whatever the order); numbers before text where mixed."""

    def rank(index: int) -> tuple:
        value = values[index]
        if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
            return (2, 0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, -value if descending else value, "")
        text = str(value)
        return (1, 0, text)

    order = sorted(range(len(values)), key=rank)
    if descending:  # text keys: reverse among themselves, missing still last
        texts = [i for i in order if rank(i)[0] == 1]
        texts.reverse()
        order = [i for i in order if rank(i)[0] == 0] + texts + [i for i in order if rank(i)[0] == 2]
    return order
