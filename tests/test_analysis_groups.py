"""Seed groups, parameter effects and pivots, filters, sorting and comparisons on hand-built runs."""

from __future__ import annotations

import statistics

import pytest

from sweeper.analysis import ReportOptions, build_report
from sweeper.analysis.query import MISSING, lookup, parse_condition, parse_literal
from sweeper.errors import SweeperError
from tests.test_analysis import make_run, make_sweep, private_cache  # noqa: F401 (autouse fixture)

WD, DROP = "optim.weight_decay", "model.dropout"


def grid_sweep(root, values, seeds=(0, 1), states=None):
    """A 2x2 weight decay x dropout sweep; values[(wd, drop)] = best valid acc per seed (reached at epoch 2)."""
    sweep = make_sweep(root, swept=[WD, DROP])
    job = 0
    for (wd, drop), accs in values.items():
        for seed, acc in zip(seeds, accs, strict=True):
            job += 1
            name = f"wd={wd},drop={drop}"
            make_run(
                sweep / f"20250101_0000{job:02d}_j{job}",
                valid_loss=[1.0, 1 - acc, 1.1 - acc],
                valid_acc=[0.1, acc, acc - 0.05],
                train_acc=[0.2, acc + 0.1, acc + 0.05],
                params={WD: wd, DROP: drop},
                name=name,
                seed=seed,
                state=(states or {}).get((name, seed), "COMPLETED"),
            )
    return sweep


VALUES = {
    (0.0, 0.0): [0.80, 0.90],
    (0.0, 0.1): [0.70, 0.74],
    (0.1, 0.0): [0.60, 0.62],
    (0.1, 0.1): [0.95, 0.85],
}


def test_seed_groups_mean_std_and_n(tmp_path):
    sweep = grid_sweep(tmp_path / "s", VALUES)
    report = build_report([str(sweep)], ReportOptions())
    assert report.grouped and report.total_rows == 4 and len(report.runs) == 8
    by_name = {g.name: g for g in report.rows}
    group = by_name["wd=0.1,drop=0.1"]
    assert group.n == 2 and group.seeds == [0, 1]
    stat = group.stat("best_acc")
    assert stat.mean == pytest.approx(0.90) and stat.std == pytest.approx(statistics.stdev([0.95, 0.85]))
    assert stat.n == 2
    assert group.stat("best_acc_epoch").mean == 2 and group.stat("best_acc_epoch").std == 0.0
    gap = group.stat("gap_at_best")
    assert gap.mean == pytest.approx(0.1) and gap.std == pytest.approx(0.0, abs=1e-12)
    assert (
        group.stat("still_improving").mean == 0.0
    )  # best loss at 2 of 3, but it rose at epoch 3: not improving
    # rows sorted by the objective (mean best valid acc), best first
    assert [g.name for g in report.rows] == [
        "wd=0.1,drop=0.1",
        "wd=0.0,drop=0.0",
        "wd=0.0,drop=0.1",
        "wd=0.1,drop=0.0",
    ]
    assert report.best.name == "wd=0.1,drop=0.1"


def test_no_group_and_single_seed_rows_are_runs(tmp_path):
    sweep = grid_sweep(tmp_path / "s", VALUES)
    report = build_report([str(sweep)], ReportOptions(group=False))
    assert not report.grouped and len(report.rows) == 8 and all(g.n == 1 for g in report.rows)
    assert report.rows[0].stat("best_acc").mean == 0.95 and report.rows[0].stat("best_acc").std is None
    single = grid_sweep(tmp_path / "one", {k: v[:1] for k, v in VALUES.items()}, seeds=(0,))
    assert not build_report([str(single)], ReportOptions()).grouped  # nothing to group: plain runs


