"""`sweeper continue`: finished trials train on, in the same run dir, to a larger epoch count: the built-in
trainer's and a Python entrypoint's (which reads `run.epochs` and `run.segment`) from their last.pt, a
command trial's program from its own checkpoint (restarted with SWEEPER_RESUME=1 and the new
SWEEPER_EPOCHS). Only keys that can change mid-run may change; the model may not. Each continuation is a
revision of the sweep (which trials, from which epoch, what changed old -> new) and starts a new segment
of the runs (metrics.parquet's `segment` column)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sweeper import provenance
from sweeper.command_template import COMMAND_ENTRYPOINT
from sweeper.errors import SpecError, SweeperError
from sweeper.ledger import Ledger
from sweeper.metrics import read_metrics
from sweeper.run_files import LAST_CHECKPOINT, METRICS_FILE
from sweeper.schema import SchemaError, did_you_mean, get_path, set_path
from sweeper.states import TrialState
from sweeper.status import TrialStatus, sweep_status
from sweeper.trial import Trial
from sweeper.yamlio import load_value

# What may change when a run trains on: the optimizer's LR and weight decay, the schedule, early
# stopping, augmentation, dropout (no weights). Anything else would make the run a different one.
CHANGEABLE_KEYS = ("optim.lr", "optim.weight_decay", "model.dropout")
CHANGEABLE_SECTIONS = ("schedule", "early_stopping", "augment")


class StartPoint:
    """What a finished run trains on from, and what it lacks for that."""

    def missing(self, trial_id: str, run_dir: Path | None) -> str | None:
        """Why the run in `run_dir` cannot train on (None: it can)."""
        if run_dir is None or not run_dir.is_dir():
            return f"{trial_id}: its run dir {run_dir} is gone; nothing to continue from"
        return None


class SweeperCheckpoint(StartPoint):
    """The built-in trainer and a Python entrypoint: the last.pt that `run.save_checkpoint` wrote."""

    def missing(self, trial_id: str, run_dir: Path | None) -> str | None:
        if run_dir is None or not (run_dir / LAST_CHECKPOINT).is_file():
            return f"{trial_id}: no checkpoint ({LAST_CHECKPOINT}) in {run_dir} to continue from"
        return None


class ProgramCheckpoint(StartPoint):
    """A command trial: its checkpoint is the program's own (any file, any name), so sweeper cannot tell
    whether there is one; the run dir and its metric rows must be there (the epochs it continues after),
    and the program resumes itself when it sees SWEEPER_RESUME=1 (docs/design.md)."""

    def missing(self, trial_id: str, run_dir: Path | None) -> str | None:
        gone = super().missing(trial_id, run_dir)
        if gone is None and not (run_dir / METRICS_FILE).is_file():
            return f"{trial_id}: no {METRICS_FILE} in {run_dir}: no epochs to continue after"
        return gone


@dataclass
class Continuation:
    """The trials to train on (their configs as they will run) and each one's new segment."""

    ledger: Ledger
    trials: list[Trial]
    segments: dict[str, dict[str, Any]]  # trial id -> segment, start_epoch, epochs, lr, changes
    epochs: int

    def changes(self) -> list[dict[str, Any]]:
        """The keys changed, old -> new (old: "various" where the trials differed)."""
        keys = dict.fromkeys(k for s in self.segments.values() for k in s["changes"])
        out = []
        for key in keys:
            olds = {repr(s["changes"][key][0]): s["changes"][key][0] for s in self.segments.values()}
            new = next(iter(self.segments.values()))["changes"][key][1]
            out.append(
                {"key": key, "old": next(iter(olds.values())) if len(olds) == 1 else "various", "new": new}
            )
        return out


def check_changeable(key: str) -> None:
    """Refuse, with the reason, a key that cannot change in the middle of a run."""
    if key == "epochs":
        raise SpecError("give the new epoch count with --epochs", file="--set", key=key)
    if key in CHANGEABLE_KEYS or key.split(".")[0] in CHANGEABLE_SECTIONS:
        return
    allowed = ", ".join([*CHANGEABLE_KEYS, *(f"{s}.*" for s in CHANGEABLE_SECTIONS)])
    if key.startswith("model."):
        reason = "the model cannot change on continue: last.pt holds the weights of the model as it was"
    else:
        reason = "cannot change in the middle of a run"
    raise SpecError(f"{reason} (continue may change {allowed})", file="--set", key=key)


def parse_sets(overrides: list[str] | tuple[str, ...], builtin: bool = True) -> dict[str, Any]:
    """The `--set` keys and values. A user entrypoint's config is its own: any key but `model.*` and
    `epochs` may change (the function decides what it honours)."""
    changes = {}
    for text in overrides:
        key, sep, value = text.partition("=")
        key = key.strip().removeprefix("base.")
        if not sep or not key:
            raise SpecError(f"expected KEY=VALUE, got {text!r}", file="--set")
        if builtin or key == "epochs" or key.startswith("model."):
            check_changeable(key)
        changes[key] = load_value(value)
    return changes


