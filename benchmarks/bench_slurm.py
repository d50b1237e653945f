"""Launch and status of 100 / 1k / 10k-trial sweeps on the local SLURM cluster, against bare SLURM commands.

    sudo SLURM_MAX_ARRAY_SIZE=10001 slurm/cluster.sh fresh   # a realistic limit (the test default is 5)
    .venv/bin/python benchmarks/bench_slurm.py [--trials 100,1000,10000] [--repeat 3]

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
Each sweeper run alternates with its baseline (launch, bare sbatch, launch, ...) so that load from others
on the machine hits both alike. `sweeper status` runs with a PATH shim that logs every sacct call, so the
table says how many it made. It prints a cost-growth table over the trial counts and PASS/FAIL lines for
the 10k targets (issue 19): launch <= 10 s and <= 1.5x the bare submissions, status <= 1 s with one sacct.
All jobs the benchmark submitted are cancelled when it ends. A cancelled array task stays a job record for
MinJobAge (300 s here), so --repeat 3 at 10k leaves ~60k records for 5 minutes: MaxJobCount (100000 in
slurm/cluster.sh) must leave room for them (or sbatch answers "Resource temporarily unavailable"): the
benchmark waits for that room before each sweep size.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The processes started here get their bytecode cached, as an installed package has it: with
# PYTHONDONTWRITEBYTECODE (set on some CI and sandbox machines) each would compile sweeper's edited modules
# again, start-up that no user pays (bench_analyze does the same).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
SWEEPER = [sys.executable, "-m", "sweeper.cli"]


LAUNCH_TARGET_S, LAUNCH_TARGET_RATIO, STATUS_TARGET_S, TARGET_TRIALS = 10.0, 1.5, 1.0, 10000


def timed(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
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


def sacct_shim(work: Path) -> tuple[dict, Path]:
    """An environment whose `sacct` logs one line per call to a file, then runs the real one."""
    real = shutil.which("sacct")
    if real is None:
        raise SystemExit("no sacct on PATH")
    shim, log = work / "shim", work / "sacct_calls.log"
    shim.mkdir(exist_ok=True)
    (shim / "sacct").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (shim / "sacct").chmod(0o755)
    return {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}, log


def status_calls(argv: list[str], work: Path, env: dict, log: Path) -> tuple[float, str, int]:
    """One timed `sweeper status` and the number of sacct calls it made."""
    log.unlink(missing_ok=True)
    seconds, out = timed(argv, work, env)
    return seconds, out, len(log.read_text().splitlines()) if log.exists() else 0


def wait_for_room(tasks: int, max_job_count: int, timeout: float = 600) -> None:
    """Until the controller can take `tasks` more job records (cancelled tasks stay records for MinJobAge)."""
    deadline, said = time.time() + timeout, False
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i"], capture_output=True, text=True)
        if len(out.stdout.split()) + tasks <= max_job_count:
            return
        if not said:
            print("waiting for the controller to purge ended job records (MinJobAge) ...", flush=True)
            said = True
        time.sleep(10)
    raise SystemExit(
        f"no room for {tasks} job records under MaxJobCount {max_job_count} after {timeout:.0f} s"
    )


def grid(n: int) -> str:
    """A grid of n trials as two axes (10k trials: 100 x 100), as a big sweep is written: a list of 10,000
    values in the YAML would time the YAML parser, not the launch."""
    rows = next(r for r in range(int(n**0.5), 0, -1) if n % r == 0)
    return f"{{i: {list(range(rows))}, j: {list(range(n // rows))}}}"


def measure(n: int, work: Path, repeat: int, parallelism: int, limit: int, run_to_end: bool, timeout: float):
    """Launch / status of an n-trial sweep, each run alternating with its bare baseline."""
    from sweeper.backends import slurm_commands
    from sweeper.backends.slurm import split_arrays

    parts = split_arrays(n, limit, parallelism)
    sizes, after = [p.size for p in parts], [p.after for p in parts]
    spec = work / f"spec_{n}.yaml"
    spec.write_text(
        f"name: bench{n}\nentrypoint: bench_fns:exit_at_once\nbase: {{i: 0, j: 0}}\n"
        f"grid: {grid(n)}\n"
        f"launch: {{profile: local, parallelism: {parallelism}, slurm: {{additional: {{hold: true}}}}}}\n"
    )
    env, log = sacct_shim(work)
    r: dict = {"trials": n, "arrays": len(sizes), "launch": [], "bare": [], "sacct_calls": []}
    max_job_count = int(slurm_commands.cluster_config().get("MaxJobCount") or 10000)
    wait_for_room(2 * n * repeat + n, max_job_count)  # every launch and bare array, each cancelled
    keep: list[str] = []
    try:
        for _ in range(repeat):  # only the last sweep stays queued: earlier ones are cancelled at once
            if keep:
                subprocess.run(["scancel", *keep], capture_output=True)
            seconds, _out = timed(
                [*SWEEPER, "launch", spec.name, "--yes", "--root", str(work / "runs")], work
            )
            r["launch"].append(seconds)
            sweep = (work / "runs" / f"bench{n}" / "latest").resolve()
            keep = sweep_arrays(sweep)
            seconds, ids = sbatch_baseline(work, sizes, parallelism, after)
            r["bare"].append(seconds)
            subprocess.run(["scancel", *ids], capture_output=True)
        sacct_argv = ["sacct", "-X", "-n", "--parsable2", "-o", "JobID,State", "-j", ",".join(keep)]
        r["status_pending"], r["sacct_pending"] = [], []
        for _ in range(repeat):
            seconds, out, calls = status_calls([*SWEEPER, "status", str(sweep)], work, env, log)
            r["status_pending"].append(seconds)
            r["sacct_calls"].append(calls)
            r["sacct_pending"].append(timed(sacct_argv, work)[0])
        r["status_lines"] = len(out.splitlines())
        if run_to_end:
            subprocess.run(["scontrol", "release", *keep], capture_output=True)
        else:
            subprocess.run(["scancel", *keep], capture_output=True)
        waited_at = time.perf_counter()
        r["ended"] = wait_until_idle(keep, timeout)
        r["run_s"] = time.perf_counter() - waited_at
        time.sleep(10)  # sacct lags a few seconds behind the last job
        # the first refresh after the end records every attempt's accounting into the ledger: timed apart
        r["first_refresh"], out, _ = status_calls([*SWEEPER, "status", str(sweep)], work, env, log)
        r["status_done"], r["sacct_done"] = [], []
        for _ in range(repeat):
            seconds, out, calls = status_calls([*SWEEPER, "status", str(sweep)], work, env, log)
            r["status_done"].append(seconds)
            r["sacct_calls"].append(calls)
            r["sacct_done"].append(timed(sacct_argv, work)[0])
        counts = [line for line in out.splitlines() if re.fullmatch(r"([A-Z_]+ \d+\s*)+", line.strip())]
        r["counts"] = counts[-1].strip() if counts else "?"
    finally:
        if keep:
            subprocess.run(["scancel", *keep], capture_output=True)
    return r


def print_tables(results: list[dict], run_to_end: bool) -> None:
    med = statistics.median
    ended = "all ended" if run_to_end else "all cancelled"
    print()
    print(
        "| trials | arrays | launch (s) | bare sbatch (s) | ratio | status, pending (s) | bare sacct (s) "
        f"| ratio | status, {ended} (s) | bare sacct (s) | first status after the end (s) | sacct calls/status |"
    )
    print("|---" * 12 + "|")
    for r in results:
        launch, bare = med(r["launch"]), med(r["bare"])
        pend, sacct_pend = med(r["status_pending"]), med(r["sacct_pending"])
        done, sacct_done = med(r["status_done"]), med(r["sacct_done"])
        calls = sorted(set(r["sacct_calls"]))
        print(
            f"| {r['trials']} | {r['arrays']} | {launch:.3f} | {bare:.3f} | {launch / bare:.1f}x | {pend:.3f} "
            f"| {sacct_pend:.3f} | {pend / sacct_pend:.1f}x | {done:.3f} | {sacct_done:.3f} "
            f"| {r['first_refresh']:.3f} | {','.join(map(str, calls))} |"
        )
    if len(results) > 1:  # what one more trial costs, between the smallest and the largest sweep
        lo, hi = results[0], results[-1]
        extra = hi["trials"] - lo["trials"]
        per = (med(hi["launch"]) - med(lo["launch"])) / extra * 1000
        bare_per = (med(hi["bare"]) - med(lo["bare"])) / extra * 1000
        status_per = (med(hi["status_pending"]) - med(lo["status_pending"])) / extra * 1000
        print(
            f"\nper extra trial ({lo['trials']} -> {hi['trials']}): launch {per:.3f} ms (bare {bare_per:.3f} ms), "
            f"status {status_per:.4f} ms"
        )
    for r in results:
        print(
            f"{r['trials']}: launch {', '.join(f'{s:.2f}' for s in r['launch'])} | bare "
            f"{', '.join(f'{s:.3f}' for s in r['bare'])} | status {', '.join(f'{s:.2f}' for s in r['status_pending'])}"
            f" | status output {r['status_lines']} lines | {'ended' if r['ended'] else 'NOT all ended'} "
            f"{r['run_s']:.0f} s after; final counts: {r['counts']}"
        )
    target = next((r for r in results if r["trials"] == TARGET_TRIALS), None)
    print()
    if target is None:
        print(f"targets (issue 19) are for {TARGET_TRIALS} trials: not measured in this run")
        return
    launch, bare, status_s = med(target["launch"]), med(target["bare"]), med(target["status_pending"])
    calls = max(target["sacct_calls"])

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(
        f"{verdict(launch <= LAUNCH_TARGET_S)} launch of {TARGET_TRIALS} trials <= {LAUNCH_TARGET_S:.0f} s: {launch:.2f} s"
    )
    print(
        f"{verdict(launch <= LAUNCH_TARGET_RATIO * bare)} launch <= {LAUNCH_TARGET_RATIO}x the bare "
        f"submissions it needs ({target['arrays']} sbatch, {bare:.3f} s): {launch / bare:.1f}x"
    )
    print(
        f"{verdict(status_s <= STATUS_TARGET_S)} status of {TARGET_TRIALS} tasks <= {STATUS_TARGET_S:.0f} s: {status_s:.2f} s (bare sacct {med(target['sacct_pending']):.3f} s)"
    )
    print(f"{verdict(calls <= 1)} status makes at most one sacct call: {calls} at most per status")


def cluster_facts() -> str:
    from sweeper.backends import slurm_commands as slurm

    config = slurm.cluster_config()
    return f"MaxArraySize {config.get('MaxArraySize')}, MaxJobCount {config.get('MaxJobCount')}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", default="100,1000,10000", help="comma-separated sweep sizes")
    parser.add_argument("--parallelism", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (and of its baseline)")
    parser.add_argument(
        "--run-to-end",
        action="store_true",
        help="let each last sweep run (~2 s of CPU per trial: ~20 min for 1000 on 2 cores) instead of "
        "cancelling it, so that 'all ended' means a run dir with a heartbeat per trial",
    )
    parser.add_argument("--finish-timeout", type=float, default=3600, help="seconds to wait for the end")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from sweeper.backends import slurm_commands as slurm

    if not slurm.available():
        raise SystemExit("no SLURM here: start the local cluster with `sudo slurm/cluster.sh start`")
    limit = slurm.max_array_size()
    counts = [int(n) for n in args.trials.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    (work / "bench_fns.py").write_text("def exit_at_once(config, run):\n    pass\n")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(work)])
    print(f"cluster: {cluster_facts()}; %{args.parallelism}; {args.repeat} repeat(s); work dir {work}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results = []
    for n in counts:
        results.append(
            measure(n, work, args.repeat, args.parallelism, limit, args.run_to_end, args.finish_timeout)
        )
        print(f"measured {n} trials", flush=True)
    print_tables(results, args.run_to_end)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
