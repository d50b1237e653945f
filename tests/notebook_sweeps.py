"""Real local sweeps shared by the notebook tests (marks, summaries, correlations, entries, HTML): launched
once per test session through the CLI, copied into each test's tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import run_cli, tiny_spec

# 2 weight decays x 2 seeds, a held-out test split: the trainer writes its final test evaluation.
EXTRA = """
grid:
  optim.weight_decay: [0.0, 0.1]
seeds: [0, 1]
notes: {hypothesis: "weight decay helps on digits", summary: "A first look at weight decay."}
"""


def launch(directory: Path, extra: str = EXTRA, sets: tuple[str, ...] = ()) -> Path:
    tiny_spec(directory, extra)
    args = ["launch", "spec.yaml", "--executor", "local"]
    for item in ("data.test_fraction=0.2", *sets):
        args += ["--set", item]
    run_cli(args, directory)
    return (directory / "runs" / "tiny" / "latest").resolve()


def copy_tree(source: Path, target: Path) -> Path:
    """The launch directory (spec, runs/) copied, with runs/<name>/latest kept a link; the copied sweep dir."""
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    return (target / "runs" / "tiny" / "latest").resolve()
