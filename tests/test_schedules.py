"""The LR curve of every schedule, checked point by point (and against torch's own schedulers where one exists)."""

from __future__ import annotations

import math

import pytest
import torch

from sweeper.config import ScheduleConfig
from sweeper.schedules import Plateau, lr_multiplier
from sweeper.schema import from_dict

EPOCHS = 20


def curve(cfg: ScheduleConfig, epochs: int = EPOCHS, steps: int = 10) -> list[tuple[float, float]]:
    """(t, multiplier) at every step, with t as the training loop computes it."""
    return [
        (t, lr_multiplier(cfg, t, epochs))
        for t in (e + (s + 1) / steps for e in range(epochs) for s in range(steps))
    ]


def schedule(**fields) -> ScheduleConfig:
    return from_dict(ScheduleConfig, fields)


def test_constant_is_one_everywhere():
    assert {m for _, m in curve(schedule(name="constant", warmup_epochs=5))} == {1.0}


def test_linear_warmup_then_constant():
    cfg = schedule(name="warmup", warmup_epochs=4)
    assert lr_multiplier(cfg, 1.0, EPOCHS) == pytest.approx(0.25)
    assert lr_multiplier(cfg, 2.0, EPOCHS) == pytest.approx(0.5)
    assert lr_multiplier(cfg, 4.0, EPOCHS) == 1.0
    assert all(m == 1.0 for t, m in curve(cfg) if t >= 4)
    rising = [m for t, m in curve(cfg) if t <= 4]
    assert rising[0] > 0 and all(b > a for a, b in zip(rising, rising[1:], strict=False))


def test_cosine_matches_torch_cosine_annealing():
    cfg = schedule(name="cosine", min_lr_ratio=0.1)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS, eta_min=0.1)
    for epoch in range(EPOCHS + 1):
        assert lr_multiplier(cfg, float(epoch), EPOCHS) == pytest.approx(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torch_schedule.step()


def test_cosine_with_warmup_peaks_then_decays_to_the_floor():
    cfg = schedule(name="cosine", warmup_epochs=2, min_lr_ratio=0.05)
    points = curve(cfg)
    assert lr_multiplier(cfg, 2.0, EPOCHS) == 1.0
    decay = [m for t, m in points if t >= 2]
    assert all(b < a for a, b in zip(decay, decay[1:], strict=False))
    assert points[-1][1] == pytest.approx(0.05)
    assert lr_multiplier(cfg, 11.0, EPOCHS) == pytest.approx(0.05 + 0.95 * 0.5)  # halfway through the decay


def test_whd_warms_holds_and_really_decays_to_its_floor():
    # The reference logs had a WHD scheduler that never left the hold phase; this pins each phase.
    cfg = schedule(name="whd", warmup_epochs=2, hold_epochs=8, min_lr_ratio=0.01)
    points = dict(curve(cfg))
    assert lr_multiplier(cfg, 1.0, EPOCHS) == pytest.approx(0.5)
    assert all(m == 1.0 for t, m in points.items() if 2 <= t <= 10)  # hold at the peak
    decay = [m for t, m in points.items() if t > 10]
    assert all(b < a for a, b in zip(decay, decay[1:], strict=False)), "whd must decay after the hold"
    assert decay[0] < 1.0 and decay[-1] == pytest.approx(0.01)
    assert lr_multiplier(cfg, 15.0, EPOCHS) == pytest.approx(0.01 + 0.99 * 0.5)


def test_whd_linear_decay_with_its_own_length_then_stays_at_the_floor():
    cfg = schedule(
        name="whd", warmup_epochs=0, hold_epochs=5, decay_epochs=10, decay_shape="linear", min_lr_ratio=0.2
    )
    assert lr_multiplier(cfg, 5.0, EPOCHS) == 1.0
    assert lr_multiplier(cfg, 7.5, EPOCHS) == pytest.approx(0.8)
    assert lr_multiplier(cfg, 10.0, EPOCHS) == pytest.approx(0.6)
    assert lr_multiplier(cfg, 15.0, EPOCHS) == pytest.approx(0.2)
    assert lr_multiplier(cfg, 19.5, EPOCHS) == pytest.approx(0.2)


def test_onecycle_endpoints_and_torch_agreement():
    cfg = schedule(name="onecycle", pct_start=0.25, div_factor=10.0, final_div_factor=100.0)
    epochs, steps = 10, 200
    assert lr_multiplier(cfg, 0.0, epochs) == pytest.approx(0.1)
    assert lr_multiplier(cfg, 2.5, epochs) == pytest.approx(1.0)
    assert lr_multiplier(cfg, 10.0, epochs) == pytest.approx(0.1 / 100)
    total = epochs * steps
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=1.0,
        total_steps=total,
        pct_start=0.25,
        div_factor=10.0,
        final_div_factor=100.0,
        anneal_strategy="cos",
        cycle_momentum=False,
    )
    for step in range(total):
        ours = lr_multiplier(cfg, epochs * step / (total - 1), epochs)
        assert ours == pytest.approx(optimizer.param_groups[0]["lr"], abs=2e-3)
        optimizer.step()
        torch_schedule.step()


