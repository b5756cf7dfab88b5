"""Lloyd's k-means in torch over rows held on one torch device: upload, k-means++ seeding, assignment, one fit.

Used by :class:`harp.hierarchy.kmeans.TorchEngine` (one fit at a time) and by the large level of
:mod:`harp.hierarchy.on_device`. Cluster sums come from one-hot matrix products rather than scattered atomic
additions, so a fit on a GPU gives the same centroids, to the bit, at every run. torch is imported inside the
functions: importing this module costs nothing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from harp.hierarchy.arrays import CHUNK_ROWS

UPLOAD_ROWS = CHUNK_ROWS * 4  # rows per host-to-device block
_ONE_HOT_ELEMENTS = 1 << 27  # k x rows of one one-hot block (512 MB in float32)


def upload_features(X: np.ndarray, device: Any) -> Any:
    """Copy the rows of X (an array or a read-only memory map) to ``device`` as one float32 tensor, in blocks.

    No second host copy of X is made; on a CUDA device each block goes through a page-locked staging buffer,
    so reading the next block from X overlaps the copy of the last one to the device.

    Parameters
    ----------
    X : ndarray of shape (n, n_features), float32
    device : torch.device

    Returns
    -------
    torch.Tensor of shape (n, n_features), float32, on ``device``
    """
    import torch

    out = torch.empty(X.shape, dtype=torch.float32, device=device)
    cuda = out.device.type == "cuda"
    staging = (
        [torch.empty((UPLOAD_ROWS, X.shape[1]), dtype=torch.float32, pin_memory=True) for _ in range(2)]
        if cuda
        else []
    )
    done = [torch.cuda.Event() for _ in staging]
    # Reading a memory-mapped file is the slow part on a GPU machine: a few threads read parts of each block.
    n_threads = min(8, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=n_threads) if cuda else None
    for index, start in enumerate(range(0, X.shape[0], UPLOAD_ROWS)):
        stop = min(start + UPLOAD_ROWS, X.shape[0])
        if pool is not None:
            slot = index % 2
            done[slot].synchronize()  # the copy that last used this buffer has finished
            _copy_rows(pool, n_threads, staging[slot].numpy(), X, start, stop)
            out[start:stop].copy_(staging[slot][: stop - start], non_blocking=True)
            done[slot].record()
        else:
            # A copy of the block: torch.from_numpy warns on a read-only memory map.
            out[start:stop] = torch.from_numpy(np.array(X[start:stop], dtype=np.float32))
    if pool is not None:
        pool.shutdown()
    return out


def check_finite_on_device(X: Any) -> None:
    """Raise, as :func:`harp.hierarchy.checks.check_features` does, at the first NaN or inf of X (a tensor).

    Raises
    ------
    ValueError
        ``X_feat must be finite, found nan at row 3, column 0``: the first entry in row-major order.
    """
    import torch

    bad = torch.zeros((), dtype=torch.bool, device=X.device)
    for start in range(0, X.shape[0], UPLOAD_ROWS):
        bad |= ~torch.isfinite(X[start : start + UPLOAD_ROWS]).all()
    if not bool(bad):
        return
    for start in range(0, X.shape[0], UPLOAD_ROWS):
        where = torch.nonzero(~torch.isfinite(X[start : start + UPLOAD_ROWS]))
        if where.shape[0]:
            row, column = (int(i) for i in where[0])
            value = np.float32(X[start + row, column].item())
            raise ValueError(f"X_feat must be finite, found {value} at row {start + row}, column {column}")


def _copy_rows(
    pool: ThreadPoolExecutor, n_parts: int, target: np.ndarray, X: np.ndarray, start: int, stop: int
) -> None:
    """``target[: stop - start] = X[start:stop]``, in ``n_parts`` parallel parts (numpy copies release the GIL)."""

    def copy(bounds: tuple[int, int]) -> None:
        target[bounds[0] - start : bounds[1] - start] = X[bounds[0] : bounds[1]]

    edges = np.linspace(start, stop, n_parts + 1).astype(int).tolist()
    list(pool.map(copy, [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]))


def assign_nearest(X: Any, centroids: Any) -> Any:
    """Index of the nearest centroid (squared Euclidean) of each row of X, in blocks; ties to the smaller index.

    Parameters
    ----------
    X : torch.Tensor of shape (n, n_features)
    centroids : torch.Tensor of shape (k, n_features)

    Returns
    -------
    torch.Tensor of shape (n,), int64, on X's device
    """
    import torch

    half_norms = 0.5 * (centroids * centroids).sum(dim=1)
    labels = torch.empty(X.shape[0], dtype=torch.int64, device=X.device)
    for start in range(0, X.shape[0], UPLOAD_ROWS):
        block = X[start : start + UPLOAD_ROWS]
        labels[start : start + block.shape[0]] = torch.argmin(
            half_norms[None, :] - block @ centroids.T, dim=1
        )
    return labels


def cluster_sums(X: Any, labels: Any, k: int) -> tuple[Any, Any]:
    """Sum of the rows of each cluster (float64) and the cluster sizes, from one-hot products (no atomics).

    Parameters
    ----------
    X : torch.Tensor of shape (n, n_features), float32
    labels : torch.Tensor of shape (n,), int64, values in ``0..k-1``
    k : int

    Returns
    -------
    sums : torch.Tensor of shape (k, n_features), float64
    sizes : torch.Tensor of shape (k,), int64
    """
    import torch

    sums = torch.zeros((k, X.shape[1]), dtype=torch.float64, device=X.device)
    clusters = torch.arange(k, device=X.device)[:, None]
    step = max(1024, _ONE_HOT_ELEMENTS // max(k, 1))
    for start in range(0, X.shape[0], step):
        one_hot = (labels[None, start : start + step] == clusters).to(X.dtype)
        sums += (one_hot @ X[start : start + step]).double()
    return sums, torch.bincount(labels, minlength=k)


def weighted_draws(weights: Any, m: int, generator: Any) -> Any:
    """``m`` independent draws of an index along the last axis, each with probability proportional to
    ``weights`` (with replacement): the argmax of ``weights / q`` with q ~ Exp(1).

    Only reductions, so a GPU draws the same indices at every run; ``torch.multinomial`` with replacement goes
    through a floating-point prefix sum whose order of additions may vary there.

    Parameters
    ----------
    weights : torch.Tensor of shape (..., n), >= 0, each row with a positive entry
    m : int
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (..., m), int64
    """
    import torch

    shape = (*weights.shape[:-1], m, weights.shape[-1])
    q = torch.empty(shape, dtype=weights.dtype, device=weights.device).exponential_(generator=generator)
    return (weights.unsqueeze(-2) / q).argmax(dim=-1)


def local_trials(k: int) -> int:
    """Candidates a k-means++ step draws, keeping the one that lowers the potential most (scikit-learn's
    greedy k-means++: ``2 + log k``); one draw a step gives visibly worse trees on clustered data."""
    return 2 + int(np.log(max(k, 1)))


def kmeans_plus_plus(X: Any, k: int, generator: Any) -> Any:
    """Greedy k-means++ seeding: each centre is, of :func:`local_trials` rows drawn with probability proportional
    to their squared distance to the nearest centre so far, the one that leaves the smallest sum of such distances.

    Distances come from one matrix product a step (no n x dim temporary), and the centres stay on the device as
    tensors, so a GPU runs the k steps without waiting on the host.

    Parameters
    ----------
    X : torch.Tensor of shape (n, n_features)
    k : int
    generator : torch.Generator
        On X's device.

    Returns
    -------
    torch.Tensor of shape (k, n_features)
    """
    import torch

    n = X.shape[0]
    trials = local_trials(k)
    squares = (X * X).sum(dim=1)

    def distances(index: Any) -> Any:
        """Squared distances of every row to the rows ``index``, shape (n, len(index))."""
        return (squares[:, None] - 2.0 * (X @ X[index].T) + squares[index][None, :]).clamp_(min=0.0)

    chosen = torch.empty(k, dtype=torch.int64, device=X.device)
    uniform = torch.ones(n, dtype=X.dtype, device=X.device)
    chosen[:1] = weighted_draws(uniform, 1, generator)
    closest = distances(chosen[:1])[:, 0]
    for i in range(1, k):
        # Every point is a centre already (fewer distinct points than k): any point will do; k-means then
        # leaves the repeated centre empty.
        weights = torch.where(closest.sum() > 0, closest, uniform)
        candidates = weighted_draws(weights, trials, generator)
        after = torch.minimum(closest[:, None], distances(candidates))
        best = torch.argmin(after.sum(dim=0))
        chosen[i] = candidates[best]
        closest = after[:, best]
    return X[chosen].clone()


def lloyd_kmeans(fit: Any, k: int, generator: Any, n_iter: int) -> Any:
    """Centroids of k clusters of the rows ``fit``: k-means++ seeding, then at most ``n_iter`` Lloyd steps
    (fewer once the labels stop changing). A cluster that comes out empty keeps its last centre.

    Parameters
    ----------
    fit : torch.Tensor of shape (n, n_features), float32
    k : int
    generator : torch.Generator
    n_iter : int

    Returns
    -------
    torch.Tensor of shape (k, n_features), float32
    """
    import torch

    centroids = kmeans_plus_plus(fit, k, generator)
    labels = assign_nearest(fit, centroids)
    for _ in range(n_iter):
        sums, counts = cluster_sums(fit, labels, k)
        means = (sums / counts.clamp(min=1)[:, None]).to(fit.dtype)
        centroids = torch.where((counts > 0)[:, None], means, centroids)
        new_labels = assign_nearest(fit, centroids)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centroids
