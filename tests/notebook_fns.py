"""Training functions of the notebook tests (imported by real job processes): numbers made once."""

from __future__ import annotations


def landscape(config: dict, run) -> None:
    """Two epochs, then summary numbers (h0, retention@100) that are functions of the config's `size`."""
    size = float(config["size"])
    for epoch in (1, 2):
        loss = 1.0 / (epoch * size)
        run.log(epoch, {"train/loss": loss, "train/acc": 0.5, "valid/loss": loss, "valid/acc": 1 - loss})
    run.summary(h0=size**0.5)
    run.summary({"retention@100": 1 - 1 / size, "h0": size**0.5 + 0.01 * (size % 3)})
