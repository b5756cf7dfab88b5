"""The leaf size band of :mod:`harp.hierarchy`: merging small clusters, splitting big ones, chunking unsplittable ones.

A cluster smaller than ``min_size`` is merged into the nearest cluster of its node; at the leaf level a leaf
larger than ``max_leaf`` is split again by k-means, recursively; a group k-means cannot split (identical or nearly
identical points) is cut into equal chunks along its main direction and counted, for the caller's warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harp.hierarchy.arrays import group_means, node_seed
from harp.hierarchy.kmeans import Engine


def merge_small(
    labels: np.ndarray, X: np.ndarray, min_size: int, max_size: int | None = None
) -> tuple[np.ndarray, int]:
    """Merge every cluster smaller than ``min_size`` into the nearest other cluster, smallest first.

    With ``max_size``, a target that stays <= ``max_size`` after the merge is preferred. Returns compact labels
    (``0..m-1``, in order of the original label ids) and m.
    """
    n_labels = int(labels.max()) + 1 if labels.size else 0
    centroids, sizes = group_means(X, labels, n_labels)
    compact, n_clusters = merge_clusters(centroids, sizes, min_size, max_size)
    return compact[labels], n_clusters


def merge_clusters(
    centroids: np.ndarray, sizes: np.ndarray, min_size: int, max_size: int | None = None
) -> tuple[np.ndarray, int]:
    """The merges of :func:`merge_small`, from the clusters' centroids and sizes alone.

    Parameters
    ----------
    centroids : ndarray of shape (n_labels, n_features)
        Mean of each cluster (any row for an empty one).
    sizes : ndarray of shape (n_labels,), int
        Points of each cluster; empty clusters (0) take no part.
    min_size : int
    max_size : int, optional

    Returns
    -------
    compact : ndarray of shape (n_labels,), int64
        The compact label (``0..m-1``, in order of the original label ids) each original label ends in; -1 for
        an empty cluster.
    m : int
        Number of clusters left.
    """
    centroids = np.array(centroids, dtype=np.float64)
    sizes = np.array(sizes, dtype=np.int64)
    n_labels = sizes.size
    root = np.arange(n_labels)
    alive = sizes > 0
    while alive.sum() > 1:
        small = np.flatnonzero(alive & (sizes < min_size))
        if small.size == 0:
            break
        source = int(small[np.lexsort((small, sizes[small]))[0]])
        others = np.flatnonzero(alive)
        others = others[others != source]
        if max_size is not None:
            fitting = others[sizes[others] + sizes[source] <= max_size]
            if fitting.size:
                others = fitting
        distance = ((centroids[others] - centroids[source]) ** 2).sum(axis=1)
        target = int(others[np.argmin(distance)])
        total = sizes[target] + sizes[source]
        centroids[target] = (centroids[target] * sizes[target] + centroids[source] * sizes[source]) / total
        sizes[target] = total
        sizes[source] = 0
        alive[source] = False
        root[source] = target
    for label in range(n_labels):  # follow chains of merges to the surviving cluster
        while root[root[label]] != root[label]:
            root[label] = root[root[label]]
    survivors = np.flatnonzero(alive)
    compact = np.full(n_labels, -1, dtype=np.int64)
    compact[survivors] = np.arange(survivors.size)
    return compact[root], int(survivors.size)


def chunks_along_main_direction(X: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    """Cut the rows into ``n_chunks`` nearly equal runs after sorting them along the first principal axis."""
    centred = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axis = vectors[:, -1]
    axis = axis * (1.0 if axis[np.argmax(np.abs(axis))] >= 0 else -1.0)
    order = np.argsort(centred @ axis, kind="stable")
    return [np.sort(part) for part in np.array_split(order, n_chunks)]


@dataclass
class Counters:
    """What went on while building one tree: groups cut into chunks, pools below the band, k-means calls."""

    chunked_groups: int = 0
    small_leaves: int = 0
    kmeans_calls: int = 0


def target_count(n: int, target: int, min_size: int, max_size: int | None) -> int:
    """Number of clusters for n points: about n / target, within what the size band allows."""
    count = max(1, round(n / target))
    if max_size is not None:
        count = max(count, math.ceil(n / max_size))
    return max(1, min(count, n // min_size))


def target_counts(sizes: np.ndarray, target: int, min_size: int, max_size: int | None) -> np.ndarray:
    """:func:`target_count` of every entry of ``sizes`` at once (the same roundings), shape of ``sizes``, int64."""
    sizes = np.asarray(sizes, dtype=np.int64)
    counts = np.maximum(1, np.round(sizes / target)).astype(np.int64)
    if max_size is not None:
        counts = np.maximum(counts, np.ceil(sizes / max_size).astype(np.int64))
    return np.maximum(1, np.minimum(counts, sizes // min_size))


def cluster_group(
    engine: Engine,
    X: np.ndarray,
    rows: np.ndarray,
    count: int,
    seed: int,
    min_size: int,
    max_size: int | None,
    counters: Counters,
) -> list[np.ndarray]:
    """Split ``rows`` into about ``count`` clusters, none below ``min_size``; returns row arrays, sorted."""
    if count <= 1:
        return [rows]
    counters.kmeans_calls += 1
    labels = engine.cluster(rows, count, seed)
    labels, n_clusters = merge_small(labels, X[rows], min_size, max_size)
    if n_clusters <= 1:
        counters.chunked_groups += 1
        return [rows[part] for part in chunks_along_main_direction(X[rows], count)]
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(np.bincount(labels, minlength=n_clusters))[:-1]
    return [rows[part] for part in np.split(order, bounds)]


def leaves_of_parent(
    engine: Engine,
    X: np.ndarray,
    rows: np.ndarray,
    leaf_size: int,
    min_leaf: int,
    max_leaf: int,
    seed_path: tuple[int, ...],
    counters: Counters,
) -> list[np.ndarray]:
    """Leaves of one parent, each within [min_leaf, max_leaf] points (when the parent has >= min_leaf)."""
    n = rows.size
    if n < min_leaf:
        counters.small_leaves += 1
        return [rows]
    count = target_count(n, leaf_size, min_leaf, max_leaf)
    pieces = cluster_group(engine, X, rows, count, node_seed(*seed_path), min_leaf, max_leaf, counters)
    leaves: list[np.ndarray] = []
    for index, piece in enumerate(pieces):
        if piece.size > max_leaf:  # strictly fewer rows than `rows`, so the recursion ends
            leaves.extend(
                leaves_of_parent(
                    engine, X, piece, leaf_size, min_leaf, max_leaf, (*seed_path, index), counters
                )
            )
        else:
            leaves.append(piece)
    return leaves
