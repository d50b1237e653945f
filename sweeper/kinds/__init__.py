"""Sweep kinds: what varies between a grid/configs sweep and an Optuna search, as two small classes behind
one interface (`base.SweepKind`); the launcher, `status` and the CLI ask the kind, never which kind it is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.kinds.base import OverviewRow, SweepKind
from sweeper.kinds.grid import GridSweep
from sweeper.kinds.search import SEARCH_META, SearchSweep
from sweeper.ledger import Ledger, find_sweep_dirs
from sweeper.status import Refresh, refresh

if TYPE_CHECKING:
    from sweeper.spec import SweepSpec

__all__ = ["GridSweep", "SearchSweep", "SweepKind", "of_ledger", "of_spec", "overview"]


def of_spec(spec: SweepSpec) -> SweepKind:
    return SearchSweep() if spec.search is not None else GridSweep()


def of_ledger(ledger: Ledger) -> SweepKind:
    return SearchSweep() if ledger.meta.get("search") == SEARCH_META else GridSweep()


def overview(root: str | Path) -> tuple[list[tuple[Ledger, OverviewRow]], Refresh]:
    """Every sweep under root, oldest first, each as its kind sums it up, from one scheduler query."""
    ledgers = [Ledger(d) for d in find_sweep_dirs(root)]
    result = refresh(ledgers)
    return [
        (ledger, of_ledger(ledger).overview(ledger, result.statuses[ledger.dir])) for ledger in ledgers
    ], result
