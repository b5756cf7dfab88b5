"""Stage 1a: cluster the embedded pool into a nested three-level tree, large node -> parent -> leaf.

Notation: the pool has N points with features ``X_feat`` (one row per point, usually L2-normalised embeddings).
Every point lies in exactly one leaf g (``0..L-1``), every leaf in one parent p (``0..P-1``), every parent in one
large node k (``0..K-1``). Leaves are the unit of selection.

Algorithm (top-down k-means, so the tree is nested by construction):

1. Large nodes: k-means of all points into ``K = round(N / (leaf_size * leaves_per_parent * parents_per_large))``
   clusters (at least 1).
2. Parents: inside each large node of n points, k-means into ``round(n / (leaf_size * leaves_per_parent))``.
3. Leaves: inside each parent of n points, k-means into ``round(n / leaf_size)``.

At every level a cluster smaller than ``min_leaf`` points is merged into the cluster of the same node whose
centroid is nearest (so no parent or large node is too small to hold a leaf). At the leaf level the counts are
also kept inside the band ``[min_leaf, max_leaf]``: a tiny leaf is merged into the nearest leaf of its parent
(preferring one that stays <= ``max_leaf``), and an oversized leaf is split again by k-means, recursively. When
k-means cannot split a group (identical or nearly identical points), the group is cut into equal chunks along its
main direction, with a :class:`HierarchyWarning`. The only leaves outside the band are those of a pool smaller
than ``min_leaf``, again with a warning.

Large fits are made on a subsample of at most ``max_points_per_centroid`` points per centroid (as faiss does);
every point is then assigned to its nearest centroid. Members of each leaf are ordered by their distance to the
leaf centroid, most central first (ties by point index), so a budget cut inside a leaf keeps its most typical
examples.

Backends: ``"faiss"`` (on the GPU when faiss sees one), ``"torch"`` (Lloyd's k-means with k-means++
initialisation on a CUDA device; used by ``"auto"`` when faiss is missing and torch sees a GPU) and ``"sklearn"``
(scikit-learn's ``KMeans``). ``"auto"`` picks faiss, then torch on a GPU, then scikit-learn. The tree is a
deterministic function of the features, the parameters, the seed and the backend (faiss on a GPU may differ in
the last bits between runs, as floating-point reductions on GPUs do).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

__all__ = [
    "HIERARCHY_VERSION",
    "Hierarchy",
    "HierarchyWarning",
    "build_hierarchy",
    "group_means",
    "kmeans_labels",
]

#: Bumped whenever the same inputs would give a different tree.
HIERARCHY_VERSION = "harp-hierarchy-v1"

Backend = Literal["auto", "faiss", "torch", "sklearn"]

_CHUNK_ROWS = 65536  # rows per block when a pass over all points would otherwise allocate N x something


class HierarchyWarning(UserWarning):
    """The tree is valid but degenerate: a leaf outside the size band, or groups k-means could not split."""


@dataclass(frozen=True)
class Hierarchy:
    """A nested three-level tree over N points.

    Attributes
    ----------
    point_leaf : ndarray of shape (n_points,), int64
        Leaf g of each point.
    leaf_parent : ndarray of shape (n_leaves,), int64
        Parent p of each leaf; leaves of one parent have consecutive ids.
    parent_large : ndarray of shape (n_parents,), int64
        Large node k of each parent; parents of one large node have consecutive ids.
    members : list of ndarray of int64
        ``members[g]`` holds the points of leaf g, most central first.
    rank_in_leaf : ndarray of shape (n_points,), int64
        Position of each point in its leaf's ``members`` (0 = most central).
    leaf_centroids : ndarray of shape (n_leaves, n_features), float32
        Mean feature vector of each leaf.
    parent_centroids : ndarray of shape (n_parents, n_features), float32
    large_centroids : ndarray of shape (n_large, n_features), float32
    config : dict
        Version, parameters and the backend that produced the tree (JSON-serialisable).
    timings : dict
        Seconds spent per stage.
    """

    point_leaf: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    members: list[np.ndarray]
    rank_in_leaf: np.ndarray
    leaf_centroids: np.ndarray
    parent_centroids: np.ndarray
    large_centroids: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(self.point_leaf.size)

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_parent.size)

    @property
    def n_parents(self) -> int:
        return int(self.parent_large.size)

    @property
    def n_large(self) -> int:
        return int(self.large_centroids.shape[0])

    @property
    def leaf_size(self) -> np.ndarray:
        """Number of points of each leaf, shape (n_leaves,)."""
        return np.bincount(self.point_leaf, minlength=self.n_leaves)


# ----------------------------------------------------------------------------------------------------------------
# Validation


def _check_features(X_feat: Any) -> np.ndarray:
    try:
        X = np.asarray(X_feat)
    except (TypeError, ValueError) as error:
        raise ValueError(f"X_feat must be a 2-D array of numbers: {error}") from None
    if X.ndim != 2:
        raise ValueError(f"X_feat must be 2-D (points x features), got shape {X.shape}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X_feat must have at least one point and one feature, got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)) or X.dtype == bool:
        raise ValueError(f"X_feat must hold numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = X[start : start + _CHUNK_ROWS]
        bad = ~np.isfinite(block)
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"X_feat must be finite, found {block[row, column]} at row {start + row}, column {column}"
            )
    return X


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# Small numeric helpers


def _seed(seed: int, *path: int) -> int:
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
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            block_labels = labels[start : start + _CHUNK_ROWS]
            one_hot = np.zeros((n_groups, block_labels.size), dtype=X.dtype)
            one_hot[block_labels, np.arange(block_labels.size)] = 1
            sums += one_hot @ X[start : start + _CHUNK_ROWS]
    else:
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        for start in range(0, order.size, _CHUNK_ROWS):
            rows = order[start : start + _CHUNK_ROWS]
            block_labels = sorted_labels[start : start + _CHUNK_ROWS]
            starts = np.flatnonzero(np.r_[True, block_labels[1:] != block_labels[:-1]])
            sums[block_labels[starts]] += np.add.reduceat(X[rows], starts, axis=0)
    means = np.divide(sums, np.maximum(sizes, 1)[:, None])
    return means, sizes


def _nearest(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) of each row, in blocks; ties to the smaller index."""
    centroids = np.asarray(centroids, dtype=np.float32)
    half_norms = 0.5 * np.einsum("ij,ij->i", centroids, centroids)
    labels = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        block = X[start : start + _CHUNK_ROWS]
        labels[start : start + block.shape[0]] = np.argmin(half_norms[None, :] - block @ centroids.T, axis=1)
    return labels


