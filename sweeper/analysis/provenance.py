"""`analyze --provenance`: where the results under a path came from, read from the sweep dirs' files
(provenance.json, git.diff, sweep.json) and each run's config.json (job id and SLURM_* variables)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.analysis.runs import find_run_dirs
from sweeper.fsutil import read_json, read_jsonl
from sweeper.ledger import META_FILE, REVISIONS_FILE

SLURM_KEYS = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_NODELIST",
    "SLURM_RESTART_COUNT",
)


@dataclass
class SweepProvenance:
    sweep_dir: str
    name: str
    facts: dict[str, Any]  # commit, branch, dirty, command, versions, host, ...
    diff_lines: int
    packages: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)  # run dir, trial, job id, SLURM_* of the job
    revisions: list[dict[str, Any]] = field(default_factory=list)  # launch, growths, continuations

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep_dir": self.sweep_dir,
            "name": self.name,
            **self.facts,
            "diff_lines": self.diff_lines,
            "packages": self.packages,
            "runs": self.runs,
            "revisions": self.revisions,
        }

    def revision_rows(self) -> tuple[list[str], list[list[str]]]:
        """The revisions as a table: what each one did, when, by which command at which commit."""
        columns = ["revision", "kind", "time", "command", "git commit", "trials", "change"]
        rows = []
        for r in self.revisions:
            when = r.get("time")
            command = r.get("command") or []
            rows.append(
                [
                    str(r.get("revision")),
                    str(r.get("kind", "launch")),
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "-",
                    " ".join(command) if isinstance(command, list) else str(command),
                    (r.get("git_commit") or "-")[:12] + ("+dirty" if r.get("git_dirty") else ""),
                    _trials_cell(r),
                    _change_cell(r),
                ]
            )
        return columns, rows


def _trials_cell(revision: dict[str, Any]) -> str:
    ids = revision.get("added") or revision.get("trials") or []
    if not ids:
        return f"{revision.get('n_added', 0)} added"
    verb = "added" if revision.get("added") else "continued"
    shown = ", ".join(ids[:5]) + (f" ... (+{len(ids) - 5})" if len(ids) > 5 else "")
    return f"{len(ids)} {verb}: {shown}"


def _change_cell(revision: dict[str, Any]) -> str:
    changes = [f"{c['key']} {c['old']} -> {c['new']}" for c in revision.get("base_changes") or []]
    changes += [f"{c['key']} {c['old']} -> {c['new']}" for c in revision.get("changes") or []]
    return ", ".join(changes) or "-"


def _sweep_dir_of(run_dir: Path) -> Path | None:
    for parent in (run_dir, *run_dir.parents[:2]):
        if (parent / META_FILE).exists():
            return parent
    return None


def collect(paths: list[str | Path]) -> list[SweepProvenance]:
    sweeps: dict[Path, SweepProvenance] = {}
    for path in paths:
        for run_dir in find_run_dirs(path):
            sweep_dir = _sweep_dir_of(run_dir)
            if sweep_dir is None:
                continue
            sweep_dir = sweep_dir.resolve()
            if sweep_dir not in sweeps:
                sweeps[sweep_dir] = describe(sweep_dir)
            config = read_json(run_dir / "config.json", {}) or {}
            slurm = config.get("slurm_env") or {}
            sweeps[sweep_dir].runs.append(
                {
                    "run_dir": run_dir.name,
                    "trial_id": config.get("trial_id"),
                    "job_id": config.get("job_id"),
                    **{k: slurm[k] for k in SLURM_KEYS if k in slurm},
                }
            )
    return list(sweeps.values())


def describe(sweep_dir: Path) -> SweepProvenance:
    info = read_json(sweep_dir / "provenance.json", {}) or {}
    meta = read_json(sweep_dir / META_FILE, {}) or {}
    git = info.get("git") or {}
    code = info.get("sweeper") or {}
    diff = sweep_dir / "git.diff"
    facts = {
        "launched": info.get("created_at"),
        "command": " ".join(info.get("command") or []),
        "cwd": info.get("cwd"),
        "user": info.get("user"),
        "host": info.get("host"),
        "git commit": git.get("commit") or "(not a git repository)",
        "git branch": git.get("branch"),
        "dirty": git.get("dirty"),
        "changed files": ", ".join(git.get("changed_files") or []) or None,
        "sweeper": code.get("version"),
        "sweeper commit": code.get("commit"),
        "sweeper dirty": code.get("dirty"),
        "python": info.get("python"),
        "torch": info.get("torch"),
        "cuda": info.get("cuda"),
        "platform": info.get("platform"),
        "executor": meta.get("executor"),
        "spec": meta.get("spec_path"),
    }
    lines = diff.read_text(errors="replace").count("\n") if diff.exists() else 0
    return SweepProvenance(
        str(sweep_dir),
        meta.get("name", sweep_dir.parent.name),
        facts,
        lines,
        list(info.get("packages") or []),
        revisions=read_jsonl(sweep_dir / REVISIONS_FILE),
    )
