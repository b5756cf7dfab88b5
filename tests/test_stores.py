"""harp.stores: a folder of stores, and the names a new store may take."""

from __future__ import annotations

from pathlib import Path

import pytest

from harp.stores import list_stores, new_store_path, stores_folder


def test_lists_duckdb_files_by_name_without_temporaries(tmp_path: Path) -> None:
    for name in ("b.duckdb", "a.duckdb", ".a.duckdb.import-1@h-00.tmp", ".hidden.duckdb", "notes.txt"):
        (tmp_path / name).write_bytes(b"x" * 3)
    (tmp_path / "folder.duckdb").mkdir()
    listed = list_stores(tmp_path)
    assert [s.name for s in listed] == ["a.duckdb", "b.duckdb"]
    assert listed[0].path == tmp_path.resolve() / "a.duckdb" and listed[0].size == 3


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("pool", "pool.duckdb", id="suffix-added"),
        pytest.param(" pool-2.v1.duckdb ", "pool-2.v1.duckdb", id="suffix-kept"),
    ],
)
def test_new_store_path(tmp_path: Path, name: str, expected: str) -> None:
    assert new_store_path(tmp_path, name) == tmp_path.resolve() / expected


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("../escape", id="parent"),
        pytest.param("sub/store", id="slash"),
        pytest.param(".hidden", id="hidden"),
        pytest.param("a b", id="space"),
        pytest.param(".duckdb", id="suffix-only"),
    ],
)
def test_unusable_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="name must be a plain file name"):
        new_store_path(tmp_path, name)


def test_a_taken_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pool.duckdb").write_bytes(b"mine")
    (tmp_path / "gone.duckdb.wal").write_bytes(b"log of a store")
    for name in ("pool", "pool.duckdb", "gone"):
        with pytest.raises(ValueError, match=r"already exists in .*choose another name"):
            new_store_path(tmp_path, name)
    assert (tmp_path / "pool.duckdb").read_bytes() == b"mine"


def test_the_folder_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="does not exist"):
        stores_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        list_stores(tmp_path / "file")
