"""SLURM's commands, batched: one sacct call (squeue where sacct is unavailable) for any number of jobs, the
cluster's array limit, sbatch of a small helper script, a pending job's new dependency, scancel. Nothing outside the SLURM backend runs a SLURM command."""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess

from sweeper.backends.base import GONE, JobRecord, SchedulerView
from sweeper.errors import SchedulerError

ARRAY_RANGE = re.compile(r"^(\d+)_\[(.+)\]$")
SACCT_FIELDS = "JobID,State,ExitCode,NodeList,Start,End"
SCANCEL_BATCH = 1000  # job ids per scancel command line


def available() -> bool:
    return shutil.which("sbatch") is not None


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SchedulerError(f"{args[0]} not found: is SLURM installed on this machine?") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(
            f"{args[0]} did not answer in {timeout:.0f} s: is the SLURM controller up?"
        ) from None


def _expand_range(array_id: str, spec: str) -> list[str]:
    """'1-7%2' or '1,3,5-6' -> ['A_1', ..., 'A_7']."""
    spec = spec.split("%")[0]
    ids = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            ids += [f"{array_id}_{i}" for i in range(int(lo), int(hi) + 1)]
        elif part:
            ids.append(f"{array_id}_{part}")
    return ids


def _value(text: str | None) -> str | None:
    text = (text or "").strip()
    return None if text in ("", "Unknown", "None", "None assigned", "(null)") else text


def parse_records(text: str) -> dict[str, JobRecord]:
    """`JobID|State|ExitCode|NodeList|Start|End` lines (sacct, or squeue with fewer fields) -> records.
    A pending array remainder (`A_[3-9%2]`) becomes one record per task."""
    records: dict[str, JobRecord] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        fields = line.split("|")
        job_id = fields[0].strip()
        if "." in job_id:  # job steps (.batch, .0): the allocation line is the one that counts
            continue
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
        rest = [_value(f) for f in fields[2:6]] + [None] * (6 - len(fields))
        match = ARRAY_RANGE.match(job_id)
        for jid in _expand_range(match.group(1), match.group(2)) if match else [job_id]:
            records[jid] = JobRecord(jid, state, *rest[:4])
    return records


def array_ids(job_ids: list[str]) -> list[str]:
    """'123_4' -> '123': asking for a whole array is one id on the command line, whatever its size."""
    return sorted({jid.split("_")[0] for jid in job_ids}, key=lambda j: (len(j), j))


def query(job_ids: list[str]) -> SchedulerView:
    """Records (SLURM's own state words) of the given jobs (ids like '123' or '123_4') from ONE sacct call. Jobs sacct does not know
    (it lags a few seconds behind a submission) are looked up in one squeue call; if sacct fails (no
    accounting on this cluster) squeue answers alone. Jobs neither knows are GONE. If neither answers
    (controller down, no SLURM on this machine), the view is empty and says why: never an exception."""
    if not job_ids:
        return SchedulerView("none")
    wanted = set(job_ids)
    try:
        result = _run(
            ["sacct", "-X", "-n", "--parsable2", "-o", SACCT_FIELDS, "-j", ",".join(array_ids(job_ids))]
        )
        sacct_error = None if result.returncode == 0 else _first_line(result.stderr or result.stdout)
    except SchedulerError as exc:
        sacct_error = str(exc)
    try:
        if sacct_error is None:
            accounted = parse_records(result.stdout)
            jobs = {jid: accounted[jid] for jid in wanted if jid in accounted}
            missing = wanted - set(jobs)
            if missing:  # sacct lags behind the controller: ask the queue (one call) about those
                queued = squeue_records()
                for jid in missing:
                    jobs[jid] = queued.get(jid) or _never_started(accounted, jid) or _gone(jid)
            view = SchedulerView("sacct", jobs)
            if any(not job.terminal for job in jobs.values()) and not controller_up():
                view.controller_down = True  # sacct answers from slurmdbd; the controller itself is gone
                view.warning = (
                    "the SLURM controller (slurmctld) does not answer `scontrol ping`: states of unfinished "
                    "jobs are accounting's last word and may be stale"
                )
            return view
        queued = squeue_records()
    except SchedulerError as exc:
        problem = f"sacct: {sacct_error}; squeue: {exc}" if sacct_error else f"squeue: {exc}"
        return SchedulerView(
            "unreachable",
            warning=f"the scheduler did not answer ({problem}); states from heartbeats",
            controller_down=True,
        )
    jobs = {jid: queued.get(jid) or _never_started(queued, jid) or _gone(jid) for jid in wanted}
    return SchedulerView("squeue", jobs, warning=f"sacct unavailable ({sacct_error}); states from squeue")


