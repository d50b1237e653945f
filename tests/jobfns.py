"""Training functions used as `entrypoint:` by the tests (imported by real job processes)."""

from __future__ import annotations

import math
import time


def slow_counter(config: dict, run) -> None:
    """Logs config['epochs'] epochs, `config['sleep']` seconds each, checkpointing every epoch."""
    state = run.load_checkpoint()
    start = state["epoch"] + 1 if state else 1
    for epoch in range(start, config["epochs"] + 1):
        time.sleep(config.get("sleep", 0.2))
        loss = 1.0 / epoch
        run.log(
            epoch,
            {
                "train/loss": loss,
                "train/acc": 1 - loss / 2,
                "valid/loss": loss * 1.1,
                "valid/acc": 1 - loss / 2 - 0.01,
            },
            lr=0.1,
        )
        run.save_checkpoint({"epoch": epoch})


def fail_at(config: dict, run) -> None:
    for epoch in range(1, config["epochs"] + 1):
        if epoch == config["fail_epoch"]:
            raise RuntimeError(f"boom at epoch {epoch}")
        run.log(epoch, {"train/loss": 1.0, "valid/loss": 1.0, "valid/acc": 0.5, "train/acc": 0.5})
        run.save_checkpoint({"epoch": epoch})


def nan_loss(config: dict, run) -> None:
    for epoch in range(1, config["epochs"] + 1):
        loss = math.nan if epoch >= 2 else 1.0
        run.log(epoch, {"train/loss": loss, "valid/loss": loss, "valid/acc": 0.1, "train/acc": 0.1})


def curve(config: dict, run) -> None:
    """A fast, deterministic learning curve: accuracy rises towards a ceiling set by the params.

    The ceiling peaks at lr = 0.01 and drops with dropout, so a search has something to find; the run
    stops as soon as the pruner says so (as the built-in trainer does)."""
    from sweeper import TrialPruned

    lr, dropout = config["lr"], config.get("dropout", 0.0)
    ceiling = 0.95 - 0.1 * abs(math.log10(lr) + 2) - 0.2 * dropout + 0.001 * config.get("seed", 0)
    state = run.load_checkpoint()
    start = state["epoch"] + 1 if state else 1
    for epoch in range(start, config["epochs"] + 1):
        time.sleep(config.get("sleep", 0.0))
        acc = ceiling * (1 - math.exp(-epoch / 3))
        run.log(
            epoch,
            {"train/loss": 1 - acc, "train/acc": acc, "valid/loss": 1.05 - acc, "valid/acc": acc},
            lr=lr,
        )
        run.save_checkpoint({"epoch": epoch})
        if run.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch}")


def pruned_at(config: dict, run) -> None:
    """slow_counter that gives itself up (TrialPruned) at epoch `prune_epoch` when its lr is `prune_lr`, as a
    trial of a sweep with its own stopping rule does."""
    from sweeper import TrialPruned

    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config.get("sleep", 0.2))
        run.log(
            epoch, {"train/loss": 1.0 / epoch, "valid/loss": 1.0 / epoch, "valid/acc": 0.5, "train/acc": 0.5}
        )
        run.save_checkpoint({"epoch": epoch})
        if config["lr"] == config.get("prune_lr") and epoch == config["prune_epoch"]:
            raise TrialPruned(f"pruned at epoch {epoch}")


def growing_checkpoint(config: dict, run) -> None:
    """Each epoch's checkpoint is `grow` MB bigger than the last (to fill a small disk)."""
    for epoch in range(1, config["epochs"] + 1):
        run.log(
            epoch, {"train/loss": 1.0 / epoch, "valid/loss": 1.0 / epoch, "valid/acc": 0.5, "train/acc": 0.5}
        )
        run.save_checkpoint({"epoch": epoch, "pad": b"x" * (config["grow"] * epoch * 1024 * 1024)})


def fail_once(config: dict, run) -> None:
    """Like slow_counter, but the first run of the trial raises at `fail_epoch` (0: never); a retry that
    resumes from the checkpoint (run.restarts > 0) goes through."""
    state = run.load_checkpoint()
    start = state["epoch"] + 1 if state else 1
    for epoch in range(start, config["epochs"] + 1):
        if epoch == config["fail_epoch"] and run.restarts == 0:
            raise RuntimeError(f"boom at epoch {epoch}")
        run.log(epoch, {"train/loss": 1.0 / epoch, "valid/loss": 1.0 / epoch, "valid/acc": 0.5})
        run.save_checkpoint({"epoch": epoch})


def exit_at_once(config: dict, run) -> None:
    """A trial with nothing to do (benchmarks of the launcher and of status)."""


def scripted(config: dict, run) -> None:
    """Logs `config['losses'][seed]` as valid/loss, one value per epoch (valid/acc alongside)."""
    for epoch, loss in enumerate(config["losses"][run.seed], start=1):
        run.log(epoch, {"valid/loss": loss, "valid/acc": 1 - loss})


def who_runs_me(config: dict, run) -> None:
    """Writes into the run dir which process started this job (its parent's command line), then waits for
    `config['wait_for']` (a path) to exist, if given, logging one epoch."""
    import json as _json
    import os as _os
    from pathlib import Path as _Path

    parent = _Path(f"/proc/{_os.getppid()}/cmdline").read_bytes().split(b"\0")
    (run.run_dir / "parent.json").write_text(
        _json.dumps({"pid": _os.getpid(), "parent": [p.decode() for p in parent if p]})
    )
    while config.get("wait_for") and not _Path(config["wait_for"]).exists():
        time.sleep(0.05)
    run.log(1, {"train/loss": 1.0, "valid/loss": 1.0, "valid/acc": 0.5, "train/acc": 0.5})


def train_on(config: dict, run) -> None:
    """Trains from its checkpoint to `run.epochs` at config["lr"]; logs the segment's start LR."""
    state = run.load_checkpoint()
    start = state["epoch"] + 1 if state else 1
    for epoch in range(start, run.epochs + 1):
        loss = 1.0 / epoch
        metrics = {"train/loss": loss, "valid/loss": loss, "valid/acc": 1 - loss, "train/acc": 0.5}
        run.log(epoch, {**metrics, "train/segment_lr": run.segment.lr}, lr=config["lr"])
        run.save_checkpoint({"epoch": epoch})


def some_metrics(config: dict, run) -> None:
    """Three quick epochs; `valid/auroc` only where config['auroc'] is true (runs that log different metrics)."""
    for epoch in range(1, config.get("epochs", 3) + 1):
        acc = config["lr"] * 10 + epoch / 100 + config.get("seed", 0) / 1000
        metrics = {"train/loss": 1 - acc, "valid/loss": 1.1 - acc, "valid/acc": acc}
        if config.get("auroc"):
            metrics["valid/auroc"] = acc + 0.05
        run.log(epoch, metrics)


def record_gpu(config: dict, run) -> None:
    """Appends (trial's lr, CUDA_VISIBLE_DEVICES, start, end) to config['log'] around `sleep` seconds."""
    import json
    import os

    start = time.time()
    time.sleep(config.get("sleep", 1.0))
    line = {
        "lr": config["lr"],
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "start": start,
        "end": time.time(),
    }
    with open(config["log"], "a") as handle:
        handle.write(json.dumps(line) + "\n")
    run.log(1, {"valid/loss": 1.0, "valid/acc": 0.5})
