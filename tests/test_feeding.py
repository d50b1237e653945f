"""Submit limits on the local SLURM cluster: a sweep larger than the user's MaxSubmitJobs is fed part after
part by a feeder job, never with more than the limit in the queue; cancel stops the feeding; a feeder
killed behind sweeper's back is reported and `resume` picks its trials up. The limit is set by the test
on an account of its own (sacctmgr), which only the test's jobs use: the cluster is shared."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from sweeper.backends.slurm import submit_now
from sweeper.backends.slurm_limits import Limit, SubmitLimits
from sweeper.ledger import Ledger
from sweeper.status import sweep_status
from tests.conftest import write_spec
from tests.slurm_cluster import run, sacct, wait_for

LIMIT = 8
ACTIVE = "PENDING,RUNNING,CONFIGURING,COMPLETING,REQUEUED,SUSPENDED"


def test_submit_now_keeps_room_for_the_feeder_and_the_end_job():
    limits = SubmitLimits([Limit("MaxSubmitJobs", 8, queued=1)])  # room 7
    assert submit_now(7, limits, end_job=False) == 7  # all fit: no feeder
    assert submit_now(7, limits, end_job=True) == 5  # 7 + end job > 7: 5 + feeder + end job
    assert submit_now(40, limits, end_job=False) == 6
    assert submit_now(40, SubmitLimits([Limit("x", 8, queued=8)]), end_job=True) == 0
    assert submit_now(40, SubmitLimits(), end_job=True) == 40  # no limit known
    assert submit_now(40, None, end_job=True) == 40  # the cluster was not asked (dry run on a laptop)


def queued_in(account: str) -> int:
    out = run("squeue", "-h", "-r", "-A", account, "-t", ACTIVE, "-o", "%i")
    return len(out.split())


@pytest.fixture
def limited_account():
    """An account with MaxSubmitJobs=8 for root's association, deleted (its jobs cancelled) afterwards."""
    account = f"sw18_{uuid.uuid4().hex[:8]}"
    run("sacctmgr", "-i", "add", "account", account, "cluster=localcluster")
    try:
        run("sacctmgr", "-i", "add", "user", "root", f"account={account}", f"maxsubmitjobs={LIMIT}")
        yield account
    finally:
        subprocess.run(["scancel", "-A", account], capture_output=True)
        wait_for(lambda: queued_in(account) == 0, 120, f"the jobs of {account} to leave the queue")
        subprocess.run(
            ["sacctmgr", "-i", "delete", "user", "root", f"account={account}"], capture_output=True
        )
        subprocess.run(["sacctmgr", "-i", "delete", "account", account], capture_output=True)


class QueueWatch:
    """Samples the account's queue (array tasks one each) in a thread; `most` is the largest count seen."""

    def __init__(self, account: str):
        self.account, self.most, self._stop = account, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, queued_in(self.account))
            self._stop.wait(0.3)

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def sweep_spec(
    tmp_path: Path, name: str, account: str, n: int, extra: str = "", base: str = "epochs: 1, sleep: 0.0"
) -> None:
    values = ", ".join(str(i) for i in range(1, n + 1))
    write_spec(
        tmp_path,
        f"""
        name: {name}
        entrypoint: jobfns:slow_counter
        base: {{{base}, lr: 0.0}}
        grid: {{lr: [{values}]}}
        launch:
          profile: local
          slurm: {{account: {account}}}
        {extra}
        """,
    )


def feeder_logs(sweep: Path) -> str:
    return "".join(p.read_text() for p in (sweep / "submitit").glob("feeder_*.out"))