def plan_continue(
    ledger: Ledger, trial_ids: list[str], epochs: int, overrides: list[str] | tuple[str, ...] = ()
) -> Continuation:
    """The continuation of the given trials (default: every COMPLETED one); refused, with nothing written,
    when a trial cannot train on."""
    entrypoint = ledger.meta.get("entrypoint")
    if ledger.meta.get("search"):
        raise SweeperError(
            f"{ledger.dir}: continue trains runs of a grid or configs sweep; this sweep is an Optuna search"
        )
    sets = parse_sets(overrides, builtin=entrypoint is None)
    start_point = ProgramCheckpoint() if entrypoint == COMMAND_ENTRYPOINT else SweeperCheckpoint()
    statuses = {s.trial_id: s for s in sweep_status(ledger)}
    unknown = [t for t in trial_ids if t not in statuses]
    if unknown:
        raise SweeperError(f"{ledger.name}: no trial {unknown[0]!r}{did_you_mean(unknown[0], statuses)}")
    chosen = trial_ids or [t for t, s in statuses.items() if s.state == TrialState.COMPLETED]
    if not chosen:
        raise SweeperError(f"{ledger.name}: no COMPLETED trial to continue")
    trials = {t.trial_id: t for t in ledger.trials()}
    continued, segments = [], {}
    for trial_id in dict.fromkeys(chosen):
        trial, segment = _continue_one(
            ledger, trials[trial_id], statuses[trial_id], epochs, sets, start_point
        )
        continued.append(trial)
        segments[trial_id] = segment
    return Continuation(ledger, continued, segments, epochs)


def _continue_one(
    ledger: Ledger,
    trial: Trial,
    status: TrialStatus,
    epochs: int,
    sets: dict[str, Any],
    start_point: StartPoint,
) -> tuple[Trial, dict[str, Any]]:
    if status.state != TrialState.COMPLETED:
        raise SweeperError(
            f"{trial.trial_id}: is {status.state}; only COMPLETED (or early-stopped) trials continue "
            "(`sweeper retry` resumes the others)"
        )
    run_dir = ledger.dir / status.run_dir if status.run_dir else None
    problem = start_point.missing(trial.trial_id, run_dir)
    if problem:
        raise SweeperError(problem)
    rows = read_metrics(run_dir / METRICS_FILE).to_pylist() if (run_dir / METRICS_FILE).exists() else []
    done = int(rows[-1]["epoch"]) if rows else 0
    if epochs <= done:
        raise SweeperError(f"--epochs {epochs}: not more than the {done} epochs {trial.trial_id} has run")
    config = copy.deepcopy(trial.config)
    changes = {key: (get_path(config, key), value) for key, value in sets.items()}
    for key, value in sets.items():
        set_path(config, key, copy.deepcopy(value))
    changes["epochs"] = (config.get("epochs"), epochs)
    config["epochs"] = epochs
    if ledger.meta.get("entrypoint") is None:  # the built-in trainer: its schema is known
        from sweeper.config import parse_train_config

        try:
            parse_train_config(config)
        except SchemaError as exc:
            raise SpecError(exc.message, file="--set", key=exc.key) from None
    # the segment's start LR: the one given (`lr` too, for a user entrypoint's flat config), else the last
    lr = next((sets[k] for k in ("optim.lr", "lr") if k in sets), rows[-1].get("lr") if rows else None)
    previous = ledger.segment_of(trial.trial_id)
    segment = {
        "trial_id": trial.trial_id,
        "segment": (int(previous["segment"]) if previous else 1) + 1,
        "start_epoch": done,
        "epochs": epochs,
        "lr": float(lr) if lr is not None else get_path(config, "optim.lr"),
        "changes": {k: list(v) for k, v in changes.items()},
    }
    return replace(trial, config=config), segment


def record(continuation: Continuation, argv: list[str]) -> list[Trial]:
    """Write the continuation as a revision (and the trials' new configs), under the ledger's lock; returns
    the trials recorded. A trial another `continue` took since it was planned is left out, so two racing
    continues train each trial on once."""
    ledger = continuation.ledger
    git, _diff = provenance.git_info()
    with ledger.lock():
        taken = [t for t in continuation.trials if _still_free(ledger, continuation.segments[t.trial_id])]
        if not taken:
            return []
        ids = [t.trial_id for t in taken]
        revision = {
            "kind": "continue",
            "command": list(argv),
            "git_commit": (git or {}).get("commit"),
            "git_dirty": (git or {}).get("dirty"),
            "trials": ids,
            "epochs": continuation.epochs,
            "segments": {t: continuation.segments[t] for t in ids},
            "changes": continuation.changes(),
        }
        ledger.add_revision(revision, taken)
    return taken


def _still_free(ledger: Ledger, planned: dict[str, Any]) -> bool:
    """No other continuation of the trial was recorded since this one was planned, nor one from the
    same epoch (recorded, but its job not submitted yet when this one was planned)."""
    previous = ledger.segment_of(planned["trial_id"])
    if previous is None:
        return planned["segment"] == 2
    return int(previous["segment"]) + 1 == planned["segment"] and int(previous["start_epoch"]) < int(
        planned["start_epoch"]
    )
