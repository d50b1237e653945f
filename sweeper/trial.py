"""A trial: one config and seed to run, as the planner (space.py) makes it and the ledger, the backends
and the job pass it on. Its own leaf module: what only reads trials (the job, `analyze`, `status`) does
not import the planner, the spec parser or YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trial:
    trial_id: str
    name: str  # the named config and/or grid point, without the seed
    params: dict[str, Any]  # the swept keys (dotted paths into the config) and their values
    seed: int
    config: dict[str, Any]  # the full training config this trial runs

    def to_json(self) -> dict:
        # Not dataclasses.asdict: it deep-copies every config, a tenth of a 1000-trial launch.
        return {
            "trial_id": self.trial_id,
            "name": self.name,
            "params": self.params,
            "seed": self.seed,
            "config": self.config,
        }

    @classmethod
    def from_json(cls, data: dict) -> Trial:
        return cls(**{k: data[k] for k in ("trial_id", "name", "params", "seed", "config")})
