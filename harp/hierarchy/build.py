"""Stage 1a's entry point, :func:`build_hierarchy`: large nodes, then parents, then leaves, then the in-leaf order.

The algorithm is described in :mod:`harp.hierarchy`. The levels come from one k-means a node (the faiss and
scikit-learn engines of :mod:`harp.hierarchy.kmeans`, with the size band of :mod:`harp.hierarchy.band`) or, for
the torch backend, from all the nodes of a level at once (:mod:`harp.hierarchy.on_device`); both hand a
:class:`~harp.hierarchy.tree.Levels` to the same assembly here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from harp._validation import check_integer
from harp.hierarchy.arrays import group_means, node_seed, squared_distances, weighted_means
from harp.hierarchy.band import Counters, cluster_group, leaves_of_parent, merge_small, target_count
from harp.hierarchy.checks import check_backend, check_count, check_features
from harp.hierarchy.kmeans import Backend, Engine, TorchEngine, make_engine, resolve_backend
from harp.hierarchy.on_device import build_on_device
from harp.hierarchy.torch_kmeans import check_finite_on_device
from harp.hierarchy.tree import HIERARCHY_VERSION, Hierarchy, HierarchyWarning, Levels


def build_hierarchy(
    X_feat: Any,
    *,
    leaf_size: int = 64,
    leaves_per_parent: int = 8,
    parents_per_large: int = 8,
    min_leaf: int | None = None,
    max_leaf: int | None = None,
    seed: int = 0,
    backend: Backend = "auto",
    n_iter: int = 20,
    max_points_per_centroid: int = 256,
    progress: Callable[[str], None] | None = None,
) -> Hierarchy:
    """Cluster N points into a nested tree of large nodes, parents and leaves.

    Parameters
    ----------
    X_feat : array-like of shape (n_points, n_features)
        Features of the pool (finite numbers); point i is row i.
    leaf_size : int, default 64
        Target number of points a leaf.
    leaves_per_parent : int, default 8
        Target number of leaves a parent.
    parents_per_large : int, default 8
        Target number of parents a large node.
    min_leaf, max_leaf : int, optional
        The band of leaf sizes; default ``leaf_size // 4`` (at least 1) and ``4 * leaf_size``. Need
        ``1 <= min_leaf <= leaf_size <= max_leaf`` and ``max_leaf >= 2 * min_leaf`` (so any group of at least
        ``min_leaf`` points can be cut into leaves inside the band).
    seed : int, default 0
        Same features, parameters, seed and backend give the same tree.
    backend : {"auto", "faiss", "torch", "sklearn"}, default "auto"
        k-means implementation (see the module docstring).
    n_iter : int, default 20
        Lloyd iterations per k-means fit.
    max_points_per_centroid : int, default 256
        A fit of k clusters uses at most this many points per cluster (a random subsample); all points are then
        assigned to the nearest centroid.
    progress : callable, optional
        Called with one-line progress messages.

    Returns
    -------
    Hierarchy

    Raises
    ------
    ValueError
        ``X_feat`` is not 2-D, empty, or holds NaN or inf; a size parameter is out of range.
    ImportError
        The backend asked for is not installed.

    Warns
    -----
    HierarchyWarning
        A pool smaller than ``min_leaf`` (one leaf below the band), or groups k-means could not split.
    """
    started = time.perf_counter()
    # The torch backend checks the features for NaN and inf on its device, where they are read once.
    resolved = resolve_backend(backend) if backend in ("auto", "torch") else backend
    X = check_features(X_feat, finite=resolved != "torch")
    leaf_size = check_count(leaf_size, "leaf_size")
    leaves_per_parent = check_count(leaves_per_parent, "leaves_per_parent")
    parents_per_large = check_count(parents_per_large, "parents_per_large")
    min_leaf = max(1, leaf_size // 4) if min_leaf is None else check_count(min_leaf, "min_leaf")
    max_leaf = 4 * leaf_size if max_leaf is None else check_count(max_leaf, "max_leaf")
    if not min_leaf <= leaf_size <= max_leaf:
        raise ValueError(
            f"leaf sizes must satisfy min_leaf <= leaf_size <= max_leaf, got {min_leaf}, {leaf_size}, {max_leaf}"
        )
    if max_leaf < 2 * min_leaf:
        raise ValueError(f"max_leaf must be >= 2 * min_leaf = {2 * min_leaf}, got {max_leaf}")
    check_integer(seed, "seed")
    n_iter = check_count(n_iter, "n_iter")
    max_points_per_centroid = check_count(max_points_per_centroid, "max_points_per_centroid")
    check_backend(backend)
    say = progress or (lambda message: None)

    n_points = X.shape[0]
    engine = make_engine(resolved, X, n_iter, max_points_per_centroid)
    counters = Counters()
    sizes = {
        "leaf_size": leaf_size,
        "leaves_per_parent": leaves_per_parent,
        "parents_per_large": parents_per_large,
        "min_leaf": min_leaf,
        "max_leaf": max_leaf,
    }
    if isinstance(engine, TorchEngine):
        check_finite_on_device(engine.X)
        timings: dict[str, float] = {"setup": time.perf_counter() - started}
        levels = build_on_device(
            engine.X,
            **sizes,
            seed=int(seed),
            n_iter=n_iter,
            max_points_per_centroid=max_points_per_centroid,
            counters=counters,
            timings=timings,
            say=say,
            engine_name=engine.name,
        )
    else:
        timings = {"setup": time.perf_counter() - started}
        levels = _levels_one_at_a_time(
            engine, X, **sizes, seed=seed, counters=counters, timings=timings, say=say
        )

    # Parent and large centroids from the leaves' means.
    tick = time.perf_counter()
    leaf_parent, parent_large, leaf_sizes = levels.leaf_parent, levels.parent_large, levels.leaf_sizes
    n_leaves = leaf_sizes.size
    weights = leaf_sizes[:, None].astype(np.float64)
    parent_means = weighted_means(levels.leaf_means * weights, leaf_sizes, leaf_parent, parent_large.size)
    parent_sizes = np.bincount(leaf_parent, weights=leaf_sizes, minlength=parent_large.size)
    large_means = weighted_means(
        parent_means * parent_sizes[:, None], parent_sizes, parent_large, levels.n_large
    )
    members = np.split(levels.order.astype(np.int64), np.cumsum(leaf_sizes)[:-1])
    timings["order"] += time.perf_counter() - tick
    timings["total"] = time.perf_counter() - started

    if counters.small_leaves:
        warnings.warn(
            f"the pool has {n_points} points, fewer than min_leaf={min_leaf}: it is one leaf below the size band",
            HierarchyWarning,
            stacklevel=2,
        )
    if counters.chunked_groups:
        warnings.warn(
            f"k-means could not split {counters.chunked_groups} group(s) (identical or nearly identical "
            "points); they were cut into equal chunks along their main direction",
            HierarchyWarning,
            stacklevel=2,
        )
    config = {
        "version": HIERARCHY_VERSION,
        "leaf_size": leaf_size,
        "leaves_per_parent": leaves_per_parent,
        "parents_per_large": parents_per_large,
        "min_leaf": min_leaf,
        "max_leaf": max_leaf,
        "seed": int(seed),
        "backend": engine.name,
        "n_iter": n_iter,
        "max_points_per_centroid": max_points_per_centroid,
        "n_points": n_points,
        "n_features": int(X.shape[1]),
        "kmeans_calls": counters.kmeans_calls,
    }
    say(
        f"tree: {levels.n_large} large, {parent_large.size} parents, {n_leaves} leaves in {timings['total']:.1f} s"
    )
    return Hierarchy(
        point_leaf=levels.point_leaf,
        leaf_parent=leaf_parent,
        parent_large=parent_large,
        members=members,
        rank_in_leaf=levels.rank_in_leaf,
        leaf_centroids=levels.leaf_means.astype(np.float32),
        parent_centroids=parent_means.astype(np.float32),
        large_centroids=large_means.astype(np.float32),
        config=config,
        timings=timings,
    )


def _levels_one_at_a_time(
    engine: Engine,
    X: np.ndarray,
    *,
    leaf_size: int,
    leaves_per_parent: int,
    parents_per_large: int,
    min_leaf: int,
    max_leaf: int,
    seed: int,
    counters: Counters,
    timings: dict[str, float],
    say: Callable[[str], None],
) -> Levels:
    """The three levels by one k-means a node (the scikit-learn and faiss engines), then the in-leaf order."""
    n_points = X.shape[0]
    all_rows = np.arange(n_points, dtype=np.int64)

    # 1. Large nodes.
    tick = time.perf_counter()
    large_target = leaf_size * leaves_per_parent * parents_per_large
    large_count = target_count(n_points, large_target, min_leaf, None)
    say(f"large nodes: k-means of {n_points} points into {large_count} ({engine.name})")
    if large_count > 1:
        counters.kmeans_calls += 1
        labels = engine.cluster(None, large_count, node_seed(seed, 1))
        labels, n_large = merge_small(labels, X, min_leaf)
        order = np.argsort(labels, kind="stable")
        large_rows = np.split(order, np.cumsum(np.bincount(labels, minlength=n_large))[:-1])
    else:
        large_rows = [all_rows]
    timings["large"] = time.perf_counter() - tick

    # 2. Parents inside each large node; 3. leaves inside each parent.
    with engine.small_fits():
        tick = time.perf_counter()
        parent_rows: list[np.ndarray] = []
        parent_large_list: list[int] = []
        parent_target = leaf_size * leaves_per_parent
        for k, rows in enumerate(large_rows):
            count = target_count(rows.size, parent_target, min_leaf, None)
            pieces = cluster_group(engine, X, rows, count, node_seed(seed, 2, k), min_leaf, None, counters)
            parent_rows.extend(pieces)
            parent_large_list.extend([k] * len(pieces))
        say(f"parents: {len(parent_rows)} in {len(large_rows)} large nodes")
        timings["parents"] = time.perf_counter() - tick

        tick = time.perf_counter()
        leaf_rows: list[np.ndarray] = []
        leaf_parent_list: list[int] = []
        for p, rows in enumerate(parent_rows):
            pieces = leaves_of_parent(engine, X, rows, leaf_size, min_leaf, max_leaf, (seed, 3, p), counters)
            leaf_rows.extend(pieces)
            leaf_parent_list.extend([p] * len(pieces))
        say(f"leaves: {len(leaf_rows)} in {len(parent_rows)} parents")
        timings["leaves"] = time.perf_counter() - tick

    # The leaves' means and the order of members inside each leaf.
    tick = time.perf_counter()
    n_leaves = len(leaf_rows)
    point_leaf = np.empty(n_points, dtype=np.int64)
    for g, rows in enumerate(leaf_rows):
        point_leaf[rows] = g
    leaf_means, leaf_sizes = group_means(X, point_leaf, n_leaves)
    distance = squared_distances(X, leaf_means, point_leaf)
    order = np.lexsort((np.arange(n_points), distance, point_leaf))
    starts = np.cumsum(leaf_sizes) - leaf_sizes
    rank_in_leaf = np.empty(n_points, dtype=np.int64)
    rank_in_leaf[order] = np.arange(n_points) - np.repeat(starts, leaf_sizes)
    timings["order"] = time.perf_counter() - tick
    return Levels(
        point_leaf=point_leaf,
        leaf_parent=np.asarray(leaf_parent_list, dtype=np.int64),
        parent_large=np.asarray(parent_large_list, dtype=np.int64),
        n_large=len(large_rows),
        leaf_sizes=leaf_sizes,
        leaf_means=leaf_means,
        order=order,
        rank_in_leaf=rank_in_leaf,
    )
