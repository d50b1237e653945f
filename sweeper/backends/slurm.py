"""The SLURM backend: job arrays (throttled with %N, split at the cluster's MaxArraySize, chained so the
sweep's parallelism holds), their sbatch preview, states from one sacct call, scancel, and the sweep's
helper jobs (slurm_helpers: the sweep-end job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeper.backends import slurm_commands, slurm_helpers, slurm_limits
from sweeper.backends.base import GONE, Backend, Resources, SchedulerView
from sweeper.errors import SchedulerError
from sweeper.ledger import is_accounted, submitted_event
from sweeper.states import FINISHED, TrialState

if TYPE_CHECKING:
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.trial import Trial

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


def submit_now(n_trials: int, limits: slurm_limits.SubmitLimits | None, end_job: bool) -> int:
    """How many of `n_trials` to submit now: all where they fit under the submit limits (with an end job
    still to submit), else what fits beside a feeder job (and that end job) that submits the rest later."""
    room = limits.room if limits is not None else None
    reserved = 1 if end_job else 0
    if room is None or n_trials + reserved <= room:
        return n_trials
    return max(0, room - 1 - reserved)


def task_parallelism(spec: SweepSpec, res: Resources) -> int:
    """Array tasks at once: `parallelism` counts trials, and a packed task runs `pack` of them."""
    return max(1, res.parallelism // spec.launch.pack)


def end_job_queued(ledger: Ledger) -> bool:
    """The sweep's latest end job has not run yet: it is in the queue, and counted there already."""
    ends = ledger.sweep_events(slurm_helpers.END_JOB_EVENT)
    ran = {str(e.get("job_id")) for e in ledger.sweep_events("end_ran")}
    return bool(ends) and str(ends[-1]["job_id"]) not in ran


class SlurmBackend(Backend):
    name = "slurm"
    waits = False  # arrays carry the throttle: `launch` returns once sbatch has answered
    packs = True

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
        threads = res.cpus_per_task
        if launch.pack > 1 and launch.pack_mode == "parallel":  # each trial of a pack: its share
            threads = max(1, res.cpus_per_task // launch.pack)
        return Resources(parallelism, launch.threads or threads, params)

    def prepare(self, spec: SweepSpec, res: Resources, n_trials: int, query_cluster: bool) -> None:
        if query_cluster:
            try:
                config = slurm_commands.cluster_config()  # once: MaxArraySize and MaxJobCount
                res.max_array_size = slurm_commands.max_array_size(config)
            except SchedulerError as exc:
                res.cluster_error = str(exc)
            if res.cluster_error is None:
                slurm = spec.launch.slurm
                res.limits = slurm_limits.read_limits(
                    slurm.account, slurm.qos, slurm.partition, slurm.max_submit_jobs, config
                )
        res.n_trials = n_trials
        tasks = -(-n_trials // spec.launch.pack)
        first = submit_now(tasks, res.limits, bool(spec.launch.on_end))
        res.arrays = split_arrays(first, res.max_array_size, task_parallelism(spec, res))

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
        """One sbatch per array; each array is in the ledger as soon as sbatch accepted it. An array task
        runs one trial, or `launch.pack` of them (sweeper/pack.py). The tasks past the user's submit
        limits wait in the ledger for a feeder job (slurm_helpers.submit_feeder)."""
        self.check_submittable(res)
        pack = spec.launch.pack
        groups = [trials[i : i + pack] for i in range(0, len(trials), pack)]
        end_job = bool(spec.launch.on_end) and not end_job_queued(ledger)
        now = submit_now(len(groups), res.limits, end_job)
        groups, held = groups[:now], [t for group in groups[now:] for t in group]
        if pack > 1:
            from sweeper.pack import PackJob

            job = PackJob.around(job, spec.launch.pack_mode, res.threads)
        array_ids = self._submit_arrays(spec, res, ledger, groups, job)
        if held:
            slurm_helpers.submit_feeder(spec, ledger, array_ids, held, bool(getattr(job, "fresh", False)))

    def _submit_arrays(
        self, spec: SweepSpec, res: Resources, ledger: Ledger, groups: list[list[Trial]], job: Callable
    ) -> list[str]:
        executor = self.make_executor(spec, res, ledger)
        attempts = ledger.next_attempts([t for group in groups for t in group])
        packed = spec.launch.pack > 1
        array_ids: list[str] = []
        done, total = 0, sum(len(group) for group in groups)
        for part in split_arrays(len(groups), res.max_array_size, task_parallelism(spec, res)):
            chunk = groups[part.first : part.first + part.size]
            executor.update_parameters(
                slurm_array_parallelism=part.throttle,
                slurm_dependency=None if part.after is None else f"afterany:{array_ids[part.after]}",
            )
            args = [[t.to_json() for t in group] if packed else group[0].to_json() for group in chunk]
            try:
                submitted = executor.map_array(job, args)
            except Exception as exc:  # submitit wraps sbatch failures in various exception types
                raise SchedulerError(
                    f"submission failed after {done} of {total} trials were submitted "
                    f"(those are recorded; `sweeper resume` submits the rest): {_first_line(exc)}"
                ) from exc
            array_ids.append(str(submitted[0].job_id).split("_")[0])
            ledger.append(
                *[
                    submitted_event(t.trial_id, str(j.job_id), attempts[t.trial_id], self.name)
                    | ({"pack_index": k} if packed else {})
                    for group, j in zip(chunk, submitted, strict=True)
                    for k, t in enumerate(group)
                ]
            )
            done += sum(len(group) for group in chunk)
        return array_ids

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
        if spec.launch.pack > 1:
            lines.append(
                f"packed: {spec.launch.pack} trials per array task ({spec.launch.pack_mode}), "
                f"{res.threads} thread(s) each; at most {task_parallelism(spec, res)} task(s) at once"
            )
        if res.limits is not None:
            lines += ["submit limits:", *[f"  {line}" for line in res.limits.lines()]]
            lines += feeding_lines(res.n_trials, res.limits, bool(spec.launch.on_end))
        sbatch = sbatch_preview(res)
        if sbatch:
            lines += ["sbatch parameters (array 1):", *[f"  {line}" for line in sbatch]]
        return lines


def feeding_lines(n_trials: int, limits: slurm_limits.SubmitLimits, end_job: bool) -> list[str]:
    """The feeding plan of a dry run: what is submitted now, and the parts a feeder job submits later."""
    now = submit_now(n_trials, limits, end_job)
    if now >= n_trials:
        return [f"all {n_trials} trial(s) fit under the submit limits: no feeder job"]
    # each later part: the limit less the running feeder, the next one and the end job
    part = max(1, min(lim.value for lim in limits.submit) - 2 - (1 if end_job else 0))
    parts = -(-(n_trials - now) // part)
    return [
        f"feeding: {now} trial(s) now, then a feeder job (1 CPU, afterany on them) submits the other "
        f"{n_trials - now} in about {parts} part(s) of up to {part}, each after the previous one has ended"
    ]


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
