"""What train_digits.py and train_digits_resume.py share: flags, data, model, one epoch, the metric line.

A plain PyTorch MLP on scikit-learn's bundled digits (8x8 images, 1797 samples, no download). Nothing here
knows about sweeper: the two scripts are ordinary argparse programs that print one JSON line per epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

VALID_FRACTION = 0.2
SPLIT_SEED = 0  # the train/valid split is the same for every --seed, so seeds compare like with like


def make_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay to 0)")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument("--hidden", type=int, default=128, help="width of the two hidden layers")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument(
        "--epochs",
        type=int,
        default=int(os.environ.get("SWEEPER_EPOCHS") or 10),  # raised by `sweeper continue --epochs`
        help="the epoch to train to (default: $SWEEPER_EPOCHS, else 10)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def set_threads() -> None:
    """One torch thread unless OMP_NUM_THREADS says otherwise (a sweep runs several trials per node)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.tensor(np.random.RandomState(SPLIT_SEED).permutation(len(y)))
    n_valid = int(len(y) * VALID_FRACTION)
    valid, train = order[:n_valid], order[n_valid:]
    return x[train], y[train], x[valid], y[valid]


def make_model(hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 10),
    )


def make_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)


def lr_at(epoch: int, args: argparse.Namespace) -> float:
    """Cosine decay from --lr at epoch 1 to 0 after the last epoch (a function of the epoch: resumable)."""
    return args.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))


def train_epoch(model, optimizer, x, y, batch_size: int, generator: torch.Generator, should_stop=None):
    """One pass over (x, y) in a shuffled order. Returns (mean loss, accuracy), or None when `should_stop()`
    turned true between two batches (the partial epoch is abandoned)."""
    model.train()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    for batch in torch.randperm(len(y), generator=generator).split(batch_size):
        if should_stop is not None and should_stop():
            return None
        logits = model(x[batch])
        loss = loss_fn(logits, y[batch])
        optimizer.zero_grad()
        (loss / len(batch)).backward()
        optimizer.step()
        total_loss += loss.item()
        correct += (logits.argmax(1) == y[batch]).sum().item()
    return total_loss / len(y), correct / len(y)


@torch.no_grad()
def evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    return nn.functional.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def emit(epoch: int, train: tuple[float, float], valid: tuple[float, float], lr: float) -> None:
    """One JSON line on stdout, flushed at once (stdout is a pipe, not a terminal, under a sweep)."""
    row = {
        "epoch": epoch,
        "train/loss": round(train[0], 6),
        "train/acc": round(train[1], 6),
        "valid/loss": round(valid[0], 6),
        "valid/acc": round(valid[1], 6),
        "lr": lr,
    }
    print(json.dumps(row), flush=True)


def log(message: str) -> None:
    """Human-readable notes go to stderr, so stdout stays one JSON object per line."""
    print(message, file=sys.stderr, flush=True)
