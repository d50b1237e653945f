"""Mistakes caught at launch (or at the first epoch that shows them), not in every job of an array: an
objective nobody logs, a misspelled or broken entrypoint, `--set` on a swept key, a metric whose direction
nobody knows, a grid too large to expand, and typos in --state / --filter."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from sweeper.errors import SpecError
from sweeper.objective import known_direction
from sweeper.spec import load_spec
from tests.conftest import REPO, tiny_spec, write_spec
from tests.test_analysis import make_run, private_cache  # noqa: F401 (autouse fixture)


def one_error_line(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- the objective -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "objective, expected",
    [
        (
            "valid/auroc",
            "spec.yaml:11: objective.metric: 'valid/auroc' is never logged by the built-in trainer for this "
            "config (it logs train/loss, train/acc, valid/loss, valid/acc); add it with "
            "`eval: {metrics: [auroc]}` in base",
        ),
        ("valid/mse", "spec.yaml:11: objective.metric: 'valid/mse' is never logged by the built-in trainer"),
    ],
)
def test_an_objective_the_trainer_never_logs_is_refused_at_launch(tmp_path, cli, objective, expected):
    tiny_spec(tmp_path, f"grid: {{optim.lr: [1e-3, 3e-3]}}\nobjective: {{metric: {objective}}}\n", name="obj")
    for args in (["--dry-run"], []):
        line = one_error_line(cli("launch", "spec.yaml", "--executor", "local", *args, check=False))
        assert line == f"error: {expected}" or line.startswith(f"error: {expected}")
    assert "did you mean 'valid/loss'" in line or objective == "valid/auroc"
    assert not (tmp_path / "runs").exists()
    # logged once asked for: accepted
    cli(
        "launch",
        "spec.yaml",
        "--dry-run",
        "--set",
        "eval.metrics=[auroc]",
        "--set",
        "objective.metric=valid/auroc",
    )


def test_a_user_function_logging_other_names_fails_at_the_first_epoch_and_keeps_it(tmp_path, cli):
    """jobfns.slow_counter logs valid/loss and valid/acc; the objective says valid/auroc: the job fails after
    epoch 1 (not after all 4), and epoch 1's row is in metrics.parquet."""
    tiny_spec(
        tmp_path,
        """
        entrypoint: jobfns:slow_counter
        configs: {a: {epochs: 4, sleep: 0.0}}
        objective: {metric: valid/auroc}
        """,
        name="named",
    )
    result = cli("launch", "spec.yaml", "--executor", "local", check=False)
    assert result.returncode == 1
    message = (
        "the objective valid/auroc is not among the valid/ metrics logged at epoch 1 (valid/acc, valid/loss)"
    )
    assert message in result.stdout + result.stderr
    (run_dir,) = (tmp_path / "runs" / "named" / "latest").glob("*_j*")
    assert pq.read_table(run_dir / "metrics.parquet").column("epoch").to_pylist() == [1]
    status = json.loads(cli("status", "named", "--format", "json", check=False).stdout)
    (trial,) = status["trials"]
    assert trial["state"] == "FAILED" and message in trial["error"]


# -- entrypoints ----------------------------------------------------------------------------------------------
def entrypoint_spec(tmp_path, entrypoint: str) -> None:
    tiny_spec(tmp_path, f"entrypoint: {entrypoint}\nconfigs: {{a: {{}}}}\n", name="ep")


def test_a_misspelled_function_is_refused_with_a_did_you_mean(tmp_path, cli):
    entrypoint_spec(tmp_path, "jobfns:slow_countr")
    for args in (["--dry-run"], []):
        line = one_error_line(cli("launch", "spec.yaml", "--executor", "local", *args, check=False))
        assert line.startswith("error: spec.yaml:10: entrypoint: ")
        assert line.endswith("jobfns.py defines no 'slow_countr' (did you mean 'slow_counter'?)")
    assert not (tmp_path / "runs").exists()


def test_a_module_that_does_not_parse_is_refused_with_its_file_and_line(tmp_path, cli):
    (tmp_path / "broken.py").write_text("def train(config, run):\n    x = (1,\n    return x\n")
    entrypoint_spec(tmp_path, "broken:train")
    line = one_error_line(cli("launch", "spec.yaml", "--executor", "local", check=False))
    assert line.startswith(
        f"error: spec.yaml:10: entrypoint: broken does not parse: {tmp_path}/broken.py:2: "
    )
    assert not (tmp_path / "runs").exists()


