"""A stand-in for a researcher's training script, imports nothing from sweeper (nor torch): a curve whose
valid/acc rises with --lr, one metrics row per epoch in the format asked for, and the misbehaviours the
command-trial tests need (failing, killing itself, flooding stdout, printing garbage, checkpointing on a
signal and resuming)."""

import argparse
import csv
import json
import math
import os
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument(
    "--epochs", type=int, default=int(os.environ.get("SWEEPER_EPOCHS") or 5), help="default: $SWEEPER_EPOCHS"
)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument(
    "--format", default="stdout", choices=["stdout", "file", "csv", "regex", "tensorboard", "none"]
)
parser.add_argument("--first-epoch", type=int, default=1)
parser.add_argument(
    "--fail-at", "--fail_at", type=int, default=0, help="exit with --exit-code after this epoch"
)
parser.add_argument("--exit-code", type=int, default=3)
parser.add_argument(
    "--kill-self-at", "--kill_self_at", type=int, default=0, help="SIGKILL itself after this epoch"
)
parser.add_argument(
    "--garbage", nargs="?", const="true", default="false", help="print malformed metric lines too"
)
parser.add_argument("--flood-mb", type=int, default=0, help="print this many MiB of text first")
parser.add_argument(
    "--checkpoint", action="store_true", help="save state.json on SIGUSR2/SIGTERM, resume from it"
)
args, unknown = parser.parse_known_args()

run_dir = os.environ.get("SWEEPER_RUN_DIR", ".")
with open(os.path.join(run_dir, f"env-{os.getpid()}.json"), "w") as f:
    json.dump(
        {"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("SWEEPER_")}}, f
    )

stop = []
if args.checkpoint:
    for sig in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.append(signum))

state_path = os.path.join(run_dir, "state.json")
start = args.first_epoch
if args.checkpoint and os.path.exists(state_path):
    start = json.load(open(state_path))["epoch"] + 1
    print(f"resuming at epoch {start}", file=sys.stderr, flush=True)

if args.flood_mb:
    chunk = "x" * (1 << 20)
    for _ in range(args.flood_mb):
        sys.stdout.write(chunk)  # no newline at all: one line of many MiB
    sys.stdout.write("\n")
    for i in range(20000):
        print(f"progress line {i}")
    sys.stdout.flush()

metrics_file = os.environ.get("SWEEPER_METRICS")
tb = None
if args.format == "tensorboard":
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(os.path.join(run_dir, "logs"))


def row(epoch):
    k = epoch - args.first_epoch + 1
    acc = 1 - math.exp(-args.lr * k) * 0.9
    return {"epoch": epoch, "train/loss": round(1 / k, 6), "valid/acc": round(acc, 6), "lr": args.lr}


last = args.first_epoch + args.epochs - 1
for epoch in range(start, last + 1):
    if args.sleep:
        time.sleep(args.sleep)
    r = row(epoch)
    if args.garbage == "true":
        print('{"epoch": "three", "valid/acc": 1}', flush=True)
        print("{not json", flush=True)
    if args.format == "stdout":
        print(json.dumps(r), flush=True)
    elif args.format == "file":
        with open(metrics_file, "a") as f:
            f.write(json.dumps(r) + "\n")
    elif args.format == "csv":
        path = os.path.join(run_dir, "metrics.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["epoch", "step", "train_loss", "val_acc"])
            w.writerow([epoch, epoch * 10, r["train/loss"], ""])
            w.writerow([epoch, epoch * 10, "", r["valid/acc"]])
    elif args.format == "regex":
        print(f"epoch {epoch} loss {r['train/loss']} val_acc {r['valid/acc']}", flush=True)
    elif args.format == "tensorboard":
        tb.add_scalar("train/loss", r["train/loss"], epoch)
        tb.add_scalar("valid/acc", r["valid/acc"], epoch)
        tb.flush()
    if args.checkpoint:
        with open(state_path + ".tmp", "w") as f:
            json.dump({"epoch": epoch}, f)
        os.replace(state_path + ".tmp", state_path)
    if args.fail_at and epoch == args.fail_at:
        print("ValueError: the loss went to the moon", file=sys.stderr, flush=True)
        sys.exit(args.exit_code)
    marker = f"killed-{os.environ.get('SWEEPER_TRIAL_ID')}"  # in the cwd: a retry's new run dir goes on
    if args.kill_self_at and epoch == args.kill_self_at and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    if stop:
        sys.exit(128 + stop[0])
if tb is not None:
    tb.close()
