"""Train a small MLP on scikit-learn's digits; print one JSON line of metrics per epoch on stdout.

    python train_digits.py --lr 3e-3 --hidden 128 --epochs 10 --seed 0

An ordinary argparse script: it imports nothing from sweeper. Under a sweep, the spec's `command:` maps
config keys to these flags (`--lr={optim.lr}`) and sweeper reads the JSON lines from stdout.
"""

from __future__ import annotations

import digits_common as common
import torch


def main() -> None:
    args = common.make_parser(__doc__.splitlines()[0]).parse_args()
    common.set_threads()
    torch.manual_seed(args.seed)
    x_train, y_train, x_valid, y_valid = common.load_data()
    model = common.make_model(args.hidden, args.dropout)
    optimizer = common.make_optimizer(model, args)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        lr = common.lr_at(epoch, args)
        common.set_lr(optimizer, lr)
        train = common.train_epoch(model, optimizer, x_train, y_train, args.batch_size, generator)
        valid = common.evaluate(model, x_valid, y_valid)
        common.emit(epoch, train, valid, lr)


if __name__ == "__main__":
    main()
