"""Growing a sweep in place (`launch --into`), through the real CLI and submitit's local executor: only the
new trial ids run, the old run dirs are untouched, each growth is a revision, racing growths submit once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sweeper.ledger import Ledger
from tests.conftest import start_cli, tiny_spec, write_spec

GRID = "grid:\n  optim.weight_decay: {values}\nseeds: {seeds}\n"


def grid_spec(directory: Path, values: str, seeds: str, name: str = "spec.yaml", base: str = "") -> Path:
    path = tiny_spec(directory, GRID.format(values=values, seeds=seeds))
    text = path.read_text()
    if base:
        text = text.replace("lr: 3e-3", base)
    target = directory / name
    target.write_text(text)
    return target


def submitted(sweep: Path) -> list[str]:
    return sorted(e["trial_id"] for e in Ledger(sweep).events() if e["event"] == "submitted")


def parquet_bytes(sweep: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep.glob("*/metrics.parquet")}


@pytest.fixture
def grown_sweep(tmp_path, cli) -> Path:
    grid_spec(tmp_path, "[0.0, 0.1]", "[0]")
    cli("launch", "spec.yaml", "--executor", "local")
    return (tmp_path / "runs" / "tiny" / "latest").resolve()


def test_grow_by_a_grid_value_and_a_seed_runs_only_the_new_trials(tmp_path, cli, grown_sweep):
    sweep = grown_sweep
    before = parquet_bytes(sweep)
    old_ids = ["weight_decay=0-s0", "weight_decay=0.1-s0"]
    assert submitted(sweep) == old_ids and len(before) == 2
    grid_spec(tmp_path, "[0.0, 0.1, 0.05]", "[0, 1]", name="more.yaml")
    new_ids = ["weight_decay=0-s1", "weight_decay=0.05-s0", "weight_decay=0.05-s1", "weight_decay=0.1-s1"]

    dry = cli("launch", "more.yaml", "--into", "tiny", "--dry-run").stdout
    assert "new: 4: " in dry and "already in the sweep (never resubmitted): 2" in dry
    assert all(trial_id in dry for trial_id in new_ids)
    assert submitted(sweep) == old_ids and len(Ledger(sweep).trials()) == 2  # a dry run writes nothing
    plan = json.loads(cli("launch", "more.yaml", "--into", "tiny", "--dry-run", "--format", "json").stdout)
    assert sorted(plan["new"]) == new_ids and sorted(plan["existing"]) == old_ids
    assert sorted(t["trial_id"] for t in plan["trials"]) == new_ids

    out = cli("launch", "more.yaml", "--into", "tiny").stdout
    assert "revision 2 adds 4 trial(s)" in out and "COMPLETED 4" in out
    assert submitted(sweep) == sorted(old_ids + new_ids)  # each trial exactly once
    after = parquet_bytes(sweep)
    assert {k: after[k] for k in before} == before  # old run dirs untouched, byte for byte
    assert len(after) == 6

    again = cli("launch", "more.yaml", "--into", str(sweep)).stdout
    assert "nothing new to submit" in again
    assert submitted(sweep) == sorted(old_ids + new_ids) and len(Ledger(sweep).revisions()) == 2

    report = json.loads(cli(str(sweep), "--no-group", "--format", "json", command="analyze").stdout)
    assert sorted(r["trial_id"] for r in report["runs"]) == sorted(old_ids + new_ids)
    assert "0.05" in json.dumps(report["effects"])  # the new grid value is in the effects

    status = json.loads(cli("status", str(sweep), "--format", "json").stdout)
    revision = {t["trial_id"]: t["revision"] for t in status["trials"]}
    assert revision == {**dict.fromkeys(old_ids, 1), **dict.fromkeys(new_ids, 2)}
    table = cli("status", str(sweep)).stdout
    assert " rev " in table.splitlines()[1] or "rev" in table

    provenance = cli(str(sweep), "--provenance", command="analyze").stdout
    assert "revisions of the sweep" in provenance and "4 added: weight_decay=0-s1" in provenance
    revisions = Ledger(sweep).revisions()
    assert [r["kind"] for r in revisions] == ["launch", "grow"]
    assert sorted(revisions[1]["added"]) == new_ids and "--into" in revisions[1]["command"]
    assert (sweep / revisions[1]["spec"]).is_file() and "git_commit" in revisions[1]

    # the spec no longer lists wd=0.1: kept, said so, nothing submitted
    grid_spec(tmp_path, "[0.0]", "[0]", name="less.yaml")
    dry = cli("launch", "less.yaml", "--into", "tiny", "--dry-run").stdout
    assert "no longer listed by the spec (kept): 5" in dry and "new: 0" in dry


def test_a_base_change_is_refused_with_its_keys_unless_allowed(tmp_path, cli, grown_sweep):
    sweep = grown_sweep
    grid_spec(tmp_path, "[0.0, 0.1, 0.2]", "[0]", name="lr.yaml", base="lr: 1e-3")
    files = {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()}
    refused = cli("launch", "lr.yaml", "--into", "tiny", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "lr.yaml:" in message and "base: differs from the base of" in message
    assert "optim.lr 0.003 -> 0.001" in message and "--allow-base-change" in message
    assert {p.name: p.read_bytes() for p in sweep.iterdir() if p.is_file()} == files  # nothing written

    out = cli("launch", "lr.yaml", "--into", "tiny", "--allow-base-change").stdout
    assert "revision 2 adds 1 trial(s)" in out and "COMPLETED 1" in out
    revision = Ledger(sweep).revisions()[-1]
    assert revision["base_changes"] == [{"key": "optim.lr", "old": 0.003, "new": 0.001}]
    assert revision["added"] == ["weight_decay=0.2-s0"]
    provenance = cli(str(sweep), "--provenance", command="analyze").stdout
    assert "optim.lr 0.003 -> 0.001" in " ".join(provenance.split())


def test_two_growths_at_once_submit_each_new_trial_once(tmp_path, cli, grown_sweep):
    sweep = grown_sweep
    grid_spec(tmp_path, "[0.0, 0.1]", "[0, 1]", name="seeds.yaml")
    racers = [start_cli(tmp_path, "launch", "seeds.yaml", "--into", "tiny") for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in racers]
    assert all(p.returncode == 0 for p in racers), outputs
    assert submitted(sweep) == [
        "weight_decay=0-s0",
        "weight_decay=0-s1",
        "weight_decay=0.1-s0",
        "weight_decay=0.1-s1",
    ]
    assert [r["kind"] for r in Ledger(sweep).revisions()] == ["launch", "grow"]
    assert sum("nothing new to submit" in out for out, _err in outputs) == 1
    assert len(Ledger(sweep).trials()) == 4


def test_grow_refuses_an_unknown_sweep_and_a_search(tmp_path, cli, grown_sweep):
    grid_spec(tmp_path, "[0.0]", "[0]", name="x.yaml")
    missing = cli("launch", "x.yaml", "--into", "nope", check=False)
    assert missing.returncode == 1 and "no sweep 'nope'" in missing.stderr
    alone = cli("launch", "x.yaml", "--allow-base-change", check=False)
    assert alone.returncode == 1 and "only with --into" in alone.stderr


@pytest.mark.slurm
def test_grow_on_slurm_submits_a_new_array_of_the_new_trials_only(tmp_path, cli):
    body = """
        name: growslurm
        entrypoint: jobfns:slow_counter
        base: {{epochs: 2, sleep: 0.0}}
        grid: {{lr: {lrs}}}
        seeds: {seeds}
        launch: {{profile: local, parallelism: 2}}
        """
    write_spec(tmp_path, body.format(lrs="[1]", seeds="[0]"))
    try:
        assert "COMPLETED 1" in cli("launch", "spec.yaml", "--wait").stdout
        sweep = (tmp_path / "runs" / "growslurm" / "latest").resolve()
        before = parquet_bytes(sweep)
        first_job = Ledger(sweep).records()["lr=1-s0"].latest["job_id"]
        write_spec(tmp_path, body.format(lrs="[1, 2]", seeds="[0, 1]"), name="more.yaml")
        out = cli("launch", "more.yaml", "--into", "growslurm", "--wait").stdout
        assert "revision 2 adds 3 trial(s) on slurm" in out and "COMPLETED 3" in out
        assert submitted(sweep) == ["lr=1-s0", "lr=1-s1", "lr=2-s0", "lr=2-s1"]
        records = Ledger(sweep).records()
        arrays = {records[t].latest["job_id"].split("_")[0] for t in ("lr=1-s1", "lr=2-s0", "lr=2-s1")}
        assert len(arrays) == 1 and arrays != {first_job.split("_")[0]}  # one new array
        assert {k: v for k, v in parquet_bytes(sweep).items() if k in before} == before
        assert "nothing new to submit" in cli("launch", "more.yaml", "--into", "growslurm").stdout
    finally:
        job_ids = {
            json.loads(line)["job_id"].split("_")[0]
            for attempts in (tmp_path / "runs").glob("*/*/attempts.jsonl")
            for line in attempts.read_text().splitlines()
            if json.loads(line).get("job_id")
        }
        if job_ids:  # a failing test leaves nothing running on the shared cluster
            subprocess.run(["scancel", *sorted(job_ids)], capture_output=True)


SEARCH = """
    name: opt
    entrypoint: jobfns:curve
    base: {{epochs: 2, lr: 0.01, dropout: 0.0, sleep: 0.0}}
    search:
      params:
        lr: {lr}
        dropout: {{type: float, low: 0.0, high: 0.5}}
      sampler: {{name: tpe, seed: 0, n_startup_trials: 2}}
      pruner: {{name: none}}
      n_trials: 4
      workers: 2
    launch: {{executor: local}}
