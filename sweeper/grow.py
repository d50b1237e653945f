"""Growing a launched grid/configs sweep in place (`launch --into`): which of a spec's trials are new to the
sweep, the check that the base config is the same apart from what the trials vary, and the revision that
records the growth. A trial id comes from its parameters and seed only, so a trial the sweep already has
is recognised whatever its state, and is never submitted again (retry is for that)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper import provenance, yamlio
from sweeper.display import format_value
from sweeper.errors import SpecError, SweeperError
from sweeper.fsutil import atomic_write_text, read_json
from sweeper.kinds.base import Lines, Rows
from sweeper.ledger import META_FILE, Ledger
from sweeper.schema import flatten
from sweeper.space import expand
from sweeper.spec import SweepSpec
from sweeper.trial import Trial
from sweeper.tune_advice import search_budget

MISSING = "(unset)"
SHOWN_IDS = 10  # trial ids named in one line of a dry run


@dataclass(frozen=True)
class BaseChange:
    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key} {_shown(self.old)} -> {_shown(self.new)}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new}


@dataclass
class Growth:
    """What `launch --into` would do to a sweep: its new trials, those it already has, those the spec no
    longer lists (kept), and how the base config changed (only with --allow-base-change)."""

    ledger: Ledger
    spec: SweepSpec
    new: list[Trial]
    existing: list[str]
    dropped: list[str]
    base_changes: list[BaseChange] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "into": str(self.ledger.dir),
            "new": [t.trial_id for t in self.new],
            "existing": self.existing,
            "no_longer_listed": self.dropped,
            "base_changes": [c.to_json() for c in self.base_changes],
        }

    def parts(self) -> list[Any]:
        """What a dry run shows: the new trials, then one line each for what exists and what was dropped."""
        keys = list(dict.fromkeys(k for t in self.new for k in t.params))
        rows = [[t.trial_id, *[_param(t, k) for k in keys], str(t.seed)] for t in self.new]
        title = f"{self.ledger.name}/{self.ledger.dir.name}: {len(self.new)} new (dry run)"
        lines = [
            f"new: {len(self.new)}" + _ids([t.trial_id for t in self.new]),
            f"already in the sweep (never resubmitted): {len(self.existing)}" + _ids(self.existing),
            f"no longer listed by the spec (kept): {len(self.dropped)}" + _ids(self.dropped),
        ]
        if self.base_changes:
            lines.append("base changes (recorded): " + ", ".join(map(str, self.base_changes)))
        return [Rows(title, ["trial id", *keys, "seed"], rows), Lines(lines)]


def plan_growth(spec: SweepSpec, ledger: Ledger, allow_base_change: bool = False) -> Growth:
    """The growth of `ledger`'s sweep by `spec`'s trials; refused (nothing written) when it cannot be."""
    launched = ledger.launched_spec()
    if (spec.search is None) != (launched.search is None):
        kinds = ("an Optuna search", "a grid/configs sweep")
        theirs, mine = kinds if launched.search is not None else kinds[::-1]
        raise SweeperError(f"--into {ledger.dir}: the sweep is {theirs}, the spec {mine}")
    changes = base_changes(launched, spec)
    if changes and not allow_base_change:
        where, line = spec.line_of(changes[0].key)
        raise SpecError(
            f"differs from the base of {ledger.dir}: {', '.join(map(str, changes))}; the trials would not "
            "be comparable (pass --allow-base-change to grow it anyway, the change is recorded)",
            file=where,
            key="base",
            line=line,
        )
    if spec.search is not None:
        return _search_growth(spec, launched, ledger, changes)
    trials = expand(spec)
    have = [t.trial_id for t in ledger.trials()]
    listed = {t.trial_id for t in trials}
    known = set(have)
    return Growth(
        ledger,
        spec,
        [t for t in trials if t.trial_id not in known],
        [t.trial_id for t in trials if t.trial_id in known],
        [trial_id for trial_id in have if trial_id not in listed],
        changes,
    )


def _search_growth(spec: SweepSpec, launched: SweepSpec, ledger: Ledger, changes: list) -> Growth:
    """An Optuna search grows by its budget: new workers join the same study (same storage), so the
    sampler sees every earlier trial and trial numbers go on. The space may widen, never change types."""
    check_search_space(spec, launched)
    if spec.search.storage != launched.search.storage:
        where, line = spec.line_of_param(("search",), "storage")
        raise SpecError(
            "must stay the sweep's (the study lives there)", file=where, key="search.storage", line=line
        )
    old_budget, new_budget = search_budget(launched), search_budget(spec)
    have = [t.trial_id for t in ledger.trials()]
    if new_budget <= old_budget:
        return Growth(ledger, spec, [], have, [], changes)
    workers = expand(spec)  # worker-0 .. worker-<workers-1>: renumbered after the sweep's own
    new = [
        Trial(f"worker-{len(have) + i}", f"worker-{len(have) + i}", {}, 0, {"worker": len(have) + i})
        for i in range(len(workers))
    ]
    changes = [*changes, BaseChange("search.n_trials", launched.search.n_trials, spec.search.n_trials)]
    return Growth(ledger, spec, new, have, [], changes)


def check_search_space(spec: SweepSpec, launched: SweepSpec) -> None:
    """Each searched parameter keeps its name and type; numeric bounds may only widen, choices stay."""
    old, new = launched.search.params, spec.search.params
    for key in sorted(set(old) ^ set(new)):
        where, line = spec.line_of_param(("search", "params"), key) if key in new else (spec.path, None)
        verb = "added to" if key in new else "removed from"
        raise SpecError(
            f"{verb} the sweep's search space (the study's trials would not be comparable)",
            file=where,
            key=f"search.params.{key}",
            line=line,
        )
    for key, param in new.items():
        before = old[key]
        problem = None
        if param.type != before.type or param.log != before.log or param.step != before.step:
            problem = f"was {before.type}{' log' if before.log else ''}, now {param.type}{' log' if param.log else ''}"
        elif param.type == "categorical" and param.choices != before.choices:
            problem = f"choices were {before.choices}, now {param.choices}"
        elif param.type != "categorical" and (param.low > before.low or param.high < before.high):
            problem = f"[{before.low}, {before.high}] may only widen, got [{param.low}, {param.high}]"
        if problem:
            where, line = spec.line_of_param(("search", "params"), key)
            raise SpecError(problem, file=where, key=f"search.params.{key}", line=line)


def base_changes(old: SweepSpec, new: SweepSpec) -> list[BaseChange]:
    """The base keys (and the trial kind: entrypoint, command) that differ, apart from the swept ones."""
    varied = {*old.swept_keys, *new.swept_keys, "seed"}
    before = {**flatten(old.base), "(entrypoint)": old.entrypoint, "(command)": old.command}
    after = {**flatten(new.base), "(entrypoint)": new.entrypoint, "(command)": new.command}
    changes = []
    for key in sorted(set(before) | set(after)):
        if any(key == v or key.startswith(v + ".") for v in varied):
            continue
        if before.get(key, MISSING) != after.get(key, MISSING):
            changes.append(BaseChange(key, before.get(key, MISSING), after.get(key, MISSING)))
    return changes


def apply_growth(growth: Growth, argv: list[str], resolved: SweepSpec | None = None) -> list[Trial]:
    """Add the growth's new trials to the sweep as one revision, under the ledger's lock; returns the trials
    added. Trials another growth added meanwhile are left out, so racing growths add (and submit) each
    new trial once, and growing twice with the same spec adds nothing the second time. `resolved`: the
    spec with its cluster profile applied (the plan's), recorded so a retry keeps these resources."""
    ledger, spec = growth.ledger, growth.spec
    recorded = resolved or spec
    git, diff = provenance.git_info()
    with ledger.lock():
        known = {t.trial_id for t in ledger.trials()}
        added = [t for t in growth.new if t.trial_id not in known]
        if spec.search is not None and search_budget(ledger.launched_spec()) >= search_budget(spec):
            added = []  # another growth raised the budget meanwhile
        if not added:
            return []
        number = len(ledger.revisions()) + 1
        spec_file, diff_file = f"spec.r{number}.yaml", f"git.r{number}.diff"
        atomic_write_text(ledger.dir / spec_file, yamlio.dump(recorded.data))
        atomic_write_text(ledger.dir / diff_file, diff)
        revision = {
            "kind": "grow",
            "spec": spec_file,
            "spec_path": spec.path,
            "command": list(argv),
            "git_commit": (git or {}).get("commit"),
            "git_dirty": (git or {}).get("dirty"),
            "git_diff": diff_file,
            "base_changes": [c.to_json() for c in growth.base_changes],
            "added": [t.trial_id for t in added],
            "n_added": len(added),
        }
        ledger.add_revision(revision, added)
        meta = ledger.meta = read_json(ledger.dir / META_FILE, {})  # as a racing growth left it
        ledger.update_meta(
            n_trials=len(known) + len(added),
            swept_keys=list(dict.fromkeys([*(meta.get("swept_keys") or []), *spec.swept_keys])),
            seeds=list(dict.fromkeys([*(meta.get("seeds") or []), *spec.seeds])),
        )
    return added


def _param(trial: Trial, key: str) -> str:
    return format_value(trial.params[key]) if key in trial.params else "-"


def _ids(ids: list[str]) -> str:
    if not ids:
        return ""
    more = f" ... (+{len(ids) - SHOWN_IDS})" if len(ids) > SHOWN_IDS else ""
    return ": " + ", ".join(ids[:SHOWN_IDS]) + more


def _shown(value: Any) -> str:
    return value if value is MISSING else format_value(value)
