"""The 2-D map of the leaves: UMAP of the leaf centroids, cached in the store under a key.

Each leaf g is placed at ``(x[g], y[g])`` from its centroid in feature space (the mean of its points' features).
UMAP (umap-learn, the ``[app]`` extra, imported only when used) keeps neighbouring leaves together; with fewer than
``min_umap_leaves`` leaves, where a neighbour graph says little, the first two principal components are used
instead. Both are deterministic for a seed.

Each example can be drawn around its leaf (:func:`point_positions`): its offset from the leaf centroid,
projected on the leaf's top two principal directions and scaled so the leaf's farthest point lies at 0.4 of the
distance to the nearest other leaf on the map; leaves keep apart and a leaf's shape (long or round, which points
are typical) shows. :func:`ensure_layout` writes them with the layout when it is given the features.

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

__all__ = [
    "LAYOUT_VERSION",
    "Layout",
    "compute_layout",
    "ensure_layout",
    "layout_key",
    "leaf_centroids",
    "point_positions",
]

#: Bumped whenever the same inputs would give a different layout.
LAYOUT_VERSION = "harp-layout-v1"

Method = Literal["auto", "umap", "pca"]

_SKETCH = 8  # dimensions of the random sketch each leaf's principal directions are found in
_SPREAD = 0.4  # a leaf's points reach this fraction of the distance to its nearest leaf on the map
_BLOCK = 1 << 17  # rows per block: bounded memory at any pool size


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
    X_feat: Any = None,
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
    X_feat : array-like of shape (n_rows, n_features), optional
        The features (point id = row): the points' positions around their leaves (:func:`point_positions`)
        are written with the layout, and computed for a reused layout that has none yet.

    Returns
    -------
    layout : Layout
    computed : bool
        False when the stored layout (and, with ``X_feat``, its point positions) was reused.
    """
    points = _check_points(leaf_centroids)
    settings = _resolve(points.shape[0], method, n_neighbors, min_dist, metric, seed, min_umap_leaves)
    key = _key(points, settings)
    layout: Layout | None = None
    if not force and store.layout_key() == key:
        stored = store.layout()
        if stored is not None and stored[0].size == points.shape[0]:
            layout = Layout(x=stored[0], y=stored[1], key=key, method=settings["method"])
            if X_feat is None or store.has_point_positions():
                return layout, False
    if layout is None:
        layout = compute_layout(
            points,
            method=method,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            metric=metric,
            seed=seed,
            min_umap_leaves=min_umap_leaves,
        )
    positions = None
    if X_feat is not None:
        with store.read() as con:  # two columns, not the texts
            members = con.execute("SELECT point_id, leaf_id FROM points").fetchnumpy()
        point_id = np.asarray(members["point_id"], dtype=np.int64)
        leaf_id = np.asarray(members["leaf_id"], dtype=np.int64)
        x, y = point_positions(X_feat, point_id, leaf_id, layout.x, layout.y, seed=seed)
        positions = (point_id, x, y)
    store.write_layout(layout.x, layout.y, layout.key, point_positions=positions)
    return layout, True


