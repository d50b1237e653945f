"""The sweep-end command (`launch.on_end`): checked at launch, run once when every trial has ended, after
the summary files are written: by the local launcher, and on the local SLURM cluster as a job that waits
(afterany) for every array, handed the new arrays of a retry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sweeper.ledger import Ledger
from tests.conftest import write_spec
from tests.slurm_cluster import sacct, wait_for

# The command proves what it saw: both summary files, filled placeholders, and when it ran.
END = (
    "test -s {sweep_dir}/report.md && test -s {sweep_dir}/report.json && "
    'echo "{name}|{counts}|$(date +%s.%N)|$SLURM_JOB_ID" >> {sweep_dir}/../end.log'
)


def spec(tmp_path: Path, body: str) -> None:
    write_spec(tmp_path, body.replace("ON_END", json.dumps(END)))


def end_lines(tmp_path: Path, name: str) -> list[list[str]]:
    log = tmp_path / "runs" / name / "end.log"
    return [line.split("|") for line in log.read_text().splitlines()] if log.exists() else []


def test_unknown_placeholder_is_a_spec_error_with_its_line_and_nothing_is_written(tmp_path, cli):
    write_spec(
        tmp_path,
        """
        name: badend
        entrypoint: jobfns:slow_counter
        base: {epochs: 1, sleep: 0.0}
        grid: {lr: [0.1]}
        launch:
          executor: local
          on_end: "mail -s '{nme} done' me"
        """,
    )
    result = cli("launch", "spec.yaml", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: spec.yaml:7: launch.on_end: unknown placeholder {nme} (did you mean 'name'?); "
        "known: {sweep_dir}, {name}, {counts}"
    )
    assert not (tmp_path / "runs").exists()


def test_local_launcher_runs_the_end_once_after_the_trials_with_the_summaries(tmp_path, cli):
    spec(
        tmp_path,
        """
        name: endlocal
        entrypoint: jobfns:fail_at
        base: {epochs: 2, fail_epoch: 99}
        grid: {fail_epoch: [99, 1]}
        launch: {executor: local, parallelism: 2, on_end: ON_END}
        """,
    )
    cli("launch", "spec.yaml", check=False)  # one trial fails: exit 1, the end runs all the same
    sweep = (tmp_path / "runs" / "endlocal" / "latest").resolve()
    lines = end_lines(tmp_path, "endlocal")
    assert len(lines) == 1 and lines[0][:2] == ["endlocal", "COMPLETED 1, FAILED 1"]
    ended = [e["time"] for e in Ledger(sweep).events() if e.get("event") == "ended"]
    assert len(ended) == 2 and float(lines[0][2]) >= max(ended)
    summary = json.loads((sweep / "report.json").read_text())
    assert {r["trial_id"] for r in summary["runs"]} == {"fail_epoch=99-s0", "fail_epoch=1-s0"}
    assert "fail_epoch" in (sweep / "report.md").read_text()
    ran = Ledger(sweep).sweep_events("end_ran")
    assert len(ran) == 1 and ran[0]["returncode"] == 0


@pytest.fixture
def cancel_jobs(tmp_path):
    yield
    ids = set()
    for attempts in (tmp_path / "runs").glob("*/*/attempts.jsonl"):
        for line in attempts.read_text().splitlines():
            job_id = json.loads(line).get("job_id")
            if job_id:
                ids.add(str(job_id).split("_")[0])
    if ids:
        subprocess.run(["scancel", *sorted(ids)], capture_output=True)


def slurm_jobs(sweep: Path) -> tuple[list[str], str]:
    """The trials' job ids and the latest end job's id, from the ledger."""
    ledger = Ledger(sweep)
    trials = [str(r.latest["job_id"]) for r in ledger.records().values() if r.latest]
    return trials, str(ledger.sweep_events("end_job")[-1]["job_id"])


@pytest.mark.slurm
def test_slurm_end_job_runs_once_after_the_last_trial_and_a_retry_hands_it_the_new_arrays(
    tmp_path, cli, cancel_jobs
):
    spec(
        tmp_path,
        """
        name: endslurm
        entrypoint: jobfns:fail_once
        base: {epochs: 2, fail_epoch: 2}
        grid: {lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}
        launch: {profile: local, parallelism: 4, on_end: ON_END}
        """,
    )
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "endslurm" / "latest").resolve()
    trials, end_job = slurm_jobs(sweep)
    arrays = sorted({t.split("_")[0] for t in trials})
    assert len(arrays) == 2  # MaxArraySize 5 on the test cluster: 7 trials are two arrays
    dependency = Ledger(sweep).sweep_events("end_job")[-1]["dependency"]
    assert dependency == "afterany:" + ":".join(arrays)

    wait_for(lambda: end_lines(tmp_path, "endslurm"), 300, "the end job's line")
    wait_for(
        lambda: [r["State"] for r in sacct([end_job])] == ["COMPLETED"], 60, "the end job COMPLETED in sacct"
    )
    lines = end_lines(tmp_path, "endslurm")
    assert len(lines) == 1 and lines[0][0] == "endslurm" and lines[0][3] == end_job
    assert lines[0][1] == "FAILED 7"  # fail_once: every first run fails
    # it started after every trial's job had ended (sacct's own times; 1 s resolution)
    ends = [row["End"] for row in sacct(trials, "JobID,State,Start,End")]
    (end_row,) = sacct([end_job], "JobID,State,Start,End")
    assert max(ends) <= end_row["Start"]
    assert json.loads((sweep / "report.json").read_text())["runs"]

    # a retry: the sweep ends again, once, after the retried trials; the summaries are rewritten
    cli("retry", "endslurm")
    retried, second = slurm_jobs(sweep)
    assert second != end_job  # the first end job has run: a new one waits for the retry's arrays
    wait_for(lambda: len(end_lines(tmp_path, "endslurm")) == 2, 300, "the second end line")
    lines = end_lines(tmp_path, "endslurm")
    assert lines[1][1] == "COMPLETED 7" and lines[1][3] == second
    assert len(Ledger(sweep).sweep_events("end_ran")) == 2


@pytest.mark.slurm
def test_a_retry_while_the_end_job_pends_hands_it_the_retried_array(tmp_path, cli, cancel_jobs):
    spec(
        tmp_path,
        """
        name: endpending
        entrypoint: jobfns:slow_counter
        base: {epochs: 15, sleep: 1.0}
        grid: {lr: [0.1, 0.2, 0.3]}
        launch: {profile: local, parallelism: 3, on_end: ON_END}
        """,
    )
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "endpending" / "latest").resolve()
    trials, end_job = slurm_jobs(sweep)
    cli("cancel", "endpending", "lr=0.1-s0")  # the others still run: the end job still waits
    cli("retry", "endpending")
    retried, same = slurm_jobs(sweep)
    new_array = dict(zip(sorted(Ledger(sweep).records()), retried, strict=True))["lr=0.1-s0"]
    assert same == end_job  # the pending end job was handed the retry's array, not replaced
    assert Ledger(sweep).sweep_events("end_job")[-1]["dependency"].endswith(":" + new_array.split("_")[0])
    wait_for(lambda: end_lines(tmp_path, "endpending"), 300, "the end job's line")
    wait_for(
        lambda: [r["State"] for r in sacct([end_job])] == ["COMPLETED"], 60, "the end job COMPLETED in sacct"
    )
    lines = end_lines(tmp_path, "endpending")
    assert len(lines) == 1 and lines[0][1] == "COMPLETED 3" and lines[0][3] == end_job
    ends = [row["End"] for row in sacct(retried + trials, "JobID,State,Start,End")]
    assert max(ends) <= sacct([end_job], "JobID,State,Start,End")[0]["Start"]
