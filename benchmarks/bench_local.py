"""Local trials warm (forked by the launcher's zygote, imports done) vs cold (`SWEEPER_ZYGOTE=off`: a fresh
interpreter per job that imports torch and the rest itself), on this machine.

    python benchmarks/bench_local.py [--pairs 3] [--trials 4]

Each pair launches the same sweep twice, warm and cold in alternating order (this machine's speed drifts by
tens of percent between runs): `--trials` one-epoch MLP trials on digits at parallelism 1, the issue's
example. Per trial, from the sweep's ledger: submit -> start (the `submitted` event to the job's `started`
event: the controller, job_parent, the job's interpreter and sweeper's imports), submit -> first epoch (to
the run's start in status.json plus the training seconds metrics.parquet records for epoch 1: also torch's
imports, the data and the epoch) and submit -> end (to its `ended` event: also the run's end and files). Per sweep: the launch's wall
time, interpreter start included. Prints medians over all pairs and the issue's targets: submit -> first
epoch under 0.5 s for trials after the first in a slot, and the 4-trial sweep under 12 s.
"""

from __future__ import annotations

import argparse
import json
import os
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
SPEC = """
name: local
base:
  model: {{name: mlp, depth: 1, width: 64}}
  data: {{name: digits}}
  optim: {{name: adamw, lr: 3e-3}}
  epochs: 1
grid:
  optim.lr: {lrs}
launch: {{parallelism: 1}}
"""


def launch(folder: Path, warm: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWEEPER_ZYGOTE": "" if warm else "off"}
    if warm:
        env.pop("SWEEPER_ZYGOTE")
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "launch", "spec.yaml", "--executor", "local"],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    sweep = (folder / "runs" / "local" / "latest").resolve()
    events = [json.loads(line) for line in (sweep / "attempts.jsonl").read_text().splitlines()]
    by_trial: dict[str, dict] = {}
    for event in events:
        trial = by_trial.setdefault(event.get("trial_id"), {})
        trial.setdefault(event["event"], event.get("time"))
        if event["event"] == "started":
            trial.setdefault("first_epoch", first_epoch_at(sweep / event["run_dir"]))
    trials = [t for t in by_trial.values() if "submitted" in t and "ended" in t]
    trials.sort(key=lambda t: t["submitted"])
    return {
        "wall": wall,
        "start": [t["started"] - t["submitted"] for t in trials],
        "first_epoch": [t["first_epoch"] - t["submitted"] for t in trials],
        "end": [t["ended"] - t["submitted"] for t in trials],
    }


def first_epoch_at(run_dir: Path) -> float:
    """When the run logged its first epoch (wall clock): its Run's start (status.json) plus the training
    seconds metrics.parquet records for epoch 1."""
    import pyarrow.parquet as pq

    started = json.loads((run_dir / "status.json").read_text())["started_at"]
    return started + pq.read_table(run_dir / "metrics.parquet").column("time_s")[0].as_py()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    lrs = [round(1e-3 * (i + 1), 4) for i in range(args.trials)]
    results: dict[str, list[dict]] = {"warm": [], "cold": []}
    with tempfile.TemporaryDirectory(prefix="sweeper-bench-local-") as tmp:
        folder = Path(tmp)
        (folder / "spec.yaml").write_text(SPEC.format(lrs=lrs))
        for pair in range(args.pairs):
            order = ("warm", "cold") if pair % 2 == 0 else ("cold", "warm")
            for mode in order:
                results[mode].append(launch(folder, mode == "warm"))
                r = results[mode][-1]
                print(
                    f"  pair {pair + 1} {mode}: sweep {r['wall']:.1f} s, submit->end per trial "
                    + ", ".join(f"{v:.2f}" for v in r["end"]),
                    flush=True,
                )

    def median(mode: str, key: str, later_only: bool) -> float:
        values = [v for r in results[mode] for v in (r[key][1:] if later_only else r[key])]
        return statistics.median(values)

    print(
        f"\n{args.trials} one-epoch MLP trials on digits, parallelism 1, {args.pairs} pairs, {os.cpu_count()} CPUs"
    )
    print(f"{'':40} {'warm':>8} {'cold':>8} {'ratio':>7}")
    rows = [
        ("sweep wall time (s)", [r["wall"] for r in results["warm"]], [r["wall"] for r in results["cold"]]),
        ("submit -> start, later trials (s)", None, None),
        ("submit -> first epoch, later trials (s)", None, None),
        ("submit -> end, later trials (s)", None, None),
        ("submit -> end, first trial (s)", None, None),
    ]
    values = {
        rows[0][0]: (statistics.median(rows[0][1]), statistics.median(rows[0][2])),
        rows[1][0]: (median("warm", "start", True), median("cold", "start", True)),
        rows[2][0]: (median("warm", "first_epoch", True), median("cold", "first_epoch", True)),
        rows[3][0]: (median("warm", "end", True), median("cold", "end", True)),
        rows[4][0]: tuple(statistics.median(r["end"][0] for r in results[m]) for m in ("warm", "cold")),
    }
    for label, (warm, cold) in values.items():
        print(f"{label:40} {warm:8.2f} {cold:8.2f} {warm / cold:6.2f}x")
    later = values["submit -> first epoch, later trials (s)"][0]
    sweep = values["sweep wall time (s)"][0]
    print(
        f"target: submit -> first epoch under 0.5 s for later trials: {later:.2f} s, "
        f"{'PASS' if later < 0.5 else 'FAIL'}"
    )
    if args.trials == 4:
        print(f"target: the 4-trial sweep under 12 s: {sweep:.1f} s, {'PASS' if sweep < 12 else 'FAIL'}")


if __name__ == "__main__":
    main()
