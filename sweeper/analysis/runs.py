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

import contextlib
import gc
import hashlib
import json
import math
import operator
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.analysis import cache as summary_cache
from sweeper.analysis.fields import BOOLEAN_FIELDS, EPOCH_FIELDS, FIELDS
from sweeper.errors import SweeperError
from sweeper.fsutil import read_bytes, read_json
from sweeper.ledger import INDEX_FILE
from sweeper.objective import Objective
from sweeper.run_files import CONFIG_FILE, METRICS_FILE, RUN_DIR_NAME, STATUS_FILE, SUMMARY_FILE
from sweeper.states import FINISHED, NOT_A_RESULT

SWEEP_FILE = "sweep.json"
RUN_FILES = (METRICS_FILE, CONFIG_FILE, STATUS_FILE)
# The code a record depends on besides this file, hashed into the cache's settings (by path: imported only
# where files are read, with numpy and pyarrow).
SUMMARY_SOURCES = tuple(
    Path(__file__).with_name(name) for name in ("summarize.py", "fields.py", "metric_files.py")
)
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
    cache_misses: int = 0  # read from the run's files or taken from its index row (below)
    index_hits: int = 0  # of the misses: records the jobs left in runs.parquet, for files unchanged since

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


@dataclass(slots=True)
class RunFiles:
    """A run dir as found on disk, with the stat of its three files: its cache key (see cache.py)."""

    path: str
    key: tuple[int, ...]  # (size, mtime_ns, ctime_ns, inode, device) x RUN_FILES; -1s for a missing file
    parent: str
    name: str
    summary_size: int = -1  # of its summary.json (-1: none), read every time outside the cache

    def size(self, file_index: int) -> int:
        """Size of RUN_FILES[file_index], -1 where missing."""
        return self.key[5 * file_index]


MISSING_STAT = (-1, -1, -1, -1, -1)
# Stats relative to the parent dir's descriptor skip resolving the whole path again for every file (~15%
# of finding 10,000 runs).
_DIR_FD = os.stat in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def _stat_key(path: str, dir_fd: int | None = None) -> tuple[int, ...]:
    try:
        st = os.stat(path, dir_fd=dir_fd)
    except OSError:
        return MISSING_STAT
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _run_files(parent: str, name: str, dir_fd: int | None = None) -> RunFiles | None:
    """The run dir parent/name, or None where it is not one (none of the run files, and not named as one).
    `dir_fd`: an open descriptor of parent (paths are then resolved from it)."""
    base = name if dir_fd is not None else f"{parent}/{name}"
    key = (
        _stat_key(f"{base}/{METRICS_FILE}", dir_fd)
        + _stat_key(f"{base}/{CONFIG_FILE}", dir_fd)
        + _stat_key(f"{base}/{STATUS_FILE}", dir_fd)
    )
    if key[0] < 0 and key[5] < 0 and key[10] < 0 and not RUN_DIR_NAME.match(name):
        return None
    return RunFiles(f"{parent}/{name}", key, parent, name, _stat_key(f"{base}/{SUMMARY_FILE}", dir_fd)[0])


def find_runs(path: str | Path) -> list[RunFiles]:
    """Run dirs at or under path (hidden dirs and symlinked dirs, e.g. `latest`, are not descended into).

    Each candidate dir costs four stat calls (its three files and summary.json; no listing): a sweep of
    10,000 runs is found in ~0.1 s.
    """
    top = os.path.abspath(path)
    run = _run_files(*os.path.split(top))
    if run is not None:
        return [run]
    found: list[RunFiles] = []
    stack = [top]
    while stack:
        parent = stack.pop()
        try:
            entries = list(os.scandir(parent))
            dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY) if _DIR_FD else None
        except OSError:
            continue
        try:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                run = _run_files(parent, entry.name, dir_fd)
                if run is not None:
                    found.append(run)
                else:
                    stack.append(entry.path)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    return sorted(found, key=lambda run: run.path)


