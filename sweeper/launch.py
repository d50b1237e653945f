"""Launch: a spec -> a plan (its trials on a backend) -> a sweep dir -> jobs.

The sweep kind (grid/configs or Optuna search) says what the trials and the job are; the backend (SLURM
arrays, local processes, this process) says how they are submitted and driven. On SLURM `launch` returns
once the arrays are submitted. Locally the launcher is the scheduler (it keeps at most `parallelism`
processes running), so it waits and shows progress; Ctrl-C cancels what runs and `sweeper resume`
submits the rest later. A spec's `launch.on_end` runs once every trial has ended (sweep_end): as a SLURM
job waiting for the arrays, or here when the local launcher finishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper import backends, entrypoints, kinds, profiles, provenance, sweep_end
from sweeper.backends import Backend, Resources
from sweeper.errors import SweeperError
from sweeper.kinds import SweepKind
from sweeper.ledger import Ledger
from sweeper.objective import objective_warning
from sweeper.space import CONFIRM_ABOVE
from sweeper.spec import SweepSpec
from sweeper.states import SUCCEEDED, TrialState, is_active
from sweeper.status import TrialStatus, sweep_status
from sweeper.trial import Trial

Tick = Callable[[list[TrialStatus]], None]


@dataclass
class Plan:
    spec: SweepSpec  # with its cluster profile applied
    trials: list[Trial]
    backend: Backend
    kind: SweepKind
    resources: Resources  # what the backend decided: parallelism, threads, submitit parameters, arrays
    warnings: list[str] = field(default_factory=list)  # what makes the sweep weaker than it looks
    profile: str | None = None  # path of the cluster profile applied

    @property
    def executor(self) -> str:
        return self.backend.name

    @property
    def parallelism(self) -> int:
        return self.resources.parallelism

    @property
    def threads(self) -> int | None:
        return self.resources.threads

    @property
    def executor_params(self) -> dict[str, Any]:
        return self.resources.executor_params

    def to_json(self) -> dict[str, Any]:
        """`launch --dry-run --format json`: what would be submitted, as plain data."""
        return {
            "sweep": self.spec.name,
            "spec": str(self.spec.path),
            "kind": self.kind.name,
            "executor": self.executor,
            "parallelism": self.parallelism,
            "threads": self.threads,
            "executor_params": self.executor_params,
            "profile": self.profile,
            "warnings": self.warnings,
            "trials": [trial.to_json() for trial in self.trials],
            "preview": self.backend.preview(self.spec, self.resources),
        }


def size_question(spec: SweepSpec) -> str | None:
    """The question to ask before launching a sweep this large (None: no need to ask)."""
    size = kinds.of_spec(spec).size(spec)
    if size <= CONFIRM_ABOVE:
        return None
    return f"{spec.path}: this sweep has {size:,} trials. Launch them all?"


def make_plan(
    spec: SweepSpec,
    trials: list[Trial] | None = None,
    executor: str | None = None,
    query_cluster: bool = True,
) -> Plan:
    """The trials (the spec's, unless given: a retry's) on the chosen backend, with its resources."""
    if (
        trials is None and spec.entrypoint is not None
    ):  # a new launch: the jobs will import it, try it once here
        entrypoints.check_importable(spec.entrypoint, *spec.line_of("entrypoint"))
    spec, profile = profiles.apply_profile(spec)
    kind = kinds.of_spec(spec)
    trials = kind.trials(spec) if trials is None else trials
    backend = backends.get(executor or spec.launch.executor)
    # Optuna workers all run at once: the study, not the array throttle, holds the queue.
    asked = spec.search.workers if spec.search is not None else spec.launch.parallelism
    resources = backend.resources(spec, asked, len(trials))
    backend.prepare(spec, resources, len(trials), query_cluster)
    warnings = [w for w in [objective_warning(spec.objective.metric, spec.declared_direction)] if w]
    warnings += kind.warnings(spec)
    if spec.launch.pack > 1 and not backend.packs:
        warnings.append(f"launch.pack: {backend.name} runs each trial as its own job (packing is for SLURM)")
    if spec.launch.gpus and not backend.hands_out_gpus:
        warnings.append(
            f"launch.gpus: only the local executor hands out GPUs; on {backend.name} use "
            "launch.slurm.gpus_per_node"
        )
    return Plan(spec, trials, backend, kind, resources, warnings, str(profile) if profile else None)


def should_wait(plan: Plan, asked: bool | None) -> bool:
    """--wait/--no-wait, else the backend's way (wait locally, return at once on SLURM)."""
    return plan.backend.waits if asked is None else asked


