"""The sweep's end: once every trial has ended, write the report files (analyze's markdown and JSON: report.md, report.json) into
the sweep dir, then run the spec's `launch.on_end` command with {sweep_dir}, {name} and {counts} filled in.

The local launcher calls `run_end` when it finishes. On SLURM a job that depends (afterany) on all of the
sweep's arrays runs `python -m sweeper.sweep_end SWEEP_DIR`; a retry or a grown sweep hands the pending job
its new arrays, or submits a new one, and the ledger's latest `end_job` event names the one that counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sweeper.errors import SweeperError
from sweeper.fsutil import atomic_write_text
from sweeper.ledger import Ledger
from sweeper.states import is_active
from sweeper.status import TrialStatus, sweep_status

REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
END_EVENT = "end_ran"
SETTLE_S = 300.0  # how long a SLURM end job waits for accounting to report every trial ended
SETTLE_POLL_S = 5.0


def counts_text(statuses: list[TrialStatus]) -> str:
    """'COMPLETED 38, FAILED 2': the trials by state, most first (as `status` counts them)."""
    counts = Counter(s.state for s in statuses)
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def write_summaries(ledger: Ledger) -> list[str]:
    """`analyze --format markdown` and `--format json` of the sweep, into the sweep dir. Returns the
    problems met (a sweep without a single run still gets a markdown file saying why)."""
    from sweeper.analysis import export, render
    from sweeper.analysis.report import ReportOptions, build_report

    try:
        report = build_report([str(ledger.dir)], ReportOptions())
    except SweeperError as exc:
        atomic_write_text(ledger.dir / REPORT_MARKDOWN, f"_no summary: {exc}_\n")
        atomic_write_text(ledger.dir / REPORT_JSON, json.dumps({"error": str(exc)}) + "\n")
        return [str(exc)]
    atomic_write_text(ledger.dir / REPORT_MARKDOWN, render.report_markdown(report) + "\n")
    atomic_write_text(ledger.dir / REPORT_JSON, export.to_json(report) + "\n")
    return list(report.analysis.problems)


def end_command(template: str, ledger: Ledger, statuses: list[TrialStatus]) -> str:
    """The on_end command with its placeholders filled in (checked at launch: spec.end_command_problem)."""
    return template.format(
        sweep_dir=str(ledger.dir.resolve()), name=ledger.name, counts=counts_text(statuses)
    )


def latest_end_job(ledger: Ledger) -> str | None:
    """The job id of the end job that counts: the latest one submitted or handed new arrays."""
    jobs = [e.get("job_id") for e in ledger.sweep_events("end_job")]
    return str(jobs[-1]) if jobs else None


def settle(ledger: Ledger, job_id: str | None, settle_s: float) -> list[TrialStatus] | None:
    """The trials' statuses once none is queued or running any more (accounting lags a few seconds behind
    the jobs); None when a newer end job has replaced this one meanwhile."""
    deadline = time.time() + settle_s
    while True:
        if job_id is not None and latest_end_job(ledger) != job_id:
            return None
        statuses = sweep_status(ledger)
        if not any(is_active(s.state) for s in statuses) or time.time() >= deadline:
            return statuses
        time.sleep(SETTLE_POLL_S)


def run_end(ledger: Ledger, statuses: list[TrialStatus], job_id: str | None = None) -> int:
    """Write the summaries, run the on_end command (in the sweep dir, through /bin/sh), record it in the
    ledger; returns the command's exit code."""
    template = ledger.launched_spec().launch.on_end
    if not template:
        return 0
    for problem in write_summaries(ledger):
        print(f"sweep end: {problem}", file=sys.stderr)
    command = end_command(template, ledger, statuses)
    env = {
        **os.environ,
        "SWEEPER_SWEEP_DIR": str(ledger.dir.resolve()),
        "SWEEPER_SWEEP_NAME": ledger.name,
        "SWEEPER_COUNTS": counts_text(statuses),
    }
    print(f"sweep end: {command}", flush=True)
    code = subprocess.run(["/bin/sh", "-c", command], cwd=ledger.dir, env=env).returncode
    ledger.append({"event": END_EVENT, "job_id": job_id, "command": command, "returncode": code})
    return code


def main(argv: list[str]) -> int:
    """The SLURM end job: `python -m sweeper.sweep_end SWEEP_DIR` (its job id from SLURM_JOB_ID)."""
    ledger = Ledger(Path(argv[0]))
    job_id = os.environ.get("SLURM_JOB_ID")
    statuses = settle(ledger, job_id, SETTLE_S)
    if statuses is None:
        print(f"sweep end: job {job_id} was replaced by end job {latest_end_job(ledger)}; nothing to do")
        return 0
    return run_end(ledger, statuses, job_id)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
