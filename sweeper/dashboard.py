"""What `sweeper dashboard` serves to optuna-dashboard: a search sweep's own study, or, for a grid/configs
sweep, an Optuna study built in memory from its run dirs; the sweep's context as study attributes; the
port check that turns a busy port into one error line; and `sweeper tensorboard`'s command line, which
names each run by its trial id.

A grid sweep's study has one trial per config (its seeds together, as a search trial runs them): params as
categorical distributions over the values the sweep tried, value the mean over seeds of each run's best
objective value (the value a search trial gets), intermediate values the mean over seeds at each epoch.
"""

from __future__ import annotations

import errno
import math
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
import pyarrow.parquet as pq
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState as OptunaTrialState

from sweeper.errors import SweeperError
from sweeper.fsutil import read_json
from sweeper.ledger import Ledger
from sweeper.objective import Objective
from sweeper.run_files import CONFIG_FILE, METRICS_FILE, STATUS_FILE
from sweeper.runs_index import run_dirs
from sweeper.states import TrialState
from sweeper.study import context, run_objective


def check_port(host: str, port: int) -> None:
    """Refuse a port another server holds, before optuna-dashboard prints 'Listening' and a traceback."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SweeperError(
                    f"--port {port}: {host}:{port} is in use; pick another with --port"
                ) from None
            raise SweeperError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None


def _choice(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _latest_runs(sweep_dir: Path) -> dict[str, tuple[Path, dict, dict]]:
    """trial id -> (run dir, config.json, status.json) of its latest run dir (a fresh retry makes a new one)."""
    latest = {}
    for run_dir in run_dirs(sweep_dir):  # in stamp order: a later one replaces an earlier one
        config = read_json(run_dir / CONFIG_FILE, {}) or {}
        if config.get("trial_id"):
            latest[config["trial_id"]] = (run_dir, config, read_json(run_dir / STATUS_FILE, {}) or {})
    return latest


def _epochs(run_dir: Path, objective: Objective) -> list[dict]:
    try:
        return pq.read_table(run_dir / METRICS_FILE, columns=["epoch", objective.metric]).to_pylist()
    except (OSError, pa.ArrowInvalid, KeyError):
        return []


def _trial(runs: list[tuple[Path, dict, dict]], objective: Objective, distributions: dict) -> Any:
    epochs = {run_dir: _epochs(run_dir, objective) for run_dir, _, _ in runs}
    values = [run_objective(epochs[run_dir], objective) for run_dir, _, _ in runs]
    states = {status.get("state") for _, _, status in runs}
    by_epoch: dict[int, list[float]] = {}
    for rows in epochs.values():
        for row in rows:
            value = row.get(objective.metric)
            if value is not None and math.isfinite(value):
                by_epoch.setdefault(int(row["epoch"]), []).append(value)
    state = OptunaTrialState.FAIL
    if states == {TrialState.COMPLETED} and None not in values:
        state = OptunaTrialState.COMPLETE
    elif states & {TrialState.RUNNING, TrialState.REQUEUED}:
        state = OptunaTrialState.RUNNING
    elif TrialState.PRUNED in states:
        state = OptunaTrialState.PRUNED
    config = runs[0][1]
    params = {k: _choice(v) for k, v in (config.get("params") or {}).items()}
    return optuna.trial.create_trial(
        state=state,
        value=sum(values) / len(values) if state == OptunaTrialState.COMPLETE else None,
        params=params,
        distributions={k: distributions[k] for k in params},
        intermediate_values={e: sum(v) / len(v) for e, v in sorted(by_epoch.items())},
        user_attrs={
            "name": config.get("name"),
            "trial_ids": [c.get("trial_id") for _, c, _ in runs],
            "seeds": [c.get("seed") for _, c, _ in runs],
            "seed_values": values,
            "run_dirs": [str(run_dir.resolve()) for run_dir, _, _ in runs],
            "states": [s.get("state") for _, _, s in runs],
        },
    )


def grid_storage(ledger: Ledger) -> optuna.storages.BaseStorage:
    """An in-memory study of a grid/configs sweep's run dirs (rebuilt at each `sweeper dashboard`)."""
    objective = Objective.of(ledger.meta.get("objective"))
    by_config: dict[str, list[tuple[Path, dict, dict]]] = {}
    for run in _latest_runs(ledger.dir).values():
        by_config.setdefault(str(run[1].get("name")), []).append(run)
    if not by_config:
        raise SweeperError(f"{ledger.dir}: no run has started yet: nothing for the dashboard to show")
    choices: dict[str, dict] = {}
    for runs in by_config.values():
        for key, value in (runs[0][1].get("params") or {}).items():
            choices.setdefault(key, {})[_choice(value)] = None
    distributions = {k: CategoricalDistribution(list(v)) for k, v in choices.items()}
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        study_name=f"{ledger.name}/{ledger.dir.name}", storage=storage, direction=objective.direction
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([objective.metric])
    seeds = sorted({c.get("seed") for runs in by_config.values() for _, c, _ in runs}, key=str)
    for key, value in {
        **context(ledger, objective, seeds),
        "built_from": "the run dirs (a grid sweep)",
    }.items():
        study.set_user_attr(key, value)
    study.add_trials([_trial(runs, objective, distributions) for _, runs in sorted(by_config.items())])
    return storage


def study_names(storage: optuna.storages.BaseStorage) -> str:
    return ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))


def link_runs_by_trial(ledger: Ledger, directory: Path) -> int:
    """Fill `directory` with one link per trial, named by its trial id, to its latest run dir: what
    `sweeper tensorboard` serves, so TensorBoard names runs by trial, not by stamp and job id. Kept out of
    the sweep dir, where `tensorboard --logdir runs/<name>/latest` would list every run twice."""
    latest = _latest_runs(ledger.dir)
    if not latest:
        raise SweeperError(f"{ledger.dir}: no run has started yet: nothing for TensorBoard to show")
    for trial_id, (run_dir, _, _) in latest.items():
        (directory / trial_id.replace("/", "_")).symlink_to(run_dir.resolve(), target_is_directory=True)
    return len(latest)
