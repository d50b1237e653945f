"""Your own training code: the documented example (examples/mypkg) swept through the real CLI with the
local executor, and its run API calls (pruning, requeue resume) exercised in process."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

import sweeper
import sweeper.run
from tests.conftest import REPO
from tests.test_metrics import tensorboard_scalars

EXAMPLES = REPO / "examples"


def test_sweeper_exports_the_run_api():
    assert sweeper.Run is sweeper.run.Run and sweeper.TrialPruned is sweeper.run.TrialPruned
    with pytest.raises(AttributeError):
        sweeper.NoSuchThing  # noqa: B018


def test_example_package_sweeps_through_the_cli(tmp_path, cli):
    shutil.copytree(EXAMPLES / "mypkg", tmp_path / "mypkg")
    shutil.copy(EXAMPLES / "sweep.yaml", tmp_path / "sweep.yaml")
    result = cli(
        "launch", "sweep.yaml", "--executor", "local", "--set", "epochs=2", "--set", "grid.width=[4]"
    )
    assert "COMPLETED 2" in result.stdout

    sweep = (tmp_path / "runs" / "mycnn" / "latest").resolve()
    run_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        assert config["entrypoint"] == "mypkg.train:main" and config["config"]["width"] == 4
        table = pq.read_table(run_dir / "metrics.parquet")
        assert table.column_names == [
            "epoch",
            "time_s",
            "lr",
            "segment",
            "train/loss",
            "valid/loss",
            "valid/acc",
        ]
        assert table.column("epoch").to_pylist() == [1, 2]
        assert table.column("valid/acc").to_pylist()[-1] > 0.25  # well above chance (0.1) after 2 epochs
        assert (run_dir / "last.pt").is_file() and (run_dir / "best.pt").is_file()
        assert json.loads((run_dir / "status.json").read_text())["state"] == "COMPLETED"
        values = [value for _, value in tensorboard_scalars(run_dir)["valid/acc"]]
        assert values == table.column("valid/acc").to_pylist()  # TensorBoard holds the same doubles
    summary = cli("--checkpoints-path", str(sweep), "--format", "markdown", command="analyze").stdout
    assert "lr" in summary and summary.count("\n| ") >= 2


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import mypkg.train

    return mypkg.train


def example_config(**changes) -> dict:
    return {"epochs": 4, "batch_size": 128, "lr": 3e-3, "weight_decay": 0.0, "width": 4, "seed": 0, **changes}


def metric_rows(run_dir) -> list[dict]:
    return [
        {k: v for k, v in row.items() if k != "time_s"}
        for row in pq.read_table(run_dir / "metrics.parquet").to_pylist()
    ]


def test_example_is_pruned_then_resumes_after_a_requeue(tmp_path, example):
    config = example_config()
    straight = sweeper.Run(tmp_path / "straight", config, objective="valid/acc", tensorboard=False)
    example.main(config, straight)
    straight.close()

    run_dir = tmp_path / "requeued"
    pruned = sweeper.Run(run_dir, config, objective="valid/acc", pruner=lambda epoch, value: epoch == 2)
    with pytest.raises(sweeper.TrialPruned, match="pruned at epoch 2"):
        example.main(config, pruned)
    pruned.close()
    assert [r["epoch"] for r in metric_rows(run_dir)] == [1, 2]

    resumed = sweeper.Run(run_dir, config, objective="valid/acc")  # what a requeued job constructs
    example.main(config, resumed)
    resumed.close()
    assert resumed.restarts == 1
    assert metric_rows(run_dir) == metric_rows(tmp_path / "straight")


def test_log_takes_keyword_metrics_and_notes_reach_status_json(tmp_path):
    run = sweeper.Run(tmp_path, {}, tensorboard=False)
    run.log(1, lr=0.1, **{"train/loss": 2.0, "valid/acc": 0.5})
    run.set_note("stopped: good enough")
    run.close()
    assert metric_rows(tmp_path) == [
        {"epoch": 1, "lr": 0.1, "segment": 1, "train/loss": 2.0, "valid/acc": 0.5}
    ]
    assert json.loads((tmp_path / "status.json").read_text())["note"] == "stopped: good enough"
