"""`sweeper continue`: finished runs train on in the same run dir, as a new segment, through the real CLI and
submitit's local executor: the built-in trainer and a user entrypoint from last.pt, a command trial
(tests/progs/fake_train.py, a program that imports nothing from sweeper) from its own checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from sweeper.ledger import Ledger
from tests.conftest import start_cli, tiny_spec, wait_for, write_spec
from tests.test_command import PROG

IDS = ["weight_decay=0-s0", "weight_decay=0.01-s0", "weight_decay=0.1-s0"]


def run_dirs(sweep: Path) -> dict[str, Path]:
    """trial id -> run dir."""
    found = {}
    for config in sweep.glob("*/config.json"):
        trial_id = json.loads(config.read_text())["trial_id"]
        assert trial_id not in found, f"{trial_id} has two run dirs: {found[trial_id]}, {config.parent}"
        found[trial_id] = config.parent
    return found


def rows(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "metrics.parquet").to_pylist()


def weights_valid_loss(run_dir: Path, checkpoint: bytes) -> float:
    """The validation loss of the model weights in a last.pt, evaluated here as the trainer evaluates."""
    import io

    from sweeper.config import parse_train_config
    from sweeper.data import load_data
    from sweeper.evaluation import evaluate
    from sweeper.models import build_model

    cfg = parse_train_config(json.loads((run_dir / "config.json").read_text())["config"])
    data = load_data(cfg.data)
    model = build_model(cfg.model, data.info)
    state = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=False)["state"]
    model.load_state_dict(state["model"])
    import contextlib

    return evaluate(model, data.x_valid, data.y_valid, cfg.eval, contextlib.nullcontext(), ())["loss"]


def checkpoint_epoch(checkpoint: bytes | Path) -> int:
    """The last epoch a last.pt holds (its own record, and its metric rows')."""
    import io

    source = io.BytesIO(checkpoint) if isinstance(checkpoint, bytes) else checkpoint
    payload = torch.load(source, map_location="cpu", weights_only=False)
    assert json.loads(payload["metrics_json"])[-1]["epoch"] == payload["epoch"]
    return payload["epoch"]


@pytest.fixture
def finished(tmp_path, cli) -> Path:
    tiny_spec(tmp_path, "grid:\n  optim.weight_decay: [0.0, 0.01, 0.1]\n")
    cli("launch", "spec.yaml", "--executor", "local", "--set", "epochs=10")
    return (tmp_path / "runs" / "tiny" / "latest").resolve()


def test_continue_three_runs_from_10_to_20_epochs_with_a_new_lr(tmp_path, cli, finished):
    sweep = finished
    dirs = run_dirs(sweep)
    assert sorted(dirs) == IDS
    before = {t: (rows(d), (d / "last.pt").read_bytes()) for t, d in dirs.items()}

    out = cli("continue", "tiny", "--epochs", "20", "--set", "optim.lr=1e-4").stdout
    assert "continuing 3 trial(s) on local" in out and "optim.lr 0.003 -> 0.0001" in out
    assert "epochs 10 -> 20" in out and "COMPLETED 3" in out
    assert run_dirs(sweep) == dirs  # the same run dirs
    for trial_id, run_dir in dirs.items():
        old_rows, old_checkpoint = before[trial_id]
        now = rows(run_dir)
        assert [r["epoch"] for r in now] == list(range(1, 21))  # every epoch exactly once
        assert [r["segment"] for r in now] == [1] * 10 + [2] * 10
        assert now[:10] == [{**r, "segment": 1} for r in old_rows]  # the first ten epochs untouched
        assert now[10]["lr"] == 1e-4 and now[19]["lr"] == 1e-4  # constant after_continue, as asked
        # last.pt held the epoch-10 weights, and the continuation loaded exactly that file: it keeps the
        # checkpoint it trained on from, byte for byte, as last_segment1.pt
        assert weights_valid_loss(run_dir, old_checkpoint) == pytest.approx(
            old_rows[9]["valid/loss"], rel=1e-5
        )
        assert (run_dir / "last_segment1.pt").read_bytes() == old_checkpoint
        assert checkpoint_epoch(old_checkpoint) == 10 and checkpoint_epoch(run_dir / "last.pt") == 20
        assert now[10]["train/loss"] < 0.5 * now[0]["train/loss"]
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "COMPLETED" and status["segment"] == 2 and status["continued_at"] == [10]
        config = json.loads((run_dir / "config.json").read_text())["config"]
        assert config["epochs"] == 20 and config["optim"]["lr"] == 1e-4

    revision = Ledger(sweep).revisions()[-1]
    assert revision["kind"] == "continue" and sorted(revision["trials"]) == IDS
    assert {t: (s["segment"], s["start_epoch"], s["lr"]) for t, s in revision["segments"].items()} == {
        t: (2, 10, 1e-4) for t in IDS
    }
    assert {"key": "optim.lr", "old": 0.003, "new": 1e-4} in revision["changes"]
    assert {t.trial_id: t.config["epochs"] for t in Ledger(sweep).trials()} == dict.fromkeys(IDS, 20)
    table = cli(str(sweep), command="analyze").stdout
    assert "20/20 continued at 10" in table
    plotted = cli(str(sweep), "--plot", f"curves={tmp_path / 'curves.png'}", command="analyze").stderr
    assert "curves of 3 run(s), 3 continuation(s) as dotted lines" in plotted
    assert (tmp_path / "curves.png").stat().st_size > 0
    provenance = " ".join(cli(str(sweep), "--provenance", command="analyze").stdout.split())
    assert "continue" in provenance and "3 continued" in provenance

    # a continue of a continued run: the LR carries on from where it ended (the default)
    first = IDS[0]
    end_of_segment_2 = (dirs[first] / "last.pt").read_bytes()
    cli("continue", "tiny", first, "--epochs", "25")
    assert (dirs[first] / "last_segment2.pt").read_bytes() == end_of_segment_2
    assert (dirs[first] / "last_segment1.pt").read_bytes() == before[first][1]
    now = rows(dirs[first])
    assert [r["epoch"] for r in now] == list(range(1, 26))
    assert [r["segment"] for r in now] == [1] * 10 + [2] * 10 + [3] * 5
    assert now[20]["lr"] == now[19]["lr"] == 1e-4
    assert "continued at 10, 20" in cli(str(sweep), "--no-group", command="analyze").stdout

    # killed by kill -9 in the middle of a continuation, then retried: every epoch once, segment 4; the
    # retry resumes from the newer last.pt and leaves the kept start of segment 4 as it was
    end_of_segment_3 = (dirs[first] / "last.pt").read_bytes()
    continuing = start_cli(tmp_path, "continue", "tiny", first, "--epochs", "40")
    status = wait_for(
        lambda: (s := json.loads((dirs[first] / "status.json").read_text()))["epoch"] >= 28 and s,
        120,
        "epoch 28 of the continuation",
    )
    os.kill(status["pid"], signal.SIGKILL)
    continuing.communicate(timeout=60)
    assert continuing.returncode == 1
    kept = rows(dirs[first])
    assert [r["epoch"] for r in kept] == list(range(1, len(kept) + 1)) and 28 <= len(kept) < 40
    refused = cli("continue", "tiny", first, "--epochs", "50", check=False)  # retry is for a FAILED run
    assert refused.returncode == 1 and f"{first}: is FAILED; only COMPLETED" in refused.stderr
    assert Ledger(sweep).revisions()[-1]["epochs"] == 40
    cli("retry", "tiny")
    final = rows(dirs[first])
    assert [r["epoch"] for r in final] == list(range(1, 41))
    assert [r["segment"] for r in final] == [1] * 10 + [2] * 10 + [3] * 5 + [4] * 15
    assert {r["lr"] for r in final[25:]} == {1e-4}
    assert (dirs[first] / "last_segment3.pt").read_bytes() == end_of_segment_3
    assert checkpoint_epoch(dirs[first] / "last_segment3.pt") == 25


def test_continue_refuses_bad_input_and_writes_nothing(tmp_path, cli):
    tiny_spec(tmp_path, "grid:\n  optim.weight_decay: [0.0, 0.1]\n")
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "tiny" / "latest").resolve()
    (run_dirs(sweep)["weight_decay=0.1-s0"] / "last.pt").unlink()
    files = {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()}

    def refused(*args: str) -> str:
        result = cli("continue", "tiny", *args, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        return " ".join(result.stderr.split())

    assert "--epochs 2: not more than the 2 epochs weight_decay=0-s0 has run" in refused(
        "weight_decay=0-s0", "--epochs", "2"
    )
    assert "weight_decay=0.1-s0: no checkpoint (last.pt)" in refused("--epochs", "4")
    message = refused("--epochs", "4", "--set", "model.d_model=32")
    assert "--set: model.d_model: the model cannot change on continue" in message
    assert "last.pt holds the weights" in message
    assert "data.name: cannot change in the middle of a run" in refused(
        "--epochs", "4", "--set", "data.name=cifar10"
    )
    assert "no trial 'weight_decay=0-s9' (did you mean 'weight_decay=0-s0'?)" in refused(
        "weight_decay=0-s9", "--epochs", "4"
    )
    assert "--set: schedule.after_continue" in refused(
        "weight_decay=0-s0", "--epochs", "4", "--set", "schedule.after_continue=wavy"
    )
    assert {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()} == files


def test_two_continues_at_once_train_the_trial_on_once(tmp_path, cli):
    tiny_spec(tmp_path, "configs:\n  only: {}\n")
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "tiny" / "latest").resolve()
    racers = [start_cli(tmp_path, "continue", "tiny", "--epochs", "4") for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in racers]
    # the later one finds nothing left to take, or (planned once the first was submitted) a trial that is
    # no longer COMPLETED
    assert all(
        p.returncode == 0 or "only COMPLETED" in err for p, (_out, err) in zip(racers, outputs, strict=True)
    ), outputs
    submitted = [e for e in Ledger(sweep).events() if e["event"] == "submitted"]
    assert len(submitted) == 2  # the launch, and one continuation
    assert [r["kind"] for r in Ledger(sweep).revisions()] == ["launch", "continue"]
    (run_dir,) = run_dirs(sweep).values()
    assert [(r["epoch"], r["segment"]) for r in rows(run_dir)] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_a_user_entrypoint_trains_on_to_run_epochs_at_the_segment_lr(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: mine
        entrypoint: jobfns:train_on
        base: {epochs: 3, lr: 0.1, model: {width: 4}}
        configs: {only: {}}
        """,
    )
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "mine" / "latest").resolve()
    refused = cli("continue", "mine", "--epochs", "5", "--set", "model.width=8", check=False)
    assert refused.returncode == 1 and "the model cannot change on continue" in refused.stderr
    out = cli("continue", "mine", "--epochs", "5", "--set", "lr=0.01").stdout
    assert "lr 0.1 -> 0.01" in out and "COMPLETED 1" in out
    (run_dir,) = run_dirs(sweep).values()
    # run.epochs is the new target, the config the new one, run.segment.lr the LR given
    assert [(r["epoch"], r["segment"], r["lr"], r["train/segment_lr"]) for r in rows(run_dir)] == [
        (1, 1, 0.1, None),
        (2, 1, 0.1, None),
        (3, 1, 0.1, None),
        (4, 2, 0.01, 0.01),
        (5, 2, 0.01, 0.01),
    ]


def command_spec(tmp_path: Path, name: str, extra_args: str = ', "--checkpoint"', launch: str = "") -> None:
    """fake_train.py appending its rows to $SWEEPER_METRICS (a file read from its start each time the job
    starts) and training to $SWEEPER_EPOCHS (no `{epochs}` on its command line); with --checkpoint it
    resumes from its own state.json."""
    write_spec(
        tmp_path,
        f"""
        name: {name}
        command: [python, {PROG}, "--lr={{optim.lr}}", "--seed={{seed}}", "--format=file", "{{args}}"{extra_args}]
        base: {{optim: {{lr: 0.1}}, epochs: 4}}
        grid: {{optim.lr: [0.2, 0.5]}}
        launch: {{parallelism: 2{launch}}}
        """,
    )


def seen(run_dir: Path) -> list[dict]:
    """What each start of the program saw: its argv and its SWEEPER_* environment, oldest first."""
    found = [json.loads(p.read_text()) for p in run_dir.glob("env-*.json")]
    return sorted(found, key=lambda s: int(s["env"].get("SWEEPER_SEGMENT", 0)))


def test_command_trials_train_on_from_the_programs_checkpoint(tmp_path, cli):
    command_spec(tmp_path, "cmdcont")
    assert "COMPLETED 2" in cli("launch", "spec.yaml", "--executor", "local").stdout
    sweep = (tmp_path / "runs" / "cmdcont" / "latest").resolve()
    dirs = run_dirs(sweep)
    assert sorted(dirs) == ["lr=0.2-s0", "lr=0.5-s0"]
    before = {t: rows(d) for t, d in dirs.items()}

    out = cli("continue", "cmdcont", "--epochs", "8", "--set", "optim.lr=0.05").stdout
    assert "continuing 2 trial(s) on local" in out and "COMPLETED 2" in out
    assert "optim.lr various -> 0.05" in out and "epochs 4 -> 8" in out
    assert run_dirs(sweep) == dirs
    for trial_id, run_dir in dirs.items():
        now = rows(run_dir)
        assert [r["epoch"] for r in now] == list(range(1, 9))  # every epoch exactly once
        assert [r["segment"] for r in now] == [1] * 4 + [2] * 4
        assert now[:4] == before[trial_id]  # the first segment untouched, though metrics.jsonl is read again
        assert [r["lr"] for r in now[4:]] == [0.05] * 4  # the program ran with the --set value
        assert [r["train/loss"] for r in now] == [round(1 / k, 6) for k in range(1, 9)]
        first, second = seen(run_dir)
        assert "SWEEPER_RESUME" not in first["env"] and first["env"]["SWEEPER_EPOCHS"] == "4"
        # restarted in the same run dir, told to resume, to train to the new count, with the new lr in
        # every placeholder of its command line (the swept key too: `{optim.lr}` and `{args}`)
        assert second["env"]["SWEEPER_RESUME"] == "1" and second["env"]["SWEEPER_SEGMENT"] == "2"
        assert second["env"]["SWEEPER_EPOCHS"] == "8" and second["env"]["SWEEPER_RUN_DIR"] == str(run_dir)
        assert second["argv"][:4] == ["--lr=0.05", "--seed=0", "--format=file", "--optim.lr=0.05"]
        assert "resuming at epoch 5" in (run_dir / "job.log").read_text()  # from its own state.json
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 8  # it did not start over
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "COMPLETED" and status["segment"] == 2 and status["continued_at"] == [4]
    revision = Ledger(sweep).revisions()[-1]
    assert {t: (s["segment"], s["start_epoch"], s["lr"]) for t, s in revision["segments"].items()} == {
        t: (2, 4, 0.05) for t in dirs
    }

    # a continue of a continued run: the config keeps the lr it was given
    cli("continue", "cmdcont", "lr=0.5-s0", "--epochs", "10")
    now = rows(dirs["lr=0.5-s0"])
    assert [(r["epoch"], r["segment"]) for r in now] == [
        (e, 1 if e <= 4 else 2 if e <= 8 else 3) for e in range(1, 11)
    ]
    assert [r["lr"] for r in now[8:]] == [0.05, 0.05]
    third = seen(dirs["lr=0.5-s0"])[-1]
    assert third["env"]["SWEEPER_SEGMENT"] == "3" and third["env"]["SWEEPER_EPOCHS"] == "10"
    assert third["argv"][0] == "--lr=0.05"
    assert [r["epoch"] for r in rows(dirs["lr=0.2-s0"])] == list(range(1, 9))  # the other left as it was


def test_a_command_trial_whose_program_does_not_resume_keeps_the_earlier_segment(tmp_path, cli):
    command_spec(tmp_path, "cmdfresh", extra_args="")  # no --checkpoint: it starts at epoch 1 every time
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "cmdfresh" / "latest").resolve()
    run_dir = run_dirs(sweep)["lr=0.2-s0"]
    before = rows(run_dir)
    cli("continue", "cmdfresh", "lr=0.2-s0", "--epochs", "6", "--set", "optim.lr=0.9")
    now = rows(run_dir)
    assert [(r["epoch"], r["segment"]) for r in now] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
    assert now[:4] == before  # not overwritten by the epochs it trained again (at another lr)
    assert "epoch 1 belongs to an earlier segment" in (run_dir / "job.log").read_text()


@pytest.mark.slurm
def test_continue_on_slurm_trains_on_in_the_same_run_dir(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: contslurm
        entrypoint: jobfns:train_on
        base: {epochs: 2, lr: 0.1}
        configs: {only: {}}
        launch: {profile: local}
        """,
    )
    try:
        assert "COMPLETED 1" in cli("launch", "spec.yaml", "--wait").stdout
        sweep = (tmp_path / "runs" / "contslurm" / "latest").resolve()
        out = cli("continue", "contslurm", "--epochs", "4", "--wait").stdout
        assert "continuing 1 trial(s) on slurm" in out and "COMPLETED 1" in out
        (run_dir,) = run_dirs(sweep).values()
        assert [(r["epoch"], r["segment"]) for r in rows(run_dir)] == [(1, 1), (2, 1), (3, 2), (4, 2)]
        jobs = [a["job_id"] for a in Ledger(sweep).records()["only-s0"].attempts]
        assert len(jobs) == 2 and jobs[0] != jobs[1]  # a new job, the same run dir
    finally:
        cancel_jobs(tmp_path)


