"""Command trials: any program as a trial, its code unchanged. The job starts it in its own process group,
copies its output into job.log (and the job's own log), reads its per-epoch metrics as they appear, reports
them through the run (metrics.parquet, TensorBoard mirror, heartbeat, pruner) and turns its end into the
trial's end. Pruning stops it with SIGTERM; a requeue forwards the scheduler's signal. Contract: docs/command.md.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from sweeper import command_template, extras, metric_sources, yamlio
from sweeper.errors import TrialFailed
from sweeper.fsutil import atomic_write_text
from sweeper.metrics import read_metrics
from sweeper.process import signal_name
from sweeper.run import Run, TrialPruned
from sweeper.run_files import METRICS_FILE
from sweeper.schema import get_path
from sweeper.states import TrialState

log = logging.getLogger("sweeper.command")
METRICS_JSONL = "metrics.jsonl"  # $SWEEPER_METRICS
CONFIG_YAML = "config.yaml"  # $SWEEPER_CONFIG: the trial's config alone (config.json holds the trial record)
MIRROR_DIR = "tb"  # the job's TensorBoard mirror of a command trial, never read back as the program's
POLL_S = 0.25  # metric files are polled this often
HEARTBEAT_S = 30.0  # status.json is touched this often while the program prints nothing
MAX_LINE_BYTES = 1 << 16  # of a longer line, the rest is dropped (a metrics line is far shorter)
END_QUIET_S = 5.0  # after the program exited, a pipe still open but silent this long is given up
END_READ_S = 60.0  # and lines still coming after this long (something it started) are not waited for
QUEUED_LINES = 1024  # lines read ahead of the main loop (at most 64 MiB); a flood then waits on the pipe
STDERR_TAIL = 20


def run_command(config: dict[str, Any], run: Run) -> None:
    """The job's entrypoint for a command trial: the spec as launched lives in the run dir's sweep dir."""
    from sweeper.ledger import Ledger

    spec = Ledger(run.run_dir.parent).launched_spec()
    CommandRunner(spec, config, run).run()


def make_source(metrics, run_dir: Path) -> metric_sources.MetricSource:
    """The metric source a spec's `metrics:` names (auto: the first of them that shows up)."""
    jsonl = metric_sources.JsonLinesSource(run_dir / METRICS_JSONL, env_var="SWEEPER_METRICS")
    csv_path = run_dir / (metrics.path or "metrics.csv")
    sources = {
        "jsonl": lambda: jsonl,
        "tensorboard": lambda: metric_sources.TensorBoardSource(
            run_dir, metrics.tags, exclude=[run_dir / MIRROR_DIR]
        ),
        "csv": lambda: metric_sources.CsvSource(csv_path),
        "regex": lambda: metric_sources.RegexSource(metrics.pattern),
    }
    if metrics.source != "auto":
        return sources[metrics.source]()
    chosen = ["jsonl", *(["tensorboard"] if extras.installed("tensorboard") else []), "csv"]
    chosen += ["regex"] if metrics.pattern else []
    return metric_sources.AutoSource([sources[name]() for name in chosen])


