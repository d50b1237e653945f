"""The run API a training function gets: log metrics, checkpoint, resume, be pruned.

    def main(config: dict, run: sweeper.Run) -> None:
        state = run.load_checkpoint()            # None on a fresh start, your dict after a requeue
        start = state["epoch"] + 1 if state else 1
        for epoch in range(start, config["epochs"] + 1):
            ...
            run.log(epoch, {"train/loss": tl, "valid/loss": vl, "valid/acc": va}, lr=lr)
            run.save_checkpoint({"epoch": epoch, "model": model.state_dict(), ...})
            if run.should_prune():
                raise sweeper.TrialPruned()
        run.summary(**{"test/acc": test_acc})   # numbers made once, into summary.json

`sweeper continue` trains a finished trial on in the same run dir: `run.epochs` is the new target,
`run.segment` says which continuation this is (1: the first run; its `start_epoch` and `lr`: where
and at what learning rate it continues). Train from the checkpoint to `run.epochs` as above.

A function that returns normally ends its trial COMPLETED (stopping early is fine: say why with
`run.set_note(...)`); `sweeper.TrialPruned` ends it PRUNED; any other exception ends it FAILED.

Every file it writes is atomic: a job killed at any instant leaves a readable metrics.parquet, status.json
and last.pt. On resume the metrics rows saved with the checkpoint are restored, so each epoch is in
metrics.parquet exactly once.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import TrialFailed
from sweeper.fsutil import atomic_write_bytes, atomic_write_json, fsync_file, read_json
from sweeper.objective import Objective
from sweeper.run_files import BEST_CHECKPOINT, LAST_CHECKPOINT, STATUS_FILE
from sweeper.states import FINISHED, TrialState

if TYPE_CHECKING:
    from sweeper.checkpointing import BackgroundWriter


def segment_checkpoint(number: int) -> str:
    """The name last.pt is kept under when segment `number` ends and a continuation trains on from it."""
    return f"last_segment{number}.pt"


class TrialPruned(Exception):
    """Raise from a training function to stop a trial the pruner gave up on (it exits cleanly)."""


@dataclass(frozen=True)
class Segment:
    """The stretch of epochs a run is in: 1 is the run as launched; each `sweeper continue` starts the
    next, after `start_epoch`, at learning rate `lr` (None: the trainer's own schedule)."""

    number: int = 1
    start_epoch: int = 0
    lr: float | None = None
    continued_at: tuple[int, ...] = field(default=())  # the start epoch of every later segment so far

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Segment:
        if not data:
            return cls()
        return cls(
            int(data["segment"]),
            int(data["start_epoch"]),
            data.get("lr"),
            tuple(int(e) for e in data.get("continued_at") or ()),
        )


class Run:
    def __init__(
        self,
        run_dir: str | Path,
        config: dict[str, Any],
        *,
        trial_id: str = "",
        seed: int = 0,
        job_id: str = "",
        objective: Objective | str | None = None,
        params: dict[str, Any] | None = None,
        pruner: Callable[[int, float], bool] | None = None,
        tensorboard: bool = True,
        segment: Segment | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.config, self.trial_id, self.seed, self.job_id = config, trial_id, seed, job_id
        self.objective = Objective.of(objective)  # what "best" means for this run (and what is pruned on)
        self.params = dict(params or {})  # the trial's swept parameters (dotted keys)
        self.segment = segment or Segment()
        self.epochs = config.get("epochs") if isinstance(config, dict) else None  # the epochs to reach
        self._stop_hooks: list[Callable[[], None]] = []
        self._checkpoints: BackgroundWriter | None = None  # made at the first checkpoint (needs torch)
        self._pruner = pruner  # called with (epoch, objective value); True means prune
        self._prune = False
        self._objective_named = False  # the objective's name appeared in a logged epoch
        # imported here: `sweeper status` reads this module's state names and should not pay for pyarrow
        from sweeper.metrics import HParams, MetricsWriter

        self.metrics = MetricsWriter(self.run_dir, tensorboard=tensorboard)
        # the HParams table's columns: the swept params, the seed and the trial id
        self.metrics.hparams = HParams(
            {**self.params, "seed": seed, "trial": trial_id}, self.objective.metric
        )
        self._elapsed_before = 0.0  # training seconds of earlier attempts (requeues)
        self._started = time.monotonic()
        status = read_json(self.run_dir / STATUS_FILE, {}) or {}
        self.restarts = int(status.get("restarts", -1)) + 1
        self._status: dict[str, Any] = {
            "trial_id": trial_id,
            "job_id": job_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "epochs": config.get("epochs") if isinstance(config, dict) else None,
            "epoch": 0,
            "restarts": self.restarts,
            "started_at": status.get("started_at", time.time()),
            "error": None,
            "note": None,
            "segment": self.segment.number,
        }
        if self.segment.continued_at:
            self._status["continued_at"] = list(self.segment.continued_at)
        self.set_state(TrialState.RUNNING)

    # -- metrics -----------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started

    def log(self, epoch: int, metrics: dict[str, Any] | None = None, **more: Any) -> None:
        """Record one epoch's metrics (names `split/metric`); `lr` and `time_s` have their own columns."""
        # The previous epoch's checkpoint first: the parquet file is never two epochs ahead of last.pt.
        self.wait_for_checkpoint()
        values = {**(metrics or {}), **more}
        values.setdefault("time_s", self.elapsed)
        values.setdefault("lr", None)
        values["segment"] = self.segment.number
        row = self.metrics.log(epoch, values)
        self._check_objective_named(epoch, values)
        self._status["epoch"] = epoch
        self._status["last"] = {
            k: v for k, v in row.items() if k not in ("epoch", "segment") and _json_number(v)
        }
        self._note_best(epoch, row.get(self.objective.metric))
        self.set_state(TrialState.RUNNING)
        value = row.get(self.objective.metric)
        if self._pruner is not None and value is not None:
            self._prune = bool(self._pruner(epoch, value))

    def _check_objective_named(self, epoch: int, values: dict[str, Any]) -> None:
        """A user's function that logs its split's metrics under other names than the objective's would run
        to its end for nothing (nothing to rank, prune or compare): fail at the first epoch that shows it,
        after that epoch's row is written. An epoch without that split (evaluation every N epochs) says
        nothing; a null value counts as logged."""
        metric = self.objective.metric
        if self._objective_named or metric in values:
            self._objective_named = True
            return
        split, slash, _ = metric.partition("/")
        same_split = sorted(k for k in values if slash and k.startswith(split + "/"))
        if same_split:
            raise TrialFailed(
                f"the objective {metric} is not among the {split}/ metrics logged at epoch {epoch} "
                f"({', '.join(same_split)}): log it, or set `objective: {{metric: ...}}` in the spec"
            )

    def _note_best(self, epoch: int, value: Any) -> None:
        """Keep the run's best objective value so far in the heartbeat (`best`: value and epoch; ties go to
        the earlier epoch), so `sweeper status` ranks configs by what analyze ranks them by."""
        if not _json_number(value):
            return
        best = self._status.get("best")
        if best is None or (value != best["value"] and self.objective.better(value, best["value"]) == value):
            self._status["best"] = {"value": value, "epoch": epoch}

    def summary(self, numbers: dict[str, Any] | None = None, **more: Any) -> dict[str, float | None]:
        """Record numbers the run produces once (`run.summary(**{"test/acc": 0.97}, h0=3.2)`), in summary.json
        (docs/metrics.md); analyze shows them as columns and ranks by them (`--metric test/acc`)."""
        from sweeper.metrics import write_summary

        try:
            return write_summary(self.run_dir, {**(numbers or {}), **more})
        except TypeError as exc:
            from sweeper.errors import SweeperError

            raise SweeperError(f"run.summary: {exc}") from None

    def add_stop_hook(self, hook: Callable[[], None]) -> None:
        """Called when the job is about to be requeued (timeout, preemption), before it exits: e.g. to pass
        the signal on to a program the work started, and wait for it to checkpoint."""
        self._stop_hooks.append(hook)

    def stop_work(self) -> None:
        for hook in self._stop_hooks:
            hook()

    def should_prune(self) -> bool:
        """True once the pruner has given up on this trial (always False outside an Optuna search)."""
        return self._prune

    # -- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], best: bool = False) -> None:
        """Save `state` (anything torch.save takes) with the metrics so far; `best=True` also writes best.pt.

        The state is copied now (tensors to CPU memory) and written by a background thread while training
        goes on; the next log, checkpoint, load or the trial's end waits for it and raises its error.
        Until then last.pt is the previous checkpoint, whole: a job killed meanwhile redoes one epoch."""
        from sweeper.checkpointing import BackgroundWriter, snapshot

        if self._checkpoints is None:
            self._checkpoints = BackgroundWriter()
        self._checkpoints.wait()
        payload = {
            "state": snapshot(state),
            # The rows as one JSON string: pickling them as dicts costs a persistent_id call per number,
            # which grows with every epoch (milliseconds per save by epoch 100).
            "metrics_json": json.dumps(self.metrics.rows),
            "elapsed": self.elapsed,
            "epoch": self.metrics.last_epoch,
        }
        self._checkpoints.submit(lambda: self._write_checkpoint(payload, best))

    def wait_for_checkpoint(self) -> None:
        """Block until the checkpoint being written is on disk; raise the error its write raised."""
        if self._checkpoints is not None:
            self._checkpoints.wait()

    def _write_checkpoint(self, payload: dict[str, Any], best: bool) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        last = self.run_dir / LAST_CHECKPOINT
        atomic_write_bytes(last, data)
        if best:
            # A hard link to the file just written: no second write and fsync. last.pt is only ever
            # replaced by rename, never changed in place, so best.pt keeps these bytes.
            link = self.run_dir / f".{BEST_CHECKPOINT}.link"
            try:
                link.unlink(missing_ok=True)
                os.link(last, link)
                os.replace(link, self.run_dir / BEST_CHECKPOINT)
            except OSError:  # a file system without hard links
                atomic_write_bytes(self.run_dir / BEST_CHECKPOINT, data)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The state of the last checkpoint of this run dir (after a requeue or retry), else None."""
        import torch

        from sweeper.checkpointing import drain

        self.wait_for_checkpoint()
        drain()  # another Run of this process may still be writing this dir's last.pt
        path = self.run_dir / LAST_CHECKPOINT
        if not path.exists():
            self.metrics.restore([])
            return None
        self._keep_segment_start(path)
        from sweeper.errors import SweeperError

        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises pickle, zip and runtime errors for a file that is not its own
            raise SweeperError(
                f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); start over with "
                "`sweeper retry --fresh`"
            ) from None
        if (
            not isinstance(payload, dict)
            or "state" not in payload
            or not {"metrics", "metrics_json"} & set(payload)
        ):
            raise SweeperError(f"{path}: not a sweeper checkpoint")
        rows = json.loads(payload["metrics_json"]) if "metrics_json" in payload else payload["metrics"]
        self.metrics.restore(rows)
        self._elapsed_before = float(payload.get("elapsed", 0.0))
        self._started = time.monotonic()
        self._status["epoch"] = self.metrics.last_epoch
        if self.metrics.rows:  # `sweeper status` shows the latest metrics right after a requeue, too
            last_row = self.metrics.rows[-1]
            self._status["last"] = {
                k: v for k, v in last_row.items() if k not in ("epoch", "segment") and _json_number(v)
            }
        self._status.pop("best", None)
        for row in self.metrics.rows:
            self._note_best(row["epoch"], row.get(self.objective.metric))
        self.set_state(TrialState.RUNNING)
        return payload["state"]

    def _keep_segment_start(self, last: Path) -> None:
        """At the start of a continued segment last.pt is where the segment before ended: kept as
        last_segment<n-1>.pt (a hard link to the very file loaded next: no copy, and a record of what
        the continuation trained on from, to go back to). Later loads in the segment (a requeue) find
        it there and leave it."""
        if self.segment.number < 2:
            return
        kept = self.run_dir / segment_checkpoint(self.segment.number - 1)
        if kept.exists():
            return
        link = self.run_dir / f".{kept.name}.link"
        try:
            link.unlink(missing_ok=True)
            os.link(last, link)
            os.replace(link, kept)
        except OSError:  # a file system without hard links
            atomic_write_bytes(kept, last.read_bytes())

    def save(self, name: str, obj: Any) -> Path:
        """torch.save `obj` atomically as <run dir>/<name> (e.g. exported weights); returns the path."""
        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    # -- status ------------------------------------------------------------------------------------
    def set_note(self, note: str) -> None:
        """A line about how the run went (e.g. why it stopped early), kept in status.json as `note`."""
        self._status["note"] = note
        atomic_write_json(self.run_dir / STATUS_FILE, self._status)

    def set_state(self, state: TrialState, error: str | None = None) -> None:
        """Write status.json (the heartbeat `sweeper status` reads)."""
        self._status.update(state=state, updated_at=time.time())
        if error is not None:
            self._status["error"] = error
        # The heartbeat and the parquet rewrites are not fsync'ed (a resume rebuilds both from last.pt,
        # which is); a run's end is made durable, as the ledger's is.
        if state in FINISHED:
            with contextlib.suppress(OSError):  # a full disk or read-only dir: the ledger has the end
                fsync_file(self.metrics.path)
        atomic_write_json(self.run_dir / STATUS_FILE, self._status, durable=state in FINISHED)
        if state in FINISHED:
            try:
                self.metrics.end(state)  # TensorBoard's HParams session end
            except OSError:  # a full disk or read-only dir: status.json above is the record
                pass

    def close(self) -> None:
        try:
            self.wait_for_checkpoint()  # a job's end has waited already and recorded what it raised
        except Exception:
            logging.getLogger(__name__).exception("the last checkpoint of %s was not written", self.run_dir)
        try:
            self.metrics.close()
        except (
            OSError
        ):  # TensorBoard's last flush on a full disk or read-only dir: its events so far are kept
            pass


def _json_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
