"""Stage 1a: the nested three-level tree (harp.hierarchy) and `harp hierarchy`."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harp.cli import main
from harp.hierarchy import Hierarchy, HierarchyWarning, build_hierarchy, group_means, kmeans_labels
from harp.store import Store


def blobs(
    rng: np.random.Generator, n_blobs: int, per_blob: int, dim: int = 8, spread: float = 0.05
) -> np.ndarray:
    centres = rng.standard_normal((n_blobs, dim)) * 5
    return (
        np.repeat(centres, per_blob, axis=0) + spread * rng.standard_normal((n_blobs * per_blob, dim))
    ).astype(np.float32)


def check_tree(
    tree: Hierarchy, X: np.ndarray, min_leaf: int | None = None, max_leaf: int | None = None
) -> None:
    """Every invariant DESIGN.md asks of a tree."""
    n = X.shape[0]
    leaf_size = np.bincount(tree.point_leaf, minlength=tree.n_leaves)
    assert tree.point_leaf.shape == (n,) and tree.rank_in_leaf.shape == (n,)
    assert (leaf_size > 0).all(), "no empty leaf"
    assert set(tree.leaf_parent.tolist()) == set(range(tree.n_parents)), "parent ids contiguous, none empty"
    assert set(tree.parent_large.tolist()) == set(range(tree.n_large)), "large ids contiguous, none empty"
    assert (np.diff(tree.leaf_parent) >= 0).all() and (np.diff(tree.parent_large) >= 0).all()
    flat = np.concatenate(tree.members)
    assert np.array_equal(np.sort(flat), np.arange(n)), "every point in exactly one leaf"
    for g, points in enumerate(tree.members):
        assert (tree.point_leaf[points] == g).all()
        assert np.array_equal(tree.rank_in_leaf[points], np.arange(points.size))
        distance = ((X[points].astype(np.float64) - tree.leaf_centroids[g]) ** 2).sum(axis=1)
        assert (np.diff(distance) >= -1e-4 * (1 + distance.max())).all(), "most central first"
    means, _ = group_means(X, tree.point_leaf, tree.n_leaves)
    np.testing.assert_allclose(tree.leaf_centroids, means, rtol=1e-4, atol=1e-5)
    assert tree.parent_centroids.shape == (tree.n_parents, X.shape[1])
    assert tree.large_centroids.shape == (tree.n_large, X.shape[1])
    if min_leaf is not None and n >= min_leaf:
        assert leaf_size.min() >= min_leaf
    if max_leaf is not None:
        assert leaf_size.max() <= max(max_leaf, min_leaf or 0, n if n < (min_leaf or 0) else 0)


@pytest.mark.parametrize("n", [1, 2, 10], ids=lambda n: f"{n}-points")
def test_a_tiny_pool_is_one_leaf_with_a_warning(rng, n):
    X = rng.standard_normal((n, 4))
    with pytest.warns(HierarchyWarning, match="fewer than min_leaf=16"):
        tree = build_hierarchy(X, backend="sklearn")
    assert (tree.n_large, tree.n_parents, tree.n_leaves) == (1, 1, 1)
    check_tree(tree, X.astype(np.float32))


def test_sizes_scale_with_the_pool(rng):
    X = rng.standard_normal((4096, 8)).astype(np.float32)
    tree = build_hierarchy(X, backend="sklearn")
    check_tree(tree, X, 16, 256)
    assert 45 <= tree.n_leaves <= 90  # about 4096 / 64
    assert 6 <= tree.n_parents <= 10  # about 64 / 8
    assert tree.n_large == 1  # 4096 < 64 * 8 * 8
    assert tree.config["backend"] == "sklearn" and tree.config["leaf_size"] == 64


def test_every_size_is_overridable(rng):
    X = rng.standard_normal((2000, 6)).astype(np.float32)
    tree = build_hierarchy(
        X, leaf_size=20, leaves_per_parent=5, parents_per_large=4, min_leaf=8, max_leaf=40, backend="sklearn"
    )
    check_tree(tree, X, 8, 40)
    assert 80 <= tree.n_leaves <= 130
    assert 15 <= tree.n_parents <= 25
    assert 3 <= tree.n_large <= 7


def test_the_same_seed_gives_the_same_tree(rng):
    X = rng.standard_normal((900, 5)).astype(np.float32)
    first = build_hierarchy(X, leaf_size=30, seed=3, backend="sklearn")
    again = build_hierarchy(X, leaf_size=30, seed=3, backend="sklearn")
    for field in ("point_leaf", "leaf_parent", "parent_large", "rank_in_leaf", "leaf_centroids"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))


def test_separated_blobs_become_pure_parents(rng):
    X = blobs(rng, n_blobs=4, per_blob=200)
    truth = np.repeat(np.arange(4), 200)
    tree = build_hierarchy(X, leaf_size=50, leaves_per_parent=4, backend="sklearn")
    assert tree.n_parents == 4
    point_parent = tree.leaf_parent[tree.point_leaf]
    for p in range(tree.n_parents):
        assert np.unique(truth[point_parent == p]).size == 1


def test_identical_points_are_cut_into_chunks_inside_the_band():
    X = np.ones((500, 3), dtype=np.float32)
    with pytest.warns(HierarchyWarning, match="could not split"):
        tree = build_hierarchy(X, backend="sklearn")
    check_tree(tree, X, 16, 256)
    assert tree.n_leaves == 8  # round(500 / 64)


def test_oversized_clusters_are_split_and_tiny_ones_merged(rng):
    # One dense blob of 600 points and a few strays: k-means alone would give a huge leaf and tiny ones.
    X = np.concatenate([blobs(rng, 1, 600, spread=0.01), rng.standard_normal((5, 8)).astype(np.float32) * 10])
    tree = build_hierarchy(X, leaf_size=64, min_leaf=20, max_leaf=100, backend="sklearn")
    check_tree(tree, X, 20, 100)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 300),
    dim=st.integers(1, 4),
    leaf_size=st.integers(2, 24),
    min_ratio=st.integers(1, 4),
    levels=st.integers(1, 6),
    duplicates=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(n=1, dim=1, leaf_size=2, min_ratio=1, levels=1, duplicates=False, seed=0)
@example(n=300, dim=1, leaf_size=24, min_ratio=4, levels=1, duplicates=True, seed=1)
def test_any_pool_gives_a_valid_nested_tree(n, dim, leaf_size, min_ratio, levels, duplicates, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    if duplicates:
        X = np.round(X)  # few distinct values: k-means collapses, the chunk fallback must keep the band
    min_leaf = max(1, leaf_size // min_ratio)
    max_leaf = 2 * leaf_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierarchyWarning)
        tree = build_hierarchy(
            X,
            leaf_size=leaf_size,
            leaves_per_parent=levels,
            parents_per_large=levels,
            min_leaf=min_leaf,
            max_leaf=max_leaf,
            seed=seed,
            backend="sklearn",
        )
    check_tree(tree, X, min_leaf, max_leaf)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X_feat": np.zeros(5)}, "X_feat must be 2-D"),
        ({"X_feat": np.zeros((0, 3))}, "at least one point"),
        ({"X_feat": np.array([[0.0, np.nan]])}, r"X_feat must be finite, found nan at row 0, column 1"),
        ({"X_feat": np.array([[np.inf]])}, "X_feat must be finite"),
        ({"X_feat": np.array([["a", "b"]])}, "X_feat must hold numbers"),
        ({"leaf_size": 0}, "leaf_size must be >= 1"),
        ({"leaf_size": 2.5}, "leaf_size must be an integer"),
        ({"min_leaf": 80}, "min_leaf <= leaf_size <= max_leaf"),
        ({"max_leaf": 40}, "min_leaf <= leaf_size <= max_leaf"),
        ({"min_leaf": 40, "max_leaf": 70}, r"max_leaf must be >= 2 \* min_leaf = 80"),
        ({"backend": "gpu"}, "backend must be one of"),
        ({"seed": "x"}, "seed must be an integer"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_names_the_argument(kwargs, message):
    arguments = {"X_feat": np.zeros((10, 2)), **kwargs}
    with pytest.raises(ValueError, match=message):
        build_hierarchy(**arguments)


def test_torch_backend_gives_a_valid_tree(rng):
    pytest.importorskip("torch")
    X = blobs(rng, 3, 150)
    tree = build_hierarchy(X, leaf_size=40, backend="torch")
    check_tree(tree, X, 10, 160)
    assert tree.config["backend"].startswith("torch")
    again = build_hierarchy(X, leaf_size=40, backend="torch")
    np.testing.assert_array_equal(tree.point_leaf, again.point_leaf)


def test_torch_seeding_spreads_centres_and_survives_fewer_distinct_points_than_k(rng):
    """k-means++ in the torch engine: on three far-apart points repeated, the three centres are the three points
    (a later draw has weight 0 at a chosen point); asking for five repeats one instead of failing."""
    pytest.importorskip("torch")
    from harp.hierarchy import kmeans_labels

    points = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    X = np.repeat(points, 20, axis=0)
    for seed in range(3):
        labels = kmeans_labels(X, 3, seed=seed, backend="torch")
        assert sorted(np.bincount(labels).tolist()) == [20, 20, 20]
        assert all(len(set(labels[i * 20 : (i + 1) * 20])) == 1 for i in range(3))
        labels = kmeans_labels(X, 5, seed=seed, backend="torch")
        assert labels.shape == (60,) and sorted(np.bincount(labels).tolist()) == [20, 20, 20]


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed")
def test_faiss_backend_gives_a_valid_tree(rng):
    X = blobs(rng, 3, 150)
    tree = build_hierarchy(X, leaf_size=40, backend="faiss")
    check_tree(tree, X, 10, 160)
    assert tree.config["backend"].startswith("faiss")


def test_kmeans_labels_are_contiguous(rng):
    X = blobs(rng, 3, 20)
    labels = kmeans_labels(X, 3, seed=1, backend="sklearn")
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert kmeans_labels(X[:2], 5, backend="sklearn").max() <= 1
    with pytest.raises(ValueError, match="n_clusters must be >= 1"):
        kmeans_labels(X, 0)


# ----------------------------------------------------------------------------------------------------------------
# The torch backend's batched levels (harp.hierarchy.batched, harp.hierarchy.on_device), on CPU torch here


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 400),
    dim=st.integers(1, 4),
    leaf_size=st.integers(2, 24),
    min_ratio=st.integers(1, 4),
    levels=st.integers(1, 6),
    duplicates=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(n=1, dim=1, leaf_size=2, min_ratio=1, levels=1, duplicates=False, seed=0)
@example(n=400, dim=1, leaf_size=24, min_ratio=4, levels=1, duplicates=True, seed=1)
@example(n=400, dim=2, leaf_size=3, min_ratio=1, levels=6, duplicates=False, seed=2)
def test_torch_backend_gives_a_valid_nested_tree_on_any_pool(
    n, dim, leaf_size, min_ratio, levels, duplicates, seed
):
    pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    if duplicates:
        X = np.round(X)  # few distinct values: k-means collapses, the chunk fallback must keep the band
    min_leaf = max(1, leaf_size // min_ratio)
    max_leaf = 2 * leaf_size
    arguments = {
        "leaf_size": leaf_size,
        "leaves_per_parent": levels,
        "parents_per_large": levels,
        "min_leaf": min_leaf,
        "max_leaf": max_leaf,
        "seed": seed,
        "backend": "torch",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierarchyWarning)
        tree = build_hierarchy(X, **arguments)
        again = build_hierarchy(X, **arguments)
    check_tree(tree, X, min_leaf, max_leaf)
    for field in ("point_leaf", "leaf_parent", "parent_large", "rank_in_leaf", "leaf_centroids"):
        np.testing.assert_array_equal(getattr(tree, field), getattr(again, field))


def test_torch_backend_splits_oversized_leaves_merges_tiny_ones_and_warns_like_the_others(rng):
    pytest.importorskip("torch")
    X = np.concatenate([blobs(rng, 1, 600, spread=0.01), rng.standard_normal((5, 8)).astype(np.float32) * 10])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HierarchyWarning)
        tree = build_hierarchy(X, leaf_size=64, min_leaf=20, max_leaf=100, backend="torch")
    check_tree(tree, X, 20, 100)
    with pytest.warns(HierarchyWarning, match="could not split 1 group"):
        tree = build_hierarchy(np.ones((500, 3), dtype=np.float32), backend="torch")
    assert tree.n_leaves == 8  # round(500 / 64) equal chunks
    with pytest.warns(HierarchyWarning, match="fewer than min_leaf=16"):
        tree = build_hierarchy(rng.standard_normal((10, 4)), backend="torch")
    assert (tree.n_large, tree.n_parents, tree.n_leaves) == (1, 1, 1)


def test_torch_backend_separates_blobs_into_pure_parents(rng):
    pytest.importorskip("torch")
    X = blobs(rng, n_blobs=4, per_blob=200)
    truth = np.repeat(np.arange(4), 200)
    tree = build_hierarchy(X, leaf_size=50, leaves_per_parent=4, backend="torch")
    assert tree.n_parents == 4
    point_parent = tree.leaf_parent[tree.point_leaf]
    for p in range(tree.n_parents):
        assert np.unique(truth[point_parent == p]).size == 1


def test_torch_backend_checks_for_nan_and_inf_on_its_device():
    pytest.importorskip("torch")
    X = np.zeros((50, 3), dtype=np.float32)
    X[31, 2] = np.nan
    with pytest.raises(ValueError, match=r"X_feat must be finite, found nan at row 31, column 2"):
        build_hierarchy(X, backend="torch")


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_a_memory_mapped_file_gives_the_tree_of_the_array(tmp_path, rng, backend):
    pytest.importorskip("torch" if backend == "torch" else "sklearn")
    X = blobs(rng, 3, 100)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    from_file = build_hierarchy(mapped, leaf_size=20, backend=backend)
    in_memory = build_hierarchy(X, leaf_size=20, backend=backend)
    np.testing.assert_array_equal(from_file.point_leaf, in_memory.point_leaf)
    np.testing.assert_array_equal(from_file.rank_in_leaf, in_memory.rank_in_leaf)


def test_split_groups_fits_each_group_on_its_own_and_chunks_the_unsplittable(rng):
    torch = pytest.importorskip("torch")
    from harp.hierarchy.band import Counters
    from harp.hierarchy.batched import Groups, split_groups

    # Group 0: two far blobs of 40 points; group 1: 30 identical points; group 2: 12 points, left whole.
    two_blobs = blobs(rng, 2, 40, dim=3)
    X = np.concatenate([two_blobs, np.ones((30, 3), dtype=np.float32), rng.standard_normal((12, 3))])
    X = torch.from_numpy(X.astype(np.float32))
    groups = Groups(rows=torch.arange(X.shape[0]), sizes=np.array([80, 30, 12]))
    counters = Counters()
    generator = torch.Generator().manual_seed(0)
    pieces, piece_group = split_groups(
        X,
        groups,
        np.array([2, 3, 1]),
        min_size=5,
        max_size=None,
        generator=generator,
        n_iter=20,
        max_points_per_centroid=256,
        counters=counters,
    )
    assert piece_group.tolist() == [0, 0, 1, 1, 1, 2]
    assert pieces.sizes.tolist() == [40, 40, 10, 10, 10, 12]
    assert (counters.kmeans_calls, counters.chunked_groups) == (2, 1)
    rows = np.split(pieces.rows.numpy(), np.cumsum(pieces.sizes)[:-1])
    assert sorted(np.concatenate(rows[:2]).tolist()) == list(range(80))
    assert {frozenset(rows[0] // 40), frozenset(rows[1] // 40)} == {frozenset([0]), frozenset([1])}
    assert all((np.diff(part) > 0).all() for part in rows), "ids ascending inside each piece"


def test_fit_mask_draws_max_points_per_centroid_rows_a_cluster():
    torch = pytest.importorskip("torch")
    from harp.hierarchy.batched import Groups, batches, fit_mask

    groups = Groups(rows=torch.arange(100), sizes=np.array([60, 10, 30]))
    (batch,) = list(batches(groups, np.arange(3), row_elements=4))
    assert batch.groups.tolist() == [1, 2, 0] and batch.valid.sum(dim=1).tolist() == [10, 30, 60]
    fit = fit_mask(batch, torch.tensor([2, 2, 2]), 8, torch.Generator().manual_seed(0))
    assert fit.sum(dim=1).tolist() == [10, 16, 16]
    assert not (fit & ~batch.valid).any()


def test_weighted_draws_follow_the_weights_and_repeat_for_a_seed():
    torch = pytest.importorskip("torch")
    from harp.hierarchy.torch_kmeans import weighted_draws

    weights = torch.tensor([[0.0, 1.0, 3.0], [5.0, 0.0, 0.0]])
    draws = weighted_draws(weights, 4000, torch.Generator().manual_seed(3))
    assert draws.shape == (2, 4000)
    assert (draws[0] != 0).all() and (draws[1] == 0).all(), "a weight of 0 is never drawn"
    assert abs(float((draws[0] == 2).double().mean()) - 0.75) < 0.03
    assert torch.equal(draws, weighted_draws(weights, 4000, torch.Generator().manual_seed(3)))


def test_target_counts_is_target_count_of_each_size():
    from harp.hierarchy.band import target_count, target_counts

    sizes = np.arange(1, 3000)
    for target, min_size, max_size in [(64, 16, 256), (512, 16, None), (3, 1, 6), (24, 6, 48), (7, 3, None)]:
        expected = [target_count(int(n), target, min_size, max_size) for n in sizes]
        assert target_counts(sizes, target, min_size, max_size).tolist() == expected


def test_merge_clusters_is_merge_small_from_centroids_and_sizes(rng):
    from harp.hierarchy.band import merge_clusters, merge_small

    X = rng.standard_normal((200, 3))
    labels = rng.integers(0, 30, 200)
    labels[labels == 7] = 8  # an empty cluster
    means, sizes = group_means(X, labels, 30)
    compact, kept = merge_clusters(means, sizes, 10, 25)
    merged, expected_kept = merge_small(labels, X, 10, 25)
    assert kept == expected_kept and compact[7] == -1
    np.testing.assert_array_equal(compact[labels], merged)


# ----------------------------------------------------------------------------------------------------------------
# harp hierarchy


def run(*args: object, expect: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def pool(tmp_path: Path, rng) -> tuple[Path, Path, np.ndarray]:
    X = blobs(rng, 4, 60)
    features = tmp_path / "X_feat.npy"
    np.save(features, X)
    texts = tmp_path / "pool.jsonl"
    texts.write_text("".join(json.dumps({"text": f"example {i}"}) + "\n" for i in range(X.shape[0])))
    return features, texts, X


def test_harp_hierarchy_writes_the_tree_texts_and_layout(tmp_path, pool):
    features, texts, X = pool
    store = tmp_path / "pool.duckdb"
    result = run("hierarchy", "--features", features, "--texts", texts, "--store", store, "--leaf-size", 30)
    summary = json.loads(result.stdout)
    assert summary["points"] == 240 and summary["layout"] == "pca"
    assert "leaves:" in result.stderr
    opened = Store.open(store, read_only=True)
    points = opened.read_table("points")
    assert points.num_rows == 240
    assert opened.read_table("leaves").num_rows == summary["leaves"]
    examples = opened.leaf_examples(0, limit=3)
    assert all(text == f"example {point}" for point, text, _ in examples)
    assert opened.layout() is not None and opened.layout_key().startswith("harp-layout-v1 method=pca")
    assert [run["kind"] for run in opened.runs()] == ["hierarchy"]


def test_harp_hierarchy_keeps_a_pool_s_prompt_and_response_apart(tmp_path, pool):
    """One path for `harp hierarchy --texts` and `harp run`: the pool's prompt, response and source."""
    features, texts, X = pool
    texts.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "response": f"answer {i}", "source": f"src {i % 3}"})
            + "\n"
            for i in range(X.shape[0])
        )
    )
    store = tmp_path / "pool.duckdb"
    run("-q", "hierarchy", "--features", features, "--texts", texts, "--store", store, "--no-layout")
    examples = Store.open(store, read_only=True).leaf_examples(0, limit=3, with_response=True)
    assert len(examples) == 3
    for point, text, source, response in examples:
        assert (text, source, response) == (f"question {point}", f"src {point % 3}", f"answer {point}")


