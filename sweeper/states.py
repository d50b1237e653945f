"""The one vocabulary of trial states, and the sets every module builds its decisions from.

A state is a `TrialState` (a `str`, so it is written to JSON and compared with what was read back as is).
"finished" means one thing everywhere: the trial will not run again unless someone resubmits it.
"""

from __future__ import annotations

from enum import StrEnum


class TrialState(StrEnum):
    NOT_SUBMITTED = "NOT_SUBMITTED"  # in the sweep, never submitted (or taken back from a launcher's queue)
    QUEUED = "QUEUED"  # waiting in a live local launcher's queue for a free slot
    PENDING = "PENDING"  # submitted, waiting in the scheduler's queue (or being requeued)
    RUNNING = "RUNNING"
    REQUEUED = "REQUEUED"  # written by the job into status.json when it is requeued (timeout, preemption)
    SUSPENDED = "SUSPENDED"  # the scheduler holds it (SUSPENDED, STOPPED)
    COMPLETED = "COMPLETED"
    PRUNED = "PRUNED"  # stopped by the pruner: a normal end
    SKIPPED = "SKIPPED"  # a second job for a trial that another job runs, or that is already completed
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"  # out of time after its last requeue
    CANCELLED = "CANCELLED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"  # preempted and not requeued
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    REVOKED = "REVOKED"
    UNKNOWN = "UNKNOWN"


S = TrialState
# Ended well: never chosen again by retry or resume.
SUCCEEDED = frozenset({S.COMPLETED, S.PRUNED, S.SKIPPED})
# Ended badly: the CLI reports them with their error and exits 1.
FAILURES = frozenset(
    {S.FAILED, S.TIMEOUT, S.CANCELLED, S.OUT_OF_MEMORY, S.NODE_FAIL, S.PREEMPTED}
    | {S.BOOT_FAIL, S.DEADLINE, S.REVOKED}
)
FINISHED = SUCCEEDED | FAILURES
# Ends the scheduler knows more precisely than the job that reported FAILED (a MemoryError is OUT_OF_MEMORY).
MORE_SPECIFIC = frozenset({S.OUT_OF_MEMORY, S.NODE_FAIL, S.PREEMPTED, S.TIMEOUT})
# What `sweeper retry` resubmits unless told otherwise.
RETRY_BY_DEFAULT = (S.FAILED, S.TIMEOUT, S.CANCELLED, S.OUT_OF_MEMORY, S.NODE_FAIL, S.PREEMPTED)
# A run dir whose status.json says one of these holds no final result (analysis leaves it out of effects).
NOT_A_RESULT = frozenset({S.RUNNING, S.REQUEUED, S.FAILED, S.PRUNED, S.TIMEOUT, S.CANCELLED})


def is_finished(state: str) -> bool:
    return state in FINISHED


def is_active(state: str) -> bool:
    """Queued or running (or suspended): a job of this trial may still run."""
    return state not in FINISHED and state != S.NOT_SUBMITTED


class StudyState(StrEnum):
    """An Optuna trial's states, as Optuna names them (an Optuna trial is one search point over all seeds,
    not a sweeper trial); tests check these against optuna.trial.TrialState."""

    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


STUDY_FINISHED = frozenset({StudyState.COMPLETE, StudyState.PRUNED, StudyState.FAIL})


def parse_states(text: str, option: str = "--state") -> set[TrialState]:
    """'failed,TIMEOUT' -> those states. A word that names no state is the user's typo, not an empty answer:
    an error with a did-you-mean (a filter that silently matches nothing reads as 'nothing to do')."""
    import difflib

    from sweeper.errors import SweeperError

    chosen = set()
    for word in (w.strip().upper() for w in text.split(",")):
        if not word:
            continue
        if word not in TrialState.__members__:
            close = difflib.get_close_matches(word, list(TrialState.__members__), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SweeperError(
                f"{option} {word}: no such state{hint}; the states are {', '.join(TrialState)}"
            )
        chosen.add(TrialState(word))
    if not chosen:
        raise SweeperError(f"{option}: give at least one state, e.g. {option} FAILED")
    return chosen
