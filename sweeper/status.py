"""Where every trial stands: the ledger's attempts merged with the scheduler's view and the run dirs'
heartbeats (status.json). One refresh asks the scheduler once for any number of sweeps and jobs: one
`sacct` call on SLURM (squeue where accounting is unavailable), a liveness check of local processes.

A refresh also writes into the ledger what only the scheduler knows about an attempt that has ended (an
`accounted` event: SLURM state, exit code, node, start, end), so the ledger keeps every attempt's story
after sacct has forgotten it, and an accounted attempt is never asked about again.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sweeper import backends
from sweeper.backends import GONE, JobRecord, SchedulerView
from sweeper.ledger import Ledger, TrialRecord, is_accounted
from sweeper.process import alive_here
from sweeper.run_files import STATUS_FILE
from sweeper.states import FAILURES, FINISHED, MORE_SPECIFIC, TrialState

S = TrialState
HEARTBEAT_STALE_S = 600  # a RUNNING run dir silent this long, with no scheduler to ask, is reported FAILED
ERROR_WORDS = re.compile(
    r"error|exception|killed|oom|out of memory|cancelled|time limit|preempt|segmentation", re.I
)


@dataclass
class TrialStatus:
    trial_id: str
    name: str
    params: dict[str, Any]
    seed: int
    state: str
    attempt: int = 0
    job_id: str | None = None
    run_dir: str | None = None
    epoch: int = 0
    epochs: int | None = None
    last: dict[str, float] = field(default_factory=dict)
    elapsed_s: float | None = None
    error: str | None = None
    node: str | None = None
    restarts: int = 0  # requeues of this attempt (timeout, preemption)
    exit_code: str | None = None
    note: str | None = None  # e.g. "requeued after preemption at epoch 7"
    best: float | None = None  # the run's best objective value so far (its heartbeat's `best`)
    problem: str | None = None  # why its heartbeat could not be read (one warning line)
    revision: int = 1  # the sweep's revision that added the trial (1: the launch; later: `launch --into`)
    mark: str | None = None  # the researcher's validity mark: valid, partial, invalid (sweeper/marks.py)
    mark_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass
class Refresh:
    """Statuses of several sweeps from one scheduler query."""

    statuses: dict[Path, list[TrialStatus]]
    source: str  # "sacct", "squeue", "local", "unreachable", "none"
    warning: str | None = None
    degraded: bool = False  # the scheduler could not be asked properly (controller down): `status` exits 1
    problems: list[str] = field(default_factory=list)  # one line per run file that could not be read


# -- asking the scheduler -----------------------------------------------------------------------------------
def _backend_name(ledger: Ledger, attempt: dict) -> str:
    return attempt.get("executor") or ledger.meta.get("executor") or backends.LocalBackend.name


def jobs_to_ask(ledger: Ledger, records: dict[str, TrialRecord], now: float) -> dict[str, list[str]]:
    """Job ids each backend should be asked about (each backend says which of its attempts need asking)."""
    wanted: dict[str, list[str]] = {}
    known: dict[str, backends.Backend] = {}  # one instance per backend, not one per attempt
    feeders = {str(r.queued["feeder"]) for r in records.values() if r.queued and r.queued.get("feeder")}
    if feeders:  # is the feeder job that holds them still there?
        wanted.setdefault(backends.SlurmBackend.name, []).extend(sorted(feeders))
    for record in records.values():
        for attempt in record.attempts:
            job_id, name = attempt.get("job_id"), _backend_name(ledger, attempt)
            if not job_id or name not in backends.BACKENDS:
                continue
            backend = known.setdefault(name, backends.get(name))
            if backend.should_ask(attempt, attempt is record.latest, now):
                wanted.setdefault(name, []).append(str(job_id))
    return wanted


def ask_schedulers(wanted: dict[str, list[str]]) -> SchedulerView:
    """One call per backend with jobs to ask about, the records in the vocabulary of trial states."""
    view = SchedulerView("none")
    for name, job_ids in wanted.items():
        backend = backends.get(name)
        answer = backend.job_states(job_ids)
        for job in answer.jobs.values():
            job.state = backend.trial_state(job.state)
        view.merge(answer)
    return view


def record_accounting(
    ledger: Ledger, view: SchedulerView, before: tuple[tuple, dict[str, TrialRecord]] | None = None
) -> dict[str, TrialRecord]:
    """Append an `accounted` event for every attempt sacct reports ended and the ledger has not accounted.
    Returns the ledger's records, re-read after the appends. Reading the ledger AFTER the query matters:
    sacct says a job ended only once its process has exited, so any end the job wrote itself is visible.
    `before`: (version, records) read before the query; reused where the ledger has not changed since
    (a 10k-trial ledger takes ~0.1 s to read)."""
    if before is not None and ledger.version() == before[0]:
        records = before[1]
    else:
        records = ledger.records()
    if not any(job.accounting for job in view.jobs.values()):
        return records
    events = []
    for record in records.values():
        for attempt in record.attempts:
            job = view.jobs.get(str(attempt.get("job_id")))
            if job is None or not job.accounting or is_accounted(attempt):
                continue
            events.append(
                {
                    "event": "accounted",
                    "trial_id": record.trial.trial_id,
                    "job_id": job.job_id,
                    "slurm_state": job.state,
                    "exit_code": job.exit_code,
                    "slurm_node": job.node,
                    "slurm_start": job.start,
                    "slurm_end": job.end,
                }
            )
    if events:
        try:
            ledger.append(*events)
        except OSError:  # someone else's sweep, read-only to us: show it, do not record
            return records
        records = ledger.records()
    return records


def refresh(ledgers: list[Ledger]) -> Refresh:
    """The status of every trial of every given sweep, asking the scheduler once."""
    now = time.time()
    wanted: dict[str, list[str]] = {}
    read = {}
    for ledger in ledgers:
        read[ledger.dir] = version, records = ledger.version(), ledger.records()  # version first: safe side
        for name, ids in jobs_to_ask(ledger, records, now).items():
            wanted.setdefault(name, []).extend(ids)
    view = ask_schedulers(wanted)
    statuses = {}
    for ledger in ledgers:
        records = record_accounting(ledger, view, read[ledger.dir])
        statuses[ledger.dir] = [trial_status(ledger, r, view.jobs) for r in records.values()]
    problems = [s.problem for found in statuses.values() for s in found if s.problem]
    return Refresh(statuses, view.source, view.warning, view.controller_down, problems)


def sweep_status(ledger: Ledger, scheduler: dict[str, Any] | None = None) -> list[TrialStatus]:
    """One TrialStatus per trial. `scheduler` (job id -> state or JobRecord) is used as given when the
    caller knows the states already (the local launcher); else the scheduler is asked (one call)."""
    if scheduler is None:
        return refresh([ledger]).statuses[ledger.dir]
    jobs = {j: r if isinstance(r, JobRecord) else JobRecord(j, r) for j, r in scheduler.items()}
    return [trial_status(ledger, record, jobs) for record in ledger.records().values()]


# -- one trial ------------------------------------------------------------------------------------------------
def trial_status(ledger: Ledger, record: TrialRecord, jobs: dict[str, JobRecord]) -> TrialStatus:
    trial = record.trial
    status = TrialStatus(trial.trial_id, trial.name, trial.params, trial.seed, S.NOT_SUBMITTED)
    status.revision = record.revision
    if record.mark is not None:
        status.mark, status.mark_reason = str(record.mark.validity), record.mark.reason or None
    if record.queued is not None and record.queued.get("feeder"):
        if _held_by_feeder(record.queued, jobs, status):
            status.attempt = len(record.attempts)
            return status
    elif record.queued is not None and launcher_alive(record.queued):
        status.state = S.QUEUED
        status.attempt = len(record.attempts)
        return status
    attempt = record.latest
    if attempt is None:
        return status
    status.attempt = int(attempt.get("attempt", len(record.attempts)))
    status.job_id = attempt.get("job_id")
    status.restarts = max(0, int(attempt.get("restarts", 0)))
    heartbeat: dict = {}
    if attempt.get("run_dir"):
        status.run_dir = attempt["run_dir"]
        heartbeat, status.problem = read_heartbeat(ledger.dir / attempt["run_dir"] / STATUS_FILE)
    status.epoch = int(heartbeat.get("epoch") or 0)
    # an unreadable heartbeat: the epoch reached is unknown (not "0 of N")
    status.epochs = None if status.problem else heartbeat.get("epochs") or trial.config.get("epochs")
    status.last = heartbeat.get("last") or {}
    status.best = (heartbeat.get("best") or {}).get("value")
    status.error = heartbeat.get("error") or attempt.get("error")
    status.node = attempt.get("node") or attempt.get("slurm_node")
    status.exit_code = attempt.get("exit_code")

    job = jobs.get(str(status.job_id)) if status.job_id else None
    scheduler_state = job.state if job else (attempt.get("slurm_state") if is_accounted(attempt) else None)
    if job and job.exit_code:
        status.exit_code = job.exit_code
    status.node = status.node or (job.node if job else None)
    status.state = _state(attempt, heartbeat, scheduler_state, status)
    status.elapsed_s = _elapsed(heartbeat, attempt, job, status.state)
    if status.state in FAILURES and not status.error and status.job_id:
        status.error = job_log_error(ledger.dir, str(status.job_id))
    return status


def read_heartbeat(path: Path) -> tuple[dict, str | None]:
    """A run dir's status.json, and a problem line where it exists but cannot be read (a missing one is
    no problem: the job has not started yet)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"{path}: unreadable ({exc.strerror or exc})"
    except ValueError as exc:
        return {}, f"{path}: not JSON ({str(exc).splitlines()[0][:120]}); its epoch and metrics are unknown"
    if not isinstance(data, dict):
        return {}, f"{path}: not a JSON object; its epoch and metrics are unknown"
    return data, None


