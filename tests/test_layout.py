"""The 2-D leaf map (harp.layout): PCA and UMAP, the cache key, the store cache and `harp layout`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import harp.layout as layout_module
from harp.cli import main
from harp.layout import LAYOUT_VERSION, compute_layout, ensure_layout, layout_key, leaf_centroids
from harp.store import Store


def test_few_leaves_get_pca_deterministically(rng):
    points = rng.standard_normal((10, 5))
    first = compute_layout(points)
    assert first.method == "pca" and first.x.shape == (10,) and first.y.shape == (10,)
    again = compute_layout(points)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, again.y)
    # The first axis carries the most variance.
    assert np.var(first.x) >= np.var(first.y)


@pytest.mark.parametrize("n", [1, 2], ids=lambda n: f"{n}-leaves")
def test_one_or_two_leaves(n, rng):
    result = compute_layout(rng.standard_normal((n, 3)))
    assert result.method == "pca" and np.isfinite(result.x).all() and (result.y == 0).all()


def test_identical_centroids_sit_at_the_origin():
    result = compute_layout(np.ones((4, 3)))
    assert (result.x == 0).all() and (result.y == 0).all()


def test_the_key_names_version_method_every_hyperparameter_and_the_input(rng):
    points = rng.standard_normal((40, 6))
    key = layout_key(points, method="umap", n_neighbors=10, min_dist=0.2, metric="euclidean", seed=3)
    for part in (LAYOUT_VERSION, "method=umap", "n_neighbors=10", "min_dist=0.2", "metric=euclidean", "seed=3",
                 "n=40", "dim=6", "input="):  # fmt: skip
        assert part in key
    variants = [
        layout_key(points, method="umap", n_neighbors=11, min_dist=0.2, metric="euclidean", seed=3),
        layout_key(points, method="umap", n_neighbors=10, min_dist=0.3, metric="euclidean", seed=3),
        layout_key(points, method="umap", n_neighbors=10, min_dist=0.2, metric="cosine", seed=3),
        layout_key(points, method="umap", n_neighbors=10, min_dist=0.2, metric="euclidean", seed=4),
        layout_key(points + 1e-3, method="umap", n_neighbors=10, min_dist=0.2, metric="euclidean", seed=3),
        layout_key(points, method="pca"),
    ]
    assert len({key, *variants}) == len(variants) + 1
    # auto resolves by the number of leaves, and n_neighbors is capped by it.
    assert "method=pca" in layout_key(points[:15]) and "method=umap" in layout_key(points[:16])
    assert "n_neighbors=4" in layout_key(points[:5], method="umap")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"leaf_centroids": np.zeros(3)}, "leaf_centroids must be 2-D"),
        ({"leaf_centroids": np.array([[np.nan, 0.0]])}, "leaf_centroids must be finite"),
        ({"method": "tsne"}, "method must be 'auto', 'umap' or 'pca'"),
        ({"n_neighbors": 1}, "n_neighbors must be an integer >= 2"),
        ({"min_dist": 2.0}, r"min_dist must be a number in \[0, 1\]"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"leaf_centroids": np.zeros((2, 3)), "method": "umap"}, "needs at least 3 leaves"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_names_the_argument(kwargs, message):
    arguments = {"leaf_centroids": np.arange(12.0).reshape(4, 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        compute_layout(**arguments)


def test_leaf_centroids_from_point_ids(rng):
    X = rng.standard_normal((6, 2)).astype(np.float32)
    centroids = leaf_centroids(X, [5, 0, 1, 2, 3, 4], [1, 0, 0, 1, 1, 1], 2)
    np.testing.assert_allclose(centroids[0], X[[0, 1]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(centroids[1], X[[2, 3, 4, 5]].mean(axis=0), rtol=1e-6)
    with pytest.raises(ValueError, match="point ids must be row numbers of X_feat"):
        leaf_centroids(X, [0, 9], [0, 1], 2)
    with pytest.raises(ValueError, match="leaf 1 has no points"):
        leaf_centroids(X, [0, 1], [0, 0], 2)


def test_ensure_layout_reuses_a_matching_key_and_recomputes_otherwise(tiny_store, rng, monkeypatch):
    store = Store.open(tiny_store)
    centroids = rng.standard_normal((4, 3))
    first, computed = ensure_layout(store, centroids)
    assert computed and store.layout_key() == first.key
    np.testing.assert_array_equal(store.layout()[0], first.x)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the key matches")

    monkeypatch.setattr(layout_module, "compute_layout", fail)
    again, computed = ensure_layout(store, centroids)
    assert not computed and again.key == first.key
    np.testing.assert_array_equal(again.x, first.x)
    monkeypatch.undo()
    _, computed = ensure_layout(store, centroids, force=True)
    assert computed
    changed, computed = ensure_layout(store, centroids, seed=1)
    assert computed and "seed=1" in store.layout_key() and changed.key != first.key


@pytest.mark.slow
def test_umap_layout_is_deterministic_for_a_seed(rng):
    pytest.importorskip("umap")
    points = np.concatenate([rng.normal(0, 0.1, (10, 8)), rng.normal(3, 0.1, (10, 8))])
    first = compute_layout(points, metric="euclidean", seed=7)
    assert first.method == "umap" and first.x.shape == (20,)
    again = compute_layout(points, metric="euclidean", seed=7)
    np.testing.assert_array_equal(first.x, again.x)
    # The two groups stay apart on the map.
    centre_a = np.array([first.x[:10].mean(), first.y[:10].mean()])
    centre_b = np.array([first.x[10:].mean(), first.y[10:].mean()])
    spread = max(np.std(first.x[:10]), np.std(first.y[:10]))
    assert np.linalg.norm(centre_a - centre_b) > 2 * spread


def test_harp_layout_caches_in_the_store(tmp_path, rng):
    from harp.hierarchy import build_hierarchy
    from harp.load import write_hierarchy

    X = rng.standard_normal((300, 4)).astype(np.float32)
    features = tmp_path / "X.npy"
    np.save(features, X)
    store = Store.create(tmp_path / "s.duckdb")
    write_hierarchy(store, build_hierarchy(X, leaf_size=30, backend="sklearn"))
    args = ["layout", "--store", str(store.path), "--features", str(features), "--method", "pca"]
    first = CliRunner().invoke(main, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["computed"] is True
    second = CliRunner().invoke(main, args, catch_exceptions=False)
    assert json.loads(second.stdout)["computed"] is False and "unchanged" in second.stderr
    short = tmp_path / "short.npy"
    np.save(short, X[:10])
    failed = CliRunner().invoke(main, ["layout", "--store", str(store.path), "--features", str(short)])
    assert failed.exit_code == 1 and "point ids must be row numbers" in failed.output
