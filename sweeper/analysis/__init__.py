"""Analysis: the metrics.parquet files of a run, a sweep or a tree of sweeps -> summaries researchers read.

Reads only files (works on a copy of runs/ with no SLURM and no Optuna). The modules, in data-flow order:

- runs: find run dirs, read them in batches (columnar; forked reader processes past 2,000 runs), one RunSummary per run, via the cache
- summarize: the definition of every summary number, as numpy reductions over many runs at once
- cache: per-run summaries keyed by the files' stat, never stale
- query: --filter / --sort / --compare-by keys
- aggregate: seed groups (mean +- std), parameter effects and pivots, comparisons
- correlate: Spearman / Pearson of two keys over the rows (--correlate)
- report: one `analyze` invocation without the rendering; export: csv / json; plots: matplotlib PNGs;
  html: the self-contained offline page (--format html)
"""

from sweeper.analysis.aggregate import Effects, Group, Stat, effects, group_runs
from sweeper.analysis.fields import FIELDS, improving_window
from sweeper.analysis.report import Report, ReportOptions, build_report
from sweeper.analysis.runs import Analysis, RunSummary, analyze, find_run_dirs
from sweeper.objective import Objective

__all__ = [
    "FIELDS",
    "Analysis",
    "Effects",
    "Group",
    "Objective",
    "Report",
    "ReportOptions",
    "RunSummary",
    "Stat",
    "analyze",
    "build_report",
    "effects",
    "find_run_dirs",
    "group_runs",
    "improving_window",
]
