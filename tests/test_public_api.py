"""The public surfaces list what they re-export: ``harp.__all__`` and ``app.figures.__all__``, sorted, each name
importable; and the version has one source."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def imported_names(init: Path) -> set[str]:
    """The names an ``__init__`` imports from its submodules, at the top or under ``if TYPE_CHECKING:``."""
    tree = ast.parse(init.read_text())
    statements = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            statements += node.body
    return {
        alias.asname or alias.name
        for node in statements
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.level == 0
        and node.module.startswith(("harp", "app"))
        for alias in node.names
        if not (alias.asname or alias.name).startswith("_")  # a private alias is the package's own helper
    }


@pytest.mark.parametrize(
    ("package", "extra"), [("harp", {"__version__"}), ("app.figures", set())], ids=["harp", "app.figures"]
)
def test_all_is_sorted_and_is_what_the_package_re_exports(package, extra) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    assert set(module.__all__) == imported_names(Path(module.__file__)) | extra
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_harp_dir_lists_the_public_names() -> None:
    import harp

    assert set(harp.__all__) <= set(dir(harp))


def test_the_version_has_one_source() -> None:
    """pyproject reads the version from ``harp.__version__``; it writes none of its own."""
    import harp

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "harp.__version__"}
    assert isinstance(harp.__version__, str) and harp.__version__


@pytest.mark.parametrize("package", ["harp", "harp.store"])
def test_an_unknown_name_is_an_attribute_error_naming_the_package(package) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018
    assert "Store" in dir(module)
