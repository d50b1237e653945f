"""The local backend: this machine's processes, at most `parallelism` at once. The launcher is the
scheduler: it holds the queue (recorded in the ledger as `queued` events, so `status` shows it), starts
a job per free slot (with its own GPU of `launch.gpus`, as CUDA_VISIBLE_DEVICES), notices jobs that die
without reporting, and cancels with SIGINT."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from sweeper import zygote
from sweeper.backends.base import GONE, Backend, JobRecord, OnRunning, Resources, SchedulerView
from sweeper.errors import traceback_error_line
from sweeper.ledger import ended_event, submitted_event
from sweeper.process import pid_alive
from sweeper.states import TrialState

if TYPE_CHECKING:
    import submitit

    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.trial import Trial


class LocalBackend(Backend):
    name = "local"
    hands_out_gpus = True
    poll_s = 0.5

    def __init__(self) -> None:
        self._queue: list[Trial] = []
        self._job: Callable | None = None

    def resources(self, spec: SweepSpec, asked: int | None, n_trials: int) -> Resources:
        cores = os.cpu_count() or 1
        parallelism = asked or cores
        if spec.launch.gpus:  # never more trials at once than GPU slots
            slots = len(spec.launch.gpus) * spec.launch.trials_per_gpu
            parallelism = min(asked or slots, slots)
        threads = spec.launch.threads or max(1, cores // min(parallelism, max(n_trials, 1)))
        params = {"timeout_min": spec.launch.time_min, "gpus_per_node": spec.launch.slurm.gpus_per_node}
        return Resources(parallelism, threads, params)

    def submit(
        self, spec: SweepSpec, res: Resources, ledger: Ledger, trials: list[Trial], job: Callable
    ) -> None:
        """Take the trials into this launcher's queue; `drive` starts them."""
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        ledger.append(*[{"event": "queued", "trial_id": t.trial_id, **me} for t in trials])
        self._queue, self._job = list(trials), job

    def make_executor(self, spec: SweepSpec, res: Resources, ledger: Ledger) -> submitit.Executor:
        """submitit's local executor, with each job run under sweeper.job_parent (which records the job's
        own exit status: submitit's controller forgets it)."""
        import submitit

        from sweeper.job import SUBMITIT_FOLDER

        python = f"{shlex.quote(sys.executable)} -m sweeper.job_parent {shlex.quote(sys.executable)}"
        executor = submitit.AutoExecutor(
            folder=ledger.dir / SUBMITIT_FOLDER, cluster=self.name, local_python=python
        )
        executor.update_parameters(**res.executor_params)
        return executor

    def drive(self, spec: SweepSpec, res: Resources, ledger: Ledger, on_running: OnRunning | None) -> None:
        from sweeper.job import SUBMITIT_FOLDER

        executor = self.make_executor(spec, res, ledger)
        queue, running = self._queue, {}
        # forks each job with its imports done (sweeper/zygote.py); started now, it imports while the
        # first jobs' controllers start
        warm = zygote.start(ledger.dir / SUBMITIT_FOLDER / "zygote.log") if queue else None
        pool = GpuPool(spec.launch.gpus, spec.launch.trials_per_gpu) if spec.launch.gpus else None
        gpus: dict[str, int] = {}  # job id -> the GPU it was given
        try:
            while queue or running:
                while queue and len(running) < res.parallelism:
                    trial = queue.pop(0)
                    gpu = pool.take() if pool else None
                    if gpu is not None:  # submitit sets CUDA_VISIBLE_DEVICES to exactly this one
                        # (AutoExecutor does not pass visible_gpus on: its local executor takes it)
                        executor._executor.update_parameters(gpus_per_node=1, visible_gpus=[gpu])
                    with ledger.lock():
                        attempt = ledger.next_attempts([trial])[trial.trial_id]
                        with _sigint_for_children():
                            job = executor.submit(self._job, trial.to_json())
                        ledger.append(
                            submitted_event(trial.trial_id, str(job.job_id), attempt, self.name)
                            | ({"gpu": gpu} if gpu is not None else {})
                        )
                    running[str(job.job_id)] = (trial, job)
                    if gpu is not None:
                        gpus[str(job.job_id)] = gpu
                for job_id, (trial, job) in list(running.items()):
                    if job.done():
                        del running[job_id]
                        if job_id in gpus:
                            pool.give(gpus.pop(job_id))
                        _record_unreported_end(ledger, trial, job)
                if on_running:
                    on_running(set(running))
                if queue or running:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            for _trial, job in running.values():
                job.cancel()
            deadline = time.time() + 10
            while any(not job.done() for _, job in running.values()) and time.time() < deadline:
                time.sleep(0.1)
            ledger.append(
                *[
                    ended_event(
                        t.trial_id, job_id, TrialState.CANCELLED, "cancelled by Ctrl-C in the launcher"
                    )
                    for job_id, (t, _job) in running.items()
                ]
            )
            raise
        finally:  # trials never started go back to NOT_SUBMITTED (for `sweeper resume`)
            ledger.append(*[{"event": "dequeued", "trial_id": t.trial_id} for t in queue])
            if warm is not None:
                warm.stop()
                os.environ.pop(zygote.ENV_VAR, None)

    def should_ask(self, attempt: dict, latest: bool, now: float) -> bool:
        return latest and attempt.get("ended_at") is None

    def job_states(self, job_ids: list[str]) -> SchedulerView:
        """A local job is a process (job id = submitit's controller pid): alive means RUNNING."""
        states = {j: TrialState.RUNNING if pid_alive(j) else GONE for j in job_ids}
        return SchedulerView("local", {j: JobRecord(j, s, source="local") for j, s in states.items()})

    def cancel(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            try:
                os.kill(int(job_id), signal.SIGINT)  # the local controller stops its task on SIGINT
            except (ValueError, ProcessLookupError):
                pass


@contextlib.contextmanager
def _sigint_for_children() -> Iterator[None]:
    """Local jobs are cancelled with SIGINT (submitit's controller stops its task on it), and an ignored
    signal stays ignored across exec: a launcher started in the background by a non-interactive shell
    (`nohup sweeper launch ... &`, a script, a CI step) has SIGINT ignored, so its controllers would
    ignore `sweeper cancel`. They are started with Python's default handler instead."""
    if (
        signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class GpuPool:
    """The GPUs of `launch.gpus`, handed to running trials: the least busy first, each to at most
    `per_gpu` trials at once."""

    def __init__(self, gpus: list[int], per_gpu: int) -> None:
        self.busy = dict.fromkeys(gpus, 0)
        self.per_gpu = per_gpu

    def take(self) -> int | None:
        free = [gpu for gpu, n in self.busy.items() if n < self.per_gpu]
        if not free:
            return None
        gpu = min(free, key=lambda g: self.busy[g])
        self.busy[gpu] += 1
        return gpu

    def give(self, gpu: int) -> None:
        self.busy[gpu] -= 1


def _record_unreported_end(ledger: Ledger, trial: Trial, job: submitit.Job) -> None:
    """A local job that died without writing its end (kill -9, OOM killer, a crash before the trial started)
    is recorded as FAILED here: with the error from submitit's result file when there is one, else with
    how the job's own process ended (job_parent's record)."""
    from sweeper.job import SUBMITIT_FOLDER
    from sweeper.job_parent import describe_end

    record = ledger.records().get(trial.trial_id)
    attempt = record.latest if record else None
    if attempt and attempt.get("job_id") == str(job.job_id) and attempt.get("last_event") != "ended":
        end = describe_end(ledger.dir / SUBMITIT_FOLDER, str(job.job_id))
        error, code = end or ("the job ended without reporting an end, and how is unknown", None)
        error = submitit_error(job) or error
        ledger.append(ended_event(trial.trial_id, str(job.job_id), TrialState.FAILED, error, exit_code=code))


def submitit_error(job: submitit.Job) -> str | None:
    """The line naming the failure in the traceback submitit saved for a job that raised, if it did."""
    import submitit

    try:
        outcome, payload = submitit.core.utils.pickle_load(job.paths.result_pickle)[:2]
    except Exception:  # no result file (killed), or an unreadable one: nothing to report
        return None
    return traceback_error_line(payload) if outcome == "error" else None
