"""The summary numbers' names and their order, and the window that "still improving" and early stop use.

Apart from summarize.py (which computes the numbers with numpy) so that what only names them (a warm
`analyze`, which serves stored numbers, and the summary cache storing them in this order) imports no
numpy. Part of the cache's code hash, as summarize.py is.
"""

from __future__ import annotations

import math

# Numbers per run, in the order the cache, the records in runs.parquet and metric_files store them.
FIELDS = (
    "epochs_run",
    "objective",
    "objective_epoch",
    "best_acc",
    "best_acc_epoch",
    "best_loss",
    "best_loss_epoch",
    "train_acc_at_best",
    "gap_at_best",
    "final_train_acc",
    "final_acc",
    "gap",
    "last_loss",
    "degradation",
    "degradation_pct",
    "still_improving",
    "epochs_since_best",
    "early_stop_epoch",
    "nonfinite_epoch",
    "diverged",
)
BOOLEAN_FIELDS = ("still_improving", "diverged")
EPOCH_FIELDS = (
    "epochs_run",
    "objective_epoch",
    "best_acc_epoch",
    "best_loss_epoch",
    "epochs_since_best",
    "early_stop_epoch",
    "nonfinite_epoch",
)


def improving_window(epochs: int) -> int:
    """Epochs at the end of a run in which a new best still counts as "improving" (and early-stop patience)."""
    return max(2, math.ceil(0.1 * epochs))
