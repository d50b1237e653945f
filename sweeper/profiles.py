"""Cluster profiles: one YAML file of `launch:` defaults per cluster (partition, account, time, resources),
named by a spec's `launch.profile`. The spec's own `launch:` keys win over the profile's.

    # slurm/profiles/mycluster.yaml
    launch:
      executor: slurm
      time_min: 240
      slurm: {partition: gpu, account: myproj, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 32}

A profile is looked up as a path (absolute, or relative to the spec's folder or the current one), else as
`<name>.yaml` in $SWEEPER_PROFILES (a `:`-separated list of folders), ./slurm/profiles,
~/.config/sweeper/profiles and the profiles shipped with sweeper (slurm/profiles in its repository,
installed as the package data `sweeper/cluster_profiles/`).
"""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from sweeper import yamlio
from sweeper.errors import SpecError
from sweeper.schema import SchemaError, from_dict
from sweeper.spec import LaunchSpec, SweepSpec


def _shipped_profiles() -> Path:
    installed = Path(__file__).resolve().parent / "cluster_profiles"  # in a wheel (package data)
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "slurm" / "profiles"


SHIPPED_PROFILES = _shipped_profiles()


def search_dirs(spec_dir: Path | None = None) -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("SWEEPER_PROFILES", "").split(os.pathsep) if p]
    if spec_dir is not None:
        dirs.append(spec_dir / "slurm" / "profiles")
    dirs += [Path("slurm/profiles"), Path.home() / ".config" / "sweeper" / "profiles", SHIPPED_PROFILES]
    return dirs


def find_profile(name: str, spec: SweepSpec) -> Path:
    spec_dir = Path(spec.path).resolve().parent if spec.path else None
    as_path = Path(name).expanduser()
    candidates = (
        [as_path] if as_path.is_absolute() else [*([spec_dir / as_path] if spec_dir else []), as_path]
    )
    if as_path.suffix not in (".yaml", ".yml"):
        candidates += [d / f"{name}.yaml" for d in search_dirs(spec_dir)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    known = sorted({p.stem for d in search_dirs(spec_dir) if d.is_dir() for p in d.glob("*.yaml")})
    raise SpecError(
        f"no cluster profile {name!r} (known: {', '.join(known) or 'none'}; "
        "a profile is slurm/profiles/<name>.yaml or a path)",
        file=spec.line_of("launch.profile")[0] or spec.path,
        key="launch.profile",
        line=spec.line_of("launch.profile")[1],
    )


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_profile(path: Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    data, lines = yamlio.load(path.read_text(), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"launch"} or not isinstance(data.get("launch", {}), dict):
        raise SpecError("a profile is a mapping with one key, `launch:`", file=str(path), line=1)
    launch = data.get("launch") or {}
    if "profile" in launch:
        raise SpecError("a profile cannot name another profile", file=str(path), key="launch.profile")
    return launch, lines


def apply_profile(spec: SweepSpec) -> tuple[SweepSpec, Path | None]:
    """(the spec with its profile's launch defaults filled in, the profile's path); the spec unchanged if
    it names no profile.
    The result's `data` no longer names the profile: the sweep dir's spec.yaml is then self-contained, and a
    later retry runs with the resources of the launch even if the profile file has changed since."""
    name = spec.launch.profile
    if not name:
        return spec, None
    path = find_profile(name, spec)
    profile_launch, lines = load_profile(path)
    own_launch = {k: v for k, v in (spec.data.get("launch") or {}).items() if k != "profile"}
    merged = _merge(profile_launch, own_launch)
    try:
        launch = from_dict(LaunchSpec, merged)
    except SchemaError as exc:
        key = ("launch." + exc.key) if exc.key else "launch"
        line = lines.get(tuple(key.split(".")))
        raise SpecError(exc.message, file=str(path), key=key, line=line) from None
    resolved = replace(spec, launch=launch)
    resolved.path, resolved.origins = spec.path, spec.origins
    resolved.data = {**copy.deepcopy(spec.data), "launch": merged}
    return resolved, path
