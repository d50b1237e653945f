"""Command trials: any program as a trial (tests/progs/fake_train.py, which imports nothing from sweeper),
run by real local jobs: every metric source read back from metrics.parquet, the environment and config
files the program gets, exit codes, kill -9 then retry, pruning that kills the program, cancel, a flood of
output, and the mistakes caught at launch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sweeper.ledger import Ledger
from sweeper.process import pid_alive
from tests.conftest import cli_env, start_cli, wait_for, write_spec

PROG = Path(__file__).parent / "progs" / "fake_train.py"


def command_spec(
    tmp_path: Path, name: str, extra: str = "", args: str = "", grid: str = "optim.lr: [0.2, 0.5]"
) -> Path:
    return write_spec(
        tmp_path,
        f"""
        name: {name}
        command: [python, {PROG}, "--lr={{optim.lr}}", "--epochs={{epochs}}", "--seed={{seed}}"{args}]
        base: {{optim: {{lr: 0.1}}, epochs: 4}}
        grid: {{{grid}}}
        launch: {{parallelism: 2}}
        """
        + textwrap.dedent(extra),
        name=f"{name}.yaml",
    )


def expected_rows(lr: float, epochs: int, first: int = 1) -> list[dict]:
    rows = []
    for epoch in range(first, first + epochs):
        k = epoch - first + 1
        rows.append(
            {
                "epoch": epoch - first + 1,
                "train/loss": round(1 / k, 6),
                "valid/acc": round(1 - math.exp(-lr * k) * 0.9, 6),
            }
        )
    return rows


def sweep_of(tmp_path: Path, name: str) -> Path:
    return (tmp_path / "runs" / name / "latest").resolve()


def runs_by_trial(sweep: Path) -> dict[str, Path]:
    runs = {}
    for config in sorted(sweep.glob("*/config.json")):
        runs[json.loads(config.read_text())["trial_id"]] = config.parent
    return runs


def metric_rows(run_dir: Path, keys=("epoch", "train/loss", "valid/acc")) -> list[dict]:
    table = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    return [{k: row[k] for k in keys if row.get(k) is not None} for row in table]


@pytest.mark.parametrize(
    "fmt, extra, first",
    [
        ("stdout", "metrics: {source: jsonl}", 1),
        ("file", "", 1),  # auto: the JSON lines in $SWEEPER_METRICS show up first
        ("csv", "metrics: {source: csv}", 0),  # Lightning counts epochs from 0: sweeper's start at 1
        (
            "regex",
            r"metrics: {source: regex, pattern: 'epoch (?P<epoch>\d+) loss (?P<train_loss>[\d.]+) val_acc (?P<val_acc>[\d.]+)'}",
            1,
        ),
        pytest.param("tensorboard", "", 1, marks=pytest.mark.slow),  # auto again; the program imports torch
    ],
)
def test_each_metric_source_lands_in_metrics_parquet_as_the_program_reported_it(
    tmp_path, cli, fmt, extra, first
):
    command_spec(tmp_path, f"src-{fmt}", extra, args=f', "--format={fmt}", "--first-epoch={first}"')
    out = cli("launch", f"src-{fmt}.yaml", "--executor", "local").stdout
    assert "COMPLETED 2" in out
    runs = runs_by_trial(sweep_of(tmp_path, f"src-{fmt}"))
    assert sorted(runs) == ["lr=0.2-s0", "lr=0.5-s0"]
    for trial_id, run_dir in runs.items():
        lr = float(trial_id.split("=")[1].split("-")[0])
        rows, expected = metric_rows(run_dir), expected_rows(lr, 4)
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
        for row, want in zip(rows, expected, strict=True):  # TensorBoard keeps float32
            assert row == pytest.approx(want, rel=1e-6 if fmt == "tensorboard" else 0)
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "COMPLETED" and status["epoch"] == 4


def test_the_program_gets_its_config_and_environment_and_analyze_reads_the_sweep(tmp_path, cli):
    command_spec(tmp_path, "env", "env: {RUN_NAME: 'run-{trial_id}', THREADS: 1}", args=', "{args}"')
    cli("launch", "env.yaml", "--executor", "local")
    sweep = sweep_of(tmp_path, "env")
    for trial_id, run_dir in runs_by_trial(sweep).items():
        (seen,) = [json.loads(p.read_text()) for p in run_dir.glob("env-*.json")]
        lr = trial_id.split("=")[1].split("-")[0]
        assert seen["argv"] == [f"--lr={lr}", "--epochs=4", "--seed=0", f"--optim.lr={lr}"]
        env = seen["env"]
        assert env["SWEEPER_RUN_DIR"] == str(run_dir) and env["SWEEPER_TRIAL_ID"] == trial_id
        assert env["SWEEPER_SEED"] == "0" and "SWEEPER_RESUME" not in env
        assert env["SWEEPER_EPOCHS"] == "4" and env["SWEEPER_SEGMENT"] == "1"
        assert env["SWEEPER_METRICS"] == str(run_dir / "metrics.jsonl")
        assert yaml.safe_load(Path(env["SWEEPER_CONFIG"]).read_text()) == {
            "optim": {"lr": float(lr)},
            "epochs": 4,
            "seed": 0,
        }
        assert json.loads((run_dir / "config.json").read_text())["config"]["optim"]["lr"] == float(lr)
        assert '"epoch": 4' in (run_dir / "job.log").read_text()  # the program's output, copied
    table = cli(str(sweep), "--format", "json", command="analyze").stdout
    report = json.loads(table)
    best = report["rows"][0]
    assert best["params"] == {"optim.lr": 0.5}
    assert best["best_valid_acc"] == pytest.approx(expected_rows(0.5, 4)[-1]["valid/acc"])


def test_exit_codes_signals_and_silence_become_states_and_a_retry_runs_every_epoch_once(tmp_path, cli):
    write_spec(
        tmp_path,
        f"""
        name: ends
        command: [python, {PROG}, "--lr=0.3", "--epochs=5", "{{args}}"]
        base: {{fail_at: 0, kill_self_at: 0, format: stdout, garbage: false}}
        configs:
          fine: {{garbage: true}}
          fails: {{fail_at: 2}}
          killed: {{kill_self_at: 3}}
          silent: {{format: none}}
        launch: {{parallelism: 2}}
        """,
        name="ends.yaml",
    )
    launched = cli("launch", "ends.yaml", "--executor", "local", check=False)
    assert launched.returncode == 1
    out = launched.stdout
    assert "fails-s0: the program exited with code 3: ValueError: the loss went to the moon" in out
    assert "killed-s0: the program was killed by SIGKILL" in out
    assert "silent-s0: the program exited 0 but reported no metrics (watched: the first of: JSON lines" in out
    sweep = sweep_of(tmp_path, "ends")
    runs = runs_by_trial(sweep)
    assert [r["epoch"] for r in metric_rows(runs["fine-s0"])] == [1, 2, 3, 4, 5]
    log = (runs["fine-s0"] / "job.log").read_text()
    assert "metrics: stdout:1: " in log and "metrics: stdout:2: " in log  # garbage: warned with its line
    assert [r["epoch"] for r in metric_rows(runs["killed-s0"])] == [1, 2, 3]
    status = cli("status", "ends").stdout
    assert "FAILED 3" in status and "COMPLETED 1" in status

    retried = cli("retry", "ends", check=False)
    assert retried.returncode == 1  # fails and silent fail again
    runs = runs_by_trial(sweep)
    assert [r["epoch"] for r in metric_rows(runs["killed-s0"])] == [
        1,
        2,
        3,
        4,
        5,
    ]  # a new run, every epoch once
    assert len(list(sweep.glob("*/config.json"))) == 7


def test_a_search_over_a_command_prunes_by_killing_the_program_and_spends_the_budget(tmp_path, cli):
    write_spec(
        tmp_path,
        f"""
        name: cmdsearch
        command: [python, {PROG}, "--lr={{lr}}", "--epochs={{epochs}}", "--sleep=0.15"]
        base: {{lr: 0.1, epochs: 12}}
        search:
          params: {{lr: {{type: float, low: 0.01, high: 1.0, log: true}}}}
          sampler: {{name: random, seed: 1}}
          pruner: {{name: median, n_startup_trials: 1, n_warmup_steps: 1}}
          n_trials: 8
          workers: 2
        signals: {{grace_s: 5}}
        """,
        name="cmdsearch.yaml",
    )
    out = cli("launch", "cmdsearch.yaml", "--executor", "local", timeout=600).stdout
    assert "Optuna search, 8 trials by 2 workers" in out
    from optuna.trial import TrialState

    from sweeper.study import load_study

    ledger = Ledger(sweep_of(tmp_path, "cmdsearch"))
    trials = load_study(ledger, ledger.launched_spec()).get_trials()
    assert len(trials) == 8 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, [t.state for t in trials]
    for trial in pruned:
        run_dir = ledger.dir / trial.user_attrs["run_dirs"]["0"]
        epochs = [r["epoch"] for r in metric_rows(run_dir)]
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 12  # stopped mid-run
        assert json.loads((run_dir / "status.json").read_text())["state"] == "PRUNED"
    assert all(
        record.latest["state"] == "COMPLETED" for record in ledger.records().values()
    )  # workers exit 0
    leftover = subprocess.run(["pgrep", "-f", str(PROG)], capture_output=True, text=True).stdout.split()
    assert not leftover


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "nohup-and-ampersand"])
def test_cancel_stops_the_programs_process_group(tmp_path, cli, sigint_ignored):
    command_spec(tmp_path, "stop", args=', "--sleep=1", "--checkpoint"', grid="optim.lr: [0.3]")
    (tmp_path / "stop.yaml").write_text(
        (tmp_path / "stop.yaml").read_text().replace("epochs: 4", "epochs: 600")
    )
    # A launcher started by a script in the background has SIGINT ignored, which its jobs would inherit.
    launcher = start_cli(
        tmp_path, "launch", "stop.yaml", "--executor", "local", sigint_ignored=sigint_ignored
    )
    try:
        sweep = wait_for(
            lambda: (tmp_path / "runs/stop/latest").exists() and sweep_of(tmp_path, "stop"), 60, "sweep"
        )
        pid_file = wait_for(lambda: next(sweep.glob("*/env-*.json"), None), 120, "the program started")
        pid = int(pid_file.stem.split("-")[1])
        status = pid_file.parent / "status.json"
        wait_for(lambda: json.loads(status.read_text()).get("epoch", 0) >= 2, 60, "epoch 2")
        cli("cancel", "stop")
        # (pid_alive: a zombie is gone, as an orphan stays under an init that does not reap)
        wait_for(lambda: not pid_alive(pid), 30, "the program gone")
        launcher.wait(timeout=60)
    finally:
        launcher.kill()
    assert "CANCELLED" in cli("status", "stop").stdout


def test_a_program_flooding_stdout_costs_no_memory_and_a_bounded_log(tmp_path):
    def peak_rss_kb(spec: str) -> int:
        code = (
            "import resource, subprocess, sys; "
            "subprocess.run([sys.executable, '-m', 'sweeper.cli', 'launch', sys.argv[1], '--executor', 'local'], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, spec],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return int(out.stdout.split()[-1])

    command_spec(tmp_path, "quiet", grid="optim.lr: [0.3]")
    command_spec(tmp_path, "flood", args=', "--flood-mb=400"', grid="optim.lr: [0.3]")
    quiet, flood = peak_rss_kb("quiet.yaml"), peak_rss_kb("flood.yaml")
    assert flood < quiet + 100_000, (quiet, flood)  # a 400 MiB line is not held in memory
    (run_dir,) = runs_by_trial(sweep_of(tmp_path, "flood")).values()
    assert (run_dir / "job.log").stat().st_size < 5_000_000
    assert [r["epoch"] for r in metric_rows(run_dir)] == [1, 2, 3, 4]


def test_every_line_printed_before_the_program_exits_is_read(tmp_path, cli):
    # A program that prints faster than the job copies exits with thousands of lines still in the pipe
    # and the job's queue; its last lines (here its metrics) count as much as the first.
    (tmp_path / "burst.py").write_text(
        textwrap.dedent(
            """
            import json, sys
            for i in range(50_000):
                print(f"progress line {i}")
            for epoch in (1, 2, 3):
                print(json.dumps({"epoch": epoch, "valid/acc": epoch / 10}))
            print("the last line", file=sys.stderr)
            """
        )
    )
    write_spec(
        tmp_path,
        """
        name: burst
        command: [python, burst.py, "--lr={optim.lr}"]
        base: {optim: {lr: 0.1}, epochs: 3}
        grid: {optim.lr: [0.1]}
        """,
        name="burst.yaml",
    )
    cli("launch", "burst.yaml", "--executor", "local")
    for run_dir in runs_by_trial(sweep_of(tmp_path, "burst")).values():
        assert metric_rows(run_dir, keys=("epoch", "valid/acc")) == [
            {"epoch": e, "valid/acc": e / 10} for e in (1, 2, 3)
        ]
        log_lines = (run_dir / "job.log").read_text().splitlines()
        assert "progress line 49999" in log_lines and "the last line" in log_lines


@pytest.mark.parametrize(
    "command, problem",
    [
        (
            '[python, prog.py, "--lr={optim.lrr}"]',
            "word 3 {optim.lrr}: no such config key or placeholder (did you mean 'optim.lr'?)",
        ),
        ('[python, prog.py, "--all={args}"]', "expands to several words"),
        ("[no-such-trainer, --lr=1]", "program 'no-such-trainer' not found on PATH"),
        ("[./prog.py]", "program './prog.py' is not executable"),
        ("[./missing.sh]", "program './missing.sh' not found"),
    ],
)
def test_mistakes_in_the_command_are_caught_at_launch_with_file_and_line(tmp_path, cli, command, problem):
    (tmp_path / "prog.py").write_text("print(1)\n")
    write_spec(
        tmp_path,
        f"""
        name: bad
        base: {{optim: {{lr: 0.1}}}}
        grid: {{optim.lr: [0.1]}}
        command: {command}
        """,
        name="bad.yaml",
    )
    result = cli("launch", "bad.yaml", "--executor", "local", check=False)
    assert result.returncode == 1
    assert "bad.yaml:4: command: " in result.stderr and problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_a_regex_without_an_epoch_group_and_both_entrypoint_and_command_are_refused(tmp_path, cli):
    write_spec(
        tmp_path,
        f"""
        name: nogroup
        command: [python, {PROG}]
        base: {{lr: 1}}
        grid: {{lr: [1]}}
        metrics: {{source: regex, pattern: 'acc (?P<valid_acc>[0-9.]+)'}}
        """,
        name="r.yaml",
    )
    result = cli("launch", "r.yaml", check=False)
    assert (
        result.returncode == 1
        and "metrics.pattern" in result.stderr
        and "no group named 'epoch'" in result.stderr
    )
    write_spec(
        tmp_path,
        f"""
        name: both
        entrypoint: jobfns:curve
        command: [python, {PROG}]
        base: {{lr: 1}}
        grid: {{lr: [1]}}
        """,
        name="b.yaml",
    )
    result = cli("launch", "b.yaml", check=False)
    assert result.returncode == 1 and "not both" in result.stderr


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "command"


@pytest.mark.parametrize("example", ["shell.yaml", "hydra.yaml"])
def test_the_examples_sweep_as_command_trials(tmp_path, cli, example):
    """examples/command: a POSIX shell + awk trainer read with a regex, and a Hydra app swept with {overrides}."""
    if example == "hydra.yaml":
        pytest.importorskip("hydra", reason="hydra-core is a dev dependency: pip install -e '.[dev]'")
    out = cli(
        "launch",
        str(EXAMPLES / example),
        "--executor",
        "local",
        "--root",
        str(tmp_path / "runs"),
        "--set",
        "epochs=3",
        timeout=600,
    ).stdout
    assert "COMPLETED 9" in out
    (sweep,) = [p.resolve() for p in (tmp_path / "runs").glob("*/latest")]
    runs = runs_by_trial(sweep)
    assert len(runs) == 9
    for run_dir in runs.values():
        rows = pq.read_table(run_dir / "metrics.parquet").to_pylist()
        assert [r["epoch"] for r in rows] == [1, 2, 3] and all(0 <= r["valid/acc"] <= 1 for r in rows)
        assert rows[-1]["valid/loss"] > 0
    if example == "hydra.yaml":  # Hydra's own record of the overrides, in each trial's run dir
        overrides = sorted(sweep.glob("*_j*/hydra/.hydra/overrides.yaml"))
        assert len(overrides) == 9 and "epochs=3" in overrides[0].read_text()
