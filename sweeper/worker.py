"""The node side of an Optuna search: one worker job asks the study for trials until the budget is spent.

A trial runs once per seed (the seed is never searched), the seeds one after the other; every epoch is
reported to the pruner on one step axis (seed k's epoch e is step k*epochs + e), so a trial can be
stopped during any seed. The value reported is the run's best so far, and the trial's value is the mean
over seeds of each run's best epoch value of the objective, so the pruner compares what is compared in
the end; a pruned trial has no value (`study.tell_pruned`). A worker preempted mid-trial is requeued and resumes its RUNNING trial from the run's last.pt.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaTrialState

from sweeper.fsutil import atomic_write_json, locked, read_json
from sweeper.job import SUBMITIT_FOLDER, Ending, JobBase, index_run, load_entrypoint
from sweeper.ledger import STAMP_FORMAT, Ledger, ended_event
from sweeper.provenance import slurm_environment
from sweeper.run import Run
from sweeper.run_files import CONFIG_FILE, STATUS_FILE
from sweeper.space import suggest, trial_config
from sweeper.spec import SweepSpec
from sweeper.states import TrialState
from sweeper.study import (
    ASK_LOCK,
    budget_used,
    heartbeat_path,
    load_study,
    reconcile,
    run_objective,
    tell_pruned,
)
from sweeper.trial import Trial
from sweeper.tune_advice import search_budget

log = logging.getLogger("sweeper.worker")
HEARTBEAT_EVERY_S = 30.0


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


class TuneWorker(JobBase):
    """One worker job of an Optuna sweep. Shares JobBase's lock on its ledger trial (the worker), the
    `ending` ladder (for itself and for each Optuna trial it runs) and the requeue plumbing."""

    def __call__(self, worker_json: dict[str, Any]) -> dict[str, Any]:
        worker = Trial.from_json(worker_json)
        ledger, job_id, lock = self._start(worker.trial_id)
        if lock is None:
            return {"state": TrialState.SKIPPED}
        try:
            return self._work(ledger, worker, job_id)
        finally:
            lock.release()

    def _work(self, ledger: Ledger, worker: Trial, job_id: str) -> dict[str, Any]:
        spec = ledger.launched_spec()
        index = int(worker.config.get("worker", 0))
        self._link_submitit_logs(ledger.dir, ledger.dir / SUBMITIT_FOLDER, job_id)  # no-op unless paths exist
        ledger.append(
            {"event": "started", "trial_id": worker.trial_id, "job_id": job_id, "node": socket.gethostname()}
        )
        restarts = sum(
            1 for e in ledger.events() if e.get("trial_id") == worker.trial_id and e.get("event") == "started"
        )
        study = load_study(ledger, spec, index + 1000 * (restarts - 1))
        entry = load_entrypoint(self.entrypoint)
        finished = 0

        def record(end: Ending) -> None:
            ledger.append(ended_event(worker.trial_id, job_id, end.state, end.error, trials=finished))

        with self.ending(record) as end, Heartbeat(heartbeat_path(ledger.dir, job_id)):
            while (trial := self._next_trial(study, ledger, spec, job_id, index)) is not None:
                self._run_trial(trial, study, ledger, spec, entry, job_id)
                finished += 1
        return {"state": end.state, "trials": finished}

    def _next_trial(self, study: optuna.Study, ledger: Ledger, spec: SweepSpec, job_id: str, index: int):
        with locked(ledger.dir / ASK_LOCK):
            reconcile(study, ledger.dir, spec.search)
            trials = study.get_trials(deepcopy=False)
            mine = [
                t
                for t in trials
                if t.state == OptunaTrialState.RUNNING and t.user_attrs.get("job_id") == job_id
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

    @staticmethod
    def _run_dir(
        trial, run_dirs: dict[str, str], ledger: Ledger, spec: SweepSpec, job_id: str, seed: int
    ) -> Path:
        """Where the trial's run of this seed lives (the same dir after a requeue), recorded on the trial."""
        name = run_dirs.get(str(seed))
        if name is None:
            name = f"{time.strftime(STAMP_FORMAT)}_j{job_id}_t{trial.number}" + (
                f"_s{seed}" if len(spec.seeds) > 1 else ""
            )
            run_dirs[str(seed)] = name
            trial.set_user_attr("run_dirs", dict(run_dirs))  # each seed's run (optuna-dashboard shows it)
            if len(run_dirs) == 1:
                trial.set_user_attr("run_dir", str(ledger.dir / name))
                trial.set_user_attr("seeds", list(spec.seeds))
        run_dir = ledger.dir / name
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _run_seeds(
        self, trial, study: optuna.Study, ledger: Ledger, spec: SweepSpec, entry, job_id: str
    ) -> None:
        params = suggest(trial, spec.search, spec.base)
        objective = spec.objective
        # The pruner sees the seeds one after the other on one step axis: seed k's epoch e is step k*epochs + e,
        # so a trial can be stopped during any seed, and trials are compared at the same seed and epoch.
        epochs_per_seed = spec.base.get("epochs") if isinstance(spec.base.get("epochs"), int) else None
        last_step = epochs_per_seed * len(spec.seeds) if epochs_per_seed else None
        values = []
        run_dirs: dict[str, str] = dict(trial.user_attrs.get("run_dirs") or {})
        for position, seed in enumerate(spec.seeds):
            run_dir = self._run_dir(trial, run_dirs, ledger, spec, job_id, seed)
            config = trial_config(spec, params, seed)
            run_id = f"t{trial.number:04d}-s{seed}"
            atomic_write_json(
                run_dir / CONFIG_FILE,
                {
                    "trial_id": run_id,
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
                    "objective": objective.to_json(),
                    "slurm_env": slurm_environment(),
                },
            )
            if (read_json(run_dir / STATUS_FILE) or {}).get("state") == TrialState.COMPLETED:
                from sweeper.metrics import read_metrics

                values.append(run_objective(read_metrics(run_dir / "metrics.parquet").to_pylist(), objective))
                continue

            offset = position * epochs_per_seed if epochs_per_seed else 0
            best_so_far: list[float] = []

            def report(epoch: int, value: float, offset: int = offset, best_so_far=best_so_far) -> bool:
                # The run's best value so far, as the trial's value is each run's best epoch: the pruner
                # compares what will be compared in the end, not one noisy epoch.
                best_so_far[:] = [objective.better(best_so_far[0], value)] if best_so_far else [value]
                trial.report(best_so_far[0], offset + epoch)
                # At the trial's last step its budget is spent: pruning now saves no epoch and only loses
                # its value (a median pruner would stop a trial at its last epoch otherwise).
                return offset + epoch != last_step and trial.should_prune()

            run = Run(
                run_dir,
                config,
                trial_id=run_id,
                seed=seed,
                job_id=job_id,
                objective=objective,
                params=params,
                pruner=report if position == 0 or epochs_per_seed else None,
            )
            self._run_obj = run
            try:
                with self.ending(
                    lambda end, run=run, seed=seed: _tell_bad_end(study, trial, run, end, seed, values), True
                ) as end:
                    entry(config, run)
            finally:
                run.close()
            if end.state != TrialState.COMPLETED:
                return
            value = run_objective(run.metrics.rows, objective)
            if value is None:
                _tell_bad_end(
                    study,
                    trial,
                    run,
                    Ending(TrialState.FAILED, f"the objective {objective.metric} was never logged"),
                )
                return
            run.set_state(TrialState.COMPLETED)
            index_run(run.run_dir)
            values.append(value)
        trial.set_user_attr("seed_values", values)
        study.tell(trial, sum(values) / len(values))


def _tell_bad_end(
    study: optuna.Study, trial, run: Run, end: Ending, seed: Any, seed_values: list[float]
) -> None:
    """A seed's run ended other than COMPLETED: the run says how, and the study gets the trial PRUNED or FAIL.
    A pruned trial gets no value (see `tell_pruned`); its user attributes say where it stopped, with the
    value the pruner saw there (that seed's best so far) and the values of the seeds it had finished."""
    if end.state == TrialState.COMPLETED:
        return  # the trial's value decides, once every seed ran
    run.set_state(end.state, end.error)
    index_run(run.run_dir)
    if end.state == TrialState.PRUNED:
        reported = study._storage.get_trial(trial._trial_id).intermediate_values
        for key, value in {
            "pruned_seed": seed,
            "pruned_epoch": run.metrics.last_epoch,
            "pruned_value": reported[max(reported)] if reported else None,
            "seed_values": list(seed_values),
        }.items():
            trial.set_user_attr(key, value)
        tell_pruned(study, trial)
        log.info("trial %d pruned at epoch %d", trial.number, run.metrics.last_epoch)
        return
    trial.set_user_attr("error", end.error)
    study.tell(trial, state=OptunaTrialState.FAIL)
