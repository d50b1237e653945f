"""How fast `analyze` summarizes 1,000 to 100,000 runs, against a polars one-liner, duckdb SQL and TensorBoard.

    python benchmarks/bench_analyze.py                          # 1k, 10k and 100k runs x 100 epochs
    python benchmarks/bench_analyze.py --runs 10000 --repeat 3  # one size

Generates the real on-disk layout once per size (a sweep dir with sweep.json and runs.parquet, one run dir
per run holding metrics.parquet written by sweeper's own writer, config.json and status.json; TensorBoard
event files, one scalar per event as torch's SummaryWriter writes them, for a fixed sample of --tb-sample
runs only: writing them for every run was most of the generation time), with a process pool: 100,000 runs
take about 5 minutes here. Then, per size, in alternating rounds, each case in a fresh process: the polars
one-liner and duckdb SQL a researcher would type instead (per run: best valid acc and loss with their
epochs, final train acc, epoch count), and `analyze` cold (empty summary cache: it takes the records the
jobs left in runs.parquet), every file read (--no-cache) and warm, as the CLI
(interpreter start included) and as a library call. Prints the median of the rounds (every round shown),
the cost-growth table over the sizes, the CLI's own start-up and imports as a separate line, TensorBoard's
EventAccumulator on the sampled event files extrapolated to 10,000 runs, the peak memory (ru_maxrss, reader
processes included) and the targets of issue 19 with PASS/FAIL.

Other processes on the machine slow every number here alike; the ratios are measured in the same rounds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool, Process
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SCALARS = ("time_s", "lr", "train/loss", "train/acc", "valid/loss", "valid/acc")
GRID = {
    "optim.lr": [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 5e-2],
    "optim.weight_decay": [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
    "model.dropout": [0.0, 0.05, 0.1, 0.15, 0.2],
    "model.layers": [2, 4, 6, 8, 12],
}
SEEDS = 5
SWEEP_DIR = Path("runs", "bench", "20250101_000000")


# -- generation ------------------------------------------------------------------------------------------------
def trial_points(runs: int) -> list[tuple[dict, int]]:
    """(params, seed) per run: the grid's 2,000 points x 5 seeds, then 5 more seeds each per 10,000 runs, so
    that every run is a distinct trial (a repeated trial id would read as a retry superseding the other)."""
    keys = list(GRID)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRID.values())]
    per_round = SEEDS * len(points)
    return [(points[(i % per_round) // SEEDS], SEEDS * (i // per_round) + i % SEEDS) for i in range(runs)]


def curves(params: dict, seed: int, epochs: int, index: int) -> list[dict]:
    """A plausible learning curve: its speed, floor and overfitting depend on the params; noise on the seed."""
    rng = random.Random(index)
    lr_quality = -abs(math.log10(params["optim.lr"]) + 2.7)  # best near 2e-3
    speed = 0.08 * math.exp(lr_quality)
    floor = 0.05 + 0.2 * params["model.dropout"] + 0.3 * abs(params["optim.weight_decay"] - 0.05)
    overfit = 0.004 * max(0.0, 0.15 - params["model.dropout"]) / (1 + 10 * params["optim.weight_decay"])
    rows = []
    diverge_at = rng.randint(epochs // 3, epochs) if index % 97 == 0 else None
    for epoch in range(1, epochs + 1):
        train_loss = floor + 2.2 * math.exp(-speed * epoch) + rng.gauss(0, 0.01)
        valid_loss = train_loss + overfit * epoch + 0.05 + rng.gauss(0, 0.015)
        if diverge_at is not None and epoch >= diverge_at:
            train_loss = valid_loss = math.nan
        rows.append(
            {
                "epoch": epoch,
                "time_s": 1.7 * epoch,
                "lr": params["optim.lr"],
                "train/loss": train_loss,
                "train/acc": max(0.0, min(1.0, 1.02 - train_loss / 2.4)),
                "valid/loss": valid_loss,
                "valid/acc": max(0.0, min(1.0, 1.0 - valid_loss / 2.4)),
            }
        )
    return rows


def write_run(job: tuple) -> dict:
    """One run dir as a job leaves it; returns its row of the sweep's runs.parquet (jobs write theirs)."""
    sweep_dir, index, params, seed, epochs, codec, tensorboard = job
    from sweeper import runs_index
    from sweeper.analysis.runs import ended_record
    from sweeper.metrics import rows_to_table, write_metrics
    from sweeper.run_files import METRICS_FILE

    run_dir = Path(sweep_dir) / f"20250101_000000_j{100000 + index}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = curves(params, seed, epochs, index)
    state = "COMPLETED"
    if index % 50 == 7:  # a few runs still running, a few failed
        rows, state = rows[: max(1, epochs // 3)], "RUNNING"
    elif index % 50 == 13:
        rows, state = rows[: max(1, epochs // 2)], "FAILED"
    if codec is None:
        write_metrics(run_dir / METRICS_FILE, rows)  # sweeper's own writer
    else:
        import pyarrow.parquet as pq

        pq.write_table(rows_to_table(rows), run_dir / METRICS_FILE, compression=codec)
    if tensorboard:  # only the runs TensorBoard's loader is timed on: writing them all took most of the time
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(run_dir))
        for row in rows:  # one event per scalar, as SummaryWriter.add_scalar writes them
            for tag in SCALARS:
                value = summary_pb2.Summary.Value(tag=tag, simple_value=row[tag])
                event = event_pb2.Event(
                    step=row["epoch"],
                    wall_time=1.7e9 + row["time_s"],
                    summary=summary_pb2.Summary(value=[value]),
                )
                writer.add_event(event)
        writer.close()
    name = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in params.items())
    config = {"epochs": epochs, "model": {"name": "vit", "layers": params["model.layers"], "dropout": 0.1}}
    config["optim"] = {
        "name": "adamw",
        "lr": params["optim.lr"],
        "weight_decay": params["optim.weight_decay"],
    }
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "trial_id": f"{name}-s{seed}",
                "name": name,
                "params": params,
                "seed": seed,
                "config": config,
                "sweep": "bench",
                "job_id": str(100000 + index),
                "objective": {"metric": "valid/acc", "direction": "maximize"},
            }
        )
    )
    error = "RuntimeError: boom" if state == "FAILED" else None
    (run_dir / "status.json").write_text(json.dumps({"state": state, "epoch": len(rows), "error": error}))
    return {**runs_index.index_row(run_dir), runs_index.RECORD: ended_record(run_dir)}  # as job.index_run