def _die_with_parent() -> None:
    """In the child before exec: killed when the job dies, even by kill -9 (Linux), so no program outlives
    its job."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class CommandRunner:
    def __init__(self, spec, config: dict[str, Any], run: Run):
        self.spec, self.config, self.run_ = spec, config, run
        self.run_dir = run.run_dir.resolve()  # the program runs in its own cwd
        self.process: subprocess.Popen | None = None
        self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue(QUEUED_LINES)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self.epoch_offset: int | None = None  # +1 for a program that counts epochs from 0
        self.earlier_segment_warned = False
        self.stopped: str | None = None  # why sweeper stopped the program (pruned, requeue, cancel)
        self.source: metric_sources.MetricSource | None = None
        self.job_log: IO[str] | None = None
        self.readers: list[threading.Thread] = []
        self.open_streams = 0  # the program's pipes not yet read to their end

    # -- the command line and the environment ---------------------------------------------------------
    def argv(self) -> list[str]:
        return command_template.expand(self._words(self.spec.command), **self._values())

    def environment(self, resumed: bool) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SWEEPER_RUN_DIR=str(self.run_dir),
            SWEEPER_CONFIG=str(self.run_dir / CONFIG_YAML),
            SWEEPER_TRIAL_ID=self.run_.trial_id,
            SWEEPER_SEED=str(self.run_.seed),
            SWEEPER_METRICS=str(self.run_dir / METRICS_JSONL),
            SWEEPER_SEGMENT=str(self.run_.segment.number),
            PYTHONUNBUFFERED="1",  # a Python program's lines arrive as printed, not at exit
        )
        env.pop("SWEEPER_EPOCHS", None)
        if isinstance(self.run_.epochs, int):  # the epochs to reach: the config's `epochs`
            env["SWEEPER_EPOCHS"] = str(self.run_.epochs)
        env.pop("SWEEPER_RESUME", None)
        if resumed:
            env["SWEEPER_RESUME"] = "1"
        for key, value in self.spec.env.items():
            env[key] = " ".join(command_template.expand([str(value)], **self._values()))
        return env

    @staticmethod
    def _words(command: list[str] | str) -> list[str]:
        return command_template.split_command(command)

    def _values(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "params": self.swept_values(),
            "seed": self.run_.seed,
            "trial_id": self.run_.trial_id,
            "run_dir": str(self.run_dir),
        }

    def swept_values(self) -> dict[str, Any]:
        """The swept parameters (for `{args}`, `{overrides}`, `{optim.lr}`) as the config now has them: a
        `sweeper continue --set` of a swept key changes the trial's config, not the params it was named by."""
        return {key: get_path(self.config, key, value) for key, value in self.run_.params.items()}

    # -- running --------------------------------------------------------------------------------------
    def run(self) -> None:
        self.run_.metrics.tensorboard_dir = self.run_dir / MIRROR_DIR  # never read back as the program's own
        resumed = self._restore()
        atomic_write_text(self.run_dir / CONFIG_YAML, yamlio.dump(self.config))
        argv = self.argv()
        self.source = source = make_source(self.spec.metrics, self.run_dir)
        log.info("command: %s (cwd %s)%s", shlex.join(argv), self.spec.cwd, " resuming" if resumed else "")
        self.run_.add_stop_hook(self._on_requeue)
        with open(self.run_dir / "job.log", "a", errors="replace") as job_log:
            self.job_log = job_log
            try:
                self.process = subprocess.Popen(
                    argv,
                    cwd=self.spec.cwd,
                    env=self.environment(resumed),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # its own process group: signals reach all it started
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise TrialFailed(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
            self.readers = [
                threading.Thread(target=self._read, args=(self.process.stdout, "out"), daemon=True),
                threading.Thread(target=self._read, args=(self.process.stderr, "err"), daemon=True),
            ]
            for reader in self.readers:
                reader.start()
            self.open_streams = len(self.readers)
            try:
                self._follow()
                self._finish_reading()
            finally:
                self._stop(signal.SIGTERM, "the job ended")
        self._verdict(self.process.returncode, source)

    def _finish_reading(self) -> None:
        """After the program exited: every line it printed, up to the end of both pipes (thousands may be
        queued behind a fast printer, its metrics among the last), then the sources' last rows. A pipe held
        open by something the program left running is given up once it is quiet for END_QUIET_S."""
        started = quiet_since = time.monotonic()
        while self.open_streams and time.monotonic() - started < END_READ_S:
            if self._take(0.1):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= END_QUIET_S:
                break
        self.job_log.flush()
        self._report(self.source.poll(final=True), self.source)

    def _restore(self) -> bool:
        """Back in a run dir that has rows (a requeue): they are kept, and the program is told it resumes."""
        path = self.run_dir / METRICS_FILE
        rows = read_metrics(path).to_pylist() if path.exists() else []
        self.run_.metrics.restore(rows)
        return bool(rows) or self.run_.restarts > 0

    def _read(self, stream: IO[bytes], which: str) -> None:
        """Line by line into the queue; of a line longer than MAX_LINE_BYTES only the start is kept."""
        rest_of_long_line = False
        for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
            complete = raw.endswith(b"\n")
            if not rest_of_long_line:
                text = raw.decode(errors="replace")
                self.lines.put((which, text if complete else text + " [line cut: longer than 64 KiB]\n"))
            rest_of_long_line = not complete
        self.lines.put((which, None))

    def _follow(self) -> None:
        """Until the program exits: copy its lines, report its metrics, stop it when the pruner says so."""
        last_poll = last_beat = time.monotonic()
        while self.process.poll() is None:
            if self._take(POLL_S):
                for _ in range(QUEUED_LINES):  # what else is queued, without polling between lines
                    if not self._take(0):
                        break
                self.job_log.flush()  # once a burst is copied: job.log is behind the program by one burst at most
            now = time.monotonic()
            if now - last_poll >= POLL_S:
                last_poll = now
                self._report(self.source.poll(), self.source)
            if now - last_beat >= HEARTBEAT_S:
                last_beat = now
                self.run_.set_state(TrialState.RUNNING)
            if self.run_.should_prune():
                self._stop(signal.SIGTERM, "pruned")
                raise TrialPruned(f"pruned at epoch {self.run_.metrics.last_epoch}")

    def _take(self, timeout: float) -> bool:
        """Handle the next line the readers queued (or a stream's end); False if none came in `timeout`."""
        try:
            which, line = self.lines.get(timeout=timeout) if timeout else self.lines.get_nowait()
        except queue.Empty:
            return False
        if line is None:
            self.open_streams -= 1
        else:
            self._line(which, line)
        return True

    def _line(self, which: str, line: str) -> None:
        self.job_log.write(line if line.endswith("\n") else line + "\n")
        (sys.stdout if which == "out" else sys.stderr).write(line)
        if which == "err":
            if line.strip():
                self.stderr_tail.append(line.strip())
            return
        self._report(self.source.feed_line(line), self.source)

    def _report(self, rows: list[metric_sources.Row], source) -> None:
        """Each row is the epoch's latest word: an epoch seen before (the program restarted) is rewritten."""
        for message in source.warnings:
            log.warning("metrics: %s", message)
        source.warnings.clear()
        for row in rows:
            if self.epoch_offset is None:
                self.epoch_offset = 1 if row.epoch == 0 else 0
            epoch = row.epoch + self.epoch_offset
            if epoch < 1:
                log.warning(
                    "metrics: epoch %d ignored (epochs count from %d)", row.epoch, 1 - self.epoch_offset
                )
                continue
            metrics = self.run_.metrics
            if epoch <= self.run_.segment.start_epoch:
                self._earlier_segment(epoch, row.values)
                continue
            if epoch <= metrics.last_epoch:
                metrics.restore([r for r in metrics.rows if r["epoch"] < epoch])
            self.run_.log(epoch, row.values)
        summary = source.take_summary()
        if summary:
            self.run_.summary(summary)

    def _earlier_segment(self, epoch: int, values: dict[str, float]) -> None:
        """A continued run's program reported an epoch of an earlier segment: a metrics file read again
        from its start (the same values), or a program that trains again from scratch. The row as it was
        is kept either way (the segment before is done); a changed value is worth one warning."""
        kept = next((r for r in self.run_.metrics.rows if r["epoch"] == epoch), {})
        if self.earlier_segment_warned or all(kept.get(k) == v for k, v in values.items()):
            return
        self.earlier_segment_warned = True
        log.warning(
            "metrics: epoch %d belongs to an earlier segment (this continuation starts after epoch %d) and "
            "is kept as it was; a program that does not resume from its checkpoint when SWEEPER_RESUME=1 "
            "trains from scratch",
            epoch,
            self.run_.segment.start_epoch,
        )

    # -- stopping ---------------------------------------------------------------------------------------
    def _stop(self, first: int, why: str) -> None:
        """Signal the program's process group (`first`, then SIGTERM), SIGKILL once the grace period is over."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        self.stopped = self.stopped or why
        steps = [first] if first == signal.SIGTERM else [first, signal.SIGTERM]
        for sig in steps:
            self._signal(sig)
            try:
                process.wait(timeout=self.spec.signals.grace_s / len(steps))
                return
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)
        process.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def _on_requeue(self) -> None:
        """The job is being requeued (timeout, preemption): the program gets the scheduler's signal to
        checkpoint, then SIGTERM; what it reported until it exited stays in metrics.parquet for the restart."""
        if self.process is None or self.process.poll() is not None:
            return
        self._stop(signal.Signals[self.spec.signals.requeue], "requeue")
        self._finish_reading()

    def _verdict(self, code: int, source) -> None:
        if code in (-signal.SIGTERM, 128 + signal.SIGTERM) and not self.stopped:
            # Not sweeper's SIGTERM: the scheduler may be taking the whole job down (scancel, a requeue
            # without warning), and the job's end is then not the program's failure: wait to be killed.
            time.sleep(self.spec.signals.grace_s)
        if code == 0:
            if not self.run_.metrics.rows:
                raise TrialFailed(
                    f"the program exited 0 but reported no metrics (watched: {source.describe()})"
                )
            return
        if code < 0:
            name = signal_name(-code)
            raise TrialFailed(
                f"the program was killed by {name}" + (f" ({self.stopped})" if self.stopped else "")
            )
        last = self.stderr_tail[-1] if self.stderr_tail else "no output on stderr"
        raise TrialFailed(f"the program exited with code {code}: {last}")
