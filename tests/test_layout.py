"""The layout's rules, checked on the source: imports flow one way, and modules stay readable.

docs/architecture.md states these rules; this test keeps them true. It reads the code with
``ast`` (nothing is imported), so it is fast and sees imports inside functions too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "api", "deployments", "suites")
# A module longer than this says why at its top, in a line starting with "Longer than".
MAX_LINES = 400
# Which top-level packages each may import: flows -> tasks -> storage; nightly -> summaries -> api.
ALLOWED = {
    "tasks": {"tasks"},
    "api": {"api", "tasks"},
    "deployments": {"deployments", "tasks", "flows"},
    "flows": {"flows", "tasks", "api", "deployments", "suites"},
    "suites": {"suites", "tasks"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, [a.name for a in node.names], node.lineno


def _project_targets(module: str, names: list[str]) -> list[str]:
    """The project modules an import statement loads (``from pkg import submodule`` included)."""
    targets = [module] if module in MODULES else []
    targets += [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return targets


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for module, names, _ in _imports(name, path):
            graph[name].update(t for t in _project_targets(module, names) if t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        item = stack.pop()
                        on_stack.discard(item)
                        component.append(item)
                        if item == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_loop_between_modules() -> None:
    """Imports inside functions count too: a loop cannot hide in a function body."""
    assert _cycles(_graph()) == []


def test_no_import_loop_between_the_subpackages_of_tasks() -> None:
    """tasks/ folders form a DAG: e.g. records may use storage, storage never uses records."""
    def folder(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for source, targets in _graph().items():
        if source.startswith("tasks."):
            graph.setdefault(folder(source), set()).update(
                folder(t) for t in targets
                if t.startswith("tasks.") and folder(t) != folder(source))
    for targets in list(graph.values()):
        for t in targets:
            graph.setdefault(t, set())
    assert _cycles(graph) == []


def test_imports_flow_one_way_between_top_level_packages() -> None:
    wrong = []
    for name, path in MODULES.items():
        top = name.split(".")[0]
        for module, _, line in _imports(name, path):
            other = module.split(".")[0]
            if other in PACKAGES and other not in ALLOWED[top]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert wrong == []


def test_no_private_name_is_imported_from_another_module() -> None:
    """Tests included: a test that needs a private name is testing the wrong thing."""
    wrong = []
    tests = {".".join(p.relative_to(ROOT).with_suffix("").parts): p
             for p in sorted((ROOT / "tests").rglob("*.py"))}
    for name, path in {**MODULES, **tests}.items():
        for module, names, line in _imports(name, path):
            if module.split(".")[0] not in (*PACKAGES, "tests") or module == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in module.split(".") if p.startswith("_") and p != "__init__"]
            if private:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {private} from {module}")
    assert wrong == []


@pytest.mark.parametrize("path", sorted(
    p for pkg in (*PACKAGES, "tests") for p in (ROOT / pkg).rglob("*.py")
), ids=lambda p: str(p.relative_to(ROOT)))
def test_long_modules_say_why(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) <= MAX_LINES:
        return
    head = "\n".join(lines[:30])
    assert "Longer than" in head, (
        f"{path.relative_to(ROOT)} has {len(lines)} lines: split it, or say at its top why it is "
        f"longer than {MAX_LINES} (a line starting with 'Longer than')")


def test_architecture_doc_lists_the_real_folder_dependencies() -> None:
    """docs/architecture.md's table of what each folder of tasks/ imports is the code's truth."""
    def folder(module: str) -> str:
        return module.split(".")[1]

    actual: dict[str, set[str]] = {}
    for source, targets in _graph().items():
        if source.startswith("tasks."):
            actual.setdefault(folder(source), set()).update(
                folder(t) for t in targets
                if t.startswith("tasks.") and folder(t) != folder(source))
    documented: dict[str, set[str]] = {}
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("| folder | imports from `tasks/` |", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([a-z_]+)`", cells[0])
        deps = set(re.findall(r"`([a-z_]+)`", cells[1]))
        for name in names:
            documented[name] = deps
    assert documented == actual
