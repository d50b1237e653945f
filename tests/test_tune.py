"""Optuna search through the real CLI and submitit's local executor: budget, pruning, dead workers, dashboard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
import submitit
from optuna.trial import TrialState

from sweeper.errors import SpecError
from sweeper.ledger import Ledger
from sweeper.spec import parse_spec
from sweeper.study import load_study
from tests.conftest import cli_env, start_cli, wait_for, write_spec

SEARCH = """
    name: {name}
    entrypoint: jobfns:curve
    base: {{epochs: {epochs}, lr: 0.01, dropout: 0.0, sleep: {sleep}}}
    search:
      params:
        lr: {{type: float, low: 1e-4, high: 1.0, log: true}}
        dropout: {{type: float, low: 0.0, high: 0.5}}
      sampler: {{name: random, seed: 0}}
      pruner: {{name: median, n_startup_trials: 1, n_warmup_steps: 1}}
      n_trials: {n_trials}
      workers: {workers}
      storage: {storage}
    seeds: {seeds}
"""


def search_spec(
    tmp_path: Path, name="opt", epochs=6, sleep=0.0, n_trials=8, workers=2, seeds="[0]", storage="null"
) -> Path:
    return write_spec(
        tmp_path,
        SEARCH.format(
            name=name,
            epochs=epochs,
            sleep=sleep,
            n_trials=n_trials,
            workers=workers,
            seeds=seeds,
            storage=storage,
        ),
    )


def study_of(tmp_path: Path, name: str) -> tuple[Ledger, optuna.Study]:
    ledger = Ledger((tmp_path / "runs" / name / "latest").resolve())
    return ledger, load_study(ledger, ledger.launched_spec())


def test_two_workers_spend_exactly_the_budget_and_pruned_jobs_exit_cleanly(tmp_path, cli):
    search_spec(tmp_path, n_trials=8, workers=2)
    out = cli("launch", "spec.yaml", "--executor", "local").stdout
    assert "Optuna search, 8 trials by 2 workers" in out
    ledger, study = study_of(tmp_path, "opt")
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sum(t.state == TrialState.PRUNED for t in trials) >= 1
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8  # no trial ran twice
    # every trial has its own run dir, named with the job id and trial number, holding its epochs
    run_dirs = [ledger.dir / t.user_attrs["run_dirs"]["0"] for t in trials]
    assert len(set(run_dirs)) == 8
    for trial, run_dir in zip(trials, run_dirs, strict=True):
        assert run_dir.name.endswith(f"_j{trial.user_attrs['job_id']}_t{trial.number}")
        config = json.loads((run_dir / "config.json").read_text())
        assert config["optuna_trial"] == trial.number and config["params"] == trial.params
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == {"COMPLETE": "COMPLETED", "PRUNED": "PRUNED"}[trial.state.name]
        assert status["optuna_trial"] == trial.number and status["optuna_state"] == trial.state.name
        assert sorted(trial.intermediate_values) == list(range(1, status["epoch"] + 1))
        if trial.state == TrialState.PRUNED:
            assert status["epoch"] < 6
    # both workers finished normally: pruning is not a failure
    ended = [e for e in ledger.events() if e["event"] == "ended"]
    assert sorted(e["trial_id"] for e in ended) == ["worker-0", "worker-1"]
    assert {e["state"] for e in ended} == {"COMPLETED"}
    assert sum(e["trials"] for e in ended) == 8
    for event in ended:
        job = submitit.local.local.LocalJob(ledger.dir / "submitit", event["job_id"])
        assert job.result()["state"] == "COMPLETED"

    analysis = cli("--checkpoints-path", str(ledger.dir), "--format", "markdown", command="analyze").stdout
    assert "PRUNED" in analysis and "COMPLETED" in analysis
    pruned = next(t for t in trials if t.state == TrialState.PRUNED)
    assert f"#{pruned.number} PRUNED" in analysis  # the trial column: Optuna's number and state
    status = cli("status", "opt").stdout
    assert "PRUNED" in status and "RUNNING" not in status
    data = json.loads(cli("status", "opt", "--format", "json").stdout)  # the same rows as plain data
    assert sorted(t["number"] for t in data["study_trials"]) == sorted(t.number for t in trials)
    assert [w["trial_id"] for w in data["workers"]] == ["worker-0", "worker-1"]
    # the overview counts the study's trials (not the 2 worker jobs) and shows the best trial's value
    overview = cli("status").stdout
    counts = {s: sum(t.state == getattr(TrialState, s) for t in trials) for s in ("COMPLETE", "PRUNED")}
    assert "8/8 by 2 workers" in overview
    assert f"COMPLETE {counts['COMPLETE']}" in overview and f"PRUNED {counts['PRUNED']}" in overview
    assert f"valid/acc {100 * study.best_value:.1f}%" in overview


def test_seeds_are_averaged_and_never_searched(tmp_path, cli):
    search_spec(tmp_path, name="seeds", n_trials=2, workers=1, seeds="[0, 1]", epochs=3)
    write_spec(
        tmp_path,
        (tmp_path / "spec.yaml")
        .read_text()
        .replace("name: median, n_startup_trials: 1, n_warmup_steps: 1", "name: none"),
    )
    cli("launch", "spec.yaml", "--executor", "local")
    ledger, study = study_of(tmp_path, "seeds")
    for trial in study.get_trials():
        assert set(trial.params) == {"lr", "dropout"}
        assert set(trial.user_attrs["run_dirs"]) == {"0", "1"}
        per_seed = trial.user_attrs["seed_values"]
        assert len(per_seed) == 2 and per_seed[0] != per_seed[1]
        assert trial.value == pytest.approx(sum(per_seed) / 2)
        # both seeds reach the pruner, one after the other on one step axis
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    "seeds, state",
    [
        ("[0]", TrialState.COMPLETE),  # step 4 is the trial's last step: nothing left to save
        ("[0, 1]", TrialState.PRUNED),  # step 4 is seed 0's last epoch: seed 1 is saved
    ],
)
def test_a_trial_is_never_pruned_at_its_last_step(tmp_path, cli, seeds, state):
    # A threshold no accuracy reaches: the pruner says prune from step 4 on (its warmup ends there).
    search_spec(tmp_path, name="last", n_trials=2, workers=1, seeds=seeds, epochs=4)
    write_spec(
        tmp_path,
        (tmp_path / "spec.yaml")
        .read_text()
        .replace(
            "name: median, n_startup_trials: 1, n_warmup_steps: 1",
            "name: threshold, lower: 2.0, n_warmup_steps: 4",
        ),
    )
    cli("launch", "spec.yaml", "--executor", "local")
    _, study = study_of(tmp_path, "last")
    trials = study.get_trials()
    assert len(trials) == 2
    for trial in trials:
        assert trial.state == state and sorted(trial.intermediate_values) == [1, 2, 3, 4]
        assert (trial.value is not None) == (state == TrialState.COMPLETE)


def test_killed_worker_leaves_no_running_trial_and_its_params_are_retried_once(tmp_path, cli):
    search_spec(tmp_path, name="kill", epochs=30, sleep=0.2, n_trials=2, workers=1)
    launcher = start_cli(tmp_path, "launch", "spec.yaml", "--executor", "local")
    sweep = wait_for(
        lambda: (
            (tmp_path / "runs/kill/latest/sweep.json").exists() and (tmp_path / "runs/kill/latest").resolve()
        ),
        60,
        "sweep",
    )

    def running_status():
        for status_file in sweep.glob("*_t0/status.json"):
            status = json.loads(status_file.read_text())
            if status.get("epoch", 0) >= 3:
                return status
        return None

    status = wait_for(running_status, 120, "trial 0 at epoch 3")
    os.kill(status["pid"], signal.SIGKILL)
    launcher.communicate(timeout=120)
    assert launcher.returncode == 1  # the worker died

    overview = cli("status").stdout  # the overview reconciles: the lost trial failed, its retry waits
    assert "1/2 by 1 worker" in overview and "FAIL 1" in overview and "WAITING 1" in overview
    out = cli("status", "kill").stdout
    ledger, study = study_of(tmp_path, "kill")
    lost = study.get_trials()[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs["lost"] is True
    assert not study.get_trials(states=(TrialState.RUNNING,))
    retry = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert "retry of trial 0" in out
    lost_run = json.loads(status_file_of(sweep, "_t0").read_text())
    assert lost_run["state"] == "FAILED" and (lost_run["optuna_trial"], lost_run["optuna_state"]) == (
        0,
        "FAIL",
    )
    assert "#0 FAIL" in cli("-p", str(sweep), "--format", "markdown", command="analyze").stdout

    cli("retry", "kill")  # restarts the dead worker: it runs the retry and spends the rest of the budget
    trials = study_of(tmp_path, "kill")[1].get_trials()
    assert [t.state.name for t in trials][:2] == ["FAIL", "COMPLETE"] and len(trials) == 3
    assert trials[2].state in (
        TrialState.COMPLETE,
        TrialState.PRUNED,
    )  # the budget of 2 is spent, the lost trial aside
    assert trials[1].params == lost.params and trials[1].user_attrs["retry_of"] == 0
    assert not any(t.user_attrs.get("retry_of") == 1 for t in trials)


def status_file_of(sweep: Path, suffix: str) -> Path:
    (path,) = sweep.glob(f"*{suffix}/status.json")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dashboard_serves_the_study_and_its_learning_curves(tmp_path, cli):
    search_spec(tmp_path, name="dash", n_trials=2, workers=1, epochs=3)
    cli("launch", "spec.yaml", "--executor", "local")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli", "dashboard", "dash", "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def studies():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    return json.load(response)
            except OSError:
                return None

        summaries = wait_for(studies, 30, "optuna-dashboard")["study_summaries"]
        assert [s["study_name"].split("/")[0] for s in summaries] == ["dash"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{summaries[0]['study_id']}", timeout=5
        ) as r:
            detail = json.load(r)
        assert len(detail["trials"]) == 2
        first = detail["trials"][0]
        assert [v["step"] for v in first["intermediate_values"]] == [1, 2, 3]
        attrs = {a["key"]: a["value"] for a in first["user_attrs"]}
        assert {"run_dir", "job_id", "seeds"} <= set(attrs)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "  params: {lr: {type: float, low: 0, high: 1, log: true}}\n",
            "s.yaml:4: search.params.lr.log: a log scale needs low > 0",
        ),
        (
            "  params: {lr: [0.1]}\n  pruner: {name: median, n_warmup: 1}\n",
            "s.yaml:5: search.pruner.n_warmup: not an option of MedianPruner (did you mean 'n_warmup_steps'?)",
        ),
        (
            "  params: {lr: [0.1]}\n  sampler: tpee\n",
            "s.yaml:5: search.sampler.name: unknown sampler 'tpee' (did you mean 'tpe'?)",
        ),
        (
            "  params: {lr: [0.1]}\n  storage: sqlite:///study.db\n",
            "s.yaml:5: search.storage: SQLite breaks with parallel workers",
        ),
        (
            "  params: {lr: {type: float, low: 0.1, high: 0.2}}\n  sampler: grid\n",
            "s.yaml:4: search.params.lr: the grid sampler needs",
        ),
        ("  params: {}\n", "s.yaml:4: search.params: list at least one parameter"),
        (
            "  params: {lr: [0.1]}\n  pruner: {name: hyperband, reduction_factor: 1}\n",
            "s.yaml:5: search.pruner.reduction_factor: expected an integer >= 2, got 1",
        ),
        (
            "  params: {lr: [0.1]}\n  sampler: {name: tpe, n_startup_trials: 2.5}\n",
            "s.yaml:5: search.sampler.n_startup_trials: expected an integer >= 0, got 2.5",
        ),
    ],
)
def test_search_spec_errors(block, message):
    with pytest.raises(SpecError) as info:
        parse_spec("name: s\nbase: {epochs: 2}\nsearch:\n" + block, file="s.yaml")
    assert str(info.value).startswith(message), str(info.value)


def dry_run(tmp_path: Path, cli, base: str, search: str, seeds: str | None = None) -> str:
    """`launch --dry-run` of a search over lr with the curve entrypoint; its stdout (warnings included)."""
    write_spec(
        tmp_path,
        f"name: w\nentrypoint: jobfns:curve\nbase: {base}\n"
        + (f"seeds: {seeds}\n" if seeds else "")
        + "search:\n  params: {lr: {type: float, low: 1e-4, high: 1.0, log: true}}\n"
        + search,
    )
    return cli("launch", "spec.yaml", "--executor", "local", "--dry-run").stdout


@pytest.mark.parametrize(
    ("pruner", "startup", "warned"),
    [
        ("{name: hyperband, min_resource: 1}", 8, True),  # 4 brackets of about 18, 8, 4, 3 trials
        ("{name: hyperband, min_resource: 2, reduction_factor: 4}", 5, False),  # 2 brackets of about 21, 11
        ("{name: median}", 8, False),
    ],
)
def test_tpe_with_hyperband_brackets_too_small_to_learn_is_warned(tmp_path, cli, pruner, startup, warned):
    out = dry_run(
        tmp_path,
        cli,
        "{epochs: 15, lr: 0.01}",
        f"  sampler: {{name: tpe, n_startup_trials: {startup}}}\n  pruner: {pruner}\n  n_trials: 32\n",
        seeds="[0, 1]",
    )
    assert (
        "warning: Hyperband splits the 32 trials into 4 brackets (about 18, 8, 4, 3 trials)" in out
    ) is warned
    assert ("warning" in out) is warned
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("schedule", "pruner", "warning"),
    [
        (
            "{warmup_epochs: 2}",
            "{name: hyperband, min_resource: 2}",
            "hyperband pruner can stop trials at epoch 2",
        ),
        ("{warmup_epochs: 2}", "{name: hyperband, min_resource: 3}", None),
        ("{warmup_epochs: 1}", "{name: median}", "median pruner can stop trials at epoch 1"),
        ("{warmup_epochs: 2}", "{name: median, n_warmup_steps: 3}", None),
        ("{warmup_epochs: 0}", "{name: hyperband}", None),
    ],
)
def test_pruning_during_the_lr_warmup_is_warned(tmp_path, cli, schedule, pruner, warning):
    out = dry_run(
        tmp_path,
        cli,
        f"{{epochs: 15, lr: 0.01, schedule: {schedule}}}",
        f"  sampler: random\n  pruner: {pruner}\n  n_trials: 8\n",
    )
    if warning is None:
        assert "warning" not in out
    else:
        key = "min_resource" if "hyperband" in warning else "n_warmup_steps"
        assert f"warning: the {warning}, before the lr warmup is over" in out
        assert f"Set {key} above" in " ".join(out.split())


@pytest.mark.parametrize(
    ("pruner", "seeds", "warning"),
    [
        (
            "{name: hyperband, min_resource: 3, reduction_factor: 5, bootstrap_count: 2}",
            "[0, 1, 2]",
            "with about 23, 9 trials per bracket, a search completes no trial 13% of the time",
        ),
        ("{name: hyperband, min_resource: 3, reduction_factor: 4, bootstrap_count: 1}", "[0, 1, 2]", None),
        ("{name: hyperband, min_resource: 3, reduction_factor: 5}", "[0, 1, 2]", None),
        (
            "{name: successive_halving, min_resource: 1, reduction_factor: 2, bootstrap_count: 3}",
            "[0]",
            "with about 32 trials per bracket, a search completes no trial",
        ),
        ("{name: successive_halving, bootstrap_count: 3}", "[0]", None),  # min_resource auto: unknown
    ],
)
def test_a_bootstrap_that_can_leave_no_trial_completed_is_warned(tmp_path, cli, pruner, seeds, warning):
    search = f"  sampler: {{name: tpe, n_startup_trials: 5}}\n  pruner: {pruner}\n  n_trials: 32\n"
    out = " ".join(dry_run(tmp_path, cli, "{epochs: 15, lr: 0.01}", search, seeds=seeds).split())
    if warning is None:
        assert "warning" not in out
    else:
        assert "prunes the first" in out and warning in out, out


def test_search_cannot_mix_with_grid():
    with pytest.raises(SpecError, match="cannot be combined"):
        parse_spec(
            "name: s\nbase: {epochs: 2}\ngrid: {lr: [1]}\nsearch: {params: {lr: [0.1]}}\n", file="s.yaml"
        )


def test_conditional_parameters_and_grid_sampler(tmp_path):
    from sweeper.space import expand, suggest

    spec = parse_spec(
        """
