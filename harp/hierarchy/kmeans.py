"""The k-means engines of :mod:`harp.hierarchy`: scikit-learn, faiss and torch behind one small interface.

An engine holds the features once and answers ``cluster(rows, k, seed)``: labels in ``0..k-1`` for the given rows
(all rows when ``rows`` is None); some clusters may come back empty, the caller merges and splits as needed.
Fits of k clusters use a subsample of at most ``max_points_per_centroid * k`` rows, as faiss does, and every row is
then assigned to its nearest centroid. scikit-learn, faiss and torch are imported only when an engine is made.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from typing import Any, Literal, Protocol

import numpy as np

from harp.hierarchy.arrays import nearest, node_seed
from harp.hierarchy.checks import check_backend, check_count, check_features
from harp.hierarchy.torch_kmeans import assign_nearest, lloyd_kmeans, upload_features

Backend = Literal["auto", "faiss", "torch", "sklearn"]


class Engine(Protocol):
    """What :func:`harp.hierarchy.build_hierarchy` asks of a k-means implementation."""

    name: str

    def cluster(self, rows: np.ndarray | None, k: int, seed: int) -> np.ndarray:
        """Labels in ``0..k-1`` of ``rows`` (all rows when None), int64; some clusters may be empty."""
        ...

    def small_fits(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the many small fits of the lower levels."""
        ...


def subsample(n: int, k: int, max_points_per_centroid: int, seed: int) -> np.ndarray | None:
    """Sorted rows of a fitting subsample, or None when every row is used."""
    limit = max_points_per_centroid * k
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


class SklearnEngine:
    """scikit-learn's Lloyd ``KMeans`` with k-means++ initialisation, one fit at a time."""

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
        sample = subsample(X.shape[0], k, self.max_points_per_centroid, seed)
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
        return nearest(X, model.cluster_centers_)


class FaissEngine:
    """faiss' ``Kmeans``, on the GPU when faiss sees one."""

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


class TorchEngine:
    """Lloyd's k-means with k-means++ initialisation, in torch (on a CUDA device when there is one)."""

    name = "torch"

    def __init__(
        self, X: np.ndarray, n_iter: int, max_points_per_centroid: int, device: str | None = None
    ) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.name = f"torch-{self.device.type}"
        self.X = upload_features(X, self.device)
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid

    def small_fits(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def cluster(self, rows: np.ndarray | None, k: int, seed: int) -> np.ndarray:
        torch = self._torch
        X = self.X if rows is None else self.X[torch.from_numpy(rows).to(self.device)]
        n = X.shape[0]
        if k <= 1:
            return np.zeros(n, dtype=np.int64)
        sample = subsample(n, k, self.max_points_per_centroid, seed)
        fit = X if sample is None else X[torch.from_numpy(sample).to(self.device)]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        centroids = lloyd_kmeans(fit, k, generator, self.n_iter)
        return assign_nearest(X, centroids).cpu().numpy().astype(np.int64)


def importable(module: str) -> bool:
    """True when ``module`` can be imported (it is imported, so call this only for one about to be used)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """``backend`` itself, or for ``"auto"`` the one it picks: faiss, then torch on a GPU, then scikit-learn."""
    if backend != "auto":
        return backend
    if importable("faiss"):
        return "faiss"
    if importable("torch") and importlib.import_module("torch").cuda.is_available():
        return "torch"
    return "sklearn"


def make_engine(backend: str, X: np.ndarray, n_iter: int, max_points_per_centroid: int) -> Engine:
    """The engine for ``backend`` over the features X (``"auto"`` as :func:`resolve_backend` picks).

    Raises
    ------
    ImportError
        The backend asked for is not installed.
    """
    backend = resolve_backend(backend)
    if backend == "faiss":
        if not importable("faiss"):
            raise ImportError("backend 'faiss' needs faiss: pip install faiss-cpu (or faiss-gpu)")
        return FaissEngine(X, n_iter, max_points_per_centroid)
    if backend == "torch":
        if not importable("torch"):
            raise ImportError("backend 'torch' needs torch: pip install 'harp-explorer[train]'")
        return TorchEngine(X, n_iter, max_points_per_centroid)
    return SklearnEngine(X, n_iter, max_points_per_centroid)


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
    array = check_features(X)
    n_clusters = check_count(n_clusters, "n_clusters")
    check_backend(backend)
    n_clusters = min(n_clusters, array.shape[0])
    if n_clusters == 1:
        return np.zeros(array.shape[0], dtype=np.int64)
    engine = make_engine(backend, array, check_count(n_iter, "n_iter"), array.shape[0])
    labels = engine.cluster(None, n_clusters, node_seed(seed, 4))
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)