def _squared_distances(X: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Squared distance of each row of X to the centroid of its label, in blocks, float64."""
    out = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, X.shape[0])
        diff = X[start:stop].astype(np.float64) - centroids[labels[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", diff, diff)
    return out


# ----------------------------------------------------------------------------------------------------------------
# k-means engines: cluster(rows, k, seed) -> labels in 0..k-1 (some clusters may come back empty)


class _Engine(Protocol):
    name: str

    def cluster(self, rows: np.ndarray | None, k: int, seed: int) -> np.ndarray: ...

    def small_fits(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the many small fits of the lower levels."""
        ...


def _subsample(n: int, k: int, max_points_per_centroid: int, seed: int) -> np.ndarray | None:
    """Sorted rows of a fitting subsample, or None when every row is used."""
    limit = max_points_per_centroid * k
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


class _SklearnEngine:
    name = "sklearn"

    def __init__(self, X: np.ndarray, n_iter: int, max_points_per_centroid: int) -> None:
        try:
            from sklearn.cluster import KMeans
        except ImportError:
            raise ImportError(
                "backend 'sklearn' needs scikit-learn: pip install 'harp-explorer[train]'"
            ) from None
        self._kmeans = KMeans
        self.X = X
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid

    def small_fits(self) -> contextlib.AbstractContextManager[Any]:
        # Threads cost more than they give on fits of a few hundred points: one thread each, as faiss does.
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1)

    def cluster(self, rows: np.ndarray | None, k: int, seed: int) -> np.ndarray:
        X = self.X if rows is None else self.X[rows]
        if k <= 1:
            return np.zeros(X.shape[0], dtype=np.int64)
        sample = _subsample(X.shape[0], k, self.max_points_per_centroid, seed)
        fit_rows = X if sample is None else X[sample]
        model = self._kmeans(
            n_clusters=k,
            init="k-means++",
            n_init=1,
            max_iter=self.n_iter,
            random_state=seed,
            algorithm="lloyd",
        )
        with warnings.catch_warnings():
            # Duplicate points give fewer distinct clusters than asked; the caller merges and splits as needed.
            warnings.simplefilter("ignore")
            model.fit(fit_rows)
        if sample is None:
            return np.asarray(model.labels_, dtype=np.int64)
        return _nearest(X, model.cluster_centers_)


