"""train_digits.py with its own checkpoints: it survives a timeout, a preemption or a requeue.

    python train_digits_resume.py --lr 3e-3 --epochs 10 --checkpoint-dir ckpt/

Every epoch ends by writing CHECKPOINT_DIR/ckpt.pt atomically (a temp file, then os.replace): model,
optimizer, both random states and the epoch. On start it loads ckpt.pt if there is one and continues at
the next epoch, so an interrupted run followed by a rerun prints exactly the rows an uninterrupted run
would have printed (and no epoch twice).

Signals: SIGUSR2 (sweeper's "you are about to be timed out or preempted") and SIGTERM (pruned, or the
end of the grace period) set a flag. The loop checks it between batches: the partial epoch is dropped
(the last finished epoch is on disk already) and the script exits with 128 + the signal number (140 for
SIGUSR2, 143 for SIGTERM), the shell's convention for "killed by a signal". Not 0: exit 0 means "done",
and an interrupted run is not.

The --checkpoint-dir default is $SWEEPER_RUN_DIR when set (the trial's run dir), else ./ckpt.

`sweeper continue` restarts it the same way in the same run dir (SWEEPER_RESUME=1), with the larger epoch
count in {epochs} and $SWEEPER_EPOCHS (the default of --epochs) and any --set value in its flags: it loads
ckpt.pt and trains on from the next epoch to the new end. Its LR is a function of the epoch and --epochs
(a cosine to 0 at the last epoch), so a run continued from 10 to 20 epochs goes on along a 20-epoch
cosine: its LR jumps back up to that curve's value at epoch 11. Lower it with `--set optim.lr=...`.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

STOP: list[int] = []  # the signal numbers received; a list so the handler needs no `global`


def _on_signal(signum, frame) -> None:
    STOP.append(signum)


def install_handlers() -> None:
    # Before the slow torch import: a signal in the first seconds must not kill the process outright.
    signal.signal(signal.SIGUSR2, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def save_atomically(state: dict, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a reader (or a rerun after a kill) sees the old file or the new one, never half


def main() -> None:
    install_handlers()
    import digits_common as common
    import torch

    parser = common.make_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path(os.environ.get("SWEEPER_RUN_DIR") or "ckpt"),
        help="where ckpt.pt goes (default: $SWEEPER_RUN_DIR, else ./ckpt)",
    )
    args = parser.parse_args()
    common.set_threads()
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.checkpoint_dir / "ckpt.pt"
    hparams = {k: v for k, v in vars(args).items() if k != "checkpoint_dir"}

    torch.manual_seed(args.seed)
    x_train, y_train, x_valid, y_valid = common.load_data()
    model = common.make_model(args.hidden, args.dropout)
    optimizer = common.make_optimizer(model, args)
    generator = torch.Generator().manual_seed(args.seed)
    start = 1
    if ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["generator"])
        start = state["epoch"] + 1
        changed = {
            k: (state["hparams"].get(k), v) for k, v in hparams.items() if state["hparams"].get(k) != v
        }
        continued = int(os.environ.get("SWEEPER_SEGMENT") or 1) > 1  # `sweeper continue` changed them
        if changed and continued:
            common.log(f"continuing from {ckpt_path} with new flags (old, new): {changed}")
        elif changed:
            common.log(f"warning: {ckpt_path} was written with other flags (old, new): {changed}")
        if start > args.epochs:
            common.log(f"{ckpt_path}: all {args.epochs} epochs are done already")
        else:
            common.log(f"resuming from {ckpt_path} at epoch {start}")
    elif os.environ.get("SWEEPER_RESUME") == "1":
        common.log(f"SWEEPER_RESUME=1 but no {ckpt_path}: starting from epoch 1")

    for epoch in range(start, args.epochs + 1):
        lr = common.lr_at(epoch, args)
        common.set_lr(optimizer, lr)
        train = common.train_epoch(
            model, optimizer, x_train, y_train, args.batch_size, generator, should_stop=lambda: bool(STOP)
        )
        if train is None:
            break  # stopped mid-epoch: the checkpoint of epoch - 1 stands
        valid = common.evaluate(model, x_valid, y_valid)
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "generator": generator.get_state(),
            "hparams": hparams,
        }
        save_atomically(state, ckpt_path)
        common.emit(epoch, train, valid, lr)  # after the save: a printed epoch is never redone
        if STOP:
            break
    if STOP:
        name = signal.Signals(STOP[0]).name
        common.log(f"{name}: stopping; {ckpt_path} holds the last finished epoch")
        sys.exit(128 + STOP[0])


if __name__ == "__main__":
    main()
