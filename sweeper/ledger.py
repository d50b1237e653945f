"""The sweep dir: what was launched (resolved spec, provenance, trials) and every attempt of every trial.

    runs/<name>/<YYYYMMDD_HHMMSS>/
        spec.yaml          the spec as launched (overrides applied)    provenance.json  git, versions, host, command
        spec.source.yaml   the file as it was on disk                  git.diff         uncommitted changes
        trials.jsonl       one line per trial (id, params, seed, config); a growth appends trials, a
                           continuation updates a trial's config (rewritten whole, atomically, under the lock)
        revisions.jsonl    append-only, one line per change of the sweep: the launch (revision 1), each
                           growth (`launch --into`: spec.r<N>.yaml, git.r<N>.diff, the trials added) and each
                           continuation (`sweeper continue`: the trials, the epoch they continue from, the
                           keys changed old -> new)
        attempts.jsonl     append-only events, one line each, written under a lock: queued / dequeued (a
                           local launcher's queue), submitted, started, requeued, ended, accounted (the
                           scheduler's end record), marked (a validity mark: sweeper/marks.py); and the
                           sweep's own (no trial id): end_job, end_ran
        report.md, report.json     analyze's report, written at the sweep's end when `launch.on_end` is
                                   set (report.html: by `sweeper note --html`)
        <YYYYMMDD_HHMMSS>_j<jobid>/   one run dir per trial attempt (see sweeper/job.py)
        runs.parquet       the run index: one row per run dir (sweeper/runs_index.py)
    runs/<name>/latest -> <YYYYMMDD_HHMMSS>

Only appends ever change attempts.jsonl, so a crash can lose at most the event being written, never an earlier one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.errors import SweeperError
from sweeper.fsutil import append_jsonl, atomic_write_json, atomic_write_text, locked, read_json, read_jsonl
from sweeper.marks import MARK_EVENT, Mark, marks_of_events
from sweeper.states import TrialState
from sweeper.trial import Trial

TRIALS_FILE = "trials.jsonl"
ATTEMPTS_FILE = "attempts.jsonl"
META_FILE = "sweep.json"
INDEX_FILE = "runs.parquet"  # written by runs_index.py
REVISIONS_FILE = "revisions.jsonl"
STAMP_FORMAT = "%Y%m%d_%H%M%S"


def submitted_event(trial_id: str, job_id: str, attempt: int, executor: str) -> dict[str, Any]:
    return {
        "event": "submitted",
        "trial_id": trial_id,
        "job_id": job_id,
        "attempt": attempt,
        "executor": executor,
    }


def ended_event(
    trial_id: str, job_id: str | None, state: TrialState, error: str | None = None, **more: Any
) -> dict[str, Any]:
    """The one shape of an attempt's end (the job, a launcher or `cancel` writes it)."""
    return {"event": "ended", "trial_id": trial_id, "job_id": job_id, "state": state, "error": error, **more}


def is_accounted(attempt: dict) -> bool:
    """The scheduler's end record of this attempt is in the ledger, and the job has not run again since (a
    record read while sacct lagged behind a requeue is superseded by the restart)."""
    accounted_at = attempt.get("accounted_at")
    return accounted_at is not None and accounted_at >= max(
        attempt.get("started_at") or 0, attempt.get("requeued_at") or 0
    )


@dataclass
class TrialRecord:
    """What the ledger knows of one trial: its attempts folded into the latest state."""

    trial: Trial
    attempts: list[dict] = field(default_factory=list)  # one dict per submission, merged with its events
    queued: dict | None = None  # held in a local launcher's queue (its pid and host), not submitted yet
    revision: int = 1  # the revision of the sweep that added the trial (1: the launch)
    mark: Mark | None = None  # the researcher's latest validity mark (sweeper/marks.py)

    @property
    def latest(self) -> dict | None:
        return self.attempts[-1] if self.attempts else None


