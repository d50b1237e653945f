"""Finding run dirs and reading them, batched: one summary per run, from the cache where it is still valid.

A run dir is a directory holding metrics.parquet, config.json or status.json, or named like one
(`<YYYYMMDD_HHMMSS>_j<job id>`, even empty; layout: docs/metrics.md). Parquet files are read a batch of runs
at a time (by forked processes past 2,000 runs), into flat columns that `summarize` reduces with numpy: no
Python loop ever walks the rows. A file that cannot be read (or a missing config.json) costs one problem
line, not the analysis. Where a run dir's status.json has not seen the end (a job killed by SIGKILL, an
unreadable file), the state and error come from the sweep's ledger (attempts.jsonl), as do validity marks;
summary.json (numbers a run made once) is read for every run, outside the cache.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweeper import runs_index
from sweeper.analysis import cache as summary_cache
from sweeper.analysis import summarize as summary_numbers
from sweeper.analysis.summarize import BOOLEAN_FIELDS, EPOCH_FIELDS, FIELDS
from sweeper.errors import SweeperError
from sweeper.fsutil import read_json
from sweeper.metrics import METRICS_FILE, SUMMARY_FILE
from sweeper.objective import Objective
from sweeper.run import CONFIG_FILE, STATUS_FILE
from sweeper.runs_index import RUN_DIR_NAME
from sweeper.states import FINISHED, NOT_A_RESULT

SWEEP_FILE = "sweep.json"
RUN_FILES = (METRICS_FILE, CONFIG_FILE, STATUS_FILE)
BATCH_RUNS = 256  # runs read and reduced together by one worker


@dataclass(slots=True)
class RunSummary:
    """One run: who it is (config.json, status.json) and its summary numbers (see summarize.py)."""

    run_dir: str
    sweep: str = ""
    trial_id: str = ""
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    state: str = "UNKNOWN"
    error: str | None = None
    epochs_planned: int | None = None
    optuna_trial: int | None = None
    optuna_state: str | None = None
    metrics: tuple[str, ...] = ()  # the columns of its metrics.parquet
    superseded: bool = False  # an earlier attempt of a trial that has a later run dir in the same sweep
    # summary numbers, in the order of summarize.FIELDS (_to_summary passes them by position)
    epochs_run: int = 0
    objective: float | None = None
    objective_epoch: int | None = None
    best_acc: float | None = None
    best_acc_epoch: int | None = None
    best_loss: float | None = None
    best_loss_epoch: int | None = None
    train_acc_at_best: float | None = None
    gap_at_best: float | None = None
    final_train_acc: float | None = None
    final_acc: float | None = None
    gap: float | None = None
    last_loss: float | None = None
    degradation: float | None = None
    degradation_pct: float | None = None
    still_improving: bool | None = None
    epochs_since_best: int | None = None
    early_stop_epoch: int | None = None
    nonfinite_epoch: int | None = None
    diverged: bool | None = None
    sweep_dir: str = field(default="", repr=False)  # the dir holding the run dir
    has_config: bool = True  # config.json was read: the run's config and params are known
    mark: str | None = None  # the trial's validity mark in its sweep's ledger (valid, partial, invalid)
    mark_reason: str | None = None
    summary: dict[str, float | None] = field(default_factory=dict)  # summary.json: numbers made once
    continued_at: tuple[int, ...] = ()  # the epochs after which `sweeper continue` trained it on
    _config: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.sweep_dir = self.sweep_dir or os.path.dirname(self.run_dir)

    @property
    def has_result(self) -> bool:
        """Ended with a final result (not running, failed, pruned or cut short): it counts in effects."""
        return self.state not in NOT_A_RESULT

    def config(self) -> dict:
        """The full training config (config.json's `config`), read on first use: the summary does not need it."""
        if self._config is None:
            self._config = (read_json(Path(self.run_dir) / CONFIG_FILE, {}) or {}).get("config") or {}
        return self._config


@dataclass
class Analysis:
    runs: list[RunSummary]
    problems: list[str]  # one line per file that could not be read
    swept_keys: list[str]
    split: str
    objective: Objective
    paths: list[str]
    cache_hits: int = 0
    cache_misses: int = 0

    @property
    def metrics(self) -> list[str]:
        """Every metric column some run has, then every summary number (summary.json) some run has."""
        seen: dict[str, None] = {}
        for run in self.runs:
            seen.update(dict.fromkeys(run.metrics))
        return list(seen) + [name for name in self.summary_names if name not in seen]

    @property
    def summary_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for run in self.runs:
            seen.update(dict.fromkeys(run.summary))
        return list(seen)


@dataclass
class RunFiles:
    """A run dir as found on disk, with the stat of its three files: its cache key (see cache.py)."""

    path: str
    key: tuple[int, ...]  # (size, mtime_ns, ctime_ns, inode, device) x RUN_FILES; -1s for a missing file

    def __post_init__(self) -> None:
        self.parent, self.name = os.path.split(self.path)

    def size(self, file_index: int) -> int:
        """Size of RUN_FILES[file_index], -1 where missing."""
        return self.key[5 * file_index]


MISSING_STAT = (-1, -1, -1, -1, -1)


def _stat_key(path: str) -> tuple[int, ...]:
    try:
        st = os.stat(path)
    except OSError:
        return MISSING_STAT
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _run_files(directory: str) -> RunFiles | None:
    """The run dir at directory, or None where it is not one (none of the run files, and not named as one)."""
    metrics, config, status = (_stat_key(f"{directory}/{name}") for name in RUN_FILES)
    if (
        metrics[0] < 0
        and config[0] < 0
        and status[0] < 0
        and not RUN_DIR_NAME.match(os.path.basename(directory))
    ):
        return None
    return RunFiles(directory, metrics + config + status)


def find_runs(path: str | Path) -> list[RunFiles]:
    """Run dirs at or under path (hidden dirs and symlinked dirs, e.g. `latest`, are not descended into).

    Each candidate dir costs three stat calls (no listing): a sweep of 10,000 runs is found in ~0.1 s.
    """
    top = os.path.abspath(path)
    run = _run_files(top)
    if run is not None:
        return [run]
    found: list[RunFiles] = []
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            run = _run_files(entry.path)
            if run is not None:
                found.append(run)
            else:
                stack.append(entry.path)
    return sorted(found, key=lambda run: run.path)


def find_run_dirs(path: str | Path) -> list[Path]:
    return [Path(run.path) for run in find_runs(path)]


# -- reading one batch of runs ------------------------------------------------------------------------------
def _read_bytes(path: str, size_hint: int) -> bytes:
    """The whole file, usually in one read call (the size is known from the stat; a file may have changed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, size_hint + 1)]
        while len(chunks[-1]) > 0 and sum(map(len, chunks)) > size_hint:
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_json(path: str, size_hint: int, problems: list[str]) -> dict | None:
    """The JSON object in the file, or None with a problem line where it cannot be read."""
    try:
        data = json.loads(_read_bytes(path, size_hint))
    except OSError as exc:
        problems.append(f"{path}: unreadable ({exc.strerror or exc})")
        return None
    except ValueError as exc:
        reason = "empty file (0 bytes)" if size_hint == 0 else f"not JSON ({str(exc).splitlines()[0][:120]})"
        problems.append(f"{path}: {reason}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return data


def _meta(run: RunFiles, problems: list[str]) -> dict[str, Any]:
    """Who the run is (config.json) and how it stands (status.json); a problem line per unreadable file."""
    if run.size(0) < 0 and run.size(1) < 0 and run.size(2) < 0:
        problems.append(f"{run.path}: empty run dir (no {CONFIG_FILE}, {STATUS_FILE} or {METRICS_FILE})")
        config = None
    elif run.size(1) < 0:
        problems.append(f"{run.path}/{CONFIG_FILE}: missing (the run's config and params are unknown)")
        config = None
    else:
        config = _read_json(f"{run.path}/{CONFIG_FILE}", run.size(1), problems)
    status = _read_json(f"{run.path}/{STATUS_FILE}", run.size(2), problems) if run.size(2) >= 0 else {}
    has_config, config, status = config is not None, config or {}, status or {}
    planned = (config.get("config") or {}).get("epochs") or status.get("epochs")
    return {
        "has_config": has_config,
        "sweep": config.get("sweep", ""),
        "trial_id": config.get("trial_id", run.name),
        "name": config.get("name", run.name),
        "params": config.get("params") or {},
        "seed": config.get("seed"),
        "state": status.get("state", "UNKNOWN"),
        "error": status.get("error"),
        "epochs_planned": planned if isinstance(planned, int) else None,
        "optuna_trial": config.get("optuna_trial", status.get("optuna_trial")),
        "optuna_state": status.get("optuna_state", config.get("optuna_state")),
        "continued_at": list(status.get("continued_at") or []),  # `sweeper continue`: where each began
    }


def _read_table(path: str, size_hint: int, wanted: list[str]) -> tuple[pa.Table, list[str]]:
    """The wanted columns of one metrics file, and all its column names. Raises ValueError with a reason."""
    data = _read_bytes(path, size_hint)
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        names = parquet.schema_arrow.names
        if "epoch" not in names:
            raise ValueError("no 'epoch' column (not a sweeper metrics file?)")
        # use_threads=False: one file is tiny; readers parallelize over files instead.
        table = parquet.read(columns=[c for c in wanted if c in names], use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"unreadable ({str(exc).splitlines()[0][:120]})") from exc
    if table.column("epoch").null_count:
        raise ValueError("null epochs (not a sweeper metrics file?)")
    return table, names


def _numeric(data_type: pa.DataType) -> bool:
    return pa.types.is_integer(data_type) or pa.types.is_floating(data_type) or pa.types.is_boolean(data_type)


def _as_float(table: pa.Table) -> pa.Table:
    """Every column as float64 (ValueError naming the first one that is not a number)."""
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not _numeric(column.type):
            raise ValueError(f"column {name!r} is {column.type}, not a number")
    return table.cast(pa.schema([(name, pa.float64()) for name in table.column_names]))


def _combine(tables: list[pa.Table], owners: list[int], problems: list[str | None], paths: list[str]):
    """One table of the runs' rows back to back, and the runs it holds (a foreign file may drop out)."""
    try:  # sweeper's own files all have the same types: one concatenation, one cast per column
        return _as_float(pa.concat_tables(tables, promote_options="default")), owners
    except (pa.ArrowException, ValueError):
        pass
    kept, kept_owners = [], []
    for table, owner in zip(tables, owners, strict=True):
        try:
            kept.append(_as_float(table))
            kept_owners.append(owner)
        except (pa.ArrowException, ValueError) as exc:
            problems[owner] = f"{paths[owner]}: {exc}"
    if not kept:
        return None, []
    return pa.concat_tables(kept, promote_options="default"), kept_owners


def _read_batch(runs: list[RunFiles], split: str, objective: Objective) -> list[list[Any]]:
    """A record per run: [meta, numbers (FIELDS order), metric columns, problem lines]."""
    wanted = summary_numbers.columns_needed(split, objective)
    file_problems: list[list[str]] = [[] for _ in runs]
    metas = [_meta(run, file_problems[i]) for i, run in enumerate(runs)]
    paths = [f"{run.path}/{METRICS_FILE}" for run in runs]
    columns_of: list[list[str]] = [[] for _ in runs]
    problems: list[str | None] = [None] * len(runs)  # the metrics file's
    tables, owners, rows_of = [], [], {}
    for index, run in enumerate(runs):
        if run.size(0) < 0:
            continue
        try:
            table, columns_of[index] = _read_table(paths[index], run.size(0), wanted)
        except (ValueError, OSError) as exc:
            problems[index] = f"{paths[index]}: {exc}"
            continue
        if table.num_rows:  # none: a run that has not finished its first epoch
            tables.append(table)
            owners.append(index)
            rows_of[index] = table.num_rows

    numbers = np.full((len(runs), len(FIELDS)), np.nan)
    numbers[:, FIELDS.index("epochs_run")] = 0
    combined, owners = _combine(tables, owners, problems, paths) if tables else (None, [])
    if combined is not None:
        lengths = np.array([rows_of[owner] for owner in owners], dtype=np.int64)
        columns = {name: combined.column(name).to_numpy() for name in combined.column_names}
        present = {name: _valid(combined.column(name)) for name in columns}
        _order_epochs(lengths, columns, present)
        planned = np.array([metas[i]["epochs_planned"] or np.nan for i in owners], dtype=float)
        summary = summary_numbers.summarize(lengths, columns, present, planned, split, objective)
        numbers[owners] = np.column_stack([summary[name] for name in FIELDS])

    rows = numbers.tolist()
    for i, problem in enumerate(problems):
        if problem:
            file_problems[i].append(problem)
    return [[metas[i], rows[i], columns_of[i], file_problems[i]] for i in range(len(runs))]


def _valid(column: pa.ChunkedArray) -> np.ndarray:
    """Which rows hold a value (not null: a metric the run did not log that epoch), from the validity
    bitmaps; pyarrow.compute's is_valid does the same but importing it costs every analyze 40 ms."""
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    parts = []
    for chunk in column.chunks:
        bitmap = chunk.buffers()[0]
        if bitmap is None:
            parts.append(np.ones(len(chunk), dtype=bool))
        else:
            bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
            parts.append(bits[chunk.offset : chunk.offset + len(chunk)].astype(bool))
    return np.concatenate(parts)


def _order_epochs(
    lengths: np.ndarray, columns: dict[str, np.ndarray], present: dict[str, np.ndarray]
) -> None:
    """Sort rows by epoch inside each run where a (foreign) file has them out of order; in place."""
    epoch = columns["epoch"]
    run_of_row = np.repeat(np.arange(len(lengths)), lengths)
    if not ((np.diff(epoch) <= 0) & (run_of_row[1:] == run_of_row[:-1])).any():
        return
    order = np.lexsort((epoch, run_of_row))
    for table in (columns, present):
        for name in table:
            table[name] = table[name][order]


# -- the whole analysis --------------------------------------------------------------------------------------
def sweep_meta(parent: str) -> dict[str, Any]:
    return read_json(os.path.join(parent, SWEEP_FILE), {}) or {}


def resolve_objective(
    sweeps: list[dict], split: str, metric: str | None, direction: str | None = None
) -> Objective:
    """--metric, else the sweep's objective (moved to `split`), else `split`/acc; direction: --direction, else
    the sweep's where it names the same metric, else by the metric's name (objective.known_direction)."""
    declared = {}
    for meta in sweeps:
        objective = meta.get("objective") or {}
        if objective.get("metric"):
            declared.setdefault(objective["metric"], objective.get("direction"))
    if metric is None:
        metric = next(iter(declared), f"{split}/acc")
        prefix, _, rest = metric.partition("/")
        if rest and prefix != split and prefix in ("valid", "test"):
            metric = f"{split}/{rest}"
    direction = direction or declared.get(metric) or declared.get(f"valid/{metric.partition('/')[2]}")
    return Objective(metric, direction if direction in ("maximize", "minimize") else None)


def _trusted(runs: list[RunFiles], trusted_before_ns: int) -> list[bool]:
    """Per run, whether an entry made from what was just read may be served later (see cache.py): its
    files' mtimes and ctimes are older than the racy window. The entry is keyed by the stat taken before
    reading; if a file was replaced meanwhile, the entry holds newer content under an older key and is
    never served, because a file never gets an older key back."""
    if not runs:
        return []
    keys = np.array([run.key for run in runs], dtype=np.int64)
    times = keys[:, [1, 2, 6, 7, 11, 12]]  # mtime_ns and ctime_ns of the three files (-1: missing)
    return (times.max(axis=1) < trusted_before_ns).tolist()


PROCESSES_FROM = 2000  # below this many runs to read, forking reader processes costs more than it saves


def _read_all(runs: list[RunFiles], split: str, objective: Objective, workers: int) -> list[list[list[Any]]]:
    """Records of every run, in order: batches read by `workers` forked processes when there are many runs
    (reading holds the GIL in JSON parsing and pyarrow's Python layer, so threads would not use the cores),
    in this process otherwise."""
    batches = list(_batches(runs))
    if workers < 2 or len(runs) < PROCESSES_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return [_read_batch(batch, split, objective) for batch in batches]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(batches)), mp_context=context) as pool:
        return list(
            pool.map(
                _read_batch,
                batches,
                [split] * len(batches),
                [objective] * len(batches),
                chunksize=max(1, len(batches) // (4 * workers)),
            )
        )


def _batches(runs: list[RunFiles]) -> Iterator[list[RunFiles]]:
    for start in range(0, len(runs), BATCH_RUNS):
        yield runs[start : start + BATCH_RUNS]


EPOCH_INDEXES = [FIELDS.index(name) for name in EPOCH_FIELDS]
BOOLEAN_INDEXES = [FIELDS.index(name) for name in BOOLEAN_FIELDS]


def _to_summary(run: RunFiles, record: list[Any], ends: dict[str, tuple[str, str | None]]) -> RunSummary:
    """The run's summary; `ends`: how the sweep's ledger says attempts ended, by run dir name."""
    meta, numbers, columns, _ = record
    values = [None if value != value else value for value in numbers]  # NaN: missing
    for i in EPOCH_INDEXES:
        if values[i] is not None:
            values[i] = int(values[i])
    for i in BOOLEAN_INDEXES:
        if values[i] is not None:
            values[i] = bool(values[i])
    values[0] = values[0] or 0  # epochs_run
    m = meta
    state, error = m["state"], m["error"]
    if state not in FINISHED and run.name in ends:  # the heartbeat never saw the end (kill -9, unreadable)
        state, error = ends[run.name][0], error or ends[run.name][1]
    return RunSummary(
        run.path,
        m["sweep"],
        m["trial_id"],
        m["name"],
        m["params"],
        m["seed"],
        state,
        error,
        m["epochs_planned"],
        m["optuna_trial"],
        m["optuna_state"],
        tuple(columns),
        False,
        *values,
        sweep_dir=run.parent,
        has_config=m.get("has_config", True),
        continued_at=tuple(m.get("continued_at") or ()),
    )


def analyze(
    paths: str | Path | list[str | Path],
    *,
    split: str = "valid",
    metric: str | None = None,
    direction: str | None = None,
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> Analysis:
    """Summaries of every run at or under the paths (a run dir, a sweep dir, or a tree of sweeps)."""
    roots = [os.path.abspath(p) for p in (paths if isinstance(paths, list) else [paths])]
    scan_started_ns = time.time_ns()
    found = [run for root in roots for run in find_runs(root)]
    by_parent: dict[str, list[RunFiles]] = {}
    for run in found:
        by_parent.setdefault(run.parent, []).append(run)
    parents = list(by_parent)
    metas = {parent: sweep_meta(parent) for parent in parents}
    objective = resolve_objective([metas[p] for p in parents], split, metric, direction)
    fingerprint = summary_cache.code_fingerprint(summary_numbers.__file__, __file__)
    settings = f"{fingerprint}-{split}-{objective.metric}-{objective.direction}".replace("/", "~")
    cache = summary_cache.SummaryCache(cache_dir or summary_cache.default_directory(), settings)

    records: dict[str, list[Any]] = {}
    cached = {p: cache.load(p) if use_cache else summary_cache.CachedDir() for p in parents}
    missing = []
    for parent, here in by_parent.items():
        keys = np.array([run.key for run in here], dtype=np.int64).reshape(len(here), -1)
        for run, record in zip(here, cached[parent].valid([run.name for run in here], keys), strict=True):
            if record is not None:
                records[run.path] = record
            else:
                missing.append(run)
    hits = len(records)

    results = _read_all(missing, split, objective, workers or (os.cpu_count() or 1))
    trusted = _trusted(missing, scan_started_ns - int(summary_cache.RACY_WINDOW_S * 1e9))
    updates: dict[str, dict[str, tuple | None]] = {}  # per parent: new entries, None to drop one
    read = (record for batch_records in results for record in batch_records)
    for run, record, cacheable in zip(missing, read, trusted, strict=True):
        records[run.path] = record
        updates.setdefault(run.parent, {})[run.name] = (run.key, record) if cacheable else None
    if use_cache:
        for parent, changes in updates.items():
            entries = cached[parent].entries()
            if _whole(parent, roots):
                present = {run.name for run in by_parent[parent]}  # all of it was analyzed
                entries = {name: entry for name, entry in entries.items() if name in present}
            for name, entry in changes.items():
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = entry
            cache.save(parent, entries)

    for parent in parents:  # the sweeps' runs.parquet, where a job could not write its row (or none yet)
        runs_index.rebuild(Path(parent), _changes(by_parent[parent]) if _whole(parent, roots) else None)
    ends = {parent: _ledger_ends(parent, by_parent[parent], records) for parent in parents}
    runs = [_to_summary(run, records[run.path], ends[run.parent]) for run in found]
    problems = [problem for run in found for problem in records[run.path][3]]
    _mark_superseded(runs)
    _apply_marks(runs, parents)
    _read_summaries(runs, objective, problems)
    return Analysis(
        runs=runs,
        problems=problems,
        swept_keys=_swept_keys(runs, [metas[p] for p in parents]),
        split=split,
        objective=objective,
        paths=[str(p) for p in (paths if isinstance(paths, list) else [paths])],
        cache_hits=hits,
        cache_misses=len(missing),
    )


def _whole(parent: str, roots: list[str]) -> bool:
    """Whether every run dir of this sweep dir was found (it is at or under one of the roots)."""
    return any(root == parent or parent.startswith(root + os.sep) for root in roots)


def _changes(here: list[RunFiles]) -> dict[str, int]:
    """runs_index.newest_change_ns of each run dir named as one, from the stats find_runs took."""
    return {
        run.name: max(run.key[1], run.key[6], run.key[11]) for run in here if RUN_DIR_NAME.match(run.name)
    }


def _ledger_ends(
    parent: str, here: list[RunFiles], records: dict[str, list[Any]]
) -> dict[str, tuple[str, str | None]]:
    """(state, error) of each run dir whose last attempt the sweep's ledger knows ended, read only where a
    run's status.json has not seen its end (the ledger is not part of the cache key: it is read every time)."""
    if all(records[run.path][0]["state"] in FINISHED for run in here):
        return {}
    from sweeper.ledger import ATTEMPTS_FILE, Ledger, is_accounted

    if not os.path.exists(os.path.join(parent, ATTEMPTS_FILE)):
        return {}

    try:
        trial_records = Ledger(parent).records()
    except (SweeperError, OSError, ValueError):
        return {}
    ends: dict[str, tuple[str, str | None]] = {}
    for record in trial_records.values():
        for attempt in record.attempts:  # in order: a run dir's last attempt wins
            if not attempt.get("run_dir"):
                continue
            if "ended_at" in attempt:
                ends[attempt["run_dir"]] = (attempt.get("state"), attempt.get("error"))
            elif is_accounted(attempt):
                ends[attempt["run_dir"]] = (attempt.get("slurm_state"), None)
            else:  # started again: it runs (or its end is still unknown)
                ends.pop(attempt["run_dir"], None)
    return {name: end for name, end in ends.items() if end[0]}


def _read_summaries(runs: list[RunSummary], objective: Objective, problems: list[str]) -> None:
    """Each run's summary.json (read every time: it is not part of the cache key). Where the objective is a
    summary number rather than a metrics column (`--metric test/acc`), it is the run's objective value."""
    for run in runs:
        path = os.path.join(run.run_dir, SUMMARY_FILE)
        try:
            size = os.stat(path).st_size
        except OSError:
            continue
        data = _read_json(path, size, problems) or {}
        run.summary = {
            str(k): float(v)
            for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        if objective.metric not in run.metrics and objective.metric in run.summary:
            run.objective, run.objective_epoch = run.summary[objective.metric], None


def _apply_marks(runs: list[RunSummary], parents: list[str]) -> None:
    """Each run gets its trial's validity mark from its sweep's ledger (read every time, like the ends)."""
    from sweeper.marks import read_marks

    marks = {parent: read_marks(parent) for parent in parents}
    for run in runs:
        found = marks.get(run.sweep_dir, {}).get(run.trial_id)
        if found is not None:
            run.mark, run.mark_reason = str(found.validity), found.reason


def _mark_superseded(runs: list[RunSummary]) -> None:
    """A trial retried with --fresh has several run dirs in its sweep: the last one (by name) counts."""
    latest: dict[tuple[str, str], RunSummary] = {}
    for run in runs:  # sorted by path, and run dir names start with their time stamp
        key = (run.sweep_dir, run.trial_id)
        if key in latest:
            latest[key].superseded = True
        latest[key] = run


def _swept_keys(runs: list[RunSummary], sweeps: list[dict]) -> list[str]:
    swept: dict[str, None] = {}
    for meta in sweeps:  # the spec's order, where the sweep says it
        swept.update(dict.fromkeys(meta.get("swept_keys") or []))
    for run in runs:
        swept.update(dict.fromkeys(run.params))
    return list(swept)


def require_metric(analysis: Analysis, metric: str) -> None:
    from sweeper.schema import did_you_mean

    available = analysis.metrics
    if available and metric not in available:
        raise SweeperError(
            f"--metric {metric}: no run logged it{did_you_mean(metric, available)}; "
            f"metrics: {', '.join(m for m in available if m not in ('epoch', 'time_s', 'segment'))}"
        )
