"""The content hash kept in meta: every write updates it in its own transaction, migration m003_content_hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from store_versions import downgrade_sql

from harp.select import select
from harp.store import Store, StoreError, export_parquet, import_parquet, migrations, points_from_members
from harp.store import hashing as content_hash


def raw(path: Path, *queries: str, params: list[Any] | None = None) -> list[list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path))
    try:
        return [con.execute(query, params or []).fetchall() for query in queries]
    finally:
        con.close()


def stored_and_recomputed(path: Path) -> tuple[str, str]:
    store = Store.open(path, read_only=True)
    return store.content_hash(), store.content_hash(recompute=True)


def test_the_stored_hash_is_one_meta_row_equal_to_the_recomputed_one(tmp_store: Path) -> None:
    stored, recomputed = stored_and_recomputed(tmp_store)
    assert stored == recomputed
    [[row]] = raw(tmp_store, "SELECT value FROM meta WHERE key = 'content_hash'")
    assert row == (stored,)
    digests = raw(tmp_store, "SELECT count(*) FROM meta WHERE starts_with(key, 'table_hash:')")
    assert digests == [[(len(content_hash.HASHED_TABLES),)]]


def _change_tree(store: Store) -> None:
    store.write_tree(
        points_from_members([[5, 1], [7], [0, 2, 3]], text=["a", None, "", "b", "c", "é"]),
        [0, 0, 1],
        [0, 1],
        2,
        discard_measurements=True,
    )


def _change_domains(store: Store) -> None:
    count = store.summary()["n_domains"]
    store.write_domains([f"d{d}" for d in range(count)], np.linspace(0.2, 0.8, count))


def _change_active(store: Store) -> None:
    active = store.selection_inputs().active
    store.set_active(~active)


def _change_effects(store: Store) -> None:
    inputs = store.selection_inputs()
    store.write_effects(inputs.phi + 0.001, inputs.sd, inputs.measured)


def _change_by_hand(store: Store) -> None:
    with store.write() as con:
        con.execute("UPDATE points SET text = 'edited' WHERE point_id = (SELECT min(point_id) FROM points)")


@pytest.mark.parametrize(
    "change",
    [_change_tree, _change_domains, _change_active, _change_effects, _change_by_hand],
    ids=["write_tree", "write_domains", "set_active", "write_effects", "raw write"],
)
def test_every_write_keeps_the_stored_hash_equal_to_the_contents(tmp_store: Path, change: Any) -> None:
    before = Store.open(tmp_store).content_hash()
    change(Store.open(tmp_store))
    stored, recomputed = stored_and_recomputed(tmp_store)
    assert stored == recomputed != before


def test_writes_outside_the_hashed_tables_keep_the_hash(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    before = store.content_hash()
    run = store.add_run("test")
    store.finish_run(run)
    store.add_measurements([{"leaf_id": 0, "domain_id": 0, "phi": 0.1, "variance": 0.01, "config_key": "x"}])
    store.write_layout(np.zeros(40), np.ones(40), "test:v1")
    assert stored_and_recomputed(tmp_store) == (before, before)


def test_a_write_that_fails_leaves_the_old_hash(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    before = store.content_hash()
    with pytest.raises(RuntimeError, match="boom"), store.write() as con:
        con.execute("DELETE FROM effects")
        raise RuntimeError("boom")
    assert stored_and_recomputed(tmp_store) == (before, before)


def test_rehash_names_only_hashed_tables(tmp_store: Path) -> None:
    with (
        pytest.raises(ValueError, match="rehash names 'runs', not one of"),
        Store.open(tmp_store).write(rehash=("runs",)),
    ):
        pass


def test_the_digest_does_not_depend_on_batches(tmp_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect(str(tmp_store), read_only=True)
    try:
        whole = {table: content_hash.table_digest(con, table) for table in content_hash.HASHED_TABLES}
        points = con.sql("SELECT * FROM points").to_arrow_table()  # physical order, not key order
        order = np.argsort(points["point_id"].to_numpy(), kind="stable")
        monkeypatch.setattr(content_hash, "_BATCH_ROWS", 7)
        assert {table: content_hash.table_digest(con, table) for table in whole} == whole
        assert content_hash.arrow_digest("points", points, order) == whole["points"]
    finally:
        con.close()


def test_selection_inputs_carry_the_hash_of_their_snapshot(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    inputs = store.selection_inputs()
    assert inputs.content_hash == store.content_hash()
    assert inputs.point_ids.size == inputs.member_offsets[-1] == int(inputs.leaf_size.sum())
    for g in (0, 17, inputs.n_leaves - 1):
        members = inputs.point_ids[inputs.member_offsets[g] : inputs.member_offsets[g + 1]]
        np.testing.assert_array_equal(inputs.members[g], members)
        assert np.shares_memory(inputs.members[g], inputs.point_ids)


def test_import_computes_the_hash_from_what_it_imports(tmp_store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    export_parquet(tmp_store, folder)
    expected = Store.open(tmp_store).content_hash()
    imported = import_parquet(folder, tmp_path / "copy.duckdb")
    assert imported.content_hash() == imported.content_hash(recompute=True) == expected


# -- migration m003_content_hash ----------------------------------------------------------------------------------


def _downgrade_to_v2(path: Path) -> None:
    raw(
        path,
        *downgrade_sql(2),
        "DELETE FROM meta WHERE key = 'content_hash' OR starts_with(key, 'table_hash:')",
    )


def save_small_selection(store: Store, name: str) -> None:
    """Save a 10-point HARP-C selection named ``name`` (also used by test_store_responses)."""
    inputs = store.selection_inputs()
    chosen = select(inputs.phi, inputs.base, envelope="C", members=inputs.members, budget=10)
    store.save_selection(
        name, envelope="C", weights=None, budget=10, pinned=None, excluded=None, selection=chosen
    )


def test_m003_carries_selections_of_these_contents_over_to_the_new_hash(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    with store.write(rehash=("points",)) as con:
        con.execute("UPDATE points SET response = NULL")  # what a version-2 store can hold
    save_small_selection(store, "current")
    save_small_selection(store, "older")
    new = store.content_hash()
    _downgrade_to_v2(tmp_store)
    con = duckdb.connect(str(tmp_store))
    try:
        old = content_hash.content_hash_v1(con)
    finally:
        con.close()
    raw(tmp_store, "UPDATE selections SET store_hash = ? WHERE name = 'current'", params=[old])
    raw(tmp_store, "UPDATE selections SET store_hash = 'abc' WHERE name = 'older'")
    Store.open(tmp_store)  # migrates
    hashes = {record["name"]: record["store_hash"] for record in Store.open(tmp_store).list_selections()}
    assert hashes == {"current": new, "older": "abc"}
    assert stored_and_recomputed(tmp_store) == (new, new)
    assert Store.open(tmp_store).meta()["schema_version"] == str(migrations.SCHEMA_VERSION)


def test_a_failing_m003_rolls_back(tmp_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _downgrade_to_v2(tmp_store)

    def broken(con: duckdb.DuckDBPyConnection, digests: Any) -> str:
        con.execute("DELETE FROM effects")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(content_hash, "record_digests", broken)
    with pytest.raises(
        StoreError,
        match=r"m003_content_hash failed and was rolled back \(the store stays at schema version 2\): disk on fire",
    ):
        Store.open(tmp_store)
    monkeypatch.undo()
    assert raw(tmp_store, "SELECT value FROM meta WHERE key = 'schema_version'") == [[("2",)]]
    assert raw(tmp_store, "SELECT count(*) FROM meta WHERE key = 'content_hash'") == [[(0,)]]
    assert raw(tmp_store, "SELECT count(*) FROM effects")[0][0][0] > 0
    Store.open(tmp_store)
    stored, recomputed = stored_and_recomputed(tmp_store)
    assert stored == recomputed


def test_the_count_of_measured_leaves_follows_every_write_of_the_effects(tmp_store: Path) -> None:
    def counted() -> int:
        return int(raw(tmp_store, "SELECT count(DISTINCT leaf_id) FROM effects WHERE measured")[0][0][0])

    store = Store.open(tmp_store)
    assert store.summary()["n_fit_leaves"] == counted() > 0
    with store.write() as con:  # by hand: unmark one leaf
        con.execute(
            "UPDATE effects SET measured = false WHERE leaf_id = (SELECT min(leaf_id) FROM effects WHERE measured)"
        )
    assert store.summary()["n_fit_leaves"] == counted()
    inputs = store.selection_inputs()
    store.write_effects(inputs.phi, inputs.sd, np.zeros_like(inputs.measured))
    assert store.summary()["n_fit_leaves"] == counted() == 0