def test_pivot_on_a_2x2_grid_and_effect_lines(tmp_path):
    sweep = grid_sweep(tmp_path / "s", VALUES)
    effects = build_report([str(sweep)], ReportOptions()).effects
    assert effects.runs_used == 8 and effects.runs_left_out == 0
    (pivot,) = effects.pivots
    assert (pivot.row_key, pivot.col_key) == (WD, DROP)
    assert pivot.row_values == [0.0, 0.1] and pivot.col_values == [0.0, 0.1]
    means = {cell: round(stat.mean, 6) for cell, stat in pivot.cells.items()}
    assert means == {(0, 0): 0.85, (0, 1): 0.72, (1, 0): 0.61, (1, 1): 0.9}
    assert all(stat.n == 2 for stat in pivot.cells.values())
    assert pivot.best == (1, 1)
    wd, drop = effects.params
    assert wd.key == WD and [round(level.stat.mean, 6) for level in wd.levels] == [0.785, 0.755]
    assert wd.best.value == 0.0
    assert drop.key == DROP and [round(level.stat.mean, 6) for level in drop.levels] == [0.73, 0.81]
    assert drop.best.value == 0.1


def test_effects_leave_unfinished_runs_out(tmp_path):
    states = {("wd=0.1,drop=0.1", 1): "RUNNING", ("wd=0.0,drop=0.0", 0): "FAILED"}
    sweep = grid_sweep(tmp_path / "s", VALUES, states=states)
    effects = build_report([str(sweep)], ReportOptions()).effects
    assert effects.runs_used == 6 and effects.runs_left_out == 2
    pivot = effects.pivots[0]
    assert pivot.cells[(1, 1)].mean == pytest.approx(0.95) and pivot.cells[(1, 1)].n == 1
    assert pivot.cells[(0, 0)].mean == pytest.approx(0.90)


def test_group_numbers_come_from_finished_seeds_when_there_are_any(tmp_path):
    states = {
        ("wd=0.1,drop=0.1", 1): "FAILED",
        ("wd=0.0,drop=0.1", 0): "RUNNING",
        ("wd=0.0,drop=0.1", 1): "FAILED",
    }
    sweep = grid_sweep(tmp_path / "s", VALUES, states=states)
    by_name = {g.name: g for g in build_report([str(sweep)], ReportOptions()).rows}
    partly = by_name["wd=0.1,drop=0.1"]  # seed 0 finished at 0.95, seed 1 failed at 0.85: 0.95 alone
    assert partly.n == 2 and partly.states == {"COMPLETED": 1, "FAILED": 1}
    assert partly.stat("best_acc").mean == pytest.approx(0.95) and partly.stat("best_acc").n == 1
    unfinished = by_name["wd=0.0,drop=0.1"]  # nothing finished: both runs count
    assert unfinished.stat("best_acc").mean == pytest.approx(0.72) and unfinished.stat("best_acc").n == 2
    assert by_name["wd=0.0,drop=0.0"].stat("best_acc").mean == pytest.approx(0.85)  # all finished: both


def test_minimized_objective_picks_the_lowest(tmp_path):
    sweep = grid_sweep(tmp_path / "s", VALUES)
    report = build_report([str(sweep)], ReportOptions(metric="valid/loss"))
    assert not report.objective.maximize
    assert report.rows[0].name == "wd=0.1,drop=0.1"  # lowest mean best valid loss = highest acc here
    assert report.effects.pivots[0].best == (1, 1)


def test_filters(tmp_path):
    sweep = grid_sweep(tmp_path / "s", VALUES)

    def names(*filters):
        report = build_report([str(sweep)], ReportOptions(filters=filters, group=False))
        return sorted({(r.name, r.seed) for r in report.runs})

    assert names("optim.weight_decay==0.1", "dropout=0") == [("wd=0.1,drop=0.0", 0), ("wd=0.1,drop=0.0", 1)]
    assert names("best_valid_acc>=0.9") == [("wd=0.0,drop=0.0", 1), ("wd=0.1,drop=0.1", 0)]
    assert names("model.layers==2", "seed!=0", "best_acc<0.7") == [("wd=0.1,drop=0.0", 1)]  # config key
    assert names("state=='COMPLETED'", "name==wd=0.0,drop=0.1") == [
        ("wd=0.0,drop=0.1", 0),
        ("wd=0.0,drop=0.1", 1),
    ]
    assert names("model.layers>5") == []
    with pytest.raises(SweeperError, match="did you mean 'model.layers'"):
        names("model.layrs==6")
    with pytest.raises(SweeperError, match="expected KEY OP VALUE"):
        names("model.layers")
    with pytest.raises(SweeperError, match="expected KEY OP VALUE"):
        names("__import__('os').system('true')")


