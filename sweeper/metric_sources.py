"""Incremental readers of a command trial's per-epoch metrics (JSON lines, TensorBoard events, Lightning CSV,
a regex over stdout): polled while the program runs, each returns only the rows new since the last poll."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1 << 20  # longer lines in a tailed file are skipped with a warning
MAX_WARNINGS = 50  # per source; further problems are counted in `suppressed_warnings`
KNOWN_EPOCHS = 10_000  # per-epoch values kept for merging repeated epochs (most recently updated)
_CHUNK = 1 << 20
_CHECK_BYTES = 64  # bytes compared at the head and before the offset, to notice a rewritten file

_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "valid",
    "valid": "valid",
    "validation": "valid",
    "test": "test",
}
_KEPT = {"lr", "time_s", "epoch"}
_LIGHTNING_LR = re.compile(r"lr-[A-Za-z][A-Za-z0-9]*")  # LearningRateMonitor's `lr-AdamW`


def metric_name(raw: str) -> str:
    """The sweeper name of a metric logged as `raw`; the one rule for every source.

    `split/metric` and `split_metric` become `split/metric`, with `val` / `validation` -> `valid` and
    `training` -> `train` (`val_acc`, `val/acc`, `valid_acc` -> `valid/acc`; `train_loss` -> `train/loss`);
    `metric/split` (`Loss/train`, as in PyTorch's tutorial) -> `train/Loss`. The split is recognised in any
    case and written in lower case. `lr`, `time_s` stay; Lightning's LearningRateMonitor name `lr-AdamW`
    -> `lr`. Any other name (`loss`, `learning_rate`, `eval_loss`) is kept as it is.
    """
    name = raw.strip()
    if name in _KEPT:
        return name
    if _LIGHTNING_LR.fullmatch(name):
        return "lr"
    for sep in ("/", "_"):
        head, found, rest = name.partition(sep)
        if found and rest and head.lower() in _SPLITS:
            return f"{_SPLITS[head.lower()]}/{rest}"
    head, found, rest = name.partition("/")
    if found and head and rest.lower() in _SPLITS:
        return f"{_SPLITS[rest.lower()]}/{head}"
    return name


@dataclass
class Row:
    """One epoch's metrics."""

    epoch: int
    values: dict[str, float]


def _snippet(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same_values(a: dict[str, float] | None, b: dict[str, float]) -> bool:
    """Equal dicts, NaN equal to NaN."""
    if a is None or a.keys() != b.keys():
        return False
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in ((a[k], b[k]) for k in b))


class MetricSource:
    """Base: a source of per-epoch rows, polled by the wrapper job while the program runs.

    The wrapper calls `poll()` every few seconds, `feed_line()` for every line the program prints, and
    `poll(final=True)` once after the program exited (which flushes rows still held back). Bad input never
    raises: every malformed line becomes one message in `warnings` (with its file and line number), which
    the caller drains.

    Rows: one `Row(epoch, values)` per epoch, metric names `split/metric` (see `metric_name`), plus `lr`
    and `time_s` when the program gives them. Epochs are the program's own numbers (Lightning's and Keras's
    count from 0), not renumbered. An epoch's row may be returned again (by a later poll, or after the
    program restarted and logs that epoch anew); the JSON lines, TensorBoard and regex sources return, each
    time, every value known for that epoch so far, so the caller can simply overwrite the epoch's row.
    """

    name = "source"

    def __init__(self) -> None:
        self.warnings: list[str] = []  # one message per malformed input; drained by the caller
        self.suppressed_warnings = 0  # problems not reported once MAX_WARNINGS were
        self._warned = 0
        self._known: dict[int, dict[str, float]] = {}
        self._summary: dict[str, float] = {}  # numbers given once (`{"summary": {...}}`), not yet taken

    def take_summary(self) -> dict[str, float]:
        """Summary numbers found since the last call (the caller writes them to summary.json)."""
        taken, self._summary = self._summary, {}
        return taken

    def poll(self, final: bool = False) -> list[Row]:
        """Rows new since the last poll. `final`: the program exited, flush everything held back."""
        return []

    def feed_line(self, line: str) -> list[Row]:
        """Rows found in one line of the program's stdout (sources that read stdout; the others: [])."""
        return []

    def describe(self) -> str:
        return self.name

    def _warn(self, message: str) -> None:
        self._warned += 1
        if self._warned <= MAX_WARNINGS:
            self.warnings.append(message)
        else:
            if self._warned == MAX_WARNINGS + 1:
                self.warnings.append(f"{self.name}: more problems in the metrics input; not reported")
            self.suppressed_warnings += 1

    def _merge(self, updates: Iterable[tuple[int, dict[str, float]]]) -> list[Row]:
        """Fold (epoch, values) updates into what is known per epoch; one row per epoch touched, in order
        of first appearance, each with every value known for its epoch (a later value wins)."""
        touched: dict[int, None] = {}
        for epoch, values in updates:
            if not values:
                continue
            known = self._known.pop(epoch, None) or {}  # pop + reinsert: most recently updated last
            known.update(values)
            self._known[epoch] = known
            touched[epoch] = None
            while len(self._known) > KNOWN_EPOCHS:
                del self._known[next(iter(self._known))]
        return [Row(epoch, dict(self._known[epoch])) for epoch in touched if epoch in self._known]


def _as_epoch(value: Any) -> int | None:
    """An epoch number: an integer, or an integral float (3.0); booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _parse_epoch_text(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return _as_epoch(float(text))
    except ValueError:
        return None


class _LineTail:
    """The complete lines appended to a file since the last read, by byte offset.

    A trailing line without its newline is left for a later read (consumed at `final`). A file that was
    replaced, truncated or rewritten (its first bytes or the bytes before the offset changed) is read again
    from the start: `read` then returns `restarted=True`. Lines longer than MAX_LINE_BYTES are skipped.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.line_no = 0
        self._ident: tuple[int, int] | None = None
        self._head = b""
        self._tail = b""
        self._skipping = False

    def _unchanged(self, f, size: int) -> bool:
        if size < self.offset:
            return False
        f.seek(0)
        if f.read(len(self._head)) != self._head:
            return False
        f.seek(self.offset - len(self._tail))
        return f.read(len(self._tail)) == self._tail

    def read(self, final: bool = False) -> tuple[bool, list[tuple[int, str]], list[str]]:
        """(restarted, [(line number, text)], problems as "line N: ..." messages)."""
        lines: list[tuple[int, str]] = []
        problems: list[str] = []
        restarted = False
        try:
            f = open(self.path, "rb")  # closed by the `with` below
        except OSError:
            if self._ident is not None:  # deleted: a new file of that name is read from its start
                self._reset()
            return False, lines, problems
        with f:
            st = os.fstat(f.fileno())
            ident = (st.st_dev, st.st_ino)
            if self._ident is not None and (ident != self._ident or not self._unchanged(f, st.st_size)):
                self._reset()
                restarted = True
            self._ident = ident
            f.seek(self.offset)
            carry = b""
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                buffer = carry + chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    self.line_no += 1
                    if self._skipping:
                        self._skipping = False
                    else:
                        lines.append(
                            (self.line_no, buffer[start:end].decode("utf-8", "replace").rstrip("\r"))
                        )
                    self.offset += end + 1 - start
                    start = end + 1
                carry = buffer[start:]
                if len(carry) > MAX_LINE_BYTES:
                    if not self._skipping:
                        problems.append(
                            f"line {self.line_no + 1}: longer than {MAX_LINE_BYTES} bytes, skipped"
                        )
                        self._skipping = True
                    self.offset += len(carry)
                    carry = b""
            if final and carry and not self._skipping:
                self.line_no += 1
                lines.append((self.line_no, carry.decode("utf-8", "replace").rstrip("\r")))
                self.offset += len(carry)
            f.seek(0)
            self._head = f.read(min(_CHECK_BYTES, self.offset))
            back = min(_CHECK_BYTES, self.offset)
            f.seek(self.offset - back)
            self._tail = f.read(back)
        return restarted, lines, problems


class JsonLinesSource(MetricSource):
    """JSON objects, one per line, appended by the program to a file and/or printed on its stdout:
    `{"epoch": 3, "train/loss": 0.41, "valid/acc": 0.88, "lr": 1e-4}`.

    Every non-blank line of the file must be such an object; on stdout, only lines starting with `{` are
    read (a program prints other things too). `epoch` must be an integer (or an integral number such as
    3.0). Values must be numbers (NaN / Infinity, as Python's json writes them, are kept); `null` values are
    skipped silently; any other value (a string, a boolean, a list) is a warning naming the key, the rest of
    the row kept. Several lines for one epoch merge (a later value wins). A file that is rewritten or
    truncated is read again from its start. A line `{"summary": {"test/acc": 0.97}}` (no epoch needed)
    gives numbers the run produces once: they go to summary.json (`take_summary`).
    """

    name = "jsonl"

    def __init__(self, path: str | Path | None, *, stdout: bool = True, env_var: str | None = None):
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.stdout = stdout
        self.env_var = env_var
        self._tail = _LineTail(self.path) if self.path is not None else None
        self._stdout_line = 0

    def describe(self) -> str:
        places = []
        if self.path is not None:
            places.append(f"in ${self.env_var} ({self.path})" if self.env_var else f"in {self.path}")
        if self.stdout:
            places.append("on stdout")
        return "JSON lines " + " or ".join(places)

    def poll(self, final: bool = False) -> list[Row]:
        if self._tail is None:
            return []
        _, lines, problems = self._tail.read(final)
        label = self.path.name
        for problem in problems:
            self._warn(f"{label}:{problem.removeprefix('line ')}")
        updates = []
        for line_no, text in lines:
            if text.strip():
                update = self._parse(text, f"{label}:{line_no}")
                if update is not None:
                    updates.append(update)
        return self._merge(updates)

    def feed_line(self, line: str) -> list[Row]:
        self._stdout_line += 1
        text = line.strip()
        if not self.stdout or not text.startswith("{"):
            return []
        update = self._parse(text, f"stdout:{self._stdout_line}")
        return self._merge([update]) if update is not None else []

    def _parse(self, text: str, where: str) -> tuple[int, dict[str, float]] | None:
        try:
            obj = json.loads(text)
        except ValueError as e:
            self._warn(f"{where}: not JSON: {e}: {_snippet(text)}")
            return None
        if not isinstance(obj, dict):
            self._warn(f"{where}: not a JSON object: {_snippet(text)}")
            return None
        if "summary" in obj:
            self._summary.update(self._numbers(obj.pop("summary"), where, "summary"))
            if "epoch" not in obj:
                return None
        if "epoch" not in obj:
            self._warn(f"{where}: no 'epoch': {_snippet(text)}")
            return None
        epoch = _as_epoch(obj["epoch"])
        if epoch is None:
            self._warn(f"{where}: 'epoch' must be an integer, got {_snippet(json.dumps(obj['epoch']), 40)}")
            return None
        return epoch, self._numbers({k: v for k, v in obj.items() if k != "epoch"}, where, "")

    def _numbers(self, obj: Any, where: str, what: str) -> dict[str, float]:
        """The numbers of a JSON object, a warning naming each key that is not one."""
        if what and not isinstance(obj, dict):
            self._warn(f"{where}: '{what}' must be an object of numbers: {_snippet(json.dumps(obj), 40)}")
            return {}
        values: dict[str, float] = {}
        for key, value in obj.items():
            if value is None:
                continue
            name = metric_name(key)
            if not name:
                self._warn(f"{where}: an empty metric name: ignored")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._warn(f"{where}: '{key}' is not a number ({_snippet(json.dumps(value), 40)}): ignored")
                continue
            try:
                values[name] = float(value)
            except OverflowError:
                self._warn(f"{where}: '{key}' is too large for a float: ignored")
        return values


class _EventFile:
    """One event file being read: its loader and the values not returned yet (by raw tag)."""

    def __init__(self, loader: Any, label: str, split: str | None):
        self.loader = loader
        self.label = label  # path relative to the watched directory, for messages and `tags` keys
        self.split = split  # the split its directory names (Keras: logs/train/, logs/validation/)
        self.steps: dict[int, dict[str, float]] = {}  # by step; in epoch mode, steps whose epoch is unknown
        self.max_step: int | None = None
        self.seen: set[str] = set()  # every tag read, for the `X_step` / `X_epoch` pairs
        self.epoch_mode = False  # the file logs an `epoch` scalar (Lightning): steps are not epochs
        self.step_epoch: dict[int, int] = {}  # the latest steps' epochs (epoch mode)
        self.last_epoch: int | None = None
        self.epochs: dict[int, dict[str, float]] = {}  # by epoch (epoch mode)
        self.max_epoch: int | None = None
        self.broken = False


class TensorBoardSource(MetricSource):
    """Scalars in TensorBoard event files written anywhere under `directory` (recursively, several files,
    files appearing later), read incrementally with tensorboard's own loader; the step is the epoch.

    Names: `tags` maps a tag (or `<dir>/<tag>`, the event file's directory relative to `directory` and
    the tag, to tell apart Keras's `train/` and `validation/` files) to a sweeper name; any other tag goes
    through `metric_name`, prefixed with the split its directory names when it has none (Keras's
    `validation/…tfevents…` tag `epoch_loss` -> `valid/epoch_loss`). When a file has both `X_step` and
    `X_epoch` tags (Lightning's `on_step=True, on_epoch=True`), `X_step` is dropped and `X_epoch` named `X`.

    Completion: epoch e's row is returned once the same file has a scalar with a step greater than e (so a
    row lags one epoch), or at `poll(final=True)`. Rows of one epoch from several files merge. Event files
    under any of `exclude` (the job's own TensorBoard mirror, `<run_dir>/tb/`) are never read.

    Epoch mode: a file with a scalar named `epoch` (Lightning's TensorBoardLogger logs one with every call,
    at global steps; `tags` can map another tag to `epoch`) has its steps mapped to epochs instead: each
    value goes to the epoch (rounded down) logged at its step, or, for a step without one, to the file's
    latest epoch (dropped when it has none yet); epoch e is complete once the file has a value of a later
    epoch, or at final.
    """

    name = "tensorboard"

    def __init__(
        self,
        directory: str | Path,
        tags: dict[str, str] | None = None,
        exclude: Sequence[str | Path] = (),
    ):
        super().__init__()
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util import tensor_util

        self._loader_class, self._tensor_util = EventFileLoader, tensor_util
        self.directory = Path(directory)
        self.tags = dict(tags or {})
        self.exclude = [Path(p) for p in exclude]
        self._excluded_resolved = [p.resolve() for p in self.exclude]
        self._files: dict[Path, _EventFile] = {}

    def describe(self) -> str:
        text = f"TensorBoard event files under {self.directory}"
        if self.exclude:
            text += " (not under " + ", ".join(str(p) for p in self.exclude) + ")"
        return text

    def _excluded(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved.is_relative_to(p) for p in self._excluded_resolved)

    def _discover(self) -> list[Path]:
        found = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not self._excluded(Path(root, d)))
            found += [Path(root, f) for f in sorted(files) if "tfevents" in f]
        return [p for p in found if not self._excluded(p)]

    def _open(self, path: Path) -> _EventFile | None:
        rel = path.relative_to(self.directory)
        parent = rel.parent.as_posix()
        split = _SPLITS.get(rel.parent.name.lower()) if parent != "." else None
        try:
            loader = self._loader_class(str(path))
        except Exception as e:  # vanished between listing and opening, unreadable
            self._warn(f"{rel.as_posix()}: cannot open: {e}")
            return None
        return _EventFile(loader, rel.as_posix(), split)

    def _scalar(self, value: Any) -> float | None:
        if value.HasField("simple_value"):
            return float(value.simple_value)
        if value.metadata.plugin_data.plugin_name != "scalars" or not value.HasField("tensor"):
            return None
        array = self._tensor_util.make_ndarray(value.tensor)
        if array.size != 1 or array.dtype.kind not in "fiu":
            return None
        return float(array.reshape(()).item())

    def _explicit(self, tag: str, file: _EventFile) -> str | None:
        parent = file.label.rpartition("/")[0]
        if parent and f"{parent}/{tag}" in self.tags:
            return self.tags[f"{parent}/{tag}"]
        return self.tags.get(tag)

    def _name(self, tag: str, file: _EventFile) -> str:
        explicit = self._explicit(tag, file)
        if explicit is not None:
            return explicit
        name = metric_name(tag)
        if file.split and "/" not in name and name not in _KEPT:
            name = f"{file.split}/{name}"
        return name

    def _names(self, values: dict[str, float], file: _EventFile) -> dict[str, float]:
        """Raw tags -> sweeper names, with Lightning's `X_step` / `X_epoch` pairs folded into `X`."""
        named = {}
        for tag, number in values.items():
            if self._explicit(tag, file) is None:
                if tag.endswith("_step") and tag.removesuffix("_step") + "_epoch" in file.seen:
                    continue
                if tag.endswith("_epoch") and tag.removesuffix("_epoch") + "_step" in file.seen:
                    tag = tag.removesuffix("_epoch")
            named[self._name(tag, file)] = number
        return named

    def _epoch_at(self, file: _EventFile, step: int, number: float) -> None:
        if not math.isfinite(number):
            return
        epoch = math.floor(number)
        file.epoch_mode = True
        file.step_epoch = {s: e for s, e in file.step_epoch.items() if s >= step}
        file.step_epoch[step] = file.last_epoch = epoch
        file.max_epoch = epoch if file.max_epoch is None else max(file.max_epoch, epoch)
        waiting = file.steps.pop(step, None)
        if waiting:
            file.epochs.setdefault(epoch, {}).update(waiting)

    def _read(self, file: _EventFile) -> None:
        try:
            for event in file.loader.Load():
                if not event.HasField("summary"):
                    continue
                step = int(event.step)
                for value in event.summary.value:
                    number = self._scalar(value)
                    if number is None:
                        continue
                    file.max_step = step if file.max_step is None else max(file.max_step, step)
                    if self._name(value.tag, file) == "epoch":
                        self._epoch_at(file, step, number)
                        continue
                    file.seen.add(value.tag)
                    if file.epoch_mode and step in file.step_epoch:
                        file.epochs.setdefault(file.step_epoch[step], {})[value.tag] = number
                    else:
                        file.steps.setdefault(step, {})[value.tag] = number
        except Exception as e:  # a corrupt record, a file that vanished: keep what was read, stop reading it
            file.broken = True
            self._warn(f"{file.label}: unreadable event file, no longer read: {type(e).__name__}: {e}")

    def _complete(self, file: _EventFile, final: bool) -> list[tuple[int, dict[str, float]]]:
        done = sorted(s for s in file.steps if final or (file.max_step is not None and s < file.max_step))
        if not file.epoch_mode:
            return [(step, self._names(file.steps.pop(step), file)) for step in done]
        for step in done:
            values = file.steps.pop(step)
            if file.last_epoch is not None:
                file.epochs.setdefault(file.last_epoch, {}).update(values)
        done = sorted(e for e in file.epochs if final or (file.max_epoch is not None and e < file.max_epoch))
        return [(epoch, self._names(file.epochs.pop(epoch), file)) for epoch in done]

    def poll(self, final: bool = False) -> list[Row]:
        if self.directory.is_dir():
            for path in self._discover():
                if path not in self._files and (file := self._open(path)) is not None:
                    self._files[path] = file
        updates = []
        for file in self._files.values():
            if not file.broken:
                self._read(file)
            updates += self._complete(file, final)
        updates.sort(key=lambda u: u[0])
        return self._merge(updates)


