"""Launch-time advice on an Optuna search: its budget, its pruner's options with Optuna's defaults, and the
warnings for a search weaker than its spec suggests (each measured in benchmarks/bench_tune.py). Pure
arithmetic on the spec: Optuna is not imported."""

from __future__ import annotations

import math
import random
from typing import Any

from sweeper.space import grid_search_space
from sweeper.spec import SweepSpec


def search_budget(spec: SweepSpec) -> int:
    """n_trials, capped at the number of grid points for the grid sampler (it would repeat points past that)."""
    if spec.search.sampler.name != "grid":
        return spec.search.n_trials
    return min(spec.search.n_trials, math.prod(len(v) for v in grid_search_space(spec.search).values()))


def pruner_options(spec: SweepSpec) -> dict[str, Any]:
    options = dict(spec.search.pruner.options)
    if spec.search.pruner.name == "hyperband" and isinstance(spec.base.get("epochs"), int):
        options.setdefault("max_resource", spec.base["epochs"] * len(spec.seeds))
    return options


# Optuna's defaults for the pruners with rungs, which the warnings below reason about.
RUNG_DEFAULTS = {
    "hyperband": {"min_resource": 1, "reduction_factor": 3, "min_early_stopping_rate": 0},
    "successive_halving": {"min_resource": "auto", "reduction_factor": 4, "min_early_stopping_rate": 0},
}


def rung_options(spec: SweepSpec) -> dict[str, Any] | None:
    """A successive-halving or Hyperband pruner's options with Optuna's defaults filled in; None for others."""
    defaults = RUNG_DEFAULTS.get(spec.search.pruner.name)
    return None if defaults is None else {**defaults, **pruner_options(spec)}


def search_warnings(spec: SweepSpec) -> list[str]:
    """What makes a search weaker than its spec suggests (both measured in benchmarks/bench_tune.py)."""
    if spec.search is None:
        return []
    return [w for w in (_pruned_in_warmup(spec), _brackets_too_small(spec), _bootstrap_starves(spec)) if w]


def _pruned_in_warmup(spec: SweepSpec) -> str | None:
    """A pruner whose first decision comes before the lr warmup is over ranks trials on epochs trained at a
    fraction of their learning rate: on digits with 2 warmup epochs, epoch 1's accuracy (10-25%) ranked the
    trials with a Spearman correlation of 0.28 against their final value, epoch 3's with 0.77."""
    schedule = spec.base.get("schedule")
    warmup = schedule.get("warmup_epochs", 0) if isinstance(schedule, dict) else 0
    if not isinstance(warmup, (int, float)) or warmup <= 0 or "schedule.warmup_epochs" in spec.search.params:
        return None
    name, rung = spec.search.pruner.name, rung_options(spec)
    if rung is not None:
        key, first = "min_resource", rung["min_resource"]
    elif name in ("median", "percentile"):
        key, first = "n_warmup_steps", max(pruner_options(spec).get("n_warmup_steps", 0), 1)
    else:
        return None
    if not isinstance(first, int) or first > warmup:
        return None
    return (
        f"the {name} pruner can stop trials at epoch {first}, before the lr warmup is over "
        f"(schedule.warmup_epochs: {warmup:g}): it would rank them on epochs trained at a fraction of "
        f"their learning rate. Set {key} above {warmup:g}."
    )


def _brackets(spec: SweepSpec) -> list[tuple[float, list[int]]] | None:
    """Successive halving's or Hyperband's brackets as (expected trials, rung steps), where the options
    are plain numbers; None for other pruners or options Optuna resolves at run time ("auto")."""
    options = rung_options(spec)
    if options is None:
        return None
    epochs = spec.base.get("epochs")
    steps = options.get("max_resource", epochs * len(spec.seeds) if isinstance(epochs, int) else None)
    min_resource, eta = options["min_resource"], options["reduction_factor"]
    rate = options["min_early_stopping_rate"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, min_resource, eta, rate)):
        return None
    if min_resource < 1 or eta < 2 or steps < min_resource:
        return None  # Optuna itself refuses these when the study starts
    budget = search_budget(spec)
    if spec.search.pruner.name == "successive_halving":
        return [(budget, _rungs(min_resource, eta, rate, steps))]
    n_brackets = math.floor(math.log(steps / min_resource, eta)) + 1
    # Optuna's allocation: bracket b gets ceil(n * eta^s / (s + 1)) shares, s = n - 1 - b.
    shares = [
        math.ceil(n_brackets * eta ** (n_brackets - 1 - b) / (n_brackets - b)) for b in range(n_brackets)
    ]
    return [
        (budget * share / sum(shares), _rungs(min_resource, eta, b, steps)) for b, share in enumerate(shares)
    ]


