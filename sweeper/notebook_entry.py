"""The markdown of one lab-notebook entry (see notebook.py for where it goes): its markers, the facts
table, the human sections, the difference from another sweep, and the results as analyze renders them."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sweeper import notebook_facts as facts
from sweeper.display import markdown_table
from sweeper.errors import SweeperError
from sweeper.ledger import Ledger

TODO = "_(to fill in)_"


def entry_begin(entry_id: str) -> str:
    return f"<!-- sweeper:entry {entry_id} -->"


def entry_end(entry_id: str) -> str:
    return f"<!-- sweeper:entry-end {entry_id} -->"


def section_begin(name: str) -> str:
    return f"<!-- sweeper:begin {name} -->"


def section_end(name: str) -> str:
    return f"<!-- sweeper:end {name} -->"


def relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def facts_table(rows: list[tuple[str, str]]) -> str:
    return markdown_table(["", ""], [[f"**{k}**", v] for k, v in rows])


def _report(
    sweep_dir: Path,
    compare_by: str | None,
    filters: tuple[str, ...] = (),
    group: bool = True,
    every: bool = False,
):
    from sweeper.analysis.report import ReportOptions, build_report

    options = ReportOptions(compare_by=compare_by, filters=filters, group=group, include_invalid=every)
    return build_report([str(sweep_dir)], options)


def write_plots(sweep_dir: Path, compare_by: str | None) -> list[Path]:
    """curves.png, and heatmap.png where two parameters were swept, in the sweep dir (none without
    sweeper[plots]: the entry is complete without them)."""
    from sweeper import extras
    from sweeper.analysis import plots

    if not extras.installed("matplotlib"):
        return []
    report = _report(sweep_dir, compare_by)
    written = [sweep_dir / "curves.png"]
    plots.plot_curves(report.rows, str(written[0]), report.split, report.objective)
    if report.effects.pivots:
        written.append(sweep_dir / "heatmap.png")
        plots.plot_heatmap(report.effects.pivots[0], str(written[1]), report.objective)
    return written


def write_html(sweep_dir: Path, compare_by: str | None) -> Path:
    from sweeper.analysis.html import report_html

    path = sweep_dir / "report.html"
    path.write_text(report_html(_report(sweep_dir, compare_by)))
    return path


def section(name: str, text: str | None) -> str:

    body = f"\n{text}\n" if text is not None else f"\n{TODO}\n"
    return f"{section_begin(name)}{body}{section_end(name)}"


def _human(name: str, kept: dict[str, str], given: str | None, default: str | None) -> str:

    if given is not None:
        return section(name, given)
    if name in kept:  # byte for byte
        return f"{section_begin(name)}{kept[name]}{section_end(name)}"
    return section(name, default or None)


@dataclass
class EntryContent:
    """What an entry says, computed once; `render` places it in a file (links relative to that file)."""

    ledger: Ledger
    entry_id: str
    summary: str | None
    facts: list[tuple[str, str]]
    human: dict[str, str]  # section -> its whole marked block
    other: Path | None
    difference: list[str] | str
    results: str
    plots: list[Path] = field(default_factory=list)
    html: Path | None = None

    def render(self, where: Path) -> str:

        parts = [entry_begin(self.entry_id), f"## {self.ledger.name} {self.ledger.dir.name}"]
        if self.summary:
            parts.append(self.summary)
        parts.append(facts_table([("path", relative(self.ledger.dir, where)), *self.facts]))
        parts += ["### Hypothesis", self.human["hypothesis"]]
        parts += ["### Difference from the previous experiment", self._difference(where)]
        parts += ["### Results", self.results]
        links = [f"![{p.stem}]({relative(p, where)})" for p in self.plots]
        if self.html is not None:
            links.append(f"[HTML report]({relative(self.html, where)})")
        if links:
            parts.append(" ".join(links))
        for title in ("Observations", "Conclusion", "Next steps"):
            parts += [f"### {title}", self.human[title.lower()]]
        parts.append(entry_end(self.entry_id))
        return "\n\n".join(parts)

    def _difference(self, where: Path) -> str:

        if isinstance(self.difference, str):
            return self.difference
        label = f"{self.other.parent.name} {self.other.name} (`{relative(self.other, where)}`)"
        return "\n".join(facts.difference_lines(self.difference, label))


def build_entry(
    ledger: Ledger, other: Path | None, entry_id: str, kept: dict[str, str], options
) -> EntryContent:
    """Everything but the plots and the HTML report (the caller writes those once the entry stands)."""
    spec = ledger.launched_spec()
    prov = facts.provenance_of(ledger.dir)
    rows = [
        ("date", facts.date_text(ledger.meta.get("created_at"))),
        *facts.setup_facts(spec),
        ("trials", trials_text(ledger)),
        ("run status", facts.run_status(ledger)),
        ("git", facts.git_text(prov)),
        *facts.cost_facts(ledger, spec),
    ]
    human = {
        "hypothesis": _human("hypothesis", kept, options.hypothesis, spec.notes.hypothesis),
        "observations": _human("observations", kept, None, None),
        "conclusion": _human("conclusion", kept, options.conclusion, None),
        "next steps": _human("next steps", kept, None, None),
    }
    return EntryContent(
        ledger,
        entry_id,
        spec.notes.summary or ledger.meta.get("description") or None,
        rows,
        human,
        other,
        difference_of(spec, prov, other),
        results_markdown(ledger.dir, options.compare_by),
    )


def trials_text(ledger: Ledger) -> str:
    from sweeper import status

    result = status.refresh([ledger])
    counts = Counter(s.state for s in result.statuses[ledger.dir])
    states = ", ".join(f"{state} {n}" for state, n in counts.most_common())
    return f"{sum(counts.values())}: {states}"


def difference_of(spec, prov, other: Path | None) -> list[str] | str:
    """The lines of the difference (without their label), or why there are none."""
    if other is None:
        return "No previous sweep of this name (`--vs SWEEP` compares with another)."
    try:
        other_spec = Ledger(other).launched_spec()
    except (SweeperError, OSError) as exc:
        return f"{other}: cannot be read ({exc})"
    return facts.difference(spec, other_spec, prov, facts.provenance_of(other), other)


def results_markdown(sweep_dir: Path, compare_by: str | None) -> str:
    """analyze's markdown; per side of --compare-by its own table; the final metrics; one row per run."""
    from sweeper.analysis import render

    report = _report(sweep_dir, compare_by)
    parts = [render.report_markdown(report)]
    if report.comparison is not None and compare_by:
        for label in report.comparison.labels:
            value = label.partition("=")[2]
            side = _report(sweep_dir, None, (f"{compare_by}=={value}",))
            parts += [f"#### {label}", render.runs_markdown(side)]
    final = final_metrics(report)
    if final:
        parts += ["#### Final metrics (summary.json)", final]
    parts += ["#### Runs", runs_table(_report(sweep_dir, None, group=False, every=True))]
    return "\n\n".join(parts)


def final_metrics(report) -> str | None:
    from sweeper.analysis.aggregate import summary_stat
    from sweeper.analysis.render import objective_format, value_text

    names = report.analysis.summary_names
    if not names:
        return None
    header = ["config", "n", *names]
    rows = [
        [g.name, str(g.n), *[value_text(summary_stat(g, k), objective_format(k)) for k in names]]
        for g in report.rows
    ]
    return markdown_table(header, rows)


def runs_table(report) -> str:
    """One row per run: what a reader needs to find it, its state, mark and objective."""
    from sweeper.analysis.aggregate import Stat
    from sweeper.analysis.render import metric_label, objective_format, value_text

    metric = report.objective.metric
    header = ["run dir", "config", "seed", "state", "mark", f"best {metric_label(metric)}"]
    rows = []
    for group in report.rows:
        run = group.first
        mark = f"{run.mark}: {run.mark_reason}" if run.mark and run.mark_reason else (run.mark or "")
        best = value_text(
            Stat(run.objective, None, 1) if run.objective is not None else Stat(None, None, 0),
            objective_format(metric),
        )
        rows.append([Path(run.run_dir).name, run.name, str(run.seed), run.state, mark, best])
    return markdown_table(header, rows)
