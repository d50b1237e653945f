"""Acting on a launched sweep: cancel its unfinished trials, choose what a retry or a resume resubmits.
A trial that finished well (COMPLETED, PRUNED, SKIPPED) is never chosen again, nor one that is queued or
running."""

from __future__ import annotations

from sweeper import backends
from sweeper.errors import SweeperError
from sweeper.launch import Plan, make_plan
from sweeper.ledger import Ledger, ended_event
from sweeper.states import SUCCEEDED, TrialState, is_active
from sweeper.status import sweep_status
from sweeper.trial import Trial


def cancel(ledger: Ledger, trial_ids: list[str] | None = None) -> list[str]:
    """Cancel the queued or running trials (all, or those named); returns the trial ids cancelled. Under
    the submit lock, so that a feeder job (feeding.py) never submits a trial taken back here."""
    with ledger.lock():
        statuses = sweep_status(ledger)
        known = {s.trial_id for s in statuses}
        unknown = sorted(set(trial_ids or []) - known)
        if unknown:
            raise SweeperError(f"{ledger.name}: no trial {', '.join(unknown)}")
        chosen = [
            s for s in statuses if is_active(s.state) and (trial_ids is None or s.trial_id in trial_ids)
        ]
        records = ledger.records()
        by_backend: dict[str, list[str]] = {}
        for s in chosen:
            if s.job_id and s.state != TrialState.QUEUED:
                name = (records[s.trial_id].latest or {}).get("executor") or ledger.meta.get("executor")
                by_backend.setdefault(name, []).append(str(s.job_id))
        by_backend.setdefault(backends.SlurmBackend.name, []).extend(idle_feeders(records, chosen))
        for name, job_ids in by_backend.items():  # one call per backend (one scancel for all SLURM jobs)
            if job_ids:
                backends.get(name).cancel(job_ids)
        fed = [s.trial_id for s in chosen if (records[s.trial_id].queued or {}).get("feeder")]
        ledger.append(
            *[{"event": "dequeued", "trial_id": trial_id} for trial_id in fed],
            *[
                ended_event(s.trial_id, s.job_id, TrialState.CANCELLED, "cancelled by `sweeper cancel`")
                for s in chosen
            ],
        )
    return [s.trial_id for s in chosen]


def idle_feeders(records: dict, chosen: list) -> list[str]:
    """The feeder jobs left with nothing to feed once the chosen trials are taken back."""
    taken = {s.trial_id for s in chosen}
    holding: dict[str, set[str]] = {}
    for trial_id, record in records.items():
        feeder = (record.queued or {}).get("feeder")
        if feeder:
            holding.setdefault(str(feeder), set()).add(trial_id)
    return sorted(f for f, held in holding.items() if held <= taken)


def plan_rerun(ledger: Ledger, states: set[str], executor: str | None) -> Plan:
    """`sweeper retry`: the trials whose current state is in `states`, as a new attempt each."""
    statuses = {s.trial_id: s.state for s in sweep_status(ledger)}
    chosen = [
        t
        for t in ledger.trials()
        if statuses[t.trial_id] in states
        and statuses[t.trial_id] not in SUCCEEDED
        and not is_active(statuses[t.trial_id])
    ]
    return _plan(ledger, chosen, executor)


def plan_resume(ledger: Ledger, executor: str | None) -> Plan:
    """`sweeper resume`: the trials that never ran: never submitted, or whose every job ended before
    starting the trial (cancelled while pending, lost with a failed submission)."""
    statuses = {s.trial_id: s for s in sweep_status(ledger)}
    records = ledger.records()
    chosen = []
    for trial in ledger.trials():
        status, record = statuses[trial.trial_id], records[trial.trial_id]
        never_started = not any(a.get("run_dir") for a in record.attempts)
        if status.state == TrialState.NOT_SUBMITTED or (
            status.finished and never_started and status.state not in SUCCEEDED
        ):
            chosen.append(trial)
    return _plan(ledger, chosen, executor)


def _plan(ledger: Ledger, trials: list[Trial], executor: str | None) -> Plan:
    return make_plan(ledger.launched_spec(), trials, executor or ledger.meta.get("executor"))
