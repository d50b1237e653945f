"""What runs on the node: pick the run dir, resume from its checkpoint, call the trial's work, record the end.

`JobBase` is what every job shares (the grid/configs `TrialJob` here, the Optuna worker in worker.py): a
submitit Checkpointable, so on timeout or preemption (SIGUSR2) submitit asks it for a resubmission and
requeues the job, which finds the same run dir (same job id) and resumes from last.pt; a per-trial lock;
the job log; and `ending`, the one ladder from how the work ended to a trial state and its error line. The
job side never imports the CLI, rich, the launcher or a backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from sweeper.errors import SweeperError, error_line
from sweeper.fsutil import atomic_write_json, read_json
from sweeper.ledger import STAMP_FORMAT, Ledger, ended_event
from sweeper.objective import Objective
from sweeper.provenance import slurm_environment
from sweeper.run import Run, Segment, TrialPruned
from sweeper.run_files import CONFIG_FILE, LAST_CHECKPOINT, STATUS_FILE
from sweeper.states import TrialState
from sweeper.trial import Trial

log = logging.getLogger("sweeper.job")
BUILTIN_ENTRYPOINT = "sweeper.train:train"
SUBMITIT_FOLDER = "submitit"  # inside the sweep dir


def current_job_id() -> str:
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # called outside submitit (e.g. a test calling the job directly)
        return f"pid{os.getpid()}"


def load_entrypoint(spec: str):
    module, function = spec.split(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise SweeperError(f"entrypoint {spec!r} cannot be loaded: {exc}") from exc


def resolve_run_dir(
    ledger: Ledger, trial_id: str, job_id: str, fresh: bool, pack_index: int | None = None
) -> tuple[Path, bool]:
    """(run dir, resumed?): the same dir after a requeue (same job id), a retry of a checkpointed run, or
    for a continued trial (`sweeper continue`: the run goes on there, whoever owns its checkpoint: a
    command trial's program keeps its own). A new dir is named after the job (and `_p<k>`, the trial's
    place in a packed job: sweeper/pack.py)."""
    record = ledger.records().get(trial_id)
    previous = [a for a in (record.attempts if record else []) if a.get("run_dir")]
    if previous:
        run_dir = ledger.dir / previous[-1]["run_dir"]
        same_job = previous[-1].get("job_id") == job_id
        goes_on = (run_dir / LAST_CHECKPOINT).exists() or ledger.segment_of(trial_id) is not None
        if same_job or (not fresh and goes_on):
            return run_dir, True
    safe_id = job_id.replace("/", "_") + (f"_p{pack_index}" if pack_index is not None else "")
    return ledger.dir / f"{time.strftime(STAMP_FORMAT)}_j{safe_id}", False


@dataclass
class Ending:
    """How a piece of work ended: a trial state and, for a bad end, its one error line."""

    state: TrialState = TrialState.COMPLETED
    error: str | None = None


class JobBase(submitit.helpers.Checkpointable):
    """What every job of a sweep shares. Picklable and small: submitit pickles it for every submission."""

    def __init__(
        self,
        sweep_dir: str,
        entrypoint: str | None = None,
        threads: int | None = None,
        fresh: bool = False,
        timeout_min: int | None = None,
    ):
        self.sweep_dir = str(sweep_dir)
        self.entrypoint = entrypoint or BUILTIN_ENTRYPOINT
        self.threads = threads
        self.fresh = fresh
        self.timeout_min = timeout_min  # the job's time limit, to tell a timeout from a preemption
        self.requeued = False  # set by checkpoint(): submitit requeues this job, so it records no end
        self._run_obj: Run | None = None  # the run in progress (its state becomes REQUEUED on a requeue)
        self._ledger_trial: str | None = None  # the ledger's trial this job is an attempt of

    @contextlib.contextmanager
    def ending(self, record: Callable[[Ending], None], contain_failures: bool = False) -> Iterator[Ending]:
        """Run the body and turn how it ended into an Ending, handed to `record` unless the job is being
        requeued. Pruning and running out of requeues end the work quietly; a failure is re-raised (so
        submitit and the scheduler see it) unless `contain_failures` (the Optuna worker goes on with its
        next trial); Ctrl-C and sys.exit always propagate."""
        end = Ending()
        try:
            yield end
            self._wait_for_checkpoint()  # the last epoch's, written in the background: its failure is the trial's
        except TrialPruned as exc:
            end.state = TrialState.PRUNED
            log.info("pruned: %s", exc)
        except submitit.core.utils.UncompletedJobError as exc:
            # submitit's signal handler gave up requeueing (timed out max_requeues times): checkpoint()
            # was called, but this is the end of the trial.
            self.requeued = False
            end.state, end.error = TrialState.TIMEOUT, str(exc)
        except SystemExit:
            if not self.requeued:  # submitit exits this way after requeueing: that is not a failure
                end.state, end.error = TrialState.FAILED, "the job called sys.exit"
            raise
        except KeyboardInterrupt:  # the local executor cancels with SIGINT
            end.state, end.error = TrialState.CANCELLED, "cancelled"
            raise
        except BaseException as exc:
            end.state, end.error = TrialState.FAILED, error_line(exc)
            log.error("%s failed:\n%s", self._ledger_trial, traceback.format_exc())
            if not (contain_failures and isinstance(exc, Exception)):
                raise
        finally:
            if not self.requeued:
                with contextlib.suppress(Exception):  # the body's own end is what is recorded
                    self._wait_for_checkpoint()
                record(end)

    def _wait_for_checkpoint(self) -> None:
        if self._run_obj is not None:
            self._run_obj.wait_for_checkpoint()

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on SIGUSR2 (timeout or preemption): the job will be requeued and resume from
        last.pt, written at the end of every epoch, in the same run dir."""
        self.requeued = True
        run = self._run_obj
        if run is not None:
            run.stop_work()  # a command trial's program gets the signal and its grace period first
            run.set_state(TrialState.REQUEUED)
        if self._ledger_trial is not None:
            Ledger(self.sweep_dir).append(
                {
                    "event": "requeued",
                    "trial_id": self._ledger_trial,
                    "job_id": current_job_id(),
                    "epoch": run.metrics.last_epoch if run is not None else None,
                    "reason": self._requeue_reason(),
                }
            )
        fresh_copy = type(self)(self.sweep_dir, self.entrypoint, self.threads, self.fresh, self.timeout_min)
        return submitit.helpers.DelayedSubmission(fresh_copy, *args, **kwargs)

    def _requeue_reason(self) -> str:
        """submitit's own rule: a signal after the guaranteed walltime is a timeout, earlier a preemption."""
        if not self.timeout_min:
            return "timeout or preemption"
        limit_s = self.timeout_min * 60
        ran_s = time.time() - getattr(self, "_started_at", time.time())
        return "timeout" if ran_s >= min(0.8 * limit_s, limit_s - 600) else "preemption"

    def _start(self, trial_id: str) -> tuple[Ledger, str, _TrialLock | None]:
        """The ledger, this job's id and the trial's lock (None, with a SKIPPED end, if another job has it)."""
        self._started_at = time.time()
        _quiet_bypass()
        self._ledger_trial = trial_id
        ledger, job_id = Ledger(self.sweep_dir), current_job_id()
        lock = _TrialLock(ledger.dir / ".locks" / f"{trial_id}.lock")
        if lock.acquire():
            if self.threads:
                limit_threads(self.threads)
            return ledger, job_id, lock
        ledger.append(ended_event(trial_id, job_id, TrialState.SKIPPED, "another job is running this trial"))
        return ledger, job_id, None

    @staticmethod
    def _link_submitit_logs(run_dir: Path, folder: Path, job_id: str) -> None:
        """Link submitit's stdout/stderr of this job into the run dir, so the run dir holds the whole job log."""
        paths = submitit.core.utils.JobPaths(folder, job_id=job_id, task_id=0)
        for name, target in (("stdout.log", paths.stdout), ("stderr.log", paths.stderr)):
            link = run_dir / name
            if not link.is_symlink():
                try:
                    link.symlink_to(os.path.relpath(target, run_dir))
                except OSError:
                    pass


