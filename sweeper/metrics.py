"""The one metrics schema, and its writer: metrics.parquet (atomic, rewritten every epoch) + TensorBoard;
and summary.json, the numbers a run produces once (final test metrics, a landscape measure).

Schema (documented in docs/metrics.md): one row per epoch, `epoch` (int64, 1-based), `time_s` (float64,
training seconds since the run started, summed over requeues), `lr` (float64), `segment` (int64: 1, then
+1 for each `sweeper continue`), then one float64 column per metric named `split/metric` (`train/loss`,
`valid/acc`, ...). Extra metrics are extra columns.

pyarrow is imported by the functions that use it: modules that only need the file names (`analyze` on
its cached path) do not pay its import (~60 ms).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper import extras
from sweeper.fsutil import atomic_write_bytes, atomic_write_json, read_json
from sweeper.run_files import METRICS_FILE, SUMMARY_FILE

if TYPE_CHECKING:
    import pyarrow as pa

SCHEMA_VERSION = "1"
FIXED_COLUMNS = ("epoch", "time_s", "lr", "segment")


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) -> a table with the fixed columns first, metric columns in first-seen order."""
    return columns_to_table(Columns(rows).values)


class Columns:
    """Rows (dicts) as one list per column, the fixed columns first, metric columns in first-seen order,
    grown a row at a time: a table of them costs what pyarrow's conversion of each list costs (C), where
    building each column from every row dict again cost ~4 us per row per epoch in Python (5 ms of each
    epoch by epoch 1000)."""

    def __init__(self, rows: Iterable[dict[str, Any]] = ()) -> None:
        self.values: dict[str, list[Any]] = {name: [] for name in FIXED_COLUMNS}
        self.count = 0
        for row in rows:
            self.append(row)

    def append(self, row: dict[str, Any]) -> None:
        for name in row:
            if name not in self.values:
                self.values[name] = [None] * self.count
        for name, values in self.values.items():
            value = row.get(name)
            if name == "segment" and value is None:  # a row from before segments: the first segment
                value = 1
            values.append(value)
        self.count += 1


def columns_to_table(columns: dict[str, list[Any]]) -> pa.Table:
    import pyarrow as pa

    types = {"epoch": pa.int64(), "segment": pa.int64()}
    table = pa.table(
        {name: pa.array(values, type=types.get(name, pa.float64())) for name, values in columns.items()}
    )
    return table.replace_schema_metadata({"sweeper.schema": SCHEMA_VERSION})


def write_metrics(path: str | Path, rows: list[dict[str, Any]], durable: bool = True) -> None:
    """metrics.parquet of `rows`, written atomically."""
    write_columns(path, Columns(rows).values, durable)


def write_columns(path: str | Path, columns: dict[str, list[Any]], durable: bool = True) -> None:
    """metrics.parquet of rows kept by column (`Columns.values`), written atomically."""
    import pyarrow.parquet as pq

    table = columns_to_table(columns)
    buffer = io.BytesIO()
    # Written for readers that open thousands of these small files (`analyze`, polars, duckdb): snappy,
    # not zstd (on files this small zstd saves ~6% of bytes but its per-page setup makes reading them ~3x
    # slower); no dictionary pages (a column of 100 distinct floats gains nothing from one); and no
    # serialized Arrow schema (int64 and float64 columns need none; parsing it was a fifth of pyarrow's
    # cost of opening a file). Together: 194 vs 238 us per file read (benchmarks/bench_analyze.py).
    # The schema version stays in the file's key-value metadata.
    options = {"compression": "snappy", "use_dictionary": False, "store_schema": False}
    with pq.ParquetWriter(buffer, table.schema.remove_metadata(), **options) as writer:
        writer.write_table(table.replace_schema_metadata())
        writer.add_key_value_metadata({"sweeper.schema": SCHEMA_VERSION})
    atomic_write_bytes(path, buffer.getvalue(), durable)


def read_metrics(path: str | Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path)


