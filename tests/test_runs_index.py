"""runs.parquet as jobs write it, one row at a time (runs_index.record), against a rebuild from the files;
and as analyze keeps it current without reading it when nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from sweeper import runs_index
from sweeper.analysis import analyze
from sweeper.analysis import cache as summary_cache
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


def test_a_cached_analysis_reads_no_parquet_yet_sees_every_change_to_the_index(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(summary_cache, "RACY_WINDOW_S", 0.0)  # the files are seconds young
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / META_FILE).write_text("{}")
    for job in (1, 2, 3):
        make_run(sweep, f"20250101_000000_j{job}", {"lr": job / 10}, ["valid/acc"])
    index = sweep / runs_index.INDEX_FILE

    def indexed():
        return pq.read_table(index).column("run_dir").to_pylist()

    assert analyze(sweep).cache_misses == 3 and indexed() == [f"20250101_000000_j{j}" for j in (1, 2, 3)]
    warm = subprocess.run(
        [sys.executable, "-c", WARM, str(sweep)], capture_output=True, text=True, check=True, env=os.environ
    )
    assert warm.stdout.split() == ["3", "False"]  # every run from the cache, and no parquet file opened
    # the command too: its table of cached runs needs neither pyarrow nor numpy (~0.1 s of imports each)
    command = subprocess.run(
        [sys.executable, "-c", WARM_CLI, str(sweep)], capture_output=True, text=True, env=os.environ
    )
    assert command.returncode == 0, command.stderr[-2000:]
    assert "Best config: 20250101_000000_j1 (lr=0.1)" in command.stdout, command.stdout
    assert command.stdout.splitlines()[-1] == "imported: []", command.stdout
    cold = subprocess.run(
        [sys.executable, "-c", COLD, str(sweep)], capture_output=True, text=True, check=True, env=os.environ
    )
    assert cold.stdout.split() == ["3", "False"]  # every file read, and pandas (installed) never imported

    runs_index.write(sweep, pq.read_table(index).to_pylist()[:2])  # an index missing a row: its stat changed
    assert analyze(sweep).cache_hits == 3 and len(indexed()) == 3
    shutil.rmtree(sweep / "20250101_000000_j2")  # a run dir gone: its row goes
    assert analyze(sweep).cache_hits == 2 and indexed() == ["20250101_000000_j1", "20250101_000000_j3"]
    index.unlink()
    analyze(sweep)
    assert indexed() == ["20250101_000000_j1", "20250101_000000_j3"]
    # A run whose files are too young to be cached (here: dated ahead), then deleted: its row goes too.
    young = sweep / "20250101_000000_j3" / "status.json"
    os.utime(young, (time.time() + 60,) * 2)
    analyze(sweep)
    shutil.rmtree(young.parent)
    assert analyze(sweep).cache_hits == 1 and indexed() == ["20250101_000000_j1"]


WARM = """
import sys
from sweeper.analysis import analyze
print(analyze(sys.argv[1]).cache_hits, "pyarrow" in sys.modules)
"""


WARM_CLI = """
import atexit, sys
atexit.register(lambda: print("imported:", [m for m in ("numpy", "pyarrow") if m in sys.modules]))
sys.argv = ["analyze", "--checkpoints-path", sys.argv[1]]
from sweeper.analyze_cli import main
main()
"""


COLD = """
import sys
from sweeper.analysis import analyze
print(analyze(sys.argv[1], use_cache=False).cache_misses, "pandas" in sys.modules)
"""


def test_a_first_analysis_takes_the_records_the_jobs_left_and_reads_what_changed_since(tmp_path, cli):
    from sweeper.analysis.fields import FIELDS
    from tests.conftest import tiny_spec

    tiny_spec(tmp_path, "grid: {optim.lr: [0.001, 0.003, 0.01]}", name="left")
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "left" / "latest").resolve()
    # each job put its record into its row as it ended (no analysis has run yet)
    assert all(pq.read_table(sweep / runs_index.INDEX_FILE).column(runs_index.RECORD).to_pylist())

    def numbers(analysis) -> dict[str, list]:
        return {run.trial_id: [getattr(run, f) for f in FIELDS] for run in analysis.runs}

    first = analyze(sweep, cache_dir=tmp_path / "cache-a")
    assert (first.cache_misses, first.index_hits) == (3, 3)
    assert numbers(first) == numbers(analyze(sweep, use_cache=False))
    # a run changed after its job ended (here its last epoch dropped) is read from its files again
    changed = sorted(p for p in sweep.iterdir() if (p / "metrics.parquet").exists())[0]
    rows = pq.read_table(changed / "metrics.parquet").to_pylist()
    write_metrics(changed / "metrics.parquet", rows[:1])
    again = analyze(sweep, cache_dir=tmp_path / "cache-b")
    assert (again.cache_misses, again.index_hits) == (3, 2)
    assert numbers(again) == numbers(analyze(sweep, use_cache=False))
    assert {run.epochs_run for run in again.runs} == {1, 2}