def _nearest_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance from each leaf on the map to its nearest other leaf (inf for a lone leaf)."""
    n = x.size
    if n < 2:
        return np.full(n, np.inf)
    coordinates = np.column_stack([x, y])
    try:
        from scipy.spatial import cKDTree  # installed with umap-learn; a k-d tree is O(L log L)
    except ImportError:
        nearest = np.empty(n)
        for start in range(0, n, 1024):  # without scipy, blocks of a brute-force search
            block = coordinates[start : start + 1024]
            squared = ((block[:, None, :] - coordinates[None, :, :]) ** 2).sum(axis=2)
            squared[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = np.inf
            nearest[start : start + block.shape[0]] = np.sqrt(squared.min(axis=1))
        return nearest
    distance, _ = cKDTree(coordinates).query(coordinates, k=2)
    return np.asarray(distance[:, 1], dtype=np.float64)


def _sketch_matrix(n_features: int, seed: int) -> np.ndarray:
    """Orthonormal columns spanning a random ``_SKETCH``-dimensional subspace (all of it when smaller)."""
    if n_features <= _SKETCH:
        return np.eye(n_features, dtype=np.float64)
    gaussian = np.random.default_rng(seed).standard_normal((n_features, _SKETCH))
    q, _ = np.linalg.qr(gaussian)
    return q


def point_positions(
    X_feat: Any,
    point_ids: Any,
    leaf_ids: Any,
    leaf_x: Any,
    leaf_y: Any,
    *,
    spread: float = _SPREAD,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Map positions of the points around their leaves' positions: a local 2-D projection of each leaf.

    Point i of leaf g goes to ``(leaf_x[g], leaf_y[g]) + r_g * (u_i1, u_i2) / max_j |u_j|``, where ``u_i`` is
    the offset of its features from the leaf centroid projected on the leaf's top two principal directions,
    the max runs over the leaf's points and ``r_g`` is ``spread`` times the distance from leaf g to its nearest
    other leaf on the map. So no point leaves its leaf's disc and discs of different leaves do not overlap (for
    ``spread`` < 0.5). The principal directions are those of the features sketched on 8 random orthonormal
    directions (seeded; all features when there are 8 or fewer), which keeps the cost at one pass over
    ``X_feat``; each direction's sign is fixed (largest loading positive), so the result is deterministic. A
    one-point leaf sits on its leaf, a two-point leaf on a line through it.

    Parameters
    ----------
    X_feat : array-like of shape (n_rows, n_features)
        Features; point id = row.
    point_ids, leaf_ids : array-like of int, shape (n_points,)
        Each point's row in ``X_feat`` and its leaf (0..n_leaves-1).
    leaf_x, leaf_y : array-like of shape (n_leaves,)
        The leaves' map positions (:func:`compute_layout`).
    spread : float, default 0.4
        In (0, 0.5]: how far towards its nearest leaf a leaf's points reach.
    seed : int, default 0
        Seed of the sketch.

    Returns
    -------
    x, y : ndarray of shape (n_points,), float64
        In the order of ``point_ids``.
    """
    if not isinstance(spread, int | float) or not 0 < spread <= 0.5:
        raise ValueError(f"spread must be a number in (0, 0.5], got {spread!r}")
    if not is_integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    X = np.asarray(X_feat)
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"X_feat must be 2-D (points x features), got shape {X.shape}")
    rows = np.asarray(point_ids, dtype=np.int64).ravel()
    leaves = np.asarray(leaf_ids, dtype=np.int64).ravel()
    centre_x = np.asarray(leaf_x, dtype=np.float64).ravel()
    centre_y = np.asarray(leaf_y, dtype=np.float64).ravel()
    n_leaves = centre_x.size
    if centre_y.size != n_leaves:
        raise ValueError(f"leaf_x has {n_leaves} leaves but leaf_y has {centre_y.size}")
    if leaves.size != rows.size:
        raise ValueError(f"point_ids has {rows.size} entries but leaf_ids has {leaves.size}")
    if rows.size and (rows.min() < 0 or rows.max() >= X.shape[0]):
        raise ValueError(
            f"X_feat has {X.shape[0]} rows but the store has point id {int(rows.max())}: point ids must be "
            "row numbers of X_feat (as `harp hierarchy` and `harp load` write them)"
        )
    if leaves.size and (leaves.min() < 0 or leaves.max() >= n_leaves):
        raise ValueError(f"leaf_ids must lie in 0..{n_leaves - 1}, got {int(leaves.max())}")

    # Points in leaf order (stable), so a leaf's points are one run of rows: sums over runs are np.add.reduceat.
    order = np.argsort(leaves, kind="stable")
    sorted_leaves = leaves[order]
    basis = _sketch_matrix(X.shape[1], int(seed)).astype(np.float32)
    k = basis.shape[1]
    sketch = np.empty((rows.size, k), dtype=np.float32)
    for start in range(0, rows.size, _BLOCK):  # one BLAS call a block; X is never copied whole
        block = np.asarray(X[rows[order[start : start + _BLOCK]]], dtype=np.float32)
        if not np.isfinite(block).all():
            bad = int(rows[order[start + int(np.argwhere(~np.isfinite(block))[0][0])]])
            raise ValueError(f"X_feat must be finite, found a NaN or inf in row {bad}")
        sketch[start : start + _BLOCK] = block @ basis

    # Each leaf's centroid and covariance in the sketch, then its top two eigenvectors (batched).
    sizes = np.bincount(leaves, minlength=n_leaves).astype(np.float64)
    safe = np.maximum(sizes, 1.0)
    means = np.zeros((n_leaves, k))
    _run_add(means, sorted_leaves, sketch)
    means /= safe[:, None]
    centred = sketch - means[sorted_leaves].astype(np.float32)
    covariance = np.zeros((n_leaves, k * k))
    step = max(1, _BLOCK // k)  # a block's outer products: k times its rows
    for start in range(0, rows.size, step):
        part = centred[start : start + step]
        products = (part[:, :, None] * part[:, None, :]).reshape(part.shape[0], k * k)
        _run_add(covariance, sorted_leaves[start : start + step], products)
    _, vectors = np.linalg.eigh(covariance.reshape(n_leaves, k, k) / safe[:, None, None])
    directions = vectors[:, :, ::-1][:, :, :2]  # (n_leaves, k, 2): the two largest eigenvalues' vectors
    largest = np.take_along_axis(directions, np.abs(directions).argmax(axis=1)[:, None, :], axis=1)
    directions = (directions * np.where(largest >= 0, 1.0, -1.0)).astype(np.float32)

    offset = np.empty((rows.size, 2))
    for start in range(0, rows.size, _BLOCK):
        stop = start + _BLOCK
        offset[start:stop] = np.einsum(
            "ik,ikc->ic", centred[start:stop], directions[sorted_leaves[start:stop]]
        )
    # A flat direction (two points, identical points) stays flat instead of blowing rounding up to the radius.
    norm = np.sqrt((offset**2).sum(axis=1))
    offset[np.abs(offset) <= 1e-5 * np.maximum(norm, 1e-30)[:, None]] = 0.0
    offset[norm < 1e-6] = 0.0
    reach = np.zeros(n_leaves)
    if rows.size:
        runs = np.flatnonzero(np.r_[True, sorted_leaves[1:] != sorted_leaves[:-1]])
        reach[sorted_leaves[runs]] = np.maximum.reduceat(np.sqrt((offset**2).sum(axis=1)), runs)
    nearest = _nearest_distance(centre_x, centre_y)
    extent = max(float(np.ptp(centre_x)) if n_leaves else 0.0, float(np.ptp(centre_y)) if n_leaves else 0.0)
    nearest = np.where(np.isfinite(nearest) & (nearest > 0), nearest, extent if extent > 0 else 1.0)
    scale = np.where(reach > 0, spread * nearest / np.where(reach > 0, reach, 1.0), 0.0)
    x = np.empty(rows.size)
    y = np.empty(rows.size)
    x[order] = centre_x[sorted_leaves] + offset[:, 0] * scale[sorted_leaves]
    y[order] = centre_y[sorted_leaves] + offset[:, 1] * scale[sorted_leaves]
    return x, y


def _run_add(target: np.ndarray, sorted_labels: np.ndarray, values: np.ndarray) -> None:
    """``target[sorted_labels[i]] += values[i]`` for every i, labels sorted: one ``np.add.reduceat`` over runs."""
    if sorted_labels.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    target[sorted_labels[starts]] += np.add.reduceat(values, starts, axis=0, dtype=np.float64)
