"""A SLURM sweep's helper jobs: small `sbatch --wrap` jobs with minimal resources that wait (afterany) for
the sweep's arrays. The sweep-end job runs `python -m sweeper.sweep_end SWEEP_DIR` once every array has
ended; a retry or a grown sweep hands the pending one its new arrays (scontrol update), or submits a new
one where it has already started. The feeder (`python -m sweeper.feeding SWEEP_DIR`) submits the trials
that did not fit under the cluster's submit limits, part after part. Each is recorded in the ledger as a
sweep event (`end_job`, `feeder`)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

from sweeper.backends import slurm_commands
from sweeper.errors import SchedulerError

if TYPE_CHECKING:
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.trial import Trial

END_JOB_EVENT = "end_job"
END_MODULE = "sweeper.sweep_end"
FEEDER_EVENT = "feeder"
FEEDER_MODULE = "sweeper.feeding"
FEEDER_RETRY_S = 60  # a feeder that found no room (the queue full of other jobs) looks again this much later
# What a helper job asks for: the end job reads every run (analyze) and runs a short command; the feeder
# reads the ledger and runs sbatch.
HELPER_RESOURCES = {
    "end": ["--ntasks=1", "--cpus-per-task=1", "--mem=2G", "--time=30"],
    "feeder": ["--ntasks=1", "--cpus-per-task=1", "--mem=1G", "--time=10"],
}


def helper_options(spec: SweepSpec, role: str, ledger: Ledger) -> list[str]:
    """sbatch options of a helper job: its name, its log in the sweep's submitit folder, minimal resources,
    and the sweep's partition, account and QOS (a cluster may refuse jobs without them)."""
    from sweeper.job import SUBMITIT_FOLDER

    res = spec.launch.slurm
    log = ledger.dir / SUBMITIT_FOLDER / f"{role}_%j.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    options = [f"--job-name={spec.name}-{role}", f"--output={log}", "--open-mode=append"]
    options += HELPER_RESOURCES[role]
    for key in ("partition", "account", "qos"):
        if getattr(res, key):
            options.append(f"--{key}={getattr(res, key)}")
    return options


def helper_script(spec: SweepSpec, module: str, ledger: Ledger) -> str:
    """The spec's setup lines (module load ...), then this interpreter running `module` on the sweep dir."""
    run = f"exec {shlex.quote(sys.executable)} -m {module} {shlex.quote(str(ledger.dir.resolve()))}"
    return "\n".join([*spec.launch.slurm.setup, run])


def sweep_job_ids(ledger: Ledger) -> list[str]:
    """Every array (or job) id the sweep has submitted, trials' and helpers' but the end job's, oldest first."""
    ids: dict[str, None] = {}
    for event in ledger.events():
        if event.get("event") == "submitted" or (event.get("event") == "feeder" and "trial_id" not in event):
            ids[str(event["job_id"]).split("_")[0]] = None
    return list(ids)


def live_dependencies(ledger: Ledger, queue: dict) -> list[str]:
    """The sweep's jobs the controller still knows (afterany on a job it has forgotten is refused; one it
    has forgotten has ended long ago)."""
    known = {job_id.split("_")[0] for job_id in queue}
    return [job_id for job_id in sweep_job_ids(ledger) if job_id in known]


def submit_feeder(spec: SweepSpec, ledger: Ledger, after: list[str], held: list[Trial], fresh: bool) -> str:
    """A feeder job for the trials that did not fit under the submit limits: it waits (afterany) for the
    arrays just submitted, or FEEDER_RETRY_S where none were (no room at all), then submits the next part
    (sweeper.feeding). The held trials are `queued` in the ledger under its job id."""
    options = helper_options(spec, "feeder", ledger)
    options.append(f"--dependency=afterany:{':'.join(after)}" if after else f"--begin=now+{FEEDER_RETRY_S}")
    try:
        job_id = slurm_commands.sbatch(options, helper_script(spec, FEEDER_MODULE, ledger))
    except SchedulerError as exc:
        raise SchedulerError(
            f"{len(held)} trial(s) did not fit under the submit limit and their feeder job was refused "
            f"(`sweeper resume` submits them later): {exc}"
        ) from None
    ledger.append(
        {"event": FEEDER_EVENT, "job_id": job_id, "after": after, "held": len(held), "fresh": fresh},
        *[{"event": "queued", "trial_id": t.trial_id, "feeder": job_id} for t in held],
    )
    return job_id


def schedule_end(spec: SweepSpec, ledger: Ledger) -> str:
    """Make sure one end job waits for every array of the sweep; returns its job id."""
    queue = slurm_commands.squeue_records()
    dependencies = live_dependencies(ledger, queue)
    dependency = "afterany:" + ":".join(dependencies) if dependencies else ""
    ends = ledger.sweep_events(END_JOB_EVENT)
    previous = str(ends[-1]["job_id"]) if ends else None
    pending = previous is not None and getattr(queue.get(previous), "state", None) == "PENDING"
    if pending and dependency and slurm_commands.update_dependency(previous, dependency):
        ledger.append({"event": END_JOB_EVENT, "job_id": previous, "dependency": dependency})
        return previous
    options = helper_options(spec, "end", ledger) + ([f"--dependency={dependency}"] if dependency else [])
    try:
        job_id = slurm_commands.sbatch(options, helper_script(spec, END_MODULE, ledger))
    except SchedulerError as exc:
        raise SchedulerError(
            f"the trials are submitted, but not the sweep-end job (launch.on_end): {exc}"
        ) from None
    ledger.append({"event": END_JOB_EVENT, "job_id": job_id, "dependency": dependency, "replaces": previous})
    return job_id