name: c
base:
  model: {name: vit, patch_size: 4, layers: 1, d_model: 16, heads: 2}
  epochs: 1
search:
  params:
    model.layers: {type: int, low: 1, high: 2}
    model.heads: {type: categorical, choices: [2, 4], when: {model.layers: 2}}
  sampler: grid
""",
        file="s.yaml",
    )
    assert [t.trial_id for t in expand(spec)] == ["worker-0", "worker-1"]
    from sweeper.study import make_sampler
    from sweeper.tune_advice import search_budget

    study = optuna.create_study(sampler=make_sampler(spec, 0))
    seen = []
    for _ in range(search_budget(spec)):
        trial = study.ask()
        seen.append(suggest(trial, spec.search, spec.base))
        study.tell(trial, 0.0)
    assert search_budget(spec) == 4  # the product of the value lists (conditions do not shrink it)
    assert {"model.layers": 1} in seen and {"model.layers": 2, "model.heads": 4} in seen
    assert all("model.heads" not in p for p in seen if p["model.layers"] == 1)


def test_a_worker_that_ends_in_any_failure_state_fails_the_command(tmp_path, cli, capsys):
    """The launcher's verdict on an Optuna sweep counts every bad end of a worker, not a hand-kept list:
    NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE and REVOKED used to print nothing and exit 0."""
    import pytest

    from sweeper import cli as sweeper_cli
    from sweeper.kinds import of_ledger
    from sweeper.ledger import ended_event
    from sweeper.states import FAILURES, TrialState
    from sweeper.status import sweep_status

    search_spec(tmp_path, name="verdict", n_trials=2, workers=1, epochs=2)
    cli("launch", "spec.yaml", "--executor", "local")
    ledger, _study = study_of(tmp_path, "verdict")
    kind = of_ledger(ledger)
    assert kind.outcome(ledger, sweep_status(ledger), None).exit_code == 0
    worker = ledger.records()["worker-0"].latest
    for state in sorted(FAILURES):
        ledger.append(ended_event("worker-0", worker["job_id"], state, f"the worker ended {state}"))
        outcome = kind.outcome(ledger, sweep_status(ledger), None)
        assert outcome.failures == [("worker-0", f"the worker ended {state}")], state
        with pytest.raises(SystemExit) as exited:
            sweeper_cli.finish(outcome)
        assert exited.value.code == 1
        assert f"worker-0: the worker ended {state}" in capsys.readouterr().out
    assert {TrialState.NODE_FAIL, TrialState.PREEMPTED, TrialState.REVOKED} <= FAILURES


def test_a_seeded_search_is_the_same_search_at_every_launch(tmp_path, cli):
    # Hyperband puts each trial in a bracket. Optuna draws the bracket from the study's name, which holds the
    # launch time, so two launches of one seeded search pruned different trials; sweeper's follow the seed.
    searches = []
    for name in ("first", "second"):
        spec = search_spec(tmp_path, name=name, epochs=9, n_trials=12, workers=1)
        spec.write_text(
            spec.read_text()
            .replace("{name: random, seed: 0}", "{name: tpe, seed: 3}")
            .replace(
                "{name: median, n_startup_trials: 1, n_warmup_steps: 1}",
                "{name: hyperband, min_resource: 1, reduction_factor: 3}",
            )
        )
        cli("launch", spec.name, "--executor", "local")
        _, study = study_of(tmp_path, name)
        searches.append([(t.params, t.state, t.intermediate_values) for t in study.trials])
    assert searches[0] == searches[1]
    assert {state for _, state, _ in searches[0]} == {TrialState.COMPLETE, TrialState.PRUNED}
