"""Warm local jobs (sweeper/zygote.py): every local job is forked by the launcher's zygote, with its imports
done, and stays its own process: a kill -9 takes only that trial down, and a zygote that dies leaves the
running jobs to finish and the next ones to start cold."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.conftest import start_cli, wait_for, write_spec


def spec(tmp_path: Path, name: str, configs: str, parallelism: int = 2) -> None:
    write_spec(
        tmp_path,
        f"name: {name}\nentrypoint: jobfns:who_runs_me\nbase: {{epochs: 1}}\nconfigs:\n{configs}\n"
        f"launch: {{parallelism: {parallelism}}}\n",
    )


def parents(tmp_path: Path, name: str) -> dict[str, dict]:
    sweep = tmp_path / "runs" / name / "latest"
    found = {}
    for run_dir in sweep.glob("*_j*"):
        trial = json.loads((run_dir / "config.json").read_text())["trial_id"]
        found[trial] = json.loads((run_dir / "parent.json").read_text())
    return found


def test_local_jobs_are_forked_by_one_zygote_and_cold_without_it(tmp_path, cli):
    spec(tmp_path, "warm", "  a: {}\n  b: {}\n  c: {}\n")
    cli("launch", "spec.yaml", "--executor", "local")
    seen = parents(tmp_path, "warm")
    assert set(seen) == {"a-s0", "b-s0", "c-s0"}
    assert all("sweeper.zygote" in " ".join(p["parent"]) for p in seen.values()), seen
    assert len({p["pid"] for p in seen.values()}) == 3  # a process per trial
    status = json.loads(cli("status", "warm", "--format", "json").stdout)
    assert {t["state"] for t in status["trials"]} == {"COMPLETED"}
    assert (tmp_path / "runs" / "warm" / "latest" / "submitit" / "zygote.log").exists()

    spec(tmp_path, "cold", "  a: {}\n")
    os.environ["SWEEPER_ZYGOTE"] = "off"
    try:
        cli("launch", "spec.yaml", "--executor", "local")
    finally:
        del os.environ["SWEEPER_ZYGOTE"]
    (cold,) = parents(tmp_path, "cold").values()
    assert "sweeper.job_parent" in " ".join(cold["parent"])


def test_kill_9_of_a_forked_job_fails_only_that_trial(tmp_path, cli):
    go = tmp_path / "go"
    spec(tmp_path, "k9", f"  victim: {{wait_for: {go}}}\n  other: {{wait_for: {go}}}\n")
    launcher = start_cli(tmp_path, "launch", "spec.yaml", "--executor", "local")
    sweep = tmp_path / "runs" / "k9" / "latest"
    wait_for(lambda: len(list(sweep.glob("*_j*/parent.json"))) == 2, 120, "both jobs started")
    seen = parents(tmp_path, "k9")
    os.kill(seen["victim-s0"]["pid"], signal.SIGKILL)
    go.touch()
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 1, out + err
    status = json.loads(cli("status", "k9", "--format", "json", check=False).stdout)
    states = {t["trial_id"]: (t["state"], t["error"]) for t in status["trials"]}
    assert states["other-s0"] == ("COMPLETED", None)
    assert states["victim-s0"][0] == "FAILED"
    assert "killed by signal 9 (SIGKILL, exit code 137" in states["victim-s0"][1]


def test_a_dead_zygote_lets_running_jobs_finish_and_later_ones_start_cold(tmp_path, cli):
    go = tmp_path / "go"
    spec(tmp_path, "dz", f"  first: {{wait_for: {go}}}\n  second: {{}}\n", parallelism=1)
    launcher = start_cli(tmp_path, "launch", "spec.yaml", "--executor", "local")
    sweep = tmp_path / "runs" / "dz" / "latest"
    wait_for(lambda: len(list(sweep.glob("*_j*/parent.json"))) == 1, 120, "the first job started")
    (first,) = parents(tmp_path, "dz").values()
    zygote_pid = int(Path(f"/proc/{first['pid']}/stat").read_text().split(") ")[1].split()[1])
    os.kill(zygote_pid, signal.SIGKILL)
    go.touch()
    out, err = launcher.communicate(timeout=180)
    assert launcher.returncode == 0, out + err
    seen = parents(tmp_path, "dz")
    assert "sweeper.zygote" in " ".join(seen["first-s0"]["parent"])
    assert "sweeper.job_parent" in " ".join(seen["second-s0"]["parent"])
    status = json.loads(cli("status", "dz", "--format", "json").stdout)
    assert {t["state"] for t in status["trials"]} == {"COMPLETED"}
