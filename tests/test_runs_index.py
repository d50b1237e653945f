"""runs.parquet as jobs write it, one row at a time (runs_index.record), against a rebuild from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from sweeper import runs_index
from sweeper.ledger import META_FILE
from sweeper.metrics import write_metrics


def make_run(sweep: Path, name: str, params: dict, metrics: list[str]) -> Path:
    run_dir = sweep / name
    run_dir.mkdir()
    config = {"trial_id": name, "name": name, "params": params, "seed": 0, "sweep": "s"}
    config["objective"] = {"metric": "valid/acc", "direction": "maximize"}
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "status.json").write_text(json.dumps({"state": "COMPLETED"}))
    write_metrics(run_dir / "metrics.parquet", [{"epoch": 1, **{m: 0.5 for m in metrics}}])
    return run_dir


def test_rows_written_one_by_one_equal_a_rebuild_even_when_params_and_metrics_differ(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / META_FILE).write_text("{}")
    runs = [
        make_run(sweep, "20250101_000000_j3", {"lr": 0.1}, ["valid/acc"]),
        make_run(sweep, "20250101_000000_j1", {"lr": 0.2, "wd": 0.0}, ["valid/acc", "valid/auroc"]),
        make_run(sweep, "20250101_000000_j2", {"lr": "auto"}, ["valid/acc"]),  # a number, then a name
        make_run(sweep, "20250101_000000_j4", {"lr": 0.3}, ["valid/acc"]),
    ]
    for run_dir in runs:
        runs_index.record(run_dir)
    runs_index.record(runs[1])  # again: replaced, not added
    written = pq.read_table(sweep / runs_index.INDEX_FILE)
    assert written.column("run_dir").to_pylist() == sorted(r.name for r in runs)
    assert written.column("params.lr").to_pylist() == ["0.2", "auto", "0.1", "0.3"]
    assert written.column("last.valid/auroc").to_pylist() == [0.5, None, None, None]
    (sweep / runs_index.INDEX_FILE).unlink()
    runs_index.rebuild(sweep)
    assert pq.read_table(sweep / runs_index.INDEX_FILE).equals(written)
