"""Optuna search on digits: a grid without pruning vs the same grid with Hyperband vs TPE + Hyperband.

All run through the real `sweeper launch` (local executor, 2 workers) with the built-in ViT trainer.
Reports the trial-epochs each spent (every epoch of every seed's run, read back from metrics.parquet)
and the best valid accuracy each found (trial value = mean over seeds of each run's best epoch). Each
method's best configuration is then trained again on fresh seeds that no search saw, because a search's
own best value is a maximum over noisy trials (more completed trials, higher maximum): the fresh-seed
value says how good the configuration it found really is, and the target is judged on it.

    python benchmarks/bench_tune.py [--configs 32] [--seeds 3] [--epochs 15] [--tpe-seeds 10] [--reeval-seeds 16]

Every method tries the same number of configurations: the 32 points of a 2^5 grid over lr, weight decay,
dropout, layers and d_model, or 32 TPE trials over the same ranges. Each seed's epochs are reported to
Hyperband one after the other (max_resource = epochs x seeds = 45). Hyperband: min_resource 3, reduction 4,
bootstrap_count 1: two brackets of about 21 and 11 trials; the first stops trials at epoch 3 or at epoch 12
of their first seed, the second only at epoch 12. Why these:
- The first rung comes after the 2-epoch lr warmup: at epoch 1 the trials sit at 10-25% accuracy and rank
  with a Spearman correlation of 0.28 against their final value (0.77 at epoch 3, 0.90 at epoch 10; measured
  on the unpruned grid). 1-layer models learn faster early but end worse: searches with min_resource 1 or 2,
  or a single rung at epoch 4, sometimes picked one.
- Two brackets, as Optuna's TPE learns only from the trials of the same bracket (more brackets leave most of
  them in TPE's random startup).
- bootstrap_count 1: Optuna cannot pause a trial, so it promotes any trial that is the best so far at a rung;
  without a bootstrap the first trials of each bracket (TPE's random startup) all run to the end, which cost
  0.31-0.47x of the unpruned trial-epochs (3 searches). A bootstrap prunes the first trials at each rung
  outright instead: bootstrap_count 2 with reduction 5 cost 0.19-0.34x (9 searches) but completes no trial
  in about 13% of searches (one run of this script did; `launch` warns); bootstrap_count 1 with reduction 4
  does so about 2% of the time.
- Seeds one after the other, the rungs in the first seed, not in lockstep (every seed to the rung epoch,
  then a decision on their mean): lockstep pays min_resource x seeds epochs per trial before the first
  decision, 0.2x of the unpruned trial-epochs here before any trial goes on, and successive halving's
  ideal cost with reduction 3-5 is then 0.36-0.38x, over the target; in sequence the first rung costs 0.07x.
A trial's value is the mean of 3 seeds: with 2, a config whose two seeds are lucky wins the search (digits has
360 validation images). A TPE search is one random draw, so it runs --tpe-seeds times with different sampler
seeds, and the target is judged on their mean. The re-training uses the same fresh seeds for every config, so
differences are measured seed by seed (± their standard error): one fresh seed's value varies by about 1 point.

Target: the pruned search is within 0.5 points of the unpruned best, with at most 1/3 of the trial-epochs.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

# What every method trains (and the re-training of each best config).
BASE = """
base:
  model: {{name: vit, patch_size: 2, layers: 2, d_model: 64, heads: 4, mlp_ratio: 2.0, dropout: 0.1}}
  data: {{name: digits}}
  optim: {{name: adamw, lr: 2e-3, weight_decay: 0.01}}
  schedule: {{name: warmup, warmup_epochs: 2}}
  epochs: {epochs}
  batch_size: 64
"""
SPEC = (
    "name: {name}\n"
    + BASE
    + """search:
  params:
{params}
  sampler: {sampler}
  pruner: {pruner}
  n_trials: {configs}
  workers: 2
