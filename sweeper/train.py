"""The built-in training loop: one function, read top to bottom. `train(config, run)` is an entrypoint
like any user function (see sweeper/run.py for the run API).

Every epoch: train on shuffled (augmented) batches with the LR of its schedule step by step, evaluate on
the validation split, log one metrics row, save last.pt (and best.pt when the objective improved), then
stop if pruned or early-stopped. All state needed to resume bit-for-bit is in last.pt. At the end, where
the data has a test split, the final model's test loss, acc, auroc, knn_acc and silhouette go to
summary.json.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sweeper.checkpointing import pack_optimizer_state, unpack_optimizer_state
from sweeper.config import OptimConfig, TrainConfig, logged_metrics, parse_train_config
from sweeper.data import Augment, Data, class_weights, load_data
from sweeper.errors import SweeperError
from sweeper.evaluation import evaluate
from sweeper.fsutil import atomic_write_bytes
from sweeper.models import build_model
from sweeper.objective import minimize_by_name
from sweeper.run import Run, Segment, TrialPruned
from sweeper.schedules import Plateau, continued_lr, lr_multiplier
from sweeper.schema import SchemaError

TEST_METRICS = ("auroc", "knn_acc", "silhouette")  # the final test evaluation has every extra (it runs once)
AVERAGE_DIR = "average"  # weights of the last `average_last` epochs, one file each
AVERAGED_CHECKPOINT = "averaged.pt"


class TrainingDiverged(SweeperError):
    """The loss became NaN or infinite: the run stops (its epochs so far are kept)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SweeperError("device: cuda was asked for but CUDA is not available on this node")
    return torch.device(name)


def autocast_for(precision: str, device: torch.device) -> tuple[contextlib.AbstractContextManager, bool]:
    """(autocast context, needs loss scaling?). auto: bf16 on CUDA (fp16 where bf16 is missing), fp32 on CPU."""
    if precision == "auto":
        if device.type != "cuda":
            return contextlib.nullcontext(), False
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp32":
        return contextlib.nullcontext(), False
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), dtype == torch.float16


def make_optimizer(cfg: OptimConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    # No weight decay on biases and norm weights (1-d parameters), as is standard for transformers.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


@dataclass
class Tracker:
    """The best value of a metric so far and the epochs since it last improved by more than min_delta.
    Epochs where the metric was not computed (null) do not count."""

    metric: str
    minimize: bool
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, epoch: int, value: float | None) -> bool:
        if value is None:
            return False
        if math.isfinite(value) and (
            self.best is None
            or (value < self.best - self.min_delta if self.minimize else value > self.best + self.min_delta)
        ):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False


class WeightWindow:
    """Averaging the weights of the last k epochs: each epoch's weights go to <run>/average/epoch_<n>.pt
    (older ones are deleted), so a resumed run still has them and last.pt stays small."""

    def __init__(self, run_dir: Path, k: int):
        self.dir, self.k = run_dir / AVERAGE_DIR, k
        self.dir.mkdir(exist_ok=True)

    def add(self, epoch: int, model: torch.nn.Module) -> None:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        atomic_write_bytes(self.dir / f"epoch_{epoch:05d}.pt", buffer.getvalue())
        for path in self.dir.glob("epoch_*.pt"):
            if not epoch - self.k < int(path.stem.split("_")[1]) <= epoch:
                path.unlink(missing_ok=True)

    def average(self, model: torch.nn.Module, epoch: int) -> tuple[torch.nn.Module, list[int]]:
        """A copy of `model` holding the mean of the saved weights of epochs (epoch-k, epoch]."""
        epochs = [
            e for e in range(epoch - self.k + 1, epoch + 1) if (self.dir / f"epoch_{e:05d}.pt").exists()
        ]
        states = [
            torch.load(self.dir / f"epoch_{e:05d}.pt", map_location="cpu", weights_only=True) for e in epochs
        ]
        mean = {}
        for name, value in states[0].items():
            if value.is_floating_point():
                mean[name] = torch.stack([s[name].float() for s in states]).mean(0).to(value.dtype)
            else:
                mean[name] = states[-1][name]  # e.g. BatchNorm's num_batches_tracked
        averaged = copy.deepcopy(model)
        averaged.load_state_dict(mean)
        return averaged, epochs


def batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def train(config: dict[str, Any], run: Run) -> dict[str, Any]:
    cfg: TrainConfig = parse_train_config(config)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    data: Data = load_data(cfg.data).to(device)  # small data lives on the device: no loader, no copies
    try:
        model = build_model(cfg.model, data.info).to(device)
    except SchemaError as exc:
        raise SweeperError(f"model.{exc.key}: {exc.message}") from None
    optimizer = make_optimizer(cfg.optim, model)
    autocast, scale_loss = autocast_for(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=scale_loss)
    weight = class_weights(cfg.class_weights, data.y_train, data.info.num_classes)
    augment = Augment(cfg.augment, data.info.kind, device, cfg.seed) if cfg.augment.active else None
    shuffle = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.batch_size)

    objective, minimize_objective = run.objective.metric, not run.objective.maximize
    if objective not in logged_metrics(cfg):
        raise SweeperError(
            f"objective {objective!r} is not logged by this run; it logs {', '.join(logged_metrics(cfg))}"
        )
    best = Tracker(objective, minimize_objective)
    stopper = None
    if cfg.early_stopping is not None:
        metric = cfg.early_stopping.metric or objective
        minimize = cfg.early_stopping.mode == "min" or (
            cfg.early_stopping.mode == "auto" and minimize_by_name(metric)
        )
        stopper = Tracker(metric, minimize, cfg.early_stopping.min_delta)
    plateau = None
    if cfg.schedule.name == "plateau":
        plateau_metric = cfg.schedule.metric or objective
        plateau = Plateau.from_config(cfg.schedule, plateau_metric)
    window = WeightWindow(run.run_dir, cfg.average_last) if cfg.average_last else None
    start_epoch = 1

    state = run.load_checkpoint()
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as exc:
            raise SweeperError(
                f"{run.run_dir}/last.pt does not fit this model: {str(exc).splitlines()[0]}"
            ) from None
        optimizer.load_state_dict(unpack_optimizer_state(state["optimizer"]))
        scaler.load_state_dict(state["scaler"])
        shuffle.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if augment is not None and state.get("augment_rng") is not None:
            augment.generator.set_state(state["augment_rng"])
        best = Tracker(**state["best"])
        if stopper is not None and state.get("early_stopping"):
            stopper = Tracker(**state["early_stopping"])
        if plateau is not None and state.get("plateau"):
            plateau.load_state_dict(state["plateau"])
        start_epoch = state["epoch"] + 1
        optimizer.param_groups[0]["weight_decay"] = cfg.optim.weight_decay  # a continuation may change it
        if stopper is not None and run.segment.number > 1 and state["epoch"] == run.segment.start_epoch:
            stopper.bad_epochs = 0  # a continuation trains on: patience counts from where it starts

    lr = cfg.optim.lr
    for epoch in range(start_epoch, cfg.epochs + 1):
        # -- train one epoch -------------------------------------------------------------------------
        model.train()
        order = torch.randperm(len(data.x_train), generator=shuffle).to(device)
        # Sums stay on the device: no host sync per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for step, idx in enumerate(batches(order, cfg.batch_size)):
            x, y = data.x_train[idx], data.y_train[idx]
            if augment is not None:
                x = augment(x)
            t = epoch - 1 + (step + 1) / steps_per_epoch
            lr = step_lr(cfg, run.segment, t, plateau)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weight, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()

        # -- evaluate ----------------------------------------------------------------------------------
        n = len(data.x_train)
        last_epoch = epoch == cfg.epochs
        extras = tuple(cfg.eval.metrics) if (epoch % cfg.eval.every == 0 or last_epoch) else ()
        valid = evaluate(
            model, data.x_valid, data.y_valid, cfg.eval, autocast, extras, (data.x_train, data.y_train)
        )
        metrics: dict[str, float | None] = {
            "train/loss": loss_sum.item() / n,
            "train/acc": correct.item() / n,
        }
        metrics.update({f"valid/{name}": value for name, value in valid.items()})
        for name in cfg.eval.metrics:
            metrics.setdefault(f"valid/{name}", None)

        stopping = False
        if stopper is not None:
            stopper.update(epoch, metrics.get(stopper.metric))
            stopping = stopper.bad_epochs >= cfg.early_stopping.patience and not last_epoch
        if window is not None:
            window.add(epoch, model)
            metrics.update({"valid/avg_loss": None, "valid/avg_acc": None})
            if last_epoch or stopping:
                averaged, epochs = window.average(model, epoch)
                recompute_batchnorm(averaged, data.x_train, cfg.eval.batch_size, autocast)
                avg = evaluate(averaged, data.x_valid, data.y_valid, cfg.eval, autocast)
                metrics.update({"valid/avg_loss": avg["loss"], "valid/avg_acc": avg["acc"]})
                run.save(
                    AVERAGED_CHECKPOINT, {"model": averaged.state_dict(), "epochs": epochs, "metrics": avg}
                )

        run.log(epoch, metrics, lr=lr)
        if not math.isfinite(metrics["train/loss"]):
            raise TrainingDiverged(
                f"train/loss is {metrics['train/loss']} at epoch {epoch}: training diverged"
            )

        if plateau is not None and metrics.get(plateau_metric) is not None:
            plateau.step(metrics[plateau_metric])
        improved = best.update(epoch, metrics.get(objective))
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": pack_optimizer_state(optimizer.state_dict()),  # 3 tensors instead of 96
            "scaler": scaler.state_dict(),
            "shuffle_rng": shuffle.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "augment_rng": augment.generator.get_state() if augment is not None else None,
            "best": asdict(best),
            "early_stopping": asdict(stopper) if stopper is not None else None,
            "plateau": plateau.state_dict() if plateau is not None else None,
        }
        run.save_checkpoint(state, best=improved)
        if run.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch}")
        if stopping:
            epochs_word = "epoch" if stopper.bad_epochs == 1 else "epochs"
            note = (
                f"early stopped at epoch {epoch}: {stopper.metric} did not improve for {stopper.bad_epochs} "
                f"{epochs_word} (best {stopper.best:.6g} at epoch {stopper.best_epoch})"
            )
            run.set_note(note)
            break
    if data.x_test is not None:  # once, at the end: the final model on the held-out test split
        reference = (data.x_train, data.y_train)
        test = evaluate(model, data.x_test, data.y_test, cfg.eval, autocast, TEST_METRICS, reference)
        run.summary({f"test/{name}": value for name, value in test.items()})
    run.wait_for_checkpoint()  # when train returns, last.pt (and best.pt) of its last epoch are on disk
    return {"best": best.best, "best_epoch": best.best_epoch, "objective": objective}


def step_lr(cfg: TrainConfig, segment: Segment, t: float, plateau: Plateau | None) -> float:
    """The LR at fractional epoch t: the schedule's; after `sweeper continue`, `schedule.after_continue`'s
    from the segment's start LR to the new last epoch (sweeper/schedules.py)."""
    if segment.number > 1 and segment.lr is not None and t > segment.start_epoch:
        progress = (t - segment.start_epoch) / max(cfg.epochs - segment.start_epoch, 1e-9)
        floor = cfg.optim.lr * cfg.schedule.min_lr_ratio
        return continued_lr(cfg.schedule.after_continue, segment.lr, floor, progress)
    return cfg.optim.lr * lr_multiplier(cfg.schedule, t, cfg.epochs, plateau.scale if plateau else 1.0)


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, x: torch.Tensor, batch_size: int, autocast) -> None:
    """BatchNorm statistics of averaged weights are not the average of the statistics: recompute them on
    the training data (torch.optim.swa_utils.update_bn does the same)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    with autocast:
        torch.optim.swa_utils.update_bn(batches(x, batch_size), model)