def test_harp_hierarchy_refuses_to_drop_measurements(tmp_path, pool):
    features, _, _ = pool
    store = tmp_path / "pool.duckdb"
    run("-q", "hierarchy", "--features", features, "--store", store, "--no-layout")
    opened = Store.open(store)
    opened.write_domains(["d"], [0.5])
    opened.add_measurements([{"leaf_id": 0, "domain_id": 0, "phi": 0.01, "variance": 1e-4}])
    result = run("hierarchy", "--features", features, "--store", store, expect=1)
    assert "Error:" in result.output and "discard_measurements" in result.output
    run("-q", "hierarchy", "--features", features, "--store", store, "--discard-measurements", "--no-layout")


def test_harp_hierarchy_checks_the_texts_against_the_features(tmp_path, pool):
    features, _, _ = pool
    texts = tmp_path / "short.txt"
    texts.write_text("one\ntwo\n")
    result = run(
        "hierarchy", "--features", features, "--texts", texts, "--store", tmp_path / "s.duckdb", expect=1
    )
    assert "short.txt has 2 texts but" in result.output


def test_harp_hierarchy_writes_the_tree_without_umap_learn(tmp_path, pool, monkeypatch):
    import harp.layout

    def missing(*args, **kwargs):
        raise ImportError("the UMAP layout needs umap-learn: pip install 'harp-explorer[app]'")

    monkeypatch.setattr(harp.layout, "_umap", missing)
    features, _, _ = pool
    store = tmp_path / "pool.duckdb"
    result = run("hierarchy", "--features", features, "--store", store, "--layout-method", "umap")
    assert json.loads(result.stdout)["layout"] is None
    assert "warning: no layout" in result.stderr and "harp layout" in result.stderr
    assert Store.open(store, read_only=True).read_table("leaves").num_rows > 0
