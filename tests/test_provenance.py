"""Provenance: what a sweep dir records, `analyze --provenance`, and checkpoints that belong to something else."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from sweeper import __version__
from sweeper.errors import SweeperError
from sweeper.run import Run
from tests.conftest import REPO, tiny_spec


def git(tmp_path, *args):
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )


def test_sweep_records_where_it_came_from_and_analyze_shows_it(tmp_path, cli):
    tiny_spec(tmp_path, "configs: {a: {}}\n")
    (tmp_path / ".gitignore").write_text("runs/\n")
    git(tmp_path, "init", "-q", "-b", "study")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "spec")
    (tmp_path / "notes.py").write_text("LR = 3e-4  # not committed\n")  # the tree is dirty at launch
    cli("launch", "spec.yaml", "--executor", "local", "--set", "epochs=1")
    sweep = (tmp_path / "runs/tiny/latest").resolve()
    assert "LR = 3e-4" in (sweep / "git.diff").read_text()  # untracked files' content is kept too

    (record,) = json.loads(
        cli("--checkpoints-path", str(sweep), "--provenance", "--format", "json", command="analyze").stdout
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert record["git commit"] == head and record["git branch"] == "study" and record["dirty"] is True
    assert "notes.py" in record["changed files"]
    assert "launch spec.yaml --executor local --set epochs=1" in record["command"]
    assert record["python"] == sys.version.split()[0] and record["torch"] == torch.__version__.split("+")[0]
    assert any(p.lower().startswith("torch==") for p in record["packages"])
    assert record["diff_lines"] > 0
    (run,) = record["runs"]
    assert run["trial_id"] == "a-s0" and run["run_dir"].endswith(f"_j{run['job_id']}")

    table = cli("--checkpoints-path", str(sweep), "--provenance", command="analyze").stdout
    assert head in table and "dirty" in table
    markdown = cli(
        "--checkpoints-path", str(sweep), "--provenance", "--format", "markdown", command="analyze"
    ).stdout
    assert f"| git commit | {head} |" in markdown


def test_sweeper_records_its_own_version_and_commit_outside_a_git_repo(tmp_path, cli):
    tiny_spec(tmp_path, "configs: {a: {}}\n")  # tmp_path is no git repository
    cli("launch", "spec.yaml", "--executor", "local", "--set", "epochs=1")
    sweep = (tmp_path / "runs/tiny/latest").resolve()
    provenance = json.loads((sweep / "provenance.json").read_text())
    assert provenance["git"] is None  # the user's repo: none
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    changes = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    )
    code = provenance["sweeper"]  # this checkout, installed editable by `make setup`
    assert code["version"] == __version__ and code["source"] == str(REPO)
    assert code["commit"] == head.stdout.strip() and code["dirty"] == bool(changes.stdout.strip())
    (record,) = json.loads(
        cli("--checkpoints-path", str(sweep), "--provenance", "--format", "json", command="analyze").stdout
    )
    assert record["sweeper commit"] == code["commit"] and record["sweeper"] == __version__


def test_provenance_of_a_path_without_sweeps_is_a_clear_error(tmp_path, cli):
    result = cli("--checkpoints-path", str(tmp_path), "--provenance", command="analyze", check=False)
    assert result.returncode == 1 and "no sweep dirs" in result.stderr


def test_a_checkpoint_of_another_model_is_refused_clearly(tmp_path):
    from sweeper.train import train

    config = {
        "model": {"name": "vit", "patch_size": 4, "layers": 1, "d_model": 16, "heads": 2},
        "epochs": 1,
        "batch_size": 256,
    }
    train(config, Run(tmp_path, config, tensorboard=False))
    bigger = {**config, "model": {**config["model"], "d_model": 32}, "epochs": 2}
    with pytest.raises(SweeperError, match="last.pt does not fit this model"):
        train(bigger, Run(tmp_path, bigger, tensorboard=False))


def test_a_foreign_file_as_checkpoint_is_refused_clearly(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "last.pt")
    with pytest.raises(SweeperError, match="not a sweeper checkpoint"):
        Run(tmp_path, {"epochs": 1}, tensorboard=False).load_checkpoint()
    (tmp_path / "last.pt").write_bytes(b"this is not a torch file")
    with pytest.raises(SweeperError, match="last.pt"):
        Run(tmp_path, {"epochs": 1}, tensorboard=False).load_checkpoint()


@pytest.mark.slurm
def test_each_slurm_job_records_its_slurm_variables(tmp_path, cli):
    tiny_spec(tmp_path, "configs: {a: {}, b: {}}\nlaunch: {slurm: {cpus_per_task: 1}}\n")
    cli("launch", "spec.yaml", "--executor", "slurm", "--wait", "--set", "epochs=1", timeout=600)
    sweep = (tmp_path / "runs/tiny/latest").resolve()
    (record,) = json.loads(
        cli("--checkpoints-path", str(sweep), "--provenance", "--format", "json", command="analyze").stdout
    )
    assert record["executor"] == "slurm" and len(record["runs"]) == 2
    for run in record["runs"]:
        array, task = run["job_id"].split("_")
        assert run["SLURM_ARRAY_JOB_ID"] == array and run["SLURM_ARRAY_TASK_ID"] == task
        assert run["SLURM_JOB_PARTITION"] == "debug" and run["SLURM_JOB_NODELIST"]
