"""`analyze --format html`: one self-contained page of a report, to open on a laptop after `scp`: no server,
no network (styles, script and figures inlined; figures are PNG data URIs). It holds the runs table (one
row per run, sortable by clicking a header), the seed groups, the learning curves (best epochs marked),
the heatmap, the effects, the validity marks, the notes and the provenance of each sweep."""

from __future__ import annotations

import base64
import html
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sweeper import extras
from sweeper.analysis import plots, provenance
from sweeper.analysis.aggregate import Group, Stat, summary_stat
from sweeper.analysis.render import (
    best_line,
    effect_lines,
    effects_header,
    metric_label,
    objective_format,
    pivot_cells,
    report_columns,
    report_title,
    value_text,
)
from sweeper.analysis.report import Report
from sweeper.analysis.runs import RunSummary
from sweeper.display import format_value, short_names

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; cursor: pointer; user-select: none; }
th[data-order=asc]::after { content: " \\25B2"; } th[data-order=desc]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; } tr.invalid td { color: #999; text-decoration: line-through; }
tr.partial td { background: #fff6e0; } .best { font-weight: bold; color: #176e1d; }
img { max-width: 100%; } .scroll { overflow-x: auto; } .dim { color: #777; }
"""

SCRIPT = """
function cellKey(row, index) {
  const cell = row.cells[index];
  if (cell.dataset.value === undefined) return cell.textContent.trim();
  return cell.dataset.value === "" ? null : parseFloat(cell.dataset.value);
}
function sortTable(table, index, header) {
  const descending = header.dataset.order !== "desc";
  table.querySelectorAll("th").forEach(th => delete th.dataset.order);
  header.dataset.order = descending ? "desc" : "asc";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellKey(a, index), y = cellKey(b, index);
    if (x === null || x === "") return 1;
    if (y === null || y === "") return -1;
    const order = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("th").forEach((header, index) => {
    header.addEventListener("click", () => sortTable(table, index, header));
  });
});
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _number_attr(value: Any) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return f' data-value="{value!r}"'
    return ' data-value=""'


def _table(
    table_id: str, header: Sequence[tuple[str, str, bool]], rows: Sequence[tuple[str, list[str]]]
) -> str:
    """A sortable table; header: (title, key, numeric); rows: (css class, cells already as <td> html)."""
    heads = "".join(
        f'<th data-key="{esc(key)}"{"" if numeric else " class=text"}>{esc(title)}</th>'
        for title, key, numeric in header
    )
    body = "".join(f'<tr class="{esc(css)}">{"".join(cells)}</tr>' for css, cells in rows)
    return (
        f'<div class="scroll"><table id="{table_id}" class="sortable"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _td(text: str, value: Any = None, numeric: bool = True) -> str:
    if not numeric:
        return f'<td class="text">{esc(text)}</td>'
    return f"<td{_number_attr(value)}>{esc(text)}</td>"


def runs_table(report: Report) -> str:
    """One row per run: who, its parameters, state, mark, the objective and the main numbers."""
    split, metric = report.split, report.objective.metric
    swept = report.analysis.swept_keys
    names = short_names(list(swept))
    summary_names = report.analysis.summary_names
    fmt = objective_format(metric)
    columns: list[tuple[str, str, bool, Callable[[RunSummary], str]]] = [
        ("run dir", "run_dir", False, lambda r: _td(os.path.basename(r.run_dir), numeric=False)),
        ("config", "name", False, lambda r: _td(r.name, numeric=False)),
        *[
            (names[k], k, False, lambda r, k=k: _td(format_value(r.params.get(k, "-")), numeric=False))
            for k in swept
        ],
        ("seed", "seed", True, lambda r: _td("-" if r.seed is None else str(r.seed), r.seed)),
        ("state", "state", False, lambda r: _td(r.state, numeric=False)),
        ("mark", "mark", False, lambda r: _td(_mark(r), numeric=False)),
        (f"best {metric_label(metric)}", "objective", True, lambda r: _stat_td(r.objective, fmt)),
        ("epoch", "objective_epoch", True, lambda r: _td(str(r.objective_epoch or "-"), r.objective_epoch)),
        (f"best {split} loss", "best_loss", True, lambda r: _stat_td(r.best_loss, "num")),
        ("gap @best", "gap_at_best", True, lambda r: _stat_td(r.gap_at_best, "pts")),
        *[
            (k, k, True, lambda r, k=k: _stat_td(r.summary.get(k), objective_format(k)))
            for k in summary_names
        ],
        (
            "epochs",
            "epochs_run",
            True,
            lambda r: _td(f"{r.epochs_run}/{r.epochs_planned or '-'}", r.epochs_run),
        ),
    ]
    shown = [r for g in report.rows for r in g.runs] + report.invalid  # invalid ones struck through
    rows = [(r.mark or "", [cell(r) for _, _, _, cell in columns]) for r in shown]
    return _table("runs", [(title, key, numeric) for title, key, numeric, _ in columns], rows)


def _mark(run: RunSummary) -> str:
    if not run.mark:
        return ""
    return f"{run.mark}: {run.mark_reason}" if run.mark_reason else run.mark


def _stat_td(value: float | None, fmt: str) -> str:
    stat = Stat(value, None, 1) if value is not None else Stat(None, None, 0)
    return _td(value_text(stat, fmt), value)


def groups_table(report: Report) -> str:
    """analyze's own table (seed groups, mean ± std), every column."""
    columns = report_columns(report)
    header = [(c.header, c.name, c.numeric) for c in columns]
    rows = [
        ("", [_td(c.cell(g), _group_value(g, c.name, report.split), c.numeric) for c in columns])
        for g in report.rows
    ]
    return _table("groups", header, rows)


def _group_value(group: Group, name: str, split: str) -> float | None:
    """The number behind a cell of the groups table (what its column sorts by), None for text."""
    from sweeper.analysis.query import summary_field

    field = "objective" if name == "objective" else summary_field(name, split)
    if field is not None:
        return group.stat(field).mean
    if any(name in r.summary for r in group.runs):
        return summary_stat(group, name).mean
    return float(len(group.used)) if name == "n" else None


def _png(draw: Callable[[str], str]) -> str:
    """A figure drawn by `draw(path)` as an inline data URI."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "figure.png"
        draw(str(path))
        data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def figures(report: Report) -> list[str]:
    parts = ["<h2>Learning curves</h2>"]
    if not extras.installed("matplotlib"):  # the rest of the page needs no extra
        return [*parts, '<p class="dim">figures need sweeper[plots] (matplotlib is not installed)</p>']
    parts.append(_png(lambda p: plots.plot_curves(report.rows, p, report.split, report.objective)))
    if report.effects.pivots:
        pivot = report.effects.pivots[0]
        parts += ["<h2>Heatmap</h2>", _png(lambda p: plots.plot_heatmap(pivot, p, report.objective))]
    return parts


def effects_html(report: Report) -> list[str]:
    effects = report.effects
    if not effects.params:
        return []
    parts = ["<h2>Effects</h2>", f"<p>{esc(effects_header(effects))}</p>"]
    parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in effect_lines(effects)) + "</ul>")
    fmt = objective_format(report.objective.metric)
    for number, pivot in enumerate(effects.pivots):
        header, rows = pivot_cells(pivot, fmt)
        cells = [
            (
                "",
                [_td(row[0], numeric=False)]
                + [_td(c, _cell_mean(pivot, i, j)) for j, c in enumerate(row[1:])],
            )
            for i, row in enumerate(rows)
        ]
        parts.append(_table(f"pivot{number}", [(h, h, i > 0) for i, h in enumerate(header)], cells))
    return parts


def _cell_mean(pivot, i: int, j: int) -> float | None:
    stat = pivot.cells.get((i, j))
    return None if stat is None else stat.mean


def provenance_html(report: Report) -> list[str]:
    sweep_dirs = list(dict.fromkeys(r.sweep_dir for r in report.analysis.runs))
    parts = ["<h2>Provenance</h2>"]
    for sweep_dir in sweep_dirs:
        if not os.path.exists(os.path.join(sweep_dir, "sweep.json")):
            continue
        sweep = provenance.describe(Path(sweep_dir))
        rows = "".join(
            f'<tr><th class="text">{esc(k)}</th><td class="text">{esc("-" if v is None else v)}</td></tr>'
            for k, v in sweep.facts.items()
        )
        rows += f'<tr><th class="text">git.diff</th><td class="text">{sweep.diff_lines} lines</td></tr>'
        parts.append(f"<h3>{esc(sweep.name)}: {esc(sweep_dir)}</h3><table>{rows}</table>")
    return parts if len(parts) > 1 else []


def marks_html(report: Report) -> list[str]:
    marked = [r for r in report.analysis.runs if r.mark and r.mark != "valid"]
    if not marked:
        return []
    items = "".join(
        f"<li>{esc(r.trial_id)} ({esc(os.path.basename(r.run_dir))}): {esc(_mark(r))}</li>" for r in marked
    )
    return ["<h2>Validity marks</h2>", f"<ul>{items}</ul>"]


def report_html(report: Report) -> str:
    title = report_title(report)
    body = [f"<h1>{esc(title)}</h1>"]
    best = best_line(report)
    if best:
        body.append(f'<p class="best">{esc(best)}</p>')
    if report.correlation is not None:
        from sweeper.analysis.correlate import correlation_line

        body.append(f"<p><b>{esc(correlation_line(report.correlation))}</b></p>")
    body += [f'<p class="dim">{esc(note)}</p>' for note in report.notes]
    body += ["<h2>Runs</h2>", runs_table(report)]
    if report.grouped:
        body += ["<h2>Configs (mean ± std over seeds)</h2>", groups_table(report)]
    body += figures(report) + effects_html(report) + marks_html(report) + provenance_html(report)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n"
    )
