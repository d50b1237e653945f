"""Packed jobs (`launch.pack: N`): one SLURM task runs N trials, each still a whole trial (its own run dir
`..._j<job>_p<k>`, lock, heartbeat, ledger events, requeue and retry). `sequential` runs them one after the
other in the job's process (a pruned or failed trial's slot goes to the next one); `parallel` runs each in a
child process (`python -m sweeper.pack CHILD`) with its share of the CPUs and, where the task has GPUs, one
of them (CUDA_VISIBLE_DEVICES), so a trial killed by the OOM killer or kill -9 fails alone.

On SIGUSR2 (timeout or preemption) submitit calls the pack's `checkpoint`: the running trials are marked
REQUEUED (the children on their own SIGUSR2), and the requeued task skips the trials that ended in it and
resumes the others from their last.pt. Node side: never imports the CLI, rich, the launcher or a backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import submitit

from sweeper.job import JobBase, TrialJob, _quiet_bypass, current_job_id
from sweeper.ledger import Ledger, ended_event
from sweeper.process import signal_name
from sweeper.states import TrialState

REQUEUE_EXIT = 75  # a child stopped for a requeue (its trial is REQUEUED, not ended)
CHILD_STOP_S = 60.0  # how long a requeue waits for the children to checkpoint and exit


def ended_in(ledger: Ledger, trial_id: str, job_id: str) -> bool:
    """The trial's latest attempt is this job's and has ended (before a requeue of the pack)."""
    record = ledger.records().get(trial_id)
    latest = record.latest if record else None
    return bool(latest and latest.get("job_id") == job_id and "ended_at" in latest)


def signal_end(code: int) -> str | None:
    """How a child's exit code reads when a signal ended it (None: it exited by itself)."""
    if code >= 0:
        return None
    return f"the trial's process was killed by signal {-code} ({signal_name(-code)})"


