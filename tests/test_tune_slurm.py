"""Optuna workers as a SLURM array on the real local cluster: exact budget, pruning that exits 0, a worker
cancelled mid-trial reconciled by `sweeper status`."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from tests.slurm_cluster import sacct, wait_for
from tests.test_tune import search_spec, study_of

pytestmark = pytest.mark.slurm


def test_two_slurm_workers_spend_exactly_the_budget_and_exit_0(tmp_path, cli):
    search_spec(tmp_path, name="sopt", n_trials=8, workers=2, epochs=6)
    out = cli("launch", "spec.yaml", "--executor", "slurm", "--wait", timeout=600).stdout
    assert "Optuna search, 8 trials by 2 workers" in out
    ledger, study = study_of(tmp_path, "sopt")
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert any(t.state == TrialState.PRUNED for t in trials)
    # the two workers are the array's two tasks; on a loaded machine one may start late and find the budget
    # spent, so take them from the ledger (what was submitted), not from the trials they ran
    workers = sorted(record.latest["job_id"] for record in ledger.records().values())
    assert len(workers) == 2 and all("_" in j for j in workers)  # array tasks: <array>_<task>
    assert {t.user_attrs["job_id"] for t in trials} <= set(workers)
    seen: list[dict] = []

    def both_ended() -> bool:
        seen[:] = sacct(workers, "JobID,State,ExitCode")
        return len(seen) == 2 and all(row["State"] == "COMPLETED" for row in seen)

    try:
        wait_for(both_ended, 60, "sacct to see both workers end")
    except AssertionError as error:
        raise AssertionError(f"{error}; sacct rows: {seen}") from None
    assert {row["ExitCode"] for row in seen} == {"0:0"}  # pruning is not a failure, nothing is requeued
    for trial in trials:
        assert (ledger.dir / trial.user_attrs["run_dirs"]["0"]).name.endswith(
            f"_j{trial.user_attrs['job_id']}_t{trial.number}"
        )


def test_a_slurm_worker_cancelled_mid_trial_leaves_no_running_trial(tmp_path, cli):
    search_spec(tmp_path, name="scancel", n_trials=3, workers=1, epochs=200, sleep=0.2)
    cli("launch", "spec.yaml", "--executor", "slurm")
    ledger, study = study_of(tmp_path, "scancel")
    wait_for(
        lambda: any(
            t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2 for t in study.get_trials()
        ),
        180,
        "a trial running",
    )
    cli("cancel", "scancel")
    wait_for(lambda: "CANCELLED" in cli("status", "scancel").stdout, 120, "the worker cancelled")
    study = study_of(tmp_path, "scancel")[1]
    assert not study.get_trials(states=(TrialState.RUNNING,))
    first = study.get_trials()[0]
    assert first.state == TrialState.FAIL
