"""The store's mixture validations: migration m002_mixtures, Store.add_mixture / Store.mixtures, interchange."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_versions import downgrade_sql, tables_at

import harp
from harp.store import Store, StoreError, export_parquet, import_parquet, migrations, points_from_members

REPO = Path(harp.__file__).resolve().parents[1]
COLUMNS = [
    "mixture_id",
    "domain_id",
    "run_id",
    "config_key",
    "leaves",
    "n_points",
    "phi",
    "variance",
    "predicted_c",
    "predicted_e",
]
# One mixture of the tiny store (4 leaves, 3 domains).
MIXTURE: dict[str, Any] = {
    "run_id": "run-1",
    "config_key": "in-mixture:v1",
    "leaves": [2, 0],
    "n_points": 5,
    "phi": [0.03, -0.01, 0.02],
    "variance": [1e-4, 2e-4, 0.0],
    "predicted_c": [0.02, -0.02, 0.03],
    "predicted_e": [0.03, -0.02, 0.03],
}


def raw(path: Path, *queries: str) -> list[list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path))
    try:
        return [con.execute(query).fetchall() for query in queries]
    finally:
        con.close()


def downgrade_to_v1(path: Path) -> None:
    """Turn a current store into what schema version 1 wrote: no mixtures table, one migration recorded."""
    raw(
        path,
        *downgrade_sql(1),
        "DELETE FROM meta WHERE key = 'content_hash' OR starts_with(key, 'table_hash:')",
    )


def bookkeeping(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    tables, version, applied = raw(
        path,
        "SELECT table_name FROM duckdb_tables() WHERE table_name = 'mixtures'",
        "SELECT value FROM meta WHERE key = 'schema_version'",
        "SELECT name FROM migrations ORDER BY name",
    )
    return tables, version, applied


# -- the migration ------------------------------------------------------------------------------------------------


def test_schema_version_2_adds_the_mixtures_table() -> None:
    assert migrations.SCHEMA_VERSION >= 2
    assert [m.name for m in migrations.MIGRATIONS][:2] == ["m001_initial", "m002_mixtures"]
    assert migrations.TABLE_KEYS["mixtures"] == ("mixture_id", "domain_id")


def test_a_v1_store_is_migrated_and_the_migration_recorded(tiny_store: Path) -> None:
    downgrade_to_v1(tiny_store)
    assert bookkeeping(tiny_store) == ([], [("1",)], [("m001_initial",)])
    with pytest.raises(
        StoreError,
        match=f"schema version 1; this harp-explorer uses version {migrations.SCHEMA_VERSION}: run `harp migrate",
    ):
        Store.open(tiny_store, read_only=True)
    before = raw(tiny_store, "SELECT * FROM effects ORDER BY leaf_id, domain_id")
    store = Store.open(tiny_store)
    names = [(m.name,) for m in migrations.MIGRATIONS]
    assert bookkeeping(tiny_store) == ([("mixtures",)], [(str(migrations.SCHEMA_VERSION),)], names)
    applied = store.read_table("migrations").to_pylist()
    assert [row["name"] for row in applied] == [name for (name,) in names]
    assert applied[1]["applied_at"] >= applied[0]["applied_at"]
    assert store.meta()["harp_version"] == harp.__version__
    assert store.mixtures().column_names == COLUMNS and store.mixtures().num_rows == 0
    assert raw(tiny_store, "SELECT * FROM effects ORDER BY leaf_id, domain_id") == before
    assert store.summary()["n_mixtures"] == 0


def _wrapped_broken_m002(con: duckdb.DuckDBPyConnection) -> None:
    migrations.m002_mixtures(con)
    con.execute("UPDATE domains SET base = 0")
    raise RuntimeError("disk on fire")


def test_a_failing_m002_rolls_back(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downgrade_to_v1(tiny_store)
    domains = raw(tiny_store, "SELECT * FROM domains ORDER BY domain_id")
    steps = [migrations.MIGRATIONS[0], migrations.Migration("m002_mixtures", _wrapped_broken_m002)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(
        StoreError,
        match=r"m002_mixtures failed and was rolled back \(the store stays at schema version 1\): disk on fire",
    ):
        Store.open(tiny_store)
    monkeypatch.undo()
    assert bookkeeping(tiny_store) == ([], [("1",)], [("m001_initial",)])
    assert raw(tiny_store, "SELECT * FROM domains ORDER BY domain_id") == domains
    Store.open(tiny_store)  # the real migrations then apply
    assert bookkeeping(tiny_store)[1] == [(str(migrations.SCHEMA_VERSION),)]


def test_m002_on_a_store_that_already_has_a_mixtures_table_rolls_back(tiny_store: Path) -> None:
    downgrade_to_v1(tiny_store)
    raw(tiny_store, "CREATE TABLE mixtures (note VARCHAR)", "INSERT INTO mixtures VALUES ('mine')")
    with pytest.raises(StoreError, match="m002_mixtures failed and was rolled back.*schema version 1"):
        Store.open(tiny_store)
    assert raw(tiny_store, "SELECT * FROM mixtures") == [[("mine",)]]
    assert bookkeeping(tiny_store)[1:] == ([("1",)], [("m001_initial",)])


def test_the_shipped_demo_imports_with_its_mixtures(tmp_path: Path) -> None:
    """data/demo is a schema-2 export holding the experiment's 28 validation mixtures (16 in-mixture, 12
    base-anchored, 10 domains each); older exports are migrated (next test)."""
    demo = REPO / "data" / "demo"
    shipped = dict(zip(*pq.read_table(demo / "meta.parquet").to_pydict().values(), strict=True))
    assert 2 <= int(shipped["schema_version"]) <= migrations.SCHEMA_VERSION  # 2: the first with mixtures
    store = import_parquet(demo, tmp_path / "demo.duckdb")
    assert store.meta()["schema_version"] == str(migrations.SCHEMA_VERSION)
    assert store.read_table("migrations")["name"].to_pylist() == [m.name for m in migrations.MIGRATIONS]
    assert store.mixtures().num_rows == 28 * 10
    summary = store.summary(with_hash=False)
    assert (summary["n_leaves"], summary["n_mixtures"]) == (266, 28)


def test_a_v1_export_imports_and_is_migrated(tiny_store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    export_parquet(tiny_store, folder)
    # What schema version 1 exported: no (design_)mixtures.parquet, no points.response, one migration, version 1.
    for table in set(migrations.TABLE_KEYS) - tables_at(1):
        (folder / f"{table}.parquet").unlink(missing_ok=True)
    points = pq.read_table(folder / "points.parquet")
    pq.write_table(points.drop_columns(["response"]), folder / "points.parquet")
    selections = pq.read_table(folder / "selections.parquet")  # and no m007 columns
    pq.write_table(selections.drop_columns(["method", "design", "manifest"]), folder / "selections.parquet")
    meta = pq.read_table(folder / "meta.parquet").to_pydict()
    meta["value"] = [
        "1" if k == "schema_version" else v for k, v in zip(meta["key"], meta["value"], strict=True)
    ]
    pq.write_table(pa.table(meta), folder / "meta.parquet")
    applied = pq.read_table(folder / "migrations.parquet")
    pq.write_table(applied.slice(0, 1), folder / "migrations.parquet")
    store = import_parquet(folder, tmp_path / "copy.duckdb")
    assert store.meta()["schema_version"] == str(migrations.SCHEMA_VERSION)
    assert store.read_table("migrations")["name"].to_pylist() == [m.name for m in migrations.MIGRATIONS]
    assert store.content_hash() == Store.open(tiny_store).content_hash()


# -- writing and reading ------------------------------------------------------------------------------------------


def test_add_and_read_mixtures(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    assert store.add_mixture(**MIXTURE) == 0
    second = {**MIXTURE, "run_id": None, "config_key": "other", "leaves": np.array([3]), "n_points": 2}
    assert store.add_mixture(**second) == 1
    table = store.mixtures()
    assert table.column_names == COLUMNS
    rows = table.to_pylist()
    assert [(r["mixture_id"], r["domain_id"]) for r in rows] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
    ]
    first = rows[:3]
    assert {r["leaves"] for r in first} == {"[0, 2]"}, "stored sorted, as JSON"
    assert json.loads(rows[3]["leaves"]) == [3]
    assert [r["phi"] for r in first] == MIXTURE["phi"]
    assert [r["variance"] for r in first] == MIXTURE["variance"]
    assert [r["predicted_c"] for r in first] == MIXTURE["predicted_c"]
    assert [r["predicted_e"] for r in first] == MIXTURE["predicted_e"]
    assert {(r["run_id"], r["config_key"], r["n_points"]) for r in first} == {("run-1", "in-mixture:v1", 5)}
    assert {(r["run_id"], r["config_key"], r["n_points"]) for r in rows[3:]} == {(None, "other", 2)}
    assert store.mixtures("other")["mixture_id"].to_pylist() == [1, 1, 1]
    assert store.mixtures("nothing").num_rows == 0
    summary = store.summary()
    assert summary["n_mixtures"] == 2 and summary["counts"]["mixtures"] == 6
    assert store.content_hash() == before, "mixtures are not part of the content hash"
    assert Store.open(tiny_store, read_only=True).mixtures().equals(table)


def test_mixtures_round_trip_through_parquet(tiny_store: Path, tmp_path: Path) -> None:
    store = Store.open(tiny_store)
    store.add_mixture(**MIXTURE)
    store.add_mixture(**{**MIXTURE, "leaves": [1, 3, 0], "run_id": None})
    written = export_parquet(tiny_store, tmp_path / "export")
    assert "mixtures.parquet" in {p.name for p in written}
    copy = import_parquet(tmp_path / "export", tmp_path / "copy.duckdb")
    for table in migrations.TABLE_KEYS:
        original, imported = store.read_table(table), copy.read_table(table)
        assert imported.schema == original.schema, table
        assert imported.equals(original), table
    assert copy.add_mixture(**MIXTURE) == 2, "ids continue after an import"


def test_a_refused_mixture_writes_nothing_and_uses_no_id(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_mixture(**MIXTURE)
    with pytest.raises(ValueError, match="predicted_e must be finite"):
        store.add_mixture(**{**MIXTURE, "predicted_e": [0.0, np.nan, 0.0]})
    assert store.mixtures().num_rows == 3
    assert store.add_mixture(**MIXTURE) == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"leaves": []}, "leaves must not be empty", id="no-leaf"),
        pytest.param({"leaves": [0, 2, 0]}, "leaves lists leaf 0 more than once", id="leaf-twice"),
        pytest.param({"leaves": [1, 4]}, r"leaves holds 4, outside 0..3 \(4 leaves\)", id="leaf-outside"),
        pytest.param({"leaves": [-1]}, r"leaves holds -1, outside 0..3", id="leaf-negative"),
        pytest.param({"leaves": [0.5]}, "leaves must hold integers, got dtype float64", id="leaf-float"),
        pytest.param({"leaves": [[0, 1]]}, r"leaves must be 1-D, got shape \(1, 2\)", id="leaves-2-D"),
        pytest.param({"phi": [0.1, 0.2]}, r"phi has shape \(2,\), expected \(3,\)", id="phi-length"),
        pytest.param({"phi": [0.1, np.inf, 0.2]}, "phi must be finite, found inf", id="phi-inf"),
        pytest.param({"phi": ["a", "b", "c"]}, "phi must hold numbers", id="phi-text"),
        pytest.param(
            {"variance": [0.1, -0.2, 0.0]}, "variance must be >= 0, got -0.2 for domain 1", id="variance"
        ),
        pytest.param({"predicted_c": [[0.1, 0.2, 0.3]]}, r"predicted_c has shape \(1, 3\)", id="predicted-c"),
        pytest.param({"predicted_e": None}, "predicted_e", id="predicted-e-missing"),
        pytest.param({"n_points": 0}, "n_points must be an integer >= 1, got 0", id="n-points-zero"),
        pytest.param({"n_points": 2.5}, "n_points must be an integer >= 1, got 2.5", id="n-points-float"),
        pytest.param({"n_points": True}, "n_points must be an integer >= 1, got True", id="n-points-bool"),
        pytest.param({"run_id": ""}, "run_id must be a non-empty string or None", id="run-id"),
        pytest.param({"config_key": None}, "config_key must be a string, got None", id="config-key"),
    ],
)
def test_add_mixture_refuses_bad_input(tiny_store: Path, change: dict[str, Any], match: str) -> None:
    store = Store.open(tiny_store)
    with pytest.raises(ValueError, match=match):
        store.add_mixture(**{**MIXTURE, **change})
    assert store.mixtures().num_rows == 0


def test_add_mixture_needs_domains_and_a_writable_store(tmp_path: Path, tiny_store: Path) -> None:
    empty = Store.create(tmp_path / "empty.duckdb")
    with pytest.raises(ValueError, match="write the domains before adding a mixture"):
        empty.add_mixture(**MIXTURE)
    with pytest.raises(StoreError, match="opened read-only"):
        Store.open(tiny_store, read_only=True).add_mixture(**MIXTURE)
    with pytest.raises(ValueError, match="config_key must be a string or None"):
        Store.open(tiny_store).mixtures(config_key=3)  # type: ignore[arg-type]


def test_mixtures_belong_to_the_tree_and_the_domains(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_mixture(**MIXTURE)
    points = points_from_members([np.array([1, 2])])
    with pytest.raises(
        ValueError, match="holds 0 measurements and 1 mixture validations.*discard_measurements"
    ):
        store.write_tree(points, [0], [0], 1)
    with pytest.raises(ValueError, match="names has 2 domains but the store holds"):
        store.write_domains(["a", "b"], [0.1, 0.2])
    store.write_domains(["x", "y", "z"], [0.1, 0.2, 0.3])  # same number of domains: kept
    assert store.mixtures().num_rows == 3
    store.write_tree(points, [0], [0], 1, discard_measurements=True)
    assert store.mixtures().num_rows == 0
