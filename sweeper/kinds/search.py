"""Optuna search sweeps: `workers` jobs pull trials from one study until the budget is spent."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sweeper.display import format_value
from sweeper.kinds.base import (
    LOG_EVERY_EPOCHS,
    Counts,
    Lines,
    Outcome,
    OverviewRow,
    Rows,
    Snapshot,
    StudyTable,
    SweepKind,
    Tracker,
    TrialTable,
    analyze_hint,
)
from sweeper.space import check_search, worker_trials
from sweeper.states import FAILURES, STUDY_FINISHED, StudyState
from sweeper.tune_advice import search_budget, search_warnings

if TYPE_CHECKING:
    from sweeper.backends import Resources
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.status import TrialStatus
    from sweeper.trial import Trial
    from sweeper.worker import TuneWorker

SEARCH_META = "optuna"  # sweep.json's `search` for a search sweep
READ_STUDY_EVERY_S = 2.0  # progress reads the study this often (it is a file or a database)


class SearchSweep(SweepKind):
    name = "Optuna search"

    def size(self, spec: SweepSpec) -> int:
        return spec.search.workers

    def trials(self, spec: SweepSpec) -> list[Trial]:
        check_search(spec)
        return worker_trials(spec)

    def describe(self, spec: SweepSpec, n_trials: int) -> str:
        return f"Optuna search, {spec.search.n_trials} trials by {n_trials} workers"

    def warnings(self, spec: SweepSpec) -> list[str]:
        return search_warnings(spec)

    def create(self, ledger: Ledger, spec: SweepSpec) -> dict[str, Any]:
        from sweeper.study import create_study

        return {"search": SEARCH_META, **create_study(ledger, spec)}

    def job(self, spec: SweepSpec, threads: int | None, ledger: Ledger, fresh: bool) -> TuneWorker:
        from sweeper.worker import TuneWorker

        return TuneWorker(str(ledger.dir), spec.trial_entrypoint, threads, False, spec.launch.time_min)

    def plan_parts(self, spec: SweepSpec, trials: list[Trial], executor: str, res: Resources) -> list[Any]:
        search = spec.search
        rows = []
        for key, param in search.params.items():
            if param.type == "categorical":
                values = ", ".join(format_value(c) for c in param.choices)
            else:
                values = (
                    f"[{format_value(param.low)}, {format_value(param.high)}]"
                    + (" log" if param.log else "")
                    + (f" step {format_value(param.step)}" if param.step else "")
                )
            when = ", ".join(f"{k}={format_value(v)}" for k, v in (param.when or {}).items())
            rows.append([key, param.type, values, when or "-"])
        title = f"{spec.name}: Optuna search (dry run: nothing submitted)"

        def options(plugin) -> str:
            return ", ".join(f"{k}={format_value(v)}" for k, v in plugin.options.items()) or "defaults"

        lines = [
            f"sampler: {search.sampler.name} ({options(search.sampler)}); "
            f"pruner: {search.pruner.name} ({options(search.pruner)})",
            f"objective: {spec.objective.direction} {spec.objective.metric}, mean over seeds {spec.seeds}; "
            f"budget {search.n_trials} trials; {search.workers} workers on {executor}; "
            f"storage: {search.storage or 'journal file in the sweep dir'}",
        ]
        if spec.command is not None:
            from sweeper.command_template import split_command

            lines.append(
                f"command (in {spec.cwd}; Optuna fills in the parameters): {' '.join(split_command(spec.command))}"
            )
        return [Rows(title, ["parameter", "type", "range / choices", "when"], rows), Lines(lines)]

    def tracker(self, spec: SweepSpec, ledger: Ledger, trials: list[Trial]) -> Tracker:
        return SearchTracker(ledger, spec)

    def status_parts(self, ledger: Ledger, statuses: list[TrialStatus], only: set[str] | None) -> list[Any]:
        from sweeper.study import study_rows

        spec = ledger.launched_spec()
        rows = study_rows(ledger, spec, dead_jobs=_dead_jobs(statuses))
        title = f"{ledger.name} {ledger.dir.name}: Optuna study, budget {spec.search.n_trials} trials"
        return [
            _study_table(rows, spec, title),
            Counts(Counter(r["state"] for r in rows)),
            TrialTable(statuses, "workers", key="workers"),
        ]

    def overview(self, ledger: Ledger, statuses: list[TrialStatus]) -> OverviewRow:
        """The study's trials (reconciled), not the worker jobs; the workers' when the study cannot be read
        (an RDB that is down must not hide the other sweeps)."""
        from sweeper.study import study_rows

        workers = f"{len(statuses)} " + ("worker" if len(statuses) == 1 else "workers")
        try:
            spec = ledger.launched_spec()
            rows = study_rows(ledger, spec, dead_jobs=_dead_jobs(statuses))
        except Exception as exc:
            unread = f"study not read ({str(exc).splitlines()[0][:200]}); workers shown"
            return OverviewRow(
                workers,
                Counter(s.state for s in statuses),
                None,
                f"{ledger.name}/{ledger.dir.name}: {unread}",
            )
        values = [r["value"] for r in rows if r["state"] == StudyState.COMPLETE]
        best = (max if spec.objective.maximize else min)(values) if values else None
        spent = sum(r["counted"] for r in rows)
        return OverviewRow(
            f"{spent}/{search_budget(spec)} by {workers}", Counter(r["state"] for r in rows), best
        )

    def outcome(self, ledger: Ledger, statuses: list[TrialStatus], trials: list[Trial] | None) -> Outcome:
        from sweeper.study import study_rows

        spec = ledger.launched_spec()
        rows = study_rows(ledger, spec)
        parts: list[Any] = [
            _study_table(rows, spec, f"{ledger.name}: {len(rows)} Optuna trials"),
            Counts(Counter(r["state"] for r in rows)),
        ]
        done = [r for r in rows if r["state"] == StudyState.COMPLETE]
        if done:
            best = (max if spec.objective.maximize else min)(done, key=lambda r: r["value"])
            params = ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
            parts.append(
                Lines(
                    [f"best trial {best['number']}: {spec.objective.metric} {best['value']:.4f} ({params})"]
                )
            )
        # The workers: one that ended badly (failed, timed out, lost its node, ...) fails the command.
        failures = [(s.trial_id, s.error) for s in statuses if s.state in FAILURES]
        hints = [analyze_hint(ledger), f"dashboard:    sweeper dashboard {ledger.dir}"]
        return Outcome(parts, failures, hints)

    def dashboard_storage(self, ledger: Ledger):
        from sweeper.study import storage_of

        return storage_of(ledger.dir, ledger.launched_spec().search)


def _dead_jobs(statuses: Sequence[TrialStatus]) -> set[str]:
    return {str(s.job_id) for s in statuses if s.job_id and s.finished}


def _study_table(rows: list[dict], spec: SweepSpec, title: str | None) -> StudyTable:
    return StudyTable(rows, list(spec.search.params), spec.objective.metric, title)


class SearchTracker(Tracker):
    """Finished trials out of the budget, read from the study every few seconds."""

    description = "optuna trials finished"

    def __init__(self, ledger: Ledger, spec: SweepSpec):
        self.ledger, self.spec = ledger, spec
        self.total = search_budget(spec)
        self.last_read = 0.0
        self.seen: dict[int, tuple] = {}

    def snapshot(self, statuses: Sequence[TrialStatus], live: bool) -> Snapshot | None:
        from sweeper.study import study_rows

        if time.time() - self.last_read < READ_STUDY_EVERY_S and not all(s.finished for s in statuses):
            return None
        self.last_read = time.time()
        rows = study_rows(self.ledger, self.spec)
        done = sum(r["counted"] and r["state"] in STUDY_FINISHED for r in rows)
        if live:
            return Snapshot(done, _study_table(rows, self.spec, None), [])
        lines = []
        for row in rows:
            key = (row["state"], (row["epoch"] or 0) // LOG_EVERY_EPOCHS)
            if self.seen.get(row["number"]) != key:
                self.seen[row["number"]] = key
                value = "" if row["value"] is None else f" value {row['value']:.4f}"
                lines.append(f"  trial {row['number']}: {row['state']} epoch {row['epoch']}{value}")
        return Snapshot(done, None, lines)
