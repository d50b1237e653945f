"""Sweep spec: YAML file (+ `--set` overrides) -> validated SweepSpec; errors name file, line and key.

A spec has a `base` training config and a search block: `configs` (named points), `grid` (cartesian
product of lists), or both, repeated for every seed in `seeds`. Keys of configs and grid are dotted
paths into `base` (e.g. `optim.weight_decay`).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sweeper import yamlio
from sweeper.errors import SpecError
from sweeper.objective import Objective
from sweeper.schema import SchemaError, did_you_mean, flatten, from_dict, set_path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class SlurmSpec:
    """sbatch resources. Anything not listed goes into `additional` (e.g. {exclude: node12})."""

    partition: str | None = None
    cpus_per_task: int = 2
    gpus_per_node: int = 0
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_delay_s: int = 120
    # At most this many of your jobs queued at once, where sacctmgr cannot tell (or to stay below it).
    max_submit_jobs: int | None = None
    additional: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)  # shell lines before the job, e.g. "module load cuda"

    def validate(self) -> None:
        if self.cpus_per_task < 1 or self.gpus_per_node < 0:
            raise SchemaError("", "cpus_per_task must be >= 1 and gpus_per_node >= 0")
        if self.max_submit_jobs is not None and self.max_submit_jobs < 2:
            raise SchemaError("max_submit_jobs", "must be at least 2 (a trial and the feeder job)")


@dataclass
class LaunchSpec:
    executor: Literal["auto", "local", "slurm", "debug"] = "auto"
    # At most this many trials run at once: the local process pool, or the SLURM array's %N throttle.
    parallelism: int | None = None
    time_min: int = 60  # wall time of one job (SLURM --time; the local executor's timeout too)
    profile: str | None = None  # a cluster profile: slurm/profiles/<name>.yaml, or a path to one
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    max_requeues: int = 3  # timeouts a trial may be requeued after (preemptions are not counted)
    threads: int | None = (
        None  # torch threads per job; default: cpus_per_task on SLURM, cores/parallelism locally
    )
    # A shell command run once when every trial has ended (sweeper/sweep_end.py), e.g. `mail -s ...`.
    on_end: str | None = None
    # Local executor: the GPUs trials may use; each running trial gets one (CUDA_VISIBLE_DEVICES), shared
    # by at most `trials_per_gpu` trials at once.
    gpus: list[int] | None = None
    trials_per_gpu: int = 1
    # SLURM: this many trials in one array task (sweeper/pack.py), at once or one after the other.
    pack: int = 1
    pack_mode: Literal["parallel", "sequential"] = "parallel"

    def validate(self) -> None:
        if self.parallelism is not None and self.parallelism < 1:
            raise SchemaError("parallelism", f"must be at least 1, got {self.parallelism}")
        if self.time_min < 1:
            raise SchemaError("time_min", f"must be at least 1 minute, got {self.time_min}")
        if self.gpus is not None:
            if not self.gpus or any(type(g) is not int or g < 0 for g in self.gpus):
                raise SchemaError(
                    "gpus", f"expected a list of GPU indexes such as [1, 2, 3], got {self.gpus!r}"
                )
            if len(set(self.gpus)) != len(self.gpus):
                raise SchemaError("gpus", "lists a GPU twice (use trials_per_gpu to share one)")
        if self.pack < 1:
            raise SchemaError("pack", f"must be at least 1 trial per job, got {self.pack}")
        if self.trials_per_gpu < 1:
            raise SchemaError("trials_per_gpu", f"must be at least 1, got {self.trials_per_gpu}")
        if self.on_end is not None:
            problem = end_command_problem(self.on_end)
            if problem:
                raise SchemaError("on_end", problem)


END_PLACEHOLDERS = ("sweep_dir", "name", "counts")  # what `launch.on_end` may name, as {sweep_dir}


def end_command_problem(command: str) -> str | None:
    """Why `launch.on_end` cannot be rendered (an unknown or malformed placeholder), or None."""
    import string

    if not command.strip():
        return "is empty (give a shell command, or leave `on_end` out)"
    try:
        fields = [name for _text, name, _spec, _conv in string.Formatter().parse(command) if name is not None]
    except ValueError as exc:
        return f"{exc} (write a literal brace as {{{{ or }}}})"
    for name in fields:
        if name not in END_PLACEHOLDERS:
            known = ", ".join(f"{{{p}}}" for p in END_PLACEHOLDERS)
            return f"unknown placeholder {{{name}}}{did_you_mean(name, END_PLACEHOLDERS)}; known: {known}"
    return None


@dataclass
class NotesSpec:
    """Written before launch, for the lab notebook (`sweeper note`): the hypothesis is fixed before the
    results exist; summary is a line on what the experiment is."""

    hypothesis: str = ""
    summary: str = ""


SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "grid": "GridSampler",
    "qmc": "QMCSampler",
}
PRUNERS = {
    "median": "MedianPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "wilcoxon": "WilcoxonPruner",
    "percentile": "PercentilePruner",
    "threshold": "ThresholdPruner",
    "none": "NopPruner",
}
PRIMITIVE = (str, int, float, bool, type(None))


@dataclass
class ParamSpec:
    """One searched parameter. A bare list in YAML is shorthand for `{type: categorical, choices: [...]}`."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] | None = None  # only searched when these other keys have these values

    def validate(self) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise SchemaError("choices", "a categorical parameter needs a non-empty `choices` list")
            if any(not isinstance(c, PRIMITIVE) for c in self.choices):
                raise SchemaError(
                    "choices", "choices must be plain values (numbers, strings, booleans, null)"
                )
            return
        if self.low is None or self.high is None:
            raise SchemaError("", f"a {self.type} parameter needs `low` and `high`")
        if self.low > self.high:
            raise SchemaError("low", f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise SchemaError("log", f"a log scale needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise SchemaError("step", "`step` and `log: true` cannot be combined")
        if self.type == "int" and any(
            v is not None and float(v) != int(v) for v in (self.low, self.high, self.step)
        ):
            raise SchemaError("", "an int parameter needs integer low, high and step")
        if self.step is not None and self.step <= 0:
            raise SchemaError("step", f"must be positive, got {self.step}")


@dataclass
class PluginSpec:
    """A sampler or pruner: `name` plus the keyword arguments of its Optuna class (checked against its signature)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchSpec:
    params: dict[str, Any]
    method: Literal["optuna"] = "optuna"
    sampler: Any = field(default_factory=lambda: {"name": "tpe"})
    pruner: Any = field(default_factory=lambda: {"name": "median"})
    n_trials: int = 20  # the global budget, shared by all workers
    workers: int = 2  # parallel jobs, each asking the study for trials until the budget is spent
    storage: str | None = None  # default: a journal file in the sweep dir; or an RDB URL (postgresql://...)
    stale_after_s: int = 600  # a RUNNING trial whose worker is silent this long is failed (and retried once)

    def validate(self) -> None:
        if not self.params:
            raise SchemaError("params", "list at least one parameter to search")
        parsed = {}
        for key, value in self.params.items():
            if isinstance(value, list):
                value = {"type": "categorical", "choices": value}
            parsed[key] = from_dict(ParamSpec, value, f"params.{key}")
            for other in parsed[key].when or {}:
                if other == key:
                    raise SchemaError(f"params.{key}.when", "a parameter cannot depend on itself")
        self.params = parsed
        self.sampler = _plugin(self.sampler, "sampler", SAMPLERS)
        self.pruner = _plugin(self.pruner, "pruner", PRUNERS)
        if self.sampler.name == "grid":
            for key, param in self.params.items():
                if param.type == "float" and param.step is None:
                    raise SchemaError(
                        f"params.{key}", "the grid sampler needs choices, an int range or a float `step`"
                    )
        if self.n_trials < 1 or self.workers < 1:
            raise SchemaError("", "n_trials and workers must be at least 1")
        if self.storage is not None:
            scheme = self.storage.split(":", 1)[0].lower()
            if scheme.startswith("sqlite"):
                raise SchemaError(
                    "storage",
                    "SQLite breaks with parallel workers and on NFS: leave `storage` unset "
                    "(a journal file in the sweep dir) or use postgresql://...",
                )
            if "://" not in self.storage:
                raise SchemaError(
                    "storage",
                    f"expected a database URL such as postgresql://user@host/db, got {self.storage!r}",
                )


def _plugin(value: Any, key: str, known: dict[str, str]) -> PluginSpec:
    import inspect

    import optuna

    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise SchemaError(key, f"expected a mapping with a `name` (one of {', '.join(known)})")
    name = value["name"]
    if name not in known:
        hint = did_you_mean(str(name), known)
        raise SchemaError(f"{key}.name", f"unknown {key} {name!r}{hint}; known: {', '.join(known)}")
    module = optuna.samplers if key == "sampler" else optuna.pruners
    accepted = set(inspect.signature(getattr(module, known[name])).parameters) - {"search_space"}
    options = {k: v for k, v in value.items() if k != "name"}
    for option, setting in options.items():
        if option not in accepted:
            hint = did_you_mean(option, accepted)
            raise SchemaError(f"{key}.{option}", f"not an option of {known[name]}{hint}")
        least = COUNT_OPTIONS.get(option)
        ok = setting == "auto" and option in ("min_resource", "max_resource")
        if least is not None and not ok and (type(setting) is not int or setting < least):
            # Optuna takes these without a check and fails inside every worker later.
            raise SchemaError(f"{key}.{option}", f"expected an integer >= {least}, got {setting!r}")
    return PluginSpec(name, options)


# Sampler and pruner options that count trials or steps: the least value that works.
COUNT_OPTIONS = {
    "min_resource": 1,
    "max_resource": 1,
    "reduction_factor": 2,
    "n_startup_trials": 0,
    "n_warmup_steps": 0,
    "interval_steps": 1,
    "min_early_stopping_rate": 0,
    "bootstrap_count": 0,
}


METRIC_SOURCES = ("auto", "jsonl", "tensorboard", "csv", "regex")


@dataclass
class MetricsSpec:
    """Where a command trial's metrics come from (docs/command.md); auto: the first source that shows up."""

    source: Literal["auto", "jsonl", "tensorboard", "csv", "regex"] = "auto"
    pattern: str | None = None  # regex: named groups `epoch` and metrics, e.g. (?P<valid_acc>[0-9.]+)
    path: str | None = None  # csv: the file, relative to the run dir (default metrics.csv)
    tags: dict[str, str] = field(default_factory=dict)  # tensorboard: tag -> metric name

    def validate(self) -> None:
        if self.source == "regex" and not self.pattern:
            raise SchemaError("pattern", "the regex source needs a pattern with an (?P<epoch>...) group")
        if self.pattern:
            from sweeper.metric_sources import RegexSource

            try:
                RegexSource(self.pattern)
            except ValueError as exc:
                raise SchemaError("pattern", str(exc)) from None


@dataclass
class SignalsSpec:
    """How a command trial's program is told to stop: `requeue` on timeout or preemption (then SIGTERM),
    SIGTERM when pruned or cancelled; SIGKILL once `grace_s` has passed."""

    requeue: str = "SIGUSR2"
    grace_s: float = 30.0

    def validate(self) -> None:
        import signal

        if self.requeue not in signal.Signals.__members__:
            hint = did_you_mean(self.requeue, list(signal.Signals.__members__))
            raise SchemaError("requeue", f"not a signal name{hint}")
        if self.grace_s <= 0:
            raise SchemaError("grace_s", f"must be more than 0 seconds, got {self.grace_s}")


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]
    description: str = ""
    entrypoint: str | None = None
    command: list[str | int | float] | str | None = None  # any program: the command trial (docs/command.md)
    cwd: str | None = None  # the command's working directory (default: the spec's folder)
    env: dict[str, str | int | float] = field(default_factory=dict)  # extra variables for the command
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    signals: SignalsSpec = field(default_factory=SignalsSpec)
    configs: Any = None
    grid: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    objective: Objective = field(default_factory=Objective)
    search: SearchSpec | None = None
    launch: LaunchSpec = field(default_factory=LaunchSpec)
    notes: NotesSpec = field(default_factory=NotesSpec)
    # Filled by load_spec, not by the YAML:
    path: str | None = field(default=None, init=False)
    data: dict = field(default_factory=dict, init=False, repr=False)  # the spec as loaded, overrides applied
    origins: dict = field(default_factory=dict, init=False, repr=False)

    def validate(self) -> None:
        if not NAME_RE.match(self.name):
            raise SchemaError(
                "name",
                f"{self.name!r} must be letters, digits, '.', '_' or '-' (it names a folder under runs/)",
            )
        if self.entrypoint is not None and not ENTRYPOINT_RE.match(self.entrypoint):
            raise SchemaError("entrypoint", f"expected 'package.module:function', got {self.entrypoint!r}")
        if self.entrypoint is not None and self.command is not None:
            raise SchemaError(
                "command", "give `command:` (any program) or `entrypoint:` (a Python function), not both"
            )
        if not self.seeds:
            raise SchemaError("seeds", "must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise SchemaError("seeds", "lists a seed twice")
        self.configs = _normalize_configs(self.configs)
        self.grid = flatten(self.grid)
        for key, values in self.grid.items():
            if not isinstance(values, list):
                raise SchemaError(f"grid.{key}", f"expected a list of values, got {values!r}")
            if not values:
                raise SchemaError(f"grid.{key}", "empty list: the grid would have no points")
            if len({repr(v) for v in values}) != len(values):
                raise SchemaError(f"grid.{key}", "lists a value twice")
            if key == "seed":
                raise SchemaError(f"grid.{key}", "use the top-level `seeds:` list to repeat runs over seeds")

    @property
    def trial_entrypoint(self) -> str | None:
        """What every job runs: the command trial's runner, the user's function, or None (the built-in trainer)."""
        if self.command is not None:
            from sweeper.command_template import COMMAND_ENTRYPOINT

            return COMMAND_ENTRYPOINT
        return self.entrypoint

    @property
    def declared_direction(self) -> str | None:
        """The objective's direction as the spec wrote it (None: left to the metric's name)."""
        written = self.data.get("objective")
        return written.get("direction") if isinstance(written, dict) else None

    @property
    def swept_keys(self) -> list[str]:
        if self.search is not None:
            return list(self.search.params)
        keys: list[str] = []
        for params in (self.configs or {}).values():
            keys += [k for k in params if k not in keys]
        return keys + [k for k in self.grid if k not in keys]

    def line_of(self, key: str) -> tuple[str | None, int | None]:
        return _origin(self.origins, key)

    def line_of_param(self, section: tuple, key: str) -> tuple[str | None, int | None]:
        """Where a swept key was written: ('grid',) or ('configs', name), then the key, dotted or nested."""
        if section + (key,) in self.origins:
            return self.origins[section + (key,)]
        return _origin(self.origins, ".".join(map(str, section + _key_tuple(key))))


def _normalize_configs(configs: Any) -> dict[str, dict[str, Any]] | None:
    """`configs` as a mapping name -> params, or a list of mappings each with a `name`."""
    if configs is None:
        return None
    if isinstance(configs, list):
        named = {}
        for i, item in enumerate(configs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise SchemaError(f"configs[{i}]", "each config needs a `name`")
            params = {k: v for k, v in item.items() if k != "name"}
            if item["name"] in named:
                raise SchemaError(f"configs[{i}].name", f"config {item['name']!r} is listed twice")
            named[item["name"]] = params
        configs = named
    if not isinstance(configs, dict):
        raise SchemaError("configs", "expected a mapping of name -> parameters, or a list of named configs")
    if not configs:
        raise SchemaError("configs", "is empty")
    out = {}
    for name, params in configs.items():
        if not NAME_RE.match(str(name)):
            raise SchemaError(f"configs.{name}", "config names are letters, digits, '.', '_' or '-'")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise SchemaError(f"configs.{name}", f"expected a mapping of parameters, got {params!r}")
        out[str(name)] = flatten(params)
    return out


def _key_tuple(key: str) -> tuple:
    parts: list[Any] = []
    for part in key.split("."):
        match = re.fullmatch(r"(.*?)((?:\[\d+\])*)", part)
        assert match
        if match.group(1):
            parts.append(match.group(1))
        parts += [int(i) for i in re.findall(r"\[(\d+)\]", match.group(2))]
    return tuple(parts)


def _origin(origins: dict, key: str) -> tuple[str | None, int | None]:
    """The (file, line) where `key` (or its closest parent) was written. A YAML key may itself contain dots
    (`grid: {optim.lr: [...]}`), so every way of joining trailing parts is tried."""
    parts = _key_tuple(key)
    for end in range(len(parts), -1, -1):
        prefix = parts[:end]
        for split in range(len(prefix), 0, -1):
            tail = prefix[split - 1 :]
            if all(isinstance(p, str) for p in tail):
                candidate = prefix[: split - 1] + (".".join(tail),)
                if candidate in origins:
                    return origins[candidate]
        if prefix in origins:
            return origins[prefix]
    return None, None


def parse_override(text: str, top_level: set[str]) -> tuple[str, Any]:
    """'optim.lr=3e-4' -> ('base.optim.lr', 0.0003). Keys not naming a spec section go into `base`."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise SpecError(f"expected KEY=VALUE, got {text!r}", file="--set")
    if key.split(".")[0] not in top_level:
        key = "base." + key
    return key, yamlio.load_value(value)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepSpec:
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError("no such file", file=file) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"cannot read: {exc.strerror if hasattr(exc, 'strerror') else exc}", file=file
        ) from None
    return parse_spec(text, file=file, overrides=overrides)


def parse_spec(
    text: str,
    file: str = "<spec>",
    overrides: list[str] | tuple[str, ...] = (),
    check_entrypoint: bool = True,
) -> SweepSpec:
    """Parse and validate a spec. `check_entrypoint=False` for a spec re-read from a sweep dir (already checked at
    launch, and the module may only be importable from the launch directory)."""
    data, lines = yamlio.load(text, file)
    if not isinstance(data, dict):
        raise SpecError("expected a mapping with `name`, `base` and `configs` or `grid`", file=file, line=1)
    origins: dict[tuple, tuple[str | None, int | None]] = {k: (file, v) for k, v in lines.items()}
    top_level = {f for f in SweepSpec.__dataclass_fields__ if f not in ("path", "data", "origins")}
    for text_override in overrides:
        key, value = parse_override(text_override, top_level)
        try:
            set_path(data, key, value)
        except SchemaError as exc:
            raise SpecError(exc.message, file="--set", key=exc.key) from None
        for k in [k for k in origins if k[: len(_key_tuple(key))] == _key_tuple(key)]:
            del origins[k]
        origins[_key_tuple(key)] = ("--set", None)
    try:
        spec = from_dict(SweepSpec, data)
    except SchemaError as exc:
        where, line = _origin(origins, exc.key)
        raise SpecError(exc.message, file=where or file, key=exc.key, line=line) from None
    spec.path, spec.data, spec.origins = file, copy.deepcopy(data), origins
    if spec.search is not None and (spec.configs is not None or spec.grid):
        where, line = spec.line_of("search")
        raise SpecError(
            "`search:` cannot be combined with `configs:` or `grid:` (use `sampler: grid` for an Optuna grid)",
            file=where,
            key="search",
            line=line,
        )
    _refuse_swept_overrides(spec, [parse_override(o, top_level)[0] for o in overrides])
    if spec.search is not None and spec.launch.pack > 1:
        where, line = spec.line_of("launch.pack")
        raise SpecError(
            "packing is for grid/configs sweeps (an Optuna worker already runs trial after trial)",
            file=where or file,
            key="launch.pack",
            line=line,
        )
    if spec.entrypoint and check_entrypoint:
        _check_entrypoint(spec)
    if spec.command is not None and check_entrypoint:
        _check_command(spec)
    if check_entrypoint:
        _check_extras(spec)
    return spec


def _check_extras(spec: SweepSpec) -> None:
    """At launch: the optional parts this spec's jobs will need (they run with the launcher's Python)."""
    from sweeper import extras

    needs = []
    if not spec.entrypoint and spec.command is None:
        needs.append(("train", "the built-in trainer", "base"))
    if spec.command is not None and spec.metrics.source == "tensorboard":
        needs.append(("train", "metrics.source: tensorboard", "metrics.source"))
    if spec.search is not None and spec.search.storage and spec.search.storage.startswith("postgres"):
        needs.append(("postgres", "a postgresql:// storage", "search.storage"))
    for extra, purpose, key in needs:
        try:
            extras.check(extra, purpose)
        except extras.MissingExtraError as exc:
            where, line = spec.line_of(key)
            raise SpecError(str(exc), file=where or spec.path, key=key, line=line) from None


def _refuse_swept_overrides(spec: SweepSpec, keys: list[str]) -> None:
    """`--set optim.lr=...` where the sweep itself varies optim.lr would change no trial (each trial sets its
    own value over the base): refused, naming where the key is swept and how to change that instead."""
    for key in keys:
        if not key.startswith("base."):
            continue
        key = key.removeprefix("base.")
        swept = next((k for k in spec.swept_keys if key == k or key.startswith(k + ".")), None)
        if swept is None:
            continue
        if spec.search is not None:
            section, hint = ("search", "params"), f"--set search.params.{swept}.low=... (or .high, .choices)"
        elif swept in spec.grid:
            section, hint = ("grid",), f"--set 'grid.{swept}=[...]'"
        else:
            name = next(n for n, params in spec.configs.items() if swept in params)
            section, hint = ("configs", name), f"--set configs.{name}.{swept}=..."
        file, line = spec.line_of_param(section, swept)
        where = f"{file}:{line}" if line is not None else (file or "the spec")
        raise SpecError(
            f"is swept ({'.'.join(section)} at {where}): every trial sets its own value, so this "
            f"--set would change nothing; change the swept values instead, e.g. {hint}",
            file="--set",
            key=key,
        )


def _check_entrypoint(spec: SweepSpec) -> None:
    from sweeper.entrypoints import check_defined

    check_defined(spec.entrypoint, *spec.line_of("entrypoint"))


def _check_command(spec: SweepSpec) -> None:
    """At launch, before anything is written: the command's placeholders, its working directory and its
    program. The working directory is then recorded as an absolute path (jobs run it from anywhere)."""
    from sweeper import command_template
    from sweeper.schema import flatten

    where, line = spec.line_of("command")

    def refuse(message: str, key: str = "command") -> None:
        file, at = spec.line_of(key)
        raise SpecError(message, file=file or where, key=key, line=at if at is not None else line)

    try:
        words = command_template.split_command(spec.command)
    except ValueError as exc:
        refuse(str(exc))
    keys = set(flatten(spec.base)) | {"seed"}
    for index, problem in command_template.check(words, keys, spec.swept_keys):
        refuse(f"word {index + 1} {problem}")
    for name, value in spec.env.items():
        for _index, problem in command_template.check([str(value)], keys, spec.swept_keys):
            refuse(problem, f"env.{name}")
    base = Path(spec.path).parent if spec.path and Path(spec.path).is_file() else Path.cwd()
    cwd = (base / (spec.cwd or ".")).resolve()
    if not cwd.is_dir():
        refuse(f"{cwd} is not a directory", "cwd" if spec.cwd else "command")
    spec.cwd = spec.data["cwd"] = str(cwd)
    program = words[0]
    if "{" in program:
        return
    if "/" in program:
        path = cwd / program
        if not path.is_file():
            refuse(f"program {program!r} not found (looked in {cwd})")
        if not os.access(path, os.X_OK):
            refuse(f"program {program!r} is not executable (chmod +x {path}, or run it with its interpreter)")
        return
    search_path = str(spec.env.get("PATH", os.environ.get("PATH", "")))
    if shutil.which(program, path=search_path) is None:
        refuse(f"program {program!r} not found on PATH")
