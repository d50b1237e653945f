"""Packing on the local SLURM cluster: 64 one-epoch trials unpacked, `pack: 8` parallel and `pack: 8`
sequential. For each: the scheduler jobs used (distinct array task ids in the ledger) and the wall time
from `sweeper launch` to every trial COMPLETED; printed with the ratios to the unpacked run.

    sudo slurm/cluster.sh start
    .venv/bin/python benchmarks/bench_pack.py [--trials 64] [--pack 8] [--epochs 1]

The trials are the tests' `slow_counter` (no training: the benchmark is about scheduler overhead). Timings
are only meaningful on an otherwise idle machine; the jobs it submitted are cancelled when it ends.
"""

from __future__ import annotations

import argparse
import os
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
sys.path.insert(0, str(REPO))

from sweeper.ledger import Ledger  # noqa: E402
from sweeper.status import sweep_status  # noqa: E402

SPEC = """\
name: {name}
entrypoint: jobfns:slow_counter
base: {{epochs: {epochs}, sleep: 0.0, lr: 0.0}}
grid: {{lr: [{values}]}}
launch: {{profile: local, parallelism: 64, pack: {pack}, pack_mode: {mode}}}
"""


def run_one(workdir: Path, name: str, trials: int, pack: int, mode: str, epochs: int) -> tuple[int, float]:
    values = ", ".join(str(i) for i in range(1, trials + 1))
    (workdir / f"{name}.yaml").write_text(
        SPEC.format(name=name, epochs=epochs, values=values, pack=pack, mode=mode)
    )
    env = {"PYTHONPATH": str(REPO / "tests"), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "launch", f"{name}.yaml"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
    )
    sweep = (workdir / "runs" / name / "latest").resolve()
    try:
        while {s.state for s in sweep_status(Ledger(sweep))} != {"COMPLETED"}:
            time.sleep(1.0)
        elapsed = time.perf_counter() - start
    finally:
        ids = {str(e["job_id"]).split("_")[0] for e in Ledger(sweep).events() if e.get("job_id")}
        subprocess.run(["scancel", *ids], capture_output=True)
    jobs = {r.latest["job_id"] for r in Ledger(sweep).records().values() if r.latest}
    return len(jobs), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--pack", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_pack_") as tmp:
        workdir = Path(tmp)
        results = {
            "unpacked": run_one(workdir, "unpacked", args.trials, 1, "parallel", args.epochs),
            f"pack {args.pack} parallel": run_one(
                workdir, "parallel", args.trials, args.pack, "parallel", args.epochs
            ),
            f"pack {args.pack} sequential": run_one(
                workdir, "sequential", args.trials, args.pack, "sequential", args.epochs
            ),
        }
    base_jobs, base_time = results["unpacked"]
    print(f"{args.trials} trials of {args.epochs} epoch(s)")
    print(f"{'':24} {'jobs':>6} {'wall s':>8} {'fewer jobs':>11} {'time ratio':>11}")
    for name, (jobs, elapsed) in results.items():
        print(f"{name:24} {jobs:6d} {elapsed:8.1f} {base_jobs / jobs:10.1f}x {elapsed / base_time:10.2f}x")


if __name__ == "__main__":
    main()
