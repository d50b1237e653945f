"""Launch and status of a 1000-trial sweep on the local SLURM cluster, against bare SLURM commands.

    sudo slurm/cluster.sh start            # or: SLURM_MAX_ARRAY_SIZE=1001 slurm/cluster.sh fresh
    .venv/bin/python benchmarks/bench_slurm.py [--trials 1000] [--repeat 3]

Each trial exits at once (the benchmark is about the launcher and status, not training), and every array is
submitted held (`--hold`), so that no job competes with the commands timed for this machine's CPUs.
Measured, each as
the wall time a user waits for, the median of --repeat runs:
  launch   `sweeper launch spec.yaml` (a new process: imports, provenance, pickling every trial, sbatch)
           vs the same arrays submitted with bare `sbatch --array` (same count, sizes, throttle, chaining:
           with the test cluster's MaxArraySize of 5 both submit 200 arrays, with 1001 one array)
  status   `sweeper status <sweep>` (a new process: one sacct call, the ledger, the heartbeats, the table)
           vs bare `sacct -j <the arrays>`; right after the launch (1000 pending tasks), and once every
           task has ended: cancelled (default) or, with --run-to-end, run (1000 run dirs and heartbeats).
All jobs the benchmark submitted are cancelled when it ends.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SWEEPER = [sys.executable, "-m", "sweeper.cli"]


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def sbatch_baseline(
    cwd: Path, sizes: list[int], throttle: int, after: list[int | None]
) -> tuple[float, list[str]]:
    """Submit arrays of these sizes with bare sbatch, each waiting for the same earlier array as sweeper's."""
    start = time.perf_counter()
    ids: list[str] = []
    for size in sizes:
        argv = [
            "sbatch",
            "--parsable",
            "--hold",
            f"--array=0-{size - 1}%{min(throttle, size)}",
            "--job-name=bare",
        ]
        argv += ["--output=/dev/null", "--wrap", "true"]
        if after[len(ids)] is not None:
            argv.insert(1, f"--dependency=afterany:{ids[after[len(ids)]]}")
        ids.append(subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip())
    return time.perf_counter() - start, ids


def sweep_arrays(sweep: Path) -> list[str]:
    from sweeper.ledger import Ledger

    records = Ledger(sweep).records().values()
    return sorted({str(r.latest["job_id"]).split("_")[0] for r in records if r.latest}, key=int)


def wait_until_idle(arrays: list[str], timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(arrays)], capture_output=True, text=True
        ).stdout
        if not out.strip():
            return True
        time.sleep(5)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="launches (and bare submissions) to time")
    parser.add_argument(
        "--run-to-end",
        action="store_true",
        help="let the last sweep run (~2 s of CPU per trial: ~20 min for 1000 on 2 cores) instead of "
        "cancelling it, so that 'all ended' means 1000 run dirs with heartbeats",
    )
    parser.add_argument("--finish-timeout", type=float, default=3600, help="seconds to wait for the end")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from sweeper.backends import slurm_commands as slurm

    if not slurm.available():
        raise SystemExit("no SLURM here: start the local cluster with `sudo slurm/cluster.sh start`")
    limit = slurm.max_array_size()
    from sweeper.backends.slurm import split_arrays

    parts = split_arrays(args.trials, limit, args.parallelism)
    sizes, after = [p.size for p in parts], [p.after for p in parts]

    work = Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    (work / "bench_fns.py").write_text("def exit_at_once(config, run):\n    pass\n")
    (work / "spec.yaml").write_text(
        "name: bench\nentrypoint: bench_fns:exit_at_once\nbase: {i: 0}\n"
        f"grid: {{i: {list(range(args.trials))}}}\n"
        f"launch: {{profile: local, parallelism: {args.parallelism}, slurm: {{additional: {{hold: true}}}}}}\n"
    )
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(work)])
    print(
        f"{args.trials} trials, MaxArraySize {limit}: {len(sizes)} array(s), %{args.parallelism}"
        f"{', chained' if any(a is not None for a in after) else ''}; {args.repeat} repeat(s); work dir {work}"
    )

    submitted: list[str] = []
    launch_s, bare_s, sweeps = [], [], []
    try:
        for _ in range(args.repeat):
            seconds, _out = timed([*SWEEPER, "launch", "spec.yaml", "--root", str(work / "runs")], work)
            launch_s.append(seconds)
            sweep = (work / "runs" / "bench" / "latest").resolve()
            sweeps.append(sweep)
            submitted += sweep_arrays(sweep)
            seconds, ids = sbatch_baseline(work, sizes, args.parallelism, after)
            bare_s.append(seconds)
            submitted += ids
        # Only the last sweep runs: the earlier ones (and every bare array) are cancelled now.
        keep = set(sweep_arrays(sweeps[-1]))
        subprocess.run(["scancel", *[j for j in submitted if j not in keep]], capture_output=True)

        sweep, arrays = sweeps[-1], sweep_arrays(sweeps[-1])
        status_pending = [timed([*SWEEPER, "status", str(sweep)], work)[0] for _ in range(args.repeat)]
        sacct_argv = ["sacct", "-X", "-n", "--parsable2", "-o", "JobID,State", "-j", ",".join(arrays)]
        sacct_pending = [timed(sacct_argv, work)[0] for _ in range(args.repeat)]

        if args.run_to_end:
            print(f"waiting for the {args.trials} trials of the last sweep to end ...", flush=True)
            subprocess.run(["scontrol", "release", *arrays], capture_output=True)
        else:
            subprocess.run(["scancel", *arrays], capture_output=True)
        waited_at = time.perf_counter()
        ended = wait_until_idle(arrays, args.finish_timeout)
        run_s = time.perf_counter() - waited_at
        time.sleep(10)  # sacct lags a few seconds behind the last job
        # the first refresh after the end records every attempt's accounting into the ledger: timed apart
        first_refresh, out = timed([*SWEEPER, "status", str(sweep)], work)
        status_done = [timed([*SWEEPER, "status", str(sweep)], work)[0] for _ in range(args.repeat)]
        sacct_done = [timed(sacct_argv, work)[0] for _ in range(args.repeat)]
        counts = [line for line in out.splitlines() if re.fullmatch(r"([A-Z_]+ \d+\s*)+", line.strip())]
    finally:
        subprocess.run(["scancel", *submitted], capture_output=True)

    def row(what: str, ours: list[float], bare: list[float], bare_what: str) -> str:
        a, b = statistics.median(ours), statistics.median(bare)
        return f"| {what} | {a:.3f} | {bare_what} | {b:.3f} | {a / b:.1f}x |"

    print()
    print("| what | sweeper (s) | baseline | baseline (s) | ratio |")
    print("|---|---|---|---|---|")
    print(row(f"launch {args.trials} trials", launch_s, bare_s, f"bare sbatch x{len(sizes)}"))
    print(row("status, all pending", status_pending, sacct_pending, "bare sacct"))
    ended_what = "all ended" if args.run_to_end else "all cancelled"
    print(row(f"status, {ended_what}", status_done, sacct_done, "bare sacct"))
    print(
        f"| first status after the end (writes {args.trials} accounting events) | {first_refresh:.3f} | | | |"
    )
    print()
    print(
        f"the sweep's trials {'ended' if ended else 'had NOT all ended'} {run_s:.0f} s after the status runs;"
        f" final counts: {counts[-1].strip() if counts else '?'}"
    )
    print(
        "launch times:",
        ", ".join(f"{s:.2f}" for s in launch_s),
        "| bare:",
        ", ".join(f"{s:.3f}" for s in bare_s),
    )


if __name__ == "__main__":
    main()
