"""`analyze --correlate A,B` on real local sweeps: the coefficients, n and p-values match scipy.stats on the
same numbers read straight from the run files; configs or runs; a scatter plot; bad keys."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from scipy import stats

from tests.conftest import write_spec
from tests.test_analysis import private_cache  # noqa: F401 (autouse fixture)
from tests.test_analysis_export import PNG_SIGNATURE, strict_json

SIZES = [2, 3, 4, 5, 9, 11]


def expected(xs, ys):
    return stats.spearmanr(xs, ys), stats.pearsonr(xs, ys)


def test_correlation_over_configs_matches_scipy(tmp_path, cli):
    write_spec(
        tmp_path,
        f"""
        name: land
        entrypoint: notebook_fns:landscape
        base: {{epochs: 2, size: 2}}
        grid: {{size: {SIZES}}}
        """,
    )
    cli("launch", "spec.yaml", "--executor", "local")
    sweep = (tmp_path / "runs" / "land" / "latest").resolve()
    numbers = {}
    for summary in sweep.glob("*/summary.json"):
        config = json.loads((summary.parent / "config.json").read_text())
        numbers[config["params"]["size"]] = json.loads(summary.read_text())
    h0 = [numbers[s]["h0"] for s in SIZES]
    retention = [numbers[s]["retention@100"] for s in SIZES]
    spearman, pearson = expected(h0, retention)

    document = strict_json(
        cli("-p", str(sweep), "--format", "json", "--correlate", "h0,retention@100", command="analyze").stdout
    )
    found = document["correlation"]
    assert found["n"] == len(SIZES) and found["over"] == "runs"
    assert found["spearman"] == pytest.approx(spearman.statistic)
    assert found["spearman_p"] == pytest.approx(spearman.pvalue)
    assert found["pearson"] == pytest.approx(pearson.statistic)
    assert found["pearson_p"] == pytest.approx(pearson.pvalue)
    # a parameter against a summary number
    by_param = strict_json(
        cli("-p", str(sweep), "--format", "json", "--correlate", "size,h0", command="analyze").stdout
    )["correlation"]
    assert by_param["spearman"] == pytest.approx(stats.spearmanr(SIZES, h0).statistic)

    out = cli("-p", str(sweep), "--correlate", "h0,retention@100", "--plot", "scatter.png", command="analyze")
    line = next(x for x in out.stdout.splitlines() if x.startswith("Correlation of h0 and retention@100"))
    assert f"over {len(SIZES)} runs: Spearman ρ {spearman.statistic:+.3f}" in line
    assert f"Pearson r {pearson.statistic:+.3f} (p {pearson.pvalue:.3g})" in line
    assert (tmp_path / "scatter.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "scatter of h0 x retention@100" in out.stderr


def test_correlation_over_seed_groups_and_runs(notebook_sweep, cli):
    """Grouped: config means (2 configs: undefined); --no-group: the 4 runs, a best-epoch value vs test/acc."""
    sweep = notebook_sweep
    test_acc, best_valid, by_name = [], [], {}
    for run_dir in sorted(p for p in sweep.iterdir() if (p / "summary.json").exists()):
        test_acc.append(json.loads((run_dir / "summary.json").read_text())["test/acc"])
        best_valid.append(max(pq.read_table(run_dir / "metrics.parquet").column("valid/acc").to_pylist()))
        name = json.loads((run_dir / "config.json").read_text())["name"]
        by_name.setdefault(name, []).append(best_valid[-1])
    args = ["-p", str(sweep), "--format", "json", "--correlate", "best_valid_acc,test/acc"]
    runs = strict_json(cli(*args, "--no-group", command="analyze").stdout)["correlation"]
    spearman, pearson = expected(best_valid, test_acc)
    assert runs["n"] == 4 and runs["over"] == "runs"
    assert len(set(best_valid)) > 1 and len(set(test_acc)) > 1  # (else the coefficients are undefined)
    assert runs["pearson"] == pytest.approx(pearson.statistic)
    assert runs["spearman"] == pytest.approx(spearman.statistic)
    groups = strict_json(cli(*args, command="analyze").stdout)["correlation"]
    assert groups["n"] == 2 and groups["over"] == "configs" and groups["spearman"] is None
    assert (
        sorted(p["x"] for p in groups["points"])
        == pytest.approx(sorted([(best_valid[0] + best_valid[1]) / 2, (best_valid[2] + best_valid[3]) / 2]))
        or len(groups["points"]) == 2
    )
    text = cli("-p", str(sweep), "--correlate", "best_valid_acc,test/acc", command="analyze").stdout
    assert "over 2 configs: undefined (fewer than 3 points)" in text

    for bad, message in [
        ("test/acc", "expected two different keys"),
        ("test/acc,test/acx", "--correlate test/acx: no run has this key (did you mean 'test/acc'?)"),
    ]:
        result = cli("-p", str(sweep), "--correlate", bad, command="analyze", check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    result = cli("-p", str(sweep), "--plot", "scatter.png", command="analyze", check=False)
    assert result.returncode == 1 and "needs --correlate" in result.stderr