"""
LR = "{type: float, low: 1e-3, high: 0.1, log: true}"


def test_grow_an_optuna_search_by_its_budget_in_the_same_study(tmp_path, cli):
    import optuna

    from sweeper.study import load_study

    write_spec(tmp_path, SEARCH.format(lr=LR))
    cli("launch", "spec.yaml")
    sweep = (tmp_path / "runs" / "opt" / "latest").resolve()
    write_spec(tmp_path, SEARCH.format(lr="{type: float, low: 1e-4, high: 0.1, log: true}"), name="wide.yaml")
    out = cli("launch", "wide.yaml", "--into", "opt", "--trials", "7").stdout
    assert "revision 2 adds 2 trial(s)" in out and "worker-2, worker-3" in out
    ledger = Ledger(sweep)
    study = load_study(ledger, ledger.launched_spec())
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(7))  # numbers go on, the budget is exact
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["worker"] for t in trials if t.number >= 4} <= {2, 3}  # the new workers
    assert {t.user_attrs["worker"] for t in trials if t.number < 4} <= {0, 1}
    # one study holds them all, so the new workers' TPE sampled with every earlier trial; the new trials
    # were asked in the widened space, the earlier ones keep theirs
    assert {t.distributions["lr"].low for t in trials if t.number >= 4} == {1e-4}
    assert {t.distributions["lr"].low for t in trials if t.number < 4} == {1e-3}
    revision = ledger.revisions()[-1]
    assert {"key": "search.n_trials", "old": 4, "new": 7} in revision["base_changes"]
    assert "nothing new to submit" in cli("launch", "wide.yaml", "--into", "opt", "--trials", "7").stdout

    write_spec(tmp_path, SEARCH.format(lr="{type: int, low: 1, high: 3}"), name="int.yaml")
    refused = cli("launch", "int.yaml", "--into", "opt", "--trials", "9", check=False)
    assert refused.returncode == 1 and "search.params.lr: was float log, now int" in refused.stderr
    write_spec(
        tmp_path, SEARCH.format(lr="{type: float, low: 1e-2, high: 0.1, log: true}"), name="narrow.yaml"
    )
    refused = cli("launch", "narrow.yaml", "--into", "opt", "--trials", "9", check=False)
    assert refused.returncode == 1 and "may only widen" in refused.stderr
    assert len(Ledger(sweep).revisions()) == 2


def test_the_ledger_version_changes_with_every_write_records_would_see(tmp_path, cli, grown_sweep):
    # status reuses the records it read before asking the scheduler when the version is unchanged
    ledger = Ledger(grown_sweep)
    before = ledger.version()
    assert Ledger(grown_sweep).version() == before  # reading changes nothing
    ledger.append({"event": "note", "trial_id": "x"})
    appended = ledger.version()
    assert appended != before
    grid_spec(tmp_path, "[0.0, 0.1, 0.2]", "[0]")
    cli("launch", "spec.yaml", "--executor", "local", "--into", "tiny")
    assert ledger.version() != appended  # a growth: new trials and a revision