def _rungs(min_resource: int, eta: int, rate: int, steps: int) -> list[int]:
    rungs, k = [], 0
    while min_resource * eta ** (rate + k) <= steps:
        rungs.append(min_resource * eta ** (rate + k))
        k += 1
    return rungs


def _brackets_too_small(spec: SweepSpec) -> str | None:
    """Optuna's Hyperband lets TPE learn only from the trials of the same bracket: with a small budget split
    over several brackets, most brackets never leave TPE's random startup."""
    search = spec.search
    if search.sampler.name != "tpe" or search.pruner.name != "hyperband":
        return None
    brackets = _brackets(spec)
    if brackets is None:
        return None
    n_brackets, trials = len(brackets), [n for n, _ in brackets]
    startup = search.sampler.options.get("n_startup_trials", 10)
    random_only = [t for t in trials if t <= startup]
    if not random_only:
        return None
    return (
        f"Hyperband splits the {search_budget(spec)} trials into {n_brackets} brackets (about "
        f"{', '.join(str(round(t)) for t in trials)} trials) and TPE learns only from trials of the same "
        f"bracket: {len(random_only)} of them get no more than its {startup} random startup trials. Use fewer "
        "brackets (a larger min_resource or reduction_factor), more trials, or a smaller n_startup_trials."
    )


def _bootstrap_starves(spec: SweepSpec) -> str | None:
    """Optuna cannot pause a trial: `bootstrap_count` N prunes the first N trials to reach each rung outright,
    and a later one goes on only if it ranks in the top 1/reduction_factor of those at the rung so far. With
    few trials per bracket, a search can end with no trial completed (measured on the digits benchmark)."""
    bootstrap = spec.search.pruner.options.get("bootstrap_count", 0)
    brackets = _brackets(spec)
    if not isinstance(bootstrap, int) or bootstrap < 1 or brackets is None:
        return None
    none, expected = no_trial_completes(brackets, bootstrap, rung_options(spec)["reduction_factor"])
    if none < 0.05:
        return None
    sizes = ", ".join(str(round(n)) for n, _ in brackets)
    return (
        f"bootstrap_count {bootstrap} prunes the first {bootstrap} trials to reach each rung (Optuna cannot "
        f"pause them): with about {sizes} trials per bracket, a search completes no trial {none:.0%} of "
        f"the time and about {expected:.1f} on average (trials in random order). Lower bootstrap_count or "
        "give the search more trials."
    )


def no_trial_completes(
    brackets: list[tuple[float, list[int]]], bootstrap: int, eta: int, draws: int = 2000
) -> tuple[float, float]:
    """How often no trial completes, and how many complete on average, under Optuna's successive-halving rule
    with trials arriving one after the other and their values at each rung in random order."""
    rng = random.Random(0)
    nothing, completed = 0, 0
    for _ in range(draws):
        done = 0
        for size, rungs in brackets:
            at_rung: list[list[float]] = [[] for _ in rungs]
            for _ in range(round(size)):
                for values in at_rung:
                    value = rng.random()
                    values.append(value)
                    if len(values) <= bootstrap:
                        break
                    top = max(len(values) // eta, 1)  # the best-so-far goes on before eta trials arrived
                    if value < sorted(values)[-top]:
                        break
                else:
                    done += 1
        nothing += done == 0
        completed += done
    return nothing / draws, completed / draws
