"""Is a process alive: the one check behind local jobs, local launchers' queues and Optuna workers."""

from __future__ import annotations

import os
import socket


def pid_alive(pid: int | str | None) -> bool:
    try:
        os.kill(int(pid), 0)  # type: ignore[arg-type]
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return not _zombie(int(pid))  # type: ignore[arg-type]


def _zombie(pid: int) -> bool:
    """Ended but not yet reaped (e.g. a job whose parent died, under an init that reaps late): not alive."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b") ", 1)[1][:1] == b"Z"
    except (OSError, IndexError):  # no /proc (macOS): signal 0 is all there is
        return False


def signal_name(number: int) -> str:
    """'SIGKILL' for 9; 'signal N' for a number with no name here (the one naming rule for a job's end)."""
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def alive_here(pid: int | str | None, host: str | None) -> bool | None:
    """Whether the process runs, when it runs on this host; None when it runs elsewhere (cannot tell)."""
    if host != socket.gethostname():
        return None
    return pid_alive(pid)
