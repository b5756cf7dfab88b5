"""Block-wise numeric helpers of :mod:`harp.hierarchy`: group means, nearest centroids, distances, seeds.

Every pass over all N points runs in blocks of :data:`CHUNK_ROWS` rows, so that no N x something temporary (nor a
float64 copy of the features) is ever allocated.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 65536  # rows per block when a pass over all points would otherwise allocate N x something


def node_seed(seed: int, *path: int) -> int:
    """A 31-bit seed for one k-means call, a deterministic function of the tree seed and the node's path."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *path]).generate_state(1)[0] & 0x7FFFFFFF)


def group_means(X: np.ndarray, labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean row of X per group and the group sizes, in blocks (never a float64 copy of all of X).

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
    labels : ndarray of shape (n,), int, values in ``0..n_groups-1``
    n_groups : int

    Returns
    -------
    means : ndarray of shape (n_groups, n_features), float64 (zero rows for empty groups)
    sizes : ndarray of shape (n_groups,), int64
    """
    sizes = np.bincount(labels, minlength=n_groups).astype(np.int64)
    sums = np.zeros((n_groups, X.shape[1]), dtype=np.float64)
    if n_groups <= 64:
        # A one-hot product is one BLAS call per block; partial sums are carried in float64 across blocks.
        for start in range(0, X.shape[0], CHUNK_ROWS):
            block_labels = labels[start : start + CHUNK_ROWS]
            one_hot = np.zeros((n_groups, block_labels.size), dtype=X.dtype)
            one_hot[block_labels, np.arange(block_labels.size)] = 1
            sums += one_hot @ X[start : start + CHUNK_ROWS]
    else:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        for start in range(0, order.size, CHUNK_ROWS):
            rows = order[start : start + CHUNK_ROWS]
            block_labels = sorted_labels[start : start + CHUNK_ROWS]
            starts = np.flatnonzero(np.r_[True, block_labels[1:] != block_labels[:-1]])
            sums[block_labels[starts]] += np.add.reduceat(X[rows], starts, axis=0)
    means = np.divide(sums, np.maximum(sizes, 1)[:, None])
    return means, sizes


def nearest(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) of each row, in blocks; ties to the smaller index."""
    centroids = np.asarray(centroids, dtype=np.float32)
    half_norms = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    labels = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], CHUNK_ROWS):
        block = X[start : start + CHUNK_ROWS]
        labels[start : start + block.shape[0]] = np.argmin(half_norms[None, :] - block @ centroids.T, axis=1)
    return labels


def squared_distances(X: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared distance of each row of X to the centroid of its label, in blocks, float64."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, X.shape[0])
        diff = X[start:stop].astype(np.float64) - centroids[labels[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", diff, diff)
    return out


def weighted_means(sums: np.ndarray, sizes: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Means of groups of rows, given per-row sums of members and per-row member counts."""
    total = np.zeros((n_groups, sums.shape[1]), dtype=np.float64)
    np.add.at(total, groups, sums)
    counts = np.bincount(groups, weights=sizes, minlength=n_groups)
    return total / np.maximum(counts, 1)[:, None]
