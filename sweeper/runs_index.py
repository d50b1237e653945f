"""The sweep's run index, `<sweep dir>/runs.parquet`: one row per run dir (who it is, its params, how it
ended, its best and last values), so a sweep reads as one table in pandas, polars or duckdb and joins
with the runs' metrics.parquet on `run_dir`. Schema in docs/metrics.md.

A job replaces its own row when its run ends (under a lock, atomically: readers see the old index or the
new one); `analyze` rebuilds the index from the run dirs when it is missing or older than one of them (a
job killed by SIGKILL never wrote its row). Everything here is read from the run dir's own files.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sweeper.fsutil import atomic_write_bytes, locked, read_json
from sweeper.ledger import INDEX_FILE, META_FILE
from sweeper.metrics import FIXED_COLUMNS
from sweeper.objective import Objective
from sweeper.run_files import CONFIG_FILE, METRICS_FILE, RUN_DIR_NAME, STATUS_FILE

PARAM_PREFIX = "params."
LAST_PREFIX = "last."
IDENTITY = (
    "run_dir",
    "path",
    "sweep",
    "trial_id",
    "name",
    "seed",
    "optuna_trial",
    "job_id",
    "state",
    "error",
)
VALUES = ("objective", "direction", "epochs", "best_value", "best_epoch", "final_value")
RECORD = "analyze_record"  # JSON: what analyze read of the run when it ended (analysis/runs.ended_record)


def _scalar(value: Any) -> Any:
    """A param value as one parquet cell: lists and mappings as their JSON-ish text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def identity(run_dir: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """Who a run is, as the index and the long export name it: its dir, trial, seed and params (from its
    config.json record, or anything with the same keys)."""
    run_dir = Path(run_dir)
    row: dict[str, Any] = {
        "run_dir": run_dir.name,
        "path": str(run_dir.resolve()),
        **{key: config.get(key) for key in ("sweep", "trial_id", "name", "seed", "optuna_trial")},
    }
    row.update({PARAM_PREFIX + key: _scalar(v) for key, v in sorted((config.get("params") or {}).items())})
    return row


def index_row(run_dir: Path) -> dict[str, Any]:
    """The run's row, from its config.json, status.json and metrics.parquet (each may be missing)."""
    config = read_json(run_dir / CONFIG_FILE, {}) or {}
    status = read_json(run_dir / STATUS_FILE, {}) or {}
    objective = Objective.of(config.get("objective"))
    row = identity(run_dir, config)
    row.update(job_id=config.get("job_id") or status.get("job_id"), state=status.get("state"))
    row.update(error=status.get("error"), objective=objective.metric, direction=objective.direction)
    try:
        metrics = _read(run_dir / METRICS_FILE).to_pylist()
    except (OSError, pa.ArrowInvalid):
        metrics = []
    values = [(r["epoch"], r.get(objective.metric)) for r in metrics]
    finite = [(e, v) for e, v in values if v is not None and math.isfinite(v)]
    best = (max if objective.maximize else min)(finite, key=lambda ev: ev[1], default=(None, None))
    row.update(epochs=metrics[-1]["epoch"] if metrics else 0, best_epoch=best[0], best_value=best[1])
    row["final_value"] = values[-1][1] if values else None
    last = metrics[-1] if metrics else {}
    row.update({LAST_PREFIX + k: v for k, v in last.items() if k not in FIXED_COLUMNS})
    return row


def column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a param that is a number in one run, a name in another
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _column_order(names: list[str]) -> list[str]:
    """Identity, the params (sorted), the values, the last values (sorted)."""
    params = sorted(n for n in names if n.startswith(PARAM_PREFIX))
    last = sorted(n for n in names if n.startswith(LAST_PREFIX))
    return [*IDENTITY, *params, *VALUES, *last, *([RECORD] if RECORD in names else [])]


def _ordered(table: pa.Table) -> pa.Table:
    return table.select(_column_order(table.column_names)).replace_schema_metadata({"sweeper.index": "1"})


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    names = list(dict.fromkeys([*IDENTITY, *VALUES, *(k for r in rows for k in r)]))
    last = sorted(n for n in names if n.startswith(LAST_PREFIX))
    rows = sorted(rows, key=lambda r: r["run_dir"])
    columns = {n: column([r.get(n) for r in rows]) for n in _column_order(names)}
    for name in ("seed", "optuna_trial", "epochs", "best_epoch"):  # all-null columns keep their type
        columns[name] = columns[name].cast(pa.int64())
    for name in ("best_value", "final_value", *last):
        columns[name] = columns[name].cast(pa.float64())
    return pa.table(columns).replace_schema_metadata({"sweeper.index": "1"})


def write(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the index with these rows (atomically; callers hold the lock where others may write)."""
    _write_table(sweep_dir, _table(rows))


def _write_table(sweep_dir: Path, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(sweep_dir / INDEX_FILE, buffer.getvalue())


def _lock(sweep_dir: Path):
    return locked(sweep_dir / f".{INDEX_FILE}.lock")


def record(run_dir: Path, extra: dict[str, Any] | None = None) -> None:
    """Replace the run's row in its sweep's index (a run dir outside a sweep dir has none); `extra`: more
    cells of the row (the job's analyze record)."""
    sweep_dir = run_dir.parent
    if not (sweep_dir / META_FILE).exists():
        return
    row = {**index_row(run_dir), **(extra or {})}
    with _lock(sweep_dir):
        try:
            current = _read(sweep_dir / INDEX_FILE)
        except (
            OSError,
            pa.ArrowInvalid,
        ):  # none yet, or unreadable: the others come back at the next rebuild
            current = None
        if current is None or "run_dir" not in current.column_names:
            write(sweep_dir, [row])
            return
        import pyarrow.compute as pc  # here only: importing it costs analyze 0.05-0.1 s

        try:  # in Arrow: a job ending in a sweep of 100,000 runs pays ~0.1 s here, not ~2 s of Python rows
            others = current.filter(pc.not_equal(current.column("run_dir"), run_dir.name))
            merged = pa.concat_tables([others, _table([row])], promote_options="permissive")
            table = _ordered(merged.sort_by("run_dir"))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a param's type changed (a number, then a name)
            others_rows = [r for r in current.to_pylist() if r.get("run_dir") != run_dir.name]
            write(sweep_dir, others_rows + [row])
            return
        _write_table(sweep_dir, table)


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and RUN_DIR_NAME.match(p.name))


def newest_change_ns(run_dir: Path) -> int:
    """The latest mtime (ns) of the run's config.json, status.json and metrics.parquet; -1 if none exists."""
    times = [-1]
    for name in (CONFIG_FILE, STATUS_FILE, METRICS_FILE):
        try:
            times.append(os.stat(run_dir / name).st_mtime_ns)
        except OSError:
            pass
    return max(times)


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    # ParquetFile, not pq.read_table: that one goes through pyarrow.dataset, whose import pulls in pandas
    # where it is installed (0.25 s of a warm `analyze`).
    with pq.ParquetFile(path) as parquet:
        return parquet.read(columns=columns)


def records(sweep_dir: Path) -> dict[str, str]:
    """Each run dir's analyze record (JSON text) in the index, where its job left one."""
    try:
        with pq.ParquetFile(sweep_dir / INDEX_FILE) as parquet:
            if RECORD not in parquet.schema_arrow.names:
                return {}
            table = parquet.read(columns=["run_dir", RECORD])
    except (OSError, pa.ArrowInvalid):
        return {}
    names, texts = table.column(0).to_pylist(), table.column(1).to_pylist()
    return {name: text for name, text in zip(names, texts, strict=True) if text}


def _read_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    try:
        return _read(sweep_dir / INDEX_FILE).to_pylist()
    except (OSError, pa.ArrowInvalid):  # none yet, or unreadable: the others come back at the next rebuild
        return []


def stale(sweep_dir: Path, changes: dict[str, int] | None = None) -> set[str] | None:
    """The run dirs whose rows must be (re)made: missing from the index or changed after it was written;
    None where the index must be written anew (missing, unreadable, or holding a row for a gone run dir).
    `changes`: each run dir name's newest_change_ns, where the caller has stat'ed them already (analyze)."""
    if changes is None:
        changes = {d.name: newest_change_ns(d) for d in run_dirs(sweep_dir)}
    try:
        written = os.stat(sweep_dir / INDEX_FILE).st_mtime_ns
        indexed = set(_read(sweep_dir / INDEX_FILE, ["run_dir"]).column(0).to_pylist())
    except (OSError, pa.ArrowInvalid, KeyError):
        return None
    if not indexed <= changes.keys():
        return None
    return {name for name, changed in changes.items() if name not in indexed or changed > written}


def is_current(sweep_dir: Path) -> bool:
    """The index has a row for every run dir and is newer than each one's files."""
    return stale(sweep_dir) == set()


def rebuild(
    sweep_dir: Path,
    changes: dict[str, int] | None = None,
    record_of: Callable[[str], str | None] | None = None,
) -> bool:
    """Bring the index up to date with the run dirs, re-reading only the runs whose rows are missing or
    older than their files (a sweep whose jobs all wrote their rows costs one small read); False where the
    sweep dir is not writable. `changes`: as for `stale`; `record_of`: a run dir name's analyze record, for
    the rows made here (as the jobs put theirs)."""
    if not (sweep_dir / META_FILE).exists():
        return True
    todo = stale(sweep_dir, changes)
    if todo == set():
        return True
    try:
        with _lock(sweep_dir):
            names = changes.keys() if changes is not None else [d.name for d in run_dirs(sweep_dir)]
            kept = [] if todo is None else [r for r in _read_rows(sweep_dir) if r.get("run_dir") not in todo]
            have = {r.get("run_dir") for r in kept}
            made = [index_row(sweep_dir / n) for n in sorted(names) if n not in have]
            for row in made:
                record = record_of(row["run_dir"]) if record_of else None
                if record:
                    row[RECORD] = record
            write(sweep_dir, kept + made)
    except OSError:  # a colleague's read-only sweep: analyze reads it all the same
        return False
    return True
