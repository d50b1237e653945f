"""The summary numbers of many runs at once: numpy reductions over runs stored back to back in flat arrays.

Every definition of a summary number lives here (the summary cache is keyed by a hash of this file, so
changing a definition can never serve numbers computed under the old one). `S` is the split analyzed
(`valid`, or `test` with `--split test`); the objective is one metric column and a direction.

- objective, objective epoch: the best finite value of the objective metric; ties go to the earliest epoch
- best S acc / loss and their epochs: the same for `S/acc` (max) and `S/loss` (min)
- train acc @best, gap @best: `train/acc` at the objective's best epoch, and it minus `S/acc` at that epoch
- final train acc, final S acc, gap: the last finite values, and gap = final train acc - final S acc
- latest S loss, degradation (%): last finite `S/loss`, minus the best one (and as % of the best)
- still improving: the best `S/loss` came within the last `improving_window(epochs run)` epochs, and the last
  `S/loss` is not above the one at the start of that window (the loss is still falling at the end)
- epochs since best: last epoch - epoch of the best `S/loss`
- early stop: the epoch at which early stopping on `S/loss` (patience = `improving_window(epochs planned)`,
  any decrease counts as an improvement) would have stopped the run; none if it never ran out of patience
- non-finite epoch: the first epoch where `train/loss` or `S/loss` is NaN or inf (a null, i.e. a metric not
  logged that epoch, is not a NaN)
- diverged: a loss went non-finite, or the last `train/loss` (`S/loss` for a run that never logged it) is
  above both the first one and twice the lowest (training undid itself; a run that never learned, or a
  spike that stays below the start, is not "diverged")

Missing numbers are NaN in the arrays returned here (a run without the column, or without a finite value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sweeper.objective import Objective


def columns_needed(split: str, objective: Objective) -> list[str]:
    names = ["epoch", "train/acc", "train/loss", f"{split}/acc", f"{split}/loss", objective.metric]
    return list(dict.fromkeys(names))


@dataclass
class Segments:
    """Runs stored back to back: run i owns rows starts[i]:starts[i]+lengths[i] (every run has a row)."""

    lengths: np.ndarray

    def __post_init__(self) -> None:
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1])).astype(np.int64)
        self.run_of_row = np.repeat(np.arange(len(self.lengths)), self.lengths)
        self.rows = int(self.lengths.sum())

    def first_row_where(self, mask: np.ndarray) -> np.ndarray:
        """Per run, the first row where mask holds, else -1."""
        first = np.minimum.reduceat(np.where(mask, np.arange(self.rows), self.rows), self.starts)
        return np.where(first < self.rows, first, -1)

    def last_row_where(self, mask: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(np.where(mask, np.arange(self.rows), -1), self.starts)

    def best_row(self, values: np.ndarray, maximize: bool) -> np.ndarray:
        """Per run, the row of the best finite value (the earliest one on ties), else -1."""
        finite = np.isfinite(values)
        filled = np.where(finite, values, -np.inf if maximize else np.inf)
        best = (np.maximum if maximize else np.minimum).reduceat(filled, self.starts)
        return self.first_row_where(finite & (filled == best[self.run_of_row]))

    def running(self, ufunc: np.ufunc, values: np.ndarray, identity: float) -> np.ndarray:
        """Inclusive running min/max inside each run (a log-step scan: no Python loop over rows or runs)."""
        out = values.copy()
        shift = 1
        while shift < self.rows:
            same_run = self.run_of_row[shift:] == self.run_of_row[:-shift]
            if not same_run.any():
                break
            earlier = np.where(same_run, out[:-shift], identity)
            out[shift:] = ufunc(out[shift:], earlier)
            shift *= 2
        return out

    def previous(self, values: np.ndarray, fill: float) -> np.ndarray:
        """values shifted one row later inside each run (`fill` on each run's first row)."""
        out = np.empty_like(values)
        out[1:] = values[:-1]
        out[self.starts] = fill
        return out


def take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows], NaN where rows is -1 or the value is not finite (summaries hold finite numbers only)."""
    picked = values[np.clip(rows, 0, None)]
    return np.where((rows >= 0) & np.isfinite(picked), picked, np.nan)


def early_stop_epochs(
    segments: Segments, epoch: np.ndarray, loss: np.ndarray, patience: np.ndarray
) -> np.ndarray:
    """The epoch at which early stopping with `patience` (per run) on `loss` would have stopped, else NaN."""
    finite_loss = np.where(np.isfinite(loss), loss, np.inf)
    best_before = segments.previous(segments.running(np.minimum, finite_loss, np.inf), np.inf)
    improved = finite_loss < best_before
    # Patience counts from the last improvement, or from the start when nothing improved yet.
    improvement_epoch = np.where(improved, epoch, -np.inf)
    starts = segments.starts
    improvement_epoch[starts] = np.where(improved[starts], epoch[starts], epoch[starts] - 1)
    last_improvement = segments.running(np.maximum, improvement_epoch, -np.inf)
    stalled = epoch - last_improvement >= patience[segments.run_of_row]
    return take(epoch, segments.first_row_where(stalled))


def summarize(
    lengths: np.ndarray,
    columns: dict[str, np.ndarray],
    present: dict[str, np.ndarray],
    epochs_planned: np.ndarray,
    split: str,
    objective: Objective,
) -> dict[str, np.ndarray]:
    """Summary numbers (fields.FIELDS) of runs stored back to back.

    columns: float64 arrays of equal length (sum of lengths), NaN where null; `epoch` must be there and
    increasing inside each run. present: per loss column, False where the value was null (not logged).
    epochs_planned: per run, NaN when unknown.
    """
    segments = Segments(np.asarray(lengths, dtype=np.int64))
    rows = segments.rows
    nan_rows = np.full(rows, np.nan)

    def column(name: str) -> np.ndarray:
        return columns.get(name, nan_rows)

    epoch = column("epoch")
    acc, loss = column(f"{split}/acc"), column(f"{split}/loss")
    train_acc, train_loss = column("train/acc"), column("train/loss")
    out: dict[str, np.ndarray] = {}
    last_row = segments.starts + segments.lengths - 1
    out["epochs_run"] = epoch[last_row]

    objective_row = segments.best_row(column(objective.metric), objective.maximize)
    out["objective"] = take(column(objective.metric), objective_row)
    out["objective_epoch"] = take(epoch, objective_row)
    acc_row = segments.best_row(acc, maximize=True)
    out["best_acc"], out["best_acc_epoch"] = take(acc, acc_row), take(epoch, acc_row)
    loss_row = segments.best_row(loss, maximize=False)
    out["best_loss"], out["best_loss_epoch"] = take(loss, loss_row), take(epoch, loss_row)

    out["train_acc_at_best"] = take(train_acc, objective_row)
    out["gap_at_best"] = out["train_acc_at_best"] - take(acc, objective_row)
    out["final_train_acc"] = take(train_acc, segments.last_row_where(np.isfinite(train_acc)))
    out["final_acc"] = take(acc, segments.last_row_where(np.isfinite(acc)))
    out["gap"] = out["final_train_acc"] - out["final_acc"]
    out["last_loss"] = take(loss, segments.last_row_where(np.isfinite(loss)))
    out["degradation"] = out["last_loss"] - out["best_loss"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        percent = 100.0 * out["degradation"] / np.abs(out["best_loss"])
    out["degradation_pct"] = np.where(np.isfinite(percent), percent, np.nan)  # none for a best loss of 0

    epochs_run = out["epochs_run"]
    window = np.maximum(2, np.ceil(0.1 * epochs_run))
    has_loss = ~np.isnan(out["best_loss_epoch"])
    # The best loss is recent AND the loss fell over the window: a best three epochs ago followed by a 20% rise
    # is not "still improving".
    last_row_index = segments.starts + segments.lengths - 1
    window_rows = np.minimum(window, segments.lengths).astype(np.int64)
    window_start = take(loss, last_row_index - window_rows + 1)
    falling = ~(out["last_loss"] > window_start)  # NaN at the window's start: judge by the best epoch alone
    recent_best = out["best_loss_epoch"] > epochs_run - window
    out["still_improving"] = np.where(has_loss, recent_best & falling, np.nan)
    out["epochs_since_best"] = epochs_run - out["best_loss_epoch"]
    planned = np.where(np.isfinite(epochs_planned), epochs_planned, epochs_run)
    patience = np.maximum(2, np.ceil(0.1 * planned))
    out["early_stop_epoch"] = np.where(has_loss, early_stop_epochs(segments, epoch, loss, patience), np.nan)

    nonfinite = np.zeros(rows, dtype=bool)
    for name in ("train/loss", f"{split}/loss"):
        if name in columns:
            nonfinite |= present[name] & ~np.isfinite(columns[name])
    out["nonfinite_epoch"] = take(epoch, segments.first_row_where(nonfinite))

    # Divergence is about training: train/loss where the run logged it, else the split's loss.
    logged_train = present.get("train/loss", np.zeros(rows, dtype=bool))
    has_train = np.logical_or.reduceat(logged_train, segments.starts)
    watched = np.where(has_train[segments.run_of_row], train_loss, loss)
    finite = np.isfinite(watched)
    first = take(watched, segments.first_row_where(finite))
    last = take(watched, segments.last_row_where(finite))
    lowest = take(watched, segments.best_row(watched, maximize=False))
    blew_up = (last > first) & (last > 2 * lowest)
    out["diverged"] = np.where(
        ~np.isnan(out["nonfinite_epoch"]), 1.0, np.where(np.isnan(last), np.nan, blew_up.astype(float))
    )
    return out