class CsvSource(MetricSource):
    """PyTorch Lightning's CSVLogger `metrics.csv`: a header (`epoch,step,train_loss,val_acc,val_loss`,
    Lightning sorts the names) then rows with some cells empty, several per epoch.

    All rows of an epoch merge (a later non-empty cell wins, so a per-step metric ends as the epoch's last
    value); `step` is dropped; when both `X_step` and `X_epoch` columns exist (Lightning's `on_step=True,
    on_epoch=True`), `X_step` is dropped and `X_epoch` is named as `X`; other names go through
    `metric_name`. Epoch e's row is returned once a row with a larger epoch appears, or at final.

    Rewrites: Lightning rewrites the whole file (truncate, then write) with a wider header when a new
    metric name appears. A rewritten file (or one truncated, replaced) is read again from its start, and an
    epoch already returned is returned again only if its merged values changed; unchanged epochs are not.
    """

    name = "csv"

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self._tail = _LineTail(self.path)
        self._columns: list[str | None] | None = None  # per cell: "epoch", a metric name, or None (dropped)
        self._raw: list[str] = []  # the header's names, for messages
        self._merged: dict[int, dict[str, float]] = {}
        self._emitted: dict[int, dict[str, float]] = {}
        self._max_epoch: int | None = None

    def describe(self) -> str:
        return f"Lightning CSV metrics in {self.path}"

    def _set_header(self, cells: list[str], where: str) -> None:
        names = [c.strip() for c in cells]
        columns: list[str | None] = []
        for name in names:
            base = name.removesuffix("_step").removesuffix("_epoch")
            pair = base != name and f"{base}_step" in names and f"{base}_epoch" in names
            if name == "epoch":
                columns.append("epoch")
            elif name == "step" or (pair and name.endswith("_step")) or not name:
                columns.append(None)
            else:
                columns.append(metric_name(base if pair else name))
        if "epoch" not in columns:
            self._warn(f"{where}: no 'epoch' column in the header: {_snippet(','.join(names))}")
        self._columns, self._raw = columns, names

    def _add(self, cells: list[str], where: str) -> None:
        columns = self._columns or []
        if len(cells) != len(columns):
            self._warn(f"{where}: {len(cells)} cells, the header has {len(columns)}: row ignored")
            return
        epoch: int | None = None
        values: dict[str, float] = {}
        for column, raw, cell in zip(columns, self._raw, cells, strict=True):
            cell = cell.strip()
            if column is None or not cell:
                continue
            if column == "epoch":
                epoch = _parse_epoch_text(cell)
                if epoch is None:
                    self._warn(f"{where}: epoch is not an integer: {_snippet(cell, 40)}: row ignored")
                    return
                continue
            try:
                values[column] = float(cell)
            except ValueError:
                self._warn(f"{where}: '{raw}' is not a number: {_snippet(cell, 40)}: ignored")
        if epoch is None:
            return  # a row logged without an epoch (e.g. a direct `logger.log_metrics`): nothing to place
        self._merged.setdefault(epoch, {}).update(values)
        self._max_epoch = epoch if self._max_epoch is None else max(self._max_epoch, epoch)

    def poll(self, final: bool = False) -> list[Row]:
        restarted, lines, problems = self._tail.read(final)
        label = self.path.name
        if restarted:
            self._columns, self._merged, self._max_epoch = None, {}, None
        for problem in problems:
            self._warn(f"{label}:{problem.removeprefix('line ')}")
        for line_no, text in lines:
            where = f"{label}:{line_no}"
            if not text.strip():
                continue
            try:
                cells = next(csv.reader([text]))
            except csv.Error as e:
                self._warn(f"{where}: not CSV: {e}")
                continue
            if line_no == 1:
                self._set_header(cells, where)
            elif self._columns is not None:
                self._add(cells, where)
        rows = []
        for epoch in sorted(self._merged):
            if final or (self._max_epoch is not None and epoch < self._max_epoch):
                values = self._merged[epoch]
                if values and not _same_values(self._emitted.get(epoch), values):
                    self._emitted[epoch] = dict(values)
                    rows.append(Row(epoch, dict(values)))
        return rows


