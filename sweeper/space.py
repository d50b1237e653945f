"""Plan: a SweepSpec -> the list of Trials to run (named configs x grid points x seeds), with stable ids.

A trial id is derived from its parameters and seed only, so the same spec always yields the same ids,
and adding a grid value does not rename the trials that already ran.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from typing import Any

from sweeper.display import format_value, short_names
from sweeper.errors import SpecError
from sweeper.schema import SchemaError, did_you_mean, flatten, set_path, to_dict
from sweeper.spec import SweepSpec
from sweeper.trial import Trial

MAX_ID_LENGTH = 64
CONFIRM_ABOVE = 5_000  # `launch` asks before submitting more trials than this (unless --yes)
MAX_TRIALS = 1_000_000  # beyond this, expansion alone would take minutes and gigabytes: refuse
SEEDS_ONLY = "base"  # the config name of a sweep that only repeats `base` over its seeds


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def make_trial_id(name: str, params: dict, seed: int) -> str:
    slug = _slug(name)
    if len(slug) > MAX_ID_LENGTH:
        digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]
        slug = f"{slug[:40]}~{digest}"
    return f"{slug}-s{seed}"


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def count_trials(spec: SweepSpec) -> int:
    points = len(spec.configs or {None: None})
    for values in spec.grid.values():
        points *= len(values)
    return points * len(spec.seeds)


def checked_count(spec: SweepSpec) -> int:
    """count_trials, refusing a grid too large to expand (before anything asks whether to launch it)."""
    count = count_trials(spec)
    if count > MAX_TRIALS:
        raise SpecError(
            f"the sweep has {count:,} trials, more than {MAX_TRIALS:,}: use `search:` (Optuna) "
            "to sample a space this large",
            file=spec.path,
        )
    return count


def worker_trials(spec: SweepSpec) -> list[Trial]:
    """What the ledger tracks for an Optuna sweep: its worker jobs (the trials themselves live in the study)."""
    return [Trial(f"worker-{i}", f"worker-{i}", {}, 0, {"worker": i}) for i in range(spec.search.workers)]


def expand(spec: SweepSpec) -> list[Trial]:
    """All trials of a grid / configs sweep, each config validated against the trainer's schema. For an
    Optuna search: the searched keys are checked and the worker jobs returned."""
    if spec.search is not None:
        check_search(spec)
        return worker_trials(spec)
    checked_count(spec)
    configs = spec.configs or {"" if spec.grid else SEEDS_ONLY: {}}
    grid = grid_points(spec.grid) if spec.grid else [{}]
    names = short_names(list(spec.grid))
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    for (config_name, config_params), point in itertools.product(configs.items(), grid):
        grid_label = ",".join(f"{names[k]}={format_value(v)}" for k, v in point.items())
        name = "+".join(part for part in (config_name, grid_label) if part)
        params = {**config_params, **point}
        sections = {k: ("configs", config_name) for k in config_params} | {k: ("grid",) for k in point}
        for seed in spec.seeds:
            config = copy.deepcopy(spec.base)
            for key, value in params.items():
                try:
                    set_path(config, key, copy.deepcopy(value))
                except SchemaError as exc:
                    _raise_param_error(spec, sections[key], key, exc.message)
            config["seed"] = seed
            if spec.trial_entrypoint is None:  # the built-in trainer: its schema is known
                config = _validated(spec, config, params, sections)
            trial_id = make_trial_id(name, params, seed)
            if trial_id in seen:
                raise SpecError(
                    f"two points get the same trial id {trial_id!r} ({seen[trial_id]} and {name}); rename one config",
                    file=spec.path,
                )
            seen[trial_id] = name
            trials.append(Trial(trial_id, name, params, seed, config))
    return trials


def _validated(spec: SweepSpec, config: dict, params: dict, sections: dict) -> dict:
    """Check a trial's config against the built-in trainer's schema; errors point at the line that caused them."""
    from sweeper.config import TrainConfig, parse_train_config

    try:
        parsed = parse_train_config(config)
    except SchemaError as exc:
        for key in params:
            if exc.key == key or exc.key.startswith(key + ".") or key.startswith(exc.key + "."):
                message = exc.message
                if message.startswith("unknown key") and "did you mean" not in message:
                    known = flatten(to_dict(TrainConfig(model=config.get("model", {"name": "vit"}))))
                    leaf = key.rsplit(".", 1)[-1]
                    matches = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
                    if matches:
                        message = f"unknown key (did you mean '{matches[0]}'?)"
                _raise_param_error(spec, sections[key], exc.key, message)
        where, line = spec.line_of("base." + exc.key if exc.key else "base")
        raise SpecError(
            exc.message, file=where, key="base." + exc.key if exc.key else "base", line=line
        ) from None
    _check_objective_logged(spec, parsed)
    return to_dict(parsed)


def _check_objective_logged(spec: SweepSpec, cfg) -> None:
    """The built-in trainer logs a known set of columns: an objective outside it would fail every job."""
    from sweeper.config import EVAL_METRICS, logged_metrics

    metric, logged = spec.objective.metric, logged_metrics(cfg)
    if metric in logged:
        return
    split, _, name = metric.partition("/")
    hint = (
        f"; add it with `eval: {{metrics: [{name}]}}` in base"
        if split == "valid" and name in EVAL_METRICS
        else did_you_mean(metric, logged)
    )
    where, line = spec.line_of("objective.metric")
    raise SpecError(
        f"{metric!r} is never logged by the built-in trainer for this config (it logs {', '.join(logged)}){hint}",
        file=where or spec.path,
        key="objective.metric",
        line=line,
    )


def _raise_param_error(spec: SweepSpec, section: tuple, key: str, message: str) -> None:
    where, line = spec.line_of_param(section, key)
    raise SpecError(message, file=where, key=".".join(map(str, section + (key,))), line=line) from None


# -- Optuna search spaces ----------------------------------------------------------------------------------
def condition_met(when: dict[str, Any] | None, chosen: dict[str, Any], base: dict[str, Any]) -> bool:
    """`when: {model.name: vit}` (or a list of allowed values) against the values chosen so far, else the base config."""
    from sweeper.schema import get_path

    for key, allowed in (when or {}).items():
        value = chosen[key] if key in chosen else get_path(base, key)
        if value not in (allowed if isinstance(allowed, list) else [allowed]):
            return False
    return True


def suggest(trial, search, base: dict[str, Any]) -> dict[str, Any]:
    """Ask an Optuna trial for every parameter whose condition holds, in spec order. For a resumed or enqueued
    trial Optuna returns the values it already has."""
    chosen: dict[str, Any] = {}
    for key, param in search.params.items():
        if not condition_met(param.when, chosen, base):
            continue
        if param.type == "categorical":
            chosen[key] = trial.suggest_categorical(key, param.choices)
        elif param.type == "int":
            chosen[key] = trial.suggest_int(
                key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
            )
        else:
            chosen[key] = trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)
    return chosen


def grid_search_space(search) -> dict[str, list]:
    """The value lists Optuna's GridSampler needs (validated by the spec: no unstepped floats)."""
    space = {}
    for key, param in search.params.items():
        if param.type == "categorical":
            space[key] = list(param.choices)
        elif param.type == "int":
            space[key] = list(range(int(param.low), int(param.high) + 1, int(param.step or 1)))
        else:
            n = int(round((param.high - param.low) / param.step))
            space[key] = [param.low + i * param.step for i in range(n + 1)]
    return space


def trial_config(spec: SweepSpec, params: dict[str, Any], seed: int) -> dict[str, Any]:
    config = copy.deepcopy(spec.base)
    for key, value in params.items():
        set_path(config, key, copy.deepcopy(value))
    config["seed"] = seed
    return config


def check_search(spec: SweepSpec) -> None:
    """Every searched key must fit the trainer's schema: try each at its low end / first choice."""
    if spec.trial_entrypoint is not None or spec.search is None:
        return
    for key, param in spec.search.params.items():
        value = (
            param.choices[0]
            if param.type == "categorical"
            else (int(param.low) if param.type == "int" else param.low)
        )
        point = {k: (v if not isinstance(v, list) else v[0]) for k, v in (param.when or {}).items()}
        point[key] = value
        config = trial_config(spec, point, spec.seeds[0])
        _validated(spec, config, point, {k: ("search", "params") for k in point})
