"""Summary numbers checked against hand-built metrics files (and a per-run reference implementation)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeper.analysis import RunSummary, analyze, improving_window
from sweeper.analysis.fields import FIELDS
from sweeper.analysis.summarize import Objective, summarize
from sweeper.metrics import write_metrics


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own summary cache (also for the CLI subprocesses, which inherit the env)."""
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path / "cache"))


def make_run(
    path: Path,
    valid_loss=None,
    valid_acc=None,
    train_acc=None,
    train_loss=None,
    *,
    params=None,
    name="r",
    seed=0,
    state="COMPLETED",
    epochs=None,
    extra=None,
    config=None,
    config_extra=None,
    status_extra=None,
    sweep="hand",
):
    """A run dir as a job writes it: metrics.parquet (given columns, one row per epoch), config.json, status.json."""
    columns = {
        "valid/loss": valid_loss,
        "valid/acc": valid_acc,
        "train/acc": train_acc,
        "train/loss": train_loss,
    }
    columns = {k: v for k, v in columns.items() if v is not None} | (extra or {})
    length = len(next(iter(columns.values()))) if columns else 0
    rows = [
        {"epoch": i + 1, "time_s": float(i), "lr": 0.1, **{k: v[i] for k, v in columns.items()}}
        for i in range(length)
    ]
    path.mkdir(parents=True)
    write_metrics(path / "metrics.parquet", rows)
    full_config = {"epochs": epochs or length, "model": {"layers": 2}, **(config or {})}
    (path / "config.json").write_text(
        json.dumps(
            {
                "trial_id": f"{name}-s{seed}",
                "name": name,
                "params": params or {},
                "seed": seed,
                "config": full_config,
                "sweep": sweep,
                **(config_extra or {}),
            }
        )
    )
    (path / "status.json").write_text(json.dumps({"state": state, "epoch": length, **(status_extra or {})}))
    return path


def make_sweep(path: Path, metric="valid/acc", direction="maximize", swept=()):
    path.mkdir(parents=True, exist_ok=True)
    (path / "sweep.json").write_text(
        json.dumps(
            {
                "name": path.name,
                "objective": {"metric": metric, "direction": direction},
                "swept_keys": list(swept),
            }
        )
    )
    return path


def test_best_epochs_gap_and_degradation(tmp_path):
    make_run(
        tmp_path / "a",
        valid_loss=[1.0, 0.5, 0.4, 0.45, 0.6],
        valid_acc=[0.5, 0.7, 0.8, 0.82, 0.81],
        train_acc=[0.5, 0.75, 0.85, 0.9, 0.95],
        train_loss=[1.2, 0.7, 0.5, 0.3, 0.2],
    )
    (run,) = analyze(tmp_path).runs
    assert run.objective == 0.82 and run.objective_epoch == 4
    assert run.best_acc == 0.82 and run.best_acc_epoch == 4
    assert run.best_loss == 0.4 and run.best_loss_epoch == 3
    assert run.train_acc_at_best == 0.9 and run.gap_at_best == pytest.approx(0.9 - 0.82)
    assert run.final_train_acc == 0.95 and run.final_acc == 0.81
    assert run.gap == pytest.approx(0.95 - 0.81)
    assert run.last_loss == 0.6
    assert run.degradation == pytest.approx(0.2)
    assert run.degradation_pct == pytest.approx(50.0)
    assert run.still_improving is False  # best loss at 3 of 5, window 2
    assert run.epochs_since_best == 2
    assert run.early_stop_epoch == 5  # patience 2 from the improvement at epoch 3
    assert run.nonfinite_epoch is None and run.diverged is False
    assert run.epochs_run == 5 and run.state == "COMPLETED" and run.has_result


def test_ties_go_to_the_earlier_epoch_and_improving(tmp_path):
    make_run(
        tmp_path / "a", valid_loss=[0.9, 0.5, 0.5, 0.5], valid_acc=[0.6, 0.9, 0.9, 0.9], train_acc=[0.5] * 4
    )
    make_run(
        tmp_path / "b", valid_loss=[0.9, 0.8, 0.7, 0.6], valid_acc=[0.6, 0.7, 0.8, 0.85], train_acc=[0.5] * 4
    )
    a, b = sorted(analyze(tmp_path).runs, key=lambda r: r.run_dir)
    assert a.best_acc_epoch == 2 and a.best_loss_epoch == 2 and a.objective_epoch == 2
    assert a.degradation == 0.0 and a.still_improving is False
    assert a.early_stop_epoch == 4  # equal losses are no improvement
    assert b.best_loss_epoch == 4 and b.still_improving is True
    assert b.early_stop_epoch is None and b.epochs_since_best == 0


