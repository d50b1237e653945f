"""`sweeper note`: a sweep's lab-notebook entry, in NOTE.md in its sweep dir and in a notebook file
(EXPERIMENTS.md beside runs/ by default, newest entry first), as markdown that renders on GitHub/GitLab.

An entry sits between `<!-- sweeper:entry ID -->` and `<!-- sweeper:entry-end ID -->` (ID: name/stamp);
regenerating it replaces that span and nothing else in the file, byte for byte. Inside, the researcher's
sections (Hypothesis, Observations, Conclusion, Next steps) sit between `<!-- sweeper:begin SECTION -->`
and `<!-- sweeper:end SECTION -->`: their text is carried over byte for byte from the notebook's entry
(else from NOTE.md), unless --hypothesis / --conclusion give new text. Everything else is regenerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sweeper import notebook_facts as facts
from sweeper.errors import SweeperError
from sweeper.fsutil import atomic_write_bytes
from sweeper.ledger import Ledger, resolve_sweep
from sweeper.notebook_entry import (
    build_entry,
    entry_begin,
    entry_end,
    section_begin,
    section_end,
    write_html,
    write_plots,
)

NOTE_FILE = "NOTE.md"
NOTEBOOK_FILE = "EXPERIMENTS.md"
NOTEBOOK_HEADER = (
    "# Experiments\n\nEntries written by `sweeper note` (newest first); edit the marked sections.\n"
)
HUMAN_SECTIONS = ("hypothesis", "observations", "conclusion", "next steps")
PLOTS = ("curves.png", "heatmap.png")


@dataclass
class NoteOptions:
    notebook: str | None = None  # default: EXPERIMENTS.md beside the runs dir holding the sweep
    vs: str | None = None  # the sweep to compare with (default: the previous one of the same name)
    compare_by: str | None = None
    hypothesis: str | None = None
    conclusion: str | None = None
    root: str = "runs"
    html: bool = False


@dataclass
class Written:
    note: Path
    notebook: Path
    replaced: bool  # the notebook had the entry already
    plots: list[Path] = field(default_factory=list)
    html: Path | None = None


def default_notebook(sweep_dir: Path) -> Path:
    """EXPERIMENTS.md beside the runs dir: runs/<name>/<stamp> -> runs/../EXPERIMENTS.md."""
    return sweep_dir.parent.parent.parent / NOTEBOOK_FILE


def check_notebook(path: Path) -> None:
    if path.is_dir():
        raise SweeperError(
            f"--notebook {path}: is a directory (give a markdown file, e.g. {path / NOTEBOOK_FILE})"
        )
    if not path.parent.is_dir():
        raise SweeperError(f"--notebook {path}: no directory {path.parent}")


def _read(path: Path) -> str | None:
    """A file's text exactly as it is (no newline translation), or None where it does not exist."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise SweeperError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def find_entry(text: str, entry_id: str, path: Path) -> tuple[int, int] | None:
    """(start, end) of the entry's span in text (end after its end marker), or None."""
    begin, end = entry_begin(entry_id), entry_end(entry_id)
    start = text.find(begin)
    if start < 0:
        return None
    stop = text.find(end, start)
    if stop < 0:
        line = text.count("\n", 0, start) + 1
        raise SweeperError(
            f"{path}:{line}: entry {entry_id}: no end marker {end!r} (restore it, or delete the entry)"
        )
    return start, stop + len(end)


def human_sections(entry: str) -> dict[str, str]:
    """The researcher's text of each section of an entry, exactly as written."""
    found = {}
    for name in HUMAN_SECTIONS:
        begin, end = section_begin(name), section_end(name)
        start = entry.find(begin)
        stop = entry.find(end, start) if start >= 0 else -1
        if start >= 0 and stop >= 0:
            found[name] = entry[start + len(begin) : stop]
    return found


def _kept_sections(entry_id: str, notebook: Path, note: Path) -> dict[str, str]:
    """The human text to keep: from the notebook's entry, else from NOTE.md."""
    for path in (notebook, note):
        text = _read(path)
        span = find_entry(text, entry_id, path) if text is not None else None
        if span is not None:
            return human_sections(text[span[0] : span[1]])
    return {}


def _insert(text: str, entry: str, entry_id: str, path: Path) -> tuple[str, bool]:
    """The notebook with the entry in place (replacing its old span), or inserted newest first."""
    span = find_entry(text, entry_id, path)
    if span is not None:
        return text[: span[0]] + entry + text[span[1] :], True
    stamp = entry_id.rpartition("/")[2]
    for match in re.finditer(r"<!-- sweeper:entry (\S+) -->", text):
        if match.group(1).rpartition("/")[2] < stamp:  # an older entry: the new one goes above it
            return text[: match.start()] + entry + "\n\n" + text[match.start() :], False
    separator = "" if text.endswith("\n\n") or not text else ("\n" if text.endswith("\n") else "\n\n")
    return text + separator + entry + "\n", False


def write_note(sweep: str, options: NoteOptions) -> Written:
    sweep_dir = resolve_sweep(sweep, options.root)
    ledger = Ledger(sweep_dir)
    notebook = Path(options.notebook) if options.notebook else default_notebook(sweep_dir)
    check_notebook(notebook)
    other = resolve_sweep(options.vs, options.root) if options.vs else facts.previous_sweep(sweep_dir)
    entry_id = f"{ledger.name}/{sweep_dir.name}"
    note_path = sweep_dir / NOTE_FILE
    kept = _kept_sections(entry_id, notebook, note_path)
    content = build_entry(ledger, other, entry_id, kept, options)  # refused here: nothing written yet
    content.plots = write_plots(sweep_dir, options.compare_by)
    content.html = write_html(sweep_dir, options.compare_by) if options.html else None
    atomic_write_bytes(note_path, (content.render(note_path.parent) + "\n").encode())
    current = _read(notebook)
    text, replaced = _insert(
        current if current is not None else NOTEBOOK_HEADER + "\n",
        content.render(notebook.parent),
        entry_id,
        notebook,
    )
    atomic_write_bytes(notebook, text.encode())
    return Written(note_path, notebook, replaced, content.plots, content.html)