def test_a_module_that_raises_while_importing_is_refused_at_launch(tmp_path, cli):
    """It parses and defines the function, so only importing it tells: done once, in a subprocess."""
    (tmp_path / "needs.py").write_text(
        "import os\nimport no_such_package_here\n\ndef train(config, run):\n    pass\n"
    )
    entrypoint_spec(tmp_path, "needs:train")
    for args in (["--dry-run"], []):
        line = one_error_line(cli("launch", "spec.yaml", "--executor", "local", *args, check=False))
        assert line == (
            f"error: spec.yaml:10: entrypoint: importing needs raised {tmp_path}/needs.py:2: "
            "ModuleNotFoundError: No module named 'no_such_package_here'"
        )
    assert not (tmp_path / "runs").exists()


# -- --set ----------------------------------------------------------------------------------------------------
def test_set_on_a_swept_key_is_refused_and_says_how_to_change_it(tmp_path, cli):
    tiny_spec(tmp_path, "configs: {a: {optim.weight_decay: 0.0}}\ngrid: {optim.lr: [1e-3, 3e-3]}\n", name="s")
    line = one_error_line(cli("launch", "spec.yaml", "--dry-run", "--set", "optim.lr=banana", check=False))
    assert line == (
        "error: --set: optim.lr: is swept (grid at spec.yaml:11): every trial sets its own value, so this "
        "--set would change nothing; change the swept values instead, e.g. --set 'grid.optim.lr=[...]'"
    )
    line = one_error_line(
        cli("launch", "spec.yaml", "--dry-run", "--set", "optim.weight_decay=0.1", check=False)
    )
    assert "optim.weight_decay: is swept (configs.a at spec.yaml:10)" in line
    assert "--set configs.a.optim.weight_decay=..." in line
    # the way it says works: the grid changes
    plan = json.loads(
        cli("launch", "spec.yaml", "--dry-run", "--format", "json", "--set", "grid.optim.lr=[0.01]").stdout
    )
    assert [t["params"]["optim.lr"] for t in plan["trials"]] == [0.01]
    # an unswept key still applies to every trial
    plan = json.loads(cli("launch", "spec.yaml", "--dry-run", "--format", "json", "--set", "epochs=3").stdout)
    assert {t["config"]["epochs"] for t in plan["trials"]} == {3}


def test_set_reaches_a_search_parameter_whose_name_has_dots(tmp_path):
    spec = load_spec(
        REPO / "sweeps" / "search.yaml",
        ["search.params.optim.lr.high=0.01", "search.params.model.d_model=[16, 32]"],
    )
    assert spec.search.params["optim.lr"].high == 0.01 and spec.search.params["optim.lr"].low == 1e-3
    assert spec.search.params["model.d_model"].choices == [16, 32]
    assert set(spec.search.params) == {
        "optim.lr",
        "optim.weight_decay",
        "model.dropout",
        "model.layers",
        "model.d_model",
    }
    with pytest.raises(SpecError, match=r"optim.lr: is swept \(search.params at .*search.yaml:21\)"):
        load_spec(REPO / "sweeps" / "search.yaml", ["optim.lr=0.1"])


# -- direction ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "metric, direction",
    [
        ("valid/loss", "minimize"),
        ("valid/err", "minimize"),
        ("valid/error_rate", "minimize"),
        ("mse", "minimize"),
        ("valid/mae", "minimize"),
        ("valid/rmse", "minimize"),
        ("test/perplexity", "minimize"),
        ("valid/ppl", "minimize"),
        ("wer", "minimize"),
        ("valid/cer", "minimize"),
        ("valid/nll", "minimize"),
        ("valid/acc", "maximize"),
        ("valid/knn_acc", "maximize"),
        ("valid/auroc", "maximize"),
        ("valid/f1", "maximize"),
        ("valid/bleu", "maximize"),
        ("retention@100", "maximize"),
        ("valid/h0", None),
        ("valid/widgets", None),
    ],
)
def test_direction_by_name(metric, direction):
    assert known_direction(metric) == direction


