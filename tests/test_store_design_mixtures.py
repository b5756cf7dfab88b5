"""The store's designed mixtures: migration m005_design_mixtures, Store.add_design_mixture /
Store.design_mixtures, tree and domain replacement, interchange, the content hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from store_versions import downgrade_sql, tables_at

import harp
from harp.cli import main as cli_main
from harp.store import Store, StoreError, export_parquet, import_parquet, migrations, points_from_members

COLUMNS = [
    "design_id",
    "domain_id",
    "run_id",
    "config_key",
    "level",
    "regions",
    "budget",
    "seed",
    "shares",
    "n_points",
    "phi",
    "variance",
]
# One designed mixture of the tiny store (1 large node, 2 parents, 3 domains): parent 1 kept, parent 0 dropped.
DESIGN: dict[str, Any] = {
    "run_id": "run-1",
    "config_key": "in-mixture:v1",
    "level": "parent",
    "regions": [1],
    "budget": 4,
    "seed": 7,
    "shares": [0.0, 1.0],
    "n_points": 4,
    "phi": [0.03, -0.01, 0.02],
    "variance": [1e-4, 2e-4, 0.0],
}
# The same store's one large node, kept whole.
LARGE: dict[str, Any] = {
    **DESIGN,
    "run_id": None,
    "config_key": "other",
    "level": "large",
    "regions": np.array([0]),
    "budget": 8,
    "seed": 0,
    "shares": np.array([1.0]),
    "n_points": 8,
    "phi": [-0.02, 0.0, 0.05],
}
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


def downgrade_to_v4(path: Path) -> None:
    """Turn a current store into what schema version 4 wrote: no design_mixtures table, no selection method
    (m007), four migrations."""
    raw(
        path,
        *downgrade_sql(4),
    )


def bookkeeping(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    tables, version, applied = raw(
        path,
        "SELECT table_name FROM duckdb_tables() WHERE table_name = 'design_mixtures'",
        "SELECT value FROM meta WHERE key = 'schema_version'",
        "SELECT name FROM migrations ORDER BY name",
    )
    return tables, version, applied


LATEST = migrations.latest_version()
V4_NAMES = [
    (name,) for name in ("m001_initial", "m002_mixtures", "m003_content_hash", "m004_point_responses")
]


# -- the migration ------------------------------------------------------------------------------------------------


def test_schema_version_5_adds_the_design_mixtures_table(tmp_path: Path) -> None:
    assert migrations.SCHEMA_VERSION == migrations.latest_version() >= 5
    assert migrations.MIGRATIONS[4].name == "m005_design_mixtures"
    assert migrations.TABLE_KEYS["design_mixtures"] == ("design_id", "domain_id")
    store = Store.create(tmp_path / "new.duckdb")
    described = raw(store.path, "DESCRIBE design_mixtures")[0]
    columns = {row[0]: (row[1], row[2], row[3]) for row in described}  # type, null allowed, key
    assert list(columns) == COLUMNS
    assert columns["design_id"] == ("BIGINT", "NO", "PRI") and columns["domain_id"] == (
        "INTEGER",
        "NO",
        "PRI",
    )
    not_null = {name for name, (_, null, _) in columns.items() if null == "NO"}
    assert not_null == {
        "design_id",
        "domain_id",
        "level",
        "regions",
        "budget",
        "seed",
        "shares",
        "n_points",
        "phi",
    }
    assert {name: kind for name, (kind, _, _) in columns.items()} == {
        "design_id": "BIGINT",
        "domain_id": "INTEGER",
        "run_id": "VARCHAR",
        "config_key": "VARCHAR",
        "level": "VARCHAR",
        "regions": "VARCHAR",
        "budget": "BIGINT",
        "seed": "BIGINT",
        "shares": "VARCHAR",
        "n_points": "BIGINT",
        "phi": "DOUBLE",
        "variance": "DOUBLE",
    }


def test_a_v4_store_is_migrated_and_keeps_its_contents(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_mixture(**MIXTURE)
    before_hash = store.content_hash()
    before = raw(tiny_store, "SELECT * FROM effects ORDER BY leaf_id, domain_id", "SELECT * FROM mixtures")
    downgrade_to_v4(tiny_store)
    assert bookkeeping(tiny_store) == ([], [("4",)], V4_NAMES)
    with pytest.raises(
        StoreError,
        match=f"schema version 4; this harp-explorer uses version {migrations.latest_version()}: run `harp migrate",
    ):
        Store.open(tiny_store, read_only=True)
    migrated = Store.open(tiny_store)
    names = [(m.name,) for m in migrations.MIGRATIONS]
    assert bookkeeping(tiny_store) == ([("design_mixtures",)], [(str(migrations.latest_version()),)], names)
    assert migrated.read_table("migrations")["name"].to_pylist()[4] == "m005_design_mixtures"
    assert migrated.meta()["harp_version"] == harp.__version__
    table = migrated.design_mixtures()
    assert table.column_names == COLUMNS and table.num_rows == 0
    assert (
        raw(tiny_store, "SELECT * FROM effects ORDER BY leaf_id, domain_id", "SELECT * FROM mixtures")
        == before
    )
    assert migrated.content_hash() == migrated.content_hash(recompute=True) == before_hash
    summary = migrated.summary()
    assert (summary["n_mixtures"], summary["n_design_mixtures"]) == (1, 0)
    assert migrated.add_design_mixture(**DESIGN) == 0


def _wrapped_broken_m005(con: duckdb.DuckDBPyConnection) -> None:
    migrations.m005_design_mixtures(con)
    con.execute("UPDATE domains SET base = 0")
    raise RuntimeError("disk on fire")


def test_a_failing_m005_rolls_back(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downgrade_to_v4(tiny_store)
    domains = raw(tiny_store, "SELECT * FROM domains ORDER BY domain_id")
    steps = [*migrations.MIGRATIONS[:4], migrations.Migration("m005_design_mixtures", _wrapped_broken_m005)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(
        StoreError,
        match=r"m005_design_mixtures failed and was rolled back \(the store stays at schema version 4\): "
        "disk on fire",
    ):
        Store.open(tiny_store)
    monkeypatch.undo()
    assert bookkeeping(tiny_store) == ([], [("4",)], V4_NAMES)
    assert raw(tiny_store, "SELECT * FROM domains ORDER BY domain_id") == domains
    Store.open(tiny_store)  # the real migration then applies
    assert bookkeeping(tiny_store)[:2] == ([("design_mixtures",)], [(str(migrations.latest_version()),)])


def test_m005_on_a_store_that_already_has_the_table_rolls_back(tiny_store: Path) -> None:
    downgrade_to_v4(tiny_store)
    raw(
        tiny_store,
        "CREATE TABLE design_mixtures (note VARCHAR)",
        "INSERT INTO design_mixtures VALUES ('mine')",
    )
    with pytest.raises(StoreError, match="m005_design_mixtures failed and was rolled back.*schema version 4"):
        Store.open(tiny_store)
    assert raw(tiny_store, "SELECT * FROM design_mixtures") == [[("mine",)]]
    assert bookkeeping(tiny_store)[1:] == ([("4",)], V4_NAMES)


def test_a_v4_export_imports_and_is_migrated(tiny_store: Path, tmp_path: Path) -> None:
    store = Store.open(tiny_store)
    store.add_mixture(**MIXTURE)
    folder = tmp_path / "export"
    export_parquet(tiny_store, folder)
    # What schema version 4 exported: no design_mixtures.parquet, four migrations, version 4.
    (folder / "design_mixtures.parquet").unlink()
    for table in set(migrations.TABLE_KEYS) - tables_at(4):  # the tables of later versions
        (folder / f"{table}.parquet").unlink(missing_ok=True)
    for table in ("selections",):  # and no m007 columns
        pq.write_table(pq.read_table(folder / f"{table}.parquet").drop(["method", "design", "manifest"]),
                       folder / f"{table}.parquet")  # fmt: skip
    meta = pq.read_table(folder / "meta.parquet").to_pydict()
    meta["value"] = [
        "4" if k == "schema_version" else v for k, v in zip(meta["key"], meta["value"], strict=True)
    ]
    pq.write_table(pa.table(meta), folder / "meta.parquet")
    applied = pq.read_table(folder / "migrations.parquet")
    assert applied["name"].to_pylist()[4] == "m005_design_mixtures"
    pq.write_table(applied.slice(0, 4), folder / "migrations.parquet")
    copy = import_parquet(folder, tmp_path / "copy.duckdb")
    assert copy.meta()["schema_version"] == str(migrations.latest_version())
    assert copy.read_table("migrations")["name"].to_pylist() == [m.name for m in migrations.MIGRATIONS]
    assert copy.design_mixtures().num_rows == 0
    assert copy.mixtures().equals(store.mixtures())
    assert copy.content_hash() == store.content_hash()
    assert copy.add_design_mixture(**DESIGN) == 0


def test_a_v5_export_without_its_design_mixtures_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    export_parquet(tiny_store, folder)
    (folder / "design_mixtures.parquet").unlink()
    for table in set(migrations.TABLE_KEYS) - tables_at(4):  # the tables of later versions
        (folder / f"{table}.parquet").unlink(missing_ok=True)
    for table in ("selections",):  # and no m007 columns
        pq.write_table(pq.read_table(folder / f"{table}.parquet").drop(["method", "design", "manifest"]),
                       folder / f"{table}.parquet")  # fmt: skip
    with pytest.raises(StoreError, match="lacks design_mixtures.parquet"):
        import_parquet(folder, tmp_path / "copy.duckdb")
    assert not (tmp_path / "copy.duckdb").exists()


# -- writing and reading ------------------------------------------------------------------------------------------


def test_add_and_read_design_mixtures(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    assert store.add_design_mixture(**DESIGN) == 0
    assert store.add_design_mixture(**LARGE) == 1
    assert store.add_design_mixture(**{**DESIGN, "regions": [1, 0], "shares": [0.25, 0.75], "seed": 8}) == 2
    # Rows stored in reverse: the reader still sorts by design_id, domain_id.
    raw(
        tiny_store,
        "CREATE TEMP TABLE shuffled AS SELECT * FROM design_mixtures",
        "DELETE FROM design_mixtures",
        "INSERT INTO design_mixtures SELECT * FROM shuffled ORDER BY design_id DESC, domain_id DESC",
    )
    table = store.design_mixtures()
    assert table.column_names == COLUMNS
    rows = table.to_pylist()
    assert [(r["design_id"], r["domain_id"]) for r in rows] == [(k, d) for k in range(3) for d in range(3)]
    first, large, both = rows[:3], rows[3:6], rows[6:]
    assert [r["phi"] for r in first] == DESIGN["phi"] and [r["variance"] for r in first] == DESIGN["variance"]
    assert [r["phi"] for r in large] == LARGE["phi"]
    constant = ("run_id", "config_key", "level", "regions", "budget", "seed", "shares", "n_points")
    assert {tuple(r[c] for c in constant) for r in first} == {
        ("run-1", "in-mixture:v1", "parent", "[1]", 4, 7, "[0.0, 1.0]", 4)
    }
    assert {tuple(r[c] for c in constant) for r in large} == {
        (None, "other", "large", "[0]", 8, 0, "[1.0]", 8)
    }
    assert {r["regions"] for r in both} == {"[0, 1]"}, "stored sorted, as JSON"
    assert {r["seed"] for r in both} == {8}
    assert json.loads(both[0]["shares"]) == [0.25, 0.75]
    assert store.design_mixtures("other")["design_id"].to_pylist() == [1, 1, 1]
    assert store.design_mixtures(level="parent")["design_id"].to_pylist() == [0, 0, 0, 2, 2, 2]
    assert store.design_mixtures("in-mixture:v1", "parent").equals(store.design_mixtures(level="parent"))
    assert store.design_mixtures("other", "parent").num_rows == 0
    assert store.design_mixtures("nothing").num_rows == 0
    summary = store.summary()
    assert summary["n_design_mixtures"] == 3 and summary["counts"]["design_mixtures"] == 9
    assert summary["n_mixtures"] == 0
    assert store.content_hash() == store.content_hash(recompute=True) == before, (
        "design mixtures are not part of the content hash"
    )
    assert Store.open(tiny_store, read_only=True).design_mixtures().equals(table)


def test_harp_info_reports_the_design_mixtures(tiny_store: Path) -> None:
    Store.open(tiny_store).add_design_mixture(**DESIGN)
    result = CliRunner().invoke(cli_main, ["info", str(tiny_store), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_design_mixtures"] == 1


def test_design_mixtures_round_trip_through_parquet(tiny_store: Path, tmp_path: Path) -> None:
    store = Store.open(tiny_store)
    store.add_design_mixture(**DESIGN)
    store.add_design_mixture(**LARGE)
    store.add_mixture(**MIXTURE)
    written = export_parquet(tiny_store, tmp_path / "export")
    assert "design_mixtures.parquet" in {p.name for p in written}
    assert pq.read_table(tmp_path / "export" / "design_mixtures.parquet").num_rows == 6
    copy = import_parquet(tmp_path / "export", tmp_path / "copy.duckdb")
    for table in migrations.TABLE_KEYS:
        original, imported = store.read_table(table), copy.read_table(table)
        assert imported.schema == original.schema, table
        assert imported.equals(original), table
    assert copy.design_mixtures().num_rows == 6
    assert copy.content_hash() == store.content_hash()
    assert copy.add_design_mixture(**DESIGN) == 2, "ids continue after an import"


def test_a_refused_design_mixture_writes_nothing_and_uses_no_id(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_design_mixture(**DESIGN)
    with pytest.raises(ValueError, match="variance must be finite"):
        store.add_design_mixture(**{**DESIGN, "variance": [0.0, np.nan, 0.0]})
    assert store.design_mixtures().num_rows == 3
    assert store.add_design_mixture(**DESIGN) == 1


def test_a_write_that_fails_midway_leaves_no_domain_behind(
    tiny_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harp.store.mixtures as store_module

    store = Store.open(tiny_store)
    real_insert = store_module.insert

    def rows(con: duckdb.DuckDBPyConnection) -> int:
        return int(con.execute("SELECT count(*) FROM design_mixtures").fetchall()[0][0])

    def insert_one_row_then_fail(
        con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, **kwargs: Any
    ) -> None:
        real_insert(con, table, data.slice(0, 1), **kwargs)
        assert rows(con) == 1, "the first domain's row is in the transaction"
        raise RuntimeError("killed between two domains")

    monkeypatch.setattr(store_module, "insert", insert_one_row_then_fail)
    with pytest.raises(RuntimeError, match="killed between two domains"):
        store.add_design_mixture(**DESIGN)
    monkeypatch.undo()
    assert raw(tiny_store, "SELECT count(*) FROM design_mixtures") == [[(0,)]]
    assert store.add_design_mixture(**DESIGN) == 0
    assert store.design_mixtures()["domain_id"].to_pylist() == [0, 1, 2], "every domain, in one write"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param({"level": "leaf"}, "level must be 'large' or 'parent', got 'leaf'", id="level-leaf"),
        pytest.param({"level": None}, "level must be 'large' or 'parent', got None", id="level-none"),
        pytest.param({"regions": []}, "regions must not be empty", id="no-region"),
        pytest.param({"regions": [1, 1]}, "regions lists region 1 more than once", id="region-twice"),
        pytest.param({"regions": [2]}, r"regions holds 2, outside 0..1 \(2 parents\)", id="parent-outside"),
        pytest.param(
            {"level": "large", "regions": [1], "shares": [1.0]},
            r"regions holds 1, outside 0..0 \(1 large nodes\)",
            id="large-outside",
        ),
        pytest.param({"regions": [-1]}, r"regions holds -1, outside 0..1", id="region-negative"),
        pytest.param({"regions": [0.5]}, "regions must hold integers, got dtype float64", id="region-float"),
        pytest.param({"regions": [[0, 1]]}, r"regions must be 1-D, got shape \(1, 2\)", id="regions-2-D"),
        pytest.param({"budget": 0}, "budget must be an integer >= 1, got 0", id="budget-zero"),
        pytest.param({"budget": 2.0}, "budget must be an integer >= 1, got 2.0", id="budget-float"),
        pytest.param({"budget": True}, "budget must be an integer >= 1, got True", id="budget-bool"),
        pytest.param({"seed": -1}, "seed must be an integer >= 0, got -1", id="seed-negative"),
        pytest.param({"seed": False}, "seed must be an integer >= 0, got False", id="seed-bool"),
        pytest.param({"seed": "7"}, "seed must be an integer >= 0, got '7'", id="seed-text"),
        pytest.param({"n_points": 0}, "n_points must be an integer >= 1, got 0", id="n-points-zero"),
        pytest.param({"n_points": True}, "n_points must be an integer >= 1, got True", id="n-points-bool"),
        pytest.param({"shares": [1.0]}, r"shares has shape \(1,\), expected \(2,\)", id="shares-length"),
        pytest.param(
            {"level": "large", "regions": [0], "shares": [0.5, 0.5]},
            r"shares has shape \(2,\), expected \(1,\)",
            id="shares-length-large",
        ),
        pytest.param(
            {"shares": [-0.5, 1.5]}, "shares must be >= 0, got -0.5 for region 0", id="shares-negative"
        ),
        pytest.param(
            {"shares": [0.5, 0.4]}, r"shares must sum to 1 \(within 1e-6\), got 0.9", id="shares-sum"
        ),
        pytest.param({"shares": [np.nan, 1.0]}, "shares must be finite", id="shares-nan"),
        pytest.param({"shares": ["a", "b"]}, "shares must hold numbers", id="shares-text"),
        pytest.param({"phi": [0.1, 0.2]}, r"phi has shape \(2,\), expected \(3,\)", id="phi-length"),
        pytest.param({"phi": [0.1, np.inf, 0.2]}, "phi must be finite, found inf", id="phi-inf"),
        pytest.param(
            {"variance": [0.1, -0.2, 0.0]}, "variance must be >= 0, got -0.2 for domain 1", id="variance"
        ),
        pytest.param(
            {"variance": [0.1]}, r"variance has shape \(1,\), expected \(3,\)", id="variance-length"
        ),
        pytest.param({"variance": None}, "variance", id="variance-missing"),
        pytest.param({"run_id": ""}, "run_id must be a non-empty string or None", id="run-id"),
        pytest.param({"config_key": None}, "config_key must be a string, got None", id="config-key"),
    ],
)
def test_add_design_mixture_refuses_bad_input(tiny_store: Path, change: dict[str, Any], match: str) -> None:
    store = Store.open(tiny_store)
    with pytest.raises(ValueError, match=match):
        store.add_design_mixture(**{**DESIGN, **change})
    assert store.design_mixtures().num_rows == 0


def test_shares_within_the_tolerance_are_accepted(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_design_mixture(**{**DESIGN, "regions": [0, 1], "shares": [0.3, 0.7 + 5e-7]})
    assert json.loads(store.design_mixtures()["shares"][0].as_py()) == [0.3, 0.7 + 5e-7]


def test_add_design_mixture_needs_domains_and_a_writable_store(tmp_path: Path, tiny_store: Path) -> None:
    empty = Store.create(tmp_path / "empty.duckdb")
    with pytest.raises(ValueError, match="write the domains before adding a design mixture"):
        empty.add_design_mixture(**DESIGN)
    with pytest.raises(StoreError, match="opened read-only"):
        Store.open(tiny_store, read_only=True).add_design_mixture(**DESIGN)
    with pytest.raises(ValueError, match="config_key must be a string or None"):
        Store.open(tiny_store).design_mixtures(config_key=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level must be 'large', 'parent' or None, got 'leaf'"):
        Store.open(tiny_store).design_mixtures(level="leaf")
    assert Store.open(tiny_store).design_mixtures().num_rows == 0


# -- replacing the tree or the domains ----------------------------------------------------------------------------


def test_design_mixtures_belong_to_the_tree_and_the_domains(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    store.add_design_mixture(**DESIGN)
    points = points_from_members([np.array([1, 2])])
    with pytest.raises(ValueError, match="holds 0 measurements and 1 design mixtures.*discard_measurements"):
        store.write_tree(points, [0], [0], 1)
    store.add_mixture(**MIXTURE)
    with pytest.raises(
        ValueError,
        match="holds 0 measurements, 1 mixture validations and 1 design mixtures of the current tree",
    ):
        store.write_tree(points, [0], [0], 1)
    assert store.summary()["n_leaves"] == 4, "the refused tree was not written"
    with pytest.raises(
        ValueError,
        match="names has 2 domains but the store holds 12 effects, 1 mixture validations, 1 design",
    ):
        store.write_domains(["a", "b"], [0.1, 0.2])
    store.write_domains(["x", "y", "z"], [0.1, 0.2, 0.3])  # same number of domains: kept
    assert store.design_mixtures().num_rows == 3
    store.write_tree(points, [0], [0], 1, discard_measurements=True)
    assert store.design_mixtures().num_rows == 0 and store.mixtures().num_rows == 0
    assert store.summary()["n_design_mixtures"] == 0
    assert store.add_design_mixture(**{**DESIGN, "regions": [0], "shares": [1.0]}) == 0


def test_design_mixtures_alone_block_a_change_of_the_number_of_domains(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "bare.duckdb")
    store.write_tree(points_from_members([np.array([1]), np.array([2])]), [0, 1], [0, 0], 1)
    store.write_domains(["a", "b", "c"], [0.1, 0.2, 0.3])
    store.add_design_mixture(**DESIGN)
    with pytest.raises(
        ValueError, match="names has 1 domains but the store holds 1 design mixtures for its 3"
    ):
        store.write_domains(["a"], [0.1])
    assert store.summary()["n_domains"] == 3
