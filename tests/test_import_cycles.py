"""No import cycle inside the `tts_service` package.

A cycle makes import order matter and hides which module owns what. Every import counts, those inside functions
included (a late import is how a cycle usually hides), except those under `if TYPE_CHECKING:`, which never run.
Importing `pkg.sub` runs `pkg/__init__.py` first, so it depends on the package too, unless the importer lives in
`pkg` itself: a package's `__init__` re-exporting its own submodules is not a cycle.

Run as a script (`python tests/test_import_cycles.py`) to print the cycles found.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "tts_service"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of `tree` outside `if TYPE_CHECKING:` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for branch in node.orelse:
                visit(branch)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules whose import it runs."""
    files = {module_name(path, src): path for path in (src / package).rglob("*.py")}
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        base = name if name in packages else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                origin = node.module or ""
                if node.level:
                    anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                    origin = f"{anchor}.{origin}" if origin else anchor
                # `from package import module` names the module; `from module import name` names the module.
                targets = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in files else origin for alias in node.names
                ]
            for target in targets:
                if target not in files:
                    continue
                edges.add(target)
                # The packages above the target run first, those the importer lives in aside (already running).
                parts = target.split(".")
                edges.update(
                    package
                    for package in (".".join(parts[:n]) for n in range(1, len(parts)))
                    if not (name == package or name.startswith(package + "."))
                )
            edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert {"tts_service.responses", "tts_service.middleware"} <= graph["tts_service.app"]
    # Importing a module runs the packages above it, except those the importer is part of.
    assert {"tts_service.middleware", "tts_service.middleware._asgi"} <= graph["tts_service.api.console"]
    assert "tts_service.middleware" not in graph["tts_service.middleware.cors"]


def test_late_imports_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg import a\n")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n")
    (pkg / "b.py").write_text("from . import a\n\ndef late():\n    from pkg.c import C\n")
    (pkg / "c.py").write_text("from pkg.b import late\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg"] == {"pkg.a"}
    assert graph["pkg.a"] == set()
    assert cycles(graph) == [["pkg.b", "pkg.c"]]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


if __name__ == "__main__":
    found = cycles(import_graph())
    for component in found:
        print(" <-> ".join(component))  # noqa: T201
    print(f"{len(found)} cycle(s)")  # noqa: T201
