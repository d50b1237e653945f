"""What the commands print, as a user sees it: tables that fit a real terminal (a pseudo-terminal of a set
size) or a pipe, JSON output, `--watch` in a pipe, a reader that stops early, sweep names for `analyze`,
shell completion, and one exit-code convention for every command."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import cli_env, run_cli, write_spec

PROG = Path(__file__).parent / "progs" / "fake_train.py"
BIN = Path(sys.executable).parent
# Long config names and two learning rates that differ in their last digit: what a narrow table used to
# cut to `0.…`, and a failing config whose error line must still be shown somewhere.
CONFIGS = ("warmup_cosine_long_name", "constant_lr_longer_name", "broken_run_config")
LRS = ("0.0012345", "0.0012346")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished local sweep of a command trial (6 runs, 2 of them failed); the directory to run in."""
    where = tmp_path_factory.mktemp("wide")
    write_spec(
        where,
        f"""
        name: wide
        command: [python, {PROG}, "--lr={{optim.lr}}", "--epochs={{epochs}}", "--fail-at={{fail_at}}"]
        base: {{optim: {{lr: 0.1}}, epochs: 3, fail_at: 0}}
        configs:
          {CONFIGS[0]}: {{fail_at: 0}}
          {CONFIGS[1]}: {{fail_at: 0}}
          {CONFIGS[2]}: {{fail_at: 2}}
        grid: {{optim.lr: [{", ".join(LRS)}]}}
        launch: {{parallelism: 2}}
        """,
        name="wide.yaml",
    )
    result = run_cli(["launch", "wide.yaml", "--executor", "local"], where, check=False)
    assert result.returncode == 1 and "FAILED 2" in result.stdout, result.stdout + result.stderr
    return where