def submitted_per_trial(sweep: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in Ledger(sweep).events():
        if event.get("event") == "submitted":
            counts[event["trial_id"]] = counts.get(event["trial_id"], 0) + 1
    return counts


def bare_submission(account: str, tasks: int) -> subprocess.CompletedProcess:
    """A held array on the account, submitted with plain sbatch (the fixture cancels it)."""
    argv = ["sbatch", "--parsable", "--hold", "-A", account, f"--array=0-{tasks - 1}", "--output=/dev/null"]
    return subprocess.run([*argv, "--wrap", "true"], capture_output=True, text=True)


@pytest.mark.slurm
def test_forty_trials_under_a_limit_of_eight_are_fed_and_all_complete(tmp_path, cli, limited_account):
    end = json.dumps("echo {counts} >> {sweep_dir}/../end.log")
    sweep_spec(tmp_path, "fed", limited_account, 40, f"  on_end: {end}")
    dry = cli("launch", "spec.yaml", "--dry-run").stdout
    assert f"MaxSubmitJobs of association root/{limited_account}: {LIMIT} (0 of your jobs count now)" in dry
    assert "feeding: 6 trial(s) now" in dry and "submits the other 34" in dry
    assert not (tmp_path / "runs").exists()

    with QueueWatch(limited_account) as watch:
        out = cli("launch", "spec.yaml").stdout
        assert "submitted 6 trial(s)" in out and "34 more wait for the feeder job" in out
        sweep = (tmp_path / "runs" / "fed" / "latest").resolve()
        status = cli("status", "fed").stdout
        assert "waits for feeding (feeder job" in status and "QUEUED" in status
        wait_for(
            lambda: [s.state for s in sweep_status(Ledger(sweep))] == ["COMPLETED"] * 40,
            600,
            "40 COMPLETED trials",
            poll=2,
        )
        wait_for(lambda: (tmp_path / "runs" / "fed" / "end.log").exists(), 300, "the end job")
    assert 6 <= watch.most <= LIMIT, watch.most
    assert submitted_per_trial(sweep) == {f"lr={i}-s0": 1 for i in range(1, 41)}
    logs = feeder_logs(sweep)
    assert "sbatch failed" not in logs and "Traceback" not in logs
    assert logs.count("feeder ") >= 5  # 34 trials in parts of at most 5
    assert (tmp_path / "runs" / "fed" / "end.log").read_text() == "COMPLETED 40\n"

    # The cluster enforces the limit (AccountingStorageEnforce=limits): plain sbatch past it is refused,
    # which sweeper never met above.
    wait_for(lambda: queued_in(limited_account) == 0, 120, "the account's queue to empty")
    assert bare_submission(limited_account, 5).returncode == 0  # arrays of MaxArraySize (5) at most
    assert bare_submission(limited_account, LIMIT - 5).returncode == 0  # the limit is reached
    refused = bare_submission(limited_account, 1)
    assert refused.returncode != 0 and "job submit limit" in refused.stderr, refused.stderr


@pytest.mark.slurm
def test_cancel_in_the_middle_stops_the_feeding(tmp_path, cli, limited_account):
    sweep_spec(tmp_path, "fedcancel", limited_account, 40, base="epochs: 20, sleep: 1.0")
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "fedcancel" / "latest").resolve()
    (feeder,) = {str(e["job_id"]) for e in Ledger(sweep).sweep_events("feeder")}
    cancelled = cli("cancel", "fedcancel").stdout
    assert "cancelled 40 trial(s)" in cancelled
    wait_for(lambda: queued_in(limited_account) == 0, 120, "the account's queue to empty")
    assert sum(submitted_per_trial(sweep).values()) == 7  # what was in before the cancel, nothing more
    assert [e["job_id"] for e in Ledger(sweep).sweep_events("feeder")] == [feeder]
    wait_for(
        lambda: [r["State"] for r in sacct([feeder])] == ["CANCELLED"], 60, "the feeder CANCELLED in sacct"
    )
    states = {s.state for s in sweep_status(Ledger(sweep))}
    assert states == {"CANCELLED"}


@pytest.mark.slurm
def test_a_feeder_killed_by_scancel_is_reported_and_resume_submits_its_trials(tmp_path, cli, limited_account):
    sweep_spec(tmp_path, "fedkill", limited_account, 12, base="epochs: 3, sleep: 1.0")
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "fedkill" / "latest").resolve()
    (feeder,) = {str(e["job_id"]) for e in Ledger(sweep).sweep_events("feeder")}
    run("scancel", feeder)
    wait_for(
        lambda: sum(s.state == "NOT_SUBMITTED" for s in sweep_status(Ledger(sweep))) == 5,
        120,
        "5 trials no longer held",
    )
    status = cli("status", "fedkill", check=False).stdout
    assert f"its feeder job {feeder} ended (CANCELLED) without submitting it" in status
    assert "sweeper resume" in status
    cli("resume", "fedkill")
    wait_for(
        lambda: [s.state for s in sweep_status(Ledger(sweep))] == ["COMPLETED"] * 12,
        600,
        "12 COMPLETED trials",
        poll=2,
    )
    assert submitted_per_trial(sweep) == {f"lr={i}-s0": 1 for i in range(1, 13)}
