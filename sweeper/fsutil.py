"""Crash-safe file primitives: atomic replace, locked appends. Every file a job writes goes through here.

Files are created with mode 0666 less the process's umask, as `open()` would (0644 under 022, 0664 under a
shared group's 002), so colleagues on a shared project directory can read results.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FILE_MODE = 0o666  # less the umask, as open() creates files


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one. The file gets
    the umask's mode: its temp file is created with 0666, less the umask as the kernel applies it (mkstemp
    creates 0600, whatever the umask, and reading the umask to widen it cost a read of /proc per write).
    Either way a killed process leaves the old or the new file (the page cache outlives it); `durable`
    also fsyncs before the rename, so a crash of the machine does too. Not durable is for a file rewritten
    every epoch and rebuilt from a durable one on resume (metrics.parquet and status.json from last.pt):
    fsync was most of their cost."""
    path = os.fspath(path)
    fd, tmp = _new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_TEMP_NAMES = random.Random()  # seeded from the OS: names that other processes' names do not repeat


def _new_temp_file(path: str) -> tuple[int, str]:
    """A new, empty file beside `path` (a hidden name ending in .tmp), open for writing, mode 0666 less
    the umask."""
    head, name = os.path.split(path)
    for _ in range(100):
        tmp = os.path.join(head, f".{name}.{_TEMP_NAMES.getrandbits(40):010x}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode(), durable)


def atomic_write_json(path: str | os.PathLike, obj: Any, durable: bool = True) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    atomic_write_text(path, text, durable)


def fsync_file(path: str | os.PathLike) -> None:
    """Make a file written without fsync durable (missing: nothing to do)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def read_bytes(path: str, size_hint: int) -> bytes:
    """The whole file, usually in one read call (the size is known from the stat; a file may have changed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, size_hint + 1)]
        while len(chunks[-1]) > 0 and sum(map(len, chunks)) > size_hint:
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing). fcntl locks work on NFSv4 too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


def append_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Append records as JSON lines in one write under a lock: concurrent writers never tear a line."""
    if not records:
        return
    data = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records).encode()
    path = Path(path)
    with locked(path.with_name(path.name + ".lock")):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines, skipping a torn last line (a writer killed mid-write) rather than failing."""
    records = []
    try:
        with open(path) as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return records
