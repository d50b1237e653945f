"""Checkpoints written in the background: what last.pt holds is the state at the epoch, shared storages
stay shared, and a failed write is raised by the training thread before the next epoch is recorded."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

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
