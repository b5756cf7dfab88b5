"""The 2-D map of the leaves: UMAP of the leaf centroids, cached in the store under a key.

Each leaf g is placed at ``(x[g], y[g])`` from its centroid in feature space (the mean of its points' features).
UMAP (umap-learn, the ``[app]`` extra, imported only when used) keeps neighbouring leaves together; with fewer than
``min_umap_leaves`` leaves, where a neighbour graph says little, the first two principal components are used
instead. Both are deterministic for a seed.

The cache key names everything that produced a layout: the layout version, the method, every hyperparameter and
a fingerprint of the centroids (shape and a SHA-256 of their float32 bytes). :func:`ensure_layout` recomputes
only when the key in the store differs, so a new tree, new features or a changed hyperparameter all give a new
layout, and nothing else does.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from harp._validation import is_integer

if TYPE_CHECKING:
    from harp.store import Store

__all__ = ["LAYOUT_VERSION", "Layout", "compute_layout", "ensure_layout", "layout_key", "leaf_centroids"]

#: Bumped whenever the same inputs would give a different layout.
LAYOUT_VERSION = "harp-layout-v1"

Method = Literal["auto", "umap", "pca"]


@dataclass(frozen=True)
class Layout:
    """Coordinates of the leaves and the key that identifies how they were made.

    Attributes
    ----------
    x, y : ndarray of shape (n_leaves,)
    key : str
    method : {"umap", "pca"}
        The method used (``"auto"`` resolved).
    """

    x: np.ndarray
    y: np.ndarray
    key: str
    method: str


def _check_points(points: Any) -> np.ndarray:
    try:
        array = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"leaf_centroids must be a 2-D array of numbers: {error}") from None
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"leaf_centroids must be 2-D (leaves x features) and non-empty, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise ValueError(f"leaf_centroids must be finite, found a NaN or inf in row {row}")
    return np.ascontiguousarray(array)


def _resolve(
    n_leaves: int,
    method: str,
    n_neighbors: int,
    min_dist: float,
    metric: str,
    seed: int,
    min_umap_leaves: int,
) -> dict[str, Any]:
    """The effective settings: ``auto`` resolved and n_neighbors capped by the number of leaves."""
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}")
    if not is_integer(n_neighbors) or n_neighbors < 2:
        raise ValueError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}")
    if not isinstance(min_dist, int | float) or not 0 <= min_dist <= 1:
        raise ValueError(f"min_dist must be a number in [0, 1], got {min_dist!r}")
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric must be a metric name umap-learn knows, got {metric!r}")
    if not is_integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not is_integer(min_umap_leaves) or min_umap_leaves < 3:
        raise ValueError(f"min_umap_leaves must be an integer >= 3, got {min_umap_leaves!r}")
    if method == "auto":
        method = "umap" if n_leaves >= min_umap_leaves else "pca"
    if method == "umap" and n_leaves < 3:
        raise ValueError(f"method 'umap' needs at least 3 leaves, got {n_leaves}; use 'pca' or 'auto'")
    if method == "pca":
        return {"method": "pca", "seed": int(seed)}
    return {
        "method": "umap",
        "n_neighbors": int(min(n_neighbors, n_leaves - 1)),
        "min_dist": float(min_dist),
        "metric": metric,
        "seed": int(seed),
    }


def _fingerprint(points: np.ndarray) -> str:
    digest = hashlib.sha256(f"{points.shape[0]}x{points.shape[1]}\n".encode())
    digest.update(points.tobytes())
    return digest.hexdigest()[:16]


def layout_key(
    leaf_centroids: Any,
    *,
    method: Method = "auto",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    seed: int = 0,
    min_umap_leaves: int = 16,
) -> str:
    """The cache key of the layout these arguments would produce (see :func:`compute_layout`)."""
    points = _check_points(leaf_centroids)
    settings = _resolve(points.shape[0], method, n_neighbors, min_dist, metric, seed, min_umap_leaves)
    return _key(points, settings)


def _key(points: np.ndarray, settings: dict[str, Any]) -> str:
    parts = [LAYOUT_VERSION] + [f"{name}={value}" for name, value in settings.items()]
    parts += [f"n={points.shape[0]}", f"dim={points.shape[1]}", f"input={_fingerprint(points)}"]
    return " ".join(parts)


def _pca(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components, each signed so that its largest loading is positive."""
    centred = points.astype(np.float64) - points.mean(axis=0, dtype=np.float64)
    coordinates = np.zeros((points.shape[0], 2))
    if points.shape[0] > 1 and np.abs(centred).max() > 0:
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        for component in range(min(2, vt.shape[0])):
            if singular[component] <= 1e-9 * singular[0]:  # a flat direction: leave that coordinate at 0
                continue
            axis = vt[component]
            axis = axis if axis[np.argmax(np.abs(axis))] >= 0 else -axis
            coordinates[:, component] = centred @ axis
    return coordinates[:, 0], coordinates[:, 1]


