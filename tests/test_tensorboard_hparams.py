"""TensorBoard's HParams plugin sees the sweep: each run's own event file (no sub-run) holds the
experiment (the swept params, the seed, the trial id and the objective), the session's start with its
values and its end with its status; read back with TensorBoard's own loader."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from tests.conftest import cli_env, wait_for, write_spec

SPEC = """
name: hp
entrypoint: jobfns:fail_at
base: {epochs: 3, fail_epoch: 99, lr: 0.1}
configs:
  fine: {lr: 0.1}
  broken: {lr: 0.2, fail_epoch: 2}
"""


def hparams_of(run_dir: Path) -> dict:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return {
        "values": values,
        "status": api_pb2.Status.Name(end.status),
        "hparams": sorted(h.name for h in experiment.hparam_infos),
        "metrics": [m.name.tag for m in experiment.metric_infos],
    }


def test_every_run_dir_has_its_hparams_session_in_its_own_event_file(tmp_path, cli):
    write_spec(tmp_path, SPEC)
    cli("launch", "spec.yaml", "--executor", "local", check=False)  # one trial fails: exit 1
    sweep = next((tmp_path / "runs" / "hp").glob("2*"))
    runs = {}
    for run_dir in sweep.glob("*_j*"):
        assert not [p for p in run_dir.rglob("events.out.tfevents.*") if p.parent != run_dir]  # no sub-run
        record = hparams_of(run_dir)
        runs[record["values"]["trial"]] = record
    assert set(runs) == {"fine-s0", "broken-s0"}
    assert runs["fine-s0"]["values"] == {"lr": 0.1, "seed": 0.0, "trial": "fine-s0"}
    assert runs["broken-s0"]["values"] == {"lr": 0.2, "fail_epoch": 2.0, "seed": 0.0, "trial": "broken-s0"}
    assert runs["fine-s0"]["status"] == "STATUS_SUCCESS"
    assert runs["broken-s0"]["status"] == "STATUS_FAILURE"
    assert runs["fine-s0"]["metrics"] == ["valid/acc"]
    assert {"lr", "seed", "trial"} <= set(runs["fine-s0"]["hparams"])
    served = served_by_tensorboard(tmp_path, "hp", count=2)
    assert served["runs"] == ["broken-s0", "fine-s0"]  # named by trial id, each run once
    sessions = {g["name"]: g for g in served["session_groups"]}
    assert sessions["fine-s0"]["hparams"] == {"lr": 0.1, "seed": 0.0, "trial": "fine-s0"}
    assert sessions["fine-s0"]["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert [m["name"]["tag"] for m in sessions["fine-s0"]["metricValues"]] == ["valid/acc"]


def served_by_tensorboard(tmp_path: Path, sweep: str, count: int) -> dict:
    """`sweeper tensorboard` asked through TensorBoard's own HTTP API: its runs, the HParams sessions."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli", "tensorboard", sweep, "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # TensorBoard is its child: stop both
    )
    base = f"http://127.0.0.1:{port}/data"

    def call(path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.load(response)
        except OSError:
            return None

    try:
        runs = wait_for(lambda: len(call("/runs") or []) >= count and call("/runs"), 90, "TensorBoard's runs")
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        query = {"experimentName": "", "allowedStatuses": statuses, "startIndex": 0, "sliceSize": 100}

        def session_groups():
            found = (call("/plugin/hparams/session_groups", query) or {}).get("sessionGroups") or []
            loaded = len(found) >= count and all(g["metricValues"] for g in found)  # TensorBoard loads lazily
            return loaded and found

        groups = wait_for(session_groups, 60, "the HParams sessions")
        return {"runs": sorted(runs), "session_groups": groups}
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)


SEARCH = """
name: hps
entrypoint: jobfns:curve
base: {epochs: 6, lr: 0.01, dropout: 0.0}
search:
  params:
    lr: {type: float, low: 1e-4, high: 1.0, log: true}
  sampler: {name: random, seed: 0}
  pruner: {name: median, n_startup_trials: 1, n_warmup_steps: 1}
  n_trials: 4
  workers: 1
"""


def test_a_pruned_search_run_ends_neither_succeeded_nor_failed(tmp_path, cli):
    write_spec(tmp_path, SEARCH)
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = next((tmp_path / "runs" / "hps").glob("2*"))
    states = {}
    for run_dir in sweep.glob("*_j*"):
        record = hparams_of(run_dir)
        assert set(record["values"]) == {"lr", "seed", "trial"}
        states[record["status"]] = states.get(record["status"], 0) + 1
    pruned = sum(1 for p in sweep.glob("*_j*") if '"PRUNED"' in (p / "status.json").read_text())
    assert pruned >= 1 and states.get("STATUS_UNKNOWN") == pruned
    assert states.get("STATUS_SUCCESS") == 4 - pruned
