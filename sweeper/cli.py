"""The `sweeper` command: parse arguments, call one stage, render. No logic lives here. `sweeper analyze` is
analyze_cli's command; what both share with the terminal is in terminal.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.shell_completion import CompletionItem
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeper import __version__, backends, extras, kinds, status, tables, views
from sweeper.analyze_cli import analyze_command
from sweeper.errors import SweeperError
from sweeper.ledger import Ledger, resolve_sweep
from sweeper.space import CONFIRM_ABOVE
from sweeper.spec import load_spec
from sweeper.states import RETRY_BY_DEFAULT, parse_states
from sweeper.terminal import (
    complete_sweeps,
    console,
    print_table,
    table_options,
    user_errors,
)

if TYPE_CHECKING:
    from sweeper.kinds.base import Outcome


def complete_trials(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """The trial ids of the sweep given before them."""
    try:
        ledger = Ledger(resolve_sweep(ctx.params.get("sweep") or "", ctx.params.get("root") or "runs"))
        ids = [t.trial_id for t in ledger.trials()]
    except (SweeperError, OSError):
        return []
    return [CompletionItem(i) for i in ids if i.startswith(incomplete)]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sweeper")
def main() -> None:
    """Hyperparameter sweeps on SLURM (or this machine), and what came out of them."""


main.add_command(analyze_command)


# -- launch ------------------------------------------------------------------------------------------------
@main.command("launch")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path())
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec field, e.g. --set optim.lr=3e-4 (repeatable).",
)
@click.option(
    "--executor",
    type=click.Choice(["auto", *backends.NAMES]),
    default=None,
    help="Where jobs run (default: the spec's, else slurm if sbatch exists, else local).",
)
@click.option("--dry-run", is_flag=True, help="Print the trials and what would be submitted; submit nothing.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="How --dry-run shows the plan.",
)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Wait for the jobs to end (default: wait locally, return at once on SLURM).",
)
@click.option(
    "--root",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where sweep dirs are created.",
)
@click.option(
    "--yes", "-y", is_flag=True, help=f"Do not ask before launching more than {CONFIRM_ABOVE:,} trials."
)
@click.option("--frozen", is_flag=True, help="Refuse to launch from a git tree with uncommitted changes.")
@click.option(
    "--into",
    metavar="SWEEP",
    default=None,
    shell_complete=complete_sweeps,
    help="Grow this sweep (a name: its latest launch; or a sweep dir) by the spec's new trials only.",
)
@click.option(
    "--trials",
    "n_trials",
    type=click.IntRange(min=1),
    default=None,
    help="An Optuna search's budget (search.n_trials); with --into, the study's new budget.",
)
@click.option(
    "--allow-base-change",
    is_flag=True,
    help="With --into: grow even though the base config differs (the change is recorded).",
)
@user_errors
def launch_command(
    spec_path, overrides, executor, dry_run, fmt, wait, root, yes, frozen, into, n_trials, allow_base_change
):
    """Expand SPEC.yaml into trials and submit them (with --into: add its new trials to a sweep)."""
    from sweeper import launch

    if fmt == "json" and not dry_run:
        raise SweeperError("--format json: only with --dry-run (a launch shows its progress)")
    if allow_base_change and into is None:
        raise SweeperError(
            "--allow-base-change: only with --into (it allows growing a sweep whose base differs)"
        )
    if n_trials is not None:
        overrides = (*overrides, f"search.n_trials={n_trials}")
    spec = load_spec(spec_path, overrides)
    if frozen:
        launch.check_frozen()
    question = launch.size_question(spec)
    if question and not (yes or dry_run):
        confirm(question)
    if into is not None:
        grow_sweep(spec, Ledger(resolve_sweep(into, root)), executor, dry_run, fmt, wait, allow_base_change)
        return
    plan = launch.make_plan(spec, executor=executor, query_cluster=True)
    if fmt == "json":
        click.echo(json.dumps(plan.to_json(), indent=2, default=str))
        return
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if dry_run:
        parts = plan.kind.plan_parts(plan.spec, plan.trials, plan.executor, plan.resources)
        print_table(views.parts(parts, tables.room(console.width)))
        for line in views.plan_lines(plan):
            console.print(line, highlight=False, markup=False)
        return
    ledger = launch.create_ledger(plan, root, sys.argv)
    console.print(
        f"sweep [bold]{spec.name}[/]: {plan.kind.describe(spec, len(plan.trials))} on [bold]{plan.executor}[/] "
        f"({plan.parallelism} at a time) -> {ledger.dir}",
        highlight=False,
    )
    finish(run_with_progress(plan, ledger, launch.should_wait(plan, wait)))


def grow_sweep(spec, ledger, executor, dry_run, fmt, wait, allow_base_change) -> None:
    """`launch --into`: submit only the trials the sweep does not have yet."""
    from sweeper import grow, launch

    growth = grow.plan_growth(spec, ledger, allow_base_change)
    plan = launch.make_plan(spec, growth.new, executor or ledger.meta.get("executor"), query_cluster=True)
    if fmt == "json":
        click.echo(json.dumps({**plan.to_json(), **growth.to_json()}, indent=2, default=str))
        return
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if dry_run:
        print_table(views.parts(growth.parts(), tables.room(console.width)))
        for line in views.plan_lines(plan):
            console.print(line, highlight=False, markup=False)
        return
    plan.trials = grow.apply_growth(growth, sys.argv, plan.spec)
    if not plan.trials:
        console.print(f"{ledger.name}: nothing new to submit (every trial of the spec is in {ledger.dir})")
        return
    revision = len(ledger.revisions())
    console.print(
        f"sweep [bold]{ledger.name}[/]: revision {revision} adds {len(plan.trials)} trial(s) on "
        f"[bold]{plan.executor}[/] -> {ledger.dir}: " + ", ".join(t.trial_id for t in plan.trials),
        highlight=False,
    )
    finish(run_with_progress(plan, ledger, launch.should_wait(plan, wait), rerun=True))


def confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise SweeperError(f"{question} Pass --yes to confirm (no terminal to ask on).")
    if not click.confirm(question, default=False):
        raise SweeperError("not launched")


def run_with_progress(
    plan, ledger, waiting: bool, fresh: bool = False, rerun: bool = False, continuing: bool = False
) -> Outcome | None:
    """Run/submit the plan's trials with a live view of them (a line per change when not on a terminal);
    when it waited, their outcome (a rerun's: of the trials it ran; a launch's: of the whole sweep)."""
    from sweeper import launch

    trials = plan.trials
    if not waiting:
        launch.execute(plan, ledger, trials, wait_for_end=False, fresh=fresh, continuing=continuing)
        records = ledger.records()  # read once: 10k trials take ~0.1 s a read
        arrays = launch.submitted_arrays(ledger, trials, records)
        held = launch.held_for_feeding(ledger, trials, records)
        fed = sum(held.values())
        console.print(
            f"submitted {len(trials) - fed} trial(s) as job array(s) {', '.join(arrays) or '(none)'}; "
            + (
                f"{fed} more wait for the feeder job {', '.join(held)} (the cluster's submit limits); "
                if held
                else ""
            )
            + f"follow them with: sweeper status {ledger.dir}",
            highlight=False,
        )
        return None
    tracker = plan.kind.tracker(plan.spec, ledger, trials)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task(tracker.description, total=tracker.total)
    live = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None

    def on_tick(statuses) -> None:
        snapshot = tracker.snapshot(statuses, live is not None)
        if snapshot is None:
            return
        progress.update(task, completed=snapshot.done)
        if live is not None:
            table = views.part(snapshot.table, tables.room(console.width)) if snapshot.table else None
            live.update(Group(progress, table) if table else progress)
        for line in snapshot.lines:
            console.print(line, highlight=False)

    with live or contextlib.nullcontext():
        statuses = launch.execute(
            plan, ledger, trials, wait_for_end=True, on_tick=on_tick, fresh=fresh, continuing=continuing
        )
    return plan.kind.outcome(ledger, statuses, trials if rerun else None)


def finish(outcome: Outcome | None) -> None:
    """Show how the trials ended; exit 1 when any ended badly."""
    if outcome is None:
        return
    print_table(views.parts(outcome.parts, tables.room(console.width)))
    failures = views.failure_lines(outcome.failures)
    if failures:
        console.print(failures, highlight=False)
    for hint in outcome.hints:
        console.print(hint, highlight=False)
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


# -- status --------------------------------------------------------------------------------------------------
@main.command("status")
@click.argument("sweep", required=False, shell_complete=complete_sweeps)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--watch", is_flag=True, help="Refresh every few seconds until Ctrl-C.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--state", "states", default=None, help="Show only trials in these states (comma-separated).")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"Every trial's row (of a sweep of more than {views.STATUS_ROWS} trials, that many are shown, "
    "failed and running ones before others, with the counts of all).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: the same rows as plain data (with --watch, one line per refresh).",
)
@table_options
@user_errors
def status_command(sweep, root, watch, interval, states, show_all, fmt, wide, columns):
    """Every sweep at a glance, or one sweep's trials (states from one sacct call per refresh)."""
    only = parse_states(states) if states else None
    sweep_dir = resolve_sweep(sweep, root) if sweep is not None else None
    room = tables.room(console.width, wide, columns, None if show_all else views.STATUS_ROWS)
    as_json = fmt == "json"
    degraded = [False]

    def build():
        if sweep_dir is None:
            rows, result = kinds.overview(root)
            if not rows:
                raise SweeperError(
                    f"no sweeps under {root}/ (launch one with: sweeper launch sweeps/reg.yaml)"
                )
            degraded[0] = result.degraded
            return views.overview_json(rows, result) if as_json else views.sweeps_table(rows, result, room)
        ledger = Ledger(sweep_dir)
        result = status.refresh([ledger])
        degraded[0] = result.degraded
        found = kinds.of_ledger(ledger).status_parts(ledger, result.statuses[ledger.dir], only)
        if as_json:
            return views.sweep_json(ledger, result, found)
        return Group(views.parts(found, room), *views.sources_text(result))

    def show(shown) -> None:
        if as_json:
            click.echo(json.dumps(shown, default=str, indent=None if watch else 2))
        else:
            print_table(shown)
        sys.stdout.flush()

    if not watch:
        show(build())
        if degraded[0]:  # shown as well as it could be, but scripts must know the scheduler did not answer
            sys.exit(1)
        return
    if as_json or not console.is_terminal:  # a pipe or a log gets every refresh, one after the other
        while True:
            show(build())
            time.sleep(interval)
    with Live(build(), console=console, refresh_per_second=1, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(build())


# -- cancel / retry / resume ---------------------------------------------------------------------------------
@main.command("cancel")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.argument("trials", nargs=-1, shell_complete=complete_trials)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def cancel_command(sweep, trials, root):
    """Cancel a sweep's unfinished trials (all, or the given trial ids)."""
    from sweeper import control

    ledger = Ledger(resolve_sweep(sweep, root))
    cancelled = control.cancel(ledger, list(trials) or None)
    console.print(
        f"cancelled {len(cancelled)} trial(s)" + (": " + ", ".join(cancelled) if cancelled else ""),
        highlight=False,
    )


@main.command("retry")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.option(
    "--state",
    "states",
    default=",".join(RETRY_BY_DEFAULT),
    show_default=True,
    help="Comma-separated states to resubmit.",
)
@click.option(
    "--fresh", is_flag=True, help="Start from scratch in a new run dir instead of resuming from last.pt."
)
@click.option("--executor", type=click.Choice(backends.NAMES), default=None)
@click.option("--wait/--no-wait", default=None)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def retry_command(sweep, states, fresh, executor, wait, root):
    """Resubmit the trials in the given states (same trial ids, a new attempt)."""
    from sweeper import control

    ledger = Ledger(resolve_sweep(sweep, root))
    plan = control.plan_rerun(ledger, parse_states(states), executor)
    rerun(ledger, plan, wait, fresh)


@main.command("resume")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.option("--executor", type=click.Choice(backends.NAMES), default=None)
@click.option("--wait/--no-wait", default=None)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def resume_command(sweep, executor, wait, root):
    """Submit the trials of a sweep that never ran (never submitted, or cancelled before they started)."""
    from sweeper import control

    ledger = Ledger(resolve_sweep(sweep, root))
    rerun(ledger, control.plan_resume(ledger, executor), wait, fresh=False)


def rerun(ledger, plan, wait, fresh) -> None:
    from sweeper import launch

    if not plan.trials:
        console.print("nothing to submit")
        return
    console.print(
        f"{ledger.name}: resubmitting {len(plan.trials)} trial(s) on {plan.executor}: "
        + ", ".join(t.trial_id for t in plan.trials),
        highlight=False,
    )
    finish(run_with_progress(plan, ledger, launch.should_wait(plan, wait), fresh=fresh, rerun=True))


@main.command("mark")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.argument("args", nargs=-1, metavar="[TRIAL ...] valid|partial|invalid", shell_complete=complete_trials)
@click.option("--reason", default="", help="Why, e.g. 'WHD scheduler never decays' (kept in the ledger).")
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def mark_command(sweep, args, reason, root):
    """Mark trials (all of the sweep's when none is named) valid, partial or invalid: analyze leaves invalid
    runs out of best configs, effects and means; partial ones are counted and flagged."""
    from sweeper import marks

    if not args:
        raise SweeperError("mark: give the mark (valid, partial or invalid) after the trials")
    ledger = Ledger(resolve_sweep(sweep, root))
    marked = marks.mark(ledger, list(args[:-1]), args[-1], reason)
    console.print(f"marked {len(marked)} trial(s) {args[-1].lower()}: {', '.join(marked)}", highlight=False)


@main.command("note")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.option(
    "--notebook",
    type=click.Path(),
    default=None,
    help="The notebook file to add the entry to [default: EXPERIMENTS.md beside the runs dir].",
)
@click.option(
    "--vs", default=None, help="The sweep to compare with [default: the previous one of this name]."
)
@click.option(
    "--compare-by", default=None, metavar="KEY", help="Results side by side per value, e.g. model.residual."
)
@click.option("--hypothesis", default=None, help="The Hypothesis section's text (replaces it).")
@click.option("--conclusion", default=None, help="The Conclusion section's text (replaces it).")
@click.option("--html", is_flag=True, help="Also write report.html (offline, self-contained) and link it.")
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def note_command(sweep, notebook, vs, compare_by, hypothesis, conclusion, html, root):
    """Write the sweep's lab-notebook entry: NOTE.md in its sweep dir, and the entry in the notebook
    (updated in place; the Hypothesis, Observations, Conclusion and Next steps text is kept)."""
    from sweeper.notebook import NoteOptions, write_note

    options = NoteOptions(notebook, vs, compare_by, hypothesis, conclusion, root, html)
    written = write_note(sweep, options)
    action = "updated" if written.replaced else "added"
    console.print(f"wrote {written.note}; {action} its entry in {written.notebook}", highlight=False)
    for path in [*written.plots, *([written.html] if written.html else [])]:
        console.print(f"  {path}", highlight=False)


@main.command("continue")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.argument("trials", nargs=-1, shell_complete=complete_trials)
@click.option("--epochs", type=int, required=True, help="Train on to this many epochs in all.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change a key that can change mid-run, e.g. --set optim.lr=1e-4 (repeatable).",
)
@click.option("--executor", type=click.Choice(backends.NAMES), default=None)
@click.option("--wait/--no-wait", default=None)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def continue_command(sweep, trials, epochs, overrides, executor, wait, root):
    """Train finished trials (all COMPLETED ones, or those given) on from their checkpoint to --epochs."""
    from sweeper import continuation, launch

    ledger = Ledger(resolve_sweep(sweep, root))
    planned = continuation.plan_continue(ledger, list(trials), epochs, overrides)
    taken = continuation.record(planned, sys.argv)
    if not taken:
        console.print("nothing to continue (another `sweeper continue` took these trials)")
        return
    plan = launch.make_plan(ledger.launched_spec(), taken, executor or ledger.meta.get("executor"))
    changes = ", ".join(f"{c['key']} {c['old']} -> {c['new']}" for c in planned.changes())
    console.print(
        f"{ledger.name}: continuing {len(taken)} trial(s) on {plan.executor} ({changes}): "
        + ", ".join(t.trial_id for t in taken),
        highlight=False,
    )
    finish(run_with_progress(plan, ledger, launch.should_wait(plan, wait), rerun=True, continuing=True))


@main.command("dashboard")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def dashboard_command(sweep, host, port, root):
    """Serve optuna-dashboard on a sweep: a search's study, or a grid sweep's runs as a study (history,
    parallel coordinates, importances, learning curves)."""
    ledger = Ledger(resolve_sweep(sweep, root))
    optuna_dashboard = extras.require("optuna_dashboard", "dashboard", "sweeper dashboard")
    from sweeper import dashboard

    dashboard.check_port(host, port)
    storage = kinds.of_ledger(ledger).dashboard_storage(ledger)
    console.print(
        f"optuna-dashboard for study {dashboard.study_names(storage)} at http://{host}:{port}/  (Ctrl-C stops it)",
        highlight=False,
    )
    optuna_dashboard.run_server(storage, host=host, port=port)


@main.command("tensorboard")
@click.argument("sweep", shell_complete=complete_sweeps)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=6006, show_default=True, type=int)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def tensorboard_command(sweep, host, port, root):
    """Serve TensorBoard on a sweep, each run named by its trial id (scalars, HParams table)."""
    ledger = Ledger(resolve_sweep(sweep, root))
    extras.require("tensorboard", "train", "sweeper tensorboard")
    from sweeper import dashboard

    dashboard.check_port(host, port)
    with tempfile.TemporaryDirectory(prefix="sweeper-tensorboard-") as links:
        count = dashboard.link_runs_by_trial(ledger, Path(links))
        console.print(
            f"TensorBoard for {ledger.dir} ({count} runs, named by trial) at http://{host}:{port}/  "
            "(Ctrl-C stops it)",
            highlight=False,
        )
        # --load_fast=false: TensorBoard's fast loader (tensorboard-data-server) shows none of the float64
        # scalars the runs' event files hold; the Python loader shows them all (docs/metrics.md)
        argv = ["--logdir", links, "--host", host, "--port", str(port), "--load_fast=false"]
        subprocess.run([sys.executable, "-m", "tensorboard.main", *argv], check=False)


if __name__ == "__main__":
    main(prog_name="sweeper")
