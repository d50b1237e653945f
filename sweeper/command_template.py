"""The command line of a command trial: its words with placeholders (`{optim.lr}`, `{seed}`, `{args}`...),
split from the spec, checked once, expanded into each trial's argv."""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

from sweeper.schema import did_you_mean

TRIAL_NAMES = ("seed", "trial_id", "run_dir")  # one value each, from the trial
MULTI_NAMES = ("args", "overrides")  # several words: the swept parameters
RESERVED = TRIAL_NAMES + MULTI_NAMES
COMMAND_ENTRYPOINT = "sweeper.command:run_command"  # what a job runs for a spec with `command:`


class TemplateError(ValueError):
    """A malformed word (unbalanced braces, an empty placeholder)."""


def _parse(word: str) -> list[tuple[bool, str]]:
    """A word as (is_placeholder, text) parts; literal text has its doubled braces undone."""
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(word):
        char = word[i]
        if char == "{" and word.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and word.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "{":
            end = word.find("}", i + 1)
            inner = word[i + 1 : end] if end >= 0 else ""
            if end < 0 or "{" in inner:
                raise TemplateError(
                    f"'{{' at position {i + 1} is not closed; write '{{{{' for a literal brace"
                )
            name = inner.strip()
            if not name:
                raise TemplateError("an empty placeholder '{}'; write '{{}}' for literal braces")
            if literal:
                parts.append((False, "".join(literal)))
                literal = []
            parts.append((True, name))
            i = end + 1
        elif char == "}":
            raise TemplateError(f"a single '}}' at position {i + 1}; write '}}}}' for a literal brace")
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append((False, "".join(literal)))
    return parts


def placeholders(words: list[str]) -> list[str]:
    """The placeholder names used in `words`, each once, in order of first use (malformed words skipped)."""
    names: dict[str, None] = {}
    for word in words:
        try:
            parts = _parse(word)
        except TemplateError:
            continue
        names.update((text, None) for is_name, text in parts if is_name)
    return list(names)


def check(words: list[str], config_keys: set[str], swept: list[str]) -> list[tuple[int, str]]:
    """(word index, message) for every problem in a command template.

    `config_keys`: the dotted keys of the config's values (`optim.lr`, `model.layers`); a name that is only
    a prefix of such keys (`optim`) is a section. `swept`: the swept parameters' dotted keys, which are
    valid placeholders too. Problems: a malformed word (unbalanced braces), an unknown name (with a
    did-you-mean), a section, and `{args}` / `{overrides}` inside a longer word.
    """
    known = set(config_keys) | set(swept)
    sections = set()
    for key in known:
        parts = key.split(".")
        sections.update(".".join(parts[:i]) for i in range(1, len(parts)))
    problems: list[tuple[int, str]] = []
    for index, word in enumerate(words):
        try:
            parts = _parse(word)
        except TemplateError as e:
            problems.append((index, f"{word!r}: {e}"))
            continue
        for is_name, name in parts:
            if not is_name:
                continue
            if name in MULTI_NAMES:
                if len(parts) != 1:
                    problems.append(
                        (
                            index,
                            f"{word!r}: {{{name}}} expands to several words; it must be a word of its own",
                        )
                    )
            elif name in TRIAL_NAMES:
                continue
            elif name in sections:
                problems.append((index, f"{{{name}}} is a section, not a value; name one of its keys"))
            elif name not in known:
                hint = did_you_mean(name, sorted(known | set(RESERVED)))
                problems.append((index, f"{{{name}}}: no such config key or placeholder{hint}"))
    return problems


def unused_swept(words: list[str], swept: list[str]) -> list[str]:
    """The swept parameters the command never passes (no `{args}`, `{overrides}` nor `{key}`): a warning
    for the caller, since the program may still read them another way (a config file in its run dir)."""
    used = set(placeholders(words))
    if used & set(MULTI_NAMES):
        return []
    return [key for key in swept if key not in used]


