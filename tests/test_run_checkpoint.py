"""Checkpoints written in the background: what last.pt holds is the state at the epoch, shared storages
stay shared, a failed write is raised by the training thread before the next epoch is recorded, and the
trainer's packed optimizer state trains on exactly as the original."""

from __future__ import annotations

import copy

import pyarrow.parquet as pq
import pytest
import torch

from sweeper.checkpointing import pack_optimizer_state, unpack_optimizer_state
from sweeper.run import Run


def test_checkpoint_holds_the_state_of_its_epoch_while_training_goes_on(tmp_path):
    run = Run(tmp_path, {"epochs": 2}, tensorboard=False)
    weight = torch.zeros(256, 256)
    tied = {"embed": weight, "head": weight.t(), "view": weight[:2]}
    run.log(1, {"train/loss": 1.0})
    run.save_checkpoint({"epoch": 1, "model": tied, "step": [1, (2, 3)]})
    weight.add_(1.0)  # the next epoch's optimizer step, while last.pt may still be being written
    run.close()
    state = Run(tmp_path, {"epochs": 2}, tensorboard=False).load_checkpoint()
    assert state["step"] == [1, (2, 3)]
    assert torch.equal(state["model"]["embed"], torch.zeros(256, 256))
    assert torch.equal(state["model"]["head"], torch.zeros(256, 256))
    # one storage, as torch.save writes tied weights and views of the live model
    embed, head, view = (state["model"][k] for k in ("embed", "head", "view"))
    assert head.untyped_storage().data_ptr() == embed.untyped_storage().data_ptr()
    assert view.untyped_storage().data_ptr() == embed.untyped_storage().data_ptr()


def test_a_failed_background_write_is_raised_before_the_next_epoch_is_recorded(tmp_path):
    run = Run(tmp_path, {"epochs": 3}, tensorboard=False)
    run.log(1, {"train/loss": 1.0})
    run.save_checkpoint({"epoch": 1})
    run.log(2, {"train/loss": 0.5})
    run.save_checkpoint({"epoch": 2, "hook": lambda: None})  # copied as is, then torch.save cannot pickle it
    with pytest.raises(Exception, match="pickle"):
        run.log(3, {"train/loss": 0.25})
    assert pq.read_table(tmp_path / "metrics.parquet").column("epoch").to_pylist() == [1, 2]
    assert Run(tmp_path, {"epochs": 3}, tensorboard=False).load_checkpoint() == {"epoch": 1}
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_second_run_of_the_dir_reads_last_pt_after_the_first_runs_write_has_landed(tmp_path):
    """A retry or a `train` call in the same process makes a new Run of the same dir while the first
    Run's last write may still be queued: its load waits for every write of the process, not only its own."""
    import threading

    from sweeper import checkpointing

    first = Run(tmp_path, {"epochs": 2}, tensorboard=False)
    first.log(1, {"train/loss": 1.0})
    busy = threading.Event()
    checkpointing._executor().submit(busy.wait)  # the writer thread is held: the next write queues behind it
    first.save_checkpoint({"epoch": 1})
    threading.Timer(1.0, busy.set).start()  # a load that does not wait returns long before this
    assert not (tmp_path / "last.pt").exists()
    assert Run(tmp_path, {"epochs": 2}, tensorboard=False).load_checkpoint() == {"epoch": 1}
    first.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
        lambda params: torch.optim.AdamW(params, lr=1e-2, amsgrad=True),
        lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9, nesterov=True),
    ],
    ids=["adamw", "adamw-amsgrad", "sgd-momentum"],
)
def test_a_packed_optimizer_state_trains_on_exactly_as_the_original(tmp_path, make):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 2))
    groups = [{"params": model[0].parameters()}, {"params": [*model[1].parameters(), *model[2].parameters()]}]
    optimizer = make(groups)
    x = torch.randn(16, 5)

    def step(model, optimizer):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()

    step(model, optimizer)
    original = optimizer.state_dict()
    packed = pack_optimizer_state(original)
    tensors = [
        v for values in packed["state"].values() for v in values.values() if isinstance(v, torch.Tensor)
    ]
    names = {name for values in original["state"].values() for name in values}
    assert not tensors and len(packed["flat"]) == len(names)  # one flat tensor per state name (step, moments)
    torch.save(packed, tmp_path / "packed.pt")
    unpacked = unpack_optimizer_state(torch.load(tmp_path / "packed.pt", weights_only=True))
    assert unpacked["param_groups"] == original["param_groups"]
    assert unpacked["state"].keys() == original["state"].keys()
    for param_id, values in original["state"].items():
        assert unpacked["state"][param_id].keys() == values.keys()
        for name, value in values.items():
            assert torch.equal(unpacked["state"][param_id][name], value), (param_id, name)

    twin = copy.deepcopy(model)
    twin_optimizer = make(
        [{"params": twin[0].parameters()}, {"params": [*twin[1].parameters(), *twin[2].parameters()]}]
    )
    twin_optimizer.load_state_dict(unpacked)
    for _ in range(3):
        step(model, optimizer)
        step(twin, twin_optimizer)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert unpack_optimizer_state(original) is original  # a checkpoint from before packing loads as it was
