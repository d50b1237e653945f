"""How fast `analyze` summarizes thousands of runs, against TensorBoard reading the same runs' event files.

    python benchmarks/bench_analyze.py                      # 10,000 runs x 100 epochs (generated once, ~2-4 min)
    python benchmarks/bench_analyze.py --runs 1000 --epochs 50 --tb-sample 100

Generates the real on-disk layout once (a sweep dir with sweep.json and one run dir per run holding
metrics.parquet written by sweeper's own writer, a TensorBoard event file with the same values written
one scalar per event as torch's SummaryWriter does, config.json and status.json), with a process pool.
Then, each in a fresh process: `analyze` cold (empty summary cache) and warm, as a library call and as the
CLI (interpreter start included), and TensorBoard's EventAccumulator on a sample of the event files,
extrapolated to all runs (reading all of them takes many minutes; the output says when it extrapolates).
Prints the times, the ratios and the peak memory (ru_maxrss) of each process, and the issue's targets.

Other processes on the machine slow every number here alike; the ratios are measured in the same run.
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
from multiprocessing import Pool
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
TARGETS = {"cold_s": 5.0, "warm_s": 1.0, "speedup": 50.0, "rss_mib": 1024.0}


# -- generation ------------------------------------------------------------------------------------------------
def trial_points(runs: int) -> list[tuple[dict, int]]:
    keys = list(GRID)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRID.values())]
    return [(points[(i // SEEDS) % len(points)], i % SEEDS) for i in range(runs)]


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


def write_run(job: tuple) -> None:
    sweep_dir, index, params, seed, epochs, codec = job
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from sweeper.metrics import METRICS_FILE, rows_to_table, write_metrics

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
    writer = EventFileWriter(str(run_dir))
    for row in rows:  # one event per scalar, as SummaryWriter.add_scalar writes them
        for tag in SCALARS:
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=row[tag])])
            writer.add_event(
                event_pb2.Event(step=row["epoch"], wall_time=1.7e9 + row["time_s"], summary=summary)
            )
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
            }
        )
    )
    error = "RuntimeError: boom" if state == "FAILED" else None
    (run_dir / "status.json").write_text(json.dumps({"state": state, "epoch": len(rows), "error": error}))


def generate(root: Path, runs: int, epochs: int, codec: str | None) -> Path:
    sweep_dir = root / "runs" / "bench" / "20250101_000000"
    marker = root / "generated.json"
    wanted = {"runs": runs, "epochs": epochs, "codec": codec, "format": 2}
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
    jobs = [(str(sweep_dir), i, p, s, epochs, codec) for i, (p, s) in enumerate(trial_points(runs))]
    started = time.perf_counter()
    with Pool(os.cpu_count() or 2) as pool:
        for done, _ in enumerate(pool.imap_unordered(write_run, jobs, chunksize=64), 1):
            if done % 1000 == 0 or done == runs:
                print(f"  generated {done}/{runs} runs ({time.perf_counter() - started:.0f} s)", flush=True)
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


def run_measured(argv: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS MiB, stdout) of a child process."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sweeper-bench-analyze")
    parser.add_argument("--tb-sample", type=int, default=200, help="event files read by TensorBoard (0: all)")
    parser.add_argument(
        "--codec", default=None, help="write parquet with this codec instead of sweeper's writer"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="measurements of each analyze case (the median is kept)"
    )
    args = parser.parse_args()

    root = args.dir / (f"{args.runs}x{args.epochs}" + (f"-{args.codec}" if args.codec else ""))
    print(f"data: {root} ({args.runs:,} runs x {args.epochs} epochs)", flush=True)
    sweep_dir = generate(root, args.runs, args.epochs, args.codec)
    load_before = os.getloadavg()[0]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    cache = Path(tempfile.mkdtemp(prefix="sweeper-bench-cache-"))
    env["SWEEPER_CACHE_DIR"] = str(cache)
    python = sys.executable
    analyze_cli = [python, "-c", "from analyze import main; main()", "-p", str(sweep_dir), "--top", "20"]

    results: dict[str, dict] = {}

    def median_of(name: str, argv: list[str], clear_cache: bool, library: bool) -> None:
        """The run with the median wall time of --repeat (this machine is noisy: not the luckiest one)."""
        runs = []
        for _ in range(args.repeat):
            if clear_cache:
                shutil.rmtree(cache, ignore_errors=True)
            wall, cpu, rss, out = run_measured(argv, env)
            measured = (
                json.loads(out.strip().splitlines()[-1]) if library else {"seconds": wall, "cpu_s": cpu}
            )
            runs.append({**measured, "rss_mib": rss})
        runs.sort(key=lambda run: run["seconds"])
        best = runs[len(runs) // 2]
        results[name] = best
        extra = f", {best.get('hits', '-')} cache hits" if library else ""
        print(
            f"  {name}: {best['seconds']:.2f} s ({best['cpu_s']:.2f} s CPU), {best['rss_mib']:.0f} MiB{extra}",
            flush=True,
        )

    print(f"measuring analyze (median of {args.repeat} each):", flush=True)
    library = [python, "-c", LIBRARY, str(sweep_dir)]
    median_of("analyze cold (library)", library, clear_cache=True, library=True)
    median_of("analyze warm (library)", library, clear_cache=False, library=True)
    median_of("analyze cold (CLI, --top 20)", analyze_cli, clear_cache=True, library=False)
    median_of("analyze warm (CLI, --top 20)", analyze_cli, clear_cache=False, library=False)
    shutil.rmtree(cache, ignore_errors=True)

    run_dirs = sorted(str(p) for p in sweep_dir.iterdir() if p.is_dir())
    sample = (
        run_dirs
        if args.tb_sample <= 0 or args.tb_sample >= len(run_dirs)
        else random.Random(0).sample(run_dirs, args.tb_sample)
    )
    print(f"measuring TensorBoard EventAccumulator on {len(sample):,} of {len(run_dirs):,} runs:", flush=True)
    _, _, rss, out = run_measured([python, "-c", TENSORBOARD, *sample], env)
    measured = json.loads(out.strip().splitlines()[-1])
    per_run = measured["seconds"] / len(sample)
    extrapolated = len(sample) < len(run_dirs)
    tensorboard_s = per_run * len(run_dirs)
    tensorboard_cpu = measured["cpu_s"] / len(sample) * len(run_dirs)
    load_after = os.getloadavg()[0]

    library_cold = results["analyze cold (library)"]
    print()
    print(
        f"{args.runs:,} runs x {args.epochs} epochs, {os.cpu_count()} CPUs, load average {load_before:.1f} -> "
        f"{load_after:.1f} (other processes slow every row alike)"
    )
    print(
        f"analyze found {library_cold['runs']:,} runs, {library_cold['problems']} problems, best: {library_cold['best']}"
    )
    header = f"{'':44} {'seconds':>9} {'CPU s':>8} {'runs/s':>8} {'vs TB (wall)':>13} {'vs TB (CPU)':>12} {'peak RSS':>10}"
    print(header)
    print("-" * len(header))
    label = f"TensorBoard EventAccumulator{' (extrapolated)' if extrapolated else ''}"
    print(
        f"{label:44} {tensorboard_s:9.1f} {tensorboard_cpu:8.1f} {len(run_dirs) / tensorboard_s:8.0f} "
        f"{'1x':>13} {'1x':>12} {rss:6.0f} MiB"
    )
    for name, result in results.items():
        print(
            f"{name:44} {result['seconds']:9.2f} {result['cpu_s']:8.2f} {len(run_dirs) / result['seconds']:8.0f} "
            f"{tensorboard_s / result['seconds']:12.0f}x {tensorboard_cpu / result['cpu_s']:11.0f}x "
            f"{result['rss_mib']:6.0f} MiB"
        )
    if extrapolated:
        print(
            f"(TensorBoard: {measured['seconds']:.1f} s for a random sample of {len(sample):,} runs = "
            f"{1000 * per_run:.1f} ms a run, times {len(run_dirs):,} runs)"
        )
    warm = results["analyze warm (library)"]
    worst_rss = max(r["rss_mib"] for r in results.values())
    checks = [
        ("cold <= 5 s", library_cold["seconds"] <= TARGETS["cold_s"], f"{library_cold['seconds']:.2f} s"),
        ("warm <= 1 s", warm["seconds"] <= TARGETS["warm_s"], f"{warm['seconds']:.2f} s"),
        (
            ">= 50x faster than event files (cold, wall)",
            tensorboard_s / library_cold["seconds"] >= TARGETS["speedup"],
            f"{tensorboard_s / library_cold['seconds']:.0f}x (CPU time: {tensorboard_cpu / library_cold['cpu_s']:.0f}x)",
        ),
        ("< 1 GiB memory", worst_rss < TARGETS["rss_mib"], f"{worst_rss:.0f} MiB"),
    ]
    print(
        "targets (library rows: the analysis itself, in a fresh process; CLI rows add the interpreter start and\n"
        "imports; CPU s and peak RSS include the reader processes analyze forks for many runs):"
    )
    for text, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text:40} {value}")


if __name__ == "__main__":
    main()
