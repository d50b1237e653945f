"""Files others can read: everything sweeper writes (atomically or by appending) gets 0666 less the umask,
as open() would, so colleagues on a shared project directory can read a sweep."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from sweeper.fsutil import append_jsonl, atomic_write_json, atomic_write_text
from tests.conftest import tiny_spec


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_and_appends_follow_the_umask(tmp_path, mask, expected):
    with umask(mask):
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        atomic_write_text(tmp_path / "a.txt", "replaced")  # a replacement too
        append_jsonl(tmp_path / "c.jsonl", [{"x": 1}])
    for name in ("a.txt", "b.json", "c.jsonl", "c.jsonl.lock"):
        assert mode(tmp_path / name) == expected, (name, oct(mode(tmp_path / name)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.txt",
        "b.json",
        "c.jsonl",
        "c.jsonl.lock",
    ]  # no temp left


def test_a_sweep_written_under_umask_027_is_readable_by_the_group_and_no_one_else(tmp_path, cli):
    tiny_spec(tmp_path, "configs:\n  a: {optim.weight_decay: 0.0}\n")
    with umask(0o027):
        cli("launch", "spec.yaml", "--executor", "local")
    sweep = next((tmp_path / "runs" / "tiny").glob("2*"))
    (run_dir,) = [p for p in sweep.iterdir() if p.is_dir() and (p / "config.json").exists()]
    for path in [
        sweep / n for n in ("spec.yaml", "trials.jsonl", "git.diff", "provenance.json", "sweep.json")
    ] + [run_dir / n for n in ("metrics.parquet", "config.json", "status.json", "last.pt")]:
        assert mode(path) == 0o640, (path, oct(mode(path)))
    for path in sweep.rglob("*"):  # nothing, sweeper's or submitit's, is readable by others
        if path.is_file() and not path.is_symlink():
            assert not mode(path) & 0o007, (path, oct(mode(path)))
