"""Faults with real processes: kill -9 at random points, concurrent launches and retries, torn ledger lines,
many Optuna workers on one journal, a full disk and a read-only run dir. Nothing may be lost."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from sweeper.fsutil import append_jsonl, read_jsonl
from tests.conftest import start_cli, wait_for, write_spec

pytestmark = pytest.mark.slow


def background_launch(tmp_path: Path, *args: str) -> subprocess.Popen:
    return start_cli(tmp_path, "launch", "spec.yaml", "--executor", "local", *args)


def sweep_dir(tmp_path: Path, name: str) -> Path:
    return wait_for(
        lambda: (
            (tmp_path / "runs" / name / "latest" / "sweep.json").exists()
            and (tmp_path / "runs" / name / "latest").resolve()
        ),
        60,
        "sweep dir",
        poll=0.05,
    )


def run_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())


def check_run_dir(run_dir: Path, complete_epochs: int | None = None) -> list[int]:
    """The run dir's files are readable and consistent: parquet epochs 1..k, checkpoint at k or k-1."""
    epochs = (
        pq.read_table(run_dir / "metrics.parquet").column("epoch").to_pylist()
        if (run_dir / "metrics.parquet").exists()
        else []
    )
    assert epochs == list(range(1, len(epochs) + 1)), epochs
    if (run_dir / "last.pt").exists():
        payload = torch.load(run_dir / "last.pt", weights_only=False)
        assert payload["epoch"] in (len(epochs), len(epochs) - 1)
        assert [r["epoch"] for r in json.loads(payload["metrics_json"])] == list(
            range(1, payload["epoch"] + 1)
        )
    if (run_dir / "status.json").exists():
        json.loads((run_dir / "status.json").read_text())
    if complete_epochs is not None:
        assert epochs == list(range(1, complete_epochs + 1))
    return epochs