def test_filter_grammar_is_literal_only():
    assert parse_literal("6") == 6 and parse_literal("1e-3") == 0.001 and parse_literal("-0.5") == -0.5
    assert parse_literal("true") is True and parse_literal("None") is None
    assert parse_literal("'6'") == "6" and parse_literal("mhc") == "mhc"
    condition = parse_condition(" model.residual != 'mhc' ")
    assert (condition.key, condition.op, condition.value) == ("model.residual", "!=", "mhc")
    assert parse_condition("a<=3").holds(3) and not parse_condition("a<3").holds(3)
    assert not parse_condition("a<3").holds("text")  # no order between text and numbers: no match
    assert parse_condition("a!=3").holds(MISSING) and not parse_condition("a==3").holds(MISSING)


def test_sort_and_top(tmp_path):
    sweep = grid_sweep(tmp_path / "s", VALUES)
    by_loss = build_report([str(sweep)], ReportOptions(sort="best_valid_loss", top=2))
    assert [g.name for g in by_loss.rows] == ["wd=0.1,drop=0.1", "wd=0.0,drop=0.0"]  # smaller is better
    assert by_loss.total_rows == 4
    reverse = build_report([str(sweep)], ReportOptions(sort="best_valid_loss:desc", top=1))
    assert [g.name for g in reverse.rows] == ["wd=0.1,drop=0.0"]
    by_param = build_report([str(sweep)], ReportOptions(sort="dropout:desc", group=False))
    assert [r.first.params[DROP] for r in by_param.rows][:4] == [0.1] * 4
    with pytest.raises(SweeperError, match="did you mean 'best_valid_acc'"):
        build_report([str(sweep)], ReportOptions(sort="best_valid_ac"))


def test_compare_two_paths(tmp_path):
    regular = grid_sweep(tmp_path / "regular", VALUES)
    better = grid_sweep(tmp_path / "mhc", {k: [v[0] + 0.02, v[1] + 0.02] for k, v in VALUES.items()})
    report = build_report([str(regular), str(better)], ReportOptions())
    comparison = report.comparison
    assert comparison.labels == [str(regular), str(better)]
    rows = {row.label: row for row in comparison.rows}
    assert set(rows) == {*(f"wd={wd},drop={d}" for wd, d in VALUES), "all runs", "best run"}
    row = rows["wd=0.0,drop=0.0"]
    assert row.cells[0]["objective"].mean == pytest.approx(0.85) and row.cells[0]["objective"].n == 2
    assert row.cells[1]["objective"].mean - row.cells[0]["objective"].mean == pytest.approx(0.02)
    assert rows["best run"].cells[1]["objective"].mean == pytest.approx(0.97)
    assert len(report.runs) == 16