def _umap(points: np.ndarray, settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    try:
        import umap
    except ImportError:
        raise ImportError("the UMAP layout needs umap-learn: pip install 'harp-explorer[app]'") from None
    model = umap.UMAP(
        n_neighbors=settings["n_neighbors"],
        n_components=2,
        min_dist=settings["min_dist"],
        metric=settings["metric"],
        random_state=settings["seed"],
        n_jobs=1,  # a seeded UMAP runs on one thread anyway; saying so silences its warning
    )
    with warnings.catch_warnings():
        # umap-learn warns about its own choices (spectral init on tiny or disconnected graphs, ...).
        warnings.simplefilter("ignore")
        embedding = np.asarray(model.fit_transform(points), dtype=np.float64)
    return embedding[:, 0].copy(), embedding[:, 1].copy()


def compute_layout(
    leaf_centroids: Any,
    *,
    method: Method = "auto",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    seed: int = 0,
    min_umap_leaves: int = 16,
) -> Layout:
    """2-D coordinates of the leaves from their centroids.

    Parameters
    ----------
    leaf_centroids : array-like of shape (n_leaves, n_features)
        Centroid of each leaf g in feature space.
    method : {"auto", "umap", "pca"}, default "auto"
        ``auto``: UMAP with at least ``min_umap_leaves`` leaves, PCA below.
    n_neighbors : int, default 15
        UMAP neighbourhood size (capped at ``n_leaves - 1``).
    min_dist : float, default 0.1
        UMAP minimum distance between embedded points.
    metric : str, default "cosine"
        UMAP input metric (cosine suits sentence embeddings).
    seed : int, default 0
    min_umap_leaves : int, default 16

    Returns
    -------
    Layout
    """
    points = _check_points(leaf_centroids)
    settings = _resolve(points.shape[0], method, n_neighbors, min_dist, metric, seed, min_umap_leaves)
    x, y = _pca(points) if settings["method"] == "pca" else _umap(points, settings)
    return Layout(x=x, y=y, key=_key(points, settings), method=settings["method"])


def leaf_centroids(X_feat: Any, point_ids: Any, leaf_ids: Any, n_leaves: int) -> np.ndarray:
    """Centroid of each leaf from the features of its points (point id = row of ``X_feat``).

    Parameters
    ----------
    X_feat : array-like of shape (n_rows, n_features)
    point_ids, leaf_ids : array-like of int, shape (n_points,)
        Each point's row in ``X_feat`` and its leaf.
    n_leaves : int

    Returns
    -------
    ndarray of shape (n_leaves, n_features), float32

    See Also
    --------
    harp.measure.leaf_centroids : the float64 leaf and parent centroids that representatives are chosen from
        (a different rounding: this one must reproduce the tree's own float32 centroids, byte for byte).
    """
    from harp.hierarchy import group_means

    X = np.asarray(X_feat)
    if X.ndim != 2:
        raise ValueError(f"X_feat must be 2-D (points x features), got shape {X.shape}")
    rows = np.asarray(point_ids, dtype=np.int64)
    leaves = np.asarray(leaf_ids, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= X.shape[0]):
        raise ValueError(
            f"X_feat has {X.shape[0]} rows but the store has point id {int(rows.max())}: point ids must be "
            "row numbers of X_feat (as `harp hierarchy` and `harp load` write them)"
        )
    if leaves.size != rows.size:
        raise ValueError(f"point_ids has {rows.size} entries but leaf_ids has {leaves.size}")
    labels = np.full(X.shape[0], n_leaves, dtype=np.int64)  # rows of no point go to a spare group, dropped
    labels[rows] = leaves
    # With every row a point this is the very computation of build_hierarchy, so the layout key matches.
    spare = int((labels == n_leaves).any())
    means, sizes = group_means(X, labels, n_leaves + spare)
    means, sizes = means[:n_leaves], sizes[:n_leaves]
    if (sizes == 0).any():
        raise ValueError(f"leaf {int(np.argmin(sizes))} has no points, so it has no centroid")
    return means.astype(np.float32)


def ensure_layout(
    store: Store,
    leaf_centroids: Any,
    *,
    force: bool = False,
    method: Method = "auto",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    seed: int = 0,
    min_umap_leaves: int = 16,
) -> tuple[Layout, bool]:
    """The store's layout when its key matches these arguments; otherwise compute it and write it.

    Parameters
    ----------
    store : harp.Store
        Opened read-write.
    leaf_centroids : array-like of shape (n_leaves, n_features)
    force : bool, default False
        Recompute and write even when the stored key matches.
    method, n_neighbors, min_dist, metric, seed, min_umap_leaves
        As in :func:`compute_layout`.

    Returns
    -------
    layout : Layout
    computed : bool
        False when the stored layout was reused.
    """
    points = _check_points(leaf_centroids)
    settings = _resolve(points.shape[0], method, n_neighbors, min_dist, metric, seed, min_umap_leaves)
    key = _key(points, settings)
    if not force and store.layout_key() == key:
        stored = store.layout()
        if stored is not None and stored[0].size == points.shape[0]:
            return Layout(x=stored[0], y=stored[1], key=key, method=settings["method"]), False
    layout = compute_layout(
        points,
        method=method,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        metric=metric,
        seed=seed,
        min_umap_leaves=min_umap_leaves,
    )
    store.write_layout(layout.x, layout.y, layout.key)
    return layout, True