@pytest.mark.parametrize(
    "mode,kwargs",
    [
        ("min", {"factor": 0.5, "patience": 2}),
        ("max", {"factor": 0.1, "patience": 1, "cooldown": 2}),
        ("min", {"factor": 0.5, "patience": 0, "threshold": 0.1, "min_lr": 0.1}),
    ],
)
def test_plateau_matches_torch_reduce_lr_on_plateau(mode, kwargs):
    values = [1.0, 0.9, 0.9, 0.95, 0.91, 0.5, 0.5, 0.5, 0.5, 0.49, 0.6, 0.6, 0.6, 0.6, 0.2, 0.2, 0.2, 0.2]
    if mode == "max":
        values = [-v for v in values]
    min_lr = kwargs.pop("min_lr", 0.0)
    cfg = schedule(name="plateau", mode=mode, min_lr_ratio=min_lr, **kwargs)
    ours = Plateau.from_config(cfg, "valid/whatever")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode=mode, threshold_mode="rel", min_lr=min_lr, **kwargs
    )
    seen = []
    for value in values:
        ours.step(value)
        reference.step(value)
        assert ours.scale == pytest.approx(optimizer.param_groups[0]["lr"]), f"after {value}"
        seen.append(ours.scale)
    assert min(seen) < 1.0  # the sequence does trigger reductions
    restored = Plateau.from_config(cfg, "valid/whatever")
    restored.load_state_dict(ours.state_dict())
    assert restored == ours


def test_plateau_mode_auto_follows_the_metric_name():
    cfg = schedule(name="plateau")
    assert Plateau.from_config(cfg, "valid/loss").minimize
    assert not Plateau.from_config(cfg, "valid/acc").minimize


def test_plateau_multiplier_combines_warmup_and_reduction():
    cfg = schedule(name="plateau", warmup_epochs=2)
    assert lr_multiplier(cfg, 1.0, EPOCHS, plateau_scale=0.1) == pytest.approx(0.05)
    assert lr_multiplier(cfg, 5.0, EPOCHS, plateau_scale=0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["constant", "warmup", "cosine", "whd", "plateau", "onecycle"])
def test_every_schedule_stays_within_zero_and_one(name):
    # cosine and whd reach their floor (0 by default) exactly at the last step
    cfg = schedule(name=name, warmup_epochs=3, hold_epochs=3)
    assert all(0.0 <= m <= 1.0 and math.isfinite(m) for _, m in curve(cfg))
    assert curve(cfg)[0][1] > 0.0


def test_after_continue_holds_or_decays_from_the_start_lr_never_up():
    from sweeper.schedules import continued_lr

    assert [continued_lr("constant", 1e-3, 0.0, p) for p in (0.0, 0.5, 1.0)] == [1e-3] * 3
    assert continued_lr("linear", 1e-3, 1e-4, 0.5) == pytest.approx(5.5e-4)
    assert continued_lr("cosine", 1e-3, 0.0, 0.0) == pytest.approx(1e-3)
    assert continued_lr("cosine", 1e-3, 0.0, 0.5) == pytest.approx(5e-4)
    assert continued_lr("cosine", 1e-3, 0.0, 1.0) == pytest.approx(0.0)
    assert continued_lr("linear", 1e-5, 1e-4, 0.5) == 1e-5  # a floor above the start: held, not raised
