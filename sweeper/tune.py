"""Optuna search: the study (storage, sampler, pruner), the worker loop each job runs, and reconcile.

Each worker job asks the shared study for trials until the global budget `n_trials` is spent; asking
happens under an fcntl lock in the sweep dir, so the budget is exact however many workers run. A trial
runs once per seed (the seed is never searched), the seeds one after the other; every epoch is reported
to the pruner on one step axis (seed k's epoch e is step k*epochs + e), so a trial can be stopped during
any seed. The value reported is the run's best so far, and the trial's value is the mean over seeds of
each run's best epoch value of the objective, so the pruner compares what is compared in the end.

A worker preempted mid-trial is requeued and resumes its RUNNING trial from the run's last.pt. A worker
that dies (kill -9, timeout past its requeues, node failure) is noticed by `reconcile` (pid gone on this
host, silent heartbeat, or a dead job in the scheduler): its trial becomes FAIL and its parameters are
enqueued once more.

Storage is a JournalFileStorage file in the sweep dir (safe on NFS, no server) unless the spec gives an
RDB URL. SQLite is refused (see the spec).
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
import submitit
from optuna.trial import TrialState

from sweeper.fsutil import atomic_write_json, locked, read_json
from sweeper.job import SUBMITIT_FOLDER, TrialJob, current_job_id, load_entrypoint
from sweeper.ledger import STAMP_FORMAT, Ledger
from sweeper.provenance import slurm_environment
from sweeper.run import COMPLETED, CONFIG_FILE, FAILED, PRUNED, STATUS_FILE, Run, TrialPruned
from sweeper.space import Trial, grid_search_space, suggest, trial_config
from sweeper.spec import PRUNERS, SAMPLERS, SearchSpec, SweepSpec

log = logging.getLogger("sweeper.tune")
JOURNAL_FILE = "optuna.journal"
ASK_LOCK = ".optuna.lock"
HEARTBEATS = ".workers"
HEARTBEAT_EVERY_S = 30.0
optuna.logging.set_verbosity(optuna.logging.WARNING)


# -- study -------------------------------------------------------------------------------------------------
def storage_of(sweep_dir: Path, search: SearchSpec) -> optuna.storages.BaseStorage:
    if search.storage:
        return optuna.storages.RDBStorage(search.storage, engine_kwargs={"pool_pre_ping": True})
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


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    return getattr(optuna.pruners, PRUNERS[spec.search.pruner.name])(**pruner_options(spec))


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


def create_study(ledger: Ledger, spec: SweepSpec) -> dict[str, Any]:
    """Create the sweep's study; returns what goes into the sweep meta."""
    name = f"{spec.name}/{ledger.dir.name}"
    optuna.create_study(
        study_name=name,
        storage=storage_of(ledger.dir, spec.search),
        direction=spec.objective.direction,
        load_if_exists=False,
    )
    storage = spec.search.storage or JOURNAL_FILE
    return {
        "search": "optuna",
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


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    # A trial lost with its worker is retried once: the first loss does not spend budget, its retry does.
    return not (
        trial.state == TrialState.FAIL
        and trial.user_attrs.get("lost")
        and trial.user_attrs.get("retry_of") is None
    )


def budget_used(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(counts_toward_budget(t) for t in trials)


def run_objective(rows: list[dict], metric: str, direction: str) -> float | None:
    values = [r[metric] for r in rows if r.get(metric) is not None and math.isfinite(r[metric])]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


# -- liveness ----------------------------------------------------------------------------------------------
def heartbeat_path(sweep_dir: Path, job_id: str) -> Path:
    return sweep_dir / HEARTBEATS / f"{job_id.replace('/', '_')}.heartbeat"


class Heartbeat:
    """Touches a file every 30 s from a daemon thread: a worker that stops touching it is dead."""

    def __init__(self, path: Path):
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="sweeper-heartbeat")

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(f"{time.time()}\n")
            except OSError:
                pass
            self._stop.wait(HEARTBEAT_EVERY_S)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_alive(
    trial: optuna.trial.FrozenTrial, sweep_dir: Path, stale_after_s: float, dead_jobs: set[str]
) -> bool:
    job_id = str(trial.user_attrs.get("job_id", ""))
    if job_id in dead_jobs:
        return False
    if trial.user_attrs.get("host") == socket.gethostname() and trial.user_attrs.get("pid"):
        if not _pid_alive(int(trial.user_attrs["pid"])):
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
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker_alive(trial, sweep_dir, search.stale_after_s, set(dead_jobs)):
            continue
        try:  # attributes first: a finished trial cannot be changed any more
            storage.set_trial_user_attr(trial._trial_id, "lost", True)
            storage.set_trial_user_attr(
                trial._trial_id, "error", "its worker died (killed, timed out or lost its node)"
            )
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
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
    status.update(optuna_trial=trial_number, optuna_state=TrialState.FAIL.name)
    if status.get("state") not in (COMPLETED, PRUNED, FAILED):
        status.update(state=FAILED, error=error, updated_at=time.time())
    try:
        atomic_write_json(run_dir / STATUS_FILE, status)
    except OSError:
        pass


# -- the worker --------------------------------------------------------------------------------------------
class TuneWorker(TrialJob):
    """One worker job of an Optuna sweep. Reuses TrialJob's lock, logging and requeue plumbing."""

    def __call__(self, worker_json: dict[str, Any]) -> dict[str, Any]:
        from sweeper.control import load_launched_spec

        worker = Trial.from_json(worker_json)
        ledger = Ledger(self.sweep_dir)
        spec = load_launched_spec(ledger)
        job_id = current_job_id()
        index = int(worker.config.get("worker", 0))
        self._link_submitit_logs(ledger.dir, ledger.dir / SUBMITIT_FOLDER, job_id)  # no-op unless paths exist
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        ledger.append(
            {"event": "started", "trial_id": worker.trial_id, "job_id": job_id, "node": socket.gethostname()}
        )
        restarts = sum(
            1 for e in ledger.events() if e.get("trial_id") == worker.trial_id and e.get("event") == "started"
        )
        study = load_study(ledger, spec, index + 1000 * (restarts - 1))
        entry = load_entrypoint(self.entrypoint)
        finished, state, error = 0, COMPLETED, None
        try:
            with Heartbeat(heartbeat_path(ledger.dir, job_id)):
                while (trial := self._next_trial(study, ledger, spec, job_id, index)) is not None:
                    self._run_trial(trial, study, ledger, spec, entry, job_id)
                    finished += 1
        except SystemExit:
            if getattr(self, "_requeued", False):
                raise
            state, error = FAILED, "the worker called sys.exit"
            raise
        except KeyboardInterrupt:
            state, error = "CANCELLED", "cancelled"
            raise
        except BaseException as exc:
            state, error = FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.error("worker %s failed:\n%s", worker.trial_id, traceback.format_exc())
            raise
        finally:
            if not getattr(self, "_requeued", False):
                ledger.append(
                    {
                        "event": "ended",
                        "trial_id": worker.trial_id,
                        "job_id": job_id,
                        "state": state,
                        "error": error,
                        "trials": finished,
                    }
                )
        return {"state": state, "trials": finished}

    def _next_trial(self, study: optuna.Study, ledger: Ledger, spec: SweepSpec, job_id: str, index: int):
        with locked(ledger.dir / ASK_LOCK):
            reconcile(study, ledger.dir, spec.search)
            trials = study.get_trials(deepcopy=False)
            mine = [
                t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("job_id") == job_id
            ]
            if mine:  # requeued after preemption: finish what this job had started
                log.info("resuming trial %d after requeue", mine[0].number)
                trial = optuna.trial.Trial(study, mine[0]._trial_id)
            elif budget_used(trials) >= search_budget(spec):
                return None
            else:
                trial = study.ask()
            for key, value in {
                "job_id": job_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "worker": index,
            }.items():
                trial.set_user_attr(key, value)
            return trial

    def _run_trial(
        self, trial, study: optuna.Study, ledger: Ledger, spec: SweepSpec, entry, job_id: str
    ) -> None:
        """Run the trial's seeds, tell the study, and note the trial's final state in each run's status.json
        (a run that finished its seed is COMPLETED even when a later seed got the trial pruned)."""
        self._run_seeds(trial, study, ledger, spec, entry, job_id)
        final = study._storage.get_trial(trial._trial_id)
        for name in (final.user_attrs.get("run_dirs") or {}).values():
            status = read_json(ledger.dir / name / STATUS_FILE)
            if status is not None:
                status.update(optuna_trial=trial.number, optuna_state=final.state.name)
                try:
                    atomic_write_json(ledger.dir / name / STATUS_FILE, status)
                except OSError:
                    pass

    def _run_seeds(
        self, trial, study: optuna.Study, ledger: Ledger, spec: SweepSpec, entry, job_id: str
    ) -> None:
        params = suggest(trial, spec.search, spec.base)
        metric, direction = spec.objective.metric, spec.objective.direction
        run_dirs: dict[str, str] = dict(trial.user_attrs.get("run_dirs") or {})
        # The pruner sees the seeds one after the other on one step axis: seed k's epoch e is step k*epochs + e,
        # so a trial can be stopped during any seed, and trials are compared at the same seed and epoch.
        epochs_per_seed = spec.base.get("epochs") if isinstance(spec.base.get("epochs"), int) else None
        better = max if direction == "maximize" else min
        values = []
        for position, seed in enumerate(spec.seeds):
            name = run_dirs.get(str(seed))
            if name is None:
                name = f"{time.strftime(STAMP_FORMAT)}_j{job_id}_t{trial.number}" + (
                    f"_s{seed}" if len(spec.seeds) > 1 else ""
                )
                run_dirs[str(seed)] = name
                trial.set_user_attr(
                    "run_dirs", dict(run_dirs)
                )  # where each seed's run lives (optuna-dashboard shows it)
                if position == 0:
                    trial.set_user_attr("run_dir", str(ledger.dir / name))
                    trial.set_user_attr("seeds", list(spec.seeds))
            run_dir = ledger.dir / name
            run_dir.mkdir(parents=True, exist_ok=True)
            config = trial_config(spec, params, seed)
            atomic_write_json(
                run_dir / CONFIG_FILE,
                {
                    "trial_id": f"t{trial.number:04d}-s{seed}",
                    "name": f"t{trial.number:04d}",
                    "params": params,
                    "seed": seed,
                    "config": config,
                    "sweep": ledger.name,
                    "sweep_dir": str(ledger.dir),
                    "entrypoint": self.entrypoint,
                    "job_id": job_id,
                    "optuna_trial": trial.number,
                    "optuna_study": ledger.meta.get("study_name"),
                    "objective": {"metric": metric, "direction": direction},
                    "slurm_env": slurm_environment(),
                },
            )
            if (read_json(run_dir / STATUS_FILE) or {}).get("state") == COMPLETED:
                from sweeper.metrics import read_metrics

                values.append(
                    run_objective(read_metrics(run_dir / "metrics.parquet").to_pylist(), metric, direction)
                )
                continue

            offset = position * epochs_per_seed if epochs_per_seed else 0

            best_so_far: list[float] = []

            def report(epoch: int, value: float, offset: int = offset, best_so_far=best_so_far) -> bool:
                # The run's best value so far, as the trial's value is each run's best epoch: the pruner
                # compares what will be compared in the end, not one noisy epoch.
                best_so_far[:] = [better(best_so_far[0], value)] if best_so_far else [value]
                trial.report(best_so_far[0], offset + epoch)
                return trial.should_prune()

            run = Run(
                run_dir,
                config,
                trial_id=f"t{trial.number:04d}-s{seed}",
                seed=seed,
                job_id=job_id,
                objective=metric,
                pruner=report if position == 0 or epochs_per_seed else None,
            )
            self._run_obj = run
            try:
                entry(config, run)
            except TrialPruned:
                run.set_state(PRUNED)
                study.tell(trial, state=TrialState.PRUNED)
                log.info("trial %d pruned at epoch %d", trial.number, run.metrics.last_epoch)
                return
            except KeyboardInterrupt:
                run.set_state("CANCELLED", "cancelled")
                trial.set_user_attr("error", "cancelled")
                study.tell(trial, state=TrialState.FAIL)
                raise
            except SystemExit:
                raise  # requeue (timeout/preemption): the trial stays RUNNING and is resumed by the requeued job
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.error("trial %d failed:\n%s", trial.number, traceback.format_exc())
                run.set_state(FAILED, message)
                trial.set_user_attr("error", message)
                study.tell(trial, state=TrialState.FAIL)
                return
            finally:
                run.close()
            value = run_objective(run.metrics.rows, metric, direction)
            if value is None:
                run.set_state(FAILED, f"the objective {metric} was never logged")
                trial.set_user_attr("error", f"the objective {metric} was never logged")
                study.tell(trial, state=TrialState.FAIL)
                return
            run.set_state(COMPLETED)
            values.append(value)
        trial.set_user_attr("seed_values", values)
        study.tell(trial, sum(values) / len(values))

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        self._requeued = True
        run = getattr(self, "_run_obj", None)
        if run is not None:
            from sweeper.run import REQUEUED

            run.set_state(REQUEUED)
        return submitit.helpers.DelayedSubmission(
            TuneWorker(self.sweep_dir, self.entrypoint, self.threads), *args, **kwargs
        )


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
