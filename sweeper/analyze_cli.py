"""The `analyze` command (also `sweeper analyze`): parse, build the report, render. In a module of its own so
that `analyze` imports neither the launcher nor the backends: a cached analysis is mostly start-up."""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sweeper import __version__, tables
from sweeper.display import markdown_table
from sweeper.errors import SweeperError
from sweeper.ledger import resolve_path
from sweeper.terminal import complete_paths, console, err_console, print_table, table_options, user_errors


@click.command("analyze", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="analyze")
@click.argument("paths", nargs=-1, metavar="[PATH | SWEEP]...", shell_complete=complete_paths)
@click.option(
    "--checkpoints-path",
    "-p",
    "path",
    shell_complete=complete_paths,
    help="A run dir, a sweep dir, a tree of sweeps, or a sweep's name under --root (or give them as "
    "arguments; two are compared).",
)
@click.option(
    "--root",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where sweep names are looked up.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json", "html", "parquet"]),
    default="table",
    show_default=True,
    help="html: one self-contained page (no network), e.g. analyze SWEEP --format html > report.html; "
    "parquet: every epoch of every run (long format, with trial id and params) to stdout: redirect it.",
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
    "--direction",
    type=click.Choice(["maximize", "minimize"]),
    default=None,
    help="Which way the metric is better [default: the sweep's, else by its name: losses, errors go down].",
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
    metavar="[curves=|heatmap=|scatter=]FILE",
    help="Write learning curves, the pivot heatmap or the --correlate scatter, e.g. --plot curves.png "
    "--plot heatmap.png --plot scatter.png.",
)
@click.option(
    "--correlate",
    default=None,
    metavar="A,B",
    help="Spearman and Pearson (n, p) of two numeric keys over the rows, e.g. h0,retention@100; "
    "--plot scatter.png draws it.",
)
@click.option("--no-cache", is_flag=True, help="Read every file again instead of the summary cache.")
@click.option(
    "--include-invalid",
    is_flag=True,
    help="Count runs marked invalid (sweeper mark) in best config, effects and means (default: left out).",
)
@click.option(
    "--provenance",
    is_flag=True,
    help="Where the results came from: git commit and diff, command, versions, host, packages, SLURM jobs.",
)
@table_options
@user_errors
def analyze_command(
    path,
    paths,
    root,
    wide,
    columns,
    fmt,
    sort_key,
    top,
    filters,
    metric,
    direction,
    split,
    no_group,
    compare_by,
    pivot,
    plots,
    correlate,
    no_cache,
    include_invalid,
    provenance,
):
    """Summarize every run under a path: best epochs, gap, degradation, seeds, parameter effects.

    Give two paths (e.g. `analyze runs/reg/latest runs/mhc/latest`) to compare them side by side.
    """
    where = [str(resolve_path(p, root)) for p in [path, *paths] if p]
    if provenance:
        show_provenance(where, fmt)
        return
    if (wide or columns) and fmt in ("csv", "json", "html", "parquet"):
        raise SweeperError(f"--wide/--columns: only for table and markdown (--format {fmt} has every field)")
    from sweeper.analysis import render as analysis_render
    from sweeper.analysis.report import ReportOptions, build_report

    if fmt == "parquet" and sys.stdout.isatty():
        raise SweeperError("--format parquet writes binary: redirect it, e.g. > epochs.parquet")
    if plots:  # (imported only here: it brings pyarrow, which a cached table never needs)
        from sweeper.analysis import plots as plotting

        requests = [plotting.parse_plot(p) for p in plots]
    else:
        requests = []
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
        direction=direction,
        sort=sort_key,
        top=top,
        filters=filters,
        group=not no_group,
        compare_by=compare_by,
        pivot=pivot_keys,
        use_cache=not no_cache,
        include_invalid=include_invalid,
        correlate=correlation_keys(correlate) if correlate else None,
    )
    report = build_report(where, options)
    for problem in report.analysis.problems:
        err_console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    show_report(report, fmt, wide, columns)
    for request in requests:
        if request.kind == "curves":
            line = plotting.plot_curves(report.rows, request.path, report.split, report.objective)
        elif request.kind == "scatter":
            line = plotting.plot_scatter(report.correlation, request.path)
        else:
            first = report.effects.pivots[0] if report.effects.pivots else None
            line = plotting.plot_heatmap(first, request.path, report.objective)
        err_console.print(line, highlight=False, soft_wrap=True)