def test_nan_epochs_are_skipped_flagged_and_diverged(tmp_path):
    make_run(
        tmp_path / "a",
        valid_loss=[1.0, 0.3, math.nan, math.nan],
        valid_acc=[0.5, 0.8, math.nan, 0.1],
        train_acc=[0.5, 0.8, math.nan, math.nan],
        train_loss=[1.0, 0.5, math.inf, math.nan],
        state="FAILED",
        epochs=10,
    )
    (run,) = analyze(tmp_path).runs
    assert run.best_loss == 0.3 and run.best_loss_epoch == 2
    assert run.last_loss == 0.3 and run.final_train_acc == 0.8 and run.final_acc == 0.1
    assert run.nonfinite_epoch == 3 and run.diverged is True
    assert run.epochs_run == 4 and run.epochs_planned == 10
    assert run.state == "FAILED" and not run.has_result
    assert run.early_stop_epoch == 4  # NaN epochs do not improve; patience 2 (10% of 10 planned)


def test_divergence_without_nan(tmp_path):
    make_run(tmp_path / "blew_up", valid_loss=[2.0, 1.0, 0.5, 3.0], train_loss=[2.0, 1.0, 0.5, 3.0])
    make_run(tmp_path / "spike", valid_loss=[2.0, 0.5, 1.2], train_loss=[2.0, 0.5, 1.2])
    make_run(tmp_path / "never_learned", valid_loss=[2.3, 2.31, 2.305], train_loss=[2.3, 2.31, 2.305])
    runs = {Path(r.run_dir).name: r for r in analyze(tmp_path).runs}
    assert runs["blew_up"].diverged is True and runs["blew_up"].nonfinite_epoch is None
    assert runs["spike"].diverged is False  # above twice the lowest, but below the start
    assert runs["never_learned"].diverged is False


def test_nulls_are_not_nan(tmp_path):
    """A metric logged only some epochs is null elsewhere: not a NaN flag, and best/last skip the nulls."""
    make_run(
        tmp_path / "a",
        valid_loss=[1.0, 0.8, 0.7],
        valid_acc=[0.5, 0.6, 0.7],
        extra={"valid/auroc": [None, 0.9, None]},
    )
    (run,) = analyze(tmp_path, metric="valid/auroc").runs
    assert run.objective == 0.9 and run.objective_epoch == 2
    assert run.nonfinite_epoch is None and "valid/auroc" in run.metrics


def test_single_epoch(tmp_path):
    make_run(tmp_path / "a", valid_loss=[0.7], valid_acc=[0.6], train_acc=[0.55], epochs=10)
    (run,) = analyze(tmp_path).runs
    assert run.best_acc_epoch == 1 and run.degradation == 0.0 and run.still_improving is True
    assert run.epochs_planned == 10 and run.epochs_run == 1 and run.early_stop_epoch is None
    assert run.gap_at_best == pytest.approx(-0.05)


def test_unfinished_runs_show_the_epoch_they_reached(tmp_path):
    make_run(
        tmp_path / "running",
        valid_loss=[0.9, 0.8, 0.7],
        valid_acc=[0.5, 0.6, 0.7],
        state="RUNNING",
        epochs=30,
    )
    make_run(tmp_path / "pruned", valid_loss=[0.9], valid_acc=[0.3], state="PRUNED", epochs=30)
    make_run(tmp_path / "timeout", valid_loss=[0.9, 0.8], valid_acc=[0.3, 0.4], state="TIMEOUT", epochs=30)
    runs = {Path(r.run_dir).name: r for r in analyze(tmp_path).runs}
    assert {name: (r.state, r.epochs_run, r.epochs_planned, r.has_result) for name, r in runs.items()} == {
        "running": ("RUNNING", 3, 30, False),
        "pruned": ("PRUNED", 1, 30, False),
        "timeout": ("TIMEOUT", 2, 30, False),
    }


