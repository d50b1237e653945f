"""The per-run summary cache: repeated analyses of the same runs read no parquet file at all.

One JSON file per directory holding run dirs (a sweep dir) and per analysis settings, under
`$SWEEPER_CACHE_DIR` (default `$XDG_CACHE_HOME/sweeper/analyze`, i.e. `~/.cache/sweeper/analyze`): the runs
tree itself is never written to, so read-only and shared trees work.

An entry is served only if the run's three files (metrics.parquet, config.json, status.json) have the
same size, mtime_ns, ctime_ns, inode and device as when the entry was made. Why that cannot go stale:

- Rewriting a file changes its mtime and ctime, unless the rewrite lands in the same timestamp tick as
  the previous write (filesystems keep mtime with a granularity from 1 ns to 2 s). So an entry is only
  *made* for files whose mtime and ctime are older than RACY_WINDOW_S before the analysis started (git's
  "racily clean" rule): any later rewrite gets a later timestamp. Younger files (runs being written right
  now) are read again on every analysis, which costs little because they are few.
- An entry is keyed by the stat taken *before* its files were read. If a file is replaced while it is
  read, the entry may hold the newer content under the older key, and is never served: a file never gets
  an older key back (a new version has a new ctime, and a new inode when replaced atomically).
- `touch -d` can put an old mtime back, but not the ctime (the kernel sets it to now), and jobs replace
  files atomically (a new inode every epoch), so the inode changes as well.
- The settings (split, objective) and a hash of the code computing the numbers are part of the cache file
  name: a new summary definition never reads numbers made by an old one.

`analyze --no-cache` bypasses it; deleting the directory is always safe.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = 4
# Older than this (seconds, vs the start of the analysis) a file's timestamps can be trusted to change
# on the next write, even on filesystems with 1-2 s timestamp granularity.
RACY_WINDOW_S = 2.0


def default_directory() -> Path:
    if os.environ.get("SWEEPER_CACHE_DIR"):
        return Path(os.environ["SWEEPER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sweeper" / "analyze"


def code_fingerprint(*sources: str | os.PathLike) -> str:
    digest = hashlib.sha256(str(FORMAT).encode())
    for source in sources:
        try:
            digest.update(Path(source).read_bytes())
        except OSError:  # no source to hash (frozen install): every analysis starts cold, never stale
            digest.update(os.urandom(16))
    return digest.hexdigest()[:16]


@dataclass
class CachedDir:
    """The entries of one directory: run dir names, their files keys and records.

    A files key is a tuple of 15 ints: (size, mtime_ns, ctime_ns, inode, device) of metrics.parquet,
    config.json and status.json, -1 for a missing file. A record is [meta dict, numbers (floats), metric
    columns, problem].
    """

    names: list[str] = field(default_factory=list)
    keys: list[tuple[int, ...]] = field(default_factory=list)
    records: list[list] = field(default_factory=list)
    # the stat of the sweep's runs.parquet and a digest of its run dir names when it was last found current
    index_check: list | None = None

    def __post_init__(self) -> None:
        self.index = {name: i for i, name in enumerate(self.names)}

    def valid(self, names: list[str], keys: list[tuple[int, ...]]) -> list[list | None]:
        """Per run (name, current key), its record where the entry exists and its key is unchanged."""
        out: list[list | None] = []
        for name, key in zip(names, keys, strict=True):
            row = self.index.get(name)
            out.append(None if row is None or self.keys[row] != key else self.records[row])
        return out

    def entries(self) -> dict[str, tuple[tuple, list]]:
        return {
            name: (key, record) for name, key, record in zip(self.names, self.keys, self.records, strict=True)
        }


class SummaryCache:
    """One JSON file per directory of run dirs and settings fingerprint; keys and numbers are stored as raw
    int64/float64 arrays (base64), which loads several times faster than JSON numbers for thousands of runs."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str):
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def _file(self, parent: str) -> Path:
        name = hashlib.sha256(parent.encode()).hexdigest()[:24]
        return self.directory / f"{name}.{self.fingerprint}.json"

    def load(self, parent: str) -> CachedDir:
        try:
            data = json.loads(self._file(parent).read_bytes())
            if data.get("parent") != parent or data.get("format") != FORMAT:
                return CachedDir()
            names, metas, problems = data["names"], data["metas"], data["problems"]
            column_sets, columns = data["column_sets"], data["columns"]
            keys = _rows(data["keys"], "q", len(names), KEY_WIDTH)
            numbers = _rows(data["numbers"], "d", len(names))
            records = [
                [metas[i], numbers[i], column_sets[columns[i]], problems[i]] for i in range(len(names))
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, struct.error):
            return CachedDir()
        return CachedDir(names, keys, records, data.get("index_check"))

    def save(
        self, parent: str, entries: dict[str, tuple[tuple, list]], index_check: list | None = None
    ) -> bool:
        """Write the entries of one parent directory; False (and no error) where the cache is not writable."""
        names = list(entries)
        column_sets: dict[tuple, int] = {}
        keys, numbers, metas, columns, problems = [], [], [], [], []
        for name in names:
            key, (meta, values, metric_columns, problem) = entries[name]
            keys.append(key)
            numbers.append(values)
            metas.append(meta)
            columns.append(column_sets.setdefault(tuple(metric_columns), len(column_sets)))
            problems.append(problem)
        payload = {
            "format": FORMAT,
            "parent": parent,
            "fingerprint": self.fingerprint,
            "names": names,
            "keys": _encode("q", (value for key in keys for value in key)),
            "numbers": _encode("d", (math.nan if v is None else v for row in numbers for v in row)),
            "metas": metas,
            "column_sets": [list(c) for c in column_sets],
            "columns": columns,
            "problems": problems,
            "index_check": index_check,
        }
        try:
            data = json.dumps(payload, separators=(",", ":")).encode()
            self.directory.mkdir(parents=True, exist_ok=True)
            # Replaced atomically but not fsync'ed: a cache file lost or torn by a crash is only ignored.
            target = self._file(parent)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, target)
            return True
        except (OSError, TypeError, ValueError):
            return False


KEY_WIDTH = 15  # (size, mtime_ns, ctime_ns, inode, device) of each of the three files


def _encode(typecode: str, values) -> str:
    """Raw little-endian int64 ("q") or float64 ("d") values, base64 (what _rows reads back)."""
    values = list(values)
    return base64.b64encode(struct.pack(f"<{len(values)}{typecode}", *values)).decode()


def _rows(text: str, typecode: str, rows: int, width: int | None = None) -> list[tuple]:
    """`rows` tuples of `width` values (None: of equal width) from _encode's text (struct makes the tuples
    in C: a third of the time of array.tolist and slicing for 10,000 keys)."""
    data = base64.b64decode(text)
    if not rows:
        return []
    width = width or len(data) // (8 * rows)
    if len(data) != 8 * rows * width:
        raise ValueError(f"{len(data) // 8} values are not {rows} rows of {width}")
    return list(struct.iter_unpack(f"<{width}{typecode}", data))