def export_launch_dir() -> None:
    """Jobs inherit the launcher's environment: put the launch directory on their PYTHONPATH so that a user's
    `entrypoint: mypkg.train:main` next to the spec imports as it did here."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if os.getcwd() not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([*paths, os.getcwd()])


def check_frozen(cwd: str | Path = ".") -> None:
    """`--frozen`: the result must be reproducible from a commit, so the tree must be clean."""
    git, _diff = provenance.git_info(cwd)
    if git is None:
        raise SweeperError("--frozen: not inside a git repository, so there is no commit to freeze at")
    if git["dirty"]:
        files = ", ".join(git["changed_files"][:5]) + (" ..." if len(git["changed_files"]) > 5 else "")
        raise SweeperError(
            f"--frozen: the working tree has uncommitted changes ({files}); commit or stash them first"
        )


def create_ledger(plan: Plan, root: str | Path = "runs", argv: list[str] | None = None) -> Ledger:
    plan.backend.check_submittable(plan.resources)  # no sweep dir for a sweep that cannot be submitted
    info, diff = provenance.collect(argv)
    extra = {
        "executor": plan.executor,
        "parallelism": plan.parallelism,
        "threads": plan.threads,
        "profile": plan.profile,
        "max_array_size": plan.resources.max_array_size,
    }
    ledger = Ledger.create(root, plan.spec, plan.trials, info, diff, extra)
    meta = plan.kind.create(ledger, plan.spec)
    if meta:
        ledger.update_meta(**meta)
    return ledger


def claim(ledger: Ledger, trials: list[Trial], continuing: bool = False) -> list[Trial]:
    """Of `trials`, those still free to run: not queued by a live launcher, pending, running or done (a
    continuation takes done ones: it trains them on). Called under the submit lock, so two retries (or a
    retry and a running launch) never take the same trial."""
    events = ledger.events()
    if not any(e.get("event") in ("queued", "submitted") for e in events):
        return list(trials)  # a new sweep: nothing is taken yet
    states = {s.trial_id: s.state for s in sweep_status(ledger)}
    return [
        t
        for t in trials
        if (continuing or states[t.trial_id] not in SUCCEEDED) and not is_active(states[t.trial_id])
    ]


def execute(
    plan: Plan,
    ledger: Ledger,
    trials: list[Trial],
    *,
    wait_for_end: bool = False,
    on_tick: Tick | None = None,
    fresh: bool = False,
    continuing: bool = False,
) -> list[TrialStatus] | None:
    """Start `trials` on the plan's backend. Returns the final statuses when it waited, else None."""
    if not trials:
        return sweep_status(ledger, scheduler={})
    export_launch_dir()
    job = plan.kind.job(plan.spec, plan.threads, ledger, fresh)
    with ledger.lock():
        plan.backend.submit(plan.spec, plan.resources, ledger, claim(ledger, trials, continuing), job)
        end_here = plan.spec.launch.on_end and not plan.backend.schedule_end(
            plan.spec, plan.resources, ledger
        )

    def on_running(running: set[str]) -> None:
        if on_tick:
            on_tick(sweep_status(ledger, scheduler={j: TrialState.RUNNING for j in running}))

    plan.backend.drive(plan.spec, plan.resources, ledger, on_running)
    if end_here:  # the launcher drove every trial to its end: the sweep's end runs here
        sweep_end.run_end(ledger, sweep_status(ledger, scheduler={}))
    if not plan.backend.waits and not wait_for_end:
        return None
    if plan.backend.waits:  # the backend ran the jobs to their end
        statuses = sweep_status(ledger, scheduler={})
        if on_tick:
            on_tick(statuses)
        return statuses
    return wait(ledger, on_tick)


def wait(
    ledger: Ledger, on_tick: Tick | None = None, poll_s: float = 5.0, timeout_s: float | None = None
) -> list[TrialStatus]:
    """Poll (one scheduler call per poll) until every submitted trial has finished."""
    deadline = None if timeout_s is None else time.time() + timeout_s
    while True:
        statuses = sweep_status(ledger)
        if on_tick:
            on_tick(statuses)
        if all(s.finished or s.state == TrialState.NOT_SUBMITTED for s in statuses):
            return statuses
        if deadline is not None and time.time() > deadline:
            raise SweeperError(
                f"gave up waiting after {timeout_s:.0f} s; the jobs keep running (see `sweeper status`)"
            )
        time.sleep(poll_s)


def submitted_arrays(ledger: Ledger, trials: list[Trial], records: dict | None = None) -> list[str]:
    """The job (array) ids of the latest submission of these trials, in submission order."""
    records = ledger.records() if records is None else records
    arrays: dict[str, None] = {}
    for trial in trials:
        record = records.get(trial.trial_id)
        latest = record.latest if record is not None and record.queued is None else None
        if latest and latest.get("job_id"):
            arrays[str(latest["job_id"]).split("_")[0]] = None
    return list(arrays)


def held_for_feeding(ledger: Ledger, trials: list[Trial], records: dict | None = None) -> dict[str, int]:
    """Feeder job id -> how many of these trials it holds (those past the cluster's submit limits)."""
    records = ledger.records() if records is None else records
    held: dict[str, int] = {}
    for trial in trials:
        feeder = (records[trial.trial_id].queued or {}).get("feeder") if trial.trial_id in records else None
        if feeder:
            held[str(feeder)] = held.get(str(feeder), 0) + 1
    return held
