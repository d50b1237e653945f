"""A batch of runs' metrics.parquet files -> their summary numbers: one concatenation, then numpy.

The files are read whole (one read call each) and parsed by pyarrow; the rows of every run go back to back
into flat columns that `summarize` reduces without a Python loop over rows. A file that cannot be read is
a problem line for its run. analysis/runs.py imports this module only when some run must be read, so a
cached `analyze` never imports pyarrow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweeper.analysis import summarize as summary_numbers
from sweeper.analysis.fields import FIELDS
from sweeper.fsutil import read_bytes
from sweeper.objective import Objective


def summaries(
    files: list[tuple[str, int]], planned: list[int | None], split: str, objective: Objective
) -> tuple[list[list[float]], list[list[str]], list[str | None]]:
    """Per run (its metrics file's path and size, -1 where missing; its planned epochs): the numbers in
    FIELDS order (NaN: none), the file's column names, and the problem line of a file that cannot be read."""
    wanted = summary_numbers.columns_needed(split, objective)
    columns_of: list[list[str]] = [[] for _ in files]
    problems: list[str | None] = [None] * len(files)
    tables, owners, rows_of = [], [], {}
    for index, (path, size) in enumerate(files):
        if size < 0:
            continue
        try:
            table, columns_of[index] = _read_table(path, size, wanted)
        except (ValueError, OSError) as exc:
            problems[index] = f"{path}: {exc}"
            continue
        if table.num_rows:  # none: a run that has not finished its first epoch
            tables.append(table)
            owners.append(index)
            rows_of[index] = table.num_rows

    numbers = np.full((len(files), len(FIELDS)), np.nan)
    numbers[:, FIELDS.index("epochs_run")] = 0
    paths = [path for path, _ in files]
    combined, owners = _combine(tables, owners, problems, paths) if tables else (None, [])
    if combined is not None:
        lengths = np.array([rows_of[owner] for owner in owners], dtype=np.int64)
        present = {name: _valid(combined.column(name)) for name in combined.column_names}
        columns = {name: _floats(combined.column(name), present[name]) for name in combined.column_names}
        _order_epochs(lengths, columns, present)
        expected = np.array([planned[i] or np.nan for i in owners], dtype=float)
        summary = summary_numbers.summarize(lengths, columns, present, expected, split, objective)
        numbers[owners] = np.column_stack([summary[name] for name in FIELDS])
    return numbers.tolist(), columns_of, problems


def _read_table(path: str, size_hint: int, wanted: list[str]) -> tuple[pa.Table, list[str]]:
    """The wanted columns of one metrics file, and all its column names. Raises ValueError with a reason."""
    data = read_bytes(path, size_hint)
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        # pre_buffer coalesces reads of remote files; over bytes in memory it only costs (~4% of a read)
        parquet = pq.ParquetFile(pa.BufferReader(data), pre_buffer=False)
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


def _floats(column: pa.ChunkedArray, present: np.ndarray) -> np.ndarray:
    """A float64 column as a numpy array, NaN where null, from its data buffers: pyarrow's to_numpy imports
    pandas where it is installed, 0.2-0.3 s in each reader process of a cold analyze."""
    parts = [
        np.frombuffer(chunk.buffers()[1], dtype=np.float64, count=len(chunk), offset=8 * chunk.offset)
        for chunk in column.chunks
        if len(chunk)
    ]
    values = np.concatenate(parts) if parts else np.empty(0)  # a copy: writable
    values[~present] = np.nan
    return values


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
