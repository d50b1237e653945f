"""Where jobs run: one small class per scheduler behind one interface (`base.Backend`).

    local  this machine's processes, the launcher holding the queue       backends/local.py
    slurm  job arrays, sacct/squeue, scancel                             backends/slurm.py
    debug  in this process, one trial after the other                    backends/debug.py

A new backend is a new file with a `Backend` subclass and a line in BACKENDS.
"""

from __future__ import annotations

from sweeper.backends.base import GONE, Backend, JobRecord, Resources, SchedulerView
from sweeper.backends.debug import DebugBackend
from sweeper.backends.local import LocalBackend
from sweeper.backends.slurm import SlurmBackend, available

BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (LocalBackend, SlurmBackend, DebugBackend)}
NAMES = tuple(BACKENDS)  # the CLI's --executor choices
__all__ = ["GONE", "Backend", "JobRecord", "Resources", "SchedulerView", "BACKENDS", "NAMES", "get", "choose"]


def choose(requested: str) -> str:
    """`auto`: SLURM where sbatch exists, else local processes."""
    if requested != "auto":
        return requested
    return SlurmBackend.name if available() else LocalBackend.name


def get(name: str | None) -> Backend:
    """A fresh backend for a recorded or requested name (`auto` chooses; an old ledger without one: local)."""
    return BACKENDS[choose(name or LocalBackend.name)]()
