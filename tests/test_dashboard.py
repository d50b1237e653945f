"""`sweeper dashboard` through optuna-dashboard's own HTTP API: a grid sweep's runs served as a study
(categorical params, value = mean over seeds of each run's best, per-epoch intermediate values, the run
dirs), a search study that names its metric and carries the sweep's context and a note, and a busy port
refused in one line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import cli_env, wait_for, write_spec

GRID = """
name: g
entrypoint: jobfns:curve
base: {epochs: 3, lr: 0.01}
configs:
  slow: {lr: 0.01}
  fast: {lr: 0.1}
seeds: [0, 1]
"""
SEARCH = """
name: s
entrypoint: jobfns:curve
base: {epochs: 3, lr: 0.01, dropout: 0.0}
search:
  params:
    lr: {type: float, low: 1e-3, high: 0.1, log: true}
  sampler: {name: random, seed: 0}
  n_trials: 2
  workers: 1
seeds: [0, 1]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def serve(tmp_path: Path, sweep: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli", "dashboard", sweep, "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return server, port


def study_detail(port: int) -> dict:
    summaries = wait_for(lambda: get(port, "/api/studies"), 60, "optuna-dashboard")["study_summaries"]
    assert len(summaries) == 1
    return get(port, f"/api/studies/{summaries[0]['study_id']}")


def attrs(items: list[dict]) -> dict:
    return {a["key"]: a["value"] for a in items}


def test_a_grid_sweep_is_served_as_a_study_built_from_its_runs(tmp_path, cli):
    write_spec(tmp_path, GRID)
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "g" / "latest").resolve()
    best = {}
    for run_dir in sweep.glob("*_j*"):
        config = json.loads((run_dir / "config.json").read_text())
        best.setdefault(config["name"], []).append(
            max(pq.read_table(run_dir / "metrics.parquet")["valid/acc"].to_pylist())
        )
    server, port = serve(tmp_path, "g")
    try:
        detail = study_detail(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert detail["objective_names"] == ["valid/acc"] and detail["directions"] == ["maximize"]
    assert attrs(detail["user_attrs"])["sweep_dir"] == str(sweep)
    trials = {attrs(t["user_attrs"])["name"]: t for t in detail["trials"]}
    assert set(trials) == {"slow", "fast"}
    for name, trial in trials.items():
        assert trial["state"] == "Complete"
        assert trial["values"] == [pytest.approx(sum(best[name]) / 2)]
        assert [v["step"] for v in trial["intermediate_values"]] == [1, 2, 3]
        (param,) = trial["params"]
        assert param["name"] == "lr" and param["distribution"]["type"] == "CategoricalDistribution"
        run_dirs = json.loads(attrs(trial["user_attrs"])["run_dirs"].replace("'", '"'))
        assert len(run_dirs) == 2 and all(Path(d).parent == sweep for d in run_dirs)
    assert float(trials["slow"]["params"][0]["param_external_value"]) == 0.01


def test_a_search_study_names_its_metric_and_says_which_sweep_it_is(tmp_path, cli):
    write_spec(tmp_path, SEARCH)
    cli("launch", "spec.yaml", "--executor", "local")
    server, port = serve(tmp_path, "s")
    try:
        detail = study_detail(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert detail["objective_names"] == ["valid/acc"]
    context = attrs(detail["user_attrs"])
    assert context["sweep_dir"] == str((tmp_path / "runs" / "s" / "latest").resolve())
    assert context["objective"] == "valid/acc" and context["sampler"] == "random"
    assert "step k x 3 + e" in detail["note"]["body"]


def test_a_pruned_trial_has_no_value_on_the_completed_trials_axis(tmp_path, cli):
    """optuna-dashboard's history, parallel coordinates and EDF plot every Complete or Pruned trial that has
    a value; a pruned trial's would be one seed's best so far among seed means (issue 20)."""
    write_spec(
        tmp_path,
        SEARCH.replace("low: 1e-3, high: 0.1", "low: 1e-4, high: 1.0")
        .replace(
            "n_trials: 2", "n_trials: 6\n  pruner: {name: median, n_startup_trials: 1, n_warmup_steps: 1}"
        )
        .replace("name: s", "name: p"),
    )
    cli("launch", "spec.yaml", "--executor", "local")
    server, port = serve(tmp_path, "p")
    try:
        detail = study_detail(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    states = [t["state"] for t in detail["trials"]]
    assert "Pruned" in states and "Complete" in states, states
    for trial in detail["trials"]:
        user = attrs(trial["user_attrs"])
        reported = {v["step"]: v["value"] for v in trial["intermediate_values"]}
        if trial["state"] == "Complete":
            seed_values = json.loads(user["seed_values"])
            assert len(seed_values) == 2 and trial["values"] == [pytest.approx(sum(seed_values) / 2)]
            continue
        assert "values" not in trial  # Optuna's own tell would give it reported[max(reported)]
        seed, epoch = int(user["pruned_seed"]), int(user["pruned_epoch"])
        assert max(reported) == [0, 1].index(seed) * 3 + epoch
        assert float(user["pruned_value"]) == pytest.approx(reported[max(reported)])
        assert len(json.loads(user["seed_values"])) == [0, 1].index(seed)  # the seeds it had finished
    assert "**no value**" in detail["note"]["body"]


def test_a_busy_port_is_one_error_line(tmp_path, cli):
    write_spec(tmp_path, GRID.replace("seeds: [0, 1]", "seeds: [0]"))
    cli("launch", "spec.yaml", "--executor", "local")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = cli("dashboard", "g", "--port", str(port), check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1
    assert lines == [f"error: --port {port}: 127.0.0.1:{port} is in use; pick another with --port"]
