"""The programs of examples/command/, run bare (no sweeper involved): they print what a command trial reads
(JSON lines, or text lines for shell.yaml's regex), are deterministic given --seed, and the resumable one
survives SIGUSR2 / SIGTERM and a rerun without repeating or losing an epoch.

The Hydra app needs hydra-core: the test uses this interpreter when it can import hydra, else the one named
by $SWEEPER_TEST_HYDRA_PYTHON, else it is skipped. The C program is built with cc / gcc / clang, skipped
without one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sweeper import yamlio

EXAMPLES = Path(__file__).parent.parent / "examples" / "command"
JSON_KEYS = {"epoch", "train/loss", "train/acc", "valid/loss", "valid/acc", "lr"}
TEXT_KEYS = {"epoch", "train_loss", "valid_loss", "valid_acc"}
TIMEOUT_S = 120

# The digits tests start 6 torch processes (~5 s of imports each; 80 s in all on 2 busy cores): `slow`.
SLOW = pytest.mark.slow

# The digits runs: 8 epochs (~0.05 s each) so that a signal sent after epoch 2 comes well before the end.
DIGITS_EPOCHS = 8
DIGITS_ARGS = ["--epochs", str(DIGITS_EPOCHS), "--hidden", "32", "--lr", "3e-3"]


def torch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEPER_")}
    return env | {"OMP_NUM_THREADS": "1"} | extra


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, f"{argv} exited {result.returncode}\nstderr:\n{result.stderr}"
    return result


def run_all(argvs: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """Start the commands together (most of each run is imports) and return their stdouts."""
    procs = [
        subprocess.Popen(a, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for a in argvs
    ]
    outs = []
    for argv, proc in zip(argvs, procs, strict=True):
        out, err = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, f"{argv} exited {proc.returncode}\nstderr:\n{err}"
        outs.append(out)
    return outs


def json_rows(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        row = json.loads(line)  # every stdout line is one JSON object: nothing else is printed there
        assert isinstance(row, dict) and set(row) == JSON_KEYS, line
        assert all(isinstance(v, int | float) for v in row.values()), line
        rows.append(row)
    return rows


def shell_pattern() -> re.Pattern:
    """The regex of shell.yaml, the one sweeper will apply: the test keeps the YAML and the programs in step."""
    data, _ = yamlio.load((EXAMPLES / "shell.yaml").read_text(), "shell.yaml")
    return re.compile(data["metrics"]["pattern"])


def text_rows(stdout: str) -> list[dict]:
    pattern = shell_pattern()
    rows = []
    for line in stdout.splitlines():
        match = pattern.match(line)
        assert match, f"not matched by shell.yaml's pattern: {line!r}"
        assert set(match.groupdict()) == TEXT_KEYS
        rows.append({k: float(v) for k, v in match.groupdict().items()})
    return rows


def epochs(rows: list[dict]) -> list[int]:
    return [int(r["epoch"]) for r in rows]


def run_and_signal(argv, cwd, env, after_epoch: int, signum: int, parse, stderr_path: Path):
    """Start `argv`, read its stdout line by line, send `signum` once it printed `after_epoch` (or its first
    line when after_epoch is 0); return (exit code, all rows it printed, its stderr)."""
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        watchdog = threading.Timer(TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if epochs(parse(line))[-1] >= after_epoch:
                    proc.send_signal(signum)
                    break
            lines += proc.stdout.readlines()
            code = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
    return code, parse("".join(lines)), stderr_path.read_text()


# --- train_digits.py and train_digits_resume.py (PyTorch) -------------------------------------------------


@pytest.fixture(scope="module")
def digits_reference():
    """train_digits.py twice with --seed 1 and once with --seed 2: the rows of each."""
    argvs = [[sys.executable, "train_digits.py", *DIGITS_ARGS, "--seed", str(seed)] for seed in (1, 1, 2)]
    return [json_rows(out) for out in run_all(argvs, EXAMPLES, torch_env())]


@SLOW
def test_train_digits_prints_a_json_line_per_epoch(digits_reference):
    rows = digits_reference[0]
    assert epochs(rows) == list(range(1, DIGITS_EPOCHS + 1))
    assert rows[0]["lr"] == 3e-3 and rows[-1]["lr"] < rows[0]["lr"]  # cosine decay
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert rows[-1]["valid/acc"] > 0.5  # learns (chance is 0.1)


@SLOW
def test_train_digits_is_deterministic_given_the_seed(digits_reference):
    first, again, other_seed = digits_reference
    assert again == first
    assert other_seed != first


@SLOW
def test_train_digits_resume_survives_sigusr2_sigterm_and_reruns(digits_reference, tmp_path):
    """Stop it with SIGUSR2 after epoch 2, again with SIGTERM after the first epoch of the rerun, then let
    it finish: each stop exits 128 + signal and leaves ckpt.pt; together the runs print epochs 1..N once
    each, and exactly the rows of an uninterrupted train_digits.py run."""
    argv = [sys.executable, "train_digits_resume.py", *DIGITS_ARGS, "--seed", "1"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = run_dir / "ckpt.pt"

    # 1. a fresh start in $SWEEPER_RUN_DIR (the default --checkpoint-dir), stopped as for a timeout
    env = torch_env(SWEEPER_RUN_DIR=str(run_dir))
    code, first, err = run_and_signal(argv, EXAMPLES, env, 2, signal.SIGUSR2, json_rows, tmp_path / "1.err")
    assert code == 128 + signal.SIGUSR2, err
    assert ckpt.exists() and not list(run_dir.glob(".*tmp")), sorted(p.name for p in run_dir.iterdir())
    assert "SIGUSR2" in err
    stop = epochs(first)[-1]  # 2, or a little later if the signal came late
    assert epochs(first) == list(range(1, stop + 1)) and stop < DIGITS_EPOCHS

    # 2. the requeued run resumes, and is stopped by SIGTERM (as when pruned) after its first epoch
    env = torch_env(SWEEPER_RUN_DIR=str(run_dir), SWEEPER_RESUME="1")
    code, second, err = run_and_signal(argv, EXAMPLES, env, 0, signal.SIGTERM, json_rows, tmp_path / "2.err")
    assert code == 128 + signal.SIGTERM, err
    assert f"at epoch {stop + 1}" in err
    assert epochs(second)[0] == stop + 1 and epochs(second)[-1] < DIGITS_EPOCHS
    stop = epochs(second)[-1]

    # 3. the last run, given the directory by --checkpoint-dir, finishes and exits 0
    result = run([*argv, "--checkpoint-dir", str(run_dir)], EXAMPLES, torch_env())
    third = json_rows(result.stdout)
    assert epochs(third) == list(range(stop + 1, DIGITS_EPOCHS + 1))

    assert first + second + third == digits_reference[0]  # bit for bit what the uninterrupted run printed


# --- hydra_app/train.py (Hydra, numpy) --------------------------------------------------------------------


def hydra_python() -> str:
    if importlib.util.find_spec("hydra") is not None:
        return sys.executable
    other = os.environ.get("SWEEPER_TEST_HYDRA_PYTHON")
    if other:
        return other
    pytest.skip(
        "hydra-core is not installed here (pip install hydra-core), and SWEEPER_TEST_HYDRA_PYTHON does not "
        "name an interpreter that has it"
    )


def test_hydra_app_takes_overrides_and_prints_json_lines(tmp_path):
    app = EXAMPLES / "hydra_app" / "train.py"
    python = hydra_python()

    def argv(seed: int, name: str) -> list[str]:
        dir_override = f"hydra.run.dir='{tmp_path / name / 'hydra'}'"  # quoted as in hydra.yaml
        return [python, str(app), "optim.lr=0.1", "model.hidden=16", "epochs=3", f"seed={seed}", dir_override]

    outs = run_all([argv(1, "a"), argv(1, "b"), argv(2, "c")], tmp_path)  # cwd: not the app's folder
    first, again, other_seed = (json_rows(out) for out in outs)
    assert epochs(first) == [1, 2, 3]
    assert {r["lr"] for r in first} == {0.1}  # the override reached the config
    assert first[-1]["valid/acc"] > 0.5
    assert again == first and other_seed != first
    saved = (tmp_path / "a" / "hydra" / ".hydra" / "config.yaml").read_text()
    assert "hidden: 16" in saved and "seed: 1" in saved
    assert not (tmp_path / "outputs").exists()  # hydra.run.dir kept Hydra's files out of the cwd


# --- not_python/train.sh (sh + awk) and not_python/train.c ------------------------------------------------


def check_text_trainer(argv: list[str], tmp_path: Path) -> None:
    """The checks shared by train.sh and the C build of train.c."""
    cwd = EXAMPLES / "not_python"
    outs = run_all(
        [
            [*argv, "--lr", "0.5", "--epochs", "3", "--seed", "1"],
            [*argv, "--lr=0.5", "--epochs=3", "--seed=1"],  # the form {args} expands to
            [*argv, "--lr", "0.5", "--epochs", "3", "--seed", "2"],
        ],
        cwd,
    )
    first, again, other_seed = (text_rows(out) for out in outs)
    assert epochs(first) == [1, 2, 3]
    assert first[-1]["train_loss"] < first[0]["train_loss"]
    assert again == first and other_seed != first

    code, rows, err = run_and_signal(
        [*argv, "--epochs", "200"], cwd, None, 1, signal.SIGUSR2, text_rows, tmp_path / "err"
    )
    assert code == 128 + signal.SIGUSR2, err
    assert 1 <= len(rows) < 200 and epochs(rows) == list(range(1, len(rows) + 1))

    bad = subprocess.run([*argv, "--bogus"], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert bad.returncode == 2 and "--bogus" in bad.stderr


@pytest.mark.skipif(shutil.which("awk") is None, reason="no awk on PATH")
def test_shell_trainer_prints_lines_for_the_regex_source(tmp_path):
    check_text_trainer(["sh", "train.sh"], tmp_path)


def test_c_trainer_prints_the_same_lines(tmp_path):
    compiler = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH to build not_python/train.c")
    binary = tmp_path / "train"
    source = EXAMPLES / "not_python" / "train.c"
    build = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(source), "-lm"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert build.returncode == 0, build.stderr
    check_text_trainer([str(binary)], tmp_path)