def test_an_objective_of_unknown_direction_is_warned_about_at_launch(tmp_path, cli):
    tiny_spec(
        tmp_path,
        "entrypoint: jobfns:slow_counter\nconfigs: {a: {}}\nobjective: {metric: valid/h0}\n",
        name="dir",
    )
    plan = json.loads(cli("launch", "spec.yaml", "--dry-run", "--format", "json").stdout)
    assert plan["warnings"] == [
        "objective 'valid/h0': its name does not say which way is better, so it is maximized; "
        "give `objective: {direction: minimize}` if lower is better"
    ]
    shown = cli("launch", "spec.yaml", "--dry-run").stdout
    assert "warning: objective 'valid/h0': its name does not say" in shown
    plan = json.loads(
        cli(
            "launch", "spec.yaml", "--dry-run", "--format", "json", "--set", "objective.direction=minimize"
        ).stdout
    )
    assert plan["warnings"] == []


def test_analyze_direction_chooses_which_way_is_better(tmp_path, cli):
    for name, h0 in (("low", [0.5, 0.2]), ("high", [0.5, 0.9])):
        make_run(tmp_path / "sweep" / name, valid_acc=[0.1, 0.2], extra={"valid/h0": h0}, name=name)
    best = {}
    for direction in ("maximize", "minimize"):
        out = cli(
            "analyze", "sweep", "--metric", "valid/h0", "--direction", direction, "--format", "json"
        ).stdout
        document = json.loads(out)
        assert document["objective"]["direction"] == direction
        best[direction] = document["best"]["name"]
    assert best == {"maximize": "high", "minimize": "low"}


# -- size and shape -------------------------------------------------------------------------------------------
def test_a_grid_too_large_is_refused_before_asking_to_confirm(tmp_path, cli):
    grid = "\n".join(f"  k{i}: [{', '.join(str(v) for v in range(10))}]" for i in range(10))
    write_spec(tmp_path, f"name: huge\nentrypoint: jobfns:slow_counter\nbase: {{epochs: 1}}\ngrid:\n{grid}\n")
    line = one_error_line(cli("launch", "spec.yaml", "--executor", "local", check=False))
    assert line == (
        "error: spec.yaml: the sweep has 10,000,000,000 trials, more than 1,000,000: use `search:` (Optuna) "
        "to sample a space this large"
    )
    assert "--yes" not in line


def test_a_sweep_of_seeds_only_runs_each_seed(tmp_path, cli):
    write_spec(
        tmp_path,
        "name: seeds\nentrypoint: jobfns:slow_counter\nbase: {epochs: 2, sleep: 0.0}\nseeds: [0, 1]\n",
    )
    cli("launch", "spec.yaml", "--executor", "local")
    status = json.loads(cli("status", "seeds", "--format", "json").stdout)
    assert sorted((t["trial_id"], t["state"]) for t in status["trials"]) == [
        ("base-s0", "COMPLETED"),
        ("base-s1", "COMPLETED"),
    ]
    (row,) = json.loads(cli("analyze", "seeds", "--format", "json").stdout)["rows"]
    assert row["name"] == "base" and row["n"] == 2


# -- typos that used to match nothing -------------------------------------------------------------------------
def test_unknown_states_are_errors_with_a_did_you_mean(tmp_path, cli):
    tiny_spec(tmp_path, "entrypoint: jobfns:slow_counter\nconfigs: {a: {epochs: 1, sleep: 0.0}}\n", name="st")
    cli("launch", "spec.yaml", "--executor", "local")
    for command in ("status", "retry"):
        line = one_error_line(cli(command, "st", "--state", "FIALED", check=False))
        assert line.startswith("error: --state FIALED: no such state (did you mean FAILED?); the states are ")
    assert "COMPLETED" in cli("status", "st", "--state", "completed").stdout


@pytest.mark.parametrize(
    "text, expected",
    [
        ("variant>>3", "error: --filter 'variant>>3': '>>' is not an operator (did you mean '>'?)"),
        ("best_valid_acc=>0.5", "error: --filter 'best_valid_acc=>0.5': '=>' is not an operator"),
        (
            "best_valid_acc>high",
            "error: --filter 'best_valid_acc>high': best_valid_acc is a number, 'high' is not",
        ),
        ("variant", "error: --filter 'variant': expected KEY OP VALUE"),
    ],
)
def test_malformed_filters_are_errors(tmp_path, cli, text, expected):
    make_run(tmp_path / "sweep" / "r1", valid_acc=[0.1, 0.2], params={"variant": 3}, name="r1")
    line = one_error_line(cli("analyze", "sweep", "--filter", text, check=False))
    assert line.startswith(expected), line
