"""The house rules, read from the code: no import cycle among sweeper's and models' modules, the node side
never reaches the CLI, rich, the launcher or a backend, the CLI holds no state literals or kind branches,
and the one vocabulary of Optuna's states matches Optuna's."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("sweeper", "models")
NODE_SIDE = (
    "sweeper.job",
    "sweeper.run",
    "sweeper.train",
    "sweeper.metrics",
    "sweeper.worker",
    "sweeper.command",
    "sweeper.pack",
)
NOT_ON_THE_NODE = (
    "sweeper.cli",
    "sweeper.analyze_cli",
    "sweeper.terminal",
    "sweeper.views",
    "sweeper.launch",
    "sweeper.control",
    "sweeper.backends",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "models":  # the repo's models/ is installed as sweeper.models (pyproject's package-dir)
        parts.insert(0, "sweeper")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports at run time: at module level or inside functions (type-only
    imports under `if TYPE_CHECKING:` are not arrows: they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found.update(submodules)  # `from pkg import module` is an arrow to the module
            if len(submodules) < len(node.names):
                found.update(
                    f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" not in known
                )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    me = module_name(path)
    ancestors = {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 1)}
    result = set()
    for name in found:
        while name and name not in known:  # `from sweeper.x import y`: y may be a name, not a module
            name = name.rpartition(".")[0]
        if name and name != me and name not in ancestors:  # a package's __init__ runs before its modules
            result.add(name)
    return result


def project_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    known = {module_name(p) for p in files}
    # `import sweeper.x` also runs sweeper/__init__; that edge is implied, not drawn
    return {module_name(p): imports_of(p, known) - {"sweeper"} for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_the_projects_modules():
    graph = project_graph()
    assert "sweeper.worker" in graph and "sweeper.backends.slurm" in graph  # the walk found the tree
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_nothing_imports_a_top_level_models_package():
    """`models` is installed as sweeper.models: a bare `import models` would find a user's own package."""
    files = [
        p for d in ("sweeper", "models", "tests", "benchmarks", "examples") for p in (REPO / d).rglob("*.py")
    ]
    bare = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bare += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "models"]
    assert not bare, bare


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def test_the_node_side_never_reaches_the_cli_rich_the_launcher_or_a_backend():
    graph = project_graph()
    for module in NODE_SIDE:
        reached = reachable(graph, module)
        banned = sorted(m for m in reached if m.startswith(NOT_ON_THE_NODE))
        assert not banned, f"{module} imports {banned}"
    # and at run time, with every third-party import the node side really makes
    code = (
        "import sys; import sweeper.worker, sweeper.job, sweeper.train, sweeper.metrics, sweeper.run, sweeper.command, sweeper.pack; "
        "print(' '.join(sorted(m for m in sys.modules if m == 'rich' or m.startswith(('rich.', "
        + ", ".join(repr(m) for m in NOT_ON_THE_NODE)
        + ")))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""


def test_the_analyze_command_starts_without_the_launcher_or_a_backend():
    """`analyze` of a cached sweep is mostly start-up: it imports what reads and renders, nothing else."""
    launcher_side = ("sweeper.cli", "sweeper.launch", "sweeper.backends", "sweeper.kinds", "sweeper.status")
    reached = reachable(project_graph(), "sweeper.analyze_cli")
    assert not sorted(m for m in reached if m.startswith(launcher_side))
    code = (
        "import sys; import sweeper.analyze_cli; "
        f"print(' '.join(sorted(m for m in sys.modules if m.startswith({launcher_side!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("module", ["cli.py", "analyze_cli.py", "terminal.py"])
def test_the_cli_holds_no_state_literals_and_no_backend_or_kind_branches(module):
    text = (REPO / "sweeper" / module).read_text()
    from sweeper.states import StudyState, TrialState

    states = {s.value for s in TrialState} | {s.value for s in StudyState}
    literals = set(re.findall(r"[\"']([A-Z_]{4,})[\"']", text))
    assert not literals & states, f"state literals in cli.py: {sorted(literals & states)}"
    for branch in (
        '"slurm"',
        '"local"',
        '"debug"',
        '"optuna"',
        ".search is",
        ".search ==",
        'meta.get("search',
    ):
        assert branch not in text, f"cli.py branches on {branch}"


def test_study_states_are_optunas_names():
    from optuna.trial import TrialState as OptunaTrialState

    from sweeper.states import StudyState

    assert {s.value for s in StudyState} == {s.name for s in OptunaTrialState}


def test_the_base_install_commands_import_no_extra():
    """`sweeper launch/status`, `analyze` (without --plot) run on a base install: no extra is imported."""
    from sweeper.extras import EXTRAS

    modules = sorted(m for ms in EXTRAS.values() for m in ms)
    code = (
        "import sys; import sweeper.cli, sweeper.launch, sweeper.status, sweeper.analysis.report, "
        "sweeper.analysis.export, sweeper.analysis.plots, sweeper.spec, sweeper.config, sweeper.models; "
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({modules!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == ""
