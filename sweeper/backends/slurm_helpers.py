"""A SLURM sweep's helper jobs: small `sbatch --wrap` jobs with minimal resources that wait (afterany) for
the sweep's arrays. The sweep-end job runs `python -m sweeper.sweep_end SWEEP_DIR` once every array has
ended; a retry or a grown sweep hands the pending one its new arrays (scontrol update), or submits a new
one where it has already started. Each is recorded in the ledger as a sweep event (`end_job`)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

from sweeper.backends import slurm_commands
from sweeper.errors import SchedulerError

if TYPE_CHECKING:
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec

END_JOB_EVENT = "end_job"
END_MODULE = "sweeper.sweep_end"
# What a helper job asks for: it reads the ledger, writes small files, runs sbatch or a short command.
HELPER_RESOURCES = ["--ntasks=1", "--cpus-per-task=1", "--mem=2G", "--time=30"]


def helper_options(spec: SweepSpec, role: str, ledger: Ledger) -> list[str]:
    """sbatch options of a helper job: its name, its log in the sweep's submitit folder, minimal resources,
    and the sweep's partition, account and QOS (a cluster may refuse jobs without them)."""
    from sweeper.job import SUBMITIT_FOLDER

    res = spec.launch.slurm
    log = ledger.dir / SUBMITIT_FOLDER / f"{role}_%j.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    options = [f"--job-name={spec.name}-{role}", f"--output={log}", "--open-mode=append", *HELPER_RESOURCES]
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