def tensorboard_runs(runs: int, sample: int) -> set[int]:
    """The runs that get an event file: a fixed, evenly spread sample (all of them with sample <= 0)."""
    if sample <= 0 or sample >= runs:
        return set(range(runs))
    return set(random.Random(0).sample(range(runs), sample))


def generate(root: Path, runs: int, epochs: int, codec: str | None, tb_sample: int) -> Path:
    """The sweep dir, generated once per (runs, epochs, codec, sample) with a process pool."""
    from sweeper import runs_index
    from sweeper.analysis import cache as summary_cache
    from sweeper.analysis import runs as analysis_runs
    from sweeper.metrics import SCHEMA_VERSION

    sweep_dir = root / SWEEP_DIR
    marker = root / "generated.json"
    wanted = {"runs": runs, "epochs": epochs, "codec": codec, "tb": tb_sample, "format": 5}
    wanted["writer"] = SCHEMA_VERSION + ("-kv" if codec is None else "")
    # the records the jobs leave in runs.parquet are made by this code: data from older code has stale
    # records, and a cold analysis of it would read every file (regenerated instead)
    wanted["records"] = summary_cache.code_fingerprint(analysis_runs.__file__, *analysis_runs.SUMMARY_SOURCES)
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return sweep_dir
    shutil.rmtree(root, ignore_errors=True)
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(
        json.dumps(
            {
                "name": "bench",
                "objective": {"metric": "valid/acc", "direction": "maximize"},
                "swept_keys": list(GRID),
                "n_trials": runs,
            }
        )
    )
    with_events = tensorboard_runs(runs, tb_sample)
    jobs = [
        (str(sweep_dir), i, p, s, epochs, codec, i in with_events)
        for i, (p, s) in enumerate(trial_points(runs))
    ]
    started = time.perf_counter()
    rows = []
    with Pool(os.cpu_count() or 2) as pool:
        for done, row in enumerate(pool.imap_unordered(write_run, jobs, chunksize=64), 1):
            rows.append(row)
            if done % max(1000, runs // 10) == 0 or done == runs:
                print(
                    f"  generated {done:,}/{runs:,} runs ({time.perf_counter() - started:.0f} s)", flush=True
                )
    runs_index.write(sweep_dir, rows)  # as the jobs leave it: one row each, written as each run ended
    marker.write_text(json.dumps(wanted))
    return sweep_dir


# -- measurements (each in a fresh process) ----------------------------------------------------------------------
LIBRARY = """
import json, os, resource, sys, time
def cpu_s():  # this process and its reader processes (analyze forks them for many runs)
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
started = time.perf_counter()
from sweeper.analysis import ReportOptions, build_report
imported, cpu = time.perf_counter(), cpu_s()
report = build_report([sys.argv[1]], ReportOptions(top=20))
done = time.perf_counter()
rss = [resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({"seconds": done - imported, "cpu_s": cpu_s() - cpu, "runs": len(report.runs),
                  "hits": report.analysis.cache_hits, "misses": report.analysis.cache_misses,
                  "problems": len(report.analysis.problems), "best": report.best.name if report.best else None,
                  "rss_mib": rss[0] + (rss[1] if rss[1] > 0 and report.analysis.cache_misses else 0)}))
"""

TENSORBOARD = """
import json, resource, sys, time
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
dirs = sys.argv[1:]
started, cpu = time.perf_counter(), time.process_time()
best = []
for run_dir in dirs:
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    values = [e.value for e in events.Scalars("valid/acc")]
    losses = [e.value for e in events.Scalars("valid/loss")]
    best.append(max(values) if values else None)
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu, "runs": len(dirs),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

# The baselines: what a researcher would type instead of `analyze` (per run: best valid acc and
# loss with their epochs, final train acc, epoch count), interpreter start and imports included.
POLARS = """
import glob, sys
import polars as pl
files = sorted(glob.glob(f"{sys.argv[1]}/*/metrics.parquet"))
epoch = pl.col("epoch")
table = (
    pl.scan_parquet(files, include_file_paths="path")
    .group_by("path")
    .agg(
        pl.col("valid/acc").max().alias("best_valid_acc"),
        epoch.get(pl.col("valid/acc").arg_max()).alias("best_valid_acc_epoch"),
        pl.col("valid/loss").min().alias("best_valid_loss"),
        epoch.get(pl.col("valid/loss").arg_min()).alias("best_valid_loss_epoch"),
        pl.col("train/acc").get(epoch.arg_max()).alias("final_train_acc"),
        pl.len().alias("epochs"),
    )
    .collect()
)
print(table.height)
"""

DUCKDB = """
import sys
import duckdb
query = (
    'SELECT filename, max("valid/acc"), arg_max(epoch, "valid/acc"), min("valid/loss"), '
    'arg_min(epoch, "valid/loss"), arg_max("train/acc", epoch), count(*) '
    f"FROM read_parquet('{sys.argv[1]}/*/metrics.parquet', filename=true, union_by_name=true) GROUP BY filename"
)
print(len(duckdb.sql(query).fetchall()))
"""

# What every `analyze` call pays before it reads a file: the interpreter and the CLI's imports.
STARTUP = "import sweeper.analyze_cli, sweeper.analysis.report, sweeper.analysis.render"


def run_measured(argv: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB, stdout) of a child process (and its children)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... exited {process.returncode}:\n{text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


CASES = (  # (name, clears the summary cache first, prints the library's JSON line)
    ("polars one-liner", False, False),
    ("duckdb SQL", False, False),
    ("analyze cold (CLI)", True, False),
    ("analyze every file (CLI)", False, False),
    ("analyze warm (CLI)", False, False),
    ("analyze cold (library)", True, True),
    ("analyze warm (library)", False, True),
)


def measure_size(sweep_dir: Path, repeat: int, env: dict, cache: Path) -> dict[str, dict]:
    """Every case, alternating (polars, duckdb, CLI cold, CLI warm, ..., then again), median of `repeat`."""
    python = sys.executable
    cli = [python, "-c", "from analyze import main; main()", "-p", str(sweep_dir), "--top", "20"]
    argv = {
        "polars one-liner": [python, "-c", POLARS, str(sweep_dir)],
        "duckdb SQL": [python, "-c", DUCKDB, str(sweep_dir)],
        "analyze cold (CLI)": cli,
        "analyze every file (CLI)": [*cli, "--no-cache"],
        "analyze warm (CLI)": cli,
        "analyze cold (library)": [python, "-c", LIBRARY, str(sweep_dir)],
        "analyze warm (library)": [python, "-c", LIBRARY, str(sweep_dir)],
    }
    measured: dict[str, list[dict]] = {name: [] for name, _, _ in CASES}
    for _ in range(repeat):
        for name, clear_cache, library in CASES:
            if clear_cache:
                shutil.rmtree(cache, ignore_errors=True)
            wall, cpu, rss, out = run_measured(argv[name], env)
            result = json.loads(out.strip().splitlines()[-1]) if library else {"seconds": wall, "cpu_s": cpu}
            measured[name].append({**result, "rss_mib": rss})
    results = {}
    for name, runs in measured.items():
        runs.sort(key=lambda run: run["seconds"])
        # the median round (the lower of the two middle ones for an even count)
        results[name] = {**runs[(len(runs) - 1) // 2], "all_s": [run["seconds"] for run in runs]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", default="1000,10000,100000", help="sweep sizes, comma-separated (the cost-growth table)"
    )
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sweeper-bench-analyze")
    parser.add_argument("--tb-sample", type=int, default=200, help="runs given event files for TensorBoard")
    parser.add_argument(
        "--codec", default=None, help="write parquet with this codec instead of sweeper's writer"
    )
    parser.add_argument("--repeat", type=int, default=5, help="alternating rounds per size up to 10,000 runs")
    parser.add_argument("--repeat-large", type=int, default=3, help="rounds for sizes above 10,000 runs")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.runs.split(","))

    sweeps = {}
    for runs in sizes:
        root = args.dir / (f"{runs}x{args.epochs}" + (f"-{args.codec}" if args.codec else ""))
        print(f"data: {root} ({runs:,} runs x {args.epochs} epochs)", flush=True)
        # In a child process: a child's ru_maxrss starts at its parent's peak, so this process stays small.
        child = Process(target=generate, args=(root, runs, args.epochs, args.codec, args.tb_sample))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generating {root} failed (exit code {child.exitcode})")
        sweeps[runs] = root / SWEEP_DIR
    load_before = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    # An installed package has its bytecode cached; without it (PYTHONDONTWRITEBYTECODE, set on some CI and
    # sandbox machines) every CLI process compiles sweeper's modules again, ~0.1 s a call that no user pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cache = Path(tempfile.mkdtemp(prefix="sweeper-bench-cache-"))
    env["SWEEPER_CACHE_DIR"] = str(cache)
    python = sys.executable

    run_measured([python, "-c", STARTUP], env)  # writes the bytecode caches
    startup = sorted(run_measured([python, "-c", STARTUP], env)[0] for _ in range(max(args.repeat, 5)))
    startup_s = startup[len(startup) // 2]
    results: dict[int, dict[str, dict]] = {}
    for runs in sizes:
        repeat = args.repeat if runs <= 10_000 else args.repeat_large
        print(
            f"measuring {runs:,} runs ({repeat} alternating rounds, every round's seconds shown):", flush=True
        )
        results[runs] = measure_size(sweeps[runs], repeat, env, cache)
        for name, result in results[runs].items():
            spread = ", ".join(f"{s:.2f}" for s in result["all_s"])
            print(
                f"  {name:24} {result['seconds']:7.2f} s  ({spread})  {result['rss_mib']:5.0f} MiB",
                flush=True,
            )
    shutil.rmtree(cache, ignore_errors=True)

    # TensorBoard's loader on the runs that have event files, extrapolated to the reference size.
    reference = 10_000 if 10_000 in sizes else sizes[len(sizes) // 2]
    sample = sorted(str(p.parent) for p in sweeps[reference].glob("*/events.out.tfevents.*"))
    _, _, _, out = run_measured([python, "-c", TENSORBOARD, *sample], env)
    tb = json.loads(out.strip().splitlines()[-1])
    tensorboard_s = tb["seconds"] / len(sample) * reference
    tensorboard_cpu = tb["cpu_s"] / len(sample) * reference
    load_after = os.getloadavg()[0]

    print()
    print(
        f"{args.epochs} epochs a run, {os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f} "
        "(other processes slow every row alike; each cell is the median of alternating rounds)"
    )
    library = results[reference]["analyze cold (library)"]
    print(f"analyze found {library['runs']:,} runs, {library['problems']} problems, best: {library['best']}")
    print()
    growth = f"x{sizes[-1] // sizes[-2]} growth" if len(sizes) > 1 else ""
    header = (
        f"{'seconds':28}" + "".join(f"{f'{n:,} runs':>13}" for n in sizes) + f"{growth:>12}{'peak RSS':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, _, _ in CASES:
        cells = "".join(f"{results[n][name]['seconds']:13.2f}" for n in sizes)
        ratio = results[sizes[-1]][name]["seconds"] / results[sizes[-2]][name]["seconds"] if growth else None
        grown = f"{ratio:11.1f}x" if ratio else ""
        print(f"{name:28}{cells}{grown:>12}{results[sizes[-1]][name]['rss_mib']:7.0f} MiB")
    print(
        f"{'CLI start-up and imports':28}{startup_s:13.2f}   (a process that only imports; in every CLI row)"
    )
    print(
        f"{'TensorBoard EventAccumulator':28}{tensorboard_s:13.1f}   at {reference:,} runs, extrapolated from "
        f"{len(sample)} runs ({1000 * tb['seconds'] / len(sample):.1f} ms a run)"
    )

    at = results[reference]
    cold_cli, warm_cli, polars = at["analyze cold (CLI)"], at["analyze warm (CLI)"], at["polars one-liner"]
    checks = [
        (
            f"analyze cold (CLI) <= polars one-liner, {reference:,} runs",
            cold_cli["seconds"] <= polars["seconds"],
            f"{cold_cli['seconds']:.2f} s vs {polars['seconds']:.2f} s "
            f"({cold_cli['seconds'] / polars['seconds']:.2f}x)",
        ),
        (
            f"analyze every file (CLI) <= polars one-liner, {reference:,} runs",
            at["analyze every file (CLI)"]["seconds"] <= polars["seconds"],
            f"{at['analyze every file (CLI)']['seconds']:.2f} s "
            f"({at['analyze every file (CLI)']['seconds'] / polars['seconds']:.2f}x)",
        ),
        (
            f"analyze warm (CLI) <= 0.5 s, {reference:,} runs",
            warm_cli["seconds"] <= 0.5,
            f"{warm_cli['seconds']:.2f} s, of which {startup_s:.2f} s start-up and imports",
        ),
        (
            f"analyze cold (library) <= 5 s, {reference:,} runs",
            library["seconds"] <= 5.0,
            f"{library['seconds']:.2f} s",
        ),
        (
            f">= 50x faster than TensorBoard's loader, {reference:,} runs",
            tensorboard_s / library["seconds"] >= 50,
            f"{tensorboard_s / library['seconds']:.0f}x (CPU time {tensorboard_cpu / library['cpu_s']:.0f}x)",
        ),
    ]
    if sizes[-1] > reference:
        big, scale = results[sizes[-1]]["analyze cold (CLI)"], sizes[-1] / reference
        checks.append(
            (
                f"analyze cold (CLI), {sizes[-1]:,} runs <= {scale:.0f}x its {reference:,} time",
                big["seconds"] <= scale * cold_cli["seconds"],
                f"{big['seconds']:.2f} s = {big['seconds'] / cold_cli['seconds']:.1f}x",
            )
        )
        worst = max(r["rss_mib"] for name, r in results[sizes[-1]].items() if name.startswith("analyze"))
        checks.append((f"analyze under 2 GiB, {sizes[-1]:,} runs", worst < 2048, f"peak {worst:.0f} MiB"))
    print()
    print(
        "targets (CLI rows: a new process, interpreter start and imports included; library rows: the analysis"
    )
    print("in a fresh process after its imports; peak RSS includes the reader processes analyze forks):")
    for text, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text:56} {value}")


if __name__ == "__main__":
    main()
