"""A Hydra app: a one-hidden-layer MLP on scikit-learn's digits in plain numpy, one JSON line per epoch.

    python train.py optim.lr=0.1 model.hidden=32 epochs=5 seed=1 hydra.run.dir=/tmp/run

The config is conf/config.yaml; every key is overridable Hydra-style (`key=value`). Nothing here knows
about sweeper: under a sweep, `{overrides}` in the spec's command expands to exactly such words, and
`hydra.run.dir={run_dir}/hydra` keeps Hydra's own files (.hydra/, the log) inside the trial's run dir.
"""

from __future__ import annotations

import json

import hydra
import numpy as np
from omegaconf import DictConfig
from sklearn.datasets import load_digits

VALID_FRACTION = 0.2
SPLIT_SEED = 0  # the same train/valid split for every seed


def load_data():
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    order = np.random.RandomState(SPLIT_SEED).permutation(len(y))
    n_valid = int(len(y) * VALID_FRACTION)
    valid, train = order[:n_valid], order[n_valid:]
    return x[train], y[train], x[valid], y[valid]


def init_params(n_in: int, hidden: int, n_out: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if hidden == 0:
        return {"w2": np.zeros((n_in, n_out)), "b2": np.zeros(n_out)}
    return {
        "w1": rng.normal(0, np.sqrt(2 / n_in), (n_in, hidden)),
        "b1": np.zeros(hidden),
        "w2": rng.normal(0, np.sqrt(1 / hidden), (hidden, n_out)),
        "b2": np.zeros(n_out),
    }


def forward(params, x):
    h = np.maximum(x @ params["w1"] + params["b1"], 0) if "w1" in params else x
    logits = h @ params["w2"] + params["b2"]
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    return h, probs


def loss_and_acc(probs, y) -> tuple[float, float]:
    return float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean()), float((probs.argmax(1) == y).mean())


def gradients(params, x, y):
    h, probs = forward(params, x)
    delta = probs.copy()
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)
    grads = {"w2": h.T @ delta, "b2": delta.sum(0)}
    if "w1" in params:
        dh = (delta @ params["w2"].T) * (h > 0)
        grads |= {"w1": x.T @ dh, "b1": dh.sum(0)}
    return grads, probs


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    rng = np.random.default_rng(cfg.seed)
    x_train, y_train, x_valid, y_valid = load_data()
    params = init_params(x_train.shape[1], cfg.model.hidden, 10, rng)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    for epoch in range(1, cfg.epochs + 1):
        total_loss, correct = 0.0, 0
        order = rng.permutation(len(y_train))
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            grads, probs = gradients(params, x_train[batch], y_train[batch])
            loss, acc = loss_and_acc(probs, y_train[batch])
            total_loss += loss * len(batch)
            correct += acc * len(batch)
            for k in params:
                decay = cfg.optim.weight_decay * params[k] if k.startswith("w") else 0.0
                velocity[k] = cfg.optim.momentum * velocity[k] - cfg.optim.lr * (grads[k] + decay)
                params[k] += velocity[k]
        valid_loss, valid_acc = loss_and_acc(forward(params, x_valid)[1], y_valid)
        row = {
            "epoch": epoch,
            "train/loss": round(total_loss / len(y_train), 6),
            "train/acc": round(correct / len(y_train), 6),
            "valid/loss": round(valid_loss, 6),
            "valid/acc": round(valid_acc, 6),
            "lr": cfg.optim.lr,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
