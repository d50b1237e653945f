"""`launch.gpus` on the local executor: each running trial sees one GPU of the list in CUDA_VISIBLE_DEVICES,
never one that another running trial has (unless `trials_per_gpu` lets it), checked through the environment
the trial processes saw (no GPU needed)."""

from __future__ import annotations

import itertools
import json

import pytest

from tests.conftest import write_spec


def launch_recording(tmp_path, cli, gpus: str, per_gpu: int, n: int = 6, sleep: float = 1.5) -> list[dict]:
    log = tmp_path / "gpus.jsonl"
    values = ", ".join(str(i) for i in range(1, n + 1))
    write_spec(
        tmp_path,
        f"""
        name: gpus
        entrypoint: jobfns:record_gpu
        base: {{sleep: {sleep}, lr: 0, log: {log}}}
        grid: {{lr: [{values}]}}
        launch: {{executor: local, gpus: {gpus}, trials_per_gpu: {per_gpu}}}
        """,
    )
    out = cli("launch", "spec.yaml").stdout
    assert "COMPLETED 6" in out
    return [json.loads(line) for line in log.read_text().splitlines()]


def overlapping(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def most_at_once(seen: list[dict]) -> int:
    """The most trials running at one moment (the largest count at any trial's start)."""
    return max(sum(b["start"] <= a["start"] < b["end"] for b in seen) for a in seen)


def test_each_running_trial_has_its_own_gpu_of_the_list(tmp_path, cli):
    seen = launch_recording(tmp_path, cli, "[1, 2, 3]", 1)
    assert sorted(r["lr"] for r in seen) == [1, 2, 3, 4, 5, 6]
    assert {r["cuda"] for r in seen} <= {"1", "2", "3"}  # one GPU each, never GPU 0
    for a, b in itertools.combinations(seen, 2):
        if overlapping(a, b):
            assert a["cuda"] != b["cuda"], (a, b)
    assert most_at_once(seen) <= 3  # the GPU slots


def test_trials_per_gpu_shares_a_gpu_between_that_many_trials(tmp_path, cli):
    seen = launch_recording(tmp_path, cli, "[5]", 2, sleep=3.0)
    assert {r["cuda"] for r in seen} == {"5"}
    assert most_at_once(seen) == 2  # two slots on GPU 5: two at once, never three


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[]", "expected a list of GPU indexes"),
        ("[1, 1]", "lists a GPU twice"),
        ("[-1]", "expected a list of GPU indexes"),
    ],
)
def test_bad_gpu_lists_are_refused_with_their_line(tmp_path, cli, value, problem):
    write_spec(
        tmp_path,
        f"""
        name: gpus
        entrypoint: jobfns:record_gpu
        base: {{sleep: 0}}
        grid: {{sleep: [0]}}
        launch:
          executor: local
          gpus: {value}
        """,
    )
    result = cli("launch", "spec.yaml", check=False)
    assert result.returncode == 1 and result.stderr.startswith("error: spec.yaml:7: launch.gpus: " + problem)
    assert not (tmp_path / "runs").exists()


def test_gpus_on_another_executor_is_a_warning_naming_gpus_per_node(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: gpus
        entrypoint: jobfns:record_gpu
        base: {sleep: 0}
        grid: {sleep: [0]}
        launch: {executor: debug, gpus: [1, 2]}
        """,
    )
    out = cli("launch", "spec.yaml", "--dry-run").stdout
    assert "warning: launch.gpus: only the local executor hands out GPUs; on debug use" in out