class PackJob(JobBase):
    """Runs the trials of one pack (a list of trial JSONs), in sequence or each in a child process."""

    def __init__(
        self,
        sweep_dir: str,
        entrypoint: str | None = None,
        threads: int | None = None,
        fresh: bool = False,
        timeout_min: int | None = None,
        mode: str = "parallel",
    ):
        super().__init__(sweep_dir, entrypoint, threads, fresh, timeout_min)
        self.mode = mode
        self._inner: TrialJob | None = None  # sequential: the trial running now
        self._children: dict[int, subprocess.Popen] = {}
        self._codes: dict[int, int] = {}  # index -> exit code of the children that have ended

    @classmethod
    def around(cls, job: TrialJob, mode: str, threads: int | None) -> PackJob:
        return cls(job.sweep_dir, job.entrypoint, threads, job.fresh, job.timeout_min, mode)

    def __call__(self, trial_jsons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self._started_at = time.time()
        _quiet_bypass()
        ledger, job_id = Ledger(self.sweep_dir), current_job_id()
        todo = [(k, t) for k, t in enumerate(trial_jsons) if not ended_in(ledger, t["trial_id"], job_id)]
        if self.mode == "sequential":
            return self._sequential(ledger, job_id, todo)
        return self._parallel(ledger, job_id, todo)

    def _trial_job(self, index: int) -> TrialJob:
        inner = TrialJob(self.sweep_dir, self.entrypoint, self.threads, self.fresh, self.timeout_min)
        inner.pack_index = index
        return inner

    def _sequential(self, ledger: Ledger, job_id: str, todo: list) -> list[dict[str, Any]]:
        results = []
        for position, (index, trial_json) in enumerate(todo):
            self._inner = self._trial_job(index)
            try:
                result = self._inner(trial_json)
            except Exception as exc:  # its end is recorded; the pack goes on with the next trial
                result = {"state": TrialState.FAILED, "error": str(exc)}
            results.append(result)
            if result.get("state") == TrialState.TIMEOUT:  # out of requeues: the task is about to be killed
                rest = [t["trial_id"] for _, t in todo[position + 1 :]]
                message = "the pack ran out of time (and of requeues) before this trial"
                ledger.append(*[ended_event(t, job_id, TrialState.TIMEOUT, message) for t in rest])
                break
        return results

    def _parallel(self, ledger: Ledger, job_id: str, todo: list) -> list[dict[str, Any]]:
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d]
        for index, trial_json in todo:
            env = dict(os.environ)
            if visible:  # trials share the task's GPUs evenly: trial k on GPU k mod G
                env["CUDA_VISIBLE_DEVICES"] = visible[index % len(visible)]
            child = {
                "sweep_dir": self.sweep_dir,
                "entrypoint": self.entrypoint,
                "threads": self.threads,
                "fresh": self.fresh,
                "timeout_min": self.timeout_min,
                "index": index,
                "trial": trial_json,
            }
            command = [sys.executable, "-m", "sweeper.pack", json.dumps(child)]
            self._children[index] = subprocess.Popen(command, env=env)
        trial_ids = dict(todo)
        try:
            self._reap_until(None)
        except submitit.core.utils.UncompletedJobError as exc:  # out of requeues: the children stopped
            self._record(ledger, job_id, trial_ids, self._codes, timeout=str(exc))
            raise
        self._record(ledger, job_id, trial_ids, self._codes)
        return [{"trial_id": trial_ids[i]["trial_id"], "exit_code": code} for i, code in self._codes.items()]

    def _reap(self) -> None:
        """Collect the exit codes of the children that have ended. os.waitpid, not Popen.wait: this also
        runs inside the SIGUSR2 handler, which may interrupt the main thread inside Popen's own lock."""
        for index, child in self._children.items():
            if index in self._codes:
                continue
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by the other caller already, which records its code
                continue
            if pid:
                child.returncode = self._codes[index] = os.waitstatus_to_exitcode(status)

    def _reap_until(self, deadline: float | None) -> None:
        while len(self._codes) < len(self._children) and (deadline is None or time.time() < deadline):
            self._reap()
            time.sleep(0.1)

    def _record(
        self, ledger: Ledger, job_id: str, trials: dict, codes: dict[int, int], timeout: str | None = None
    ) -> None:
        """Ends the children could not write themselves: killed by a signal, or stopped for a requeue
        that will not come (out of requeues)."""
        events = []
        for index, code in codes.items():
            trial_id = trials[index]["trial_id"]
            if ended_in(ledger, trial_id, job_id):
                continue
            if timeout and code == REQUEUE_EXIT:
                events.append(ended_event(trial_id, job_id, TrialState.TIMEOUT, timeout))
            elif signal_end(code):
                events.append(
                    ended_event(trial_id, job_id, TrialState.FAILED, signal_end(code), exit_code=f"0:{-code}")
                )
        if events:
            ledger.append(*events)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """The task will be requeued: the running trials are marked REQUEUED and stop (children on
        SIGUSR2, then their exit is awaited); the requeued pack resumes them."""
        self.requeued = True
        if self._inner is not None:
            self._inner.checkpoint()
        for index, child in self._children.items():
            if index not in self._codes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGUSR2)  # SLURM signals them too: they stop once
        self._reap_until(time.time() + CHILD_STOP_S)
        copy = type(self)(
            self.sweep_dir, self.entrypoint, self.threads, self.fresh, self.timeout_min, self.mode
        )
        return submitit.helpers.DelayedSubmission(copy, *args, **kwargs)


def child_main(argument: str) -> int:
    """One trial of a parallel pack, in its own process: `python -m sweeper.pack CHILD_JSON`."""
    child = json.loads(argument)
    job = TrialJob(
        child["sweep_dir"], child["entrypoint"], child["threads"], child["fresh"], child["timeout_min"]
    )
    job.pack_index = child["index"]

    def on_requeue(signum: int, frame: Any) -> None:
        if job.requeued:
            return
        job.checkpoint()  # REQUEUED in status.json and the ledger, the command trial's program stopped
        raise SystemExit(REQUEUE_EXIT)

    signal.signal(signal.SIGUSR2, on_requeue)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as submitit does: preemption sends SIGTERM with USR2
    try:
        job(child["trial"])
    except SystemExit:
        raise
    except Exception:  # the end (FAILED, with its error line) is recorded; the traceback is in the log
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