seeds: {seeds}
objective: {{metric: valid/acc}}
"""
)

# The grid: 2 values of each of the 5 parameters = 32 configurations.
GRID = """\
    optim.lr: [1e-3, 4e-3]
    optim.weight_decay: [0.0, 0.05]
    model.dropout: [0.05, 0.2]
    model.layers: [1, 2]
    model.d_model: [32, 64]"""
# The same ranges, continuous, for TPE.
SPACE = """\
    optim.lr: {type: float, low: 1e-3, high: 4e-3, log: true}
    optim.weight_decay: {type: float, low: 0.0, high: 0.05}
    model.dropout: {type: float, low: 0.05, high: 0.2}
    model.layers: {type: int, low: 1, high: 2}
    model.d_model: [32, 64]"""
HYPERBAND = (
    "{name: hyperband, min_resource: %(min_resource)d, reduction_factor: %(reduction)d, "
    "bootstrap_count: %(bootstrap)d}"
)
TPE = "{name: tpe, seed: %(tpe_seed)d, n_startup_trials: %(startup)d, multivariate: true}"


def methods(args) -> dict[str, tuple[str, str, str]]:
    """name -> (search space, sampler, pruner); TPE + Hyperband once per sampler seed (one search is one draw)."""
    out = {"grid, no pruning": (GRID, "grid", "none"), "grid + Hyperband": (GRID, "grid", HYPERBAND)}
    for seed in range(args.tpe_seeds):
        out[f"TPE + Hyperband, sampler seed {seed}"] = (
            SPACE,
            TPE.replace("%(tpe_seed)d", str(seed)),
            HYPERBAND,
        )
    return out


def slug(method: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")


def run(method: str, workdir: Path, args) -> dict:
    params, sampler, pruner = methods(args)[method]
    name = slug(method)
    spec = workdir / f"{name}.yaml"
    spec.write_text(
        SPEC.format(
            name=name,
            epochs=args.epochs,
            params=params,
            sampler=sampler % vars(args),
            pruner=pruner % vars(args),
            configs=args.configs,
            seeds=list(range(args.seeds)),
        )
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "launch", str(spec), "--executor", "local"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    sweep = (workdir / "runs" / name / "latest").resolve()
    epochs = sum(pq.read_metadata(p).num_rows for p in sweep.glob("*/metrics.parquet"))
    from sweeper.ledger import Ledger
    from sweeper.study import load_study

    ledger = Ledger(sweep)
    study = load_study(ledger, ledger.launched_spec())
    states = [t.state.name for t in study.get_trials()]
    complete = states.count("COMPLETE") > 0  # a search whose trials were all pruned found nothing
    return {
        "method": method,
        "trial_epochs": epochs,
        "best": study.best_value if complete else None,
        "best_params": study.best_params if complete else None,
        "wall": wall,
        "pruned": states.count("PRUNED"),
        "complete": states.count("COMPLETE"),
    }


REEVAL = (
    "name: reeval\n"
    + BASE
    + """configs:
{configs}
seeds: {seeds}
objective: {{metric: valid/acc}}
launch: {{parallelism: 2}}
"""
)


def reevaluate(results: list[dict], workdir: Path, args) -> None:
    """Train each method's best config again on seeds no search saw: its value there is what the config is
    worth. A search's own best value is the maximum over its noisy trials (the winner's curse): a search
    that completes more configurations reports a higher maximum without finding a better config."""
    import json

    configs = "".join(f"  {slug(r['method'])}: {json.dumps(r['best_params'])}\n" for r in results)
    seeds = list(range(100, 100 + args.reeval_seeds))
    (workdir / "reeval.yaml").write_text(REEVAL.format(epochs=args.epochs, configs=configs, seeds=seeds))
    subprocess.run(
        [sys.executable, "-m", "sweeper.cli", "launch", "reeval.yaml", "--executor", "local"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    per_config: dict[str, dict[int, float]] = {}
    for config in (workdir / "runs" / "reeval" / "latest").resolve().glob("*/config.json"):
        info = json.loads(config.read_text())
        best = max(pq.read_table(config.parent / "metrics.parquet").column("valid/acc").to_pylist())
        per_config.setdefault(info["name"], {})[info["seed"]] = best
    for r in results:
        r["by_seed"] = [per_config[slug(r["method"])][seed] for seed in seeds]
        r["reeval"] = statistics.mean(r["by_seed"])
        r["reeval_std"] = statistics.stdev(r["by_seed"]) if len(seeds) > 1 else 0.0


def paired_diff(values: list[float], base: list[float]) -> tuple[float, float]:
    """Mean and standard error of the per-seed differences: every config is re-trained on the same fresh seeds
    (same data order and split), so the difference is measured seed by seed."""
    diffs = [a - b for a, b in zip(values, base, strict=True)]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return statistics.mean(diffs), se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", type=int, default=32, help="configurations each method tries (32 = the grid)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per trial (the value is their mean)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--tpe-seeds", dest="tpe_seeds", type=int, default=10, help="TPE searches (sampler seeds)"
    )
    parser.add_argument("--startup", type=int, default=5, help="TPE's random startup trials (per bracket)")
    parser.add_argument(
        "--min-resource", dest="min_resource", type=int, default=3, help="Hyperband's min steps"
    )
    parser.add_argument("--reduction", type=int, default=4, help="Hyperband's reduction factor")
    parser.add_argument(
        "--bootstrap", type=int, default=1, help="trials stopped at each rung before any is promoted"
    )
    parser.add_argument(
        "--reeval-seeds", dest="reeval_seeds", type=int, default=16, help="fresh seeds for each best config"
    )
    parser.add_argument("--workdir", help="keep the sweeps in this folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [run(method, workdir, args) for method in methods(args)]
        reevaluate([r for r in results if r["best_params"] is not None], workdir, args)
    for r in results:  # a search that completed no trial found no config: it is scored as the worst config
        if r["best_params"] is None:
            worst = min((x for x in results if x["best_params"] is not None), key=lambda x: x["reeval"])
            r.update(best=float("nan"), by_seed=worst["by_seed"], reeval=worst["reeval"], reeval_std=0.0)
            print(f"{r['method']}: no trial completed; scored as the worst config found ({worst['method']})")
    base, tpe = results[0], results[2:]
    if len(tpe) > 1:  # the mean over the TPE searches: what a researcher can expect from one
        mean = lambda key: statistics.mean(r[key] for r in tpe)  # noqa: E731
        results.append(
            {
                "method": f"TPE + Hyperband, mean of {len(tpe)}",
                **{
                    key: mean(key) for key in ("trial_epochs", "best", "reeval", "wall", "complete", "pruned")
                },
                "reeval_std": statistics.stdev(r["reeval"] for r in tpe),
                "by_seed": [
                    statistics.mean(values) for values in zip(*(r["by_seed"] for r in tpe), strict=True)
                ],
                "best_params": "-",
            }
        )
    print(
        f"\n{args.configs} configurations each x {args.seeds} seeds x up to {args.epochs} epochs, ViT on digits, "
        f"2 workers; TPE startup {args.startup}, Hyperband min_resource {args.min_resource}, reduction "
        f"{args.reduction}, bootstrap_count {args.bootstrap}; each method's best config re-trained on {args.reeval_seeds} fresh seeds\n"
    )
    print(
        "| method | complete / pruned | trial-epochs | ratio | search's best | best config on fresh seeds | "
        "diff (pts) ± SE | wall s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        diff, se = paired_diff(r["by_seed"], base["by_seed"])
        print(
            f"| {r['method']} | {r['complete']:.3g} / {r['pruned']:.3g} | {r['trial_epochs']:.0f} | "
            f"{r['trial_epochs'] / base['trial_epochs']:.2f} | {100 * r['best']:.2f}% | "
            f"{100 * r['reeval']:.2f} ± {100 * r['reeval_std']:.2f}% | {100 * diff:+.2f} ± {100 * se:.2f} | "
            f"{r['wall']:.0f} | {r['wall'] / base['wall']:.2f} |"
        )
    print()
    for pruned in [results[1], results[-1]]:
        epochs_ok = pruned["trial_epochs"] <= base["trial_epochs"] / 3
        found_ok = paired_diff(pruned["by_seed"], base["by_seed"])[0] >= -0.005
        print(
            f"target for {pruned['method']}: best config within 0.5 pts of the unpruned best's "
            f"({'met' if found_ok else 'NOT met'}), at most 1/3 of the trial-epochs ({'met' if epochs_ok else 'NOT met'})"
        )
    if len(tpe) > 1:
        diffs = [paired_diff(r["by_seed"], base["by_seed"])[0] for r in tpe]
        print(
            f"TPE + Hyperband searches within 0.5 pts: {sum(d >= -0.005 for d in diffs)} of {len(tpe)} "
            f"(median {100 * statistics.median(diffs):+.2f} pts, worst {100 * min(diffs):+.2f}); at most 1/3 of "
            f"the trial-epochs: {sum(r['trial_epochs'] <= base['trial_epochs'] / 3 for r in tpe)} of {len(tpe)}"
        )
    for r in results[:-1] if len(tpe) > 1 else results:
        print(f"best params, {r['method']}: {r['best_params']}")


if __name__ == "__main__":
    main()
