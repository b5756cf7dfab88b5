"""The map positions of the examples: migration m006, computing them around their leaves, the store's writes and
reads, the Parquet round trip and the commands that write them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner
from store_versions import downgrade_sql

from harp.cli import main as cli_main
from harp.layout import compute_layout, ensure_layout, point_positions
from harp.store import Store, StoreError, export_parquet, import_parquet, migrations

TINY_POINTS = np.array([10, 11, 20, 32, 30, 31, 41, 40])  # the tiny store's points, leaf by leaf
TINY_LEAVES = np.array([0, 0, 1, 2, 2, 2, 3, 3])
TINY_X = np.array([0.0, 0.5, 3.0, 3.5])
TINY_Y = np.array([0.0, 0.2, 1.0, 1.4])


def raw(path: Path, *queries: str) -> list[list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path))
    try:
        return [con.execute(query).fetchall() for query in queries]
    finally:
        con.close()


def tiny_features(rng: np.random.Generator) -> np.ndarray:
    """Features for the tiny store: point id = row (50 rows, 6 features)."""
    return rng.standard_normal((50, 6)).astype(np.float32)


# -- computing them -----------------------------------------------------------------------------------------------


def test_every_point_lies_near_its_leaf_and_leaves_keep_apart(rng: np.random.Generator) -> None:
    n_leaves = 40
    centres = rng.standard_normal((n_leaves, 2)) * 10
    leaves = rng.integers(0, n_leaves, 3000)
    X = (rng.standard_normal((3000, 32)) + leaves[:, None] * 0.1).astype(np.float32)
    x, y = point_positions(X, np.arange(3000), leaves, centres[:, 0], centres[:, 1])
    gaps = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(gaps, np.inf)
    nearest = gaps.min(axis=1)
    distance = np.hypot(x - centres[leaves, 0], y - centres[leaves, 1])
    assert (distance <= 0.4 * nearest[leaves] + 1e-9).all(), "no point beyond 0.4 of the way to the next leaf"
    assert np.isclose(
        np.array([distance[leaves == g].max() for g in range(n_leaves)]), 0.4 * nearest
    ).all(), "each leaf's farthest point at exactly 0.4 of the gap"
    again = point_positions(X, np.arange(3000), leaves, centres[:, 0], centres[:, 1])
    assert np.array_equal(again[0], x) and np.array_equal(again[1], y), "deterministic"
    order = rng.permutation(3000)  # the same points listed in another order land at the same places
    shuffled = point_positions(X, np.arange(3000)[order], leaves[order], centres[:, 0], centres[:, 1])
    np.testing.assert_allclose(shuffled[0], x[order], atol=1e-6)  # float32 sums in another order


def test_one_point_and_two_point_leaves() -> None:
    X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [5.0, 5.0, 5.0]])
    leaf_x, leaf_y = np.array([0.0, 10.0, 20.0]), np.array([0.0, 0.0, 0.0])
    # leaf 0: one point; leaf 1: two points; leaf 2: one point
    x, y = point_positions(X, [0, 1, 2, 3], [0, 1, 1, 2], leaf_x, leaf_y)
    assert (x[0], y[0]) == (0.0, 0.0) and (x[3], y[3]) == (20.0, 0.0), "a one-point leaf sits on its leaf"
    # The two points of leaf 1 lie on a line through it, each 0.4 of the 10 to the nearest leaf away.
    np.testing.assert_allclose(np.hypot(x[1:3] - 10.0, y[1:3]), [4.0, 4.0])
    np.testing.assert_allclose((x[1] + x[2]) / 2, 10.0)
    np.testing.assert_allclose((y[1] + y[2]) / 2, 0.0, atol=1e-12)


def test_identical_points_sit_on_their_leaf_and_a_lone_leaf_is_fine() -> None:
    x, y = point_positions(np.ones((3, 4)), [0, 1, 2], [0, 0, 0], [2.0], [3.0])
    assert np.array_equal(x, [2.0, 2.0, 2.0]) and np.array_equal(y, [3.0, 3.0, 3.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"point_ids": [0, 9]}, "X_feat has 4 rows but the store has point id 9"),
        ({"leaf_ids": [0, 5]}, r"leaf_ids must lie in 0\.\.1, got 5"),
        ({"leaf_ids": [0]}, "point_ids has 2 entries but leaf_ids has 1"),
        ({"spread": 0.9}, r"spread must be a number in \(0, 0.5\], got 0.9"),
        ({"X_feat": np.full((4, 2), np.nan)}, "X_feat must be finite, found a NaN or inf in row 0"),
    ],
    ids=["point-beyond-X", "leaf-out-of-range", "length-mismatch", "spread", "nan"],
)
def test_bad_input_is_refused_with_the_argument_named(kwargs: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {
        "X_feat": np.eye(4, 2),
        "point_ids": [0, 1],
        "leaf_ids": [0, 1],
        "leaf_x": [0.0, 1.0],
        "leaf_y": [0.0, 1.0],
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        point_positions(**arguments)


# -- the store ----------------------------------------------------------------------------------------------------


def test_m006_adds_the_table_without_touching_the_content_hash(tiny_store: Path) -> None:
    assert migrations.MIGRATIONS[5].name == "m006_point_positions"
    assert migrations.TABLE_KEYS["point_positions"] == ("leaf_id", "point_id")
    columns = {row[0]: row[1] for row in raw(tiny_store, "DESCRIBE point_positions")[0]}
    assert columns == {"leaf_id": "INTEGER", "point_id": "BIGINT", "x": "DOUBLE", "y": "DOUBLE",
                       "layout_key": "VARCHAR"}  # fmt: skip
    before = Store.open(tiny_store).content_hash()
    raw(
        tiny_store,
        *downgrade_sql(5),
    )
    store = Store.open(tiny_store)  # migrates
    assert store.meta()["schema_version"] == str(migrations.latest_version())
    assert not store.has_point_positions() and store.point_positions([0, 1]).num_rows == 0
    assert store.content_hash() == store.content_hash(recompute=True) == before


def _broken_m006(con: duckdb.DuckDBPyConnection) -> None:
    migrations.m006_point_positions(con)
    con.execute("UPDATE domains SET base = 0")
    raise RuntimeError("disk on fire")


def test_a_failing_m006_rolls_back(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw(
        tiny_store,
        *downgrade_sql(5),
    )
    domains = raw(tiny_store, "SELECT * FROM domains ORDER BY domain_id")
    steps = [*migrations.MIGRATIONS[:5], migrations.Migration("m006_point_positions", _broken_m006)]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    with pytest.raises(
        StoreError,
        match=r"m006_point_positions failed and was rolled back \(the store stays at schema version 5\)",
    ):
        Store.open(tiny_store)
    monkeypatch.undo()
    tables, version, domains_after = raw(
        tiny_store,
        "SELECT table_name FROM duckdb_tables() WHERE table_name = 'point_positions'",
        "SELECT value FROM meta WHERE key = 'schema_version'",
        "SELECT * FROM domains ORDER BY domain_id",
    )
    assert (tables, version, domains_after) == ([], [("5",)], domains[0])
    assert Store.open(tiny_store).has_point_positions() is False  # the real migration then applies


def write_tiny_positions(store: Store) -> None:
    x = np.arange(8, dtype=float) / 10
    store.write_layout(TINY_X, TINY_Y, "tiny:v2", point_positions=(TINY_POINTS[::-1], x[::-1], -x[::-1]))


def test_positions_are_written_with_the_layout_and_read_by_leaf(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    before = store.content_hash()
    write_tiny_positions(store)
    assert store.has_point_positions() and store.summary()["has_point_positions"]
    assert store.content_hash() == before, "derived display data, like the layout: not in the content hash"
    got = store.point_positions([2, 0, 2, 99])
    assert got.column_names == ["leaf_id", "point_id", "x", "y"]
    assert got["leaf_id"].to_pylist() == [0, 0, 2, 2, 2]
    assert got["point_id"].to_pylist() == [10, 11, 30, 31, 32]
    assert got["x"].to_pylist() == [0.0, 0.1, 0.4, 0.5, 0.3]
    with_texts = store.point_positions([0, 1, 2, 3] * 5 + list(range(100, 140, 2)), with_texts=True)
    assert with_texts["point_id"].to_pylist() == [10, 11, 20, 32, 30, 31, 41, 40]  # rank order
    assert with_texts["text"].to_pylist()[1] == "<script>alert(1)</script>"
    assert raw(tiny_store, "SELECT DISTINCT layout_key FROM point_positions")[0] == [("tiny:v2",)]
    store.write_layout(TINY_X, TINY_Y, "tiny:v3")  # a layout without positions drops the old ones
    assert not store.has_point_positions()


def test_a_new_tree_drops_the_positions(tiny_store: Path) -> None:
    store = Store.open(tiny_store)
    write_tiny_positions(store)
    points = store.read_table("points")
    store.write_tree(points, [0, 0, 1, 1], [0, 0], 1)
    assert not store.has_point_positions()


@pytest.mark.parametrize(
    ("positions", "match"),
    [
        ((TINY_POINTS[:7], np.zeros(7), np.zeros(7)), "point_positions has 7 points but the store has 8"),
        ((np.r_[TINY_POINTS[:7], 10], np.zeros(8), np.zeros(8)), "lists a point id twice"),
        ((np.r_[TINY_POINTS[:7], 99], np.zeros(8), np.zeros(8)), "names 1 point ids the store does not hold"),
        ((TINY_POINTS, np.full(8, np.nan), np.zeros(8)), "point_positions x"),
        ((TINY_POINTS, np.zeros(8)), r"three arrays \(point_id, x, y\)"),
    ],
    ids=["too-few", "twice", "unknown", "nan", "two-arrays"],
)
def test_bad_positions_are_refused_and_nothing_is_written(
    tiny_store: Path, positions: tuple[Any, ...], match: str
) -> None:
    store = Store.open(tiny_store)
    write_tiny_positions(store)
    with pytest.raises(ValueError, match=match):
        store.write_layout([9, 9, 9, 9], [9, 9, 9, 9], "bad", point_positions=positions)  # type: ignore[arg-type]
    assert store.layout_key() == "tiny:v2" and store.point_positions([0, 1, 2, 3]).num_rows == 8


def test_positions_survive_the_parquet_round_trip(tiny_store: Path, tmp_path: Path) -> None:
    store = Store.open(tiny_store)
    write_tiny_positions(store)
    export_parquet(tiny_store, tmp_path / "export")
    assert (tmp_path / "export" / "point_positions.parquet").exists()
    copy = import_parquet(tmp_path / "export", tmp_path / "copy.duckdb")
    assert copy.point_positions([0, 1, 2, 3]).equals(store.point_positions([0, 1, 2, 3]))
    assert copy.content_hash() == store.content_hash()


def test_ensure_layout_adds_positions_to_a_cached_layout(tiny_store: Path, rng: np.random.Generator) -> None:
    store = Store.open(tiny_store)
    X = tiny_features(rng)
    centroids = np.stack([X[TINY_POINTS[TINY_LEAVES == g]].mean(axis=0) for g in range(4)])
    layout, computed = ensure_layout(store, centroids, method="pca")
    assert computed and not store.has_point_positions()
    again, computed = ensure_layout(store, centroids, method="pca", X_feat=X)
    assert computed, "the cached layout had no positions: they are computed around it"
    np.testing.assert_array_equal(again.x, layout.x)
    positions = store.point_positions(range(4))
    x, _ = point_positions(
        X, positions["point_id"].to_numpy(), positions["leaf_id"].to_numpy(), layout.x, layout.y
    )
    np.testing.assert_allclose(positions["x"].to_numpy(), x)
    _, computed = ensure_layout(store, centroids, method="pca", X_feat=X)
    assert not computed, "layout and positions cached"


def test_a_million_points_take_one_pass(rng: np.random.Generator) -> None:
    """Not a timing: the positions of many points come out of the vectorised path with the right shape."""
    leaves = rng.integers(0, 500, 20_000)
    layout = compute_layout(rng.standard_normal((500, 3)), method="pca")
    x, y = point_positions(rng.standard_normal((20_000, 40)), np.arange(20_000), leaves, layout.x, layout.y)
    assert x.shape == y.shape == (20_000,) and np.isfinite(x).all() and np.isfinite(y).all()


# -- the commands -------------------------------------------------------------------------------------------------


def test_harp_layout_with_features_writes_them_and_info_says_so(
    tiny_store: Path, tmp_path: Path, rng: np.random.Generator
) -> None:
    runner = CliRunner()
    info = runner.invoke(cli_main, ["info", str(tiny_store)])
    assert (
        "has_point_positions False (`harp layout --store S --features X_feat.npy` computes them)"
        in info.output
    )
    features = tmp_path / "X_feat.npy"
    np.save(features, tiny_features(rng))
    result = runner.invoke(
        cli_main, ["layout", "--store", str(tiny_store), "--features", str(features), "--method", "pca"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["point_positions"] == 8
    assert Store.open(tiny_store, read_only=True).point_positions(range(4)).num_rows == 8
    info = runner.invoke(cli_main, ["info", str(tiny_store)])
    assert "has_point_positions True" in info.output


def test_harp_layout_with_too_few_feature_rows_names_the_file(tiny_store: Path, tmp_path: Path) -> None:
    features = tmp_path / "X_feat.npy"
    np.save(features, np.zeros((20, 3), dtype=np.float32))
    result = CliRunner().invoke(cli_main, ["layout", "--store", str(tiny_store), "--features", str(features)])
    assert result.exit_code == 1
    assert "X_feat has 20 rows but the store has point id 41" in result.output


def test_harp_load_with_features_writes_positions(tmp_path: Path, rng: np.random.Generator) -> None:
    from harp.load import load_arrays

    n_points, n_leaves = 60, 6
    leaf_of_point = np.repeat(np.arange(n_leaves), 10)
    X = rng.standard_normal((n_points, 5)).astype(np.float32)
    store = load_arrays(
        tmp_path / "loaded.duckdb",
        phi=rng.normal(0, 0.01, (n_leaves, 2)),
        base=[0.5, 0.5],
        domain_names=["a", "b"],
        leaf_of_point=leaf_of_point,
        parent_of_leaf=[0, 0, 0, 1, 1, 1],
        X_feat=X,
        layout_method="pca",
    )
    table = store.point_positions(range(n_leaves))
    assert table.num_rows == n_points and store.has_point_positions()
    assert sorted(table["point_id"].to_pylist()) == list(range(n_points))
