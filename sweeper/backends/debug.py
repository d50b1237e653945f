"""The debug backend: trials run one after the other in this process (breakpoints work)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sweeper.backends.base import Backend, OnRunning, Resources
from sweeper.backends.local import LocalBackend
from sweeper.ledger import submitted_event

if TYPE_CHECKING:
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.trial import Trial


class DebugBackend(Backend):
    name = "debug"

    def __init__(self) -> None:
        self._jobs: list = []

    def resources(self, spec: SweepSpec, asked: int | None, n_trials: int) -> Resources:
        local = LocalBackend().resources(spec, asked, n_trials)  # this machine's cores, no submitit options
        return Resources(local.parallelism, local.threads)

    def submit(
        self, spec: SweepSpec, res: Resources, ledger: Ledger, trials: list[Trial], job: Callable
    ) -> None:
        executor = self.make_executor(spec, res, ledger)
        attempts = ledger.next_attempts(trials)
        self._jobs = executor.map_array(job, [t.to_json() for t in trials])  # run lazily, by result()
        ledger.append(
            *[
                submitted_event(t.trial_id, str(j.job_id), attempts[t.trial_id], self.name)
                for t, j in zip(trials, self._jobs, strict=True)
            ]
        )

    def drive(self, spec: SweepSpec, res: Resources, ledger: Ledger, on_running: OnRunning | None) -> None:
        for job in self._jobs:
            try:
                job.result()
            except Exception:  # the failure is recorded in the ledger and the run dir; go on with the next
                pass
            if on_running:
                on_running(set())
