"""The SLURM backend: job arrays (throttled with %N, split at the cluster's MaxArraySize, chained so the
sweep's parallelism holds), their sbatch preview, states from one sacct call, scancel, and the sweep's
helper jobs (slurm_helpers: the sweep-end job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeper.backends import slurm_commands, slurm_helpers
from sweeper.backends.base import GONE, Backend, Resources, SchedulerView
from sweeper.errors import SchedulerError
from sweeper.ledger import is_accounted, submitted_event
from sweeper.states import FINISHED, TrialState

if TYPE_CHECKING:
    from sweeper.ledger import Ledger
    from sweeper.space import Trial
    from sweeper.spec import SweepSpec

DEFAULT_PARALLELISM = 64
ACCOUNTING_WINDOW_S = 3 * 24 * 3600  # ended attempts are asked about (for their exit code) this long
# SLURM's words for a job that is queued or being (re)started, and for one that runs.
QUEUED_WORDS = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD"}
RUNNING_WORDS = {"RUNNING", "COMPLETING"}
HELD_WORDS = {"SUSPENDED", "STOPPED"}


@dataclass
class ArrayPart:
    """One SLURM array of a sweep: trials[first : first + size], at most `throttle` tasks running at once."""

    first: int
    size: int
    throttle: int
    # Index of an earlier array this one waits for (--dependency=afterany), so that a sweep split into
    # several arrays still runs at most `parallelism` trials at once: each array's %N only limits itself.
    after: int | None = None


def split_arrays(n_trials: int, max_array_size: int | None, parallelism: int) -> list[ArrayPart]:
    """Arrays of at most max_array_size tasks, in trial order. When the sweep has more trials than
    `parallelism`, at most `parallelism // size` arrays (at least one) may run at once: array k waits for
    array k - that many. So `parallelism` holds for the sweep, and small arrays still fill it."""
    chunk = max(1, max_array_size or n_trials or 1)
    concurrent = max(1, parallelism // chunk) if parallelism < n_trials else None
    parts = []
    for index, first in enumerate(range(0, n_trials, chunk)):
        size = min(chunk, n_trials - first)
        after = index - concurrent if concurrent and index >= concurrent else None
        parts.append(ArrayPart(first, size, min(parallelism, size), after))
    return parts


class SlurmBackend(Backend):
    name = "slurm"
    waits = False  # arrays carry the throttle: `launch` returns once sbatch has answered

    def resources(self, spec: SweepSpec, asked: int | None, n_trials: int) -> Resources:
        launch, res = spec.launch, spec.launch.slurm
        parallelism = asked or DEFAULT_PARALLELISM
        params: dict[str, Any] = {
            "timeout_min": launch.time_min,
            "cpus_per_task": res.cpus_per_task,
            "slurm_array_parallelism": parallelism,
            "slurm_signal_delay_s": res.signal_delay_s,
            "slurm_job_name": spec.name,
        }
        if res.gpus_per_node:
            params["gpus_per_node"] = res.gpus_per_node
        if res.mem_gb is not None:
            params["mem_gb"] = res.mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            if getattr(res, key):
                params[f"slurm_{key}"] = getattr(res, key)
        if res.additional:
            params["slurm_additional_parameters"] = dict(res.additional)
        if res.setup:
            params["slurm_setup"] = list(res.setup)
        return Resources(parallelism, launch.threads or res.cpus_per_task, params)

    def prepare(self, res: Resources, n_trials: int, query_cluster: bool) -> None:
        if query_cluster:
            try:
                res.max_array_size = slurm_commands.max_array_size()
            except SchedulerError as exc:
                res.cluster_error = str(exc)
        res.arrays = split_arrays(n_trials, res.max_array_size, res.parallelism)

    def check_submittable(self, res: Resources) -> None:
        if res.cluster_error and res.max_array_size is None:  # no sweep dir for what cannot be submitted
            raise SchedulerError(res.cluster_error)

    def make_executor(self, spec: SweepSpec, res: Resources, ledger: Ledger):
        import submitit

        from sweeper.job import SUBMITIT_FOLDER

        executor = submitit.AutoExecutor(
            folder=ledger.dir / SUBMITIT_FOLDER,
            cluster="slurm",
            slurm_max_num_timeout=spec.launch.max_requeues,
        )
        executor.update_parameters(**res.executor_params)
        return executor

    def submit(
        self, spec: SweepSpec, res: Resources, ledger: Ledger, trials: list[Trial], job: Callable
    ) -> None:
        """One sbatch per array; each array is in the ledger as soon as sbatch accepted it."""
        self.check_submittable(res)
        executor = self.make_executor(spec, res, ledger)
        attempts = ledger.next_attempts(trials)
        array_ids: list[str] = []
        done = 0
        for part in split_arrays(len(trials), res.max_array_size, res.parallelism):
            chunk = trials[part.first : part.first + part.size]
            executor.update_parameters(
                slurm_array_parallelism=part.throttle,
                slurm_dependency=None if part.after is None else f"afterany:{array_ids[part.after]}",
            )
            try:
                submitted = executor.map_array(job, [t.to_json() for t in chunk])
            except Exception as exc:  # submitit wraps sbatch failures in various exception types
                raise SchedulerError(
                    f"submission failed after {done} of {len(trials)} trials were submitted "
                    f"(those are recorded; `sweeper resume` submits the rest): {_first_line(exc)}"
                ) from exc
            array_ids.append(str(submitted[0].job_id).split("_")[0])
            ledger.append(
                *[
                    submitted_event(t.trial_id, str(j.job_id), attempts[t.trial_id], self.name)
                    for t, j in zip(chunk, submitted, strict=True)
                ]
            )
            done += len(chunk)

    def schedule_end(self, spec: SweepSpec, res: Resources, ledger: Ledger) -> bool:
        """A job that waits (afterany) for every array of the sweep runs its end (slurm_helpers)."""
        slurm_helpers.schedule_end(spec, ledger)
        return True

    def should_ask(self, attempt: dict, latest: bool, now: float) -> bool:
        """Attempts not ended yet, and ended ones not accounted yet (recently ended: sacct forgets)."""
        if is_accounted(attempt):
            return False
        ended_at = attempt.get("ended_at")
        return ended_at is None or now - float(ended_at) < ACCOUNTING_WINDOW_S

    def job_states(self, job_ids: list[str]) -> SchedulerView:
        return slurm_commands.query(job_ids)

    def trial_state(self, scheduler_state: str) -> str:
        if scheduler_state in FINISHED or scheduler_state == GONE:
            return scheduler_state
        if scheduler_state in QUEUED_WORDS:
            return TrialState.PENDING
        if scheduler_state in RUNNING_WORDS:
            return TrialState.RUNNING
        if scheduler_state in HELD_WORDS:
            return TrialState.SUSPENDED
        return TrialState.UNKNOWN

    def cancel(self, job_ids: list[str]) -> None:
        slurm_commands.cancel(job_ids)

    def preview(self, spec: SweepSpec, res: Resources) -> list[str]:
        limit = res.max_array_size or f"unknown ({res.cluster_error})"
        lines = [f"MaxArraySize: {limit}; {len(res.arrays)} array(s):"]
        lines += [f"  {line}" for line in array_lines(res.arrays)]
        sbatch = sbatch_preview(res)
        if sbatch:
            lines += ["sbatch parameters (array 1):", *[f"  {line}" for line in sbatch]]
        return lines


def array_lines(arrays: list[ArrayPart]) -> list[str]:
    """One line per SLURM array: which trials, and the array flags sbatch gets."""
    lines = []
    for i, part in enumerate(arrays, 1):
        last = part.first + part.size - 1
        flags = f"--array=0-{part.size - 1}%{part.throttle}"
        if part.after is not None:
            flags += f" --dependency=afterany:<array {part.after + 1}>"
        lines.append(f"array {i}: trials {part.first}..{last} ({part.size}): sbatch {flags}")
    return lines


def sbatch_preview(res: Resources) -> list[str]:
    """The #SBATCH lines of the first array, as submitit writes them ([] where submitit cannot say, e.g.
    on a machine without srun)."""
    if not res.arrays:
        return []
    try:
        import submitit
        from submitit.slurm.slurm import _make_sbatch_string  # the function submitit itself uses

        executor = submitit.AutoExecutor(folder="<sweep dir>/submitit", cluster="slurm")
        executor.update_parameters(**res.executor_params)
        params = dict(executor._executor.parameters)
        params.update(array_parallelism=res.arrays[0].throttle, map_count=res.arrays[0].size)
        text = _make_sbatch_string(
            command="python -m submitit.core._submit ...", folder=executor.folder, **params
        )
    except Exception:  # a preview must never stop a dry run
        return []
    placeholder = str(executor.folder)  # submitit made the placeholder absolute: show it as written
    lines = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    return [line.replace(placeholder, "<sweep dir>/submitit") for line in lines]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def available() -> bool:
    return slurm_commands.available()
