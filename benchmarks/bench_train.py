"""Overhead of the built-in training loop over a bare, hand-written PyTorch loop.

Both train the same model on the same in-memory data with the same batch size and optimizer and evaluate
on the validation split every epoch; the built-in loop adds what sweeper does per epoch: metrics.parquet,
TensorBoard, status heartbeat, the pruning report, last.pt/best.pt, and the LR schedule per step.
Runs alternate (built-in, bare, built-in, ...) so both see the same machine load; the overhead is the
median over the pairs of each pair's ratio (a noisy machine slows both runs of a pair alike), and the CPU
time of this process is shown too (it ignores other processes, but also the time spent waiting for fsync).
The overhead must stay under 5%.

    python benchmarks/bench_train.py                      # the reference sweep's ViT on digits, CPU
    python benchmarks/bench_train.py --device cuda --epochs 20
    python benchmarks/bench_train.py --model '{"name": "resnet18", "width": 16}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sweeper.config import parse_train_config  # noqa: E402
from sweeper.data import load_data  # noqa: E402
from sweeper.models import build_model  # noqa: E402
from sweeper.run import Run  # noqa: E402
from sweeper.train import train  # noqa: E402

REFERENCE_MODEL = {
    "name": "vit",
    "patch_size": 2,
    "layers": 2,
    "d_model": 64,
    "heads": 4,
    "mlp_ratio": 2.0,
    "dropout": 0.1,
}
BUDGET = 0.05


def bare_loop(config: dict) -> None:
    """What a researcher would write by hand: no logging, no checkpoints."""
    cfg = parse_train_config(config)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    data = load_data(cfg.data).to(device)
    model = build_model(cfg.model, data.info).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(data.x_train), generator=shuffle).to(device)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(data.x_valid[s : s + 512]) for s in range(0, len(data.x_valid), 512)])
            F.cross_entropy(logits, data.y_valid).item()
            (logits.argmax(1) == data.y_valid).float().mean().item()
    if device.type == "cuda":
        torch.cuda.synchronize()


def builtin_loop(config: dict) -> None:
    with tempfile.TemporaryDirectory() as run_dir:
        # A real pruner callable (Optuna's report+should_prune in a study): consulted every epoch.
        run = Run(run_dir, config, objective="valid/acc", pruner=lambda epoch, value: False)
        train(config, run)
        run.close()
    if config["device"] == "cuda":
        torch.cuda.synchronize()


def timed(fn, config: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(config)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 = one sweep slot)")
    parser.add_argument("--model", type=json.loads, default=REFERENCE_MODEL, help="model config as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = {
        "model": args.model,
        "data": {"name": "digits"},
        "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.01},
        "schedule": {"name": "warmup", "warmup_epochs": 3},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    samples_per_run = args.epochs * len(load_data(parse_train_config(config).data).x_train)
    bare_runs, builtin_runs = [], []
    for warm_up in (builtin_loop, bare_loop):  # imports (tensorboard, sklearn), allocator, kernels
        warm_up({**config, "epochs": 1})
    for _ in range(args.repeats):
        builtin_runs.append(timed(builtin_loop, config))
        bare_runs.append(timed(bare_loop, config))
    bare = statistics.median(w for w, _ in bare_runs)
    builtin = statistics.median(w for w, _ in builtin_runs)
    ratios = [b / a for (b, _), (a, _) in zip(builtin_runs, bare_runs, strict=True)]
    bare_cpu = statistics.median(c for _, c in bare_runs)
    builtin_cpu = statistics.median(c for _, c in builtin_runs)
    overhead = statistics.median(ratios) - 1.0
    print(
        f"device {args.device} ({torch.get_num_threads()} threads), model {args.model['name']}, "
        f"{args.epochs} epochs x {samples_per_run // args.epochs} samples, median of {args.repeats} alternating pairs"
    )
    print(
        f"bare PyTorch loop : {samples_per_run / bare:8.0f} samples/s  ({bare:.2f} s wall, {bare_cpu:.2f} s CPU)"
    )
    print(
        f"built-in loop     : {samples_per_run / builtin:8.0f} samples/s  ({builtin:.2f} s wall, {builtin_cpu:.2f} s CPU)"
    )
    print(
        f"ratio built-in/bare per pair: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f} "
        f"({(builtin - bare) / args.epochs * 1000:+.1f} ms per epoch), "
        f"CPU {builtin_cpu / bare_cpu:.3f}; overhead {overhead:+.1%}, budget {BUDGET:.0%}: "
        f"{'OK' if overhead < BUDGET else 'OVER BUDGET'}"
    )
    return 0 if overhead < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
