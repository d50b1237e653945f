"""What every backend (a place jobs run: SLURM, local processes, this process) answers, and the records its
scheduler hands back. A new backend is one file with one `Backend` subclass, registered in `__init__`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sweeper.states import FINISHED

if TYPE_CHECKING:
    import submitit

    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.trial import Trial

GONE = "GONE"  # the scheduler has no record of the job any more, and none of how it ended
OnRunning = Callable[[set[str]], None]  # called while a backend drives its jobs, with the running job ids


@dataclass
class JobRecord:
    """What a scheduler says about one job (or one array task, id 'A_i'), in its own words."""

    job_id: str
    state: str
    exit_code: str | None = None  # "exit:signal", e.g. "0:0", "1:0", "0:9"
    node: str | None = None
    start: str | None = None  # ISO time as sacct prints it
    end: str | None = None
    source: str = "sacct"  # "squeue" for what the queue says (no exit code, not accounting)

    @property
    def terminal(self) -> bool:
        return self.state in FINISHED

    @property
    def accounting(self) -> bool:
        """A final record of how the job ended, worth keeping in the ledger (the scheduler forgets it)."""
        return self.source == "sacct" and self.terminal


@dataclass
class SchedulerView:
    """The answer of one refresh: records by job id, and where they came from."""

    source: str  # "sacct", "squeue" (sacct unavailable), "local", "unreachable" or "none" (nothing to ask)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    warning: str | None = None  # why the view is degraded (e.g. sacct's error)
    controller_down: bool = False  # the scheduler did not answer: unfinished jobs' states may be stale

    def merge(self, other: SchedulerView) -> SchedulerView:
        self.jobs.update(other.jobs)
        if self.source == "none":
            self.source = other.source
        self.warning = "; ".join(w for w in (self.warning, other.warning) if w) or None
        self.controller_down = self.controller_down or other.controller_down
        return self


@dataclass
class Resources:
    """What a backend decided for a launch: how many jobs at once, their threads and submitit parameters,
    and what it learnt from the cluster (SLURM: the arrays, split at MaxArraySize)."""

    parallelism: int  # at most this many jobs at once
    threads: int | None  # torch threads per job
    executor_params: dict[str, Any] = field(default_factory=dict)  # submitit's update_parameters
    arrays: list[Any] = field(default_factory=list)  # SLURM: the arrays of the trials submitted now, in order
    n_trials: int = 0  # the trials of the plan
    max_array_size: int | None = None
    limits: Any = None  # SLURM: the user's submit limits and what counts against them (slurm_limits)
    cluster_error: str | None = None  # why the cluster could not be asked (a dry run on a laptop)


class Backend(ABC):
    """One place jobs run. Instances are cheap and hold the jobs of one launch between submit and drive."""

    name: ClassVar[str]
    waits: ClassVar[bool] = True  # `launch` stays until the jobs end unless told otherwise
    packs: ClassVar[bool] = False  # runs `launch.pack` trials per job (else one trial per job)
    hands_out_gpus: ClassVar[bool] = False  # gives each trial a GPU of `launch.gpus` (the local launcher)

    @abstractmethod
    def resources(self, spec: SweepSpec, asked: int | None, n_trials: int) -> Resources:
        """Parallelism, threads and submitit parameters for `n_trials` jobs (`asked`: the spec's parallelism)."""

    def prepare(self, spec: SweepSpec, res: Resources, n_trials: int, query_cluster: bool) -> None:
        """Ask the cluster what the plan needs before anything is written (SLURM: MaxArraySize, the
        user's submit limits)."""
        return None

    def check_submittable(self, res: Resources) -> None:
        """Raise SchedulerError when the plan cannot be submitted at all (nothing is written then)."""
        return None

    @abstractmethod
    def submit(
        self, spec: SweepSpec, res: Resources, ledger: Ledger, trials: list[Trial], job: Callable
    ) -> None:
        """Take `trials` (already claimed, under the sweep's submit lock) and record them in the ledger."""

    def drive(self, spec: SweepSpec, res: Resources, ledger: Ledger, on_running: OnRunning | None) -> None:
        """Run what `submit` took until it has ended, where this backend is its own scheduler."""
        return None

    def schedule_end(self, spec: SweepSpec, res: Resources, ledger: Ledger) -> bool:
        """Have the scheduler run the sweep's end (`launch.on_end`) once every trial has ended. False: this
        backend cannot, and the launcher runs it when it has driven the trials to their end."""
        return False

    def should_ask(self, attempt: dict, latest: bool, now: float) -> bool:
        """Whether a refresh asks this backend about the attempt's job."""
        return False

    def job_states(self, job_ids: list[str]) -> SchedulerView:
        """The records of these jobs, from as few scheduler calls as possible."""
        return SchedulerView("none")

    def trial_state(self, scheduler_state: str) -> str:
        """A scheduler's word for a job, in the vocabulary of trial states (GONE stays GONE)."""
        return scheduler_state

    def cancel(self, job_ids: list[str]) -> None:
        """Stop these jobs (one call for all where the scheduler allows)."""
        return None

    def preview(self, spec: SweepSpec, res: Resources) -> list[str]:
        """Lines a dry run prints about what would be submitted."""
        return []

    def make_executor(self, spec: SweepSpec, res: Resources, ledger: Ledger) -> submitit.Executor:
        import submitit

        from sweeper.job import SUBMITIT_FOLDER

        executor = submitit.AutoExecutor(folder=ledger.dir / SUBMITIT_FOLDER, cluster=self.name)
        executor.update_parameters(**res.executor_params)
        return executor
