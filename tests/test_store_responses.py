"""Prompt and response apart: ``points.response`` (migration m004_point_responses), written, read, migrated,
exported and imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from store_versions import downgrade_sql
from test_store_hash import save_small_selection

from harp.store import Store, StoreError, export_parquet, import_parquet, migrations, points_from_members
from harp.store import hashing as content_hash

HOSTILE = '<script>alert(1)</script> [click](javascript:alert(2)) =HYPERLINK("http://x")'


def raw(path: Path, *queries: str, params: list[Any] | None = None) -> list[list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path))
    try:
        return [con.execute(query, params or []).fetchall() for query in queries]
    finally:
        con.close()


def _write_prompts_and_responses(store: Store) -> None:
    store.write_tree(
        points_from_members(
            [[5, 1], [7], [0, 2, 3]],
            text=["p5", "p1", "p7", "p0", "p2", "p3"],
            source=["a", "a", "b", "c", "c", None],
            response=["r5", None, HOSTILE, "r0", "", "r3"],
        ),
        [0, 0, 1],
        [0, 1],
        2,
        discard_measurements=True,
    )


def _columns(path: Path) -> list[str]:
    return [row[0] for row in raw(path, "DESCRIBE points")[0]]


def test_a_new_store_has_a_nullable_response_column(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "new.duckdb")
    assert _columns(store.path) == ["point_id", "leaf_id", "rank_in_leaf", "text", "source", "response"]
    assert (
        store.meta()["schema_version"] == str(migrations.SCHEMA_VERSION) == str(migrations.latest_version())
    )


def test_the_tree_keeps_prompt_and_response_apart(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    _write_prompts_and_responses(store)
    assert store.leaf_examples(1, with_response=True) == [(7, "p7", "b", HOSTILE)]
    assert store.leaf_examples(2, with_response=True) == [
        (0, "p0", "c", "r0"),
        (2, "p2", "c", ""),
        (3, "p3", None, "r3"),
    ]
    assert store.leaf_examples(0) == [(5, "p5", "a"), (1, "p1", "a")]  # the three-field form is unchanged
    assert store.content_hash() == store.content_hash(recompute=True)
    before = store.content_hash()
    store.write_tree(
        points_from_members(
            [[5, 1], [7], [0, 2, 3]],
            text=["p5", "p1", "p7", "p0", "p2", "p3"],
            source=["a", "a", "b", "c", "c", None],
            response=["r5", None, "other", "r0", "", "r3"],
        ),
        [0, 0, 1],
        [0, 1],
        2,
    )
    assert store.content_hash() != before  # the response is part of the contents
    assert store.content_hash() == store.content_hash(recompute=True)


def test_a_response_that_is_not_text_is_refused(tmp_store: Path) -> None:
    with pytest.raises(ValueError, match="response"):
        points_from_members([[0, 1]], response=["a", 3])  # type: ignore[list-item]


# -- migration m004_point_responses ------------------------------------------------------------------------------


def _downgrade_to_v3(path: Path) -> str:
    """Turn a current store into what schema version 3 wrote; return the version-3 content hash it records."""
    con = duckdb.connect(str(path))
    try:
        for statement in downgrade_sql(3):
            con.execute(statement)
        return content_hash.record_digests(con, {"points": content_hash.table_digest(con, "points")})
    finally:
        con.close()


def test_a_v3_store_gains_the_column_and_keeps_its_selections_current(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    with store.write(rehash=("points",)) as con:
        con.execute("UPDATE points SET response = NULL")  # what a version-3 store can hold
    save_small_selection(store, "current")
    save_small_selection(store, "older")
    texts = raw(tmp_store, "SELECT point_id, text, source FROM points ORDER BY point_id")[0]
    new = store.content_hash()
    old = _downgrade_to_v3(tmp_store)
    assert old != new
    raw(tmp_store, "UPDATE selections SET store_hash = ? WHERE name = 'current'", params=[old])
    raw(tmp_store, "UPDATE selections SET store_hash = 'abc' WHERE name = 'older'")
    with pytest.raises(StoreError, match="schema version 3"):
        Store.open(tmp_store, read_only=True)
    migrated = Store.open(tmp_store)
    assert _columns(tmp_store)[-1] == "response"
    assert raw(tmp_store, "SELECT count(*) FROM points WHERE response IS NOT NULL") == [[(0,)]]
    assert raw(tmp_store, "SELECT point_id, text, source FROM points ORDER BY point_id")[0] == texts
    hashes = {record["name"]: record["store_hash"] for record in migrated.list_selections()}
    assert hashes == {"current": new, "older": "abc"}
    assert migrated.content_hash() == migrated.content_hash(recompute=True) == new
    assert migrated.read_table("migrations")["name"].to_pylist()[3:5] == [
        "m004_point_responses",
        "m005_design_mixtures",
    ]


def test_a_failing_m004_rolls_back(tmp_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _downgrade_to_v3(tmp_store)

    def broken(con: duckdb.DuckDBPyConnection, digests: Any) -> str:
        con.execute("UPDATE points SET text = 'gone'")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(content_hash, "record_digests", broken)
    with pytest.raises(
        StoreError,
        match=r"m004_point_responses failed and was rolled back \(the store stays at schema version 3\): "
        "disk on fire",
    ):
        Store.open(tmp_store)
    monkeypatch.undo()
    assert "response" not in _columns(tmp_store)
    assert raw(tmp_store, "SELECT value FROM meta WHERE key = 'schema_version'") == [[("3",)]]
    assert raw(tmp_store, "SELECT value FROM meta WHERE key = 'content_hash'") == [[(old,)]]
    assert raw(tmp_store, "SELECT count(*) FROM points WHERE text = 'gone'") == [[(0,)]]
    assert Store.open(tmp_store).content_hash() == Store.open(tmp_store).content_hash(recompute=True)


# -- Parquet export and import -----------------------------------------------------------------------------------


def test_export_and_import_carry_the_response(tmp_store: Path, tmp_path: Path) -> None:
    store = Store.open(tmp_store)
    _write_prompts_and_responses(store)
    export_parquet(tmp_store, tmp_path / "export")
    assert pq.read_table(tmp_path / "export" / "points.parquet").column_names[-1] == "response"
    copy = import_parquet(tmp_path / "export", tmp_path / "copy.duckdb")
    assert copy.leaf_examples(1, with_response=True) == [(7, "p7", "b", HOSTILE)]
    assert copy.content_hash() == store.content_hash()


def test_an_export_without_the_column_still_imports(tmp_store: Path, tmp_path: Path) -> None:
    store = Store.open(tmp_store)
    save_small_selection(store, "mine")
    old = _downgrade_to_v3(tmp_store)
    raw(tmp_store, "UPDATE selections SET store_hash = ?", params=[old])
    # What schema version 3 exported (this harp-explorer only exports current stores): every table as it is.
    (tmp_path / "export").mkdir()
    tables = [row[0] for row in raw(tmp_store, "SELECT table_name FROM information_schema.tables")[0]]
    raw(
        tmp_store,
        *(f"COPY {table} TO '{tmp_path / 'export' / table}.parquet' (FORMAT PARQUET)" for table in tables),
    )
    assert "response" not in pq.read_table(tmp_path / "export" / "points.parquet").column_names
    copy = import_parquet(tmp_path / "export", tmp_path / "copy.duckdb")
    assert copy.meta()["schema_version"] == str(migrations.SCHEMA_VERSION)
    assert raw(copy.path, "SELECT count(*) FROM points WHERE response IS NOT NULL") == [[(0,)]]
    assert copy.content_hash() == copy.content_hash(recompute=True)
    assert [record["store_hash"] for record in copy.list_selections()] == [copy.content_hash()]
