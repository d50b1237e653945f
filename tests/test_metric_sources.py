"""Metric sources of command trials, on real files: JSON lines, TensorBoard event files written by PyTorch's
SummaryWriter, Lightning's CSVLogger layout (including its header rewrite), a regex over stdout lines."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sweeper.metric_sources import (
    MAX_LINE_BYTES,
    MAX_WARNINGS,
    AutoSource,
    CsvSource,
    JsonLinesSource,
    RegexSource,
    Row,
    TensorBoardSource,
    metric_name,
)


def rows_of(rows: list[Row]) -> list[tuple[int, dict[str, float]]]:
    return [(r.epoch, r.values) for r in rows]


def append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


# --- the name rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, name",
    [
        ("valid_acc", "valid/acc"),
        ("val/acc", "valid/acc"),
        ("val_acc", "valid/acc"),
        ("valid/acc", "valid/acc"),
        ("validation_loss", "valid/loss"),
        ("train_loss", "train/loss"),
        ("training/loss", "train/loss"),
        ("train/top1_acc", "train/top1_acc"),
        ("train_top1_acc", "train/top1_acc"),
        ("test_acc", "test/acc"),
        ("Val_Acc", "valid/Acc"),
        ("Loss/train", "train/Loss"),
        ("acc/validation", "valid/acc"),
        ("lr", "lr"),
        ("time_s", "time_s"),
        ("lr-AdamW", "lr"),
        ("learning_rate", "learning_rate"),
        ("weight_decay", "weight_decay"),
        ("loss", "loss"),
        ("eval_loss", "eval_loss"),
        ("val_", "val_"),
        (" valid_acc ", "valid/acc"),
    ],
)
def test_metric_name(raw, name):
    assert metric_name(raw) == name


# --- JSON lines ------------------------------------------------------------------------------------------


def test_jsonl_tails_the_file_and_leaves_a_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    source = JsonLinesSource(path)
    assert source.poll() == []  # no file yet
    path.write_text(
        '{"epoch": 1, "train/loss": 0.5, "lr": 0.001}\n{"epoch": 2, "valid_acc": 0.25}\n{"epoch": 3, "tr'
    )
    assert rows_of(source.poll()) == [(1, {"train/loss": 0.5, "lr": 0.001}), (2, {"valid/acc": 0.25})]
    assert source.poll() == []  # the partial line is still not consumed
    append(path, 'ain/loss": 0.125}\n')
    assert rows_of(source.poll()) == [(3, {"train/loss": 0.125})]
    append(path, '{"epoch": 4, "train/loss": 0.0625, "time_s": 12.5}\n')
    assert rows_of(source.poll()) == [(4, {"train/loss": 0.0625, "time_s": 12.5})]
    assert source.poll(final=True) == []
    assert source.warnings == []


def test_jsonl_final_poll_takes_a_last_line_without_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "valid/acc": 0.5}\n{"epoch": 2, "valid/acc": 0.75}')
    source = JsonLinesSource(path)
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.5})]
    assert rows_of(source.poll(final=True)) == [(2, {"valid/acc": 0.75})]


def test_jsonl_malformed_lines_are_warnings_with_line_numbers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        '{"epoch": 1, "valid/acc": 0.5}',
        "not json at all",
        "[1, 2]",
        '{"valid/acc": 0.5}',
        '{"epoch": "3", "valid/acc": 0.5}',
        '{"epoch": 4, "valid/acc": "high", "train/loss": 0.25}',
        "",
        '{"epoch": 5, "done": true, "extra": [1], "skipped": null, "valid/acc": 0.125}',
        '{"epoch": 6.0, "valid/acc": 0.75}',
        '{"epoch": 6.5, "valid/acc": 0.75}',
        '{"epoch": true, "valid/acc": 0.75}',
        '{"epoch": 7, "x": 1e999999}',
    ]
    path.write_text("\n".join(lines) + "\n")
    source = JsonLinesSource(path)
    assert rows_of(source.poll()) == [
        (1, {"valid/acc": 0.5}),
        (4, {"train/loss": 0.25}),
        (5, {"valid/acc": 0.125}),
        (6, {"valid/acc": 0.75}),
        (7, {"x": math.inf}),
    ]
    assert source.warnings == [
        "metrics.jsonl:2: not JSON: Expecting value: line 1 column 1 (char 0): not json at all",
        "metrics.jsonl:3: not a JSON object: [1, 2]",
        "metrics.jsonl:4: no 'epoch': {\"valid/acc\": 0.5}",
        "metrics.jsonl:5: 'epoch' must be an integer, got \"3\"",
        "metrics.jsonl:6: 'valid/acc' is not a number (\"high\"): ignored",
        "metrics.jsonl:8: 'done' is not a number (true): ignored",
        "metrics.jsonl:8: 'extra' is not a number ([1]): ignored",
        "metrics.jsonl:10: 'epoch' must be an integer, got 6.5",
        "metrics.jsonl:11: 'epoch' must be an integer, got true",
    ]


def test_jsonl_keeps_nan_and_infinity(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "train/loss": NaN, "valid/loss": Infinity, "valid/acc": -Infinity}\n')
    (row,) = JsonLinesSource(path).poll()
    assert row.epoch == 1
    assert math.isnan(row.values["train/loss"])
    assert row.values["valid/loss"] == math.inf and row.values["valid/acc"] == -math.inf


def test_jsonl_on_stdout_ignores_other_lines_and_counts_stdout_lines():
    source = JsonLinesSource(None)
    assert source.poll() == [] and source.poll(final=True) == []
    assert source.feed_line("Epoch 1/3 ...\n") == []
    assert source.feed_line("") == []
    assert rows_of(source.feed_line('  {"epoch": 1, "val_acc": 0.5}\n')) == [(1, {"valid/acc": 0.5})]
    assert source.feed_line("{'epoch': 2, 'val_acc': 0.75}") == []  # a Python dict, not JSON
    assert source.feed_line('{"epoch": 2, "val_acc": 0.75') == []
    assert source.warnings == [
        "stdout:4: not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1): "
        "{'epoch': 2, 'val_acc': 0.75}",
        'stdout:5: not JSON: Expecting \',\' delimiter: line 1 column 29 (char 28): {"epoch": 2, "val_acc": 0.75',
    ]
    assert JsonLinesSource(None, stdout=False).feed_line('{"epoch": 1, "val_acc": 0.5}') == []


def test_jsonl_lines_of_one_epoch_merge_into_its_row(tmp_path):
    path = tmp_path / "metrics.jsonl"
    source = JsonLinesSource(path)
    path.write_text('{"epoch": 1, "train/loss": 0.5}\n{"epoch": 1, "valid/acc": 0.25}\n')
    assert rows_of(source.poll()) == [(1, {"train/loss": 0.5, "valid/acc": 0.25})]
    append(path, '{"epoch": 1, "valid/acc": 0.375}\n')  # a later value wins; the row carries all known
    assert rows_of(source.poll()) == [(1, {"train/loss": 0.5, "valid/acc": 0.375})]
    assert rows_of(source.feed_line('{"epoch": 2, "valid/acc": 0.5}')) == [(2, {"valid/acc": 0.5})]


def test_jsonl_rewritten_or_replaced_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    source = JsonLinesSource(path)
    path.write_text('{"epoch": 1, "valid/acc": 0.5}\n{"epoch": 2, "valid/acc": 0.625}\n')
    assert len(source.poll()) == 2
    # the program restarted and truncated the file: a shorter file
    path.write_text('{"epoch": 1, "valid/acc": 0.25}\n')
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.25})]
    # rewritten in place to a longer file: the bytes before the offset changed
    path.write_text('{"epoch": 1, "valid/acc": 0.75}\n{"epoch": 2, "valid/acc": 0.875}\n')
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.75}), (2, {"valid/acc": 0.875})]
    # replaced by a rename (another inode) with the same first bytes
    new = tmp_path / "new.jsonl"
    new.write_text(
        '{"epoch": 1, "valid/acc": 0.75}\n{"epoch": 2, "valid/acc": 0.875}\n{"epoch": 3, "valid/acc": 1}\n'
    )
    os.replace(new, path)
    assert [r.epoch for r in source.poll()] == [1, 2, 3]
    path.unlink()
    assert source.poll() == []
    path.write_text('{"epoch": 9, "valid/acc": 0.5}\n')
    assert rows_of(source.poll()) == [(9, {"valid/acc": 0.5})]
    assert source.warnings == []


def test_jsonl_a_line_longer_than_the_limit_is_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    source = JsonLinesSource(path)
    huge = '{"epoch": 2, "blob": "' + "x" * (MAX_LINE_BYTES + 10)
    path.write_text('{"epoch": 1, "valid/acc": 0.5}\n' + huge)
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.5})]
    assert source.warnings == [f"metrics.jsonl:2: longer than {MAX_LINE_BYTES} bytes, skipped"]
    append(path, 'x"}\n{"epoch": 3, "valid/acc": 0.25}\n')
    assert rows_of(source.poll()) == [(3, {"valid/acc": 0.25})]
    append(path, "not json\n")
    source.poll()
    assert source.warnings[-1].startswith("metrics.jsonl:4: not JSON:")  # line numbers still right


def test_warnings_are_capped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("garbage\n" * (MAX_WARNINGS + 10))
    source = JsonLinesSource(path)
    assert source.poll() == []
    assert len(source.warnings) == MAX_WARNINGS + 1
    assert source.warnings[-2].startswith(f"metrics.jsonl:{MAX_WARNINGS}: not JSON")
    assert source.warnings[-1] == "jsonl: more problems in the metrics input; not reported"
    assert source.suppressed_warnings == 10


def test_jsonl_describe(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert JsonLinesSource(path, env_var="SWEEPER_METRICS").describe() == (
        f"JSON lines in $SWEEPER_METRICS ({path}) or on stdout"
    )
    assert JsonLinesSource(path, stdout=False).describe() == f"JSON lines in {path}"
    assert JsonLinesSource(None).describe() == "JSON lines on stdout"


def test_jsonl_from_a_real_program_writing_and_printing(tmp_path):
    """A program writes the file and prints lines while being polled, as the wrapper job will run it."""
    path = tmp_path / "metrics.jsonl"
    program = textwrap.dedent(
        """
        import json, sys
        with open(sys.argv[1], "a") as f:
            for epoch in (1, 2, 3):
                print(f"training epoch {epoch}", flush=True)
                f.write(json.dumps({"epoch": epoch, "valid/acc": epoch / 4}) + "\\n")
                f.flush()
                print(json.dumps({"epoch": epoch, "train/loss": 1 / epoch}), flush=True)
                sys.stdin.readline()  # wait until the test has polled
        """
    )
    source = JsonLinesSource(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", program, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    seen = []
    try:
        for _ in range(3):
            for _ in range(2):
                seen += rows_of(source.feed_line(proc.stdout.readline()))
            seen += rows_of(source.poll())
            proc.stdin.write("\n")
            proc.stdin.flush()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
    seen += rows_of(source.poll(final=True))
    assert seen == [
        (1, {"train/loss": 1.0}),
        (1, {"train/loss": 1.0, "valid/acc": 0.25}),
        (2, {"train/loss": 0.5}),
        (2, {"train/loss": 0.5, "valid/acc": 0.5}),
        (3, {"train/loss": 1 / 3}),
        (3, {"train/loss": 1 / 3, "valid/acc": 0.75}),
    ]
    assert source.warnings == []


# --- TensorBoard -----------------------------------------------------------------------------------------
# Values are exact in float32 (TensorBoard stores scalars as float32).


@pytest.fixture(scope="module")
def SummaryWriter():
    from torch.utils.tensorboard import SummaryWriter  # ~3 s: once for the module

    return SummaryWriter


def test_tensorboard_rows_complete_when_a_later_step_appears(tmp_path, SummaryWriter):
    source = TensorBoardSource(tmp_path)
    assert source.poll() == []  # nothing yet
    writer = SummaryWriter(tmp_path / "run")
    writer.add_scalar("train_loss", 0.5, 1)
    writer.add_scalar("val_acc", 0.25, 1)
    writer.flush()
    assert source.poll() == []  # epoch 1 may still get scalars
    writer.add_scalar("train_loss", 0.375, 2)
    writer.flush()
    assert rows_of(source.poll()) == [(1, {"train/loss": 0.5, "valid/acc": 0.25})]
    assert source.poll() == []
    writer.add_scalar("val/acc", 0.5, 2)
    writer.add_scalar("valid/acc", 0.625, 3)
    writer.add_scalar("lr", 0.125, 3)
    writer.flush()
    assert rows_of(source.poll()) == [(2, {"train/loss": 0.375, "valid/acc": 0.5})]
    writer.close()
    assert rows_of(source.poll(final=True)) == [(3, {"valid/acc": 0.625, "lr": 0.125})]
    assert source.poll(final=True) == []
    assert source.warnings == []


def test_tensorboard_several_files_recursive_and_appearing_later(tmp_path, SummaryWriter):
    source = TensorBoardSource(tmp_path)
    first = SummaryWriter(tmp_path / "a")
    for step in (0, 1):
        first.add_scalar("train/loss", 1.0 - step / 4, step)
    first.flush()
    assert rows_of(source.poll()) == [(0, {"train/loss": 1.0})]
    second = SummaryWriter(tmp_path / "deep" / "er")  # a new file in a new subdirectory
    for step in (0, 1, 2):
        second.add_scalar("valid/acc", step / 8, step)
    second.flush()
    # epoch 0 again, now with everything known for it; epoch 1 complete in the second file only
    assert rows_of(source.poll()) == [
        (0, {"train/loss": 1.0, "valid/acc": 0.0}),
        (1, {"valid/acc": 0.125}),
    ]
    first.close()
    second.close()
    assert rows_of(source.poll(final=True)) == [
        (1, {"valid/acc": 0.125, "train/loss": 0.75}),
        (2, {"valid/acc": 0.25}),
    ]


def test_tensorboard_keras_layout_splits_by_directory_and_tags_mapping(tmp_path, SummaryWriter):
    train, valid = SummaryWriter(tmp_path / "train"), SummaryWriter(tmp_path / "validation")
    for step in (0, 1):
        train.add_scalar("epoch_loss", 0.5 / (step + 1), step)
        valid.add_scalar("epoch_loss", 0.75 / (step + 1), step)
        valid.add_scalar("epoch_accuracy", 0.5 + step / 4, step)
        train.add_scalar("Accuracy", 0.125, step)
    train.close()
    valid.close()
    source = TensorBoardSource(
        tmp_path, tags={"validation/epoch_accuracy": "valid/acc", "Accuracy": "train/acc"}
    )
    assert rows_of(source.poll(final=True)) == [
        (0, {"train/epoch_loss": 0.5, "train/acc": 0.125, "valid/epoch_loss": 0.75, "valid/acc": 0.5}),
        (1, {"train/epoch_loss": 0.25, "train/acc": 0.125, "valid/epoch_loss": 0.375, "valid/acc": 0.75}),
    ]


def test_tensorboard_skips_the_excluded_mirror_directory(tmp_path, SummaryWriter):
    run_dir = tmp_path / "run"
    mirror = SummaryWriter(run_dir / "tb")  # the wrapper's own mirror
    program = SummaryWriter(run_dir / "logs")
    for step in (1, 2):
        mirror.add_scalar("valid/acc", 0.875, step)
        program.add_scalar("valid/acc", 0.25 * step, step)
    mirror.close()
    program.close()
    source = TensorBoardSource(run_dir, exclude=[run_dir / "tb"])
    assert rows_of(source.poll(final=True)) == [(1, {"valid/acc": 0.25}), (2, {"valid/acc": 0.5})]
    assert "(not under" in source.describe()
    everything = TensorBoardSource(run_dir)  # without the exclusion the mirror (read last) would win
    assert rows_of(everything.poll(final=True)) == [(1, {"valid/acc": 0.875}), (2, {"valid/acc": 0.875})]


def test_tensorboard_resumes_after_a_truncated_record(tmp_path, SummaryWriter):
    written = tmp_path / "written"
    writer = SummaryWriter(written)
    for step in (1, 2, 3):
        writer.add_scalar("valid/acc", step / 4, step)
    writer.close()
    (event_file,) = written.iterdir()
    data = event_file.read_bytes()
    growing = tmp_path / "watched" / event_file.name
    growing.parent.mkdir()
    source = TensorBoardSource(tmp_path / "watched")
    cut = len(data) - 10  # in the middle of the last record
    growing.write_bytes(data[:cut])
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.25})]
    with open(growing, "ab") as f:
        f.write(data[cut:])
    assert rows_of(source.poll()) == [(2, {"valid/acc": 0.5})]
    assert rows_of(source.poll(final=True)) == [(3, {"valid/acc": 0.75})]
    assert source.warnings == []


def test_tensorboard_reads_new_style_scalars_and_ignores_other_summaries(tmp_path, SummaryWriter):
    writer = SummaryWriter(tmp_path)
    writer.add_scalar("valid/acc", 0.5, 1, new_style=True)
    writer.add_scalar("valid/loss", 0.25, 1, new_style=True, double_precision=True)
    writer.add_histogram("weights", np.array([0.1, 0.2, 0.3]), 1)
    writer.add_text("note", "hello", 1)
    writer.close()
    (tmp_path / "events.out.tfevents.garbage").write_bytes(b"\x00\x01 not an event file" * 10)
    source = TensorBoardSource(tmp_path)
    assert rows_of(source.poll(final=True)) == [(1, {"valid/acc": 0.5, "valid/loss": 0.25})]
    assert source.describe() == f"TensorBoard event files under {tmp_path}"


def test_tensorboard_lightning_global_steps_go_to_the_logged_epoch(tmp_path, SummaryWriter):
    """Lightning's TensorBoardLogger: global steps, an `epoch` scalar with every call (after the metrics),
    `hp_metric` at step 0, `X_step` / `X_epoch` pairs for on_step + on_epoch metrics."""
    writer = SummaryWriter(tmp_path / "lightning_logs" / "version_0")
    source = TensorBoardSource(tmp_path)

    def log(metrics: dict, step: int, epoch: int) -> None:  # as Lightning's logger connector calls it
        for name, value in {**metrics, "epoch": epoch}.items():
            writer.add_scalar(name, value, step)

    writer.add_scalar("hp_metric", -1, 0)
    step = 0
    for epoch in (0, 1):
        for _ in range(3):
            log({"train_loss_step": 1.0 - step / 8}, step, epoch)
            step += 1
        log({"val_acc": 0.25 + epoch / 4, "val_loss": 0.5 - epoch / 8}, step - 1, epoch)
        log({"train_loss_epoch": 0.875 - epoch / 4}, step - 1, epoch)
        writer.flush()
        if epoch == 0:
            assert source.poll() == []  # epoch 0 may still get values
    writer.add_scalar("custom", 0.125, 5)  # the program's own scalar, no epoch logged at its step
    writer.add_scalar("custom", 0.25, 6)
    writer.close()
    assert rows_of(source.poll()) == [
        (0, {"hp_metric": -1.0, "valid/acc": 0.25, "valid/loss": 0.5, "train/loss": 0.875}),
    ]
    assert rows_of(source.poll(final=True)) == [
        (1, {"valid/acc": 0.5, "valid/loss": 0.375, "train/loss": 0.625, "custom": 0.25}),
    ]


def test_tensorboard_tags_can_name_the_epoch_scalar(tmp_path, SummaryWriter):
    writer = SummaryWriter(tmp_path)
    for step, epoch in ((10, 1.0), (20, 1.5), (30, 2.0)):
        writer.add_scalar("train/epoch", epoch, step)
        writer.add_scalar("eval/accuracy", epoch / 4, step)
    writer.close()
    source = TensorBoardSource(tmp_path, tags={"train/epoch": "epoch", "eval/accuracy": "valid/acc"})
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.375})]
    assert rows_of(source.poll(final=True)) == [(2, {"valid/acc": 0.5})]


# --- Lightning CSV ---------------------------------------------------------------------------------------


class LightningCsv:
    """What Lightning's CSVLogger (lightning.fabric.loggers.csv_logs._ExperimentWriter, 2.x) does with
    metrics.csv: rows buffered, then on save appended, under a header of all names seen, sorted; when new
    names appear the whole file is first rewritten (truncated, then written) with the wider header.
    The trainer adds `epoch` to every row and the writer adds `step`."""

    def __init__(self, path: Path):
        self.path, self.keys, self.rows = path, [], []

    def log(self, metrics: dict, step: int, epoch: int) -> None:
        self.rows.append({**metrics, "epoch": epoch, "step": step})

    def save(self) -> None:
        new = set().union(*self.rows) - set(self.keys)
        self.keys = sorted(self.keys + list(new))
        exists = self.path.is_file()
        if new and exists:
            with open(self.path, newline="") as f:
                old = list(csv.DictReader(f))
            with open(self.path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.keys)
                writer.writeheader()
                writer.writerows(old)
        with open(self.path, "a" if exists else "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.keys)
            if not exists:
                writer.writeheader()
            writer.writerows(self.rows)
        self.rows = []


def test_csv_lightning_layout_merges_each_epoch_and_survives_the_header_rewrite(tmp_path):
    path = tmp_path / "metrics.csv"
    log = LightningCsv(path)
    source = CsvSource(path)
    assert source.poll() == []
    log.log({"train_loss": 0.75}, step=0, epoch=0)
    log.log({"train_loss": 0.5}, step=1, epoch=0)
    log.log({"train_loss": 0.375}, step=2, epoch=1)
    log.save()
    assert path.read_text().splitlines()[0] == "epoch,step,train_loss"
    assert rows_of(source.poll()) == [(0, {"train/loss": 0.5})]  # the epoch's last value
    # validation of epoch 1 brings new names: Lightning rewrites the file with a wider header
    log.log({"val_acc": 0.625, "val_loss": 0.25}, step=3, epoch=1)
    log.save()
    assert path.read_text().splitlines() == [
        "epoch,step,train_loss,val_acc,val_loss",
        "0,0,0.75,,",
        "0,1,0.5,,",
        "1,2,0.375,,",
        "1,3,,0.625,0.25",
    ]
    assert source.poll() == []  # epoch 0 unchanged by the rewrite: not returned again; epoch 1 open
    log.log({"train_loss": 0.25}, step=4, epoch=2)
    log.save()
    assert rows_of(source.poll()) == [(1, {"train/loss": 0.375, "valid/acc": 0.625, "valid/loss": 0.25})]
    log.log({"val_acc": 0.75, "val_loss": 0.125, "lr-AdamW": 0.001}, step=5, epoch=2)
    log.save()
    assert rows_of(source.poll(final=True)) == [
        (2, {"train/loss": 0.25, "valid/acc": 0.75, "valid/loss": 0.125, "lr": 0.001})
    ]
    assert source.poll(final=True) == []
    assert source.warnings == []


def test_csv_a_rewrite_that_changes_an_epoch_returns_it_again(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,val_acc\n0,9,0.25\n1,19,0.5\n2,29,0.625\n")
    source = CsvSource(path)
    assert rows_of(source.poll()) == [(0, {"valid/acc": 0.25}), (1, {"valid/acc": 0.5})]
    # caught mid-rewrite: truncated to a partial header, then written again with a changed epoch 1
    path.write_text("epoch,st")
    assert source.poll() == []
    path.write_text("epoch,step,val_acc\n0,9,0.25\n1,19,0.375\n")
    assert source.poll() == []  # epoch 1 is the last one now, not complete
    append(path, "2,29,0.625\n3,39,0.75\n")
    assert rows_of(source.poll()) == [(1, {"valid/acc": 0.375}), (2, {"valid/acc": 0.625})]
    assert rows_of(source.poll(final=True)) == [(3, {"valid/acc": 0.75})]
    assert source.warnings == []


def test_csv_step_and_epoch_variants_of_one_metric(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train_loss_epoch,train_loss_step,val_acc,time_per_epoch\n"
        "0,0,,0.875,,\n"
        "0,1,,0.625,,\n"
        "0,1,0.75,,0.5,3.5\n"
    )
    source = CsvSource(path)
    assert rows_of(source.poll(final=True)) == [
        (0, {"train/loss": 0.75, "valid/acc": 0.5, "time_per_epoch": 3.5})
    ]


def test_csv_bad_cells_are_warnings_with_line_numbers(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,val_acc,val_loss\n"
        "0,1,0.5,0.25\n"
        "zero,2,0.5,0.25\n"
        "1,3,high,0.125\n"
        "1,4,0.5\n"
        ",5,0.875,0.875\n"
        "1.0,6,nan,\n"
    )
    source = CsvSource(path)
    rows = source.poll(final=True)
    assert rows_of(rows[:1]) == [(0, {"valid/acc": 0.5, "valid/loss": 0.25})]
    assert (
        rows[1].epoch == 1
        and rows[1].values["valid/loss"] == 0.125
        and math.isnan(rows[1].values["valid/acc"])
    )
    assert source.warnings == [
        "metrics.csv:3: epoch is not an integer: zero: row ignored",
        "metrics.csv:4: 'val_acc' is not a number: high: ignored",
        "metrics.csv:5: 3 cells, the header has 4: row ignored",
    ]
    assert source.poll(final=True) == []  # NaN equals NaN: epoch 1 is not returned again


def test_csv_without_an_epoch_column(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,0.5\n2,0.25\n")
    source = CsvSource(path)
    assert source.poll(final=True) == []
    assert source.warnings == ["metrics.csv:1: no 'epoch' column in the header: step,loss"]
    assert source.describe() == f"Lightning CSV metrics in {path}"


# --- regex -----------------------------------------------------------------------------------------------


def test_regex_needs_an_epoch_group_and_a_metric():
    with pytest.raises(ValueError, match=r"has no group named 'epoch': write it as \(\?P<epoch>\\d\+\)"):
        RegexSource(r"acc=(?P<valid_acc>\S+)")
    with pytest.raises(ValueError, match="names no metric"):
        RegexSource(r"epoch (?P<epoch>\d+)")
    with pytest.raises(ValueError, match="is not a valid regular expression"):
        RegexSource(r"epoch (?P<epoch>\d+")


def test_regex_reads_matching_stdout_lines():
    source = RegexSource(r"Epoch (?P<epoch>\S+): val_acc=(?P<valid_acc>\S+)(?: lr=(?P<lr>\S+))?")
    assert source.feed_line("loading data\n") == []
    assert rows_of(source.feed_line("Epoch 1: val_acc=0.5 lr=1e-4\n")) == [
        (1, {"valid/acc": 0.5, "lr": 1e-4})
    ]
    assert rows_of(source.feed_line("[rank0] Epoch 2: val_acc=0.25")) == [(2, {"valid/acc": 0.25})]
    assert rows_of(source.feed_line("Epoch 3: val_acc=88% lr=0.5")) == [(3, {"lr": 0.5})]
    assert source.feed_line("Epoch three: val_acc=0.5") == []
    assert rows_of(source.feed_line("Epoch 1: val_acc=0.75")) == [(1, {"valid/acc": 0.75, "lr": 1e-4})]
    assert source.warnings == [
        "stdout:4: 'valid_acc' is not a number: 88%: ignored",
        "stdout:5: epoch is not an integer: three: line ignored",
    ]
    assert source.poll(final=True) == []
    assert source.describe().startswith("stdout lines matching 'Epoch (?P<epoch>")
    rest = RegexSource(r"epoch (?P<epoch>\d+) loss (?P<loss>[0-9.]+)$")  # "\r\n" is not part of the line
    assert rows_of(rest.feed_line("epoch 1 loss 0.5\r\n")) == [(1, {"loss": 0.5})] and rest.warnings == []


def test_regex_nan_and_merge_of_one_epoch():
    source = RegexSource(
        r"epoch=(?P<epoch>\d+)(?: train_loss=(?P<train_loss>\S+))?(?: val_acc=(?P<val_acc>\S+))?"
    )
    (row,) = source.feed_line("epoch=2 train_loss=nan")
    assert row.epoch == 2 and list(row.values) == ["train/loss"] and math.isnan(row.values["train/loss"])
    (row,) = source.feed_line("epoch=2 val_acc=0.5")
    assert row.values["valid/acc"] == 0.5 and math.isnan(row.values["train/loss"])


# --- auto ------------------------------------------------------------------------------------------------


def test_auto_sticks_to_the_first_source_that_shows_up(tmp_path, SummaryWriter):
    jsonl = JsonLinesSource(tmp_path / "metrics.jsonl")
    tb = TensorBoardSource(tmp_path / "tb_logs")
    auto = AutoSource([tb, jsonl])
    writer = SummaryWriter(tmp_path / "tb_logs")
    writer.add_scalar("valid/acc", 0.5, 1)
    writer.flush()
    assert auto.feed_line("starting") == [] and auto.poll() == []  # TB holds epoch 1 back
    assert rows_of(auto.feed_line('{"epoch": 1, "valid/acc": 0.25}')) == [(1, {"valid/acc": 0.25})]
    assert auto.chosen is jsonl
    writer.add_scalar("valid/acc", 0.75, 2)
    writer.close()
    assert auto.poll() == []  # TensorBoard is no longer read
    assert auto.poll(final=True) == []
    assert rows_of(auto.feed_line('{"epoch": 2, "valid/acc": 0.5}')) == [(2, {"valid/acc": 0.5})]
    assert auto.describe() == (
        f"the first of: TensorBoard event files under {tmp_path / 'tb_logs'}; "
        f"JSON lines in {tmp_path / 'metrics.jsonl'} or on stdout"
    )


def test_auto_picks_the_file_source_when_it_shows_up_first_and_passes_warnings_on(tmp_path, SummaryWriter):
    jsonl = JsonLinesSource(tmp_path / "metrics.jsonl")
    tb = TensorBoardSource(tmp_path / "tb_logs")
    auto = AutoSource([jsonl, tb])
    writer = SummaryWriter(tmp_path / "tb_logs")
    for step in (1, 2):
        writer.add_scalar("val_acc", step / 4, step)
    writer.close()
    assert auto.feed_line("{broken") == []
    assert auto.warnings == [
        "stdout:1: not JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1): {broken"
    ]
    auto.warnings.clear()
    assert rows_of(auto.poll()) == [(1, {"valid/acc": 0.25})]
    assert auto.chosen is tb
    assert auto.feed_line('{"epoch": 5, "valid/acc": 1.0}') == []  # stdout JSON no longer read
    assert rows_of(auto.poll(final=True)) == [(2, {"valid/acc": 0.5})]
    assert auto.warnings == []


def test_auto_final_poll_when_nothing_showed_up_before(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,val_acc\n0,9,0.5\n")
    auto = AutoSource([JsonLinesSource(tmp_path / "metrics.jsonl"), CsvSource(path)])
    assert auto.poll() == []
    assert rows_of(auto.poll(final=True)) == [(0, {"valid/acc": 0.5})]
    assert auto.chosen is auto.sources[1]
