"""Shared fixtures: tiny specs, and running the real CLI in a subprocess (as a user would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
REPO = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))  # user entrypoints of the tests (jobfns.py) import as top-level modules

TINY_BASE = """
base:
  model: {name: vit, patch_size: 4, layers: 1, d_model: 16, heads: 2, mlp_ratio: 1.0, dropout: 0.0}
  data: {name: digits}
  optim: {name: adamw, lr: 3e-3, weight_decay: 0.01}
  schedule: {name: warmup, warmup_epochs: 1}
  epochs: 2
  batch_size: 128
"""


def write_spec(directory: Path, body: str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def tiny_spec(directory: Path, extra: str, name: str = "tiny") -> Path:
    return write_spec(directory, f"name: {name}\n" + TINY_BASE + textwrap.dedent(extra))


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # job processes import user entrypoints from tests/ (e.g. tests/jobfns.py)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env["COLUMNS"] = "250"
    # `python` in a command trial is this interpreter (the venv's), as it is in an activated venv
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    """Poll until predicate() is truthy (returns it) or fail after `timeout` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def run_cli(
    args: list[str], cwd: Path, check: bool = True, timeout: float = 300, command: str = "sweeper"
) -> subprocess.CompletedProcess:
    entry = ["-m", "sweeper.cli"] if command == "sweeper" else [str(REPO / "analyze.py")]
    argv = [sys.executable, *entry, *args]
    result = subprocess.run(argv, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} {' '.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def start_cli(cwd: Path, *args: str, sigint_ignored: bool = False) -> subprocess.Popen:
    """`sweeper ARGS` started in the background (a launcher to kill, retries to race), output captured.
    sigint_ignored: as a non-interactive shell starts `cmd &` (SIGINT ignored, inherited by its children)."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )


@pytest.fixture
def cli(tmp_path):
    def call(*args: str, check: bool = True, timeout: float = 300, command: str = "sweeper"):
        return run_cli(list(args), tmp_path, check=check, timeout=timeout, command=command)

    return call


def pytest_runtest_setup(item):
    """Tests marked `slurm` need the local cluster: skipped (with the reason) where it is not up, failed
    where CI=true (CI starts it, so its absence is a defect there)."""
    if item.get_closest_marker("slurm") is not None:
        from tests.slurm_cluster import require_cluster

        require_cluster()


@pytest.fixture(scope="session")
def notebook_launch(tmp_path_factory) -> Path:
    """The launch directory of one finished 4-trial local sweep (tests/notebook_sweeps.py), run once."""
    from tests.notebook_sweeps import launch

    directory = tmp_path_factory.mktemp("notebook")
    launch(directory)
    return directory


@pytest.fixture
def notebook_sweep(notebook_launch, tmp_path) -> Path:
    """This test's own copy of that sweep (its sweep dir under tmp_path/runs/tiny/); the CLI runs in tmp_path."""
    from tests.notebook_sweeps import copy_tree

    return copy_tree(notebook_launch, tmp_path)
