"""Packed jobs on the local SLURM cluster (`launch.pack`): several trials in one array task, each still a
whole trial: its own run dir, its own end (kill -9 of one fails that one only), its own retry, and a task
forced to time out resumes every trial it runs with every epoch once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sweeper.ledger import Ledger
from sweeper.status import sweep_status
from tests.conftest import write_spec
from tests.slurm_cluster import sacct, wait_for

pytestmark = pytest.mark.slurm
PACKED_DIR = re.compile(r"^\d{8}_\d{6}_j(\d+(?:_\d+)?)_p(\d)$")  # a one-task sweep is a plain job


@pytest.fixture(autouse=True)
def cancel_leftovers(tmp_path):
    yield
    ids = set()
    for attempts in (tmp_path / "runs").glob("*/*/attempts.jsonl"):
        for line in attempts.read_text().splitlines():
            job_id = json.loads(line).get("job_id")
            if job_id:
                ids.add(str(job_id).split("_")[0])
    if ids:
        subprocess.run(["scancel", *sorted(ids)], capture_output=True)


def states(sweep: Path) -> dict[str, str]:
    return {s.trial_id: s.state for s in sweep_status(Ledger(sweep))}


def run_dirs(sweep: Path) -> dict[str, Path]:
    """Trial id -> run dir, for the packed run dirs of the sweep."""
    found = {}
    for path in sweep.iterdir():
        if path.is_dir() and PACKED_DIR.match(path.name):
            found[json.loads((path / "config.json").read_text())["trial_id"]] = path
    return found


def epochs(run_dir: Path) -> list[int]:
    return pq.read_table(run_dir / "metrics.parquet").column("epoch").to_pylist()


def heartbeat(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_a_packed_sweep_runs_every_trial_in_its_own_run_dir_one_job_per_pack(tmp_path, cli, mode):
    write_spec(
        tmp_path,
        f"""
        name: packed
        entrypoint: jobfns:slow_counter
        base: {{epochs: 2, sleep: 0.2, lr: 0.0}}
        grid: {{lr: [1, 2, 3, 4, 5, 6, 7, 8]}}
        launch: {{profile: local, pack: 4, pack_mode: {mode}}}
        """,
    )
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "packed" / "latest").resolve()
    wait_for(lambda: set(states(sweep).values()) == {"COMPLETED"}, 300, "8 COMPLETED trials", poll=2)
    submitted = {r.trial.trial_id: r.latest for r in Ledger(sweep).records().values()}
    tasks = sorted({a["job_id"] for a in submitted.values()})
    assert len(tasks) == 2  # 8 trials, 4 per task: two scheduler jobs
    wait_for(lambda: {r["State"] for r in sacct(tasks)} == {"COMPLETED"}, 60, "2 COMPLETED tasks in sacct")
    assert len(sacct(tasks)) == 2
    dirs = run_dirs(sweep)
    assert set(dirs) == set(submitted)
    for trial_id, run_dir in dirs.items():
        task, index = PACKED_DIR.match(run_dir.name).groups()
        assert task == submitted[trial_id]["job_id"] and int(index) == submitted[trial_id]["pack_index"]
        assert epochs(run_dir) == [1, 2]
        assert heartbeat(run_dir)["state"] == "COMPLETED"
    if mode == "parallel":  # each trial in its own process, the four of a task side by side
        pids = {heartbeat(d)["pid"] for d in dirs.values()}
        assert len(pids) == 8
    else:  # one process per task, trial after trial
        assert len({heartbeat(d)["pid"] for d in dirs.values()}) == 2


def test_a_pruned_trial_of_a_sequential_pack_gives_its_slot_to_the_next_trial_of_the_pack(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: packprune
        entrypoint: jobfns:pruned_at
        base: {epochs: 3, sleep: 0.2, lr: 0.0, prune_lr: 2, prune_epoch: 1}
        grid: {lr: [1, 2, 3]}
        launch: {profile: local, pack: 3, pack_mode: sequential}
        """,
    )
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "packprune" / "latest").resolve()
    wait_for(lambda: not {"RUNNING", "PENDING"} & set(states(sweep).values()), 300, "the pack's end", poll=2)
    assert states(sweep) == {"lr=1-s0": "COMPLETED", "lr=2-s0": "PRUNED", "lr=3-s0": "COMPLETED"}
    attempts = {t: r.latest for t, r in Ledger(sweep).records().items()}
    (task,) = {a["job_id"] for a in attempts.values()}  # one array task ran all three, in pack order
    assert [attempts[t]["pack_index"] for t in ("lr=1-s0", "lr=2-s0", "lr=3-s0")] == [0, 1, 2]
    assert (
        attempts["lr=3-s0"].get("first_started_at", 0) >= attempts["lr=2-s0"]["ended_at"]
    )  # after the prune
    dirs = run_dirs(sweep)
    assert {PACKED_DIR.match(d.name).group(1) for d in dirs.values()} == {task}
    assert len({heartbeat(d)["pid"] for d in dirs.values()}) == 1  # the same process, trial after trial
    assert epochs(dirs["lr=2-s0"]) == [1] and epochs(dirs["lr=3-s0"]) == [1, 2, 3]
    assert heartbeat(dirs["lr=2-s0"])["state"] == "PRUNED"
    wait_for(lambda: {r["State"] for r in sacct([task])} == {"COMPLETED"}, 60, "the task COMPLETED in sacct")