def find_run_dirs(path: str | Path) -> list[Path]:
    return [Path(run.path) for run in find_runs(path)]


# -- reading one batch of runs ------------------------------------------------------------------------------
def _read_json(path: str, size_hint: int, problems: list[str]) -> dict | None:
    """The JSON object in the file, or None with a problem line where it cannot be read."""
    try:
        data = json.loads(read_bytes(path, size_hint))
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


def _read_batch(runs: list[RunFiles], split: str, objective: Objective) -> list[list[Any]]:
    """A record per run: [meta, numbers (FIELDS order), metric columns, problem lines]."""
    from sweeper.analysis import metric_files  # pyarrow: imported only where files are read

    file_problems: list[list[str]] = [[] for _ in runs]
    metas = [_meta(run, file_problems[i]) for i, run in enumerate(runs)]
    files = [(f"{run.path}/{METRICS_FILE}", run.size(0)) for run in runs]
    planned = [meta["epochs_planned"] for meta in metas]
    rows, columns_of, problems = metric_files.summaries(files, planned, split, objective)
    for i, problem in enumerate(problems):
        if problem:
            file_problems[i].append(problem)
    return [[metas[i], rows[i], columns_of[i], file_problems[i]] for i in range(len(runs))]


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
    times = operator.itemgetter(1, 2, 6, 7, 11, 12)  # mtime_ns and ctime_ns of the three files (-1: missing)
    return [max(times(run.key)) < trusted_before_ns for run in runs]


PROCESSES_FROM = 2000  # below this many runs to read, forking reader processes costs more than it saves


