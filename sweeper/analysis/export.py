"""Machine-readable exports of a report: CSV (the rows shown), JSON (everything, strict: NaN/inf -> null),
long parquet (every epoch of every run, with the run's identity and params); and the provenance of sweeps
as CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sweeper.analysis.aggregate import Comparison, Effects, Group, Stat, summary_stat
from sweeper.analysis.fields import FIELDS
from sweeper.analysis.provenance import SweepProvenance
from sweeper.analysis.query import RUN_ATTRIBUTES, export_name
from sweeper.analysis.report import Report
from sweeper.analysis.runs import RunSummary
from sweeper.run_files import METRICS_FILE
from sweeper.runs_index import PARAM_PREFIX, column, identity


def run_record(run: RunSummary, split: str) -> dict[str, Any]:
    record: dict[str, Any] = {name: getattr(run, name) for name in RUN_ATTRIBUTES}
    record["params"] = dict(run.params)
    record["continued_at"] = list(run.continued_at)
    record.update({export_name(name, split): getattr(run, name) for name in FIELDS})
    record["summary"] = dict(run.summary)
    return record


def group_record(group: Group, split: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": group.name,
        "sweep": group.sweep,
        "params": dict(group.params),
        "n": len(group.used),  # runs whose numbers are in the means
        "left_out": [r.run_dir for r in group.left_out],
        "seeds": group.seeds,
        "states": dict(group.states),
        "marks": dict(Counter(r.mark for r in group.runs if r.mark)),
        "run_dirs": [r.run_dir for r in group.runs],
    }
    for name in FIELDS:
        stat = group.stat(name)
        record[f"{export_name(name, split)}_mean"] = stat.mean
        record[f"{export_name(name, split)}_std"] = stat.std
    names = dict.fromkeys(name for run in group.runs for name in run.summary)
    record["summary"] = {name: _stat(summary_stat(group, name)) for name in names}
    return record


def _stat(stat: Stat) -> dict[str, Any]:
    return {"mean": stat.mean, "std": stat.std, "n": stat.n}


def effects_record(effects: Effects) -> dict[str, Any]:
    return {
        "runs_used": effects.runs_used,
        "runs_left_out": effects.runs_left_out,
        "params": [
            {
                "key": p.key,
                "best": p.best.value,
                "levels": [{"value": level.value, **_stat(level.stat)} for level in p.levels],
            }
            for p in effects.params
        ],
        "pivots": [
            {
                "rows": pivot.row_key,
                "columns": pivot.col_key,
                "row_values": pivot.row_values,
                "column_values": pivot.col_values,
                "mean": [
                    [_cell(pivot.cells, i, j).mean for j in range(len(pivot.col_values))]
                    for i in range(len(pivot.row_values))
                ],
                "n": [
                    [_cell(pivot.cells, i, j).n for j in range(len(pivot.col_values))]
                    for i in range(len(pivot.row_values))
                ],
            }
            for pivot in effects.pivots
        ],
    }


def _cell(cells: dict[tuple[int, int], Stat], i: int, j: int) -> Stat:
    return cells.get((i, j), Stat(None, None, 0))


def comparison_record(comparison: Comparison, split: str) -> dict[str, Any]:
    return {
        "by": comparison.by,
        "sides": comparison.labels,
        "rows": [
            {
                "label": row.label,
                "sides": [
                    {export_name(name, split): _stat(cells[name]) for name in comparison.fields}
                    for cells in row.cells
                ],
            }
            for row in comparison.rows
        ],
    }


def strict(value: Any) -> Any:
    """The value with every NaN / inf float replaced by None (strict JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def to_json(report: Report) -> str:
    split = report.split
    document = {
        "paths": report.analysis.paths,
        "objective": {
            "metric": report.objective.metric,
            "direction": report.objective.direction,
            "split": split,
        },
        "grouped": report.grouped,
        "rows_total": report.total_rows,
        "rows": [
            group_record(g, split) if report.grouped else run_record(g.first, split) for g in report.rows
        ],
        "runs": [run_record(r, split) for r in report.runs],
        "effects": effects_record(report.effects),
        "comparison": comparison_record(report.comparison, split) if report.comparison else None,
        "best": group_record(report.best, split) if report.best else None,
        "correlation": report.correlation.to_json() if report.correlation else None,
        "problems": report.analysis.problems,
        "notes": report.notes,
    }
    return json.dumps(strict(document), indent=2, allow_nan=False, default=str)


def to_long_parquet(report: Report) -> bytes:
    """One row per run x epoch of the report's runs (after --filter): the run's identity (run_dir, trial_id,
    name, seed, state, params.<key>) then its metrics.parquet columns; runs that log different metrics
    share one schema (a metric a run never logged is null there)."""
    tables, identities = [], []
    for run in report.runs:
        try:
            table = pq.read_table(os.path.join(run.run_dir, METRICS_FILE))
        except (OSError, pa.ArrowInvalid):  # no epoch yet, or unreadable (analyze warned already)
            continue
        tables.append(table.replace_schema_metadata(None))
        record = {"sweep": run.sweep, "trial_id": run.trial_id, "name": run.name, "seed": run.seed}
        who = identity(run.run_dir, {**record, "optuna_trial": run.optuna_trial, "params": run.params})
        identities.append(({**who, "state": str(run.state)}, table.num_rows))
    metrics = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    names = list(dict.fromkeys(k for who, _ in identities for k in who))
    names = [n for n in names if not n.startswith(PARAM_PREFIX)] + sorted(
        n for n in names if n.startswith(PARAM_PREFIX)
    )
    columns = {
        name: column([who.get(name) for who, rows in identities for _ in range(rows)]) for name in names
    }
    for name in ("seed", "optuna_trial"):  # null for every run (no Optuna trial) keeps its type
        if name in columns:
            columns[name] = columns[name].cast(pa.int64())
    columns.update({name: metrics.column(name) for name in metrics.column_names})
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def to_csv(report: Report) -> str:
    """One line per row shown (seed groups with _mean/_std columns, or runs); params as their own columns."""
    split = report.split
    params: dict[str, None] = {}
    records = []
    for group in report.rows:
        record = group_record(group, split) if report.grouped else run_record(group.first, split)
        summary = record.pop("summary", {})
        for name, value in summary.items():  # a run's number, or a group's mean and std
            if isinstance(value, dict):
                record[f"{name}_mean"], record[f"{name}_std"] = value["mean"], value["std"]
            else:
                record[name] = value
        for key in ("params", "states", "marks", "seeds", "run_dirs"):
            value = record.pop(key, None)
            if key == "params":
                params.update(dict.fromkeys(value))
                record.update({k: _csv_value(v) for k, v in value.items()})
            elif value is not None:
                record[key] = json.dumps(value, sort_keys=True)
        records.append(record)
    return _write_csv(records)


def provenance_csv(sweeps: list[SweepProvenance]) -> str:
    """`analyze --provenance --format csv`: one line per sweep, its facts as columns (the packages and the
    runs' SLURM jobs as counts: JSON has them whole)."""
    records = []
    for sweep in sweeps:
        record = sweep.to_json()
        record["packages"] = len(sweep.packages)
        record["runs"] = len(sweep.runs)
        records.append({k: _csv_value(v) for k, v in record.items()})
    return _write_csv(records)


def _write_csv(records: list[dict[str, Any]]) -> str:
    if not records:
        return ""
    header = list(records[0])
    for record in records[1:]:
        header += [k for k in record if k not in header]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in strict(record).items()})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value