def test_empty_corrupt_and_foreign_files_are_reported_and_others_summarized(tmp_path):
    make_run(tmp_path / "good", valid_loss=[0.5], valid_acc=[0.9], train_acc=[0.9])
    bad = make_run(tmp_path / "bad", valid_loss=[0.5], valid_acc=[0.9], train_acc=[0.9])
    data = (bad / "metrics.parquet").read_bytes()
    (bad / "metrics.parquet").write_bytes(data[: len(data) // 2])
    (make_run(tmp_path / "empty", valid_loss=[0.5]) / "metrics.parquet").write_bytes(b"")
    foreign = make_run(tmp_path / "foreign", valid_loss=[0.5])
    pq.write_table(pa.table({"step": [1, 2], "loss": [0.1, 0.2]}), foreign / "metrics.parquet")
    text = make_run(tmp_path / "text", valid_loss=[0.5])
    pq.write_table(pa.table({"epoch": [1], "valid/acc": ["high"]}), text / "metrics.parquet")
    (make_run(tmp_path / "zero_rows", valid_loss=[0.5], state="RUNNING") / "metrics.parquet").unlink()
    write_metrics(tmp_path / "zero_rows" / "metrics.parquet", [])  # a job before its first epoch: no problem

    result = analyze(tmp_path)
    assert len(result.runs) == 6
    problems = sorted(result.problems)
    assert len(problems) == 4, problems
    assert all("\n" not in p for p in problems)
    assert "bad/metrics.parquet: unreadable" in problems[0]
    assert "empty/metrics.parquet: empty file" in problems[1]
    assert "foreign/metrics.parquet: no 'epoch' column" in problems[2]
    assert "text/metrics.parquet: column 'valid/acc' is string, not a number" in problems[3]
    runs = {Path(r.run_dir).name: r for r in result.runs}
    assert runs["good"].best_acc == 0.9
    assert runs["zero_rows"].epochs_run == 0 and runs["zero_rows"].best_acc is None
    assert runs["bad"].best_acc is None and runs["bad"].epochs_run == 0


def test_one_bad_file_in_a_batch_does_not_cost_the_others(tmp_path):
    for i in range(5):
        make_run(tmp_path / f"r{i}", valid_loss=[1.0, 0.5 + i / 10], valid_acc=[0.5, 0.6 + i / 100])
    text = tmp_path / "r2" / "metrics.parquet"
    pq.write_table(pa.table({"epoch": [1], "valid/loss": ["x"]}), text)
    result = analyze(tmp_path)
    assert len(result.problems) == 1
    values = {Path(r.run_dir).name: r.best_acc for r in result.runs}
    assert values == {"r0": 0.6, "r1": 0.61, "r2": None, "r3": 0.63, "r4": 0.64}


def test_epochs_out_of_order_in_a_foreign_file_are_sorted(tmp_path):
    run = make_run(tmp_path / "a", valid_loss=[0.5])
    table = pa.table({"epoch": [3, 1, 2], "valid/loss": [0.3, 0.9, 0.5], "valid/acc": [0.8, 0.2, 0.5]})
    pq.write_table(table, run / "metrics.parquet")
    (summary,) = analyze(tmp_path).runs
    assert summary.epochs_run == 3 and summary.best_loss_epoch == 3 and summary.last_loss == 0.3


def test_objective_comes_from_the_sweep_and_metric_and_split_override(tmp_path):
    sweep = make_sweep(tmp_path / "sweep", metric="valid/loss", direction="minimize")
    make_run(
        sweep / "a",
        valid_loss=[1.0, 0.5, 0.6],
        valid_acc=[0.5, 0.6, 0.7],
        train_acc=[0.5, 0.8, 0.9],
        extra={"test/loss": [0.9, 0.8, 0.4], "test/acc": [0.4, 0.5, 0.45]},
    )
    by_sweep = analyze(sweep)
    (run,) = by_sweep.runs
    assert by_sweep.objective == Objective("valid/loss", maximize=False)
    assert run.objective == 0.5 and run.objective_epoch == 2
    assert run.train_acc_at_best == 0.8 and run.gap_at_best == pytest.approx(0.8 - 0.6)

    (run,) = analyze(sweep, metric="valid/acc").runs
    assert run.objective == 0.7 and run.objective_epoch == 3

    test = analyze(sweep, split="test")
    (run,) = test.runs
    assert test.objective == Objective(
        "test/loss", maximize=False
    )  # the sweep's objective, on the test split
    assert run.best_acc == 0.5 and run.best_loss == 0.4 and run.objective_epoch == 3
    assert run.gap_at_best == pytest.approx(0.9 - 0.45)


def test_optuna_keys_are_read(tmp_path):
    make_run(
        tmp_path / "t",
        valid_loss=[0.5],
        valid_acc=[0.5],
        config_extra={"optuna_trial": 12},
        status_extra={"optuna_state": "PRUNED"},
    )
    (run,) = analyze(tmp_path).runs
    assert run.optuna_trial == 12 and run.optuna_state == "PRUNED"


def test_hidden_and_symlinked_dirs_are_not_walked(tmp_path):
    sweep = make_sweep(tmp_path / "reg" / "20250101_000000")
    make_run(sweep / "20250101_000001_j1", valid_loss=[0.5], valid_acc=[0.5])
    make_run(sweep / ".submitit" / "junk", valid_loss=[0.5], valid_acc=[0.5])
    (tmp_path / "reg" / "latest").symlink_to("20250101_000000")
    assert len(analyze(tmp_path).runs) == 1
    assert len(analyze(tmp_path / "reg" / "latest").runs) == 1


def test_summary_numbers_are_in_fields_order():
    names = [f.name for f in dataclasses.fields(RunSummary)]
    start = names.index(FIELDS[0])
    assert names[start : start + len(FIELDS)] == list(FIELDS)


def test_a_recent_best_followed_by_a_rise_is_not_improving(tmp_path):
    # best loss at epoch 28 of 30 (inside the 3-epoch window), then up 24%: not "still improving"
    losses = [1.0 - 0.03 * e for e in range(27)] + [0.108, 0.12, 0.134]
    make_run(tmp_path / "a", valid_loss=losses, valid_acc=[0.5] * 30, train_acc=[0.5] * 30)
    (run,) = analyze(tmp_path).runs
    assert run.best_loss_epoch == 28 and run.epochs_since_best == 2 and run.still_improving is False


def test_improving_window():
    assert improving_window(5) == 2 and improving_window(50) == 5 and improving_window(51) == 6


# -- the vectorized reductions against a plain per-run implementation ----------------------------------------
def reference(epochs, columns, planned, objective):
    """The summary definitions (summarize.py's docstring), one run at a time, in plain Python."""

    def best(name, maximize):
        values = columns.get(name)
        if values is None:
            return None
        found = None
        for i, v in enumerate(values):
            if (
                v is not None
                and math.isfinite(v)
                and (found is None or (v > values[found] if maximize else v < values[found]))
            ):
                found = i
        return found

    def last(name):
        values = columns.get(name) or []
        finite = [i for i, v in enumerate(values) if v is not None and math.isfinite(v)]
        return finite[-1] if finite else None

    def at(name, i):
        values = columns.get(name)
        return (
            None
            if values is None or i is None or values[i] is None or not math.isfinite(values[i])
            else values[i]
        )

    out = {"epochs_run": epochs[-1]}
    o = best(objective.metric, objective.maximize)
    out["objective"], out["objective_epoch"] = at(objective.metric, o), None if o is None else epochs[o]
    a, b = best("valid/acc", True), best("valid/loss", False)
    out["best_acc"], out["best_acc_epoch"] = at("valid/acc", a), None if a is None else epochs[a]
    out["best_loss"], out["best_loss_epoch"] = at("valid/loss", b), None if b is None else epochs[b]
    out["train_acc_at_best"] = at("train/acc", o)
    acc_at = at("valid/acc", o)
    out["gap_at_best"] = (
        None if out["train_acc_at_best"] is None or acc_at is None else out["train_acc_at_best"] - acc_at
    )
    out["final_train_acc"] = at("train/acc", last("train/acc"))
    out["final_acc"] = at("valid/acc", last("valid/acc"))
    out["gap"] = (
        None
        if None in (out["final_train_acc"], out["final_acc"])
        else out["final_train_acc"] - out["final_acc"]
    )
    out["last_loss"] = at("valid/loss", last("valid/loss"))
    out["degradation"] = None if out["best_loss"] is None else out["last_loss"] - out["best_loss"]
    try:
        percent = 100 * out["degradation"] / abs(out["best_loss"])
        out["degradation_pct"] = percent if math.isfinite(percent) else None
    except (TypeError, ZeroDivisionError, OverflowError):
        out["degradation_pct"] = None
    if out["best_loss_epoch"] is None:
        out["still_improving"] = out["epochs_since_best"] = out["early_stop_epoch"] = None
    else:
        window = improving_window(epochs[-1])
        start = columns["valid/loss"][len(epochs) - min(window, len(epochs))]
        falling = start is None or not math.isfinite(start) or not out["last_loss"] > start
        out["still_improving"] = out["best_loss_epoch"] > epochs[-1] - window and falling
        out["epochs_since_best"] = epochs[-1] - out["best_loss_epoch"]
        patience = improving_window(planned or epochs[-1])
        lowest, last_improvement, stop = math.inf, epochs[0] - 1, None
        for epoch, v in zip(epochs, columns["valid/loss"], strict=True):
            if v is not None and math.isfinite(v) and v < lowest:
                lowest, last_improvement = v, epoch
            if epoch - last_improvement >= patience:
                stop = epoch
                break
        out["early_stop_epoch"] = stop
    nonfinite = [
        epochs[i]
        for i in range(len(epochs))
        if any(
            columns.get(n) and columns[n][i] is not None and not math.isfinite(columns[n][i])
            for n in ("train/loss", "valid/loss")
        )
    ]
    out["nonfinite_epoch"] = nonfinite[0] if nonfinite else None
    logged_train = any(v is not None for v in columns.get("train/loss") or [])
    watched = "train/loss" if logged_train else "valid/loss"
    first_i = next(
        (i for i, v in enumerate(columns.get(watched) or []) if v is not None and math.isfinite(v)), None
    )
    if nonfinite:
        out["diverged"] = True
    elif first_i is None:
        out["diverged"] = None
    else:
        first, latest, lowest = (
            at(watched, first_i),
            at(watched, last(watched)),
            at(watched, best(watched, False)),
        )
        out["diverged"] = latest > first and latest > 2 * lowest
    return out


value = st.one_of(
    st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    st.sampled_from([math.nan, math.inf, None, 0.5, 1.0]),  # repeats make ties
)


@st.composite
def runs_strategy(draw):
    runs = []
    for _ in range(draw(st.integers(1, 6))):
        length = draw(st.integers(1, 25))
        names = draw(st.sets(st.sampled_from(["train/acc", "train/loss", "valid/acc"]))) | {"valid/loss"}
        columns = {name: draw(st.lists(value, min_size=length, max_size=length)) for name in sorted(names)}
        planned = draw(st.one_of(st.none(), st.integers(length, 60)))
        runs.append((list(range(1, length + 1)), columns, planned))
    return runs


@settings(max_examples=150, deadline=None)
@given(runs_strategy(), st.sampled_from([Objective("valid/acc", True), Objective("valid/loss", False)]))
def test_vectorized_summaries_match_the_per_run_definition(runs, objective):
    lengths = np.array([len(epochs) for epochs, _, _ in runs])
    names = {"train/acc", "train/loss", "valid/acc", "valid/loss"}
    flat, present = {"epoch": np.concatenate([np.array(e, dtype=float) for e, _, _ in runs])}, {}
    for name in names:
        if not any(name in c for _, c, _ in runs):
            continue
        values = [v for e, c, _ in runs for v in (c.get(name) or [None] * len(e))]
        flat[name] = np.array([math.nan if v is None else v for v in values], dtype=float)
        present[name] = np.array([v is not None for v in values])
    planned = np.array([math.nan if p is None else p for _, _, p in runs], dtype=float)
    got = summarize(lengths, flat, present, planned, "valid", objective)
    for index, (epochs, columns, run_planned) in enumerate(runs):
        expected = reference(epochs, columns, run_planned, objective)
        for name in FIELDS:
            value_got = got[name][index]
            want = expected[name]
            if want is None:
                assert math.isnan(value_got), (name, index, value_got)
            else:
                assert value_got == pytest.approx(float(want)), (name, index, value_got, want)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.one_of(st.none(), st.floats(allow_nan=True)), max_size=40), st.integers(0, 5)),
        min_size=1,
        max_size=4,
    )
)
def test_present_rows_are_read_from_the_validity_bitmaps_as_pyarrow_compute_reads_them(chunks):
    import pyarrow.compute as pc

    from sweeper.analysis.metric_files import _valid

    arrays = [
        pa.array(values, type=pa.float64()).slice(min(offset, len(values))) for values, offset in chunks
    ]
    column = pa.chunked_array(arrays, type=pa.float64())
    assert _valid(column).tolist() == pc.is_valid(column).to_numpy(zero_copy_only=False).tolist()
