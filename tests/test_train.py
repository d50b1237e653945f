"""The built-in trainer, in process, on tiny models: reproducibility, resume, early stopping, averaging,
extra metrics, schedules as logged, and the options that must change training."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from sweeper.errors import SweeperError
from sweeper.run import Run, TrialPruned
from sweeper.train import AVERAGE_DIR, AVERAGED_CHECKPOINT, TrainingDiverged, train
from tests.test_data import write_tiny_cifar

TINY = {
    "model": {
        "name": "vit",
        "patch_size": 4,
        "layers": 1,
        "d_model": 16,
        "heads": 2,
        "mlp_ratio": 1.0,
        "dropout": 0.1,
    },
    "data": {"name": "digits"},
    "optim": {"name": "adamw", "lr": 3e-3},
    "schedule": {"name": "warmup", "warmup_epochs": 1},
    "epochs": 2,
    "batch_size": 128,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def one_thread():
    # CPU results are bit-reproducible for a fixed number of threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**changes) -> dict:
    out = copy.deepcopy(TINY)
    for key, value in changes.items():
        out[key] = value
    return out


def run_training(run_dir: Path, cfg: dict, **run_kwargs) -> list[dict]:
    run = Run(run_dir, cfg, tensorboard=False, **{"objective": "valid/acc", **run_kwargs})
    try:
        train(cfg, run)
    finally:
        run.close()
    return rows(run_dir)


def rows(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k != "time_s"}
        for r in pq.read_table(run_dir / "metrics.parquet").to_pylist()
    ]


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(tmp_path):
    cfg = config(augment={"flip": True, "noise_std": 0.1}, seed=3)
    first = run_training(tmp_path / "a", cfg)
    assert first == run_training(tmp_path / "b", cfg)
    assert first != run_training(tmp_path / "c", {**cfg, "seed": 4})


def test_resume_after_interruption_continues_bit_for_bit(tmp_path):
    cfg = config(
        epochs=4,
        augment={"flip": True, "noise_std": 0.2, "line_dropout": 0.1},
        schedule={"name": "plateau", "patience": 0, "factor": 0.5, "warmup_epochs": 1},
        early_stopping={"patience": 50},
        average_last=2,
    )
    straight = run_training(tmp_path / "straight", cfg)

    interrupted = tmp_path / "interrupted"
    with pytest.raises(TrialPruned):  # stands in for a requeue: the job ends right after epoch 2's checkpoint
        run_training(interrupted, cfg, pruner=lambda epoch, value: epoch >= 2)
    assert [r["epoch"] for r in rows(interrupted)] == [1, 2]
    resumed = run_training(interrupted, cfg)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert resumed == straight
    assert torch.equal(
        torch.load(interrupted / AVERAGED_CHECKPOINT)["model"]["head.weight"],
        torch.load(tmp_path / "straight" / AVERAGED_CHECKPOINT)["model"]["head.weight"],
    )


def test_early_stopping_ends_the_run_normally_with_a_note(tmp_path):
    # min_delta 1.0 on an accuracy: nothing after epoch 1 counts as an improvement.
    cfg = config(epochs=10, early_stopping={"patience": 2, "min_delta": 1.0})
    result = run_training(tmp_path, cfg)
    assert [r["epoch"] for r in result] == [1, 2, 3]
    note = json.loads((tmp_path / "status.json").read_text())["note"]
    assert note.startswith("early stopped at epoch 3: valid/acc did not improve for 2 epochs (best ")
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def test_extra_metrics_are_columns_on_their_epochs(tmp_path):
    cfg = config(epochs=3, eval={"metrics": ["auroc", "knn_acc", "silhouette"], "every": 2})
    table = run_training(tmp_path, cfg)
    assert [r["valid/auroc"] is None for r in table] == [True, False, False]  # epoch 2, and the last
    last = table[-1]
    assert 0.5 < last["valid/auroc"] <= 1.0 and 0.1 < last["valid/knn_acc"] <= 1.0
    assert -1.0 <= last["valid/silhouette"] <= 1.0
    assert pq.read_table(tmp_path / "metrics.parquet").schema.field("valid/knn_acc").type == "double"


def test_weight_averaging_of_the_last_k_epochs(tmp_path):
    table = run_training(tmp_path, config(epochs=3, average_last=2))
    kept = sorted(p.name for p in (tmp_path / AVERAGE_DIR).iterdir())
    assert kept == ["epoch_00002.pt", "epoch_00003.pt"]
    averaged = torch.load(tmp_path / AVERAGED_CHECKPOINT)
    assert averaged["epochs"] == [2, 3]
    for name, value in averaged["model"].items():
        pair = [torch.load(tmp_path / AVERAGE_DIR / f)[name] for f in kept]
        assert torch.allclose(value, (pair[0] + pair[1]) / 2), name
    assert [r["valid/avg_acc"] is None for r in table] == [True, True, False]
    assert table[-1]["valid/avg_acc"] == pytest.approx(averaged["metrics"]["acc"])


def test_whd_logged_lr_holds_then_decays_to_its_floor(tmp_path):
    cfg = config(
        epochs=5, schedule={"name": "whd", "warmup_epochs": 1, "hold_epochs": 1, "min_lr_ratio": 0.1}
    )
    lrs = [r["lr"] for r in run_training(tmp_path, cfg)]
    assert lrs[0] == lrs[1] == pytest.approx(3e-3)
    assert lrs[1] > lrs[2] > lrs[3] > lrs[4] and lrs[4] == pytest.approx(3e-4)


def test_plateau_halves_the_lr_when_the_metric_stalls(tmp_path):
    cfg = config(
        epochs=4,
        optim={"name": "adamw", "lr": 1e-9},
        schedule={"name": "plateau", "patience": 0, "factor": 0.5},
    )
    lrs = [r["lr"] for r in run_training(tmp_path, cfg)]
    assert lrs == pytest.approx([1e-9, 1e-9, 0.5e-9, 0.25e-9])
    # valid/acc never improved after epoch 1: best.pt stayed there while last.pt moved on
    assert torch.load(tmp_path / "best.pt", weights_only=False)["epoch"] == 1
    assert torch.load(tmp_path / "last.pt", weights_only=False)["epoch"] == 4


@pytest.mark.parametrize(
    "change",
    [
        {"label_smoothing": 0.2},
        {"class_weights": [5.0] + [1.0] * 9},
        {"grad_clip": 1e-3},
        {"optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}},
        {"augment": {"flip": True}},
        {"precision": "bf16"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_options_change_training(tmp_path, change):
    baseline = run_training(tmp_path / "base", config(epochs=1))
    changed = run_training(tmp_path / "changed", config(epochs=1, **change))
    assert changed[0]["train/loss"] != baseline[0]["train/loss"]
    assert np.isfinite(changed[0]["valid/loss"])


def test_diverging_run_stops_with_its_epoch_kept(tmp_path):
    cfg = config(epochs=3, optim={"name": "sgd", "lr": 1e12, "momentum": 0.0})
    with pytest.raises(TrainingDiverged, match="training diverged"):
        run_training(tmp_path, cfg)
    assert [r["epoch"] for r in rows(tmp_path)] == [1]


def test_objective_that_is_never_logged_is_an_error(tmp_path):
    with pytest.raises(SweeperError, match="'valid/auroc' is not logged"):
        run_training(tmp_path, config(), objective="valid/auroc")


def test_scan_lines_from_a_file_with_causal_and_global_attention(tmp_path):
    # Class = which third of the 9 lines holds a bump: both attention kinds must learn it.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(0, 0.3, (300, 9, 12)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 3 * label : 3 * label + 3, 4:8] += 2.0
    np.savez(tmp_path / "scans.npz", x=x, y=y)
    for attention in ("causal", "global"):
        cfg = config(
            epochs=6,
            model={"name": "seq_transformer", "attention": attention, "layers": 1, "d_model": 16, "heads": 2},
            data={"name": "file", "path": str(tmp_path / "scans.npz")},
            augment={"flip": True},  # the bump is symmetric within its lines
            optim={"name": "adamw", "lr": 1e-2},
            batch_size=32,
        )
        assert run_training(tmp_path / attention, cfg)[-1]["valid/acc"] > 0.9, attention


def test_resnet18_on_a_tiny_cifar_folder(tmp_path):
    write_tiny_cifar(tmp_path / "data")
    cfg = config(
        epochs=1,
        model={"name": "resnet18", "width": 4},
        data={"name": "cifar10", "data_root": str(tmp_path / "data"), "valid": "test"},
        augment={"flip": True, "crop_padding": 4},
        average_last=0,
        batch_size=50,
    )
    (row,) = run_training(tmp_path / "run", cfg)
    assert 0.0 <= row["valid/acc"] <= 1.0 and np.isfinite(row["train/loss"])


def test_best_checkpoint_follows_the_objective_direction_the_job_recorded(tmp_path):
    # The job records the sweep's objective in config.json and hands the same Objective to the Run; an
    # explicit direction beats the name rule.
    from sweeper.objective import Objective

    tmp_path.joinpath("config.json").write_text(
        json.dumps({"objective": {"metric": "valid/acc", "direction": "minimize"}})
    )
    recorded = Objective.of(json.loads(tmp_path.joinpath("config.json").read_text())["objective"])
    accuracies = [r["valid/acc"] for r in run_training(tmp_path, config(epochs=3), objective=recorded)]
    assert accuracies[0] < accuracies[-1]
    best_epoch = torch.load(tmp_path / "best.pt", weights_only=False)["epoch"]
    assert best_epoch == 1 + accuracies.index(min(accuracies))