class Ledger:
    def __init__(self, sweep_dir: str | Path):
        self.dir = Path(sweep_dir)
        if not (self.dir / META_FILE).exists():
            raise SweeperError(f"{self.dir}: not a sweep dir (no {META_FILE})")
        self.meta = read_json(self.dir / META_FILE, {})

    # -- creation --------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, root: str | Path, spec, trials: list[Trial], provenance: dict, diff: str, extra_meta: dict
    ) -> Ledger:
        from sweeper import yamlio  # here: the launch writes YAML, the readers of a ledger need none

        base = Path(root) / spec.name
        base.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime(STAMP_FORMAT)
        sweep_dir = base / stamp
        for i in range(2, 1000):  # two launches in the same second get distinct dirs
            try:
                sweep_dir.mkdir()
                break
            except FileExistsError:
                sweep_dir = base / f"{stamp}_{i}"
        source = Path(spec.path).read_text() if spec.path and Path(spec.path).is_file() else ""
        atomic_write_text(sweep_dir / "spec.source.yaml", source)
        atomic_write_text(sweep_dir / "spec.yaml", yamlio.dump(spec.data))
        atomic_write_json(sweep_dir / "provenance.json", provenance)
        atomic_write_text(sweep_dir / "git.diff", diff)
        lines = "".join(json.dumps(t.to_json(), sort_keys=True) + "\n" for t in trials)
        atomic_write_text(sweep_dir / TRIALS_FILE, lines)
        meta = {
            "name": spec.name,
            "description": spec.description,
            "created_at": time.time(),
            "spec_path": spec.path,
            "n_trials": len(trials),
            "swept_keys": spec.swept_keys,
            "seeds": spec.seeds,
            "objective": spec.objective.to_json(),
            "entrypoint": spec.trial_entrypoint,
            **extra_meta,
        }
        append_jsonl(
            sweep_dir / REVISIONS_FILE,
            [launch_revision(meta, provenance, len(trials))],
        )
        atomic_write_json(
            sweep_dir / META_FILE, meta
        )  # written last: its presence marks a complete sweep dir
        latest = base / "latest"
        tmp = base / f".latest.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(sweep_dir.name, tmp)
        os.replace(tmp, latest)
        return cls(sweep_dir)

    # -- reading -----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.get("name", self.dir.parent.name)

    def trials(self) -> list[Trial]:
        return [Trial.from_json(d) for d in read_jsonl(self.dir / TRIALS_FILE)]

    def events(self) -> list[dict]:
        return read_jsonl(self.dir / ATTEMPTS_FILE)

    def revisions(self) -> list[dict]:
        """The sweep's revisions, oldest first (a sweep dir from before revisions: its launch alone)."""
        found = read_jsonl(self.dir / REVISIONS_FILE)
        if found:
            return found
        info = read_json(self.dir / "provenance.json", {}) or {}
        return [launch_revision(self.meta, info, int(self.meta.get("n_trials") or 0))]

    def trial_revisions(self) -> dict[str, int]:
        """trial id -> the revision that added it (absent: the launch, revision 1)."""
        added: dict[str, int] = {}
        for revision in self.revisions():
            for trial_id in revision.get("added") or []:
                added.setdefault(trial_id, int(revision["revision"]))
        return added

    def segment_of(self, trial_id: str) -> dict[str, Any] | None:
        """The trial's latest continuation (`sweeper continue`): segment number, start epoch, epochs, lr and
        the start epochs of every continuation so far; None if it was never continued."""
        found = None
        starts: list[int] = []
        for revision in self.revisions():
            segment = (revision.get("segments") or {}).get(trial_id)
            if segment is not None:
                starts.append(int(segment["start_epoch"]))
                found = {**segment, "continued_at": list(starts)}
        return found

    def version(self) -> tuple:
        """(inode, size, mtime) of each file `records()` reads: equal versions, equal records, since these
        files are only appended to or replaced whole. Lets a reader skip a re-read that would change nothing."""
        found: list[tuple[int, int, int] | None] = []
        for name in (TRIALS_FILE, ATTEMPTS_FILE, REVISIONS_FILE, META_FILE, "provenance.json"):
            try:
                st = os.stat(self.dir / name)
            except FileNotFoundError:
                found.append(None)
                continue
            found.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(found)

    def records(self) -> dict[str, TrialRecord]:
        """Every trial with its attempts; events of one attempt (same trial and job id) are merged in order."""
        revisions = self.trial_revisions()
        records = {t.trial_id: TrialRecord(t, revision=revisions.get(t.trial_id, 1)) for t in self.trials()}
        for event in self.events():
            record = records.get(event.get("trial_id"))
            if record is None:
                continue
            kind = event.get("event")
            if kind == MARK_EVENT:  # a verdict on the trial, not an attempt
                record.mark = marks_of_events([event]).get(record.trial.trial_id) or record.mark
                continue
            if kind == "queued":
                record.queued = event
                continue
            if kind == "dequeued":
                record.queued = None
                continue
            if kind == "submitted":
                record.queued = None
                record.attempts.append(dict(event))
                continue
            match = next(
                (a for a in reversed(record.attempts) if a.get("job_id") == event.get("job_id")), None
            )
            if match is None:  # a job started outside `launch` (e.g. by hand): still an attempt
                match = {
                    "trial_id": record.trial.trial_id,
                    "job_id": event.get("job_id"),
                    "attempt": len(record.attempts) + 1,
                }
                record.attempts.append(match)
            if kind == "started":
                match.setdefault("first_started_at", event.get("time"))
                match["restarts"] = match.get("restarts", -1) + 1
            match.update({k: v for k, v in event.items() if k not in ("event", "time")})
            match[f"{kind}_at"] = event.get("time")
            match["last_event"] = kind
        return records

    def sweep_events(self, kind: str) -> list[dict]:
        """Events of the sweep itself (no trial id), e.g. its end job's or its feeder's, oldest first."""
        return [e for e in self.events() if e.get("event") == kind and "trial_id" not in e]

    def next_attempts(self, trials: list[Trial]) -> dict[str, int]:
        """The attempt number each of these trials' next submission gets."""
        records = self.records()
        return {
            t.trial_id: len(records[t.trial_id].attempts) + 1 if t.trial_id in records else 1 for t in trials
        }

    def launched_spec(self):
        """The spec as launched, or as the latest growth gave it (overrides and cluster profile applied). Its
        entrypoint was checked at launch and may import only from the launch directory, so it is not
        checked again."""
        from sweeper.spec import parse_spec

        specs = [r["spec"] for r in self.revisions() if r.get("spec")]
        path = self.dir / (specs[-1] if specs else "spec.yaml")
        return parse_spec(path.read_text(), file=str(path), check_entrypoint=False)

    # -- writing -----------------------------------------------------------------------------------------
    def append(self, *events: dict[str, Any]) -> None:
        now = time.time()
        append_jsonl(self.dir / ATTEMPTS_FILE, [{"time": now, **e} for e in events])

    def add_revision(self, revision: dict[str, Any], trials: list[Trial]) -> int:
        """Record a revision (its number is the next one) and write the trials it changes or adds: replaced
        where the id exists, appended otherwise. The caller holds `lock()`. The revision goes first: a
        crash before the trials are written leaves a revision that names trials the sweep lacks, which the
        next growth adds again; never a trial without its revision."""
        earlier = self.revisions()
        if not (self.dir / REVISIONS_FILE).exists():  # a sweep dir from before revisions
            append_jsonl(self.dir / REVISIONS_FILE, earlier)
        number = len(earlier) + 1
        append_jsonl(self.dir / REVISIONS_FILE, [{**revision, "revision": number, "time": time.time()}])
        changed = {t.trial_id: t for t in trials}
        current = [changed.pop(t.trial_id, t) for t in self.trials()]
        lines = "".join(json.dumps(t.to_json(), sort_keys=True) + "\n" for t in [*current, *changed.values()])
        atomic_write_text(self.dir / TRIALS_FILE, lines)
        return number

    def update_meta(self, **values: Any) -> None:
        self.meta.update(values)
        atomic_write_json(self.dir / META_FILE, self.meta)

    def lock(self):
        """Held while deciding what to submit, so concurrent launches/retries never submit a trial twice."""
        return locked(self.dir / ".submit.lock")


