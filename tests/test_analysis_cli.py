"""`analyze` through the real CLI: on a sweep run by submitit's local executor, on a broken tree, A vs B."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import tiny_spec
from tests.test_analysis import make_run, private_cache  # noqa: F401 (autouse fixture)
from tests.test_analysis_export import PNG_SIGNATURE, markdown_tables, strict_json
from tests.test_analysis_groups import VALUES, grid_sweep


def test_analyze_a_sweep_run_by_the_local_executor(tmp_path, cli):
    tiny_spec(tmp_path, "grid:\n  optim.weight_decay: [0.0, 0.1]\nseeds: [0, 1]\n")
    assert "COMPLETED 4" in cli("launch", "spec.yaml", "--executor", "local").stdout
    sweep = (tmp_path / "runs" / "tiny" / "latest").resolve()

    # the numbers, straight from the parquet files
    best = {}
    for run_dir in sweep.iterdir():
        if (run_dir / "metrics.parquet").exists():
            config = json.loads((run_dir / "config.json").read_text())
            accs = pq.read_table(run_dir / "metrics.parquet").column("valid/acc").to_pylist()
            best.setdefault(config["params"]["optim.weight_decay"], []).append(max(accs))
    assert sorted(len(v) for v in best.values()) == [2, 2]

    document = strict_json(cli("-p", str(sweep), "--format", "json", command="analyze").stdout)
    assert document["grouped"] and len(document["rows"]) == 2 and len(document["runs"]) == 4
    for row in document["rows"]:
        values = best[row["params"]["optim.weight_decay"]]
        assert row["n"] == 2 and row["seeds"] == [0, 1] and row["states"] == {"COMPLETED": 2}
        assert row["best_valid_acc_mean"] == pytest.approx(statistics.mean(values))
        assert row["best_valid_acc_std"] == pytest.approx(statistics.stdev(values))
        assert row["epochs_run_mean"] == 2
    (effect,) = document["effects"]["params"]
    assert effect["key"] == "optim.weight_decay" and [lv["n"] for lv in effect["levels"]] == [2, 2]

    table = cli("--checkpoints-path", str(sweep), "--plot", "curves.png", command="analyze")
    assert "Best config: weight_decay=" in table.stdout and "over 2 seeds" in table.stdout
    assert "weight_decay: best" in table.stdout
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    (runs_table,) = markdown_tables(
        cli("-p", str(sweep), "--format", "markdown", "--no-group", command="analyze").stdout
    )
    assert runs_table[0][:3] == ["config", "weight_decay", "seed"] and len(runs_table) == 5
    # the same command as a `sweeper` subcommand
    assert "Best config:" in cli("analyze", str(sweep)).stdout


def test_a_tree_of_finished_running_and_broken_runs(tmp_path, cli):
    sweep = grid_sweep(tmp_path / "runs" / "reg" / "20250101_000000", VALUES)
    make_run(
        sweep / "20250101_001000_j50",
        valid_loss=[0.9, 0.8],
        valid_acc=[0.3, 0.4],
        name="late",
        state="RUNNING",
        epochs=30,
    )
    broken = make_run(sweep / "20250101_001001_j51", valid_loss=[0.5], valid_acc=[0.5], name="broken")
    (broken / "metrics.parquet").write_bytes(b"PAR1 this is not parquet")
    result = cli("-p", str(tmp_path / "runs"), "--no-group", "--top", "0", command="analyze")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "20250101_001001_j51/metrics.parquet: unreadable" in warnings[0]
    assert "RUNNING" in result.stdout and "2/30" in result.stdout
    assert "10 runs in" in result.stdout
    assert "Best config: wd=0.1,drop=0.1" in result.stdout


def test_compare_two_sweeps_side_by_side(tmp_path, cli):
    regular = grid_sweep(tmp_path / "regular", VALUES)
    mhc = grid_sweep(tmp_path / "mhc", {k: [v[0] + 0.02, v[1] + 0.02] for k, v in VALUES.items()})
    out = cli("regular", "mhc", "--format", "markdown", command="analyze").stdout
    tables = markdown_tables(out)
    comparison = next(t for t in tables if "Δ" in t[0])
    header = comparison[0]
    assert header[1:4] == ["best valid acc regular", "best valid acc mhc", "Δ"]
    rows = {row[0]: row for row in comparison[1:]}
    assert rows["wd=0.0,drop=0.0"][1:4] == ["85.0±7.1% n=2", "87.0±7.1% n=2", "+2.0 pts"]
    assert rows["best run"][1:4] == ["95.0%", "97.0%", "+2.0 pts"]
    assert Path(regular).exists() and Path(mhc).exists()
    both = cli("-p", "regular", "mhc", command="analyze").stdout
    assert "regular vs mhc" in both


def test_user_errors_are_one_line(tmp_path, cli):
    sweep = grid_sweep(tmp_path / "s", VALUES)
    cases = {
        ("--filter", "model.layers"): "error: --filter 'model.layers': expected KEY OP VALUE",
        (
            "--filter",
            "modell.layers==6",
        ): "error: --filter modell.layers: no run has this key (did you mean 'model.layers'?)",
        ("--metric", "valid/aurco"): "error: --metric valid/aurco: no run logged it",
        ("--sort", "gapp"): "error: --sort gapp: unknown field (did you mean 'gap'?)",
        ("--pivot", "dropout"): "error: --pivot dropout: expected two parameters",
        ("--split", "test"): "error: --split test: no run logged test/ metrics; splits: train, valid",
    }
    for args, message in cases.items():
        result = cli("-p", str(sweep), *args, command="analyze", check=False)
        assert result.returncode == 1, args
        assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(str(empty), command="analyze", check=False)
    assert result.returncode == 1 and "no runs under" in result.stderr


def test_broken_run_dirs_are_one_warning_each_and_runs_without_config_are_not_ranked(tmp_path, cli):
    sweep = grid_sweep(tmp_path / "runs" / "reg" / "20250101_000000", VALUES)
    (sweep / "20250101_001000_j60").mkdir()  # a job killed before it wrote anything
    corrupt = make_run(sweep / "20250101_001001_j61", valid_loss=[0.1], valid_acc=[0.99], name="corrupt")
    (corrupt / "config.json").write_text('{"trial_id": "corr')
    missing = make_run(sweep / "20250101_001002_j62", valid_loss=[0.1], valid_acc=[0.98], name="missing")
    (missing / "config.json").unlink()
    status = make_run(sweep / "20250101_001003_j63", valid_loss=[0.5], valid_acc=[0.5], name="status")
    (status / "status.json").write_text("")

    result = cli("-p", str(tmp_path / "runs"), "--top", "0", command="analyze")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4, result.stderr
    assert any("20250101_001000_j60: empty run dir" in w for w in warnings)
    assert any("20250101_001001_j61/config.json: not JSON" in w for w in warnings)
    assert any("20250101_001002_j62/config.json: missing" in w for w in warnings)
    assert any("20250101_001003_j63/status.json: empty file" in w for w in warnings)
    # the runs without a config (0.99 and 0.98, better than any config) are named, not ranked
    assert "Best config: wd=0.1,drop=0.1" in result.stdout
    assert "3 run dir(s) without a readable config.json not ranked" in result.stdout
    assert "20250101_001001_j61" in result.stdout and "99.0%" not in result.stdout


def test_n_and_over_n_seeds_count_the_seeds_whose_numbers_are_used(tmp_path, cli):
    values = {(0.0, 0.0): [0.80, 0.82], (0.1, 0.1): [0.95, 0.0]}
    sweep = grid_sweep(tmp_path / "s", values)
    truncated = next(
        p
        for p in sweep.iterdir()
        if '"wd=0.1,drop=0.1"' in (p / "config.json").read_text()
        and '"seed": 1' in (p / "config.json").read_text()
    )
    (truncated / "metrics.parquet").write_bytes(b"")  # a seed that gave no numbers
    result = cli("-p", str(sweep), command="analyze")
    assert "over 1 seed;" in result.stdout and "over 2 seeds" not in result.stdout
    assert (
        f"wd=0.1,drop=0.1: mean over 1 of 2 seeds; left out: seed 1 (COMPLETED, no valid/acc value; {truncated.name})"
        in result.stdout
    )
    document = strict_json(cli("-p", str(sweep), "--format", "json", command="analyze").stdout)
    counts = {row["name"]: (row["n"], row["left_out"]) for row in document["rows"]}
    assert counts == {"wd=0.1,drop=0.1": (1, [str(truncated)]), "wd=0.0,drop=0.0": (2, [])}
    # a --top table names the left-out seeds of the configs it shows and counts the others
    other = next(
        c.parent
        for c in sweep.glob("*/config.json")
        if '"wd=0.0,drop=0.0"' in c.read_text() and '"seed": 1' in c.read_text()
    )
    (other / "metrics.parquet").write_bytes(b"")
    top = cli("-p", str(sweep), "--top", "1", command="analyze").stdout
    assert top.count("left out: seed 1") == 1, top
    assert "1 more config(s), not shown, have seeds left out of their mean (--top 0 shows every row)" in top