def limit_threads(threads: int) -> None:
    """At most `threads` CPU threads for the work: torch reads OMP_NUM_THREADS when it is imported (by the
    trainer, later), a command trial's program inherits it, and torch already imported is told directly.
    Not importing torch here saves a command trial 3.4 s of start-up."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _quiet_bypass() -> None:
    """submitit ignores SIGTERM and SIGCONT with a logging call each. SLURM sends SIGCONT (or SIGTERM, on
    preemption) together with SIGUSR2, and when submitit's USR2 handler then raises inside that logging
    call (the job is out of requeues), logging swallows the exception ("--- Logging error ---"): the job
    trains on until the hard kill and never records its TIMEOUT (seen on the test cluster under load). So
    they are ignored here with one async-signal-safe write instead of a log record."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        if getattr(signal.getsignal(sig), "__name__", "") == "bypass":
            signal.signal(sig, _note_signal)


def _note_signal(signum: int, frame: Any) -> None:
    os.write(2, f"sweeper: {signal.Signals(signum).name} ignored (submitit requeues on SIGUSR2)\n".encode())


class TrialJob(JobBase):
    """Runs one trial of a grid/configs sweep."""

    pack_index: int | None = None  # its place in a packed job (sweeper/pack.py), which names its run dir

    def __call__(self, trial_json: dict[str, Any]) -> dict[str, Any]:
        trial = Trial.from_json(trial_json)
        ledger, job_id, lock = self._start(trial.trial_id)
        if lock is None:
            return {"state": TrialState.SKIPPED}
        try:
            return self._run(ledger, trial, job_id)
        finally:
            lock.release()

    def _run(self, ledger: Ledger, trial: Trial, job_id: str) -> dict[str, Any]:
        run_dir, resumed = resolve_run_dir(ledger, trial.trial_id, job_id, self.fresh, self.pack_index)
        previous = read_json(run_dir / STATUS_FILE, {}) or {}
        segment = Segment.of(ledger.segment_of(trial.trial_id))
        # COMPLETED is the end, unless `sweeper continue` has asked for a later segment since
        if (
            previous.get("state") == TrialState.COMPLETED
            and int(previous.get("segment", 1)) >= segment.number
        ):
            ledger.append(ended_event(trial.trial_id, job_id, TrialState.SKIPPED, "already completed"))
            return {"state": TrialState.SKIPPED, "run_dir": str(run_dir)}
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = _log_to(run_dir / "job.log")
        self._link_submitit_logs(run_dir, ledger.dir / SUBMITIT_FOLDER, job_id)
        objective = Objective.of(ledger.meta.get("objective"))
        atomic_write_json(
            run_dir / CONFIG_FILE,
            {
                **trial.to_json(),
                "sweep": ledger.name,
                "sweep_dir": str(ledger.dir),
                "entrypoint": self.entrypoint,
                "job_id": job_id,
                "objective": objective.to_json(),
                "slurm_env": slurm_environment(),
            },
        )
        ledger.append(
            {
                "event": "started",
                "trial_id": trial.trial_id,
                "job_id": job_id,
                "run_dir": run_dir.name,
                "node": socket.gethostname(),
                "resumed": resumed,
                "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
            }
        )
        log.info(
            "trial %s (job %s) in %s%s", trial.trial_id, job_id, run_dir, " (resuming)" if resumed else ""
        )
        run = Run(
            run_dir,
            trial.config,
            trial_id=trial.trial_id,
            seed=trial.seed,
            job_id=job_id,
            objective=objective,
            params=trial.params,
            segment=segment,
        )
        self._run_obj = run
        try:
            with self.ending(lambda end: record_end(run, ledger, trial.trial_id, job_id, end)) as end:
                load_entrypoint(self.entrypoint)(trial.config, run)
        finally:
            run.close()
            logging.getLogger().removeHandler(handler)
            handler.close()
        return {"state": end.state, "run_dir": str(run_dir), "epochs": run.metrics.last_epoch}