def launch_revision(meta: dict, provenance: dict, n_trials: int) -> dict[str, Any]:
    """Revision 1: the launch itself."""
    git = provenance.get("git") or {}
    return {
        "revision": 1,
        "kind": "launch",
        "time": meta.get("created_at"),
        "spec": "spec.yaml",
        "command": provenance.get("command"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "n_added": n_trials,
    }


def find_sweep_dirs(root: str | Path) -> list[Path]:
    """Sweep dirs under root (or root itself), oldest first."""
    root = Path(root)
    if (root / META_FILE).exists():
        return [root.resolve()]
    found = {p.parent.resolve() for p in root.glob(f"*/{META_FILE}")} | {
        p.parent.resolve() for p in root.glob(f"*/*/{META_FILE}")
    }
    return sorted(found, key=lambda p: (read_json(p / META_FILE, {}).get("created_at", 0), str(p)))


def _find_sweep(ref: str | Path, root: str | Path) -> Path | None:
    for candidate in (Path(ref), Path(root) / ref, Path(root) / ref / "latest"):
        if (candidate / META_FILE).exists():
            return candidate
    return None


def resolve_sweep(ref: str | Path, root: str | Path = "runs") -> Path:
    """A sweep given as a path, a name (its latest launch) or name/stamp under root."""
    found = _find_sweep(ref, root)
    if found is None:
        raise SweeperError(f"no sweep {str(ref)!r} (looked for it as a path and under {root}/)")
    return found.resolve()


def resolve_path(ref: str, root: str | Path = "runs") -> Path:
    """What `analyze` reads: a path that exists (a run dir, a sweep dir, any tree), else a sweep named as
    `resolve_sweep` takes it (kept relative, as the user will read it in titles)."""
    if Path(ref).exists():
        return Path(ref)
    found = _find_sweep(ref, root)
    if found is None:
        raise SweeperError(f"{ref}: no such path, and no sweep of that name under {root}/")
    return found


def sweep_refs(root: str | Path) -> list[str]:
    """The names `resolve_sweep` takes for the sweeps under root (shell completion): `name/stamp` for each,
    and `name` where it has a `latest`."""
    base = Path(root).resolve()
    refs: list[str] = []
    for sweep_dir in find_sweep_dirs(root):
        if sweep_dir == base or not sweep_dir.is_relative_to(base):
            continue
        ref = sweep_dir.relative_to(base).as_posix()
        name = ref.rpartition("/")[0]
        if name and name not in refs and (base / name / "latest" / META_FILE).exists():
            refs.append(name)
        refs.append(ref)
    return refs