def in_terminal(columns: int, argv: list[str], cwd: Path) -> str:
    """Run argv on a pseudo-terminal `columns` wide (no COLUMNS: the window size says it); its screen text."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in cli_env().items() if k not in ("COLUMNS", "LINES")} | {"TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while select.select([master], [], [], 120)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other end closed: the program exited
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r", "")


def table_rows(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """The line of each row, found by its config name (which must be whole, on one line)."""
    rows = {}
    for name in names:
        lines = [line for line in text.splitlines() if re.search(rf"\b{re.escape(name)}\+lr=", line)]
        assert lines, f"{name} is not whole on any line:\n{text}"
        rows[name] = lines[0]
    return rows


# -- tables that fit --------------------------------------------------------------------------------------
@pytest.mark.parametrize("columns", [80, 120, 200])
def test_analyze_in_a_terminal_keeps_config_names_and_params_whole(sweep, columns):
    screen = in_terminal(columns, [str(BIN / "analyze"), "runs/wide/latest", "--no-group"], sweep)
    for name in CONFIGS:
        for lr in LRS:
            line = next((ln for ln in screen.splitlines() if f"{name}+lr={lr}" in ln), None)
            assert line is not None, f"{name}+lr={lr} not whole in:\n{screen}"
            assert re.search(rf"\s{re.escape(lr)}\s", line), line  # the lr column shows the whole value
            assert "…" not in line and len(line.rstrip()) <= columns, line  # nothing cut, nothing wider
    if columns < 200:
        assert "not shown (too narrow): " in screen  # the footer names what was dropped


def test_status_in_a_narrow_terminal_gives_each_trial_one_line_and_its_error_below(sweep):
    screen = in_terminal(100, [str(BIN / "sweeper"), "status", "wide"], sweep)
    lines = [ln for ln in screen.splitlines() if re.match(r" \S+\+lr=\S+-s0 ", ln)]
    assert len(lines) == 6, screen  # one line per trial: no cell wrapped onto a second line
    for line in lines:
        assert re.search(r"\s(COMPLETED|FAILED)\s", line) and len(line.rstrip()) <= 100, line
    # the error column did not fit: each failed trial's error is one line below the table
    errors = [ln for ln in screen.splitlines() if "the loss went to the moon" in ln]
    assert len(errors) == 2 and all(CONFIGS[2] in ln for ln in errors), screen
    assert "error / note" in screen.split("not shown (too narrow): ")[1]


def test_piped_tables_fit_COLUMNS_and_keep_rows_on_one_line_without_it(sweep):
    env = cli_env() | {"COLUMNS": "90"}
    argv = [sys.executable, "-m", "sweeper.cli", "analyze", "runs/wide/latest", "--no-group"]
    narrow = subprocess.run(argv, cwd=sweep, env=env, capture_output=True, text=True, check=True).stdout
    rows = table_rows(narrow, CONFIGS)
    assert all(len(line.rstrip()) <= 90 for line in rows.values()), narrow
    assert "not shown (too narrow): " in narrow
    env.pop("COLUMNS")
    piped = subprocess.run(argv, cwd=sweep, env=env, capture_output=True, text=True, check=True).stdout
    header_and_rows = table_rows(piped, CONFIGS)
    assert "not shown" not in piped and "COMPLETED" in header_and_rows[CONFIGS[0]]  # every column
    assert "FAILED" in header_and_rows[CONFIGS[2]]
    # awk gets whole rows: a config name and its status on the same line, once per run
    assert sum(CONFIGS[0] in line for line in piped.splitlines()[:12]) == 2


def test_columns_chooses_the_columns_and_names_a_typo(sweep, tmp_path):
    out = run_cli(["status", "wide", "--columns", "job,epoch"], sweep).stdout
    header = next(line for line in out.splitlines() if line.lstrip().startswith("trial"))
    assert header.split() == ["trial", "fail_at", "lr", "state", "epoch", "job"]
    out = run_cli(["analyze", "wide", "--columns", "status,best_valid_loss"], sweep).stdout
    assert "COMPLETED" in out and "best valid" in out and "gap @best" not in out
    md = run_cli(["analyze", "wide", "--format", "markdown", "--columns", "status"], sweep).stdout
    assert md.splitlines()[2] == "| config | fail_at | lr | status |", md
    wide = run_cli(["analyze", "wide", "--wide"], sweep, check=False)
    assert "gap @best" in wide.stdout and "not shown" not in wide.stdout
    typo = run_cli(["analyze", "wide", "--columns", "stauts"], sweep, check=False)
    assert typo.returncode == 1 and typo.stderr.strip().splitlines() == [
        "error: --columns: no column 'stauts' (did you mean 'status'?)"
    ]


# -- JSON, watch, pipes --------------------------------------------------------------------------------------
def test_status_json_is_plain_data(sweep):
    one = json.loads(run_cli(["status", "wide", "--format", "json"], sweep).stdout)
    states = {t["trial_id"]: t["state"] for t in one["trials"]}
    assert len(states) == 6 and sorted(set(states.values())) == ["COMPLETED", "FAILED"]
    assert one["counts"] == {"COMPLETED": 4, "FAILED": 2} and one["sweep"] == "wide"
    failed = [t for t in one["trials"] if t["state"] == "FAILED"]
    assert all("the loss went to the moon" in t["error"] for t in failed)
    overview = json.loads(run_cli(["status", "--format", "json"], sweep).stdout)
    assert [s["sweep"] for s in overview["sweeps"]] == ["wide"] and overview["sweeps"][0]["trials"] == "6"


def test_launch_dry_run_json_is_plain_data(sweep):
    plan = json.loads(run_cli(["launch", "wide.yaml", "--dry-run", "--format", "json"], sweep).stdout)
    assert plan["sweep"] == "wide" and len(plan["trials"]) == 6
    assert {t["params"]["optim.lr"] for t in plan["trials"]} == {float(lr) for lr in LRS}
    refused = run_cli(["launch", "wide.yaml", "--format", "json"], sweep, check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: --format json: only with --dry-run")


def test_status_watch_in_a_pipe_prints_every_refresh(sweep):
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli", "status", "wide", "--watch", "--interval", "0.1"],
        cwd=sweep,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = b""
    try:
        deadline = time.monotonic() + 120  # a guard against hanging, not an assertion on speed
        while seen.count(b"states from") < 3 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
    finally:
        proc.kill()
        proc.wait()
    assert seen.count(b"states from") >= 3, seen.decode()
    assert seen.count(b"wide 2") >= 3  # the whole table each time, title included


def test_a_reader_that_stops_early_is_not_an_error(sweep):
    for command in (
        "status wide --watch --interval 0.05",
        "status wide --format json --watch --interval 0.05",
    ):
        script = f"set -o pipefail; {sys.executable} -m sweeper.cli {command} | head -1"
        result = subprocess.run(
            ["bash", "-c", script], cwd=sweep, env=cli_env(), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert result.stdout.strip()


# -- analyze: names, version, provenance, errors -------------------------------------------------------------
def test_analyze_takes_a_sweep_name_under_root(sweep, tmp_path):
    out = run_cli(["analyze", "wide", "--root", str(sweep / "runs"), "--format", "csv"], tmp_path).stdout
    assert len(list(csv.DictReader(io.StringIO(out)))) == 6  # every run of the sweep found by its name
    missing = run_cli(["analyze", "nosuch"], tmp_path, check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "error: nosuch: no such path, and no sweep of that name under runs/"
    ]


def test_analyze_version_and_provenance_csv(sweep):
    version = run_cli(["--version"], sweep, command="analyze")
    assert re.fullmatch(r"analyze, version \S+\n", version.stdout)
    out = run_cli(["analyze", "wide", "--provenance", "--format", "csv"], sweep).stdout
    (row,) = csv.DictReader(io.StringIO(out))
    assert row["name"] == "wide" and int(row["packages"]) > 0 and int(row["runs"]) == 6


def test_a_spec_that_is_a_directory_is_one_error_line(tmp_path):
    (tmp_path / "sweeps").mkdir()
    result = run_cli(["launch", "sweeps"], tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: sweeps: cannot read: Is a directory"]


def test_exit_codes_are_the_same_for_every_command(tmp_path):
    """README's table: 0 done, 1 an `error:` line (or a failed trial / a scheduler that did not answer),
    2 a command-line mistake (click's usage message)."""
    for args, command in [
        (["status", "nosuch"], "sweeper"),
        (["cancel", "nosuch"], "sweeper"),
        (["retry", "nosuch"], "sweeper"),
        (["resume", "nosuch"], "sweeper"),
        (["launch", "nosuch.yaml"], "sweeper"),
        (["nosuch"], "analyze"),
    ]:
        result = run_cli(args, tmp_path, check=False, command=command)
        assert result.returncode == 1 and result.stderr.startswith("error: "), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for args, command in [(["status", "--nosuch"], "sweeper"), (["--nosuch"], "analyze")]:
        assert run_cli(args, tmp_path, check=False, command=command).returncode == 2


# -- shell completion ---------------------------------------------------------------------------------------
def complete(words: str, cwd: Path, program: str = "sweeper") -> list[str]:
    env = cli_env() | {
        f"_{program.upper()}_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = subprocess.run(
        [str(BIN / program)], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line.startswith("plain,")]


def test_shell_completion_offers_sweep_names_and_trial_ids(sweep):
    stamp = (sweep / "runs" / "wide" / "latest").resolve().name
    assert complete("sweeper status ", sweep) == ["wide", f"wide/{stamp}"]
    assert complete("sweeper retry w", sweep) == ["wide", f"wide/{stamp}"]
    assert complete("sweeper status --root runs wi", sweep) == ["wide", f"wide/{stamp}"]
    assert complete("sweeper cancel wide broken", sweep) == [f"{CONFIGS[2]}+lr={lr}-s0" for lr in LRS]
    assert complete("analyze w", sweep, program="analyze") == ["wide", f"wide/{stamp}"]
    source = subprocess.run(
        [str(BIN / "sweeper")],
        env=cli_env() | {"_SWEEPER_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
    )
    assert "complete -o nosort -F _sweeper_completion sweeper" in source.stdout


# -- the fitting rule itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n_rows", [3, 300])  # a rich table, and the plain aligned text past 200 rows
def test_fitted_tables_fit_the_width_they_are_given(n_rows):
    from rich.console import Console

    from sweeper.tables import KEEP, Room, TableColumn, fitted_table

    columns = [
        TableColumn("trial", "trial", KEEP),
        TableColumn("lr", "lr", KEEP),
        TableColumn("loss", "loss", 2, "right"),
        TableColumn("job", "job", 1, "right"),
        TableColumn("note", "note", 0, detail=True),
    ]
    rows = [
        [f"a_long_trial_name_{i}", "0.0012345", "1.2345", str(1000 + i), f"note {i}"] for i in range(n_rows)
    ]
    for width, shown in [(200, ["loss", "job", "note"]), (50, ["loss", "job"]), (44, ["loss"]), (20, [])]:
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(fitted_table(columns, rows, Room(width)), crop=False)
        lines = console.export_text().splitlines()
        body = [line for line in lines if "a_long_trial_name_1 " in line and ": note" not in line]
        assert len(body) == 1 and "0.0012345" in body[0], lines[:8]  # identity whole, one line
        assert [
            c for c in ("loss", "job", "note") if c in body[0] or any(c in ln for ln in lines[:3])
        ] == shown
        if width >= 44:
            assert all(len(line.rstrip()) <= width for line in lines if "not shown" not in line), lines
        if "note" not in shown:
            assert "  a_long_trial_name_1: note 1" in lines  # a dropped detail column is printed below


def test_the_trial_table_of_a_big_sweep_is_summarized_unless_every_row_is_asked_for():
    from rich.console import Console

    from sweeper import views
    from sweeper.kinds.base import TrialTable
    from sweeper.status import TrialStatus
    from sweeper.tables import Room

    statuses = [
        TrialStatus(f"i={i}-s0", f"i={i}", {"i": i}, 0, "FAILED" if i == 150 else "PENDING")
        for i in range(250)
    ]

    def shown(rows: int | None) -> set[int]:
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(views.part(TrialTable(statuses), Room(rows=rows)))
        text = console.export_text()
        assert (f"{250 - views.STATUS_ROWS} more trial(s) not shown" in text) == (rows is not None), text[
            -300:
        ]
        return {int(i) for i in re.findall(r"i=(\d+)-s0", text)}

    assert shown(views.STATUS_ROWS) == {*range(views.STATUS_ROWS - 1), 150}  # the failed one, then in order
    assert shown(None) == set(range(250))
