"""What a lab-notebook entry says of a sweep without being told: its setup (from the resolved spec), where it
came from (provenance), how its trials stand and what they cost (ledger, heartbeats, marks), and how it
differs from another sweep (the two resolved specs and their commits). Reads files only."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.display import format_value
from sweeper.fsutil import read_json
from sweeper.ledger import Ledger, find_sweep_dirs
from sweeper.marks import Validity
from sweeper.schema import flatten

MODEL_SKIP = ("name",)  # model keys not shown as "sizes"


def _options(block: dict, skip: tuple[str, ...] = ("name",)) -> str:
    shown = [f"{k} {format_value(v)}" for k, v in flatten(block).items() if k not in skip]
    return f" ({', '.join(shown)})" if shown else ""


def setup_facts(spec) -> list[tuple[str, str]]:
    """Dataset, model and sizes, optimizer and base LR, schedule, epochs, seeds: from the launched spec."""
    base = spec.base
    data = base.get("data") or {}
    model = base.get("model") or {}
    optim = base.get("optim") or {}
    schedule = base.get("schedule") or {}
    rows = [
        ("dataset", f"{data.get('name', '-')}{_options(data)}" if data else "-"),
        ("model", f"{model.get('name', '-')}{_options(model, MODEL_SKIP)}" if model else "-"),
        (
            "optimizer",
            f"{optim.get('name', '-')}, base LR {format_value(optim['lr'])}{_options(optim, ('name', 'lr'))}"
            if "lr" in optim
            else (f"{optim.get('name')}{_options(optim)}" if optim else "-"),
        ),
        ("schedule", f"{schedule.get('name', '-')}{_options(schedule)}" if schedule else "-"),
        ("epochs", format_value(base.get("epochs", "-"))),
        ("seeds", ", ".join(str(s) for s in spec.seeds)),
    ]
    if spec.command is not None:
        rows.append(
            ("command", spec.command if isinstance(spec.command, str) else " ".join(map(str, spec.command)))
        )
    elif spec.entrypoint:
        rows.append(("entrypoint", spec.entrypoint))
    return rows


def search_text(spec) -> str:
    """What the sweep varied: its grid, named configs and Optuna search space, in a line."""
    parts = []
    if spec.configs:
        parts.append("configs " + ", ".join(spec.configs))
    for key, values in (spec.grid or {}).items():
        parts.append(f"{key} in {format_value(values)}")
    if spec.search is not None:
        parts.append("search over " + ", ".join(spec.search.params) + f" ({spec.search.n_trials} trials)")
    return "; ".join(parts) or "nothing (one config)"


@dataclass
class Provenance:
    commit: str | None
    dirty: bool
    diff_lines: int
    root: str | None
    changed_files: list[str]


def provenance_of(sweep_dir: Path) -> Provenance:
    info = read_json(sweep_dir / "provenance.json", {}) or {}
    git = info.get("git") or {}
    diff = sweep_dir / "git.diff"
    lines = diff.read_text(errors="replace").count("\n") if diff.exists() else 0
    return Provenance(
        git.get("commit"),
        bool(git.get("dirty")),
        lines,
        git.get("root"),
        list(git.get("changed_files") or []),
    )


def git_text(prov: Provenance) -> str:
    if not prov.commit:
        return "not a git repository"
    dirty = f", dirty ({prov.diff_lines} lines of diff in git.diff)" if prov.dirty else ""
    return f"{prov.commit[:12]}{dirty}"


def run_status(ledger: Ledger) -> str:
    """The entry's run status from the validity marks: Valid / Partially invalid / Invalid, with reasons."""
    records = ledger.records()
    marks = [r.mark for r in records.values() if r.mark is not None]
    if not marks:
        return "not marked (sweeper mark SWEEP [TRIAL ...] valid|partial|invalid --reason ...)"
    counts = Counter(m.validity for m in marks)
    reasons = sorted(
        {f"{m.validity}: {m.reason}" for m in marks if m.reason and m.validity != Validity.VALID}
    )
    why = f" ({'; '.join(reasons)})" if reasons else ""
    if counts[Validity.INVALID] == len(records):
        return f"Invalid (discard for comparison){why}"
    if counts[Validity.INVALID] or counts[Validity.PARTIAL]:
        parts = [f"{n} {v}" for v, n in counts.items() if v != Validity.VALID]
        return f"Partially invalid: {', '.join(parts)} of {len(records)} trials{why}"
    if counts[Validity.VALID] == len(records):
        return "Valid"
    return f"Valid ({counts[Validity.VALID]} of {len(records)} trials marked)"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def cost_facts(ledger: Ledger, spec) -> list[tuple[str, str]]:
    """SLURM job ids, wall time (first start to last end), and CPU / GPU hours of every attempt."""
    attempts = [a for r in ledger.records().values() for a in r.attempts]
    slurm = [a for a in attempts if (a.get("executor") or ledger.meta.get("executor")) == "slurm"]
    arrays = list(dict.fromkeys(str(a.get("job_id")).split("_")[0] for a in slurm if a.get("job_id")))
    starts = [a["first_started_at"] for a in attempts if a.get("first_started_at")]
    ends = [a.get("ended_at") or a.get("accounted_at") for a in attempts]
    ran = [
        end - start
        for a, end in zip(attempts, ends, strict=True)
        if end and (start := a.get("first_started_at"))
    ]
    if slurm:
        cpus, gpus = spec.launch.slurm.cpus_per_task, spec.launch.slurm.gpus_per_node
    else:
        cpus, gpus = ledger.meta.get("threads") or 1, 0
    used = sum(ran)
    wall = max(e for e in ends if e) - min(starts) if starts and any(ends) else None
    return [
        (
            "SLURM jobs",
            ", ".join(arrays) if arrays else f"- ({ledger.meta.get('executor', 'local')} executor)",
        ),
        ("wall time", duration(wall)),
        (
            "compute",
            f"{used / 3600 * cpus:.3g} CPU hours, {used / 3600 * gpus:.3g} GPU hours ({len(ran)} attempts)",
        ),
    ]


