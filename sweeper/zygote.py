"""Warm local jobs: a process that has imported what a job needs (torch, pyarrow, submitit, sweeper's job
side) and forks one child per local job, so a trial pays neither an interpreter start nor ~5 s of imports.

The local launcher starts it (`start`) and puts its socket in the environment (`SWEEPER_ZYGOTE`), which
submitit's controller passes on to `sweeper.job_parent`. job_parent sends the job's command line, environment,
working directory and its stdin/stdout/stderr (the descriptors themselves, over the Unix socket); the zygote
forks, the child becomes that job (`python -u -m submitit.core._submit <folder>`, run with runpy in the
fork), and the zygote reports the child's pid and then its wait status, exactly what job_parent would have
learnt from its own child. Everything else stays per job: each trial is its own process (a crash or a
kill -9 takes only it down), job_parent still forwards the controller's signals and records the end, and a
job whose zygote is gone or unwilling (another interpreter, another kind of command) starts cold, as before.
The zygote is single-threaded by design (a select loop) so forking it is safe, and it never imports user
code: each trial imports its own entrypoint afresh.
"""

from __future__ import annotations

import atexit
import importlib
import io
import json
import os
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ENV_VAR = "SWEEPER_ZYGOTE"
WARM_MODULES = (
    "numpy",
    "torch",
    "torch._dynamo",  # imported by the first optimizer a job builds: seconds
    "pyarrow",
    "pyarrow.parquet",
    "submitit",
    "submitit.core._submit",
    "sweeper.job",
    "sweeper.train",
    "sweeper.checkpointing",  # imported by the first save_checkpoint
    "sweeper.worker",
    "sweeper.command",
    "sweeper.analysis.runs",  # imported by a job's end (its analyze record for runs.parquet)
    "sweeper.analysis.metric_files",
    "torch.utils.tensorboard",
    "sklearn.datasets",
    "optuna",
)
HEADER = struct.Struct("!I")  # the request's length, sent with the three descriptors


# -- the launcher's side -----------------------------------------------------------------------------------
class Zygote:
    """A running zygote process, owned by the launcher (stopped when it stops)."""

    def __init__(self, log_path: Path) -> None:
        self.dir = tempfile.mkdtemp(prefix="sweeper-zygote-")  # short: a Unix socket path has 108 bytes
        self.path = os.path.join(self.dir, "socket")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sweeper.zygote", self.path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for name in (self.path,):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


def start(log_path: Path) -> Zygote | None:
    """A zygote for this launcher's jobs, or None where sweeper runs cold (SWEEPER_ZYGOTE=off)."""
    if os.environ.get(ENV_VAR) == "off":
        return None
    zygote = Zygote(log_path)
    os.environ[ENV_VAR] = zygote.path
    return zygote


# -- job_parent's side ---------------------------------------------------------------------------------------
def module_command(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module, its argv) for `<this python> [-u] -m module args...`; None for any other command."""
    if not argv or os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        return None
    rest = argv[1:]
    if rest[:1] == ["-u"]:
        rest = rest[1:]
    if len(rest) < 2 or rest[0] != "-m":
        return None
    return rest[1], rest[2:]


def request(path: str, argv: list[str]) -> socket.socket | None:
    """Ask the zygote at `path` to run `argv` as this process would; the connection to read the pid and
    the wait status from, or None (no zygote, or a command it cannot run)."""
    if module_command(argv) is None:
        return None
    body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        socket.send_fds(connection, [HEADER.pack(len(body))], [0, 1, 2])
        connection.sendall(body)
    except OSError:
        connection.close()
        return None
    return connection


def read_message(connection: socket.socket) -> dict | None:
    """One JSON line from the zygote; None once it is gone."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = connection.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


# -- the zygote ----------------------------------------------------------------------------------------------
def _warm() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # an extra that is not installed: its jobs import it (and fail) themselves
            pass


def _read_request(connection: socket.socket) -> tuple[dict, list[int]] | None:
    header, fds, _flags, _address = socket.recv_fds(connection, HEADER.size, 3)
    if len(header) < HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    (length,) = HEADER.unpack(header)
    body = b""
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body), fds


def _become_job(job: dict, fds: list[int]) -> None:
    """In the forked child: take the job's descriptors, environment and directory, and run its module as
    `python -u -m` would. Never returns."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        for entry in reversed([job["cwd"], *job["env"].get("PYTHONPATH", "").split(os.pathsep)]):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        for name, fd in (("stdout", 1), ("stderr", 2)):  # unbuffered, as -u makes them
            stream = io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False), errors="backslashreplace", write_through=True
            )
            setattr(sys, name, stream)
        module, args = module_command(job["argv"])
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: str) -> None:
    """Accept job requests until the launcher that started this zygote is gone (or it is terminated)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the launcher's to handle, not ours
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)  # jobs that ask while the imports run wait in the backlog
    _warm()
    launcher = os.getppid()
    children: dict[int, socket.socket] = {}  # pid -> the job_parent waiting for it
    open_connections: dict[socket.socket, int | None] = {}
    while os.getppid() == launcher:
        readable, _, _ = select.select([server, *open_connections], [], [], 0.1)
        for ready in readable:
            if ready is server:
                connection, _ = server.accept()
                open_connections[connection] = None
                continue
            pid = open_connections[ready]
            if pid is not None:  # job_parent went away (killed): so does its job, as with PR_SET_PDEATHSIG
                _kill(pid)
                open_connections.pop(ready).close()
                continue
            job = _read_request(ready)
            if job is None:
                open_connections.pop(ready).close()
                continue
            pid = os.fork()
            if pid == 0:
                server.close()
                for connection in open_connections:
                    connection.close()
                _become_job(*job)
            for fd in job[1]:
                os.close(fd)
            children[pid] = ready
            open_connections[ready] = pid
            _send(ready, {"pid": pid})
        _reap(children, open_connections)
    # the launcher is gone: its running jobs go on (their job_parents watch them), nobody asks for more


def _reap(children: dict[int, socket.socket], open_connections: dict[socket.socket, int | None]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is not None:
            _send(connection, {"returncode": os.waitstatus_to_exitcode(status)})
            open_connections.pop(connection, None)
            connection.close()


def _send(connection: socket.socket, message: dict) -> None:
    try:
        connection.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, poll_s: float = 0.2) -> None:
    """For job_parent when the zygote died first: the job is no longer its child, so watch it."""
    from sweeper.process import pid_alive

    while pid_alive(pid):
        time.sleep(poll_s)


if __name__ == "__main__":
    serve(sys.argv[1])
