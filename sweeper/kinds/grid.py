"""Grid/configs sweeps: named configs x grid points x seeds, one job per trial."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sweeper.display import format_value, metric_value, short_names
from sweeper.kinds.base import (
    LOG_EVERY_EPOCHS,
    Counts,
    Lines,
    Outcome,
    OverviewRow,
    Rows,
    Snapshot,
    SweepKind,
    Tracker,
    TrialTable,
    analyze_hint,
)
from sweeper.marks import Validity
from sweeper.objective import Objective
from sweeper.space import checked_count, expand
from sweeper.states import FAILURES, FINISHED, NOT_A_RESULT, TrialState

if TYPE_CHECKING:
    from sweeper.backends import Resources
    from sweeper.job import TrialJob
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.status import TrialStatus
    from sweeper.trial import Trial


class GridSweep(SweepKind):
    name = "grid/configs"

    def size(self, spec: SweepSpec) -> int:
        return checked_count(spec)

    def trials(self, spec: SweepSpec) -> list[Trial]:
        return expand(spec)

    def describe(self, spec: SweepSpec, n_trials: int) -> str:
        return f"{n_trials} trials"

    def job(self, spec: SweepSpec, threads: int | None, ledger: Ledger, fresh: bool) -> TrialJob:
        from sweeper.job import TrialJob

        return TrialJob(str(ledger.dir), spec.trial_entrypoint, threads, fresh, spec.launch.time_min)

    def plan_parts(self, spec: SweepSpec, trials: list[Trial], executor: str, res: Resources) -> list[Any]:
        names = short_names(spec.swept_keys) if spec.swept_keys else {}
        rows = [
            [t.trial_id, *[format_value(t.params[k]) if k in t.params else "-" for k in names], str(t.seed)]
            for t in trials
        ]
        title = f"{spec.name}: {len(trials)} trials (dry run: nothing submitted)"
        lines = [
            f"executor: {executor}, at most {res.parallelism} at a time, {res.threads} torch thread(s) per job"
        ]
        if spec.command is not None:
            lines += _command_lines(spec, trials)
        return [Rows(title, ["trial id", *names.values(), "seed"], rows), Lines(lines)]

    def tracker(self, spec: SweepSpec, ledger: Ledger, trials: list[Trial]) -> Tracker:
        return GridTracker(trials, spec.objective.metric)

    def status_parts(self, ledger: Ledger, statuses: list[TrialStatus], only: set[str] | None) -> list[Any]:
        metric = Objective.of(ledger.meta.get("objective")).metric
        shown = [s for s in statuses if only is None or s.state in only]
        title = f"{ledger.name} {ledger.dir.name} ({ledger.meta.get('executor')}, {len(statuses)} trials)"
        return [TrialTable(shown, title, metric), Counts(Counter(s.state for s in statuses))]

    def overview(self, ledger: Ledger, statuses: list[TrialStatus]) -> OverviewRow:
        objective = Objective.of(ledger.meta.get("objective"))
        best = best_config_mean(statuses, objective)
        return OverviewRow(str(len(statuses)), Counter(s.state for s in statuses), best)

    def outcome(self, ledger: Ledger, statuses: list[TrialStatus], trials: list[Trial] | None) -> Outcome:
        if trials is not None:
            wanted = {t.trial_id for t in trials}
            statuses = [s for s in statuses if s.trial_id in wanted]
        failures = [(s.trial_id, s.error) for s in statuses if s.state in FAILURES]
        return Outcome([Counts(Counter(s.state for s in statuses))], failures, [analyze_hint(ledger)])


def best_config_mean(statuses: Sequence[TrialStatus], objective: Objective) -> float | None:
    """The best config's mean over its seeds of each run's best objective value: the number analyze's "Best
    config" shows, counted as analysis/aggregate.py counts it (a config's finished runs when it has any)."""
    by_name: dict[str, list[TrialStatus]] = {}
    for s in statuses:
        if s.mark != Validity.INVALID:  # left out, as analyze leaves it out
            by_name.setdefault(s.name, []).append(s)
    means = []
    for runs in by_name.values():
        counted = [s for s in runs if s.state not in NOT_A_RESULT and s.state in FINISHED] or runs
        values = [s.best for s in counted if s.best is not None]
        if values:
            means.append(sum(values) / len(values))
    return (max if objective.maximize else min)(means) if means else None


def _command_lines(spec: SweepSpec, trials: list[Trial], shown: int = 3) -> list[str]:
    """The exact command line of the first trials (their run dirs do not exist yet)."""
    import shlex

    from sweeper.command_template import expand, split_command

    words = split_command(spec.command)
    lines = [f"command (in {spec.cwd}), first {min(shown, len(trials))} of {len(trials)}:"]
    for trial in trials[:shown]:
        argv = expand(words, trial.config, trial.params, trial.seed, trial.trial_id, "<run dir>")
        lines.append(f"  {trial.trial_id}: {shlex.join(argv)}")
    return lines


class GridTracker(Tracker):
    description = "trials finished"

    def __init__(self, trials: list[Trial], metric: str):
        self.total = len(trials)
        self.ids = {t.trial_id for t in trials}
        self.metric = metric
        self.seen: dict[str, tuple] = {}

    def snapshot(self, statuses: Sequence[TrialStatus], live: bool) -> Snapshot:
        mine = [s for s in statuses if s.trial_id in self.ids]
        done = sum(s.finished for s in mine)
        if live:
            active = [s for s in mine if s.state in (TrialState.RUNNING, TrialState.PENDING)]
            return Snapshot(done, TrialTable(active, "running", self.metric) if active else None, [])
        lines = []
        for s in mine:  # plain log lines for CI and pipes
            key = (s.state, s.epoch // LOG_EVERY_EPOCHS)
            if self.seen.get(s.trial_id) != key:
                self.seen[s.trial_id] = key
                epoch = (
                    (f" epoch {s.epoch}/{s.epochs}" if s.epochs else f" epoch {s.epoch}") if s.epoch else ""
                )
                value = s.last.get(self.metric)  # the objective, whatever it is
                shown = f" {self.metric} {metric_value(self.metric, value)}" if value is not None else ""
                lines.append(f"  {s.trial_id}: {s.state}{epoch}{shown}")
        return Snapshot(done, None, lines)
