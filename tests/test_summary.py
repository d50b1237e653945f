"""Numbers a run makes once (summary.json): the built-in trainer's final test evaluation, the run API, a
command trial's `{"summary": ...}` line; read back by analyze's tables, --metric and exports."""

from __future__ import annotations

import csv
import io
import json
import sys
import textwrap

import pytest

from tests.conftest import write_spec
from tests.test_analysis import private_cache  # noqa: F401 (autouse fixture)
from tests.test_analysis_export import markdown_tables, strict_json

TEST_KEYS = {"test/loss", "test/acc", "test/auroc", "test/knn_acc", "test/silhouette"}


def test_the_trainer_writes_its_final_test_evaluation(notebook_sweep, cli):
    run_dirs = sorted(p for p in notebook_sweep.iterdir() if (p / "metrics.parquet").exists())
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert set(summary) == TEST_KEYS
        assert (
            0 <= summary["test/acc"] <= 1
            and summary["test/loss"] > 0
            and -1 <= summary["test/silhouette"] <= 1
        )

    document = strict_json(
        cli("-p", str(notebook_sweep), "--format", "json", "--no-group", command="analyze").stdout
    )
    by_dir = {r["run_dir"]: r for r in document["runs"]}
    for run_dir in run_dirs:
        assert by_dir[str(run_dir)]["summary"] == json.loads((run_dir / "summary.json").read_text())

    # --metric test/acc ranks by the summary number
    ranked = strict_json(
        cli(
            "-p",
            str(notebook_sweep),
            "--format",
            "json",
            "--no-group",
            "--metric",
            "test/acc",
            command="analyze",
        ).stdout
    )
    values = [r["summary"]["test/acc"] for r in ranked["rows"]]
    assert values == sorted(values, reverse=True) and ranked["objective"]["metric"] == "test/acc"
    assert ranked["best"]["summary"]["test/acc"]["mean"] == values[0]
    assert [r["objective"] for r in ranked["rows"]] == values

    # markdown: one column per summary number; grouped: mean ± std over the seeds
    (table, *_) = markdown_tables(
        cli("-p", str(notebook_sweep), "--format", "markdown", command="analyze").stdout
    )
    assert TEST_KEYS <= set(table[0])
    grouped = strict_json(cli("-p", str(notebook_sweep), "--format", "json", command="analyze").stdout)
    row = grouped["rows"][0]
    accs = [by_dir[d]["summary"]["test/acc"] for d in row["run_dirs"]]
    assert (
        row["summary"]["test/acc"]["mean"] == pytest.approx(sum(accs) / 2)
        and row["summary"]["test/acc"]["n"] == 2
    )
    # csv: the numbers as columns
    records = list(
        csv.DictReader(
            io.StringIO(cli("-p", str(notebook_sweep), "--format", "csv", command="analyze").stdout)
        )
    )
    assert float(records[0]["test/acc_mean"]) == pytest.approx(row["summary"]["test/acc"]["mean"])


def test_the_run_api_writes_summary_json(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: land
        entrypoint: notebook_fns:landscape
        base: {epochs: 2, size: 2}
        grid: {size: [2, 4, 9]}
        """,
    )
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "land" / "latest").resolve()
    document = strict_json(cli("-p", str(sweep), "--format", "json", command="analyze").stdout)
    for run in document["runs"]:
        size = run["params"]["size"]
        assert run["summary"] == {
            "h0": pytest.approx(size**0.5 + 0.01 * (size % 3)),
            "retention@100": pytest.approx(1 - 1 / size),
        }
    smallest = strict_json(
        cli("-p", str(sweep), "--format", "json", "--metric", "h0", command="analyze").stdout
    )
    # h0 has no direction in its name: larger is better unless the sweep says otherwise
    assert smallest["best"]["params"] == {"size": 9}


PROGRAM = """
import json, sys
lr = float(sys.argv[1])
for epoch in (1, 2):
    print(json.dumps({"epoch": epoch, "train/loss": 1 / (epoch + lr), "valid/loss": 1 / (epoch + lr), "valid/acc": lr}))
print("final numbers follow")
print(json.dumps({"summary": {"test/acc": lr / 2, "note": "text is not a number"}}))
print(json.dumps({"summary": {"retention@100": lr / 4}}))
"""


def test_a_command_trial_prints_its_summary(tmp_path, cli):
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAM))
    write_spec(
        tmp_path,
        f"""
        name: cmd
        command: [{sys.executable}, prog.py, "{{optim.lr}}"]
        metrics: {{source: jsonl}}
        base: {{optim: {{lr: 0.1}}, epochs: 2}}
        grid: {{optim.lr: [0.2, 0.6]}}
        """,
    )
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "cmd" / "latest").resolve()
    run_dirs = sorted(p for p in sweep.iterdir() if (p / "summary.json").exists())
    assert len(run_dirs) == 2
    for run_dir in run_dirs:
        lr = json.loads((run_dir / "config.json").read_text())["params"]["optim.lr"]
        assert json.loads((run_dir / "summary.json").read_text()) == {
            "test/acc": lr / 2,
            "retention@100": lr / 4,
        }
        assert "'note' is not a number" in (run_dir / "job.log").read_text()
    best = strict_json(
        cli("-p", str(sweep), "--format", "json", "--metric", "test/acc", command="analyze").stdout
    )
    assert best["best"]["params"] == {"optim.lr": 0.6}


def test_test_fraction_holds_a_test_split_out_of_train_and_keeps_valid():
    from sweeper.config import DataConfig
    from sweeper.data import load_data

    plain = load_data(DataConfig())
    held = load_data(DataConfig(test_fraction=0.25))
    assert plain.x_test is None
    assert held.x_valid.shape == plain.x_valid.shape and (held.y_valid == plain.y_valid).all()
    assert len(held.x_test) + len(held.x_train) == len(plain.x_train)
    assert abs(len(held.x_test) - 0.25 * len(plain.x_train)) <= 1
    train = {tuple(row) for row in held.x_train.flatten(1).tolist()}
    assert not any(tuple(row) in train for row in held.x_test.flatten(1).tolist()[:50])
