"""sweeper: hyperparameter sweeps on SLURM (or a laptop) and per-epoch analysis of what came out.

`sweeper.Run` and `sweeper.TrialPruned` are the run API's (sweeper/run.py), imported on first use: every
process of the tool imports this package, and most never need the run API (job_parent, status, analyze).
"""

from typing import TYPE_CHECKING

from sweeper.errors import SweeperError

if TYPE_CHECKING:
    from sweeper.run import Run, TrialPruned

__version__ = "0.1.0"
__all__ = ["Run", "SweeperError", "TrialPruned", "__version__"]


def __getattr__(name: str):
    if name in ("Run", "TrialPruned"):
        from sweeper import run

        return getattr(run, name)
    raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