class RegexSource(MetricSource):
    """A regex searched in every stdout line, with named groups: `epoch` (required) and metrics, named by
    `metric_name` (`valid_acc` -> `valid/acc`, `lr` stays). Groups that did not take part are skipped.
    Several lines for one epoch merge (a later value wins)."""

    name = "regex"

    def __init__(self, pattern: str):
        super().__init__()
        try:
            self.pattern = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"the metrics regex {pattern!r} is not a valid regular expression: {e}") from e
        groups = self.pattern.groupindex
        if "epoch" not in groups:
            raise ValueError(
                f"the metrics regex {pattern!r} has no group named 'epoch': write it as (?P<epoch>\\d+)"
            )
        if len(groups) == 1:
            raise ValueError(
                f"the metrics regex {pattern!r} names no metric: add a group such as (?P<valid_acc>[0-9.]+)"
            )
        self._names = {group: metric_name(group) for group in groups if group != "epoch"}
        self._line_no = 0

    def describe(self) -> str:
        return f"stdout lines matching {self.pattern.pattern!r}"

    def feed_line(self, line: str) -> list[Row]:
        self._line_no += 1
        match = self.pattern.search(line.rstrip("\r\n"))
        if match is None:
            return []
        where = f"stdout:{self._line_no}"
        text = match.group("epoch")
        epoch = _parse_epoch_text(text) if text is not None else None
        if epoch is None:
            self._warn(f"{where}: epoch is not an integer: {_snippet(str(text), 40)}: line ignored")
            return []
        values = {}
        for group, name in self._names.items():
            text = match.group(group)
            if text is None:
                continue
            try:
                values[name] = float(text)
            except ValueError:
                self._warn(f"{where}: '{group}' is not a number: {_snippet(text, 40)}: ignored")
        return self._merge([(epoch, values)])


