"""What every sweep kind answers (grid/configs, Optuna search), and the plain data its answers are made of:
the CLI renders these (views.py; `to_json` for --format json), it never asks which kind a sweep is."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sweeper.backends import Resources
    from sweeper.job import JobBase
    from sweeper.ledger import Ledger
    from sweeper.spec import SweepSpec
    from sweeper.status import TrialStatus
    from sweeper.trial import Trial


LOG_EVERY_EPOCHS = 5  # without a terminal, a trial's progress line is printed every this many epochs


# -- what views render -----------------------------------------------------------------------------------
@dataclass
class Rows:
    """A plain table: a title, column names, rows of text."""

    title: str | None
    columns: list[str]
    rows: list[list[str]]

    def to_json(self) -> dict[str, Any]:
        return {"rows": [dict(zip(self.columns, row, strict=True)) for row in self.rows]}


@dataclass
class TrialTable:
    """One row per sweeper trial (or Optuna worker job): state, epoch, latest metrics, job, error."""

    statuses: Sequence[TrialStatus]
    title: str | None = None
    metric: str = "valid/acc"
    key: str = "trials"  # its name in `status --format json` ("workers": an Optuna sweep's worker jobs)

    def to_json(self) -> dict[str, Any]:
        return {self.key: [dataclasses.asdict(s) for s in self.statuses], "metric": self.metric}


@dataclass
class StudyTable:
    """One row per Optuna trial (study_rows)."""

    rows: Sequence[dict[str, Any]]
    keys: list[str]  # the searched parameters
    metric: str
    title: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"study_trials": list(self.rows), "metric": self.metric}


@dataclass
class Counts:
    counts: Counter

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}


@dataclass
class Lines:
    lines: list[str]
    style: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"notes": list(self.lines)}


@dataclass
class Outcome:
    """How the trials just run (or a whole sweep) ended: what to show, and the command's exit code."""

    parts: list[Any]  # TrialTable / StudyTable / Counts / Lines, shown in order
    failures: list[tuple[str, str | None]] = field(default_factory=list)  # (trial or worker, error line)
    hints: list[str] = field(default_factory=list)  # next commands

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


@dataclass
class Snapshot:
    """Progress while the launcher waits: trials done of the total, a table of what runs, new log lines."""

    done: int
    table: TrialTable | StudyTable | None
    lines: list[str]


@dataclass
class OverviewRow:
    """A sweep's line in `sweeper status`'s overview."""

    trials: str
    counts: Counter
    best: float | None
    warning: str | None = None  # why the row is less than it should be (a study that could not be read)

    def to_json(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "counts": dict(self.counts),
            "best": self.best,
            "warning": self.warning,
        }


class Tracker(ABC):
    """Follows a launch's progress: `snapshot` is called on every tick with the trials' statuses."""

    description: str
    total: int

    @abstractmethod
    def snapshot(self, statuses: Sequence[TrialStatus], live: bool) -> Snapshot | None:
        """The progress now (None: nothing new to show); `live`: a terminal redraws it, else log lines."""


# -- the kinds -------------------------------------------------------------------------------------------
class SweepKind(ABC):
    """Grid/configs or Optuna search: its trials, its job, its status rows and its outcome."""

    name: ClassVar[str]

    @abstractmethod
    def size(self, spec: SweepSpec) -> int:
        """How many jobs the launch asks for (what a confirmation counts)."""

    @abstractmethod
    def trials(self, spec: SweepSpec) -> list[Trial]:
        """The ledger's trials (for a search: its worker jobs)."""

    @abstractmethod
    def describe(self, spec: SweepSpec, n_trials: int) -> str:
        """A few words for the launch line, e.g. '8 trials'."""

    def warnings(self, spec: SweepSpec) -> list[str]:
        return []

    def create(self, ledger: Ledger, spec: SweepSpec) -> dict[str, Any]:
        """Set up what the sweep needs beside the ledger (a study); returns what goes into the sweep meta."""
        return {}

    @abstractmethod
    def job(self, spec: SweepSpec, threads: int | None, ledger: Ledger, fresh: bool) -> JobBase:
        """The callable every job of the sweep runs."""

    @abstractmethod
    def plan_parts(self, spec: SweepSpec, trials: list[Trial], executor: str, res: Resources) -> list[Any]:
        """What a dry run shows of the sweep itself (the backend adds its own lines)."""

    @abstractmethod
    def tracker(self, spec: SweepSpec, ledger: Ledger, trials: list[Trial]) -> Tracker:
        """Progress of these trials while the launcher waits."""

    @abstractmethod
    def status_parts(self, ledger: Ledger, statuses: list[TrialStatus], only: set[str] | None) -> list[Any]:
        """`sweeper status <sweep>`."""

    @abstractmethod
    def overview(self, ledger: Ledger, statuses: list[TrialStatus]) -> OverviewRow:
        """The sweep's row in `sweeper status`."""

    @abstractmethod
    def outcome(self, ledger: Ledger, statuses: list[TrialStatus], trials: list[Trial] | None) -> Outcome:
        """How `trials` (all of the sweep's when None) ended."""

    def dashboard_storage(self, ledger: Ledger):
        """The Optuna storage optuna-dashboard serves: for a sweep without a study of its own, one built in
        memory from its run dirs."""
        from sweeper.dashboard import grid_storage

        return grid_storage(ledger)


def analyze_hint(ledger: Ledger) -> str:
    return f"analyze with: analyze --checkpoints-path {ledger.dir}"