def show_report(report, fmt: str, wide: bool, columns: str | None) -> None:
    from sweeper.analysis import render as analysis_render

    if fmt in ("json", "parquet", "csv"):
        from sweeper.analysis import export
    if fmt == "json":
        click.echo(export.to_json(report))
    elif fmt == "parquet":
        click.get_binary_stream("stdout").write(export.to_long_parquet(report))
    elif fmt == "csv":
        click.echo(export.to_csv(report), nl=False)
    elif fmt == "html":
        from sweeper.analysis.html import report_html

        click.echo(report_html(report), nl=False)
    elif fmt == "markdown":
        click.echo(analysis_render.report_markdown(report, tables.parse_columns(columns)))
    else:
        for renderable in analysis_render.report_renderables(
            report, tables.room(console.width, wide, columns)
        ):
            console.print(renderable, highlight=False, soft_wrap=isinstance(renderable, Text), crop=False)


def correlation_keys(text: str) -> tuple[str, str]:
    from sweeper.analysis.correlate import parse_pair

    return parse_pair(text)


def show_provenance(paths: list[str], fmt: str) -> None:
    from sweeper.analysis import provenance

    sweeps = provenance.collect(paths)
    if not sweeps:
        raise SweeperError(f"no sweep dirs under {', '.join(paths)} (provenance is recorded per sweep)")
    if fmt == "json":
        click.echo(json.dumps([s.to_json() for s in sweeps], indent=2, default=str))
        return
    if fmt == "csv":
        from sweeper.analysis.export import provenance_csv

        click.echo(provenance_csv(sweeps), nl=False)
        return
    for sweep in sweeps:
        rows = [(k, "-" if v is None else str(v)) for k, v in sweep.facts.items()]
        rows += [
            ("git.diff", f"{sweep.diff_lines} lines in {sweep.sweep_dir}/git.diff"),
            ("packages", f"{len(sweep.packages)} (pip freeze in provenance.json)"),
        ]
        if fmt == "markdown":
            click.echo(f"### {sweep.name}: {sweep.sweep_dir}\n")
            click.echo(markdown_table(["", ""], rows))
        else:
            table = Table(title=f"{sweep.name}: {sweep.sweep_dir}", show_header=False)
            table.add_column(style="bold")
            table.add_column(overflow="fold")
            for key, value in rows:
                table.add_row(key, value)
            console.print(table)
        if len(sweep.revisions) > 1:  # grown or continued: each change of the sweep, in order
            columns, cells = sweep.revision_rows()
            if fmt == "markdown":
                click.echo("\n" + markdown_table(columns, cells) + "\n")
            else:
                print_table(tables.aligned_table(columns, cells, title="revisions of the sweep"))
        jobs = [run for run in sweep.runs if len(run) > 3]  # runs that know their SLURM job
        if jobs:
            columns = list(dict.fromkeys(k for run in jobs for k in run))
            cells = [[str(run.get(c, "-")) for c in columns] for run in jobs]
            if fmt == "markdown":
                click.echo("\n" + markdown_table(columns, cells) + "\n")
            else:
                print_table(tables.aligned_table(columns, cells, title="SLURM jobs of the runs"))


def main() -> None:
    """The `analyze` console script (and the checkout's analyze.py); `sweeper analyze` is the same command."""
    analyze_command(prog_name="analyze")
