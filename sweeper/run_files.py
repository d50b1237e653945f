"""The names in a run dir: the files a job writes there and the dir's own name. Readers (status, analysis,
the run index, the dashboard) import them from here, without the run API or the metrics writer and what
those import (docs/metrics.md lists the files)."""

from __future__ import annotations

import re

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.parquet"
SUMMARY_FILE = "summary.json"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
RUN_DIR_NAME = re.compile(
    r"\d{8}_\d{6}_j"
)  # `<YYYYMMDD_HHMMSS>_j<job id>`, as job.py and worker.py name them