class _FaissEngine:
    name = "faiss"

    def __init__(self, X: np.ndarray, n_iter: int, max_points_per_centroid: int) -> None:
        import faiss

        self._faiss = faiss
        self.X = X
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid
        self.gpu = bool(getattr(faiss, "get_num_gpus", lambda: 0)() > 0)
        if self.gpu:
            self.name = "faiss-gpu"

    def small_fits(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def cluster(self, rows: np.ndarray | None, k: int, seed: int) -> np.ndarray:
        X = self.X if rows is None else np.ascontiguousarray(self.X[rows])
        if k <= 1:
            return np.zeros(X.shape[0], dtype=np.int64)
        kmeans = self._faiss.Kmeans(
            X.shape[1],
            k,
            niter=self.n_iter,
            seed=seed,
            gpu=self.gpu,
            max_points_per_centroid=self.max_points_per_centroid,
            min_points_per_centroid=1,
            verbose=False,
        )
        kmeans.train(X)
        _, labels = kmeans.index.search(X, 1)
        return labels[:, 0].astype(np.int64)


class _TorchEngine:
    """Lloyd's k-means with k-means++ initialisation, in torch (on a CUDA device when there is one)."""

    name = "torch"

    def __init__(
        self, X: np.ndarray, n_iter: int, max_points_per_centroid: int, device: str | None = None
    ) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.name = f"torch-{self.device.type}"
        # Block by block: no second host copy of X, and no warning when X is a read-only memory map.
        self.X = torch.empty(X.shape, dtype=torch.float32, device=self.device)
        for start in range(0, X.shape[0], _CHUNK_ROWS * 4):
            block = np.array(X[start : start + _CHUNK_ROWS * 4], dtype=np.float32)
            self.X[start : start + block.shape[0]] = torch.from_numpy(block).to(self.device)
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid

    def small_fits(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def _assign(self, X: Any, centroids: Any) -> Any:
        torch = self._torch
        half_norms = 0.5 * (centroids * centroids).sum(dim=1)
        labels = torch.empty(X.shape[0], dtype=torch.int64, device=self.device)
        for start in range(0, X.shape[0], _CHUNK_ROWS * 4):
            block = X[start : start + _CHUNK_ROWS * 4]
            labels[start : start + block.shape[0]] = torch.argmin(
                half_norms[None, :] - block @ centroids.T, dim=1
            )
        return labels

    def cluster(self, rows: np.ndarray | None, k: int, seed: int) -> np.ndarray:
        torch = self._torch
        X = self.X if rows is None else self.X[torch.from_numpy(rows).to(self.device)]
        n = X.shape[0]
        if k <= 1:
            return np.zeros(n, dtype=np.int64)
        sample = _subsample(n, k, self.max_points_per_centroid, seed)
        fit = X if sample is None else X[torch.from_numpy(sample).to(self.device)]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        centroids = self._kmeans_plus_plus(fit, k, generator)
        labels = self._assign(fit, centroids)
        for _ in range(self.n_iter):
            sums = torch.zeros_like(centroids).index_add_(0, labels, fit)
            counts = torch.bincount(labels, minlength=k).to(fit.dtype)
            filled = counts > 0
            centroids = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centroids)
            new_labels = self._assign(fit, centroids)
            if torch.equal(new_labels, labels):
                break
            labels = new_labels
        if sample is not None:
            labels = self._assign(X, centroids)
        return labels.cpu().numpy().astype(np.int64)

    def _kmeans_plus_plus(self, X: Any, k: int, generator: Any) -> Any:
        """k-means++ seeding. Distances come from one matrix-vector product a centre (no n x dim temporary), and
        the centres stay on the device as tensors, so a GPU runs the k draws without waiting on the host."""
        torch = self._torch
        n = X.shape[0]
        squares = (X * X).sum(dim=1)

        def distances(index: Any) -> Any:
            return (squares - 2.0 * (X @ X[index]) + squares[index]).clamp_(min=0.0)

        chosen = torch.empty(k, dtype=torch.int64, device=self.device)
        chosen[0] = torch.randint(n, (1,), generator=generator, device=self.device)[0]
        closest = distances(chosen[0])
        uniform = torch.ones_like(closest)
        for i in range(1, k):
            # Every point is a centre already (fewer distinct points than k): any point will do; k-means then
            # leaves the repeated centre empty.
            weights = torch.where(closest.sum() > 0, closest, uniform)
            chosen[i] = torch.multinomial(weights, 1, generator=generator)[0]
            closest = torch.minimum(closest, distances(chosen[i]))
        return X[chosen].clone()


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _make_engine(backend: str, X: np.ndarray, n_iter: int, max_points_per_centroid: int) -> _Engine:
    if backend == "auto":
        if _importable("faiss"):
            backend = "faiss"
        elif _importable("torch") and importlib.import_module("torch").cuda.is_available():
            backend = "torch"
        else:
            backend = "sklearn"
    if backend == "faiss":
        if not _importable("faiss"):
            raise ImportError("backend 'faiss' needs faiss: pip install faiss-cpu (or faiss-gpu)")
        return _FaissEngine(X, n_iter, max_points_per_centroid)
    if backend == "torch":
        if not _importable("torch"):
            raise ImportError("backend 'torch' needs torch: pip install 'harp-explorer[train]'")
        return _TorchEngine(X, n_iter, max_points_per_centroid)
    return _SklearnEngine(X, n_iter, max_points_per_centroid)


# ----------------------------------------------------------------------------------------------------------------
# Merging and splitting


def _merge_small(
    labels: np.ndarray, X: np.ndarray, min_size: int, max_size: int | None = None
) -> tuple[np.ndarray, int]:
    """Merge every cluster smaller than ``min_size`` into the nearest other cluster, smallest first.

    With ``max_size``, a target that stays <= ``max_size`` after the merge is preferred. Returns compact labels
    (``0..m-1``, in order of the original label ids) and m.
    """
    n_labels = int(labels.max()) + 1 if labels.size else 0
    centroids, sizes = group_means(X, labels, n_labels)
    sizes = sizes.astype(np.int64)
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
    return compact[root[labels]], int(survivors.size)


def _chunks_along_main_direction(X: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    """Cut the rows into ``n_chunks`` nearly equal runs after sorting them along the first principal axis."""
    centred = X.astype(np.float64) - X.mean(axis=0, dtype=np.float64)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axis = vectors[:, -1]
    axis = axis * (1.0 if axis[np.argmax(np.abs(axis))] >= 0 else -1.0)
    order = np.argsort(centred @ axis, kind="stable")
    return [np.sort(part) for part in np.array_split(order, n_chunks)]


@dataclass
class _Counters:
    chunked_groups: int = 0
    small_leaves: int = 0
    kmeans_calls: int = 0


def _target_count(n: int, target: int, min_size: int, max_size: int | None) -> int:
    """Number of clusters for n points: about n / target, within what the size band allows."""
    count = max(1, round(n / target))
    if max_size is not None:
        count = max(count, math.ceil(n / max_size))
    return max(1, min(count, n // min_size))


def _cluster_group(
    engine: _Engine,
    X: np.ndarray,
    rows: np.ndarray,
    count: int,
    seed: int,
    min_size: int,
    max_size: int | None,
    counters: _Counters,
) -> list[np.ndarray]:
    """Split ``rows`` into about ``count`` clusters, none below ``min_size``; returns row arrays, sorted."""
    if count <= 1:
        return [rows]
    counters.kmeans_calls += 1
    labels = engine.cluster(rows, count, seed)
    labels, n_clusters = _merge_small(labels, X[rows], min_size, max_size)
    if n_clusters <= 1:
        counters.chunked_groups += 1
        return [rows[part] for part in _chunks_along_main_direction(X[rows], count)]
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(np.bincount(labels, minlength=n_clusters))[:-1]
    return [rows[part] for part in np.split(order, bounds)]


def _leaves_of_parent(
    engine: _Engine,
    X: np.ndarray,
    rows: np.ndarray,
    leaf_size: int,
    min_leaf: int,
    max_leaf: int,
    seed_path: tuple[int, ...],
    counters: _Counters,
) -> list[np.ndarray]:
    """Leaves of one parent, each within [min_leaf, max_leaf] points (when the parent has >= min_leaf)."""
    n = rows.size
    if n < min_leaf:
        counters.small_leaves += 1
        return [rows]
    count = _target_count(n, leaf_size, min_leaf, max_leaf)
    pieces = _cluster_group(engine, X, rows, count, _seed(*seed_path), min_leaf, max_leaf, counters)
    leaves: list[np.ndarray] = []
    for index, piece in enumerate(pieces):
        if piece.size > max_leaf:  # strictly fewer rows than `rows`, so the recursion ends
            leaves.extend(
                _leaves_of_parent(
                    engine, X, piece, leaf_size, min_leaf, max_leaf, (*seed_path, index), counters
                )
            )
        else:
            leaves.append(piece)
    return leaves


# ----------------------------------------------------------------------------------------------------------------
# The public entry point


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
    X = _check_features(X_feat)
    leaf_size = _check_positive_int(leaf_size, "leaf_size")
    leaves_per_parent = _check_positive_int(leaves_per_parent, "leaves_per_parent")
    parents_per_large = _check_positive_int(parents_per_large, "parents_per_large")
    min_leaf = max(1, leaf_size // 4) if min_leaf is None else _check_positive_int(min_leaf, "min_leaf")
    max_leaf = 4 * leaf_size if max_leaf is None else _check_positive_int(max_leaf, "max_leaf")
    if not min_leaf <= leaf_size <= max_leaf:
        raise ValueError(
            f"leaf sizes must satisfy min_leaf <= leaf_size <= max_leaf, got {min_leaf}, {leaf_size}, {max_leaf}"
        )
    if max_leaf < 2 * min_leaf:
        raise ValueError(f"max_leaf must be >= 2 * min_leaf = {2 * min_leaf}, got {max_leaf}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    n_iter = _check_positive_int(n_iter, "n_iter")
    max_points_per_centroid = _check_positive_int(max_points_per_centroid, "max_points_per_centroid")
    if backend not in ("auto", "faiss", "torch", "sklearn"):
        raise ValueError(f"backend must be one of 'auto', 'faiss', 'torch', 'sklearn', got {backend!r}")
    say = progress or (lambda message: None)

    n_points = X.shape[0]
    engine = _make_engine(backend, X, n_iter, max_points_per_centroid)
    counters = _Counters()
    timings: dict[str, float] = {"setup": time.perf_counter() - started}
    all_rows = np.arange(n_points, dtype=np.int64)

    # 1. Large nodes.
    tick = time.perf_counter()
    large_target = leaf_size * leaves_per_parent * parents_per_large
    large_count = _target_count(n_points, large_target, min_leaf, None)
    say(f"large nodes: k-means of {n_points} points into {large_count} ({engine.name})")
    if large_count > 1:
        counters.kmeans_calls += 1
        labels = engine.cluster(None, large_count, _seed(seed, 1))
        labels, n_large = _merge_small(labels, X, min_leaf)
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
            count = _target_count(rows.size, parent_target, min_leaf, None)
            pieces = _cluster_group(engine, X, rows, count, _seed(seed, 2, k), min_leaf, None, counters)
            parent_rows.extend(pieces)
            parent_large_list.extend([k] * len(pieces))
        say(f"parents: {len(parent_rows)} in {len(large_rows)} large nodes")
        timings["parents"] = time.perf_counter() - tick

        tick = time.perf_counter()
        leaf_rows: list[np.ndarray] = []
        leaf_parent_list: list[int] = []
        for p, rows in enumerate(parent_rows):
            pieces = _leaves_of_parent(engine, X, rows, leaf_size, min_leaf, max_leaf, (seed, 3, p), counters)
            leaf_rows.extend(pieces)
            leaf_parent_list.extend([p] * len(pieces))
        say(f"leaves: {len(leaf_rows)} in {len(parent_rows)} parents")
        timings["leaves"] = time.perf_counter() - tick

    # Centroids and the order of members inside each leaf.
    tick = time.perf_counter()
    n_leaves = len(leaf_rows)
    point_leaf = np.empty(n_points, dtype=np.int64)
    for g, rows in enumerate(leaf_rows):
        point_leaf[rows] = g
    leaf_parent = np.asarray(leaf_parent_list, dtype=np.int64)
    parent_large = np.asarray(parent_large_list, dtype=np.int64)
    leaf_means, leaf_sizes = group_means(X, point_leaf, n_leaves)
    weights = leaf_sizes[:, None].astype(np.float64)
    parent_means = _weighted_means(leaf_means * weights, leaf_sizes, leaf_parent, parent_large.size)
    parent_sizes = np.bincount(leaf_parent, weights=leaf_sizes, minlength=parent_large.size)
    large_means = _weighted_means(
        parent_means * parent_sizes[:, None], parent_sizes, parent_large, len(large_rows)
    )
    distance = _squared_distances(X, leaf_means, point_leaf)
    order = np.lexsort((np.arange(n_points), distance, point_leaf))
    starts = np.cumsum(leaf_sizes) - leaf_sizes
    rank_in_leaf = np.empty(n_points, dtype=np.int64)
    rank_in_leaf[order] = np.arange(n_points) - np.repeat(starts, leaf_sizes)
    members = np.split(order.astype(np.int64), np.cumsum(leaf_sizes)[:-1])
    timings["order"] = time.perf_counter() - tick
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
        f"tree: {len(large_rows)} large, {parent_large.size} parents, {n_leaves} leaves in {timings['total']:.1f} s"
    )
    return Hierarchy(
        point_leaf=point_leaf,
        leaf_parent=leaf_parent,
        parent_large=parent_large,
        members=members,
        rank_in_leaf=rank_in_leaf,
        leaf_centroids=leaf_means.astype(np.float32),
        parent_centroids=parent_means.astype(np.float32),
        large_centroids=large_means.astype(np.float32),
        config=config,
        timings=timings,
    )


def kmeans_labels(
    X: Any, n_clusters: int, *, seed: int = 0, backend: Backend = "auto", n_iter: int = 20
) -> np.ndarray:
    """Cluster the rows of X into at most ``n_clusters`` groups; labels are contiguous ``0..m-1`` (none empty).

    Parameters
    ----------
    X : array-like of shape (n, n_features)
    n_clusters : int
        At most n.
    seed : int, default 0
    backend : {"auto", "faiss", "torch", "sklearn"}, default "auto"
    n_iter : int, default 20

    Returns
    -------
    ndarray of shape (n,), int64
    """
    array = _check_features(X)
    n_clusters = _check_positive_int(n_clusters, "n_clusters")
    if backend not in ("auto", "faiss", "torch", "sklearn"):
        raise ValueError(f"backend must be one of 'auto', 'faiss', 'torch', 'sklearn', got {backend!r}")
    n_clusters = min(n_clusters, array.shape[0])
    if n_clusters == 1:
        return np.zeros(array.shape[0], dtype=np.int64)
    engine = _make_engine(backend, array, _check_positive_int(n_iter, "n_iter"), array.shape[0])
    labels = engine.cluster(None, n_clusters, _seed(seed, 4))
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _weighted_means(sums: np.ndarray, sizes: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Means of groups of rows, given per-row sums of members and per-row member counts."""
    total = np.zeros((n_groups, sums.shape[1]), dtype=np.float64)
    np.add.at(total, groups, sums)
    counts = np.bincount(groups, weights=sizes, minlength=n_groups)
    return total / np.maximum(counts, 1)[:, None]
