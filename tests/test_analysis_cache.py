"""The summary cache serves repeated analyses and never stale numbers (rewrites, same size, same mtime)."""

from __future__ import annotations

import json
import os

import pytest

from sweeper.analysis import analyze
from sweeper.analysis import cache as summary_cache
from sweeper.metrics import write_metrics
from tests.test_analysis import make_run, private_cache  # noqa: F401 (autouse fixture)


def rows(accs):
    return [
        {"epoch": i + 1, "time_s": float(i), "lr": 0.1, "valid/loss": 1 - a, "valid/acc": a}
        for i, a in enumerate(accs)
    ]


@pytest.fixture
def trust_at_once(monkeypatch):
    """Files written by a test are seconds young; let the cache trust them (the racy window is tested apart)."""
    monkeypatch.setattr(summary_cache, "RACY_WINDOW_S", 0.0)


def three_runs(root):
    for name, accs in (("a", [0.5, 0.9]), ("b", [0.6, 0.7]), ("c", [0.8, 0.1])):
        make_run(root / name, valid_loss=[1 - x for x in accs], valid_acc=accs, name=name)
    return root


def by_name(result):
    return {os.path.basename(r.run_dir): r for r in result.runs}


def test_warm_analysis_is_served_from_the_cache_with_the_same_numbers(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    cold = analyze(root)
    assert (cold.cache_hits, cold.cache_misses) == (0, 3)
    warm = analyze(root)
    assert (warm.cache_hits, warm.cache_misses) == (3, 0)
    assert warm.runs == cold.runs and warm.problems == cold.problems
    assert analyze(root, use_cache=False).cache_hits == 0


def test_young_files_are_read_again_every_time(tmp_path):
    root = three_runs(tmp_path / "s")  # written just now: within RACY_WINDOW_S of the analysis
    analyze(root)
    assert analyze(root).cache_hits == 0


def test_a_rewrite_with_the_same_size_and_mtime_is_never_served_stale(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    assert by_name(analyze(root))["a"].best_acc_epoch == 2
    path = root / "a" / "metrics.parquet"
    before = os.stat(path)
    write_metrics(path, rows([0.9, 0.5]))  # the same values swapped: same size, new content (atomic replace)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime put back
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    result = analyze(root)
    assert by_name(result)["a"].best_acc_epoch == 1 and result.cache_hits == 2

    # An in-place rewrite (same inode), same size, old mtime restored: the ctime still tells.
    data = bytearray(path.read_bytes())
    write_metrics(tmp_path / "swapped.parquet", rows([0.5, 0.9]))
    swapped = (tmp_path / "swapped.parquet").read_bytes()
    assert len(swapped) == len(data)
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(swapped)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_ino == before.st_ino
    assert by_name(analyze(root))["a"].best_acc_epoch == 2


def test_status_and_config_changes_are_seen(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    analyze(root)
    (root / "b" / "status.json").write_text(json.dumps({"state": "FAILED", "error": "boom"}))
    config = json.loads((root / "c" / "config.json").read_text())
    (root / "c" / "config.json").write_text(json.dumps({**config, "name": "renamed"}))
    result = by_name(analyze(root))
    assert result["b"].state == "FAILED" and result["b"].error == "boom"
    assert result["c"].name == "renamed"


def test_added_and_removed_runs(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    analyze(root)
    make_run(root / "d", valid_loss=[0.5], valid_acc=[0.5], name="d")
    (root / "b" / "metrics.parquet").unlink()
    result = analyze(root)
    assert sorted(by_name(result)) == ["a", "b", "c", "d"]
    assert by_name(result)["b"].best_acc is None and result.cache_hits == 2


def test_each_objective_has_its_own_entries(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    analyze(root)
    by_loss = analyze(root, metric="valid/loss")
    assert by_loss.cache_hits == 0 and by_name(by_loss)["c"].objective == pytest.approx(0.2)
    assert analyze(root, metric="valid/loss").cache_hits == 3
    assert analyze(root).cache_hits == 3


def test_analyzing_one_run_keeps_the_other_entries(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    analyze(root)
    assert analyze(root / "a").cache_hits == 1
    assert analyze(root).cache_hits == 3


def test_a_broken_or_unwritable_cache_is_no_error(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    analyze(root)
    for cached in (tmp_path / "cache").iterdir():
        cached.write_text("{not json")
    assert analyze(root).cache_hits == 0
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = analyze(root, cache_dir=not_a_dir / "cache")
    assert by_name(result)["a"].best_acc == 0.9


def test_a_cache_file_with_cut_arrays_is_read_as_no_cache(tmp_path, trust_at_once):
    root = three_runs(tmp_path / "s")
    analyze(root)
    (cached,) = (tmp_path / "cache").iterdir()
    data = json.loads(cached.read_text())
    data["keys"] = data["keys"][: 4 * (len(data["keys"]) // 8)]  # valid base64 of too few values
    cached.write_text(json.dumps(data))
    result = analyze(root)
    assert (result.cache_hits, result.cache_misses) == (0, 3)
    assert by_name(result)["a"].best_acc == 0.9
    assert analyze(root).cache_hits == 3  # and the entry is made again


def test_an_analysis_gives_the_garbage_collector_back_as_it_found_it(tmp_path):
    import gc

    root = three_runs(tmp_path / "s")
    assert gc.isenabled()
    analyze(root)
    assert gc.isenabled()
    gc.disable()
    try:
        analyze(root)
        assert not gc.isenabled()
    finally:
        gc.enable()