def _read_all(runs: list[RunFiles], split: str, objective: Objective, workers: int) -> list[list[list[Any]]]:
    """Records of every run, in order: batches read by `workers` forked processes when there are many runs
    (reading holds the GIL in JSON parsing and pyarrow's Python layer, so threads would not use the cores),
    in this process otherwise."""
    batches = list(_batches(runs))
    if workers < 2 or len(runs) < PROCESSES_FROM:
        return [_read_batch(batch, split, objective) for batch in batches]
    # here, not at the top: multiprocessing and concurrent.futures import socket and logging (~20 ms of
    # every analyze, which mostly reads its records from the cache)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        return [_read_batch(batch, split, objective) for batch in batches]
    from sweeper.analysis import metric_files  # noqa: F401  (imported once, before the readers fork)

    context = multiprocessing.get_context("fork")
    # the readers collect garbage as usual (paused_gc is for this process's records; pyarrow's objects are not)
    with ProcessPoolExecutor(min(workers, len(batches)), mp_context=context, initializer=gc.enable) as pool:
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


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while an analysis builds its objects (tens of thousands of records,
    none of them in a cycle: the collector's passes over them were ~15% of a warm analysis of 10,000 runs).
    Reference counting still frees everything; the collector's previous state is restored."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    with paused_gc():
        return _analyze(paths, split, metric, direction, use_cache, cache_dir, workers)


def _analyze(
    paths: str | Path | list[str | Path],
    split: str,
    metric: str | None,
    direction: str | None,
    use_cache: bool,
    cache_dir: str | Path | None,
    workers: int | None,
) -> Analysis:
    roots = [os.path.abspath(p) for p in (paths if isinstance(paths, list) else [paths])]
    scan_started_ns = time.time_ns()
    found = [run for root in roots for run in find_runs(root)]
    by_parent: dict[str, list[RunFiles]] = {}
    for run in found:
        by_parent.setdefault(run.parent, []).append(run)
    parents = list(by_parent)
    metas = {parent: sweep_meta(parent) for parent in parents}
    objective = resolve_objective([metas[p] for p in parents], split, metric, direction)
    settings = _settings(split, objective)
    cache = summary_cache.SummaryCache(cache_dir or summary_cache.default_directory(), settings)

    records: dict[str, list[Any]] = {}
    cached = {p: cache.load(p) if use_cache else summary_cache.CachedDir() for p in parents}
    missing = []
    for parent, here in by_parent.items():
        valid = cached[parent].valid([run.name for run in here], [run.key for run in here])
        for run, record in zip(here, valid, strict=True):
            if record is not None:
                records[run.path] = record
            else:
                missing.append(run)
    hits = len(records)

    taken = _index_records(missing, settings) if use_cache else {}
    to_read = [run for run in missing if run.path not in taken]
    results = _read_all(to_read, split, objective, workers or (os.cpu_count() or 1))
    trusted = _trusted(missing, scan_started_ns - int(summary_cache.RACY_WINDOW_S * 1e9))
    updates: dict[str, dict[str, tuple | None]] = {}  # per parent: new entries, None to drop one
    read = (record for batch_records in results for record in batch_records)
    for run, cacheable in zip(missing, trusted, strict=True):
        record = taken[run.path] if run.path in taken else next(read)
        records[run.path] = record
        updates.setdefault(run.parent, {})[run.name] = (run.key, record) if cacheable else None
    # the analysis a job's record is (split valid, the sweep's own objective): rows made here carry records
    default = {
        p: split == "valid" and objective == resolve_objective([metas[p]], "valid", None) for p in parents
    }
    index_checks = {
        parent: _update_index(
            parent,
            by_parent[parent],
            cached[parent],
            parent in updates,
            roots,
            records if default[parent] else None,
            settings,
        )
        for parent in parents
    }
    if use_cache:
        for parent in parents:
            changes = updates.get(parent, {})
            if not changes and index_checks[parent] == cached[parent].index_check:
                continue
            entries = cached[parent].entries()
            if _whole(parent, roots):
                present = {run.name for run in by_parent[parent]}  # all of it was analyzed
                entries = {name: entry for name, entry in entries.items() if name in present}
            for name, entry in changes.items():
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = entry
            cache.save(parent, entries, index_checks[parent])

    ends = {parent: _ledger_ends(parent, by_parent[parent], records) for parent in parents}
    runs = [_to_summary(run, records[run.path], ends[run.parent]) for run in found]
    problems = [problem for run in found for problem in records[run.path][3]]
    _mark_superseded(runs)
    _apply_marks(runs, parents)
    _read_summaries(runs, found, objective, problems)
    return Analysis(
        runs=runs,
        problems=problems,
        swept_keys=_swept_keys(runs, [metas[p] for p in parents]),
        split=split,
        objective=objective,
        paths=[str(p) for p in (paths if isinstance(paths, list) else [paths])],
        cache_hits=hits,
        cache_misses=len(missing),
        index_hits=len(taken),
    )


def _settings(split: str, objective: Objective) -> str:
    """What a record depends on besides the run's files: the code computing it, the split, the objective."""
    fingerprint = summary_cache.code_fingerprint(__file__, *SUMMARY_SOURCES)
    return f"{fingerprint}-{split}-{objective.metric}-{objective.direction}".replace("/", "~")


def ended_record(run_dir: str | Path) -> str | None:
    """The run's record as a default `analyze` (split valid, the sweep's objective) would read it now, as
    JSON for the run's row of runs.parquet, with the stat of the files it was read from: the job writes it
    when the run ends, so that a first analysis on another machine or account (no summary cache yet) takes
    it instead of reading the run's files, for as long as their stat is unchanged. The run's files are
    replaced atomically (a new inode at each write), so a later change never keeps the key. None where the
    run's files have a problem (its line would name this machine's path)."""
    parent, name = os.path.split(os.path.abspath(run_dir))
    run = _run_files(parent, name)
    if run is None:
        return None
    objective = resolve_objective([sweep_meta(parent)], "valid", None)
    record = _read_batch([run], "valid", objective)[0]
    if record[3]:
        return None
    return _record_json(_settings("valid", objective), run.key, record)


def _record_json(settings: str, key: tuple[int, ...], record: list[Any]) -> str:
    return json.dumps({"settings": settings, "key": _portable(key), "record": record})


def _portable(key: tuple[int, ...]) -> list[int]:
    """A run's stat key less the device numbers, which differ between the machines that mount one file
    system (a compute node and the login node); sizes, times and inode numbers are the file server's."""
    return [value for i, value in enumerate(key) if i % 5 != 4]


def _index_records(missing: list[RunFiles], settings: str) -> dict[str, list[Any]]:
    """Records the jobs left in their sweeps' runs.parquet (ended_record) for runs not in the summary
    cache, where the settings are these and the run's files have the stat they had then."""
    by_parent: dict[str, list[RunFiles]] = {}
    for run in missing:
        by_parent.setdefault(run.parent, []).append(run)
    taken: dict[str, list[Any]] = {}
    for parent, here in by_parent.items():
        if not os.path.exists(os.path.join(parent, INDEX_FILE)):
            continue
        from sweeper import runs_index

        texts = runs_index.records(Path(parent))
        candidates = [run for run in here if texts.get(run.name)]
        try:  # one parse for all of them (10,000 calls of json.loads cost more than the parsing)
            parsed = json.loads("[" + ",".join(texts[run.name] for run in candidates) + "]")
        except ValueError:
            parsed = [_parse(texts[run.name]) for run in candidates]
        for run, data in zip(candidates, parsed, strict=True):
            if (
                isinstance(data, dict)
                and data.get("settings") == settings
                and data.get("key") == _portable(run.key)
            ):
                taken[run.path] = data["record"]
    return taken


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _update_index(
    parent: str,
    here: list[RunFiles],
    cached: summary_cache.CachedDir,
    read_some: bool,
    roots: list[str],
    records: dict[str, list[Any]] | None,
    settings: str,
) -> list | None:
    """Bring the sweep's runs.parquet up to date (where a job could not write its row, or none yet) and
    return what it was checked against, to be kept with the cache: the index's stat and a digest of the run
    dir names. Where the same names are found, none of their files changed since (every run a cache hit:
    a hit's key is the one its files had when the index was last checked, as an entry made from younger
    files is not kept) and the index has the same stat, nothing is read (pyarrow is not even imported).
    None where the index was not checked whole. `records`: this analysis's records by path, where they are
    what the sweep's jobs write into their rows (None otherwise: rows made here then carry none)."""
    whole = _whole(parent, roots)
    names = hashlib.sha1("\n".join(run.name for run in here).encode()).hexdigest() if whole else None
    if (
        whole
        and not read_some
        and cached.index_check == [*_stat_key(os.path.join(parent, INDEX_FILE)), names]
    ):
        return cached.index_check
    from sweeper import runs_index

    by_name = {run.name: run for run in here}

    def ended(name: str) -> str | None:  # a row made here carries the record its job would have left
        run = by_name.get(name)
        if records is None or run is None or records[run.path][3]:
            return None
        return _record_json(settings, run.key, records[run.path])

    current = runs_index.rebuild(Path(parent), _changes(here) if whole else None, ended)
    # not current: a sweep dir this user cannot write, checked again every time
    return [*_stat_key(os.path.join(parent, INDEX_FILE)), names] if whole and current else None


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


def _read_summaries(
    runs: list[RunSummary], found: list[RunFiles], objective: Objective, problems: list[str]
) -> None:
    """Each run's summary.json (read every time: it is not part of the cache key; find_runs took its size).
    Where the objective is a summary number rather than a metrics column (`--metric test/acc`), it is the
    run's objective value."""
    for run, files in zip(runs, found, strict=True):
        if files.summary_size < 0:
            continue
        data = _read_json(os.path.join(run.run_dir, SUMMARY_FILE), files.summary_size, problems) or {}
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
