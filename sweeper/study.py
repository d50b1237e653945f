"""The Optuna study of a search sweep: its storage, sampler and pruner, the budget, reconciling trials whose
worker died, and the rows `status` and the launcher show. Read by the launcher and by the workers.

Storage is a JournalFileStorage file in the sweep dir (safe on NFS, no server) unless the spec gives an
RDB URL. SQLite is refused (see the spec). Trials are asked for under an fcntl lock in the sweep dir
(ASK_LOCK), so the budget `n_trials` is exact however many workers run. A worker that dies (kill -9,
timeout past its requeues, node failure) is noticed by `reconcile` (pid gone on this host, silent
heartbeat, or a dead job in the scheduler): its trial becomes FAIL and its parameters are enqueued once
more; only that first loss is not counted in the budget.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaTrialState

from sweeper.fsutil import atomic_write_json, locked, read_json
from sweeper.ledger import Ledger
from sweeper.objective import Objective
from sweeper.process import alive_here
from sweeper.run_files import STATUS_FILE
from sweeper.space import grid_search_space
from sweeper.spec import PRUNERS, SAMPLERS, SearchSpec, SweepSpec
from sweeper.states import StudyState, TrialState
from sweeper.tune_advice import pruner_options

log = logging.getLogger("sweeper.study")
JOURNAL_FILE = "optuna.journal"
ASK_LOCK = ".optuna.lock"
HEARTBEATS = ".workers"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def engine_url(url: str) -> str:
    """`postgresql://` means psycopg 3 (the driver sweeper[postgres] installs) whatever SQLAlchemy's version:
    before 2.1 SQLAlchemy reads a bare postgresql:// as psycopg2. An explicit driver is left alone."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def storage_of(sweep_dir: Path, search: SearchSpec) -> optuna.storages.BaseStorage:
    if search.storage:
        return optuna.storages.RDBStorage(engine_url(search.storage), engine_kwargs={"pool_pre_ping": True})
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL_FILE)))


