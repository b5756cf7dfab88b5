"""The DuckDB store: schema, migrations, file errors, writes, hashing, Parquet interchange, durability."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import harp
from harp.cli import main as cli_main
from harp.store import Store, StoreError, export_parquet, import_parquet, migrations, points_from_members

REPO = Path(harp.__file__).resolve().parents[1]
ALL_TABLES = list(migrations.TABLE_KEYS)
CURRENT = migrations.SCHEMA_VERSION  # the tests below append a migration after the current ones
KNOWN = [migration.name for migration in migrations.MIGRATIONS]


def raw(path: Path, *queries: str) -> list[list[tuple[Any, ...]]]:
    """Run SQL on a store file directly, bypassing harp (to damage or inspect it)."""
    con = duckdb.connect(str(path))
    try:
        return [con.execute(query).fetchall() for query in queries]
    finally:
        con.close()


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


# -- creating and opening -----------------------------------------------------------------------------------------


def test_create_then_open_gives_empty_store_at_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    Store.create(path)
    store = Store.open(path)
    assert store.path == path
    assert store.table_names() == ALL_TABLES
    meta = store.meta()
    assert meta["schema_version"] == str(migrations.SCHEMA_VERSION) == str(migrations.latest_version())
    assert meta["harp_version"] == harp.__version__
    assert "created_at" in meta
    names = store.read_table("migrations")["name"].to_pylist()
    assert (
        names
        == KNOWN
        == [
            "m001_initial",
            "m002_mixtures",
            "m003_content_hash",
            "m004_point_responses",
            "m005_design_mixtures",
            "m006_point_positions",
            "m007_selection_method",
        ]
    )
    assert store.summary()["n_points"] == 0
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_create_refuses_existing_file_unless_overwrite(tiny_store: Path) -> None:
    with pytest.raises(StoreError, match="already exists; pass overwrite=True"):
        Store.create(tiny_store)
    Store.create(tiny_store, overwrite=True)
    assert Store.open(tiny_store).summary()["n_points"] == 0


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param(b"", r"is empty \(0 bytes\)", id="empty"),
        pytest.param(b"hello, I am a text file, not a database" * 10, "not a DuckDB file", id="text"),
        pytest.param(os.urandom(3000), "not a DuckDB file", id="random-bytes"),
    ],
)
def test_open_refuses_unusable_files_naming_the_path(
    tmp_path: Path, content: bytes | None, match: str
) -> None:
    path = tmp_path / "bad.duckdb"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StoreError, match=match) as caught:
        Store.open(path)
    assert str(path) in str(caught.value)
    if content is None:
        assert not path.exists(), "opening a missing store must not create one"


def test_open_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder"):
        Store.open(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "scribble"])
def test_open_refuses_a_corrupt_store(tiny_store: Path, damage: str) -> None:
    data = bytearray(tiny_store.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data[5000:20000] = os.urandom(15000)
    tiny_store.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt") as caught:
        Store(tiny_store).selection_inputs()
    assert str(tiny_store) in str(caught.value)


def test_open_refuses_a_foreign_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    raw(path, "CREATE TABLE customers (id INTEGER, name VARCHAR)")
    with pytest.raises(StoreError, match=r"DuckDB database but not a HARP store \(it holds customers\)"):
        Store.open(path)
    blank = tmp_path / "blank.duckdb"
    raw(blank, "CREATE TABLE meta (key VARCHAR, value VARCHAR)")
    with pytest.raises(StoreError, match="no schema_version"):
        Store.open(blank)


def test_newer_schema_version_is_refused_with_upgrade_advice(tiny_store: Path) -> None:
    raw(tiny_store, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"schema version 99.*upgrade harp-explorer \(pip install -U"):
            Store.open(tiny_store, read_only=read_only)
    assert raw(tiny_store, "SELECT value FROM meta WHERE key = 'schema_version'")[0] == [("99",)], (
        "left untouched"
    )


def test_unknown_applied_migration_is_refused(tiny_store: Path) -> None:
    raw(tiny_store, "INSERT INTO migrations VALUES ('m999_from_the_future', now()::TIMESTAMP)")
    with pytest.raises(StoreError, match="m999_from_the_future.*upgrade harp-explorer"):
        Store.open(tiny_store)


def test_inconsistent_bookkeeping_is_reported_as_damage(tiny_store: Path) -> None:
    raw(tiny_store, "DELETE FROM migrations")
    with pytest.raises(StoreError, match="damaged"):
        Store.open(tiny_store)


# -- migrations ---------------------------------------------------------------------------------------------------


def _m900_add_notes(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE notes (leaf_id INTEGER PRIMARY KEY, note VARCHAR)")
    con.execute("INSERT INTO notes SELECT leaf_id, 'note ' || leaf_id FROM leaves")


def _m900_broken(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE half_done (x INTEGER)")
    con.execute("UPDATE domains SET base = 0")
    raise RuntimeError("disk on fire")


def test_older_store_is_migrated_on_open(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = Store.open(tiny_store).content_hash()
    steps = [*migrations.MIGRATIONS, migrations.Migration("m900_add_notes", _m900_add_notes)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setitem(migrations.TABLE_KEYS, "notes", ("leaf_id",))
    with pytest.raises(StoreError, match=f"schema version {CURRENT}; .* run `harp migrate .*tiny.duckdb`"):
        Store.open(tiny_store, read_only=True)
    result = CliRunner().invoke(cli_main, ["migrate", str(tiny_store)])
    assert result.exit_code == 0, result.output
    assert f'"schema_version": "{CURRENT + 1}"' in result.stdout
    store = Store.open(tiny_store, read_only=True)
    assert store.meta()["schema_version"] == str(CURRENT + 1)
    assert store.read_table("migrations")["name"].to_pylist() == [*KNOWN, "m900_add_notes"]
    assert store.read_table("notes")["note"].to_pylist() == ["note 0", "note 1", "note 2", "note 3"]
    assert store.content_hash() == before, "a migration that adds a table keeps the data"
    Store.open(tiny_store)  # already current: nothing to do
    assert len(store.read_table("migrations")) == CURRENT + 1


def test_version_zero_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v0.duckdb"
    raw(
        path,
        "CREATE TABLE meta (key VARCHAR, value VARCHAR)",
        "INSERT INTO meta VALUES ('schema_version', '0')",
    )
    store = Store.open(path)
    assert store.meta()["schema_version"] == str(CURRENT)
    assert store.table_names() == ALL_TABLES


def test_failing_migration_rolls_back(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = Store.open(tiny_store).content_hash()
    steps = [*migrations.MIGRATIONS, migrations.Migration("m900_broken", _m900_broken)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(
        StoreError, match=f"m900_broken failed and was rolled back.*schema version {CURRENT}.*disk on fire"
    ):
        Store.open(tiny_store)
    monkeypatch.undo()
    tables, version, applied = raw(
        tiny_store,
        "SELECT table_name FROM duckdb_tables() WHERE table_name = 'half_done'",
        "SELECT value FROM meta WHERE key = 'schema_version'",
        "SELECT name FROM migrations",
    )
    assert tables == [] and version == [(str(CURRENT),)] and sorted(applied) == [(name,) for name in KNOWN]
    assert Store.open(tiny_store).content_hash() == before


# -- writes and reads ---------------------------------------------------------------------------------------------


def test_tiny_store_round_trips_every_write(tiny_store: Path, tiny_values: dict[str, Any]) -> None:
    store = Store.open(tiny_store, read_only=True)
    inputs = store.selection_inputs()
    np.testing.assert_array_equal(inputs.phi, tiny_values["phi"])
    np.testing.assert_array_equal(inputs.sd, tiny_values["sd"])
    np.testing.assert_array_equal(
        inputs.measured, np.repeat(np.array(tiny_values["measured"])[:, None], 3, axis=1)
    )
    np.testing.assert_array_equal(inputs.base, tiny_values["base"])
    np.testing.assert_array_equal(inputs.active, tiny_values["active"])
    assert inputs.domain_names == tiny_values["domain_names"]
    assert [m.tolist() for m in inputs.members] == tiny_values["members"]
    assert all(m.dtype == np.int64 for m in inputs.members)
    np.testing.assert_array_equal(inputs.leaf_parent, tiny_values["leaf_parent"])
    np.testing.assert_array_equal(inputs.parent_large, tiny_values["parent_large"])
    np.testing.assert_array_equal(inputs.leaf_size, [2, 1, 3, 2])
    assert (inputs.n_leaves, inputs.n_domains) == (4, 3)
    x, y = store.layout()  # type: ignore[misc]
    np.testing.assert_array_equal(x, tiny_values["x"])
    np.testing.assert_array_equal(y, tiny_values["y"])
    assert store.layout_key() == "tiny:v1"
    assert store.leaf_examples(2) == [
        (32, "See [docs](http://example.com)", "flan"),
        (30, "Explain photosynthesis.", "flan"),
        (31, "Line one\nline two", None),
    ]
    assert store.leaf_examples(2, limit=1, offset=1) == [(30, "Explain photosynthesis.", "flan")]
    assert store.read_table("parents").to_pylist() == [
        {"parent_id": 0, "large_id": 0, "size": 3},
        {"parent_id": 1, "large_id": 0, "size": 5},
    ]
    assert store.read_table("large_nodes").to_pylist() == [{"large_id": 0, "size": 8}]
    previews = store.leaf_previews(per_leaf=1)
    assert previews["point_id"].to_pylist() == [10, 20, 32, 41]
    domains = store.read_table("domains").to_pylist()
    assert domains[1] == {"domain_id": 1, "name": "biology", "base": 0.96, "eval_size": 50, "active": False}


def test_leaf_examples_checks_its_arguments(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    with pytest.raises(ValueError, match=r"leaf_id must lie in 0..3, got 4"):
        store.leaf_examples(4)
    with pytest.raises(ValueError, match="limit must be an integer >= 0"):
        store.leaf_examples(0, limit=-1)


def test_write_tree_replaces_the_tree_and_drops_derived_data(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    points = {"point_id": [5, 6, 7], "leaf_id": [1, 0, 1], "text": ["a", "b", None]}
    store.write_tree(points, [0, 0], [0], 1)
    assert store.read_table("points")["point_id"].to_pylist() == [5, 6, 7]
    assert store.read_table("points").to_pydict()["rank_in_leaf"] == [0, 0, 1]
    assert store.layout() is None and store.layout_key() is None
    assert store.summary()["has_effects"] is False
    with pytest.raises(StoreError, match="no posterior effects"):
        store.selection_inputs()


def test_write_tree_refuses_to_drop_measurements_unless_asked(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_measurements([{"leaf_id": 0, "domain_id": 0, "phi": 0.1, "variance": 0.01}])
    points = {"point_id": [1], "leaf_id": [0]}
    with pytest.raises(ValueError, match="holds 1 measurements.*discard_measurements=True"):
        store.write_tree(points, [0], [0], 1)
    store.write_tree(points, [0], [0], 1, discard_measurements=True)
    assert store.summary()["n_measurements"] == 0


def _tree(**change: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "points": {"point_id": [1, 2, 3, 4], "leaf_id": [0, 1, 1, 2], "rank_in_leaf": [0, 1, 0, 0]},
        "leaves": [0, 0, 1],
        "parents": [0, 0],
        "large_nodes": 1,
    }
    points = change.pop("points", {})
    tree["points"] = {**tree["points"], **points}
    tree.update(change)
    return tree


@pytest.mark.parametrize(
    ("tree", "match"),
    [
        pytest.param(
            _tree(points={"point_id": [1, 2, 2, 4]}), r"point_id'\] lists point 2 more than once", id="dup"
        ),
        pytest.param(
            _tree(points={"point_id": [1, -2, 3, 4]}), r"point_id'\] must be >= 0", id="negative-id"
        ),
        pytest.param(_tree(points={"leaf_id": [0, 0, 0, 2]}), "leaf 1 has none", id="empty-leaf"),
        pytest.param(
            _tree(points={"leaf_id": [0, 1, 1, 3]}), r"holds 3, outside 0..2", id="leaf-out-of-range"
        ),
        pytest.param(_tree(points={"rank_in_leaf": [0, 1, 1, 0]}), "leaf 1 does not", id="rank-repeated"),
        pytest.param(_tree(points={"rank_in_leaf": [0, 2, 0, 0]}), "0..n-1", id="rank-gap"),
        pytest.param(_tree(points={"leaf_id": [0.0, 1.0, 1.0, 2.0]}), "must hold integers", id="float-ids"),
        pytest.param(
            _tree(points={"text": [1, 2, 3, 4]}), r"points\['text'\] must hold strings", id="text-ints"
        ),
        pytest.param(_tree(points={"text": ["a"]}), "has 1 entries, expected 4", id="text-short"),
        pytest.param(_tree(leaves=[0, 0, 2]), r"leaves holds 2, outside 0..1", id="parent-out-of-range"),
        pytest.param(_tree(leaves=[1, 1, 1]), "parent 0 has none", id="empty-parent"),
        pytest.param(_tree(parents=[0, 1]), "parents holds 1, outside 0..0", id="large-out-of-range"),
        pytest.param(_tree(large_nodes=2), "large node 1 has none", id="empty-large"),
        pytest.param(_tree(large_nodes=[1, 0]), "large_nodes must be a count K or the ids", id="large-ids"),
        pytest.param(_tree(leaves=[]), "leaves must not be empty", id="no-leaves"),
        pytest.param(
            _tree(points={"point_id": None}), "points must have a 'point_id' column", id="no-column"
        ),
    ],
)
def test_write_tree_validates_naming_the_argument(tiny_store: Path, tree: dict[str, Any], match: str) -> None:
    points = {key: value for key, value in tree.pop("points").items() if value is not None}
    store = Store.open(tiny_store)
    before = store.content_hash()
    with pytest.raises(ValueError, match=match):
        store.write_tree(points, **tree)
    assert store.content_hash() == before


def test_write_tree_accepts_pyarrow_and_default_ranks(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s.duckdb")
    table = pa.table({"point_id": [9, 8, 7], "leaf_id": [0, 0, 0], "source": ["a", "b", "c"]})
    store.write_tree(table, np.array([0]), np.array([0]), np.array([0]))
    assert store.leaf_examples(0) == [(9, None, "a"), (8, None, "b"), (7, None, "c")]


def test_points_from_members() -> None:
    table = points_from_members([np.array([5, 3]), np.array([7])], text=["a", "b", None])
    assert table.to_pydict() == {
        "point_id": [5, 3, 7],
        "leaf_id": [0, 0, 1],
        "rank_in_leaf": [0, 1, 0],
        "text": ["a", "b", None],
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"mean": np.zeros((4, 2))}, r"mean has shape \(4, 2\), expected \(4, 3\)", id="shape"),
        pytest.param({"mean": np.full((4, 3), np.nan)}, "mean must be finite, found nan", id="nan"),
        pytest.param({"sd": np.full((4, 3), np.inf)}, "sd must be finite", id="inf"),
        pytest.param(
            {"sd": -np.ones((4, 3))}, r"sd must be >= 0, got -1.0 at index \(0, 0\)", id="negative-sd"
        ),
        pytest.param({"measured": np.full((4, 3), 2)}, "measured must hold booleans", id="measured-ints"),
        pytest.param(
            {"measured": np.ones((3, 3), bool)}, r"measured has shape \(3, 3\)", id="measured-shape"
        ),
    ],
)
def test_write_effects_validates(tiny_store: Path, change: dict[str, Any], match: str) -> None:
    arguments = {
        "mean": np.zeros((4, 3)),
        "sd": np.ones((4, 3)),
        "measured": np.zeros((4, 3), bool),
        **change,
    }
    with pytest.raises(ValueError, match=match):
        Store.open(tiny_store).write_effects(**arguments)


def test_write_effects_needs_tree_and_domains(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="write the tree and the domains before the effects"):
        Store.create(tmp_path / "s.duckdb").write_effects(
            np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1))
        )


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        pytest.param({"names": ["a", "a", "b"]}, "names lists domain 'a' more than once", id="duplicate"),
        pytest.param({"names": ["a", "", "b"]}, r"names\[1\] must be a non-empty string", id="blank"),
        pytest.param({"names": "abc"}, "names must be a sequence", id="string"),
        pytest.param(
            {"base": [0.5, 1.2, 0.1]}, r"base must lie in \[0, 1\], got 1.2 for domain 1 \('b'\)", id="base"
        ),
        pytest.param({"base": [0.5, 0.2]}, r"base has shape \(2,\), expected \(3,\)", id="base-short"),
        pytest.param({"eval_size": [1, -1, 2]}, "eval_size must be >= 0", id="eval-size"),
        pytest.param({"active": [1, 0]}, r"active has shape \(2,\)", id="active-short"),
        pytest.param(
            {"names": ["a", "b"], "base": [0.1, 0.2]}, "holds 12 effects for its 3 domains", id="count"
        ),
    ],
)
def test_write_domains_validates(tiny_store: Path, arguments: dict[str, Any], match: str) -> None:
    full = {"names": ["a", "b", "c"], "base": [0.5, 0.5, 0.5], **arguments}
    with pytest.raises(ValueError, match=match):
        Store.open(tiny_store).write_domains(**full)


def test_write_domains_keeps_effects_when_the_count_is_unchanged(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.write_domains(["a", "b", "c"], [0.1, 0.2, 0.3])
    inputs = store.selection_inputs()
    assert inputs.domain_names == ["a", "b", "c"] and inputs.active.all()
    store.set_active([False, True, False])
    np.testing.assert_array_equal(store.selection_inputs().active, [False, True, False])
    assert store.read_table("domains")["eval_size"].null_count == 3


def test_measurements_add_and_replace(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    rows = {
        "leaf_id": [0, 0, 2],
        "domain_id": [0, 1, 2],
        "phi": [0.1, -0.2, 0.3],
        "variance": [0.01, 0.02, 0.03],
        "n_eval": [10, 10, 20],
        "run_id": ["r1", "r1", "r1"],
        "config_key": ["lora-r16", "lora-r16", "lora-r16"],
    }
    assert store.add_measurements(rows) == 3
    assert store.add_measurements(
        [{"leaf_id": 0, "domain_id": 0, "phi": 0.5, "variance": 0.0, "config_key": "lora-r16"}]
    )
    table = store.read_table("measurements").to_pydict()
    assert table["phi"] == [0.5, -0.2, 0.3], "same key replaces"
    assert table["n_eval"] == [None, 10, 20]
    np.testing.assert_array_equal(store.measured_leaves(), [0, 2])
    np.testing.assert_array_equal(store.measured_leaves("other"), [])
    assert store.add_measurements([]) == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"leaf_id": [4]}, r"rows\['leaf_id'\] holds 4, outside 0..3", id="leaf"),
        pytest.param({"domain_id": [3]}, r"rows\['domain_id'\] holds 3, outside 0..2", id="domain"),
        pytest.param({"phi": [float("nan")]}, r"rows\['phi'\] must be finite", id="nan"),
        pytest.param({"variance": [-1.0]}, r"rows\['variance'\] must be >= 0", id="variance"),
        pytest.param({"n_eval": [-5]}, r"rows\['n_eval'\] must hold 1 integers >= 0", id="n-eval"),
    ],
)
def test_measurements_validate(tiny_store: Path, change: dict[str, Any], match: str) -> None:
    row = {"leaf_id": [0], "domain_id": [0], "phi": [0.1], "variance": [0.1], **change}
    with pytest.raises(ValueError, match=match):
        Store.open(tiny_store).add_measurements(row)


def test_measurements_refuse_duplicate_keys(tiny_store: Path) -> None:
    rows = [{"leaf_id": 1, "domain_id": 2, "phi": 0.0, "variance": 0.0}] * 2
    with pytest.raises(ValueError, match="measure leaf 1 on domain 2 twice"):
        Store.open(tiny_store).add_measurements(rows)


def test_measurements_land_with_their_finished_record_or_not_at_all(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    row = {"leaf_id": [1], "domain_id": [0], "phi": [0.1], "variance": [0.1]}
    record = {
        "run_id": "m-leaf-1",
        "kind": "measure-leaf",
        "config": {"leaf_id": 1},
        "timings": {"train_s": 2.0},
    }
    assert store.add_measurements(row, record=record) == 1
    [run] = store.runs()
    assert run["run_id"] == "m-leaf-1" and run["status"] == "done" and run["timings"] == {"train_s": 2.0}
    assert run["config"] == {"leaf_id": 1} and run["finished_at"] is not None
    # a record whose run id exists: the whole write is refused, the measurement too
    other = {"leaf_id": [2], "domain_id": [0], "phi": [0.2], "variance": [0.1]}
    with pytest.raises(ValueError, match=r"record\['run_id'\] 'm-leaf-1' already exists"):
        store.add_measurements(other, record=record)
    np.testing.assert_array_equal(store.measured_leaves(), [1])
    with pytest.raises(ValueError, match=r"record\['kind'\] must be a non-empty string"):
        store.add_measurements(other, record={"run_id": "x", "kind": ""})
    np.testing.assert_array_equal(store.measured_leaves(), [1])


def test_runs_are_recorded(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    run_id = store.add_run("measure", {"gpus": 2, "lora": {"r": 16}})
    store.finish_run(run_id, status="done", timings={"train": 1.5})
    [run] = store.runs()
    assert run["run_id"] == run_id and run["kind"] == "measure" and run["status"] == "done"
    assert run["config"] == {"gpus": 2, "lora": {"r": 16}} and run["timings"] == {"train": 1.5}
    assert run["finished_at"] >= run["started_at"]
    with pytest.raises(ValueError, match="already exists"):
        store.add_run("measure", run_id=run_id)
    with pytest.raises(ValueError, match="is not a run of"):
        store.finish_run("nope")


def test_layout_validates(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    with pytest.raises(ValueError, match=r"x has shape \(2,\), expected \(4,\)"):
        store.write_layout([1, 2], [1, 2], "k")
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        store.write_layout([1, 2, 3, 4], [1, 2, 3, 4], "")


def test_a_failing_write_block_leaves_the_store_as_it_was(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    with pytest.raises(RuntimeError, match="boom"), store.write() as con:
        con.execute("DELETE FROM points")
        con.execute("UPDATE effects SET mean = 1")
        raise RuntimeError("boom")
    assert store.content_hash() == before


def test_read_only_store_refuses_writes(tiny_store: Path) -> None:
    store = Store.open(tiny_store, read_only=True)
    with pytest.raises(StoreError, match="opened read-only"):
        store.write_layout([0, 0, 0, 0], [0, 0, 0, 0], "k")


def test_selection_inputs_needs_a_tree(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="0 leaves and 0 domains"):
        Store.create(tmp_path / "s.duckdb").selection_inputs()


def test_columns_are_read_from_their_arrow_buffers_at_any_offset() -> None:
    from harp.store.queries import numpy_column

    batch = pa.record_batch(
        {
            "leaf": pa.array(np.arange(11, dtype=np.int32)),
            "measured": pa.array([True, False, True, True, False, False, True, True, True, False, True]),
            "mean": pa.array(np.linspace(-1.0, 1.0, 11)),
            "sd": pa.array([0.5, None, 0.25, 1.0, 2.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
        }
    )
    for start, length in ((0, 11), (3, 5), (9, 2), (5, 0)):  # offsets that straddle the bitmap's bytes
        part = batch.slice(start, length)
        leaf = numpy_column(part, 0, np.int64)
        assert leaf.dtype == np.int64 and leaf.tolist() == list(range(start, start + length))
        assert numpy_column(part, 1, np.bool_).tolist() == batch.column(1).to_pylist()[start : start + length]
        np.testing.assert_array_equal(
            numpy_column(part, 2, np.float64), np.linspace(-1.0, 1.0, 11)[start : start + length]
        )
    with_null = numpy_column(batch.slice(1, 3), 3, np.float64)  # a column with nulls takes pyarrow's own path
    assert np.isnan(with_null[0]) and with_null[1:].tolist() == [0.25, 1.0]


def test_harp_select_imports_neither_pandas_nor_what_it_does_not_use(
    tiny_store: Path, tmp_path: Path
) -> None:
    # pyarrow's to_numpy imports pandas (a fifth of a second of every `harp select`): the store reads buffers;
    # pyarrow.compute and pyarrow.parquet serve writes, hashing and Parquet only.
    out = tmp_path / "chosen.csv"
    script = (
        "import sys; from harp.cli import main; "
        f"main(['-q', 'select', '--store', {str(tiny_store)!r}, '--envelope', 'C', '--out', {str(out)!r}], "
        "standalone_mode=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas' or m in "
        "('pyarrow.compute', 'pyarrow.parquet')), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.is_file() and result.stderr.strip() == "[]"


def test_store_disappearing_is_reported(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    tiny_store.unlink()
    with pytest.raises(StoreError, match="has disappeared"):
        store.write_layout([0, 0, 0, 0], [0, 0, 0, 0], "k")
    assert not tiny_store.exists()


# -- whitelist ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["points; DROP TABLE points", "sqlite_master", "duckdb_tables()", "", "POINTS"]
)
def test_read_table_refuses_names_off_the_whitelist(tiny_store: Path, name: str) -> None:
    store = Store.open(tiny_store)
    with pytest.raises(ValueError, match="invalid table name"):
        store.read_table(name)
    assert store.read_table("points").num_rows == 8


# -- content hash -------------------------------------------------------------------------------------------------


def test_content_hash_is_stable_and_ignores_bookkeeping(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    first = store.content_hash()
    assert len(first) == 64 and first == store.content_hash()
    store.add_run("anything", {"a": 1})
    store.add_measurements([{"leaf_id": 0, "domain_id": 0, "phi": 0.1, "variance": 0.0}])
    selection = SimpleNamespace(points=np.array([10, 11]), point_leaves=np.array([0, 0]))
    store.save_selection(
        "s", envelope="C", weights=None, budget=None, pinned=None, excluded=None, selection=selection
    )
    assert store.content_hash() == first


def test_content_hash_of_the_tiny_store_is_pinned(tiny_store: Path) -> None:
    # Saved selections record this hash; a change of the hash format must be deliberate (and versioned:
    # m003_content_hash moved from v1, 766b9959..., to the per-table v2 kept in meta; m004_point_responses added
    # the points' response column, 30250253... before it, and carries saved selections over).
    expected = "11c632131a3a41e9974fde4a3d36e76f04e7e9db16b1a0ef0cfc0a0b40024a02"
    assert Store.open(tiny_store).content_hash() == expected
    assert Store.open(tiny_store).content_hash(recompute=True) == expected
    summary = Store.open(tiny_store).summary(with_hash=False)
    assert summary["content_hash"] is None and summary["n_points"] == 8


def test_content_hash_ignores_physical_row_order(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    with store.write() as con:
        for table in ("effects", "points", "domains"):
            con.execute(f"CREATE TEMP TABLE copy_{table} AS SELECT * FROM {table}")
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} SELECT * FROM copy_{table} ORDER BY random()")
    assert store.content_hash() == before


def test_content_hash_changes_when_content_changes(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    phi = np.array(store.selection_inputs().phi)
    phi[3, 2] += 1e-12
    sd = store.selection_inputs().sd
    measured = store.selection_inputs().measured
    store.write_effects(phi, sd, measured)
    changed = store.content_hash()
    assert changed != before
    with store.write() as con:
        con.execute("UPDATE points SET text = 'other' WHERE point_id = 20")
    assert store.content_hash() not in (before, changed)


def test_content_hash_distinguishes_null_from_empty_text(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    with store.write() as con:
        con.execute("UPDATE points SET source = '' WHERE point_id = 31")
    assert store.content_hash() != before


# -- selections ---------------------------------------------------------------------------------------------------


def _selection() -> SimpleNamespace:
    return SimpleNamespace(points=np.array([32, 30, 10], dtype=np.int64), point_leaves=np.array([2, 2, 0]))


def test_save_and_load_selection(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    selection_id = store.save_selection(
        "best",
        envelope="harp-c",
        weights=[1.0, 0.0, 2.0],
        budget=3,
        pinned=[2],
        excluded=[1],
        selection=_selection(),
    )
    assert selection_id == 0
    loaded = store.load_selection("best")
    assert loaded["envelope"] == "C" and loaded["weights"] == [1.0, 0.0, 2.0] and loaded["budget"] == 3
    assert loaded["pinned"] == [2] and loaded["excluded"] == [1] and loaded["n_points"] == 3
    assert loaded["store_hash"] == store.content_hash()
    np.testing.assert_array_equal(loaded["points"], [32, 30, 10])
    np.testing.assert_array_equal(loaded["point_leaves"], [2, 2, 0])
    second = store.save_selection(
        "plain", envelope="E", weights=None, budget=None, pinned=None, excluded=None, selection=_selection()
    )
    assert second == 1
    listed = store.list_selections()
    assert [s["name"] for s in listed] == ["best", "plain"]
    assert listed[1]["weights"] is None and listed[1]["budget"] is None and listed[1]["pinned"] == []


def test_save_selection_refuses_duplicate_name_unless_overwrite(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    arguments: dict[str, Any] = {
        "envelope": "C",
        "weights": None,
        "budget": None,
        "pinned": None,
        "excluded": None,
    }
    store.save_selection("mine", selection=_selection(), **arguments)
    with pytest.raises(ValueError, match="a selection named 'mine' already exists.*overwrite=True"):
        store.save_selection("mine", selection=_selection(), **arguments)
    shorter = SimpleNamespace(points=np.array([20]), point_leaves=np.array([1]))
    store.save_selection("mine", selection=shorter, overwrite=True, **{**arguments, "budget": 1})
    loaded = store.load_selection("mine")
    assert loaded["budget"] == 1 and loaded["points"].tolist() == [20]
    assert store.read_table("selection_points").num_rows == 1
    assert len(store.list_selections()) == 1


def test_save_selection_validates(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    arguments: dict[str, Any] = {"weights": None, "budget": None, "pinned": None, "excluded": None}
    with pytest.raises(ValueError, match="envelope must be one of"):
        store.save_selection("x", envelope="Z", selection=_selection(), **arguments)
    with pytest.raises(ValueError, match="budget must be >= 0"):
        store.save_selection("x", envelope="C", selection=_selection(), **{**arguments, "budget": -1})
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        store.save_selection(" ", envelope="C", selection=_selection(), **arguments)
    with pytest.raises(ValueError, match="selection.points has 3 entries but selection.point_leaves has 1"):
        bad = SimpleNamespace(points=np.array([1, 2, 3]), point_leaves=np.array([0]))
        store.save_selection("x", envelope="C", selection=bad, **arguments)
    with pytest.raises(ValueError, match="store_hash must be a content hash .*, got 'abc'"):
        store.save_selection("x", envelope="C", selection=_selection(), store_hash="abc", **arguments)
    assert store.list_selections() == []


def test_save_selection_records_the_hash_it_is_given(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    arguments: dict[str, Any] = {"weights": None, "budget": None, "pinned": None, "excluded": None}
    earlier = "0" * 64  # the hash of a snapshot read before some write
    store.save_selection("given", envelope="C", selection=_selection(), store_hash=earlier, **arguments)
    store.save_selection("now", envelope="C", selection=_selection(), **arguments)
    assert [record["store_hash"] for record in store.list_selections()] == [earlier, store.content_hash()]


def test_load_unknown_selection(tiny_store: Path) -> None:
    with pytest.raises(ValueError, match=r"no selection named 'nope' .*\(saved: none\)"):
        Store.open(tiny_store).load_selection("nope")


# -- Parquet export and import ------------------------------------------------------------------------------------


def test_export_import_round_trip_is_byte_equal(tmp_store: Path, tmp_path: Path) -> None:
    store = Store.open(tmp_store)
    selection = SimpleNamespace(points=np.array([3, 1]), point_leaves=np.array([0, 0]))
    store.save_selection(
        "s", envelope="E", weights=None, budget=2, pinned=[0], excluded=[], selection=selection
    )
    written = export_parquet(tmp_store, tmp_path / "export")
    assert sorted(p.name for p in written) == sorted(f"{t}.parquet" for t in ALL_TABLES)
    copy = import_parquet(tmp_path / "export", tmp_path / "copy.duckdb")
    for table in ALL_TABLES:
        original, imported = store.read_table(table), copy.read_table(table)
        assert imported.schema == original.schema, table
        assert imported.equals(original), table
    assert copy.content_hash() == store.content_hash()
    assert not list(tmp_path.glob(".*tmp"))


def test_import_never_clobbers_unless_overwrite(tiny_store: Path, tmp_store: Path, tmp_path: Path) -> None:
    export_parquet(tiny_store, tmp_path / "export")
    before = tmp_store.read_bytes()
    with pytest.raises(StoreError, match="already exists; pass overwrite=True"):
        import_parquet(tmp_path / "export", tmp_store)
    assert tmp_store.read_bytes() == before
    imported = import_parquet(tmp_path / "export", tmp_store, overwrite=True)
    assert imported.content_hash() == Store.open(tiny_store).content_hash()


def test_export_refuses_to_mix_with_other_files(tiny_store: Path, tmp_path: Path) -> None:
    export_parquet(tiny_store, tmp_path / "export")
    with pytest.raises(StoreError, match="already holds an export"):
        export_parquet(tiny_store, tmp_path / "export")
    export_parquet(tiny_store, tmp_path / "export", overwrite=True)
    (tmp_path / "export" / "stranger.parquet").write_bytes(b"x")
    with pytest.raises(StoreError, match="holds stranger.parquet, not tables"):
        export_parquet(tiny_store, tmp_path / "export", overwrite=True)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        pytest.param("drop-effects", r"lacks effects.parquet", id="missing-table"),
        pytest.param("drop-meta", r"has no meta.parquet", id="missing-meta"),
        pytest.param(
            "extra",
            f"holds notes.parquet, which a store of schema version {CURRENT} does not have",
            id="extra",
        ),
        pytest.param("newer", rf"export of schema version {CURRENT + 1}.*upgrade harp-explorer", id="newer"),
        pytest.param("columns", r"layout.parquet has columns \['leaf_id', 'x'\]", id="columns"),
        pytest.param("not-a-folder", r"is not a folder", id="not-a-folder"),
        pytest.param(
            "corrupt", r"points.parquet is not a readable Parquet file .*export the store again", id="corrupt"
        ),
    ],
)
def test_import_validates_the_folder(tiny_store: Path, tmp_path: Path, damage: str, match: str) -> None:
    folder = tmp_path / "export"
    export_parquet(tiny_store, folder)
    if damage == "drop-effects":
        (folder / "effects.parquet").unlink()
    elif damage == "drop-meta":
        (folder / "meta.parquet").unlink()
    elif damage == "extra":
        shutil.copyfile(folder / "layout.parquet", folder / "notes.parquet")
    elif damage == "newer":
        meta = pq.read_table(folder / "meta.parquet").to_pydict()
        meta["value"] = [
            str(CURRENT + 1) if k == "schema_version" else v
            for k, v in zip(meta["key"], meta["value"], strict=True)
        ]
        pq.write_table(pa.table(meta), folder / "meta.parquet")
    elif damage == "columns":
        pq.write_table(
            pq.read_table(folder / "layout.parquet").select(["leaf_id", "x"]), folder / "layout.parquet"
        )
    elif damage == "not-a-folder":
        folder = tmp_path / "nothing"
    elif damage == "corrupt":
        (folder / "points.parquet").write_bytes(b"PAR1 not really")
    target = tmp_path / "imported.duckdb"
    with pytest.raises(StoreError, match=match):
        import_parquet(folder, target)
    assert not target.exists()
    assert not list(tmp_path.glob(".*tmp"))


def test_import_of_an_older_export_is_migrated(
    tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_parquet(tiny_store, tmp_path / "export")
    monkeypatch.setattr(
        migrations, "MIGRATIONS", [*migrations.MIGRATIONS, migrations.Migration("m900", _m900_add_notes)]
    )
    monkeypatch.setitem(migrations.TABLE_KEYS, "notes", ("leaf_id",))
    store = import_parquet(tmp_path / "export", tmp_path / "new.duckdb")
    assert store.meta()["schema_version"] == str(CURRENT + 1)
    assert store.read_table("notes").num_rows == 4


# -- concurrency and durability ------------------------------------------------------------------------------------

WRITER = """
import os
import sys
import threading
import numpy as np
from harp.store import Store