def cancel_jobs(tmp_path: Path) -> None:
    """A failing test leaves nothing running on the shared cluster."""
    job_ids = {
        json.loads(line)["job_id"].split("_")[0]
        for attempts in (tmp_path / "runs").glob("*/*/attempts.jsonl")
        for line in attempts.read_text().splitlines()
        if json.loads(line).get("job_id")
    }
    if job_ids:
        subprocess.run(["scancel", *sorted(job_ids)], capture_output=True)


@pytest.mark.slurm
def test_a_command_trial_continues_on_slurm_in_the_same_run_dir(tmp_path, cli):
    command_spec(tmp_path, "cmdslurm", launch=", profile: local")
    try:
        assert "COMPLETED 2" in cli("launch", "spec.yaml", "--wait").stdout
        sweep = (tmp_path / "runs" / "cmdslurm" / "latest").resolve()
        out = cli("continue", "cmdslurm", "lr=0.2-s0", "--epochs", "6", "--set", "optim.lr=0.05", "--wait")
        assert "continuing 1 trial(s) on slurm" in out.stdout and "COMPLETED 1" in out.stdout
        run_dir = run_dirs(sweep)["lr=0.2-s0"]
        now = rows(run_dir)
        assert [(r["epoch"], r["segment"], r["lr"]) for r in now] == [
            *((e, 1, 0.2) for e in range(1, 5)),
            (5, 2, 0.05),
            (6, 2, 0.05),
        ]
        second = seen(run_dir)[-1]
        assert second["env"]["SWEEPER_RESUME"] == "1" and second["env"]["SWEEPER_EPOCHS"] == "6"
        assert second["argv"][0] == "--lr=0.05"
        jobs = [a["job_id"] for a in Ledger(sweep).records()["lr=0.2-s0"].attempts]
        assert len(jobs) == 2 and jobs[0] != jobs[1]  # a new job, the same run dir
    finally:
        cancel_jobs(tmp_path)
