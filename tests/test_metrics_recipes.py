"""docs/metrics.md's recipes, run as written: on a real sweep whose runs log different metrics (one config
logs valid/auroc, the other does not), with its `latest` link present, each reads every epoch of every
run exactly once, with the union of the columns, joined to the run index (trial id, seed, params). Also
the index itself and `analyze --format parquet`."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, write_spec

RECIPES = re.findall(
    r"```python\n(# (\w+)\n.*?)```",
    (REPO / "docs" / "metrics.md").read_text().split("## Reading a sweep without sweeper", 1)[1],
    re.S,
)
SPEC = """
name: reg
entrypoint: jobfns:some_metrics
base: {epochs: 3, lr: 0.01, auroc: false}
configs:
  plain: {lr: 0.01}
  with_auroc: {lr: 0.02, auroc: true}
seeds: [0, 1]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    from tests.conftest import run_cli

    where = tmp_path_factory.mktemp("recipes")
    write_spec(where, SPEC)
    run_cli(["launch", "spec.yaml", "--executor", "local"], where)
    assert (where / "runs" / "reg" / "latest").is_symlink()
    return where


def test_the_docs_have_a_recipe_for_each_reader():
    assert [name for _, name in RECIPES] == ["pandas", "polars", "duckdb", "pyarrow"]


def as_pandas(table):
    return table if hasattr(table, "iloc") else table.to_pandas()


@pytest.mark.parametrize("code, reader", RECIPES, ids=[name for _, name in RECIPES])
def test_each_recipe_reads_every_epoch_once_with_every_column_and_the_runs_identity(sweep, code, reader):
    here = os.getcwd()
    os.chdir(sweep)
    try:
        scope: dict = {}
        exec(compile(code, f"docs/metrics.md ({reader})", "exec"), scope)
    finally:
        os.chdir(here)
    epochs = as_pandas(scope["epochs"])
    assert len(epochs) == 4 * 3  # 4 runs x 3 epochs, though `latest` points at the stamp dir beside it
    assert {"trial_id", "seed", "epoch", "valid/acc", "valid/auroc"} <= set(epochs.columns)
    per_trial = epochs.groupby("trial_id")["valid/auroc"].count().to_dict()
    assert per_trial == {"plain-s0": 0, "plain-s1": 0, "with_auroc-s0": 3, "with_auroc-s1": 3}
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).to_dict().values()) == [[1, 2, 3]] * 4
    if reader != "pyarrow":  # the pyarrow recipe joins the identity columns only
        assert sorted(set(zip(epochs["name"], epochs["params.lr"], strict=True))) == [
            ("plain", 0.01),
            ("with_auroc", 0.02),
        ]


def test_the_index_has_one_row_per_run_with_its_params_and_values(sweep):
    index = pq.read_table(sweep / "runs" / "reg" / "latest" / "runs.parquet").to_pylist()
    assert sorted(r["trial_id"] for r in index) == ["plain-s0", "plain-s1", "with_auroc-s0", "with_auroc-s1"]
    row = next(r for r in index if r["trial_id"] == "with_auroc-s1")
    assert row["state"] == "COMPLETED" and row["seed"] == 1 and row["params.lr"] == 0.02
    assert row["epochs"] == 3 and row["best_epoch"] == 3
    assert row["best_value"] == row["final_value"] == pytest.approx(0.2 + 0.03 + 0.001)
    assert row["last.valid/auroc"] == pytest.approx(0.281)
    assert Path(row["path"]).parent == (sweep / "runs" / "reg" / "latest").resolve()


def test_analyze_format_parquet_is_one_row_per_run_and_epoch(sweep):
    result = subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), "-p", "runs/reg/latest", "--format", "parquet"],
        cwd=sweep,
        capture_output=True,
        check=True,
    )
    table = pq.read_table(io.BytesIO(result.stdout)).to_pandas()
    assert len(table) == 12
    assert list(table.columns[:4]) == ["run_dir", "path", "sweep", "trial_id"]
    assert table.groupby("trial_id")["valid/auroc"].count().to_dict()["plain-s0"] == 0
    assert set(table["params.lr"]) == {0.01, 0.02} and table["optuna_trial"].isna().all()


def test_analyze_rebuilds_a_missing_or_stale_index(sweep, cli):  # last: it changes a run
    index = sweep / "runs" / "reg" / "latest" / "runs.parquet"
    before = pq.read_table(index)
    index.unlink()
    cli("-p", str(sweep / "runs" / "reg" / "latest"), command="analyze")
    assert pq.read_table(index).equals(before)
    status = next(index.parent.glob("*_j*")) / "status.json"
    status.write_text(status.read_text().replace('"COMPLETED"', '"FAILED"'))
    os.utime(status, (index.stat().st_mtime + 5,) * 2)  # changed after the index was written
    cli("-p", str(sweep / "runs" / "reg" / "latest"), command="analyze")
    states = pq.read_table(index).column("state").to_pylist()
    assert sorted(states) == ["COMPLETED"] * 3 + ["FAILED"]
    gone = sorted(index.parent.glob("*_j*"))[-1]  # a run dir deleted by hand: its row goes, the rest stay
    shutil.rmtree(gone)
    cli("-p", str(sweep / "runs" / "reg" / "latest"), command="analyze")
    rows = pq.read_table(index).to_pylist()
    assert sorted(r["run_dir"] for r in rows) == sorted(d.name for d in index.parent.glob("*_j*"))
    assert len(rows) == 3 and gone.name not in {r["run_dir"] for r in rows}
