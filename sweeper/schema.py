"""Strict conversion of plain dicts (from YAML) into dataclasses, with the key path of every error.

One small mechanism serves the sweep spec, the training config and each model's config, so that an
unknown key, a wrong type or a bad choice is always reported the same way: the dotted key and what is
wrong, with a did-you-mean for misspelled keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin


class SchemaError(Exception):
    """Invalid data at `key` (a dotted path). Converted to a SpecError with file and line by the caller."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}" if key else message)


def join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(type_name(a) for a in get_args(annotation))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert(annotation: Any, value: Any, key: str) -> Any:
    """Check `value` against `annotation` and return it converted (nested dataclasses built)."""
    if annotation is Any:
        return value
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in get_args(annotation):
            return None  # not a dataclass option built from defaults: `early_stopping: null` means none
        errors = []
        for option in get_args(annotation):
            try:
                return convert(option, value, key)
            except SchemaError as exc:
                errors.append(exc)
        # a nested error (inside a mapping) is more useful than "expected X or Y"
        nested = [e for e in errors if e.key != key]
        if nested:
            raise nested[0]
        raise SchemaError(key, f"expected {type_name(annotation)}, got {describe(value)}")
    if origin is Literal:
        if any(value == allowed and type(value) is type(allowed) for allowed in get_args(annotation)):
            return value
        choices = [a for a in get_args(annotation) if isinstance(a, str)]
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise SchemaError(key, f"expected {type_name(annotation)}, got {describe(value)}{hint}")
    if annotation is type(None):
        if value is None:
            return None
        raise SchemaError(key, f"expected null, got {describe(value)}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise SchemaError(key, f"expected true or false, got {describe(value)}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SchemaError(key, f"expected an integer, got {describe(value)}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SchemaError(key, f"expected a number, got {describe(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise SchemaError(key, f"expected a string, got {describe(value)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SchemaError(key, f"expected a list, got {describe(value)}")
        args = get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SchemaError(key, f"expected a list of {len(args)} items, got {len(value)}")
            return tuple(
                convert(a, v, join(key, i)) for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        item = args[0] if args else Any
        converted = [convert(item, v, join(key, i)) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise SchemaError(key, f"expected a mapping, got {describe(value)}")
        args = get_args(annotation)
        value_type = args[1] if args else Any
        return {str(k): convert(value_type, v, join(key, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, key)
    raise TypeError(f"schema: unsupported annotation {annotation!r} at {key}")


def from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SchemaError(key, f"expected a mapping, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            raise SchemaError(join(key, str(name)), f"unknown key{did_you_mean(str(name), fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], join(key, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SchemaError(join(key, name), "required key is missing")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise SchemaError(key, str(exc)) from None
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except SchemaError as exc:
            raise SchemaError(join(key, exc.key) if exc.key else key, exc.message) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass (possibly nested) to plain dicts and lists, for JSON and YAML."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}. Lists are leaves."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        path = join(prefix, str(k))
        if isinstance(v, dict) and v:
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set data['a']['b'] = value for 'a.b', creating intermediate mappings. A key may itself hold dots
    (`grid: {optim.lr: [...]}`, `search: {params: {optim.lr: {...}}}`): where one exists it is the one set
    or descended into (the longest that matches), so 'search.params.optim.lr.high' reaches that parameter."""
    parts = dotted.split(".")
    node, i = data, 0
    while True:
        rest = ".".join(parts[i:])
        if rest in node or i == len(parts) - 1:
            node[rest] = value
            return
        j = next(
            (j for j in range(len(parts) - 1, i, -1) if isinstance(node.get(".".join(parts[i:j])), dict)),
            i + 1,
        )
        key = ".".join(parts[i:j])
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise SchemaError(
                ".".join(parts[:j]), f"is {describe(child)}, not a mapping, so '{dotted}' cannot be set"
            )
        node, i = child, j


def get_path(data: dict, dotted: str, default: Any = None) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
