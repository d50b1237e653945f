"""What every command shares with the terminal: the consoles, errors as one red line, completion of sweep
names, and the table options. Imported by both command modules (cli.py, analyze_cli.py), nothing of the
launcher or the analysis: the `analyze` command starts without either."""

from __future__ import annotations

import functools
import os
import sys

import click
from click.shell_completion import CompletionItem
from rich.console import Console
from rich.markup import escape

from sweeper import tables
from sweeper.errors import SweeperError
from sweeper.ledger import sweep_refs


def reader_gone() -> None:
    """A reader that stopped early (`| head`) is not an error: exit 0, and let nothing more be written."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)


class QuietConsole(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        reader_gone()


# A terminal's width, or COLUMNS; in a pipe without COLUMNS no limit, so a row stays one whole line.
console = QuietConsole(**tables.console_kwargs(Console().is_terminal))
err_console = Console(stderr=True)


def user_errors(fn):
    """Render SweeperError as one red line and exit 1; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SweeperError as exc:
            # escaped: a message may hold brackets (`sweeper[train]`, `grid[0]`) that are not markup
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except BrokenPipeError:
            reader_gone()
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)

    return wrapper


def complete_sweeps(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of a sweep name (`name` or `name/stamp` under --root)."""
    root = ctx.params.get("root") or "runs"
    return [CompletionItem(r) for r in sweep_refs(root) if r.startswith(incomplete)]


def complete_paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """A sweep name, or a directory (analyze reads any tree of runs). The directory item comes first: bash's
    completion script empties what came before it."""
    return [CompletionItem(incomplete, type="dir"), *complete_sweeps(ctx, param, incomplete)]


def print_table(renderable) -> None:
    # Not cropped: a table whose identity columns are wider than the terminal is wrapped by it, not cut.
    console.print(renderable, crop=False)


def table_options(fn):
    """--wide and --columns, the same on every command that shows a table."""
    fn = click.option(
        "--columns",
        metavar="A,B,C",
        default=None,
        help="Show these columns (names as in the footer) besides the identity ones.",
    )(fn)
    return click.option(
        "--wide", is_flag=True, help="Every column, even wider than the terminal (never cut)."
    )(fn)