def test_kill_9_of_one_packed_trial_fails_that_trial_only_and_retry_resumes_it_alone(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: packkill
        entrypoint: jobfns:slow_counter
        base: {epochs: 12, sleep: 1.0, lr: 0.0}
        grid: {lr: [1, 2, 3]}
        launch: {profile: local, pack: 3}
        """,
    )
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "packkill" / "latest").resolve()
    victim = wait_for(
        lambda: next(
            (d for t, d in run_dirs(sweep).items() if t == "lr=2-s0" and heartbeat(d).get("epoch", 0) >= 2),
            None,
        ),
        180,
        "trial lr=2-s0 at epoch 2",
    )
    os.kill(heartbeat(victim)["pid"], signal.SIGKILL)
    wait_for(lambda: not {"RUNNING", "PENDING"} & set(states(sweep).values()), 300, "the pack's end", poll=2)
    final = sweep_status(Ledger(sweep))
    assert {s.trial_id: s.state for s in final} == {
        "lr=1-s0": "COMPLETED",
        "lr=2-s0": "FAILED",
        "lr=3-s0": "COMPLETED",
    }
    (killed,) = [s for s in final if s.state == "FAILED"]
    assert killed.error == "the trial's process was killed by signal 9 (SIGKILL)"
    done_at_kill = epochs(victim)

    out = cli("retry", "packkill").stdout
    assert "resubmitting 1 trial(s)" in out and "lr=2-s0" in out
    wait_for(lambda: states(sweep)["lr=2-s0"] == "COMPLETED", 300, "the retried trial COMPLETED", poll=2)
    assert run_dirs(sweep)["lr=2-s0"] == victim  # resumed in its run dir from last.pt
    assert epochs(victim) == list(range(1, 13)) and len(done_at_kill) >= 2
    records = Ledger(sweep).records()
    assert len(records["lr=2-s0"].attempts) == 2 and len(records["lr=1-s0"].attempts) == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_a_packed_task_that_times_out_resumes_every_trial_with_every_epoch_once(tmp_path, cli, mode):
    # time_min=2 with USR2 60 s before the limit: the signal comes ~45-60 s into each run, so a task needs
    # more than 60 s of work whatever the machine's speed (two 40 s trials in turn, or two 90 s side by side)
    n_epochs = 90 if mode == "parallel" else 40
    write_spec(
        tmp_path,
        f"""
        name: packtime
        entrypoint: jobfns:slow_counter
        base: {{epochs: {n_epochs}, sleep: 1.0, lr: 0.0}}
        grid: {{lr: [1, 2]}}
        launch: {{profile: local, time_min: 2, max_requeues: 4, pack: 2, pack_mode: {mode}}}
        """,
    )
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "packtime" / "latest").resolve()
    wait_for(lambda: set(states(sweep).values()) == {"COMPLETED"}, 540, "both trials COMPLETED", poll=3)
    dirs = run_dirs(sweep)
    assert set(dirs) == {"lr=1-s0", "lr=2-s0"}
    for run_dir in dirs.values():
        assert epochs(run_dir) == list(range(1, n_epochs + 1))
    requeued = [e for e in Ledger(sweep).events() if e.get("event") == "requeued"]
    assert requeued and {e["reason"] for e in requeued} == {"timeout"}
