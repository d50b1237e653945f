"""A program run bare vs as a sweeper command trial (JSON lines on stdout), on this machine.

    python benchmarks/bench_command.py [--pairs 5] [--epochs 40] [--epoch-ms 50]

The program (written to a temporary folder, it imports nothing from sweeper) does a fixed amount of pure
Python work per epoch and prints one JSON line per epoch with its own clock, so the epoch time is measured
inside it, bare and wrapped alike:
  per epoch  median over the epochs of a run of the time between two lines; bare (stdout into a file) and
             as a trial (`sweeper launch --executor local`: its own process group, stdout copied to job.log,
             each line parsed, metrics.parquet + TensorBoard + heartbeat per epoch), in alternating pairs;
             the ratio is the median of the pairs' ratios. Target: under 2% more.
  start-up   what a trial costs beyond its program: sweeps of 1 and of 4 trials (parallelism 1, a short
             program) launched alternately; (T4 - T1) / 3 is the time per trial, minus the program's own
             wall time run bare. The launcher's fixed cost (imports, provenance, sweep dir) cancels out.
             Target: under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROGRAM = """
import json, sys, time
epochs, work = int(sys.argv[1]), int(sys.argv[2])
for epoch in range(1, epochs + 1):
    x = 0
    for i in range(work):
        x += i * i
    print(json.dumps({"epoch": epoch, "train/loss": 1 / epoch, "valid/acc": 1 - 1 / (epoch + 1), "clock": time.time()}), flush=True)
"""


def calibrate(epoch_ms: float) -> int:
    """Loop iterations for about `epoch_ms` of work on this machine."""
    start, n = time.perf_counter(), 2_000_000
    x = 0
    for i in range(n):
        x += i * i
    return int(n * epoch_ms / 1000 / (time.perf_counter() - start))


def epoch_times(clocks: list[float]) -> float:
    return statistics.median(b - a for a, b in zip(clocks, clocks[1:], strict=False))


def bare(work_dir: Path, epochs: int, work: int) -> tuple[float, float]:
    """(median epoch time, wall time) of the program run bare, stdout into a file."""
    out = work_dir / "bare.out"
    start = time.perf_counter()
    with open(out, "w") as handle:
        subprocess.run(
            [sys.executable, "prog.py", str(epochs), str(work)], cwd=work_dir, stdout=handle, check=True
        )
    wall = time.perf_counter() - start
    clocks = [json.loads(line)["clock"] for line in out.read_text().splitlines()]
    return epoch_times(clocks), wall


def spec(work_dir: Path, name: str, epochs: int, work: int, trials: int) -> Path:
    path = work_dir / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: {name}
        command: [{sys.executable}, prog.py, "{{epochs}}", "{work}"]
        base: {{epochs: {epochs}, copy: 0}}
        grid: {{copy: {list(range(trials))}}}
        metrics: {{source: jsonl}}
        launch: {{parallelism: 1}}
        """)
    )
    return path


def wrapped(work_dir: Path, name: str) -> float:
    """Launch the sweep; the wall time it took."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "launch", f"{name}.yaml", "--executor", "local"],
        cwd=work_dir,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def wrapped_epoch_time(work_dir: Path, name: str) -> float:
    import pyarrow.parquet as pq

    sweep = (work_dir / "runs" / name / "latest").resolve()
    (metrics,) = sweep.glob("*/metrics.parquet")
    return epoch_times(pq.read_table(metrics).column("clock").to_pylist())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--epoch-ms", type=float, default=50.0)
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="bench_command_"))
    (work_dir / "prog.py").write_text(PROGRAM)
    work = calibrate(args.epoch_ms)

    ratios, bare_epochs, wrapped_epochs = [], [], []
    for pair in range(args.pairs):
        name = f"epochs{pair}"
        spec(work_dir, name, args.epochs, work, 1)
        wrapped(work_dir, name)
        inside = wrapped_epoch_time(work_dir, name)
        outside, _ = bare(work_dir, args.epochs, work)
        ratios.append(inside / outside)
        bare_epochs.append(outside)
        wrapped_epochs.append(inside)
    per_epoch = statistics.median(ratios) - 1

    one, four, bare_walls = [], [], []
    for pair in range(args.pairs):
        spec(work_dir, f"one{pair}", 5, work // 10, 1)
        spec(work_dir, f"four{pair}", 5, work // 10, 4)
        one.append(wrapped(work_dir, f"one{pair}"))
        four.append(wrapped(work_dir, f"four{pair}"))
        bare_walls.append(bare(work_dir, 5, work // 10)[1])
    per_trial = (statistics.median(four) - statistics.median(one)) / 3
    startup = per_trial - statistics.median(bare_walls)

    print(
        f"program: {args.epochs} epochs of ~{args.epoch_ms:.0f} ms of pure Python work; {args.pairs} alternating pairs"
    )
    print(
        f"per epoch: bare {statistics.median(bare_epochs) * 1000:.1f} ms, as a command trial "
        f"{statistics.median(wrapped_epochs) * 1000:.1f} ms; ratio per pair {', '.join(f'{r:.3f}' for r in ratios)}; "
        f"median {per_epoch:+.2%} (target < 2%): {'met' if per_epoch < 0.02 else 'NOT met'}"
    )
    print(
        f"start-up: a sweep of 1 trial {statistics.median(one):.2f} s, of 4 trials {statistics.median(four):.2f} s "
        f"(medians): {per_trial:.2f} s per trial, the program alone {statistics.median(bare_walls):.2f} s; "
        f"{startup:.2f} s per trial beyond the program (target < 0.5 s): {'met' if startup < 0.5 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
