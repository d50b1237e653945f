"""The whole loop on this machine, through the real CLI and submitit's real local executor."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, cli_env, start_cli, tiny_spec, wait_for, write_spec
from tests.test_metrics import tensorboard_scalars

RUN_DIR_NAME = re.compile(r"^\d{8}_\d{6}_j\d+$")


def sweep_dir_of(tmp_path: Path, name: str) -> Path:
    return (tmp_path / "runs" / name / "latest").resolve()


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())


def test_tiny_sweep_end_to_end(tmp_path, cli):
    tiny_spec(tmp_path, "configs:\n  a: {optim.weight_decay: 0.0}\n  b: {optim.weight_decay: 0.1}\n")
    result = cli("launch", "spec.yaml", "--executor", "local")
    assert "COMPLETED 2" in result.stdout
    sweep = sweep_dir_of(tmp_path, "tiny")
    for name in (
        "spec.yaml",
        "spec.source.yaml",
        "provenance.json",
        "git.diff",
        "trials.jsonl",
        "attempts.jsonl",
        "sweep.json",
    ):
        assert (sweep / name).is_file(), name
    provenance = json.loads((sweep / "provenance.json").read_text())
    assert (
        provenance["python"] == sys.version.split()[0]
        and provenance["torch"]
        and "launch" in provenance["command"]
    )
    assert any(p.startswith("torch==") for p in provenance["packages"])
    events = [json.loads(line) for line in (sweep / "attempts.jsonl").read_text().splitlines()]
    attempts = sorted(e["event"] for e in events if e["event"] in ("submitted", "started", "ended"))
    assert attempts == ["ended"] * 2 + ["started"] * 2 + ["submitted"] * 2
    assert (
        sorted(e["event"] for e in events if e["event"] not in attempts) == ["queued"] * 2
    )  # the launcher's queue

    dirs = run_dirs(sweep)
    assert len(dirs) == 2 and all(RUN_DIR_NAME.match(d.name) for d in dirs)
    seen = set()
    for run_dir in dirs:
        config = json.loads((run_dir / "config.json").read_text())
        seen.add(config["trial_id"])
        assert config["seed"] == 0 and config["config"]["epochs"] == 2
        assert run_dir.name.endswith(f"_j{config['job_id']}")
        table = pq.read_table(run_dir / "metrics.parquet")
        assert table.column_names[:3] == ["epoch", "time_s", "lr"]
        assert {"train/loss", "train/acc", "valid/loss", "valid/acc"} <= set(table.column_names)
        assert table.column("epoch").to_pylist() == [1, 2]
        assert all(0.0 <= a <= 1.0 for a in table.column("valid/acc").to_pylist())
        assert (run_dir / "last.pt").stat().st_size > 0
        assert (run_dir / "job.log").is_file()
        assert json.loads((run_dir / "status.json").read_text())["state"] == "COMPLETED"
        # TensorBoard reads the same values, exactly
        values = [value for _, value in tensorboard_scalars(run_dir)["valid/acc"]]
        assert values == table.column("valid/acc").to_pylist()
    assert seen == {"a-s0", "b-s0"}

    table = cli("--checkpoints-path", str(sweep), command="analyze").stdout
    assert "a " in table or "│ a" in table
    assert "Best config:" in table
    markdown = cli("--checkpoints-path", str(sweep), "--format", "markdown", command="analyze").stdout
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header[:2] == ["config", "weight_decay"] and len(rows) == 3
    assert {r.split("|")[1].strip() for r in rows[1:]} == {"a", "b"}

    status = cli("status").stdout
    assert "tiny/" in status and "COMPLETED 2" in status


def test_status_best_progress_and_an_unreadable_heartbeat(tmp_path, cli):
    """status's best is analyze's best config (a seed mean), progress shows the objective, and a broken
    status.json is one warning line, not "COMPLETED 0/2" (status) or UNKNOWN (analyze)."""
    write_spec(
        tmp_path,
        """
        name: scripted
        entrypoint: jobfns:scripted
        base: {epochs: 2}
        configs:
          lucky: {losses: [[0.3, 0.2], [0.9, 0.8]]}   # the best single run (0.2), a mean of 0.5
          steady: {losses: [[0.4, 0.35], [0.45, 0.4]]}  # the best config: a mean of 0.375
        seeds: [0, 1]
        objective: {metric: valid/loss}
        launch: {parallelism: 2}
    """,
    )
    launched = cli("launch", "spec.yaml", "--executor", "local").stdout  # not a terminal: log lines
    assert "COMPLETED 4" in launched
    assert "valid/loss 0.4000" in launched and "valid/acc" not in launched
    overview = cli("status").stdout
    assert "best config (seed mean)" in overview and "valid/loss 0.3750" in overview
    assert "0.2000" not in overview
    analyzed = cli("-p", "runs/scripted/latest", command="analyze").stdout
    assert "Best config: steady" in analyzed and "0.3750" in analyzed

    sweep = sweep_dir_of(tmp_path, "scripted")
    broken = next(d for d in run_dirs(sweep) if "steady-s1" in (d / "config.json").read_text())
    (broken / "status.json").write_text('{"state": "COMPL')
    status = cli("status", "scripted")
    warnings = [line for line in status.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{broken.name}/status.json: not JSON" in warnings[0], status.stdout
    narrow = subprocess.run(  # a warning names a path: one line even past the width, for grep
        [sys.executable, "-m", "sweeper.cli", "status", "scripted"],
        cwd=tmp_path,
        env={**cli_env(), "COLUMNS": "80"},
        capture_output=True,
        text=True,
    )
    (warning,) = [line for line in narrow.stdout.splitlines() if line.startswith("warning:")]
    assert f"{broken.name}/status.json: not JSON" in warning and len(warning) > 80
    table = "\n".join(line for line in status.stdout.splitlines() if not line.startswith("warning:"))
    assert "0/2" not in table and "COMPLETED 4" in table  # (not in the warning: its path may hold "0/2")
    analyzed = cli("-p", str(sweep), "--no-group", "--format", "json", command="analyze")
    warnings = [line for line in analyzed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{broken.name}/status.json: not JSON" in warnings[0]
    runs = {r["trial_id"]: r for r in json.loads(analyzed.stdout)["runs"]}
    assert runs["steady-s1"]["state"] == "COMPLETED"  # from the ledger's end of that attempt


def test_dry_run_submits_nothing(tmp_path, cli):
    tiny_spec(tmp_path, "grid:\n  optim.lr: [0.1, 0.01]\nseeds: [0, 1]\n")
    out = cli("launch", "spec.yaml", "--executor", "local", "--dry-run").stdout
    assert "4 trials" in out and "lr=0.1-s0" in out and "lr=0.01-s1" in out and "nothing submitted" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml")))
def test_every_example_sweep_validates_without_warnings(tmp_path, cli, example):
    shutil.copy(REPO / "sweeps" / example, tmp_path / example)
    result = cli("launch", example, "--executor", "local", "--dry-run")
    assert "nothing submitted" in result.stdout and "warning" not in result.stdout + result.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_spec_is_one_line_and_writes_nothing(tmp_path, cli):
    tiny_spec(tmp_path, "grid:\n  optim.lrr: [0.1]\n")
    result = cli("launch", "spec.yaml", "--executor", "local", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: spec.yaml:11: grid.optim.lrr: unknown key (did you mean 'lr'?)"
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_failed_trial_is_reported_with_its_error(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: failing
        entrypoint: jobfns:fail_at
        base: {epochs: 4, fail_epoch: 3}
        configs: {only: {}}
    """,
    )
    result = cli("launch", "spec.yaml", "--executor", "local", check=False)
    assert result.returncode == 1 and "FAILED 1" in result.stdout
    assert "RuntimeError: boom at epoch 3" in result.stdout
    status = cli("status", "failing").stdout
    assert "FAILED" in status and "boom at epoch 3" in status
    (run_dir,) = run_dirs(sweep_dir_of(tmp_path, "failing"))
    assert pq.read_table(run_dir / "metrics.parquet").column("epoch").to_pylist() == [1, 2]
    assert "boom at epoch 3" in (run_dir / "job.log").read_text()


