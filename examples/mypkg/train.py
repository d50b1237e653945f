"""Your own training loop, swept by sweeper: `entrypoint: mypkg.train:main` in a sweep spec.

sweeper calls `main(config, run)` once per trial, in a job (a SLURM array task, or a local process):
`config` is the spec's `base:` with the trial's swept values and `seed` filled in; `run` is a `sweeper.Run`.
Everything else here is plain PyTorch: a small CNN on scikit-learn's bundled 8x8 digits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import sweeper


def load_digits(seed: int = 0) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.tensor(digits.target)
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return x_train, y_train, x_valid, y_valid


class SmallCNN(nn.Module):
    def __init__(self, width: int, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def main(config: dict, run: sweeper.Run) -> dict:
    torch.manual_seed(config["seed"])
    x_train, y_train, x_valid, y_valid = load_digits()
    model = SmallCNN(config["width"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    # run.epochs is config["epochs"], or the new target after `sweeper continue --epochs N`
    epochs, batch_size = run.epochs, config["batch_size"]
    shuffle = torch.Generator().manual_seed(config["seed"])
    best, start = 0.0, 1

    # After a requeue (SLURM timeout or preemption) or `sweeper retry`, continue where the run stopped.
    state = run.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle.set_state(state["shuffle"])
        best, start = state["best"], state["epoch"] + 1

    for epoch in range(start, epochs + 1):
        if run.segment.number > 1:  # trained on by `sweeper continue`: the LR it ended at, or the one given
            lr = run.segment.lr
        else:
            lr = config["lr"] * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / epochs))  # cosine, per epoch
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(x_train), generator=shuffle)
        train_loss = 0.0
        for start_index in range(0, len(order), batch_size):
            idx = order[start_index : start_index + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(idx)

        model.eval()
        with torch.no_grad():
            logits = model(x_valid)
        valid_acc = (logits.argmax(1) == y_valid).float().mean().item()
        # One row per epoch in metrics.parquet and TensorBoard; names are `split/metric`.
        run.log(
            epoch,
            {
                "train/loss": train_loss / len(x_train),
                "valid/loss": F.cross_entropy(logits, y_valid).item(),
                "valid/acc": valid_acc,
            },
            lr=lr,
        )
        improved = valid_acc > best
        best = max(best, valid_acc)
        run.save_checkpoint(
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "shuffle": shuffle.get_state(),
                "best": best,
            },
            best=improved,  # also keep this one as best.pt
        )
        if run.should_prune():  # an Optuna pruner gave up on this trial (never true in a grid sweep)
            raise sweeper.TrialPruned(f"pruned at epoch {epoch}")
    return {"best_valid_acc": best}
