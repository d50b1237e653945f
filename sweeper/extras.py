"""The optional parts of sweeper (pyproject's extras) and the one-line error when a missing one is needed.

The base install launches, watches and analyzes sweeps; `sweeper[train]` is the built-in trainer and the
TensorBoard mirror, `[plots]` analyze's --plot, `[dashboard]` `sweeper dashboard`, `[postgres]` Optuna
on a postgresql:// storage; `[all]` is every one.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from sweeper.errors import SweeperError

# extra -> the modules it brings (as imported)
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "tensorboard", "sklearn"),
    "plots": ("matplotlib",),
    "dashboard": ("optuna_dashboard",),
    "postgres": ("psycopg",),
}


class MissingExtraError(SweeperError):
    """Something the user asked for needs an extra that is not installed."""

    def __init__(self, extra: str, purpose: str, module: str):
        self.extra, self.module = extra, module
        super().__init__(
            f"{purpose} needs sweeper[{extra}] ({module} is not installed): pip install 'sweeper[{extra}]'"
        )


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing(extra: str) -> str | None:
    """The first module of `extra` that cannot be found (without importing it), else None."""
    return next((m for m in EXTRAS[extra] if not installed(m)), None)


def check(extra: str, purpose: str) -> None:
    """Raise MissingExtraError if any module of `extra` is missing; imports nothing."""
    module = missing(extra)
    if module is not None:
        raise MissingExtraError(extra, purpose, module)


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise the one-line error naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but something it imports is broken: a real traceback
        raise MissingExtraError(extra, purpose, module) from None
