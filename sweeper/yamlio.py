"""Safe YAML loading that remembers the line of every key, so errors can point at it.

Only safe tags are constructed (SafeLoader). Floats like `1e-3` (no dot) load as floats, as researchers
write them, instead of YAML 1.1's surprising strings.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from sweeper.errors import SpecError


class Loader(yaml.SafeLoader):
    def construct_yaml_float(self, node):
        """YAML 1.1's float pattern also matches non-numbers such as `._` or `1__.`: those stay strings
        (PyYAML's own constructor raises a ValueError on them, which escaped as a traceback)."""
        try:
            return super().construct_yaml_float(node)
        except ValueError:
            return self.construct_scalar(node)


Loader.add_constructor("tag:yaml.org,2002:float", Loader.construct_yaml_float)


Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise SpecError(
                    "duplicate key",
                    file=file,
                    key=".".join(map(str, path + (key,))),
                    line=key_node.start_mark.line + 1,
                )
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, file)


def load(text: str, file: str = "<string>") -> tuple[Any, dict[tuple, int]]:
    """Parse YAML text; return (data, {key path tuple: 1-based line})."""
    lines: dict[tuple, int] = {}
    try:
        loader = Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, lines
            _walk(node, (), lines, file)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "could not determine a constructor" in str(exc):
            problem = f"tag not allowed ({problem.split('tag ')[-1]}); only plain YAML is accepted"
        raise SpecError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    return data, lines


def load_value(text: str) -> Any:
    """Parse one `--set` value the way it would read in the spec file."""
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader subclass
    except yaml.YAMLError:
        return text


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