def write_summary(run_dir: str | Path, values: dict[str, Any]) -> dict[str, float | None]:
    """Merge numbers into the run's summary.json (one JSON object, name -> number; a later value of a name
    wins), written atomically; returns the whole summary. NaN and inf are kept as null (strict JSON)."""
    checked = {str(k): _number(k, v) for k, v in values.items()}
    path = Path(run_dir) / SUMMARY_FILE
    summary = read_json(path, {}) or {}
    summary.update({k: v if v is None or math.isfinite(v) else None for k, v in checked.items()})
    atomic_write_json(path, summary)
    return summary


class MetricsWriter:
    """Keeps every epoch's row in memory and rewrites the parquet file after each epoch.

    Rewriting a file of a few hundred rows costs well under a millisecond and means a killed job always
    leaves a complete, readable file with every finished epoch (never a half-written row group).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.rows: list[dict[str, Any]] = []
        self._columns = Columns()  # the same rows, by column
        self.tensorboard = tensorboard and extras.installed("tensorboard")
        if tensorboard and not self.tensorboard:
            logging.getLogger(__name__).warning(
                "no TensorBoard mirror of the metrics: tensorboard is not installed (pip install 'sweeper[train]')"
            )
        self.tensorboard_dir = self.run_dir  # where the TensorBoard mirror goes (a command trial's: tb/)
        self._tb = None
        self.hparams: HParams | None = None  # the run's HParams records (set by Run), in its own event file

    def restore(self, rows: list[dict[str, Any]]) -> None:
        """Resume: the rows saved with the checkpoint are the truth; later epochs are dropped everywhere."""
        self.rows = [dict(r) for r in rows]
        self._columns = Columns(self.rows)
        write_columns(self.path, self._columns.values)
        self._open_tb(purge_step=self.last_epoch + 1)

    @property
    def last_epoch(self) -> int:
        return int(self.rows[-1]["epoch"]) if self.rows else 0

    def log(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        if epoch <= self.last_epoch:
            raise ValueError(f"epoch {epoch} logged after epoch {self.last_epoch}: epochs must increase")
        row = {
            "epoch": int(epoch),
            **{k: int(v) if k == "segment" else _number(k, v) for k, v in metrics.items()},
        }
        self.rows.append(row)
        self._columns.append(row)
        self.write_parquet()
        self.mirror(row)
        return row

    def write_parquet(self) -> None:
        """Rewrite metrics.parquet with every row so far: atomic, not fsync'ed (a resume rebuilds it from
        last.pt, which is; `Run.set_state` makes the last one durable at the run's end)."""
        write_columns(self.path, self._columns.values, durable=False)

    def mirror(self, row: dict[str, Any]) -> None:
        """One row's values as TensorBoard scalars at its epoch, flushed."""
        if not self.tensorboard:
            return
        if self._tb is None:
            self._open_tb(purge_step=None)
        for name, value in row.items():
            if name != "epoch" and value is not None:
                self._tb.add_scalar(name, value, global_step=row["epoch"])
        self._tb.flush()

    def _open_tb(self, purge_step: int | None) -> None:
        if not self.tensorboard:
            return
        if self._tb is not None:
            self._tb.close()
        # purge_step makes TensorBoard drop events of epochs redone after a resume.
        self._tb = ScalarWriter(self.tensorboard_dir, purge_step=purge_step, flush_secs=30)
        if self.hparams is not None:
            for summary in self.hparams.start():
                self._tb.add_summary(summary)

    def end(self, state: str) -> None:
        """The run ended: its HParams session end."""
        if not self.tensorboard or self.hparams is None:
            return
        reopened = self._tb is None  # ended after close() (an Optuna worker's runs): close it again
        if reopened:
            self._open_tb(purge_step=None)
        self._tb.add_summary(self.hparams.finish(state))
        self._tb.flush()
        if reopened:
            self.close()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "item"):  # torch / numpy scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
    return float(value)