def make_sampler(spec: SweepSpec, worker_index: int) -> optuna.samplers.BaseSampler:
    search = spec.search
    options = dict(search.sampler.options)
    if "seed" in options and options["seed"] is not None:
        # Each worker needs its own stream, or parallel workers would start with identical suggestions.
        options["seed"] = int(options["seed"]) + 7919 * worker_index
    name = search.sampler.name
    if name == "tpe" and search.workers > 1:
        options.setdefault("constant_liar", True)  # avoid proposing what a busy worker is already trying
    if name == "grid":
        return _GridSampler(grid_search_space(search), **options)
    return getattr(optuna.samplers, SAMPLERS[name])(**options)


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler calls Study.stop() when the grid is used up, which only works inside study.optimize();
    workers use ask/tell, and the budget (capped at the grid's size) ends the search instead."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    seed = spec.search.sampler.options.get("seed")
    if spec.search.pruner.name == "hyperband" and seed is not None:
        return _SeededHyperbandPruner(int(seed), **pruner_options(spec))
    return getattr(optuna.pruners, PRUNERS[spec.search.pruner.name])(**pruner_options(spec))


class _SeededHyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband draws a trial's bracket from a hash of the study's name and the trial's number;
    sweeper's study names hold the launch time, so two launches of a search with a fixed sampler seed put
    their trials in different brackets and pruned different trials. Here the seed stands for the name: a
    seeded search is the same search at every launch (with one worker; several interleave by timing)."""

    def __init__(self, seed: int, **options):
        super().__init__(**options)
        self._bracket_key = f"sweeper-seed-{seed}"

    def _get_bracket_id(self, study, trial) -> int:
        return super()._get_bracket_id(_Renamed(study, self._bracket_key), trial)


class _Renamed:
    """A study seen under another name (all Hyperband's bracket choice reads of it)."""

    def __init__(self, study: optuna.Study, name: str):
        self._study, self.study_name = study, name

    def __getattr__(self, attr: str):
        return getattr(self._study, attr)


def context(ledger: Ledger, objective: Objective, seeds: list[Any]) -> dict[str, Any]:
    """The study user attributes that say which sweep a study is (optuna-dashboard shows them)."""
    return {
        "sweep": ledger.name,
        "sweep_dir": str(ledger.dir.resolve()),
        "objective": objective.metric,
        "direction": objective.direction,
        "seeds": list(seeds),
    }


NOTE = """## {name}: {metric} ({direction}), seeds {seeds}

Sweep dir: `{sweep_dir}` (`analyze --checkpoints-path {sweep_dir}`).

- A trial runs every seed, one after the other. Its **value** is the mean over its seeds of each run's best
  epoch value of {metric}.
- **Intermediate values** put the seeds on one step axis: seed number k (0 for the first seed), epoch e is
  step k x {epochs} + e, so a completed trial shows one ramp per seed ({n_seeds} ramps).
- A **pruned** trial has **no value**: it stopped during one seed, and nothing measured on part of a trial
  is comparable with the completed trials' seed means, so history, parallel coordinates and EDF show the
  completed trials only. Its intermediate values (compared step by step, as the pruner compares them) and
  its user attributes say where it stopped: `pruned_seed`, `pruned_epoch`, `pruned_value` (that seed's
  best so far, what the pruner saw) and `seed_values` (the seeds it had finished).
"""


def _save_note(study: optuna.Study, spec: SweepSpec) -> None:
    """The study's note in optuna-dashboard (where it is installed): how to read values and steps."""
    from sweeper import extras

    if not extras.installed("optuna_dashboard"):
        return
    import optuna_dashboard

    attrs = study.user_attrs
    epochs = spec.base.get("epochs") if isinstance(spec.base.get("epochs"), int) else "epochs"
    text = NOTE.format(
        name=spec.name,
        metric=attrs["objective"],
        direction=attrs["direction"],
        seeds=list(spec.seeds),
        sweep_dir=attrs["sweep_dir"],
        epochs=epochs,
        n_seeds=len(spec.seeds),
    )
    optuna_dashboard.save_note(study, text)


def create_study(ledger: Ledger, spec: SweepSpec) -> dict[str, Any]:
    """Create the sweep's study; returns what goes into the sweep meta."""
    name = f"{spec.name}/{ledger.dir.name}"
    study = optuna.create_study(
        study_name=name,
        storage=storage_of(ledger.dir, spec.search),
        direction=spec.objective.direction,
        load_if_exists=False,
    )
    with warnings.catch_warnings():  # experimental since optuna 3.2, and what optuna-dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.objective.metric])  # optuna-dashboard's label, not "Objective 0"
    attrs = {"sampler": spec.search.sampler.name, "pruner": spec.search.pruner.name}
    for key, value in {**context(ledger, spec.objective, spec.seeds), **attrs}.items():
        study.set_user_attr(key, value)
    _save_note(study, spec)
    storage = spec.search.storage or JOURNAL_FILE
    return {
        "study_name": name,
        "storage": storage,
        "n_trials": spec.search.n_trials,
        "workers": spec.search.workers,
    }


def load_study(ledger: Ledger, spec: SweepSpec, worker_index: int = 0) -> optuna.Study:
    return optuna.load_study(
        study_name=ledger.meta["study_name"],
        storage=storage_of(ledger.dir, spec.search),
        sampler=make_sampler(spec, worker_index),
        pruner=make_pruner(spec),
    )


def tell_pruned(study: optuna.Study, trial: optuna.Trial) -> None:
    """End a trial PRUNED, with no value. `study.tell(trial, state=PRUNED)` gives it its last intermediate
    value (optuna's study/_tell.py), which here is one seed's best so far at the step it stopped: not the
    quantity a completed trial's value is (the mean over all seeds of each run's best), and no number taken
    from part of a trial is. optuna-dashboard plots a pruned trial in history, parallel coordinates and EDF
    only when it has a value, so without one it is kept off their value axis; samplers and pruners read a
    pruned trial's intermediate values, never its value. This is what `tell` does less the value: the
    sampler's after_trial, then the state."""
    frozen = study._storage.get_trial(trial._trial_id)
    try:
        study.sampler.after_trial(study, frozen, OptunaTrialState.PRUNED, None)
    finally:
        study._storage.set_trial_state_values(trial._trial_id, OptunaTrialState.PRUNED, None)


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    # A trial lost with its worker is retried once: the first loss does not spend budget, its retry does.
    return not (
        trial.state == OptunaTrialState.FAIL
        and trial.user_attrs.get("lost")
        and trial.user_attrs.get("retry_of") is None
    )


def budget_used(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(counts_toward_budget(t) for t in trials)


def run_objective(rows: list[dict], objective: Objective) -> float | None:
    """A run's value for the study: its best finite epoch value of the objective (None if it never logged it)."""
    metric = objective.metric
    values = [r[metric] for r in rows if r.get(metric) is not None and math.isfinite(r[metric])]
    if not values:
        return None
    return max(values) if objective.maximize else min(values)


def heartbeat_path(sweep_dir: Path, job_id: str) -> Path:
    return sweep_dir / HEARTBEATS / f"{job_id.replace('/', '_')}.heartbeat"


def worker_alive(
    trial: optuna.trial.FrozenTrial, sweep_dir: Path, stale_after_s: float, dead_jobs: set[str]
) -> bool:
    job_id = str(trial.user_attrs.get("job_id", ""))
    if job_id in dead_jobs:
        return False
    if (
        trial.user_attrs.get("pid")
        and alive_here(trial.user_attrs["pid"], trial.user_attrs.get("host")) is False
    ):
        return False
    beat = heartbeat_path(sweep_dir, job_id)
    last = (
        beat.stat().st_mtime
        if beat.exists()
        else (trial.datetime_start.timestamp() if trial.datetime_start else time.time())
    )
    return time.time() - last < stale_after_s


def reconcile(
    study: optuna.Study, sweep_dir: Path, search: SearchSpec, dead_jobs: set[str] = frozenset()
) -> list[int]:
    """Fail RUNNING trials whose worker is dead and enqueue their parameters once more. Returns their numbers."""
    failed = []
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(OptunaTrialState.RUNNING,)):
        if worker_alive(trial, sweep_dir, search.stale_after_s, set(dead_jobs)):
            continue
        try:  # attributes first: a finished trial cannot be changed any more
            storage.set_trial_user_attr(trial._trial_id, "lost", True)
            storage.set_trial_user_attr(
                trial._trial_id, "error", "its worker died (killed, timed out or lost its node)"
            )
            storage.set_trial_state_values(trial._trial_id, state=OptunaTrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        for name in (trial.user_attrs.get("run_dirs") or {}).values():
            _mark_run_failed(
                sweep_dir / name, "its worker died (killed, timed out or lost its node)", trial.number
            )
        if trial.user_attrs.get("retry_of") is None:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        failed.append(trial.number)
        log.warning("trial %d: worker %s is gone; marked FAIL", trial.number, trial.user_attrs.get("job_id"))
    return failed


def _mark_run_failed(run_dir: Path, error: str, trial_number: int) -> None:
    """The run's status says its trial FAILed (analyze shows it); an unfinished run becomes FAILED itself."""
    status = read_json(run_dir / STATUS_FILE)
    if not status:
        return
    status.update(optuna_trial=trial_number, optuna_state=StudyState.FAIL)
    if status.get("state") not in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED):
        status.update(state=TrialState.FAILED, error=error, updated_at=time.time())
    try:
        atomic_write_json(run_dir / STATUS_FILE, status)
    except OSError:
        pass


# -- reading a study (status, progress, dashboard) ------------------------------------------------------------
def study_rows(ledger: Ledger, spec: SweepSpec, dead_jobs: set[str] = frozenset()) -> list[dict[str, Any]]:
    """One row per Optuna trial, after reconciling trials whose worker is gone."""
    study = load_study(ledger, spec)
    with locked(ledger.dir / ASK_LOCK):
        reconcile(study, ledger.dir, spec.search, dead_jobs)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        run_dirs = trial.user_attrs.get("run_dirs") or {}
        first = next(iter(run_dirs.values()), None)
        status = (read_json(ledger.dir / first / STATUS_FILE) if first else None) or {}
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "params": trial.params,
                "value": trial.value,
                "epoch": status.get("epoch", max(trial.intermediate_values, default=0)),
                "epochs": status.get("epochs"),
                "run_dir": first,
                "job_id": trial.user_attrs.get("job_id"),
                "error": trial.user_attrs.get("error"),
                "retry_of": trial.user_attrs.get("retry_of"),
                "lost": bool(trial.user_attrs.get("lost")),
                "counted": counts_toward_budget(trial),
            }
        )
    return rows
