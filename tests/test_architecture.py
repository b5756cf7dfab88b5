"""The house rules of docs/architecture.md, checked on the source: rooms, imports and what `import harp` costs.

The import graph counts every import statement of a module, also those inside functions (a lazy import is still a
dependency), but not those under ``if TYPE_CHECKING:`` (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harp", "app")
# A file may pass this many lines only when its module docstring says why one algorithm needs the room.
MAX_LINES = 600
ROOM_NOTE = "needs the room"


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def _imports(module: str) -> list[tuple[str, str | None]]:
    """(imported module or module.name, imported name) of every runtime import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found += [(f"{base}.{alias.name}", alias.name) for alias in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        for target, _ in _imports(module):
            owner = _owner(target)
            if owner is not None and owner != module:
                graph[module].add(owner)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking_ones(tmp_path: Path) -> None:
    # The checker itself: a cycle made only by a lazy import is a cycle; one made by a TYPE_CHECKING import is not.
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import harp.b\ndef f():\n    import harp.c\n"
    nodes = _runtime_nodes(ast.parse(source))
    imported = {alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    assert imported == {"harp.c"}
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_no_module_imports_another_modules_private_names() -> None:
    # harp._validation is the shared home of input checks: a private module, public names.
    offences = []
    for module in MODULES:
        for target, name in _imports(module):
            if name is None or not name.startswith("_") or name.startswith("__"):
                continue
            owner = _owner(target.rpartition(".")[0]) if target not in MODULES else _owner(target)
            if owner is not None and owner != module:
                offences.append(f"{module} imports {target}")
    assert offences == []


def test_no_room_is_too_big_unless_its_docstring_says_why() -> None:
    big = []
    for path in MODULES.values():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES and ROOM_NOTE not in (ast.get_docstring(ast.parse(text)) or ""):
            big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
    assert big == []


def test_the_library_knows_nothing_of_streamlit_or_the_app() -> None:
    offences = [
        f"{module} imports {target}"
        for module in MODULES
        if module.startswith("harp")
        for target, _ in _imports(module)
        if target.split(".")[0] in ("streamlit", "app")
    ]
    assert offences == []


def test_architecture_page_names_every_room() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rooms = {
        str(path.relative_to(ROOT).parent if path.name == "__init__.py" else path.relative_to(ROOT))
        for path in MODULES.values()
        if path.parent == ROOT / "harp" or path.parent.parent == ROOT / "harp" and path.name == "__init__.py"
    }
    missing = sorted(room for room in rooms if f"`{room.removeprefix('harp/')}" not in page)
    assert missing == []


def _loaded_after(code: str) -> set[str]:
    # The module list goes to stderr: the help text on stdout may name a dependency.
    script = f"import sys\n{code}\nsys.stderr.write(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return {name.split(".")[0] for name in result.stderr.split()}


HEAVY = {
    "numba",
    "duckdb",
    "torch",
    "transformers",
    "peft",
    "streamlit",
    "plotly",
    "sklearn",
    "faiss",
    "umap",
}


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import harp", id="import-harp"),
        pytest.param(
            "from harp.cli import main\ntry:\n    main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass",
            id="harp-help",
        ),
        pytest.param(
            "from harp.cli import main\ntry:\n    main(['--version'], standalone_mode=False)\nexcept SystemExit:\n"
            "    pass",
            id="harp-version",
        ),
    ],
)
def test_starting_loads_no_heavy_dependency(code: str) -> None:
    assert _loaded_after(code) & HEAVY == set()