def _held_by_feeder(queued: dict, jobs: dict[str, JobRecord], status: TrialStatus) -> bool:
    """A trial waiting for a SLURM feeder job (feeding.py): QUEUED while the feeder is there (or not asked
    about); once it has ended without submitting the trial, the trial says so and is NOT_SUBMITTED."""
    feeder = str(queued["feeder"])
    job = jobs.get(feeder)
    if job is None or not (job.terminal or job.state == GONE):
        status.state = S.QUEUED
        status.note = f"waits for feeding (feeder job {feeder})"
        return True
    status.note = (
        f"its feeder job {feeder} ended ({job.state}) without submitting it; `sweeper resume` submits it"
    )
    return False


def launcher_alive(queued: dict) -> bool:
    """The local launcher that queued a trial still runs (its pid alive; on another host: assume it runs)."""
    return alive_here(queued.get("pid", 0), queued.get("host")) is not False


def _state(attempt: dict, heartbeat: dict, scheduler: str | None, status: TrialStatus) -> str:
    """The trial's state from the ledger's end (if any), the run dir's heartbeat and the scheduler's word
    (already in the vocabulary of trial states, or GONE), in that order of trust."""
    ended = attempt.get("state") if "ended_at" in attempt else None
    beat = heartbeat.get("state")
    well = (S.COMPLETED, S.PRUNED)
    if ended == S.CANCELLED and (beat in well or scheduler == S.COMPLETED):
        return beat if beat in well else S.COMPLETED  # the cancel came after the end
    if ended == S.FAILED and scheduler in MORE_SPECIFIC:
        return scheduler  # e.g. a MemoryError the job reported, which SLURM knows as OUT_OF_MEMORY
    if ended:
        return ended
    if beat in well:  # the job wrote its heartbeat but died before its ledger line
        return beat
    # A packed trial is not its task: a task that COMPLETED without ever starting this trial did not run it.
    packed_never_started = "pack_index" in attempt and not beat and "first_started_at" not in attempt
    if scheduler == S.COMPLETED and packed_never_started:
        status.error = status.error or "its pack's task ended without running it"
        return S.FAILED
    if scheduler in FINISHED:
        return scheduler
    if beat in (S.FAILED, S.TIMEOUT):
        return beat
    if scheduler == GONE:  # the scheduler has no record of the job any more, and none of how it ended
        status.error = status.error or (
            "the job died without reporting (killed, out of memory or node failure?)"
            if beat in (S.RUNNING, S.REQUEUED)
            else "the job ended without starting the trial (cancelled while pending? see its submitit log)"
        )
        return S.FAILED
    if beat == S.REQUEUED or (scheduler == S.PENDING and status.restarts):
        reason = attempt.get("reason") or "a requeue"
        status.note = f"requeued after {reason}" + (f" at epoch {status.epoch}" if status.epoch else "")
    if scheduler is None:  # no scheduler answer: sacct lag after a submission, or an in-process job
        if beat == S.RUNNING:
            if time.time() - float(heartbeat.get("updated_at", 0)) > HEARTBEAT_STALE_S:
                status.error = status.error or "no heartbeat for 10 minutes and no scheduler to ask"
                return S.FAILED
            return S.RUNNING
        return S.PENDING
    return scheduler  # PENDING, RUNNING, SUSPENDED, UNKNOWN


def _iso(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def _elapsed(heartbeat: dict, attempt: dict, job: JobRecord | None, state: str) -> float | None:
    if heartbeat.get("started_at"):
        end = time.time() if state == S.RUNNING else float(heartbeat.get("updated_at", time.time()))
        return max(0.0, end - float(heartbeat["started_at"]))
    start = _iso(job.start if job else attempt.get("slurm_start"))
    if start is None:
        return None
    end = _iso(job.end if job else attempt.get("slurm_end")) or time.time()
    return max(0.0, end - start)


def job_log_error(sweep_dir: Path, job_id: str, tail_bytes: int = 16384) -> str | None:
    """The last error-looking line of a job's stderr (submitit log), e.g. slurmstepd's TIME LIMIT line."""
    path = sweep_dir / "submitit" / f"{job_id}_0_log.err"
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - tail_bytes))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if ERROR_WORDS.search(line):
            return line
    return lines[-1] if lines else None


# -- summaries --------------------------------------------------------------------------------------------
def count_states(statuses: list[TrialStatus]) -> Counter:
    return Counter(s.state for s in statuses)
