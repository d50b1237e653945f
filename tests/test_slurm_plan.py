"""The SLURM side that needs no cluster: array splitting, sacct parsing, cluster profiles, the dry run."""

from __future__ import annotations

import json

import yaml

from sweeper.backends.slurm import ArrayPart, split_arrays
from sweeper.backends.slurm_commands import _never_started, parse_records
from tests.conftest import write_spec

# Captured from `sacct -X -n --parsable2 -o JobID,State,ExitCode,NodeList,Start,End` on the test cluster
# (without -X for the step lines): a running task, a finished one with its steps, a pending remainder, the
# plain remainder record of an array whose pending tasks were all cancelled.
SACCT_TEXT = """\
16_0|CANCELLED by 0|0:0|vm|2026-11-23T15:21:04|2026-11-23T15:21:07
16_0.batch|CANCELLED|0:15|vm|2026-11-23T15:21:04|2026-11-23T15:21:07
34_0|RUNNING|0:0|vm|2026-11-23T15:24:55|Unknown
34_[1-3%2]|PENDING|0:0|None assigned|None|Unknown
36|CANCELLED by 0|0:0|None assigned|None|2026-11-23T15:26:15
12|FAILED|1:0|vm|2026-11-23T15:20:57|2026-11-23T15:21:02
"""


def test_split_arrays_at_max_array_size_and_keep_the_sweeps_throttle():
    # arrays bigger than the throttle: each waits for the previous one
    assert split_arrays(12, 5, 3) == [
        ArrayPart(0, 5, 3),
        ArrayPart(5, 5, 3, after=0),
        ArrayPart(10, 2, 2, after=1),
    ]
    # small arrays: 64 // 5 = 12 of them run at once, the 13th waits for the first
    parts = split_arrays(1000, 5, 64)
    assert len(parts) == 200 and {p.size for p in parts} == {5} and {p.throttle for p in parts} == {5}
    assert [p.after for p in parts[:13]] == [None] * 12 + [0] and parts[-1].after == 199 - 12
    # everything may run at once anyway: independent arrays
    assert split_arrays(7, 5, 64) == [ArrayPart(0, 5, 5), ArrayPart(5, 2, 2)]
    assert split_arrays(4, 1001, 2) == [ArrayPart(0, 4, 2)]
    assert split_arrays(3, None, 8) == [ArrayPart(0, 3, 3)]


def test_sacct_lines_become_one_record_per_task():
    records = parse_records(SACCT_TEXT)
    assert set(records) == {"16_0", "34_0", "34_1", "34_2", "34_3", "36", "12"}
    assert records["16_0"].state == "CANCELLED" and records["16_0"].node == "vm"
    assert records["34_0"].state == "RUNNING" and records["34_0"].end is None
    assert records["34_2"].state == "PENDING" and records["34_2"].node is None
    assert records["12"].exit_code == "1:0" and records["12"].terminal
    # a task that never started lives in its array's remainder record
    assert _never_started(records, "36_1").state == "CANCELLED"
    assert _never_started(records, "34_3") is None  # a pending remainder is expanded, not inferred
    assert _never_started(records, "99_0") is None and _never_started(records, "12") is None


def profile_spec(tmp_path, launch: str):
    return write_spec(
        tmp_path,
        f"""
        name: prof
        entrypoint: jobfns:slow_counter
        base: {{epochs: 1, sleep: 0.0}}
        configs: {{only: {{}}}}
        launch: {launch}
        """,
    )


def test_profile_fills_launch_defaults_and_the_spec_wins(tmp_path, cli):
    profile_spec(tmp_path, "{profile: local, time_min: 7, slurm: {cpus_per_task: 2}}")
    out = cli("launch", "spec.yaml", "--executor", "slurm", "--dry-run").stdout
    assert "slurm/profiles/local.yaml" in out
    assert "slurm_partition = debug" in out  # from the profile
    assert "cpus_per_task = 2" in out and "timeout_min = 7" in out  # the spec's own keys win
    assert "slurm_signal_delay_s = 60" in out


def test_unknown_profile_and_bad_profile_key_are_one_line_errors(tmp_path, cli):
    profile_spec(tmp_path, "{profile: nope}")
    result = cli("launch", "spec.yaml", "--dry-run", check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: spec.yaml:5: launch.profile: no cluster profile 'nope' (known:")
    assert "local" in result.stderr

    (tmp_path / "slurm" / "profiles").mkdir(parents=True)
    (tmp_path / "slurm" / "profiles" / "typo.yaml").write_text("launch:\n  slurm:\n    partitio: gpu\n")
    profile_spec(tmp_path, "{profile: typo}")
    result = cli("launch", "spec.yaml", "--dry-run", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "typo.yaml:3: launch.slurm.partitio: unknown key" in result.stderr
    assert "partition" in result.stderr


def test_the_sweep_dir_keeps_the_resolved_launch_not_the_profile_name(tmp_path, cli):
    profile_spec(tmp_path, "{profile: local, slurm: {cpus_per_task: 1}}")
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "prof" / "latest").resolve()
    launched = yaml.safe_load((sweep / "spec.yaml").read_text())["launch"]
    assert "profile" not in launched
    assert launched["slurm"] == {"partition": "debug", "cpus_per_task": 1, "signal_delay_s": 60}
    assert json.loads((sweep / "sweep.json").read_text())["profile"].endswith("slurm/profiles/local.yaml")


def test_a_packed_dry_run_shows_tasks_not_trials_and_the_threads_each(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: packdry
        entrypoint: jobfns:slow_counter
        base: {epochs: 1, sleep: 0.0, lr: 0.0}
        grid: {lr: [1, 2, 3, 4, 5, 6, 7, 8, 9]}
        launch: {profile: local, pack: 4, parallelism: 8, slurm: {cpus_per_task: 8}}
        """,
    )
    out = cli("launch", "spec.yaml", "--executor", "slurm", "--dry-run").stdout
    assert "packed: 4 trials per array task (parallel), 2 thread(s) each; at most 2 task(s) at once" in out
    assert "array 1: trials 0..2 (3): sbatch --array=0-2%2" in out  # 9 trials: 3 tasks (the last of 1)


def test_pack_is_refused_for_a_search_and_ignored_with_a_warning_locally(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: packsearch
        entrypoint: jobfns:slow_counter
        base: {epochs: 1, sleep: 0.0, lr: 0.0}
        search: {params: {lr: {type: float, low: 0.1, high: 1.0}}, n_trials: 4}
        launch:
          pack: 2
        """,
    )
    result = cli("launch", "spec.yaml", "--dry-run", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: spec.yaml:6: launch.pack: packing is for grid/configs sweeps "
        "(an Optuna worker already runs trial after trial)"
    )
    write_spec(
        tmp_path,
        """
        name: packlocal
        entrypoint: jobfns:slow_counter
        base: {epochs: 1, sleep: 0.0}
        configs: {only: {}}
        launch: {executor: local, pack: 2}
        """,
    )
    out = cli("launch", "spec.yaml", "--dry-run").stdout
    assert "warning: launch.pack: local runs each trial as its own job (packing is for SLURM)" in out