def format_cli_value(value: Any) -> str:
    """How a value is written on a command line; Hydra-compatible.

    Booleans `true` / `false`, None `null`, floats in the shortest form that reads back exactly (1e-3 ->
    `0.001`, 1e-05 -> `1e-05`, `nan`, `inf`, `-inf`), lists `[a,b]`, mappings `{k:v}`; strings as they are
    (inside a list or mapping, a string is quoted when it is empty, has characters Hydra treats specially,
    or would read as a number, a boolean or null: `['a b','1']`).
    """
    return _format(value, nested=False)


_HYDRA_PLAIN = re.compile(r"[A-Za-z0-9_./+\-%@:~]*")


def _reads_as_other(text: str) -> bool:
    """Whether Hydra would read `text` unquoted as a number, a boolean or null."""
    if text.lower() in ("true", "false", "null"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format(value: Any, nested: bool) -> str:
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # numpy scalars: their repr is `np.float64(0.1)`
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(float(value))  # shortest round-trip form; 'inf' / '-inf'
    if isinstance(value, str):
        if nested and (not value or not _HYDRA_PLAIN.fullmatch(value) or _reads_as_other(value)):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return value
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format(v, nested=True) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_format(v, nested=True)}" for k, v in value.items()) + "}"
    return str(value)


def _lookup(config: dict, key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def expand(words: list[str], config: dict, params: dict, seed: int, trial_id: str, run_dir: str) -> list[str]:
    """The argv of one trial. `config`: the trial's nested config; `params`: its swept parameters
    ({dotted key: value}, in the order `{args}` / `{overrides}` list them), which win over `config`.

    Placeholders: `{optim.lr}` (any dotted config key, a value, not a section), `{seed}`, `{trial_id}`,
    `{run_dir}`, and two that expand to several words and must each be a word of their own: `{args}`
    (`--optim.lr=0.001` for every swept parameter, argparse style) and `{overrides}` (`optim.lr=0.001`,
    Hydra style). Other placeholders may sit inside a word (`--lr={optim.lr}`). `{{` and `}}` are literal
    braces. The reserved names win over config keys of the same name (`{seed}` is always the trial's seed).
    Values are written by `format_cli_value`.

    Raises TemplateError (a ValueError) for a malformed word, an unknown key or a section; `check` reports
    all of those beforehand.
    """
    trial = {"seed": seed, "trial_id": trial_id, "run_dir": run_dir}
    argv: list[str] = []
    for word in words:
        parts = _parse(word)
        if len(parts) == 1 and parts[0][0] and parts[0][1] in MULTI_NAMES:
            if parts[0][1] == "args":
                argv += [f"--{key}={format_cli_value(value)}" for key, value in params.items()]
            else:
                argv += [f"{key}={format_cli_value(value)}" for key, value in params.items()]
            continue
        text = []
        for is_name, name in parts:
            if not is_name:
                text.append(name)
                continue
            if name in MULTI_NAMES:
                raise TemplateError(
                    f"{word!r}: {{{name}}} expands to several words; it must be a word of its own"
                )
            if name in trial:
                value = trial[name]
            elif name in params:
                value = params[name]
            else:
                try:
                    value = _lookup(config, name)
                except KeyError:
                    raise TemplateError(f"{{{name}}}: no such config key or placeholder") from None
                if isinstance(value, dict):
                    raise TemplateError(f"{{{name}}} is a section, not a value")
            text.append(format_cli_value(value))
        argv.append("".join(text))
    return argv


def split_command(value: str | list[str]) -> list[str]:
    """The words of a `command:`: a string is split like a shell would (shlex, no expansion); a list is
    taken as it is, numbers in it written as words. Raises ValueError for an empty command, unbalanced
    quotes or an item that is not a string or a number."""
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise ValueError(f"cannot split the command {value!r}: {e}") from None
    elif isinstance(value, list | tuple):
        words = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                words.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                words.append(format_cli_value(item))
            else:
                raise ValueError(f"command[{index}] must be a string, got {item!r}")
    else:
        raise ValueError(f"the command must be a string or a list of strings, got {type(value).__name__}")
    if not words:
        raise ValueError("the command is empty")
    return words
