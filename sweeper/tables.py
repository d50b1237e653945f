"""Tables that fit a width, for `analyze` and `status` alike: every column carries a priority, the columns of
lowest priority are dropped (never cut, never wrapped) until the rest fit, and a footer names them.

Identity columns (config / trial, swept parameters) have priority KEEP and are never dropped; if they alone
are wider than the room, the table is wider than the room (a terminal wraps the line, a pipe keeps it).
A `detail` column (free text: an error line, flags) is printed below the table, one line per row, when it
is dropped, so nothing it says is lost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from sweeper.errors import SweeperError

KEEP = 1_000  # the priority of identity columns: never dropped
UNLIMITED = 100_000  # a console's width in a pipe without COLUMNS: rows stay whole for grep and awk
PLAIN_ABOVE = 200  # rows past which a table is plain aligned text: rich's Table costs ~0.6 ms a row

Cell = str | Text


@dataclass(frozen=True)
class TableColumn:
    header: str  # may hold a newline (a two-line header)
    name: str  # what --columns and the footer call it
    priority: int = KEEP  # lower is dropped first (ties: the rightmost first)
    justify: Literal["left", "right"] = "left"
    detail: bool = False  # free text shown below the table when dropped


@dataclass(frozen=True)
class Room:
    """How wide a table may be (None: no limit), which columns the user asked for (--columns), and how many
    rows a trial table shows (None: every one; `status` caps a big sweep's table unless --all)."""

    width: int | None = None
    columns: tuple[str, ...] | None = None
    rows: int | None = None


NO_LIMIT = Room()


def room(console_width: int, wide: bool = False, columns: str | None = None, rows: int | None = None) -> Room:
    """The room of a console made by `console_kwargs`: no limit with --wide or in a pipe without COLUMNS."""
    limited = not wide and console_width < UNLIMITED
    return Room(console_width if limited else None, parse_columns(columns), rows)


def console_kwargs(is_terminal: bool) -> dict:
    """A terminal's console fits its width (or COLUMNS, as rich reads it); in a pipe, COLUMNS if set, else
    no limit: long rows stay whole lines for grep and awk."""
    columns = os.environ.get("COLUMNS", "")
    return {} if is_terminal or (columns.isdigit() and int(columns) > 0) else {"width": UNLIMITED}


def parse_columns(text: str | None) -> tuple[str, ...] | None:
    """`--columns a,b,c` as names (None when not given)."""
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _plain(cell: Cell) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _width(text: str) -> int:
    return max((cell_len(line) for line in text.split("\n")), default=0)


def table_width(widths: Sequence[int]) -> int:
    """What `_table` draws: edges (1 each side), one separator between columns, one space after each."""
    return sum(widths) + 2 * len(widths) + 1 if widths else 0


def _named(columns: Sequence[TableColumn], wanted: tuple[str, ...]) -> list[int]:
    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    lookup = {norm(c.name): i for i, c in enumerate(columns)} | {
        norm(c.header): i for i, c in enumerate(columns)
    }
    chosen = {i for i, c in enumerate(columns) if c.priority >= KEEP}
    for name in wanted:
        if norm(name) not in lookup:
            names = [c.name for c in columns]
            close = get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "columns: " + ", ".join(names)
            raise SweeperError(f"--columns: no column {name!r} ({hint})")
        chosen.add(lookup[norm(name)])
    return sorted(chosen)


def choose(columns: Sequence[TableColumn], rows: Sequence[Sequence[Cell]], room: Room) -> list[int]:
    """Indices of the columns shown: the --columns ones, else all, less the lowest-priority ones while the
    table is wider than the room."""
    if room.columns is not None:
        return _named(columns, room.columns)
    widths = _widths(columns, rows)
    kept = list(range(len(columns)))
    order = sorted(
        (i for i, c in enumerate(columns) if c.priority < KEEP), key=lambda i: (columns[i].priority, -i)
    )
    for i in order:
        if room.width is None or table_width([widths[k] for k in kept]) <= room.width:
            break
        kept.remove(i)
    return kept


def _widths(columns: Sequence[TableColumn], rows: Sequence[Sequence[Cell]]) -> list[int]:
    widths = [_width(c.header) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], _width(_plain(cell)))
    return widths


def fitted_table(
    columns: Sequence[TableColumn], rows: Sequence[Sequence[Cell]], room: Room, title: str | None = None
) -> Group:
    """The table with the columns that fit, then the dropped detail columns' lines and a footer naming the
    dropped columns."""
    kept = choose(columns, rows, room)
    shown = [columns[i] for i in kept]
    cells = [[row[i] for i in kept] for row in rows]
    if len(rows) > PLAIN_ABOVE:
        body = aligned_table([c.header.replace("\n", " ") for c in shown], cells, title)
    else:
        body = _table(shown, cells, title)
    out: list = [body]
    dropped = [i for i in range(len(columns)) if i not in kept]
    if room.columns is not None:  # what the user chose, and nothing else
        return Group(*out)
    label = next((i for i in kept if columns[i].priority >= KEEP), kept[0] if kept else None)
    for i in dropped:
        if columns[i].detail and label is not None:
            out += [
                Text(f"  {_plain(row[label])}: {_plain(row[i])}", no_wrap=True, overflow="ignore")
                for row in rows
                if _plain(row[i])
            ]
    if dropped:
        names = ", ".join(columns[i].name for i in dropped)
        out.append(
            Text(
                f"not shown (too narrow): {names}; --wide shows every column, --columns A,B,C these",
                style="dim",
            )
        )
    return Group(*out)


def _table(columns: Sequence[TableColumn], rows: Sequence[Sequence[Cell]], title: str | None) -> Table:
    # No vertical rules and one space between columns (table_width counts exactly this).
    widths = _widths(columns, rows)
    table = Table(
        title=title,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        width=table_width(widths) or None,  # as wide as its cells, whatever the console's width
    )
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*row)
    return table


def aligned_table(columns: Sequence[str], rows: Sequence[Sequence[Cell]], title: str | None = None) -> Text:
    """Plain aligned columns (like squeue's), styles kept: rich's Table costs ~0.6 ms a row, too slow for the
    status of a 1000-trial sweep; this costs a few microseconds a row."""
    widths = [cell_len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], cell_len(_plain(cell)))
    text = Text(no_wrap=True, overflow="ignore")
    if title:
        text.append(title + "\n", style="italic")
    for i, column in enumerate(columns):
        text.append(column.ljust(widths[i] + 2) if i < len(columns) - 1 else column, style="bold")
    for row in rows:
        text.append("\n")
        for i, cell in enumerate(row):
            plain, style = (cell.plain, str(cell.style)) if isinstance(cell, Text) else (cell, "")
            text.append(plain.ljust(widths[i] + 2) if i < len(row) - 1 else plain, style=style or None)
    return text
