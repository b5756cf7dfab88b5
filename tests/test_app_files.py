"""Where `harp app` finds the app: the installed ``harp_app`` package's entry script, else the checkout's."""

from __future__ import annotations

from pathlib import Path

import pytest

from harp.app_files import APP_PACKAGE, ENTRY_SCRIPT, app_entry, checkout_entry, installed_entry

ROOT = Path(__file__).resolve().parents[1]


def fake_app_package(folder: Path, name: str, *, with_entry: bool = True) -> Path:
    package = folder / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    if with_entry:
        (package / ENTRY_SCRIPT).write_text("")
    return package


def test_the_checkout_entry_is_the_repository_app() -> None:
    assert checkout_entry() == ROOT / "app" / "streamlit_app.py"
    assert checkout_entry().is_file()


def test_the_installed_package_is_found_without_importing_it(tmp_path, monkeypatch) -> None:
    package = fake_app_package(tmp_path, "fake_harp_app")
    (package / "__init__.py").write_text("raise RuntimeError('imported')")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed_entry("fake_harp_app") == (package / ENTRY_SCRIPT).resolve()


@pytest.mark.parametrize(
    "case",
    ["no package", "no entry script", "a module, not a package"],
    ids=["missing", "no-entry", "module"],
)
def test_no_installed_entry(tmp_path, monkeypatch, case) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    if case == "no entry script":
        fake_app_package(tmp_path, "fake_harp_app", with_entry=False)
    elif case == "a module, not a package":
        (tmp_path / "fake_harp_app.py").write_text("")
    assert installed_entry("fake_harp_app") is None


def test_app_entry_prefers_the_installed_package(tmp_path, monkeypatch) -> None:
    package = fake_app_package(tmp_path, "fake_harp_app")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert app_entry("fake_harp_app") == (package / ENTRY_SCRIPT).resolve()


def test_app_entry_falls_back_to_the_checkout() -> None:
    assert app_entry("no_such_harp_app_package") == checkout_entry()


def test_a_checkout_without_an_installed_app_serves_its_own() -> None:
    if installed_entry(APP_PACKAGE) is None:
        assert app_entry() == checkout_entry()
    else:  # an editable install maps harp_app to this checkout's app/
        assert app_entry().is_file()