def date_text(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


# -- the difference from another sweep ------------------------------------------------------------------
def previous_sweep(sweep_dir: Path) -> Path | None:
    """The sweep of the same name launched just before this one, if any."""
    siblings = [p for p in find_sweep_dirs(sweep_dir.parent) if p.parent == sweep_dir.parent]
    if sweep_dir not in siblings:
        return None
    index = siblings.index(sweep_dir)
    return siblings[index - 1] if index > 0 else None


@dataclass
class Difference:
    other: Path
    changed: list[tuple[str, Any, Any]]  # base keys: (key, old, new); a missing side is MISSING
    varied_then: str
    varied_now: str
    commits: tuple[str | None, str | None]
    files: list[str] | None  # files changed between the commits (None: git could not say)


MISSING = "(not set)"


def difference(spec, other_spec, prov: Provenance, other_prov: Provenance, other: Path) -> Difference:
    old, new = flatten(other_spec.base), flatten(spec.base)
    changed = [
        (key, old.get(key, MISSING), new.get(key, MISSING))
        for key in dict.fromkeys([*old, *new])
        if old.get(key, MISSING) != new.get(key, MISSING)
    ]
    files = None
    if prov.commit and other_prov.commit and prov.root:
        files = _changed_files(prov.root, other_prov.commit, prov.commit)
    return Difference(
        other, changed, search_text(other_spec), search_text(spec), (other_prov.commit, prov.commit), files
    )


def _changed_files(root: str, old: str, new: str) -> list[str] | None:
    if old == new:
        return []
    try:
        out = subprocess.run(
            ["git", "diff", "--name-only", old, new], cwd=root, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.split() if out.returncode == 0 else None


def difference_lines(diff: Difference, label: str) -> list[str]:
    lines = [f"Compared with {label}:", ""]
    if diff.changed:
        lines += [f"- `{key}`: {format_value(old)} -> {format_value(new)}" for key, old, new in diff.changed]
    else:
        lines.append("- the base config is the same")
    if diff.varied_then == diff.varied_now:
        lines.append(f"- varied, then and now: {diff.varied_now}")
    else:
        lines += [f"- varied then: {diff.varied_then}", f"- varied now: {diff.varied_now}"]
    old, new = diff.commits
    if old and new and old != new:
        files = (
            "" if diff.files is None else f", {len(diff.files)} file(s) changed: {', '.join(diff.files[:20])}"
        )
        lines.append(f"- code: {old[:12]}..{new[:12]}{files}")
    elif old and new:
        lines.append(f"- code: the same commit ({new[:12]})")
    return lines
