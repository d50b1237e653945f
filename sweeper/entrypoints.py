"""A user's `entrypoint: package.module:function`, checked at launch rather than in every job of an array.

Two steps: `check_defined` reads the module's source without importing it (a syntax error's file:line, a
function name that the module does not define, with a did-you-mean), cheap enough for every spec parse;
`check_importable` imports it in a subprocess at launch (the user's imports may cost seconds, e.g. torch, and
must not run in the launcher) so that an error raised while importing is caught there too.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from sweeper.errors import SpecError
from sweeper.schema import did_you_mean

IMPORT_TIMEOUT_S = 120  # past this the import is left to the jobs (a launch must not hang on a user's module)


def _on_launch_path(module: str):
    """find_spec with the launch directory on sys.path, as jobs have it (launch.export_launch_dir)."""
    added = os.getcwd() not in sys.path
    if added:
        sys.path.append(os.getcwd())
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    finally:
        if added:
            sys.path.remove(os.getcwd())


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module defines at its top level; None when it may define more than the source shows
    (`from x import *`, a module `__getattr__`)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return None
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            return None  # conditional definitions: leave the answer to the import
    return None if "__getattr__" in names else names


def check_defined(entrypoint: str, file: str | None, line: int | None) -> None:
    """The module exists, parses, and defines the function (read from its source, not imported)."""
    module, function = entrypoint.split(":")
    found = _on_launch_path(module)
    if found is None:
        raise SpecError(
            f"cannot find module {module!r} (is it installed or on PYTHONPATH?)",
            file=file,
            key="entrypoint",
            line=line,
        )
    if not found.origin or not found.origin.endswith(".py") or not Path(found.origin).is_file():
        return  # a compiled or namespace module: only the import can tell
    source = Path(found.origin).read_text(errors="replace")
    try:
        tree = ast.parse(source, filename=found.origin)
    except SyntaxError as exc:
        raise SpecError(
            f"{module} does not parse: {exc.filename}:{exc.lineno}: {exc.msg}",
            file=file,
            key="entrypoint",
            line=line,
        ) from None
    names = _top_level_names(tree)
    if names is not None and function not in names:
        functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        raise SpecError(
            f"{found.origin} defines no {function!r}{did_you_mean(function, functions)}",
            file=file,
            key="entrypoint",
            line=line,
        )


_PROBE = """
import importlib, json, sys, traceback
module, function = sys.argv[1], sys.argv[2]
try:
    loaded = importlib.import_module(module)
except BaseException as exc:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    where = f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}: "
    print(json.dumps({"error": f"importing {module} raised {where}{type(exc).__name__}: {exc}"}))
    sys.exit(0)
found = getattr(loaded, function, None)
if found is None:
    names = [n for n in dir(loaded) if not n.startswith("_") and callable(getattr(loaded, n))]
    print(json.dumps({"missing": names}))
elif not callable(found):
    print(json.dumps({"error": f"{module}.{function} is {type(found).__name__}, not a function"}))
else:
    print(json.dumps({}))
"""


def check_importable(entrypoint: str, file: str | None, line: int | None) -> None:
    """Import the module and look the function up in a fresh interpreter started from the launch directory,
    as a job will (its stdout and stderr are the user's module's own; only the last line is the answer)."""
    module, function = entrypoint.split(":")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, module, function],
            capture_output=True,
            text=True,
            env=env,
            timeout=IMPORT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return
    lines = done.stdout.strip().splitlines()
    if not lines:  # the interpreter died while importing (a crash in a compiled extension)
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise SpecError(
            f"importing {module} ended with exit code {done.returncode}: {last}".rstrip(": "),
            file=file,
            key="entrypoint",
            line=line,
        )
    try:
        answer = json.loads(lines[-1])
    except json.JSONDecodeError:
        return  # the module printed after us (an atexit hook): nothing we can read
    if "missing" in answer:
        message = f"{module} has no {function!r}{did_you_mean(function, answer['missing'])}"
    elif answer.get("error"):
        message = str(answer["error"])
    else:
        return
    raise SpecError(message, file=file, key="entrypoint", line=line)