def controller_up() -> bool:
    """`scontrol ping`: is slurmctld answering? (A frozen or dead controller makes it fail in ~10 s.)"""
    try:
        return _run(["scontrol", "ping"], timeout=30).returncode == 0
    except SchedulerError:
        return False


def _gone(job_id: str) -> JobRecord:
    return JobRecord(job_id, GONE, source="squeue")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "failed"


def _never_started(records: dict[str, JobRecord], job_id: str) -> JobRecord | None:
    """An array task that never started has no record of its own: it lives in the array's remainder record,
    listed as `A_[3-9]` while tasks remain (parse_records expands it), or as plain `A` once the remainder
    ended (e.g. its tasks were all cancelled while pending). Such a task takes the remainder's end state.
    Only for a task neither sacct nor the queue lists: a task that started has its own record."""
    array, _, task = job_id.partition("_")
    remainder = records.get(array) if task else None
    if remainder is None or not remainder.terminal:
        return None
    return JobRecord(
        job_id, remainder.state, remainder.exit_code, None, None, remainder.end, remainder.source
    )


def squeue_records() -> dict[str, JobRecord]:
    """Every job of this user the controller knows, including those ended in the last MinJobAge seconds
    (one call; array tasks one per line)."""
    result = _run(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T||%N"])
    if result.returncode != 0:
        raise SchedulerError(f"squeue failed: {(result.stderr or result.stdout).strip()}")
    records = parse_records(result.stdout)
    for record in records.values():
        record.source = "squeue"
    return records


def cluster_config() -> dict[str, str]:
    result = _run(["scontrol", "show", "config"])
    if result.returncode != 0:
        raise SchedulerError(f"scontrol show config failed: {(result.stderr or result.stdout).strip()}")
    config = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config


def max_array_size(config: dict[str, str] | None = None) -> int:
    """The cluster's MaxArraySize: array task ids must be below it, so no array may have more tasks."""
    value = (config or cluster_config()).get("MaxArraySize", "1001")
    try:
        return int(value)
    except ValueError:
        raise SchedulerError(f"scontrol show config: cannot read MaxArraySize = {value!r}") from None


def sbatch(options: list[str], script: str) -> str:
    """Submit a small shell script (`sbatch --parsable OPTIONS --wrap SCRIPT`); returns the job id."""
    result = _run(["sbatch", "--parsable", *options, "--wrap", script])
    if result.returncode != 0:
        raise SchedulerError(f"sbatch failed: {_first_line(result.stderr or result.stdout)}")
    return result.stdout.strip().split(";")[0]


def update_dependency(job_id: str, dependency: str) -> bool:
    """Give a pending job a new dependency list; False where it is not pending any more (or is gone)."""
    result = _run(["scontrol", "update", f"JobId={job_id}", f"Dependency={dependency}"])
    return result.returncode == 0


def cancel(job_ids: list[str]) -> None:
    """scancel the given jobs or array tasks, up to SCANCEL_BATCH ids per call."""
    for start in range(0, len(job_ids), SCANCEL_BATCH):
        batch = job_ids[start : start + SCANCEL_BATCH]
        result = _run(["scancel", *batch])
        if result.returncode != 0:
            raise SchedulerError(f"scancel failed: {(result.stderr or result.stdout).strip()}")
