"""The local job's own end: a small parent process between submitit's local controller and the job.

submitit's local controller starts the job (`python -u -m submitit.core._submit <folder>`), waits for it
and forgets its exit status; the controller itself then exits 0. So a job killed by SIGKILL (kill -9, the
out-of-memory killer) looked to the launcher like "exited (code 0)". The local backend runs the job through
`python -m sweeper.job_parent <the job's command>` instead: this parent forwards every signal the
controller sends (SIGINT to cancel, SIGUSR2 before the time limit, SIGTERM), waits for the job, writes how
it ended to `<submitit folder>/<job id>_exit.json`, and ends the same way (same exit code, same signal),
so the controller's requeue rule still sees the job's own code. Why a parent and not the pid in
status.json: only a process's parent can learn its wait status, and a job can die before it writes any file.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sweeper import zygote
from sweeper.process import signal_name

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCONT)


def exit_file(folder: str | os.PathLike, job_id: str) -> Path:
    return Path(folder) / f"{job_id}_exit.json"


def _die_with_parent() -> None:
    """In the job before exec: killed if this parent is (the controller SIGKILLs a slow task on cancel)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _ForkedJob:
    """The job when the zygote forked it: what `forward` needs of a Popen (pid, send_signal, returncode)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


def _start_warm(argv: list[str]) -> tuple[_ForkedJob, Any] | None:
    """The job forked by the launcher's zygote (sweeper.zygote), or None: start it cold."""
    path = os.environ.get(zygote.ENV_VAR)
    if not path or path == "off":
        return None
    connection = zygote.request(path, argv)
    if connection is None:
        return None
    started = zygote.read_message(connection)
    if started is None:  # it could not (it is stopping): nothing ran
        connection.close()
        return None
    return _ForkedJob(int(started["pid"])), connection


def main(argv: list[str]) -> None:
    job: subprocess.Popen | None = None
    interrupted = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal interrupted
        # A Ctrl-C reaches the job from the terminal as well as through us, and the controller forwards
        # one more SIGINT when it stops: the job gets at most one from us, as it did from the controller.
        if signum == signal.SIGINT:
            if interrupted:
                return
            interrupted = True
        if job is not None and job.returncode is None:
            try:
                job.send_signal(signum)
            except ProcessLookupError:
                pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    warm = _start_warm(argv)
    if warm is not None:  # forked by the launcher's zygote: it reports the wait status
        job, connection = warm
        ended = zygote.read_message(connection)
        connection.close()
        if ended is None:  # the zygote died first: the job is nobody's child we can wait for
            zygote.wait_gone(job.pid)
        returncode = ended["returncode"] if ended is not None else None
        job.returncode = returncode if returncode is not None else 1
    else:
        job = subprocess.Popen(argv, preexec_fn=_die_with_parent)
        returncode = job.wait()
    record = {
        "pid": job.pid,
        "returncode": returncode,
        "signal": -returncode if (returncode or 0) < 0 else None,
    }
    job_id = os.environ.get("SUBMITIT_LOCAL_JOB_ID", str(os.getppid()))
    target = exit_file(argv[-1], job_id)
    temporary = target.with_name(f".{target.name}.tmp")
    try:  # atomic: the launcher reads it as soon as the controller has exited
        temporary.write_text(json.dumps(record))
        os.replace(temporary, target)
    except OSError:  # a full or read-only disk: the launcher says the end is unknown
        pass
    if returncode is None:  # unknown (see describe_end)
        sys.exit(1)
    if returncode < 0:  # end as the job did, so that whoever waits on us sees the same signal
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    sys.exit(returncode)


def describe_end(folder: str | os.PathLike, job_id: str) -> tuple[str, str] | None:
    """(error line, exit code as "code:signal") for a local job that ended without reporting, from the
    record its parent wrote; None where there is none (the parent itself was killed)."""
    try:
        record = json.loads(exit_file(folder, job_id).read_text())
        returncode = int(record["returncode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if returncode < 0:
        number = -returncode
        name = signal_name(number)
        why = ": kill -9 or the out-of-memory killer?" if number == signal.SIGKILL else ""
        return f"the job was killed by signal {number} ({name}, exit code {128 + number}{why})", f"0:{number}"
    return f"the job exited with code {returncode} without reporting an end", f"{returncode}:0"


if __name__ == "__main__":
    main(sys.argv[1:])
