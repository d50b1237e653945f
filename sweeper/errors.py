"""User-facing errors: each one is rendered by the CLI as a single clear line, never a traceback."""

from __future__ import annotations


class SweeperError(Exception):
    """An error caused by the user's input or environment, not by a bug in sweeper."""


class SpecError(SweeperError):
    """A sweep spec is invalid. Carries the file, the key path and the line, when known."""

    def __init__(
        self, message: str, *, file: str | None = None, key: str | None = None, line: int | None = None
    ):
        self.file, self.key, self.line, self.message = file, key, line, message
        where = file or "<spec>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")


class SchedulerError(SweeperError):
    """The scheduler (SLURM) refused or could not be reached."""


class TrialFailed(SweeperError):
    """The trial's work failed, and the message says all there is to say (e.g. a program's exit and its last
    stderr line): shown without an exception type."""


def error_line(exc: BaseException) -> str:
    """The one line that names a failure: the exception's type and the first line of its message (a
    TrialFailed's message alone)."""
    text = str(exc).strip() if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0].rstrip(": ") if text else type(exc).__name__


def traceback_error_line(text: str) -> str | None:
    """The line of a printed traceback that names the failure: its last non-empty line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else None
