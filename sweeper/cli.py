"""The `sweeper` and `analyze` commands: parse arguments, call one stage, render. No logic lives here."""

from __future__ import annotations

import functools
import sys
import time
from typing import TYPE_CHECKING

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sweeper import __version__, render, status
from sweeper.errors import SweeperError
from sweeper.ledger import Ledger, resolve_sweep
from sweeper.space import CONFIRM_ABOVE, count_trials, expand, format_value
from sweeper.spec import load_spec

if TYPE_CHECKING:
    from sweeper import launch

# Tables are wide: when output goes to a file or a pipe (CI logs, `| less`), do not squeeze them into 80 columns.
console = Console() if Console().is_terminal else Console(width=220)
err_console = Console(stderr=True)


def user_errors(fn):
    """Render SweeperError as one red line and exit 1; bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SweeperError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sweeper")
def main() -> None:
    """Hyperparameter sweeps on SLURM (or this machine), and what came out of them."""


# -- launch ------------------------------------------------------------------------------------------------
@main.command("launch")
@click.argument("spec_path", metavar="SPEC.yaml", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec field, e.g. --set optim.lr=3e-4 (repeatable).",
)
@click.option(
    "--executor",
    type=click.Choice(["auto", "local", "slurm", "debug"]),
    default=None,
    help="Where jobs run (default: the spec's, else slurm if sbatch exists, else local).",
)
@click.option("--dry-run", is_flag=True, help="Print the trials and what would be submitted; submit nothing.")
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
@user_errors
def launch_command(spec_path, overrides, executor, dry_run, wait, root, yes, frozen):
    """Expand SPEC.yaml into trials and submit them."""
    from sweeper import launch

    spec = load_spec(spec_path, overrides)
    if frozen:
        launch.check_frozen()
    size = count_trials(spec) if spec.search is None else spec.search.workers
    if size > CONFIRM_ABOVE and not (yes or dry_run):
        question = f"{spec.path}: this sweep has {size:,} trials. Launch them all?"
        if not sys.stdin.isatty():
            raise SweeperError(f"{question} Pass --yes to confirm (no terminal to ask on).")
        if not click.confirm(question, default=False):
            raise SweeperError("not launched")
    trials = expand(spec)
    plan = launch.make_plan(spec, trials, executor, query_cluster=True)
    if spec.search is not None:
        from sweeper.tune import search_warnings

        for warning in search_warnings(spec):
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if dry_run:
        print_plan(plan)
        return
    ledger = launch.create_ledger(plan, root, sys.argv)
    what = (
        f"Optuna search, {spec.search.n_trials} trials by {len(trials)} workers"
        if spec.search
        else f"{len(trials)} trials"
    )
    console.print(
        f"sweep [bold]{spec.name}[/]: {what} on [bold]{plan.executor}[/] ({plan.parallelism} at a time) -> {ledger.dir}",
        highlight=False,
    )
    waiting = plan.executor != "slurm" if wait is None else wait
    statuses = run_with_progress(plan, ledger, trials, waiting)
    finish(ledger, statuses)


def print_plan(plan: launch.Plan) -> None:
    from sweeper import launch

    if plan.spec.search is not None:
        print_search_plan(plan)
        return
    names = render.short_names(plan.spec.swept_keys) if plan.spec.swept_keys else {}
    table = render.Table(
        title=f"{plan.spec.name}: {len(plan.trials)} trials (dry run: nothing submitted)", header_style="bold"
    )
    for column in ["trial id", *names.values(), "seed"]:
        table.add_column(column)
    for trial in plan.trials:
        table.add_row(
            trial.trial_id,
            *[format_value(trial.params[k]) if k in trial.params else "-" for k in names],
            str(trial.seed),
        )
    console.print(table)
    console.print(
        f"executor: [bold]{plan.executor}[/], at most {plan.parallelism} at a time, {plan.threads} torch thread(s) per job"
    )
    for key, value in plan.executor_params.items():
        console.print(f"  {key} = {value}", highlight=False)
    if plan.profile:
        console.print(f"cluster profile: {plan.profile}", highlight=False)
    if plan.executor == "slurm":
        limit = plan.max_array_size or f"unknown ({plan.cluster_error})"
        console.print(f"MaxArraySize: {limit}; {len(plan.arrays)} array(s):", highlight=False)
        for line in launch.array_plan_lines(plan):
            console.print(f"  {line}", highlight=False)
        preview = launch.sbatch_preview(plan)
        if preview:
            console.print("sbatch parameters (array 1):")
            for line in preview:
                console.print(f"  {line}", highlight=False, markup=False)


def print_search_plan(plan: launch.Plan) -> None:
    search = plan.spec.search
    table = render.Table(
        title=f"{plan.spec.name}: Optuna search (dry run: nothing submitted)", header_style="bold"
    )
    for column in ("parameter", "type", "range / choices", "when"):
        table.add_column(column)
    for key, param in search.params.items():
        if param.type == "categorical":
            values = ", ".join(format_value(c) for c in param.choices)
        else:
            values = (
                f"[{format_value(param.low)}, {format_value(param.high)}]"
                + (" log" if param.log else "")
                + (f" step {format_value(param.step)}" if param.step else "")
            )
        when = ", ".join(f"{k}={format_value(v)}" for k, v in (param.when or {}).items())
        table.add_row(key, param.type, values, when or "-")
    console.print(table)
    options = lambda plugin: ", ".join(f"{k}={format_value(v)}" for k, v in plugin.options.items())  # noqa: E731
    console.print(
        f"sampler: {search.sampler.name} ({options(search.sampler) or 'defaults'}); "
        f"pruner: {search.pruner.name} ({options(search.pruner) or 'defaults'})",
        highlight=False,
    )
    console.print(
        f"objective: {plan.spec.objective.direction} {plan.spec.objective.metric}, mean over seeds "
        f"{plan.spec.seeds}; budget {search.n_trials} trials; {search.workers} workers on {plan.executor}; "
        f"storage: {search.storage or 'journal file in the sweep dir'}",
        highlight=False,
    )
    for key, value in plan.executor_params.items():
        console.print(f"  {key} = {value}", highlight=False)


def run_with_progress(plan, ledger, trials, waiting: bool, fresh: bool = False):
    """Run/submit with a live view of the trials (a line per change when not on a terminal)."""
    from sweeper import launch

    if not waiting:
        launch.execute(plan, ledger, trials, wait_for_end=False, fresh=fresh)
        arrays = launch.submitted_arrays(ledger, trials)
        console.print(
            f"submitted {len(trials)} trial(s) as job array(s) {', '.join(arrays)}; "
            f"follow them with: sweeper status {ledger.dir}",
            highlight=False,
        )
        return None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    seen: dict = {}
    live = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None
    if plan.spec.search is not None:
        on_tick = search_progress(plan, ledger, progress, live, seen)
    else:
        on_tick = trial_progress(trials, progress, live, seen)
    if live is not None:
        with live:
            return launch.execute(plan, ledger, trials, wait_for_end=True, on_tick=on_tick, fresh=fresh)
    return launch.execute(plan, ledger, trials, wait_for_end=True, on_tick=on_tick, fresh=fresh)


def trial_progress(trials, progress, live, seen):
    task = progress.add_task("trials finished", total=len(trials))
    ids = {t.trial_id for t in trials}

    def on_tick(statuses):
        mine = [s for s in statuses if s.trial_id in ids]
        progress.update(task, completed=sum(s.finished for s in mine))
        active = [s for s in mine if s.state in ("RUNNING", "PENDING")]
        if live is not None:
            live.update(Group(progress, render.status_table(active, title="running")) if active else progress)
            return
        for s in mine:  # plain log lines for CI and pipes
            key = (s.state, s.epoch // 5)
            if seen.get(s.trial_id) != key:
                seen[s.trial_id] = key
                epoch = f" epoch {s.epoch}/{s.epochs}" if s.epoch else ""
                acc = s.last.get("valid/acc")
                console.print(
                    f"  {s.trial_id}: {s.state}{epoch}"
                    + (f" valid/acc {render.pct(acc)}" if acc is not None else ""),
                    highlight=False,
                )

    return on_tick


def search_progress(plan, ledger, progress, live, seen, every_s: float = 2.0):
    """Progress of an Optuna sweep: finished trials out of the budget, read from the study every few seconds."""
    from sweeper import tune

    task = progress.add_task("optuna trials finished", total=tune.search_budget(plan.spec))
    last = [0.0]

    def on_tick(statuses):
        if time.time() - last[0] < every_s and not all(s.finished for s in statuses):
            return
        last[0] = time.time()
        rows = tune.study_rows(ledger, plan.spec)
        done = sum(r["counted"] and r["state"] in ("COMPLETE", "PRUNED", "FAIL") for r in rows)
        progress.update(task, completed=done)
        if live is not None:
            live.update(Group(progress, render.study_table(rows, plan.spec)))
            return
        for row in rows:
            key = (row["state"], (row["epoch"] or 0) // 5)
            if seen.get(row["number"]) != key:
                seen[row["number"]] = key
                value = "" if row["value"] is None else f" value {row['value']:.4f}"
                console.print(
                    f"  trial {row['number']}: {row['state']} epoch {row['epoch']}{value}", highlight=False
                )

    return on_tick


def finish(ledger: Ledger, statuses, trials=None) -> None:
    """Counts and errors of the trials just run (all of the sweep's when `trials` is None); exit 1 on failures."""
    if statuses is None:
        return
    if ledger.meta.get("search") == "optuna":
        finish_search(ledger, statuses)
        return
    if trials is not None:
        wanted = {t.trial_id for t in trials}
        statuses = [s for s in statuses if s.trial_id in wanted]
    counts = status.count_states(statuses)
    console.print(render.counts_text(counts))
    failed = [s for s in statuses if s.state in status.FAILURES]
    for s in failed:
        if s.error:
            console.print(f"  [red]{s.trial_id}[/]: {s.error}", highlight=False)
    console.print(f"analyze with: analyze --checkpoints-path {ledger.dir}", highlight=False)
    if failed:
        sys.exit(1)


def finish_search(ledger: Ledger, statuses) -> None:
    from sweeper import tune
    from sweeper.control import load_launched_spec

    spec = load_launched_spec(ledger)
    rows = tune.study_rows(ledger, spec)
    console.print(render.study_table(rows, spec, title=f"{ledger.name}: {len(rows)} Optuna trials"))
    console.print(render.counts_text(status.Counter(r["state"] for r in rows)))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    if done:
        best = (max if spec.objective.direction == "maximize" else min)(done, key=lambda r: r["value"])
        params = ", ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
        console.print(
            f"best trial {best['number']}: {spec.objective.metric} {best['value']:.4f} ({params})",
            highlight=False,
        )
    for s in statuses:
        if s.state in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED"):
            console.print(f"  [red]{s.trial_id}[/]: {s.error}", highlight=False)
    console.print(f"analyze with: analyze --checkpoints-path {ledger.dir}", highlight=False)
    console.print(f"dashboard:    sweeper dashboard {ledger.dir}", highlight=False)
    if any(s.state in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED") for s in statuses):
        sys.exit(1)


# -- status --------------------------------------------------------------------------------------------------
@main.command("status")
@click.argument("sweep", required=False)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--watch", is_flag=True, help="Refresh every few seconds until Ctrl-C.")
@click.option("--interval", default=5.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--state", "states", default=None, help="Show only trials in these states (comma-separated).")
@user_errors
def status_command(sweep, root, watch, interval, states):
    """Every sweep at a glance, or one sweep's trials (states from one sacct call per refresh)."""
    only = {s.strip().upper() for s in states.split(",") if s.strip()} if states else None
    sweep_dir = resolve_sweep(sweep, root) if sweep is not None else None

    degraded = [False]

    def build():
        if sweep_dir is None:
            overviews, result = status.overview(root)
            if not overviews:
                raise SweeperError(
                    f"no sweeps under {root}/ (launch one with: sweeper launch sweeps/reg.yaml)"
                )
            degraded[0] = result.degraded
            for item in overviews:
                if item.ledger.meta.get("search") == "optuna":
                    try:
                        add_study(item)
                    except Exception as e:  # one unreachable study (RDB down) must not hide the others
                        unread = f"{item.ledger.name}/{item.ledger.dir.name}: study not read ({str(e).splitlines()[0][:200]}); workers shown"
                        result.warning = f"{result.warning}; {unread}" if result.warning else unread
            return render.sweeps_table(overviews, result)
        ledger = Ledger(sweep_dir)
        result = status.refresh([ledger])
        degraded[0] = result.degraded
        if ledger.meta.get("search") == "optuna":
            return search_status_view(ledger, result.statuses[ledger.dir])
        return render.sweep_status(ledger, result.statuses[ledger.dir], result, only)

    if not watch:
        console.print(build())
        if degraded[0]:  # shown as well as it could be, but scripts must know the scheduler did not answer
            sys.exit(1)
        return
    with Live(build(), console=console, refresh_per_second=1, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(build())


def add_study(item: status.SweepOverview) -> None:
    """An Optuna sweep in the overview: its trials from the study (reconciled), not its worker jobs."""
    from sweeper import tune
    from sweeper.control import load_launched_spec

    spec = load_launched_spec(item.ledger)
    dead = {s.job_id for s in item.statuses if s.job_id and s.finished}
    item.study = tune.study_rows(item.ledger, spec, dead_jobs=dead)
    item.budget = tune.search_budget(spec)


def search_status_view(ledger: Ledger, statuses):
    """An Optuna sweep: its trials from the study (after reconciling dead workers) and its worker jobs."""
    from sweeper import tune
    from sweeper.control import load_launched_spec

    spec = load_launched_spec(ledger)
    dead = {s.job_id for s in statuses if s.job_id and s.finished}
    rows = tune.study_rows(ledger, spec, dead_jobs=dead)
    title = f"{ledger.name} {ledger.dir.name}: Optuna study, budget {spec.search.n_trials} trials"
    return Group(
        render.study_table(rows, spec, title=title),
        render.counts_text(status.Counter(r["state"] for r in rows)),
        render.status_table(statuses, title="workers"),
    )


# -- analyze -------------------------------------------------------------------------------------------------
@click.command("analyze", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--checkpoints-path",
    "-p",
    "path",
    type=click.Path(exists=True),
    help="A run dir, a sweep dir, or a tree of sweeps (or give paths as arguments; two paths are compared).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--sort",
    "sort_key",
    default=None,
    metavar="FIELD[:asc|:desc]",
    help="Summary field (best_valid_loss, gap_at_best, ...) or parameter to sort by, best first "
    "[default: the objective].",
)
@click.option(
    "--top",
    type=int,
    default=None,
    help="Show the first N rows (0: all) [table default: 50].",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY OP VALUE",
    help="Keep runs where e.g. 'model.layers==6', 'best_valid_acc>0.9', 'state!=FAILED' (repeatable: all must hold).",
)
@click.option(
    "--metric",
    default=None,
    help="Objective metric column, e.g. valid/auroc [default: the sweep's objective].",
)
@click.option(
    "--split", default="valid", show_default=True, help="Split of the summary columns (valid, test, ...)."
)
@click.option(
    "--no-group", is_flag=True, help="One row per run instead of one per config (mean ± std over seeds)."
)
@click.option(
    "--compare-by",
    default=None,
    metavar="KEY",
    help="Side by side per value of a config key, e.g. model.residual.",
)
@click.option(
    "--pivot",
    default=None,
    metavar="KEY1,KEY2",
    help="The two parameters of the effects pivot (and heatmap).",
)
@click.option(
    "--plot",
    "plots",
    multiple=True,
    metavar="[curves=|heatmap=]FILE",
    help="Write learning curves or the pivot heatmap, e.g. --plot curves.png --plot heatmap.png.",
)
@click.option("--no-cache", is_flag=True, help="Read every file again instead of the summary cache.")
@click.option(
    "--provenance",
    is_flag=True,
    help="Where the results came from: git commit and diff, command, versions, host, packages, SLURM jobs.",
)
@user_errors
def analyze_command(
    path,
    paths,
    fmt,
    sort_key,
    top,
    filters,
    metric,
    split,
    no_group,
    compare_by,
    pivot,
    plots,
    no_cache,
    provenance,
):
    """Summarize every run under a path: best epochs, gap, degradation, seeds, parameter effects.

    Give two paths (e.g. `analyze runs/reg/latest runs/mhc/latest`) to compare them side by side.
    """
    if provenance:
        show_provenance([p for p in [path, *paths] if p], fmt)
        return
    from sweeper.analysis import export
    from sweeper.analysis import plots as plotting
    from sweeper.analysis import render as analysis_render
    from sweeper.analysis.report import ReportOptions, build_report

    requests = [plotting.parse_plot(p) for p in plots]
    pivot_keys = None
    if pivot is not None:
        parts = [p.strip() for p in pivot.split(",")]
        if len(parts) != 2 or not all(parts):
            raise SweeperError(f"--pivot {pivot}: expected two parameters, e.g. --pivot weight_decay,dropout")
        pivot_keys = (parts[0], parts[1])
    if top is None and fmt == "table":
        top = analysis_render.TABLE_ROWS
    options = ReportOptions(
        split=split,
        metric=metric,
        sort=sort_key,
        top=top,
        filters=filters,
        group=not no_group,
        compare_by=compare_by,
        pivot=pivot_keys,
        use_cache=not no_cache,
    )
    report = build_report([p for p in [path, *paths] if p], options)
    for problem in report.analysis.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False, soft_wrap=True)
    if fmt == "json":
        click.echo(export.to_json(report))
    elif fmt == "csv":
        click.echo(export.to_csv(report), nl=False)
    elif fmt == "markdown":
        click.echo(analysis_render.report_markdown(report))
    else:
        for renderable in analysis_render.report_renderables(report):
            console.print(renderable, highlight=False, soft_wrap=isinstance(renderable, render.Text))
    for request in requests:
        if request.kind == "curves":
            line = plotting.plot_curves(report.rows, request.path, report.split, report.objective)
        else:
            first = report.effects.pivots[0] if report.effects.pivots else None
            line = plotting.plot_heatmap(first, request.path, report.objective)
        err_console.print(line, highlight=False, soft_wrap=True)


def show_provenance(paths: list[str], fmt: str) -> None:
    import json

    from sweeper.analysis import provenance

    sweeps = provenance.collect(paths)
    if not sweeps:
        raise SweeperError(f"no sweep dirs under {', '.join(paths)} (provenance is recorded per sweep)")
    if fmt == "json":
        click.echo(json.dumps([s.to_json() for s in sweeps], indent=2, default=str))
        return
    for sweep in sweeps:
        rows = [(k, "-" if v is None else str(v)) for k, v in sweep.facts.items()]
        rows += [
            ("git.diff", f"{sweep.diff_lines} lines in {sweep.sweep_dir}/git.diff"),
            ("packages", f"{len(sweep.packages)} (pip freeze in provenance.json)"),
        ]
        if fmt == "markdown":
            click.echo(f"### {sweep.name}: {sweep.sweep_dir}\n")
            click.echo(render.markdown_rows(["", ""], rows))
        else:
            table = render.Table(title=f"{sweep.name}: {sweep.sweep_dir}", show_header=False)
            table.add_column(style="bold")
            table.add_column(overflow="fold")
            for key, value in rows:
                table.add_row(key, value)
            console.print(table)
        jobs = [run for run in sweep.runs if len(run) > 3]  # runs that know their SLURM job
        if jobs:
            columns = list(dict.fromkeys(k for run in jobs for k in run))
            cells = [[str(run.get(c, "-")) for c in columns] for run in jobs]
            if fmt == "markdown":
                click.echo("\n" + render.markdown_rows(columns, cells) + "\n")
            else:
                console.print(render.aligned_table(columns, cells, title="SLURM jobs of the runs"))


main.add_command(analyze_command)


# -- cancel / retry / resume ---------------------------------------------------------------------------------
@main.command("cancel")
@click.argument("sweep")
@click.argument("trials", nargs=-1)
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
@click.argument("sweep")
@click.option(
    "--state",
    "states",
    default="FAILED,TIMEOUT,CANCELLED,OUT_OF_MEMORY,NODE_FAIL,PREEMPTED",
    show_default=True,
    help="Comma-separated states to resubmit.",
)
@click.option(
    "--fresh", is_flag=True, help="Start from scratch in a new run dir instead of resuming from last.pt."
)
@click.option("--executor", type=click.Choice(["local", "slurm", "debug"]), default=None)
@click.option("--wait/--no-wait", default=None)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def retry_command(sweep, states, fresh, executor, wait, root):
    """Resubmit the trials in the given states (same trial ids, a new attempt)."""
    from sweeper import control

    ledger = Ledger(resolve_sweep(sweep, root))
    plan, trials = control.plan_rerun(
        ledger, {s.strip().upper() for s in states.split(",") if s.strip()}, executor
    )
    rerun(ledger, plan, trials, wait, fresh)


@main.command("resume")
@click.argument("sweep")
@click.option("--executor", type=click.Choice(["local", "slurm", "debug"]), default=None)
@click.option("--wait/--no-wait", default=None)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def resume_command(sweep, executor, wait, root):
    """Submit the trials of a sweep that never ran (never submitted, or cancelled before they started)."""
    from sweeper import control

    ledger = Ledger(resolve_sweep(sweep, root))
    plan, trials = control.plan_resume(ledger, executor)
    rerun(ledger, plan, trials, wait, fresh=False)


def rerun(ledger, plan, trials, wait, fresh) -> None:
    if not trials:
        console.print("nothing to submit")
        return
    console.print(
        f"{ledger.name}: resubmitting {len(trials)} trial(s) on {plan.executor}: "
        + ", ".join(t.trial_id for t in trials),
        highlight=False,
    )
    waiting = plan.executor != "slurm" if wait is None else wait
    statuses = run_with_progress(plan, ledger, trials, waiting, fresh=fresh)
    finish(ledger, statuses, trials)


@main.command("dashboard")
@click.argument("sweep")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--root", default="runs", show_default=True, type=click.Path(file_okay=False))
@user_errors
def dashboard_command(sweep, host, port, root):
    """Serve optuna-dashboard on an Optuna sweep's study (learning curves, parameter importances)."""
    from sweeper import tune
    from sweeper.control import load_launched_spec

    ledger = Ledger(resolve_sweep(sweep, root))
    if ledger.meta.get("search") != "optuna":
        raise SweeperError(f"{ledger.dir} is a grid/configs sweep: it has no Optuna study (use analyze)")
    spec = load_launched_spec(ledger)
    import optuna_dashboard

    console.print(
        f"optuna-dashboard for study {ledger.meta['study_name']} at http://{host}:{port}/  (Ctrl-C stops it)",
        highlight=False,
    )
    optuna_dashboard.run_server(tune.storage_of(ledger.dir, spec.search), host=host, port=port)


def analyze_main() -> None:
    analyze_command()


if __name__ == "__main__":
    main()