store = Store.open(sys.argv[1], lock_timeout=30)
limit = int(sys.argv[2])
stop_file = sys.argv[3] if len(sys.argv) > 3 else None  # with one, write on past limit until it exists
inputs = store.selection_inputs()
n_leaves, n_domains = inputs.n_leaves, inputs.n_domains
done = len([k for k in store.read_table("measurements")["config_key"].to_pylist() if k.startswith("w")])
k = done // (n_leaves * n_domains)
while k < limit or (stop_file is not None and not os.path.exists(stop_file)):
    size = n_leaves * n_domains
    store.add_measurements({
        "leaf_id": np.repeat(np.arange(n_leaves), n_domains),
        "domain_id": np.tile(np.arange(n_domains), n_leaves),
        "phi": np.full(size, float(k)),
        "variance": np.full(size, 0.01),
        "config_key": [f"w{k:06d}"] * size,
    })
    k += 1
    if k == 1 or k % 5 == 0:
        print(k, flush=True)
print("done", k, flush=True)
"""


def _start_writer(path: Path, limit: int, stop_file: Path | None = None) -> subprocess.Popen[str]:
    extra = [str(stop_file)] if stop_file is not None else []
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(limit), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )


def _writes_present(path: Path, rows_per_write: int) -> int:
    """The number of whole writes in the store; fails if any write is partly there."""
    table = Store.open(path, read_only=True).read_table("measurements").to_pydict()
    keys = [k for k in table["config_key"] if k.startswith("w")]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    assert set(counts.values()) <= {rows_per_write}, f"a partial write: {counts}"
    assert sorted(counts) == [f"w{k:06d}" for k in range(len(counts))], "writes are not a prefix"
    return len(counts)


@pytest.mark.slow
def test_kill_9_mid_write_leaves_a_whole_number_of_writes(tmp_store: Path) -> None:
    before = Store.open(tmp_store).content_hash()
    rows_per_write = 40 * 5
    total = 0
    for delay in (0.2, 0.5):
        writer = _start_writer(tmp_store, limit=10**6)
        assert writer.stdout is not None
        line = writer.stdout.readline()
        assert line.strip(), writer.stderr.read() if writer.stderr else "writer died"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert writer.returncode == -signal.SIGKILL
        now = _writes_present(tmp_store, rows_per_write)
        assert now > total
        total = now
    store = Store.open(tmp_store)
    assert store.content_hash() == before
    store.write_layout(np.zeros(40), np.zeros(40), "after-crash")  # the store still takes writes


@pytest.mark.slow
def test_reader_keeps_working_while_another_process_writes(tmp_store: Path) -> None:
    # The writer goes on past its 20 writes until the reader has read a few times, so the test
    # does not depend on how fast either process runs on a loaded machine.
    stop_file = tmp_store.with_name("reader-done")
    writer = _start_writer(tmp_store, limit=20, stop_file=stop_file)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip()
        reads, seen = 0, []
        while writer.poll() is None:
            store = Store.open(tmp_store, read_only=True)
            inputs = store.selection_inputs()
            assert inputs.phi.shape == (40, 5)
            seen.append(store.read_table("measurements").num_rows)
            reads += 1
            if reads == 3:
                stop_file.touch()
        out, errors = writer.communicate()
    finally:
        stop_file.touch()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, errors
    assert reads >= 3
    assert seen == sorted(seen), "a reader never sees writes undone"
    written = int(out.split()[-1])
    assert written >= 20
    assert _writes_present(tmp_store, 200) == written


def test_lock_held_too_long_gives_a_clear_error(tmp_store: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(30)",
            str(tmp_store),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=r"is locked by another process .*waited 0.3 s"):
            Store.open(tmp_store, read_only=True, lock_timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
    assert Store.open(tmp_store, read_only=True).summary()["n_leaves"] == 40


def test_other_mode_open_in_this_process_waits_then_explains(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    with store.write():
        with pytest.raises(StoreError, match="stayed open read-write in this process for 0.2 s"):
            Store.open(tiny_store, read_only=True, lock_timeout=0.2)
    assert Store.open(tiny_store, read_only=True).summary()["n_leaves"] == 4


def test_read_only_and_read_write_stores_share_a_process_across_threads(tiny_store: Path) -> None:
    reader, writer = Store.open(tiny_store, read_only=True), Store.open(tiny_store)
    failures: list[BaseException] = []

    def read_loop() -> None:
        try:
            for _ in range(8):
                assert reader.selection_inputs().n_leaves == 4
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            failures.append(error)

    thread = threading.Thread(target=read_loop)
    thread.start()
    for k in range(4):
        writer.set_active([k % 2 == 0, True, False])
    thread.join()
    assert not failures, failures
    np.testing.assert_array_equal(reader.selection_inputs().active, [False, True, False])


def test_sql_errors_in_a_block_become_store_errors_and_roll_back(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    with (
        pytest.raises(StoreError, match="write to .* failed and was rolled back: .*Constraint"),
        store.write() as con,
    ):
        con.execute("DELETE FROM layout")
        con.execute("INSERT INTO domains VALUES (0, 'dup', 0.5, 1, true)")
    assert store.layout() is not None
    with pytest.raises(StoreError, match="reading .* failed"), store.read() as con:
        con.execute("SELECT * FROM no_such_table")
