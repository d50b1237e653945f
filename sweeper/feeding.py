"""The feeder job of a SLURM sweep larger than the user's submit limits: `python -m sweeper.feeding
SWEEP_DIR` runs once the part submitted before it has ended (afterany), submits as many of the trials it
holds as the limits let in now, and, while some remain, a next feeder after them (the SLURM backend's
`submit` does both, as at launch). No process stays on the login node.

A trial held for feeding is `queued` in the ledger under the feeder's job id; `status` shows it QUEUED
while that job lives, and NOT_SUBMITTED (for `sweeper resume`) once it has ended without submitting it.
`sweeper cancel` takes the trials back and cancels the feeder under the sweep's submit lock, which the
feeder holds while it submits, so a cancelled trial is never fed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sweeper import launch
from sweeper.backends.slurm_helpers import FEEDER_EVENT
from sweeper.ledger import Ledger

# The feeder's own allocation must not leak into the jobs it submits (sbatch and srun read these).
KEEP_VARIABLES = ("SLURM_CONF",)


def held_by(ledger: Ledger, feeder: str) -> list:
    """The trials this feeder holds (queued under its job id, not taken back since)."""
    return [
        record.trial
        for record in ledger.records().values()
        if record.queued is not None and str(record.queued.get("feeder")) == feeder
    ]


def feed(ledger: Ledger, feeder: str) -> int:
    """Submit the next part of the trials this feeder holds; returns how many it submitted."""
    with ledger.lock():
        held = held_by(ledger, feeder)
        if not held:
            return 0
        mine = [e for e in ledger.sweep_events(FEEDER_EVENT) if str(e.get("job_id")) == feeder]
        fresh = bool(mine and mine[-1].get("fresh"))
        plan = launch.make_plan(ledger.launched_spec(), held, "slurm")
        job = plan.kind.job(plan.spec, plan.threads, ledger, fresh)
        plan.backend.submit(plan.spec, plan.resources, ledger, held, job)
        if plan.spec.launch.on_end:  # the end job now also waits for the arrays just submitted
            plan.backend.schedule_end(plan.spec, plan.resources, ledger)
        records = ledger.records()
        return sum(1 for trial in held if records[trial.trial_id].queued is None)


def main(argv: list[str]) -> int:
    for name in [n for n in os.environ if n.startswith(("SLURM_", "SBATCH_")) and n not in KEEP_VARIABLES]:
        if name != "SLURM_JOB_ID":
            del os.environ[name]
    feeder = os.environ.pop("SLURM_JOB_ID", "")
    ledger = Ledger(Path(argv[0]))
    submitted = feed(ledger, feeder)
    left = sum(1 for r in ledger.records().values() if r.queued is not None and r.queued.get("feeder"))
    print(f"feeder {feeder}: submitted {submitted} trial(s); {left} wait for the next feeder")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
