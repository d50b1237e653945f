"""The local SLURM cluster as the tests see it: is it up (else skip, or fail under CI=true), and small
helpers that ask SLURM directly, to check sweeper's answers against the scheduler's own."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

from tests import conftest

START_HINT = "start it with: sudo slurm/cluster.sh start"


@functools.lru_cache(maxsize=1)
def cluster_problem() -> str | None:
    """None when a SLURM cluster with accounting answers, else what is wrong."""
    for command in ("sbatch", "sinfo", "sacct", "scontrol"):
        if shutil.which(command) is None:
            return f"`{command}` not found"
    for args in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "-S", "now"]):
        try:
            result = subprocess.run(args, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(args)}` did not answer in 30 s"
        if result.returncode != 0:
            return f"`{' '.join(args)}` failed: {(result.stderr or result.stdout).strip()[:200]}"
        if args[0] == "sinfo" and not {"idle", "mixed", "allocated", "completing"} & set(
            result.stdout.split()
        ):
            return f"no usable node (sinfo says {result.stdout.split() or 'nothing'})"
    return None


def require_cluster() -> None:
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the SLURM cluster is unreachable: {problem}", pytrace=False)
    pytest.skip(f"no SLURM cluster: {problem} ({START_HINT})")


def run(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
    return result.stdout


def sacct(job_ids: list[str], fields: str = "JobID,State,Start,End", duplicates: bool = False) -> list[dict]:
    """sacct's own rows (allocations only; every run of a requeued job with duplicates=True)."""
    args = ["sacct", "-X", "-n", "--parsable2", "-o", fields, "-j", ",".join(job_ids)]
    names = fields.split(",")
    rows = [
        dict(zip(names, line.split("|"), strict=True))
        for line in run(*args, *(["-D"] if duplicates else [])).splitlines()
    ]
    for row in rows:
        if "State" in row:
            row["State"] = row["State"].split()[0]  # "CANCELLED by 0" -> "CANCELLED"
    return [r for r in rows if r.get("JobID")]


def max_array_size() -> int:
    for line in run("scontrol", "show", "config").splitlines():
        if line.startswith("MaxArraySize"):
            return int(line.split("=")[1])
    raise AssertionError("scontrol show config has no MaxArraySize")


def wait_for(predicate, timeout: float, what: str, poll: float = 1.0):
    """conftest's wait_for, polling once a second: these predicates ask the scheduler."""
    return conftest.wait_for(predicate, timeout, what, poll)