def test_kill_9_at_random_points_of_an_epoch_loses_nothing(tmp_path, cli):
    """20 trials, each killed once at a random point of a random epoch; retry resumes every one of them."""
    n, epochs = 20, 8
    configs = "".join(f"  k{i:02d}: {{}}\n" for i in range(n))
    write_spec(
        tmp_path,
        f"name: kills\nentrypoint: jobfns:slow_counter\nbase: {{epochs: {epochs}, sleep: 0.1}}\n"
        f"configs:\n{configs}launch: {{parallelism: 4}}\n",
    )
    rng = random.Random(1234)
    plan = {f"k{i:02d}-s0": (rng.randint(1, epochs - 2), rng.uniform(0.0, 0.1)) for i in range(n)}
    launcher = background_launch(tmp_path)
    sweep = sweep_dir(tmp_path, "kills")
    killed: dict[str, int] = {}
    deadline = time.time() + 300
    while len(killed) < n and time.time() < deadline and launcher.poll() is None:
        for run_dir in run_dirs(sweep):
            status = (
                json.loads((run_dir / "status.json").read_text())
                if (run_dir / "status.json").exists()
                else None
            )
            if not status or status["trial_id"] in killed or status.get("state") != "RUNNING":
                continue
            at_epoch, into_epoch = plan[status["trial_id"]]
            if status["epoch"] >= at_epoch:
                time.sleep(into_epoch)  # somewhere inside the next epoch (0.1 s of work + the writes)
                try:
                    os.kill(status["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed[status["trial_id"]] = status["epoch"]
        time.sleep(0.02)
    launcher.communicate(timeout=120)
    assert len(killed) == n, f"killed {len(killed)} of {n}"
    assert launcher.returncode == 1

    for run_dir in run_dirs(sweep):
        assert (
            len(check_run_dir(run_dir)) < epochs
        )  # every one was stopped before its end, its files readable
    status = cli("status", "kills").stdout
    assert f"FAILED {n}" in status

    cli("retry", "kills")
    dirs = run_dirs(sweep)
    assert len(dirs) == n  # resumed in place, no new run dirs
    for run_dir in dirs:
        check_run_dir(run_dir, complete_epochs=epochs)  # every epoch exactly once
        assert json.loads((run_dir / "status.json").read_text())["state"] == "COMPLETED"
    assert f"COMPLETED {n}" in cli("status", "kills").stdout


def _append_many(args):
    path, worker, count = args
    for i in range(count):
        append_jsonl(path, [{"worker": worker, "i": i, "pad": "x" * random.randint(0, 5000)}])


def test_concurrent_ledger_appends_are_never_torn_or_lost(tmp_path):
    path = tmp_path / "attempts.jsonl"
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.map(_append_many, [(path, w, 300) for w in range(8)])
    records = read_jsonl(path)
    assert len(path.read_text().splitlines()) == 8 * 300 == len(records)
    assert {(r["worker"], r["i"]) for r in records} == {(w, i) for w in range(8) for i in range(300)}


SLOW = "name: twice\nentrypoint: jobfns:slow_counter\nbase: {epochs: 6, sleep: 0.2}\nconfigs: {a: {}, b: {}, c: {}}\n"


def test_two_launches_at_once_get_their_own_sweep_and_run_each_trial_once(tmp_path):
    write_spec(tmp_path, SLOW)
    first, second = background_launch(tmp_path), background_launch(tmp_path)
    for proc in (first, second):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
    sweeps = sorted(p for p in (tmp_path / "runs" / "twice").iterdir() if p.is_dir() and not p.is_symlink())
    assert len(sweeps) == 2
    for sweep in sweeps:
        events = read_jsonl(sweep / "attempts.jsonl")
        assert sorted(e["trial_id"] for e in events if e["event"] == "started") == ["a-s0", "b-s0", "c-s0"]
        for run_dir in run_dirs(sweep):
            check_run_dir(run_dir, complete_epochs=6)


def test_retry_while_running_submits_nothing_and_concurrent_retries_submit_once(tmp_path, cli):
    write_spec(tmp_path, SLOW.replace("twice", "busy"))
    launcher = background_launch(tmp_path)
    sweep = sweep_dir(tmp_path, "busy")
    wait_for(lambda: len(run_dirs(sweep)) >= 2, 60, "two trials running", poll=0.05)
    assert (
        "nothing to submit" in cli("retry", "busy", "--state", "RUNNING,PENDING,NOT_SUBMITTED,FAILED").stdout
    )
    # kill everything: every trial fails, then two retries race
    for run_dir in run_dirs(sweep):
        wait_for(lambda run_dir=run_dir: (run_dir / "status.json").exists(), 60, "status.json", poll=0.05)
        pid = json.loads((run_dir / "status.json").read_text())["pid"]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    launcher.communicate(timeout=120)
    cli("resume", "busy")  # trials the launcher never got to
    statuses = cli("status", "busy").stdout
    assert "RUNNING" not in statuses
    retries = [start_cli(tmp_path, "retry", "busy") for _ in range(2)]
    for proc in retries:
        proc.communicate(timeout=180)
    events = read_jsonl(sweep / "attempts.jsonl")
    starts: dict[str, int] = {}
    for event in events:
        if event["event"] == "ended" and event.get("state") == "COMPLETED":
            starts[event["trial_id"]] = starts.get(event["trial_id"], 0) + 1
    assert starts == {"a-s0": 1, "b-s0": 1, "c-s0": 1}  # each trial completed exactly once
    from sweeper.ledger import Ledger

    for record in Ledger(sweep).records().values():
        check_run_dir(sweep / record.latest["run_dir"], complete_epochs=6)
    for run_dir in run_dirs(
        sweep
    ):  # an attempt killed before its first checkpoint left a run dir: still readable
        check_run_dir(run_dir)


def test_eight_optuna_workers_on_one_journal_account_for_every_trial(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: many
        entrypoint: jobfns:curve
        base: {epochs: 3, lr: 0.01, dropout: 0.0}
        search:
          params: {lr: {type: float, low: 1e-4, high: 1.0, log: true}, dropout: {type: float, low: 0.0, high: 0.5}}
          sampler: {name: tpe, seed: 0}
          pruner: none
          n_trials: 40
          workers: 8
    """,
    )
    cli("launch", "spec.yaml", "--executor", "local", timeout=600)
    from sweeper.ledger import Ledger
    from sweeper.study import load_study

    ledger = Ledger((tmp_path / "runs/many/latest").resolve())
    trials = load_study(ledger, ledger.launched_spec()).get_trials()
    assert [t.number for t in trials] == list(range(40))
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["run_dirs"]["0"] for t in trials}) == 40
    assert len({t.user_attrs["job_id"] for t in trials}) >= 2  # workers shared the budget
    for trial in trials:
        check_run_dir(ledger.dir / trial.user_attrs["run_dirs"]["0"], complete_epochs=3)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs under CI: {result.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_clearly_and_keeps_earlier_epochs(tmp_path, cli, small_disk):
    # each checkpoint holds `grow` MB more than the last: the 6 MB disk fills after a few epochs
    write_spec(
        tmp_path,
        "name: full\nentrypoint: jobfns:growing_checkpoint\nbase: {epochs: 20, grow: 1}\nconfigs: {a: {}}\n",
    )
    result = cli("launch", "spec.yaml", "--executor", "local", "--root", str(small_disk), check=False)
    assert result.returncode == 1 and "FAILED 1" in result.stdout
    assert "No space left on device" in result.stdout
    (run_dir,) = run_dirs((small_disk / "full" / "latest").resolve())
    epochs = check_run_dir(run_dir)
    assert 1 <= len(epochs) < 20
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "FAILED" and "No space left on device" in status["error"]
    assert "No space left on device" in (run_dir / "job.log").read_text()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file left behind


def test_read_only_run_dir_fails_clearly_and_keeps_earlier_epochs(tmp_path, cli):
    write_spec(
        tmp_path,
        "name: ro\nentrypoint: jobfns:slow_counter\nbase: {epochs: 40, sleep: 0.1}\nconfigs: {a: {}}\n",
    )
    launcher = background_launch(tmp_path)
    sweep = sweep_dir(tmp_path, "ro")
    run_dir = wait_for(
        lambda: next(
            (
                d
                for d in run_dirs(sweep)
                if (d / "status.json").exists() and json.loads((d / "status.json").read_text())["epoch"] >= 3
            ),
            None,
        ),
        60,
        "epoch 3",
        poll=0.05,
    )
    bind = subprocess.run(
        f"mount --bind {run_dir} {run_dir} && mount -o remount,ro,bind {run_dir}",
        shell=True,
        capture_output=True,
        text=True,
    )
    if bind.returncode != 0:
        launcher.kill()
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot bind-mount read-only under CI: {bind.stderr.strip()}")
        pytest.skip(f"cannot make a read-only bind mount here ({bind.stderr.strip()})")
    try:
        out, err = launcher.communicate(timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(run_dir)], check=False)
    assert launcher.returncode == 1 and "FAILED 1" in out
    assert "Read-only file system" in out
    epochs = check_run_dir(run_dir)
    assert 3 <= len(epochs) < 40
    assert "Read-only file system" in cli("status", "ro").stdout