def test_killed_job_keeps_its_epochs_and_retry_resumes_without_duplicates(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: killme
        entrypoint: jobfns:slow_counter
        base: {epochs: 25, sleep: 0.15}
        configs: {only: {}}
    """,
    )
    launcher = start_cli(tmp_path, "launch", "spec.yaml", "--executor", "local")
    sweep = wait_for(
        lambda: (tmp_path / "runs/killme/latest/sweep.json").exists() and sweep_dir_of(tmp_path, "killme"),
        60,
        "sweep dir",
    )

    def status_at_epoch_4():
        dirs = run_dirs(sweep)
        if dirs and (dirs[0] / "status.json").exists():
            status = json.loads((dirs[0] / "status.json").read_text())
            return status if status["epoch"] >= 4 else None
        return None

    status = wait_for(status_at_epoch_4, 120, "epoch 4")
    os.kill(status["pid"], signal.SIGKILL)  # the training process itself, mid-epoch
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 1, out + err
    assert "FAILED 1" in out
    # the job's own end, not that of submitit's controller between the launcher and the job
    killed = "killed by signal 9 (SIGKILL"
    assert killed in out and "code 0" not in out

    (run_dir,) = run_dirs(sweep)
    epochs = pq.read_table(run_dir / "metrics.parquet").column("epoch").to_pylist()
    assert epochs == list(range(1, len(epochs) + 1)) and 4 <= len(epochs) < 25
    status_out = cli("status", "killme").stdout
    assert "FAILED" in status_out and killed in status_out
    analyzed = cli("-p", str(sweep), command="analyze")
    assert "FAILED" in analyzed.stdout and killed in analyzed.stdout  # the run dir still says RUNNING

    cli("retry", "killme")
    assert run_dirs(sweep) == [run_dir]  # resumed in the same run dir
    table = pq.read_table(run_dir / "metrics.parquet")
    assert table.column("epoch").to_pylist() == list(range(1, 26))  # every epoch exactly once
    final = json.loads((run_dir / "status.json").read_text())
    assert final["state"] == "COMPLETED" and final["restarts"] == 1
    status_out = cli("status", "killme").stdout
    assert "COMPLETED" in status_out and "FAILED" not in status_out
    # a finished trial is never run again
    assert "nothing to submit" in cli("retry", "killme", "--state", "COMPLETED,FAILED").stdout
