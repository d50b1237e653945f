"""Command trials on the real local SLURM cluster: a program that runs into its time limit gets the
forwarded SIGUSR2, checkpoints, and resumes in the same run dir with every epoch once; one requeued without
warning (`scontrol requeue`) resumes the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeper.ledger import Ledger
from tests.conftest import write_spec
from tests.slurm_cluster import run, wait_for
from tests.test_command import PROG, metric_rows, runs_by_trial, sweep_of
from tests.test_slurm import cancel_leftovers, events, heartbeat, states  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.slurm


def slow_command_spec(tmp_path: Path, name: str, epochs: int, launch: str) -> None:
    write_spec(
        tmp_path,
        f"""
        name: {name}
        command: [python, {PROG}, "--lr=0.3", "--epochs={{epochs}}", "--sleep=1", "--checkpoint"]
        base: {{epochs: {epochs}}}
        configs: {{only: {{}}}}
        signals: {{grace_s: 10}}
        launch: {launch}
        """,
    )


def seen_environments(run_dir: Path) -> list[dict]:
    return [
        json.loads(p.read_text())["env"]
        for p in sorted(run_dir.glob("env-*.json"), key=lambda p: p.stat().st_mtime)
    ]


@pytest.mark.slow
def test_a_command_trial_out_of_time_checkpoints_on_the_forwarded_signal_and_resumes(tmp_path, cli):
    # timeout_min=2 with USR2 60 s before: the signal comes ~45-60 s into each run
    slow_command_spec(tmp_path, "cmdtimeout", 80, "{profile: local, time_min: 2, max_requeues: 3}")
    cli("launch", "spec.yaml")
    sweep = sweep_of(tmp_path, "cmdtimeout")
    wait_for(lambda: states(sweep)["only-s0"] == "COMPLETED", 480, "COMPLETED after requeues", poll=3)
    (run_dir,) = runs_by_trial(sweep).values()
    assert [r["epoch"] for r in metric_rows(run_dir)] == list(range(1, 81))  # every epoch once
    requeues = events(sweep, "only-s0", "requeued")
    assert requeues and {e["reason"] for e in requeues} == {"timeout"}
    environments = seen_environments(run_dir)
    assert len(environments) == len(requeues) + 1
    assert "SWEEPER_RESUME" not in environments[0] and all(
        e["SWEEPER_RESUME"] == "1" for e in environments[1:]
    )
    assert "resuming at epoch" in (run_dir / "job.log").read_text()  # the program's own checkpoint


def test_a_command_trial_requeued_without_warning_resumes_in_the_same_run_dir(tmp_path, cli):
    slow_command_spec(tmp_path, "cmdrequeue", 25, "{profile: local, time_min: 20}")
    cli("launch", "spec.yaml")
    sweep = sweep_of(tmp_path, "cmdrequeue")
    job_id = Ledger(sweep).records()["only-s0"].latest["job_id"]
    run_dir = wait_for(lambda: next(iter(runs_by_trial(sweep).values()), None), 120, "the run dir")
    wait_for(lambda: heartbeat(run_dir).get("epoch", 0) >= 4, 120, "epoch 4")
    run("scontrol", "requeue", job_id)
    wait_for(lambda: len(events(sweep, "only-s0", "started")) == 2, 120, "the restart")
    wait_for(lambda: states(sweep)["only-s0"] == "COMPLETED", 240, "COMPLETED after the requeue", poll=2)
    assert list(runs_by_trial(sweep).values()) == [run_dir]
    assert [r["epoch"] for r in metric_rows(run_dir)] == list(range(1, 26))
    environments = seen_environments(run_dir)
    assert len(environments) == 2 and environments[1]["SWEEPER_RESUME"] == "1"
    assert not events(sweep, "only-s0", "ended")[:-1]  # no failure recorded for the killed first run
