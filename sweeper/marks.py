"""Validity marks: a researcher's verdict on trials (valid, partially invalid, invalid) with who, when and why.

A mark is a `marked` event appended to the sweep's ledger (attempts.jsonl), one per trial; the latest mark
of a trial wins, so a mark is corrected by marking again. `sweeper status`, `analyze` (a column; invalid
runs left out of the rankings unless --include-invalid) and `sweeper note` (the run status) read them.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sweeper.errors import SweeperError
from sweeper.fsutil import read_jsonl

MARK_EVENT = "marked"


class Validity(StrEnum):
    VALID = "valid"
    PARTIAL = "partial"  # partially invalid (e.g. a scheduler bug in some epochs): counted, and flagged
    INVALID = "invalid"  # discard for comparison: left out of best configs, effects, pivots and means


@dataclass(frozen=True)
class Mark:
    validity: Validity
    reason: str
    user: str
    time: float

    def to_json(self) -> dict:
        return {"validity": str(self.validity), "reason": self.reason, "user": self.user, "time": self.time}


def parse_validity(word: str) -> Validity:
    try:
        return Validity(word.strip().lower())
    except ValueError:
        from sweeper.schema import did_you_mean

        choices = [v.value for v in Validity]
        raise SweeperError(
            f"mark {word!r}: not a validity{did_you_mean(word, choices)}; one of {', '.join(choices)}"
        ) from None


def mark_events(
    trial_ids: Sequence[str], known: Sequence[str], validity: Validity, reason: str
) -> list[dict]:
    """The ledger events marking these trials (all the sweep's when none is given); an unknown id is refused
    before anything is written."""
    from sweeper.schema import did_you_mean

    for trial_id in trial_ids:
        if trial_id not in known:
            raise SweeperError(f"mark: no trial {trial_id!r} in this sweep{did_you_mean(trial_id, known)}")
    if not reason.strip() and validity is not Validity.VALID:
        raise SweeperError(f"mark {validity}: say why with --reason '...' (it goes into the notebook)")
    user = _user()
    return [
        {"event": MARK_EVENT, "trial_id": t, "validity": str(validity), "reason": reason, "user": user}
        for t in (trial_ids or known)
    ]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "?")


def marks_of_events(events: Sequence[dict]) -> dict[str, Mark]:
    """The latest mark of each trial, from a ledger's events in order."""
    marks: dict[str, Mark] = {}
    for event in events:
        if event.get("event") != MARK_EVENT:
            continue
        try:
            validity = Validity(event.get("validity"))
        except ValueError:  # a word written by a later version: not a verdict this one knows
            continue
        marks[event.get("trial_id")] = Mark(
            validity, event.get("reason") or "", event.get("user") or "?", event.get("time") or 0.0
        )
    return marks


def read_marks(sweep_dir: str | Path) -> dict[str, Mark]:
    """The marks of a sweep dir, read from its attempts.jsonl (none where it has no ledger)."""
    path = Path(sweep_dir) / "attempts.jsonl"
    if not path.exists():
        return {}
    try:
        return marks_of_events(read_jsonl(path))
    except (OSError, ValueError):
        return {}


def mark(ledger, trial_ids: Sequence[str], word: str, reason: str) -> list[str]:
    """Mark trials of a sweep (a `sweeper.ledger.Ledger`; all its trials when none is given) and return
    their ids; nothing is written when a word or an id is wrong."""
    validity = parse_validity(word)
    known = [t.trial_id for t in ledger.trials()]
    events = mark_events(list(trial_ids), known, validity, reason)
    ledger.append(*events)
    return [e["trial_id"] for e in events]
