"""metrics.parquet: the schema read back by pyarrow, atomic rewrites, and a killed writer leaving a valid file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from sweeper.metrics import MetricsWriter, read_metrics, rows_to_table
from sweeper.run import Run


def test_schema_and_roundtrip(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.log(
        1,
        {"time_s": 1.5, "lr": 0.1, "train/loss": 2.0, "train/acc": 0.25, "valid/loss": 1.9, "valid/acc": 0.3},
    )
    writer.log(
        2,
        {
            "time_s": 3.0,
            "lr": 0.05,
            "train/loss": 1.0,
            "train/acc": 0.5,
            "valid/loss": 1.2,
            "valid/acc": 0.6,
            "valid/auroc": 0.7,
        },
    )
    table = pq.read_table(tmp_path / "metrics.parquet")
    assert table.column_names == [
        "epoch",
        "time_s",
        "lr",
        "segment",
        "train/loss",
        "train/acc",
        "valid/loss",
        "valid/acc",
        "valid/auroc",
    ]
    assert str(table.schema.field("epoch").type) == "int64"
    assert str(table.schema.field("segment").type) == "int64"
    assert table.column("segment").to_pylist() == [1, 1]  # rows that do not say: the first segment
    assert all(str(table.schema.field(n).type) == "double" for n in table.column_names[1:] if n != "segment")
    assert table.column("epoch").to_pylist() == [1, 2]
    assert table.column("valid/auroc").to_pylist() == [None, 0.7]  # a metric added later is null before
    assert table.schema.metadata[b"sweeper.schema"] == b"1"


def test_the_file_grown_row_by_row_equals_the_table_of_all_rows(tmp_path):
    """The writer keeps the rows by column as they come; the file it writes after a restore (rows of an
    older run without `segment`, a metric that stopped) and new rows (a metric that starts) is the table
    made from every row at once."""
    writer = MetricsWriter(tmp_path, tensorboard=False)
    restored = [
        {"epoch": 1, "time_s": 1.0, "lr": 0.1, "train/loss": 2.0, "valid/h0": 5.0},
        {"epoch": 2, "time_s": 2.0, "lr": None, "train/loss": 1.5},
    ]
    writer.restore(restored)
    writer.log(3, {"time_s": 3.0, "segment": 2, "train/loss": 1.0, "valid/acc": 0.5})
    writer.log(4, {"time_s": 4.0, "segment": 2, "train/loss": 0.5})
    table = pq.read_table(tmp_path / "metrics.parquet")
    assert table.equals(rows_to_table(writer.rows).replace_schema_metadata(table.schema.metadata))
    assert table.column_names == ["epoch", "time_s", "lr", "segment", "train/loss", "valid/h0", "valid/acc"]
    assert table.column("segment").to_pylist() == [1, 1, 2, 2]
    assert table.column("valid/h0").to_pylist() == [5.0, None, None, None]
    assert table.column("valid/acc").to_pylist() == [None, None, 0.5, None]


def tensorboard_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the event files in log_dir, as TensorBoard's own server loads them."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item()) for e in events.Tensors(tag)]
        for tag in events.PluginTagToContent("scalars")  # not the HParams plugin's records
    }


def test_tensorboard_mirror_holds_the_parquet_doubles_exactly(tmp_path):
    values = [0.1, 1 / 3, 0.7123456789012345, 2.0 / 7.0]  # none of them is a float32
    writer = MetricsWriter(tmp_path)
    for epoch, value in enumerate(values, start=1):
        writer.log(epoch, {"valid/loss": value, "lr": value / 10})
    writer.close()
    parquet = pq.read_table(tmp_path / "metrics.parquet")
    scalars = tensorboard_scalars(tmp_path)
    for tag in ("valid/loss", "lr"):
        epochs, column = parquet.column("epoch").to_pylist(), parquet.column(tag).to_pylist()
        assert scalars[tag] == list(zip(epochs, column, strict=True))
    assert scalars["valid/loss"][1][1] == 1 / 3  # bit for bit, not 0.3333333432674408 (float32)


def test_epochs_must_increase(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.log(1, {"train/loss": 1.0})
    with pytest.raises(ValueError, match="epochs must increase"):
        writer.log(1, {"train/loss": 1.0})


def test_no_temp_files_left(tmp_path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    for epoch in range(1, 6):
        writer.log(epoch, {"train/loss": 1.0 / epoch})
    assert sorted(os.listdir(tmp_path)) == ["metrics.parquet"]


def test_resume_restores_rows_from_checkpoint(tmp_path):
    run = Run(tmp_path, {"epochs": 5}, tensorboard=False)
    for epoch in (1, 2):
        run.log(epoch, {"train/loss": 1.0 / epoch})
        run.save_checkpoint({"epoch": epoch})
    run.log(3, {"train/loss": 0.3})  # logged, but the job dies before checkpointing epoch 3
    assert read_metrics(tmp_path / "metrics.parquet").column("epoch").to_pylist() == [1, 2, 3]
    resumed = Run(tmp_path, {"epochs": 5}, tensorboard=False)
    state = resumed.load_checkpoint()
    assert state == {"epoch": 2}
    assert read_metrics(tmp_path / "metrics.parquet").column("epoch").to_pylist() == [1, 2]
    resumed.log(3, {"train/loss": 0.33})
    assert read_metrics(tmp_path / "metrics.parquet").column("train/loss").to_pylist() == [1.0, 0.5, 0.33]
    assert resumed.restarts == 1


WRITER = textwrap.dedent("""
    import sys
    from sweeper.metrics import MetricsWriter
    writer = MetricsWriter(sys.argv[1], tensorboard=False)
    epoch = 0
    while True:
        epoch += 1
        writer.log(epoch, {"train/loss": 1.0 / epoch, "valid/acc": epoch * 1e-6, "pad/" + "x" * 200: float(epoch)})
        print(epoch, flush=True)
""")


@pytest.mark.parametrize("delay", [0.3, 0.55, 0.8])
def test_kill_9_leaves_a_readable_file_with_every_finished_epoch(tmp_path, delay):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "1"  # started writing
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    table = pq.read_table(tmp_path / "metrics.parquet")
    epochs = table.column("epoch").to_pylist()
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 1
    assert table.column("train/loss").to_pylist() == [1.0 / e for e in epochs]