def test_compare_by_a_config_key(tmp_path):
    sweep = make_sweep(tmp_path / "s", swept=[WD, "model.residual"])
    job = 0
    for residual, bonus in (("regular", 0.0), ("mhc", 0.05)):
        for wd in (0.0, 0.1):
            for seed in (0, 1):
                job += 1
                make_run(
                    sweep / f"r{job:02d}",
                    valid_loss=[0.5],
                    valid_acc=[0.7 + wd + bonus + seed / 100],
                    params={WD: wd, "model.residual": residual},
                    config={"model": {"residual": residual, "layers": 2}},
                    name=f"{residual}-wd{wd}",
                    seed=seed,
                )
    report = build_report([str(sweep)], ReportOptions(compare_by="model.residual"))
    comparison = report.comparison
    assert comparison.labels == ["residual=mhc", "residual=regular"]  # values in order
    rows = {row.label: row for row in comparison.rows}
    assert set(rows) == {"weight_decay=0", "weight_decay=0.1", "all runs", "best run"}
    cells = rows["weight_decay=0.1"].cells
    assert cells[0]["objective"].mean == pytest.approx(0.855) and cells[1]["objective"].mean == pytest.approx(
        0.805
    )
    with pytest.raises(SweeperError, match="every run has the same value"):
        build_report([str(sweep)], ReportOptions(compare_by="model.layers"))
    with pytest.raises(SweeperError, match="no run has this key"):
        build_report([str(sweep)], ReportOptions(compare_by="model.nope"))


def test_retried_attempts_count_once(tmp_path):
    sweep = make_sweep(tmp_path / "s", swept=[WD])
    make_run(
        sweep / "20250101_000001_j1",
        valid_loss=[0.9],
        valid_acc=[0.2],
        params={WD: 0.1},
        name="a",
        state="FAILED",
    )
    make_run(sweep / "20250101_000502_j7", valid_loss=[0.5], valid_acc=[0.8], params={WD: 0.1}, name="a")
    report = build_report([str(sweep)], ReportOptions())
    assert report.superseded == 1 and len(report.runs) == 1 and report.runs[0].best_acc == 0.8
    assert any("earlier attempt" in note for note in report.notes)


def test_lookup_order(tmp_path):
    sweep = grid_sweep(tmp_path / "s", {(0.0, 0.1): [0.8]}, seeds=(3,))
    (run,) = build_report([str(sweep)], ReportOptions()).runs
    swept = [WD, DROP]
    assert lookup(run, "best_valid_acc", "valid", swept) == 0.8  # a summary field
    assert lookup(run, "seed", "valid", swept) == 3  # a run attribute
    assert lookup(run, "dropout", "valid", swept) == 0.1  # a parameter by its short name
    assert lookup(run, "model.layers", "valid", swept) == 2  # the training config
    assert lookup(run, "model.nothing", "valid", swept) is MISSING


def test_searched_parameters_are_binned_and_optuna_trials_shown(tmp_path, cli):
    """30 trials of a random/Optuna search: 30 distinct learning rates become 5 ranges of 6 runs."""
    sweep = make_sweep(tmp_path / "search", swept=["optim.lr", "model.layers"])
    for trial in range(30):
        lr = 1e-4 * (1.2**trial)
        make_run(
            sweep / f"20250101_000000_j9_t{trial}",
            valid_loss=[0.5],
            valid_acc=[0.5 + trial / 100],
            params={"optim.lr": lr, "model.layers": 2 + 2 * (trial % 2)},
            name=f"t{trial:04d}",
            config_extra={"optuna_trial": trial},
            status_extra={"optuna_state": "COMPLETE"},
        )
    effects = build_report([str(sweep)], ReportOptions()).effects
    lr, layers = effects.params
    assert len(lr.levels) == 5 and [level.stat.n for level in lr.levels] == [6] * 5
    assert lr.levels[0].value == "0.0001..0.000289" and lr.best is lr.levels[-1]
    assert [level.value for level in layers.levels] == [2, 4]
    (pivot,) = effects.pivots
    assert len(pivot.row_values) == 5 and len(pivot.col_values) == 2
    assert sum(stat.n for stat in pivot.cells.values()) == 30
    out = cli("-p", str(sweep), "--format", "markdown", "--top", "2", command="analyze").stdout
    header = out.splitlines()[2].strip("| ").split(" | ")
    assert header[:2] == ["config", "trial"] and "| t0029 | #29 COMPLETE |" in out
