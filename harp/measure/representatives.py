"""Representatives: which leaves to measure, in the order to measure them (:func:`choose_representatives`).

Per parent the leaf nearest the parent's centroid first, then more leaves in farthest-point order, from the
feature centroids of the leaves and their parents (:func:`leaf_centroids`).
"""

from __future__ import annotations

import numpy as np

from harp._validation import check_integer

__all__ = ["choose_representatives", "leaf_centroids"]


def leaf_centroids(
    features: np.ndarray, point_leaf: np.ndarray, leaf_parent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean feature vector of each leaf and of each parent.

    Not :func:`harp.layout.leaf_centroids`: that one keeps the tree's float32 centroids (the layout's cache key
    hashes their bytes) and refuses an empty leaf; this one sums in float64, gives an empty leaf a zero row and
    adds the parents' centroids, the inputs of :func:`choose_representatives`, whose ties a float32 rounding
    could change.

    Parameters
    ----------
    features : ndarray of shape (n_points, dim)
        ``X_feat``; row i belongs to the point with id i.
    point_leaf : ndarray of shape (n_points,)
        Leaf of each row.
    leaf_parent : ndarray of shape (n_leaves,)

    Returns
    -------
    leaf_centroids : ndarray of shape (n_leaves, dim)
    parent_centroids : ndarray of shape (n_parents, dim)
    """
    features = np.asarray(features, dtype=np.float64)
    point_leaf = np.asarray(point_leaf, dtype=np.int64)
    leaf_parent = np.asarray(leaf_parent, dtype=np.int64)
    if features.ndim != 2 or features.shape[0] != point_leaf.size:
        raise ValueError(f"features has shape {features.shape} but point_leaf has {point_leaf.size} points")
    n_leaves, n_parents = leaf_parent.size, int(leaf_parent.max()) + 1
    leaf_sum = np.zeros((n_leaves, features.shape[1]))
    np.add.at(leaf_sum, point_leaf, features)
    leaf_size = np.bincount(point_leaf, minlength=n_leaves).astype(np.float64)
    parent_sum = np.zeros((n_parents, features.shape[1]))
    np.add.at(parent_sum, leaf_parent, leaf_sum)
    parent_size = np.bincount(leaf_parent, weights=leaf_size, minlength=n_parents)
    return leaf_sum / np.maximum(leaf_size, 1)[:, None], parent_sum / np.maximum(parent_size, 1)[:, None]


def choose_representatives(
    leaf_parent: np.ndarray, leaf_centroids: np.ndarray, parent_centroids: np.ndarray, budget: int
) -> np.ndarray:
    """Leaves to measure, in the order to measure them.

    First, per parent, the leaf nearest the parent centroid (ties: the smaller leaf id); then more leaves in
    farthest-point order (each next leaf the one farthest from every leaf chosen so far; ties: the smaller id)
    until ``budget`` leaves. When ``budget`` is below the number of parents, the per-parent leaves themselves are
    taken in farthest-point order, starting from the one nearest the mean of all leaf centroids.

    Parameters
    ----------
    leaf_parent : ndarray of shape (n_leaves,)
    leaf_centroids : ndarray of shape (n_leaves, dim)
    parent_centroids : ndarray of shape (n_parents, dim)
    budget : int
        How many leaves to return at most (>= 0).

    Returns
    -------
    ndarray of int64, shape (min(budget, n_leaves),)
    """
    leaf_parent = np.asarray(leaf_parent, dtype=np.int64)
    leaves = np.asarray(leaf_centroids, dtype=np.float64)
    parents = np.asarray(parent_centroids, dtype=np.float64)
    if leaves.ndim != 2 or leaves.shape[0] != leaf_parent.size:
        raise ValueError(
            f"leaf_centroids has shape {leaves.shape} but leaf_parent has {leaf_parent.size} leaves"
        )
    if parents.ndim != 2 or parents.shape[1] != leaves.shape[1]:
        raise ValueError(
            f"parent_centroids has shape {parents.shape}, expected (n_parents, {leaves.shape[1]})"
        )
    if leaf_parent.size and (leaf_parent.min() < 0 or leaf_parent.max() >= parents.shape[0]):
        raise ValueError(f"leaf_parent must hold parent ids in 0..{parents.shape[0] - 1}")
    n_leaves = leaf_parent.size
    budget = min(check_integer(budget, "budget", minimum=0), n_leaves)
    distance_to_parent = np.linalg.norm(leaves - parents[leaf_parent], axis=1)
    order = np.lexsort((np.arange(n_leaves), distance_to_parent, leaf_parent))
    first_of_parent = np.ones(n_leaves, dtype=bool)
    first_of_parent[1:] = leaf_parent[order][1:] != leaf_parent[order][:-1]
    seeds = np.sort(order[first_of_parent])
    if budget <= seeds.size:
        start = int(seeds[np.argmin(np.linalg.norm(leaves[seeds] - leaves.mean(axis=0), axis=1))])
        return _farthest_points(leaves, seeds, [start], budget)
    return _farthest_points(leaves, np.arange(n_leaves), list(seeds), budget)


def _farthest_points(
    points: np.ndarray, candidates: np.ndarray, chosen: list[int], budget: int
) -> np.ndarray:
    """Extend ``chosen`` with ``candidates`` in farthest-point order until ``budget`` (ties: the smaller id)."""
    chosen = list(chosen[:budget])
    if not chosen or len(chosen) >= budget:
        return np.asarray(chosen, dtype=np.int64)
    candidates = np.sort(candidates)
    nearest = np.full(candidates.size, np.inf)
    for g in chosen:
        nearest = np.minimum(nearest, np.linalg.norm(points[candidates] - points[g], axis=1))
    taken = np.isin(candidates, chosen)
    while len(chosen) < budget:
        score = np.where(taken, -np.inf, nearest)
        k = int(np.argmax(score))  # first maximum: the smaller id
        chosen.append(int(candidates[k]))
        taken[k] = True
        nearest = np.minimum(nearest, np.linalg.norm(points[candidates] - points[candidates[k]], axis=1))
    return np.asarray(chosen, dtype=np.int64)