class ScalarWriter:
    """A TensorBoard event file of scalars, written with tensorboard's own EventFileWriter: the events torch's
    SummaryWriter writes for add_scalar(..., new_style=True, double_precision=True), without importing torch
    (0.4 s instead of 3.4 s here, which every command trial would pay at start-up). Values are float64
    tensors of the `scalars` plugin, so TensorBoard shows what metrics.parquet holds: a `simple_value` is a
    float32 and differed from the parquet value in the 8th digit for most series."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None, flush_secs: float = 30):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.types_pb2 import DT_DOUBLE
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary, self._tensor, self._double = Event, Summary, TensorProto, DT_DOUBLE
        self._metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
        self._writer = EventFileWriter(str(log_dir), max_queue_size=10, flush_secs=flush_secs)
        if purge_step is not None:  # as SummaryWriter(purge_step=...) does
            self._writer.add_event(Event(step=purge_step, file_version="brain.Event:2"))
            self._writer.add_event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add_summary(self, summary, global_step: int = 0) -> None:
        self._writer.add_event(self._event(summary=summary, step=global_step, wall_time=time.time()))

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        tensor = self._tensor(dtype=self._double, double_val=[float(value)])
        summary = self._summary(value=[self._summary.Value(tag=tag, tensor=tensor, metadata=self._metadata)])
        self._writer.add_event(self._event(summary=summary, step=global_step, wall_time=time.time()))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class HParams:
    """The run's records for TensorBoard's HParams plugin (what torch's `summary.hparams` builds, without
    torch): the experiment (hyperparameter and metric names) and the session's start (its values) when the
    event file opens, the session's end (its status) when the run ends. Written into the run's own event
    file, so the HParams table and parallel coordinates have one row per run dir, the swept params and the
    objective; `add_hparams` would have made a sub-run instead. TensorBoard keeps the first record of each
    tag in a run (and the first run's experiment), so the experiment names the objective only, and a run dir
    resumed after a failure keeps its first end status there (status.json has the last)."""

    def __init__(self, params: dict[str, Any], objective: str):
        self.params, self.objective = dict(params), objective

    def _summary(self, tag: str, **content):
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams import metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

        data = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **content).SerializeToString()
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data)
        return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])

    def _experiment(self):
        from tensorboard.plugins.hparams import api_pb2, metadata

        kinds = {bool: "DATA_TYPE_BOOL", str: "DATA_TYPE_STRING"}
        infos = [
            api_pb2.HParamInfo(name=k, type=api_pb2.DataType.Value(kinds.get(type(v), "DATA_TYPE_FLOAT64")))
            for k, v in self._values().items()
        ]
        metric_infos = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=self.objective))]
        experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)
        return self._summary(metadata.EXPERIMENT_TAG, experiment=experiment)

    def _values(self) -> dict[str, Any]:
        values = {}
        for key, value in self.params.items():
            if isinstance(value, bool) or isinstance(value, str):
                values[key] = value
            elif isinstance(value, (int, float)):
                values[key] = float(value)
            elif value is not None:
                values[key] = str(value)
        return values

    def start(self) -> list:
        from tensorboard.plugins.hparams import metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import SessionStartInfo

        info = SessionStartInfo(start_time_secs=time.time())
        for key, value in self._values().items():
            field = {bool: "bool_value", str: "string_value"}.get(type(value), "number_value")
            setattr(info.hparams[key], field, value)
        return [
            self._experiment(),
            self._summary(metadata.SESSION_START_INFO_TAG, session_start_info=info),
        ]

    def finish(self, state: str):
        from tensorboard.plugins.hparams import api_pb2, metadata
        from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo

        from sweeper.states import SUCCEEDED, TrialState

        status = "STATUS_SUCCESS" if state in SUCCEEDED else "STATUS_FAILURE"
        if state == TrialState.PRUNED:
            status = "STATUS_UNKNOWN"  # HParams has no "stopped early": neither a success nor a failure
        end = SessionEndInfo(status=api_pb2.Status.Value(status), end_time_secs=time.time())
        return self._summary(metadata.SESSION_END_INFO_TAG, session_end_info=end)