class AutoSource(MetricSource):
    """The first of `sources` that shows up: all are polled and fed until one returns a row, then only
    that one (`chosen`), so a program that logs to TensorBoard and prints JSON is not counted twice."""

    name = "auto"

    def __init__(self, sources: Sequence[MetricSource]):
        super().__init__()
        self.sources = list(sources)
        self.chosen: MetricSource | None = None

    def describe(self) -> str:
        return "the first of: " + "; ".join(s.describe() for s in self.sources)

    def take_summary(self) -> dict[str, float]:
        taken: dict[str, float] = {}
        for source in self.sources if self.chosen is None else [self.chosen]:
            taken.update(source.take_summary())
        return taken

    def _collect(self) -> None:
        for source in self.sources:
            if source.warnings:
                self.warnings += source.warnings
                source.warnings.clear()

    def _first(self, call) -> list[Row]:
        try:
            if self.chosen is not None:
                return call(self.chosen)
            for source in self.sources:
                rows = call(source)
                if rows:
                    self.chosen = source
                    return rows
            return []
        finally:
            self._collect()

    def poll(self, final: bool = False) -> list[Row]:
        return self._first(lambda source: source.poll(final=final))

    def feed_line(self, line: str) -> list[Row]:
        return self._first(lambda source: source.feed_line(line))