def record_end(run: Run, ledger: Ledger, trial_id: str, job_id: str, end: Ending) -> None:
    """Write the trial's end to its status.json and to the ledger. Either may be unwritable (a full disk, a
    read-only run dir): each is tried on its own, so the end reaches whichever can still take it."""
    try:
        run.set_state(end.state, end.error)
    except OSError as exc:
        log.error("cannot write %s/%s: %s", run.run_dir, STATUS_FILE, exc)
    try:
        event = ended_event(
            trial_id, job_id, end.state, end.error, epoch=run.metrics.last_epoch, node=socket.gethostname()
        )
        ledger.append(event)
    except OSError as exc:
        log.error("cannot record the end of trial %s in the ledger: %s", trial_id, exc)
    index_run(run.run_dir)


def index_run(run_dir: Path) -> None:
    """Put the ended run's row into its sweep's runs.parquet; a failure costs a log line (analyze rebuilds).
    Imported here: pyarrow is the job's, not the launcher's (which imports this module to pickle the job)."""
    from sweeper import runs_index
    from sweeper.analysis.runs import ended_record

    try:
        extra = {runs_index.RECORD: ended_record(run_dir)}
    except Exception:  # the record only spares a first analysis its reading: the row goes in without it
        log.exception("cannot summarize %s for %s", run_dir.name, runs_index.INDEX_FILE)
        extra = {}
    try:
        runs_index.record(run_dir, extra)
    except OSError as exc:
        log.error("cannot update %s in %s: %s", run_dir.name, runs_index.INDEX_FILE, exc)


class _TrialLock:
    """An fcntl lock held for the life of the job: the kernel drops it when the process dies, even by kill -9."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fd = path, None

    def acquire(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            os.close(self.fd)
            self.fd = None
            return False

    def release(self) -> None:
        if self.fd is not None:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler
