"""Learning-rate schedules as pure functions: multiplier of optim.lr at fractional epoch t in [0, epochs].

Pure functions of time are easy to test and to plot, and resume needs no scheduler state: the LR of any
step is recomputed from its position. The one exception is ReduceLROnPlateau, which depends on the
metrics seen so far: its small state (`Plateau`) is saved in the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sweeper.config import ScheduleConfig
from sweeper.objective import minimize_by_name


def warmup_factor(t: float, warmup: float) -> float:
    return 1.0 if warmup <= 0 else min(1.0, t / warmup)


def anneal(start: float, end: float, progress: float, shape: str = "cosine") -> float:
    """start -> end as progress goes 0 -> 1 (clipped), along half a cosine or a straight line."""
    progress = min(1.0, max(0.0, progress))
    if shape == "linear":
        return start + (end - start) * progress
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def one_cycle(progress: float, cfg: ScheduleConfig) -> float:
    """torch's OneCycleLR (cosine, two phases) as a function of progress in [0, 1]."""
    initial = 1.0 / cfg.div_factor
    final = initial / cfg.final_div_factor
    if progress <= cfg.pct_start:
        return anneal(initial, 1.0, progress / cfg.pct_start)
    return anneal(1.0, final, (progress - cfg.pct_start) / (1.0 - cfg.pct_start))


def lr_multiplier(cfg: ScheduleConfig, t: float, epochs: int, plateau_scale: float = 1.0) -> float:
    """The LR multiplier at time t (in epochs, fractional: t = 1.5 is halfway through the second epoch).
    `plateau_scale` is the current reduction of a plateau schedule (Plateau.scale)."""
    warm = warmup_factor(t, cfg.warmup_epochs)
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "warmup":
        return warm
    if cfg.name == "plateau":
        return warm * plateau_scale
    if cfg.name == "onecycle":
        return one_cycle(t / epochs, cfg)
    if cfg.name == "cosine":
        decay_start, decay_epochs, shape = cfg.warmup_epochs, epochs - cfg.warmup_epochs, "cosine"
    elif cfg.name == "whd":
        # warmup, hold at the peak, then decay to the floor (by the last epoch unless decay_epochs says)
        decay_start = cfg.warmup_epochs + cfg.hold_epochs
        decay_epochs = cfg.decay_epochs if cfg.decay_epochs is not None else epochs - decay_start
        shape = cfg.decay_shape
    else:
        raise ValueError(f"unknown schedule {cfg.name!r}")
    if t < decay_start:
        return warm
    return anneal(1.0, cfg.min_lr_ratio, (t - decay_start) / max(decay_epochs, 1e-9), shape)


def continued_lr(shape: str, start_lr: float, floor_lr: float, progress: float) -> float:
    """The LR of a continued run (`sweeper continue`, `schedule.after_continue`) at `progress` in [0, 1] of
    its new segment: constant holds `start_lr` (the LR the run ended at, or the `optim.lr` given); cosine
    and linear go from it down to `floor_lr` (never up) by the segment's last epoch."""
    if shape == "constant":
        return start_lr
    return anneal(start_lr, min(floor_lr, start_lr), progress, shape)


@dataclass
class Plateau:
    """ReduceLROnPlateau's rule (same semantics as torch's, relative threshold), stepped once per epoch
    with the monitored metric; `scale` multiplies the LR and never goes below `min_scale`."""

    minimize: bool
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    cooldown: int = 0
    min_scale: float = 0.0
    scale: float = 1.0
    best: float | None = None
    bad_epochs: int = 0
    cooldown_left: int = 0

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, metric: str) -> Plateau:
        minimize = cfg.mode == "min" or (cfg.mode == "auto" and minimize_by_name(metric))
        return cls(minimize, cfg.factor, cfg.patience, cfg.threshold, cfg.cooldown, cfg.min_lr_ratio)

    def improves(self, value: float) -> bool:
        if self.best is None:
            return not math.isnan(value)
        if self.minimize:
            return value < self.best * (1.0 - self.threshold)
        return value > self.best * (1.0 + self.threshold)

    def step(self, value: float) -> None:
        if self.improves(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            reduced = max(self.scale * self.factor, self.min_scale)
            if self.scale - reduced > 1e-12:
                self.scale = reduced
                self.cooldown_left = self.cooldown
            self.bad_epochs = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
