"""Many small k-means fits at once, on a torch device: every group of one level of the tree in a few batches.

A level of the tree splits each of G groups of points (the large nodes into parents, the parents into leaves)
by k-means into its own number of clusters. One fit a group costs a few kernel launches per Lloyd step, so tens
of thousands of groups spend their time launching. Here the groups are sorted by size and cut into batches; a
batch is one zero-padded tensor of shape (groups, rows, features), and k-means++ seeding, the Lloyd steps and the
cluster sums run as batched matrix products over it, with masks for the padding and for the clusters a group
does not have. A fit of k clusters uses at most ``max_points_per_centroid * k`` random rows of its group (as the
one-at-a-time engines do); every row is then assigned to its nearest centroid. Small clusters are merged and
unsplittable groups cut into chunks exactly as :mod:`harp.hierarchy.band` does it for one group.

The random draws of a batch come from one torch generator, so the result is a deterministic function of the
features, the counts and the seed; it is not the tree the one-at-a-time engines draw.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from harp.hierarchy.band import Counters, chunks_along_main_direction, merge_clusters
from harp.hierarchy.torch_kmeans import local_trials, weighted_draws

BATCH_ELEMENTS = 1 << 28  # padded rows x features of one batch (1 GiB in float32)


@dataclass
class Groups:
    """Consecutive groups of points: group g holds ``rows[starts[g] : starts[g] + sizes[g]]``, ids ascending.

    Attributes
    ----------
    rows : torch.Tensor of shape (n_points,), int64
        Point ids, group after group.
    sizes : ndarray of shape (n_groups,), int64
    """

    rows: Any
    sizes: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        """First position of each group in ``rows``, shape (n_groups,)."""
        return np.cumsum(self.sizes) - self.sizes


@dataclass
class Batch:
    """Groups padded to one length: ``ids[b, j]`` is row j of group ``groups[b]`` where ``valid[b, j]``.

    Attributes
    ----------
    groups : ndarray of shape (n_batch,), int64
    ids : torch.Tensor of shape (n_batch, width), int64
        Point ids (a padding entry repeats the group's last point).
    positions : torch.Tensor of shape (n_batch, width), int64
        Position of each entry in :attr:`Groups.rows`.
    valid : torch.Tensor of shape (n_batch, width), bool
    sizes : torch.Tensor of shape (n_batch,), int64
    """

    groups: np.ndarray
    ids: Any
    positions: Any
    valid: Any
    sizes: Any


def batches(
    groups: Groups, selected: np.ndarray, row_elements: int, budget: int = BATCH_ELEMENTS
) -> Iterator[Batch]:
    """The ``selected`` groups in order of size, in batches of at most ``budget`` padded elements.

    Parameters
    ----------
    groups : Groups
    selected : ndarray of int64
        Group ids to batch.
    row_elements : int
        Elements a padded row costs (the feature dimension, or more where a temporary is wider).
    budget : int, default BATCH_ELEMENTS
    """
    import torch

    device = groups.rows.device
    order = selected[np.argsort(groups.sizes[selected], kind="stable")]
    sizes = groups.sizes[order]
    starts = groups.starts[order]
    begin = 0
    while begin < order.size:
        end = begin + 1  # at least one group, however large
        while end < order.size and (end + 1 - begin) * int(sizes[end]) * row_elements <= budget:
            end += 1
        width = int(sizes[end - 1])
        start = torch.from_numpy(starts[begin:end]).to(device)
        size = torch.from_numpy(sizes[begin:end]).to(device)
        offsets = torch.arange(width, device=device)
        positions = torch.minimum(start[:, None] + offsets[None, :], (start + size - 1)[:, None])
        yield Batch(
            groups=order[begin:end],
            ids=groups.rows[positions],
            positions=positions,
            valid=offsets[None, :] < size[:, None],
            sizes=size,
        )
        begin = end


def fit_mask(batch: Batch, counts: Any, max_points_per_centroid: int, generator: Any) -> Any:
    """The rows each group's fit uses: all, or ``max_points_per_centroid * k`` of them drawn at random.

    Returns
    -------
    torch.Tensor of shape (n_batch, width), bool
    """
    import torch

    limits = counts * max_points_per_centroid
    if bool((batch.sizes <= limits).all()):
        return batch.valid
    keys = torch.rand(batch.valid.shape, generator=generator, device=batch.valid.device)
    keys = torch.where(batch.valid, keys, torch.full_like(keys, 2.0))  # padding sorts last
    rank = torch.empty_like(batch.positions)
    order = torch.sort(keys, dim=1, stable=True).indices
    rank.scatter_(1, order, torch.arange(keys.shape[1], device=keys.device).expand_as(order).contiguous())
    return batch.valid & (rank < limits[:, None])


def batched_kmeans_plus_plus(P: Any, fit: Any, k_max: int, generator: Any) -> Any:
    """Greedy k-means++ seeding of every group of a batch at once, as
    :func:`harp.hierarchy.torch_kmeans.kmeans_plus_plus` seeds one (``k_max`` centres each; the unused ones are
    masked by the caller). A draw has weight 0 outside the group's fit rows; where every fit row is a centre
    already, any fit row will do.

    Parameters
    ----------
    P : torch.Tensor of shape (n_batch, width, n_features)
    fit : torch.Tensor of shape (n_batch, width), bool
    k_max : int
    generator : torch.Generator

    Returns
    -------
    torch.Tensor of shape (n_batch, k_max, n_features)
    """
    import torch

    n_batch = P.shape[0]
    trials = local_trials(k_max)
    every = torch.arange(n_batch, device=P.device)[:, None]
    squares = (P * P).sum(dim=2)
    uniform = fit.to(P.dtype)

    def distances(index: Any) -> Any:
        """Squared distances of every row of group b to its rows ``index[b]``, shape (n_batch, width, m)."""
        dots = torch.bmm(P, P[every, index].transpose(1, 2))
        distance = squares[:, :, None] - 2.0 * dots + squares[every, index][:, None, :]
        return distance.clamp_(min=0.0) * uniform[:, :, None]

    chosen = torch.empty((n_batch, k_max), dtype=torch.int64, device=P.device)
    chosen[:, :1] = weighted_draws(uniform, 1, generator)
    closest = distances(chosen[:, :1])[:, :, 0]
    for i in range(1, k_max):
        weights = torch.where(closest.sum(dim=1, keepdim=True) > 0, closest, uniform)
        candidates = weighted_draws(weights, trials, generator)
        after = torch.minimum(closest[:, :, None], distances(candidates))
        best = torch.argmin(after.sum(dim=1), dim=1, keepdim=True)
        chosen[:, i] = candidates.gather(1, best)[:, 0]
        closest = after.gather(2, best[:, None, :].expand(-1, after.shape[1], 1))[:, :, 0]
    return P[every, chosen]


def batched_lloyd(P: Any, fit: Any, counts: Any, generator: Any, n_iter: int) -> Any:
    """Labels of every row of every group of a batch: k-means++, then at most ``n_iter`` Lloyd steps on the fit
    rows (fewer once no fit label of the batch changes), then every row to its nearest centroid.

    A group whose labels stopped changing keeps its centroids (the means of unchanged labels), so running it on
    with the rest of the batch changes nothing.

    Parameters
    ----------
    P : torch.Tensor of shape (n_batch, width, n_features), float32
    fit : torch.Tensor of shape (n_batch, width), bool
    counts : torch.Tensor of shape (n_batch,), int64
        Clusters of each group (at least 2).
    generator : torch.Generator
    n_iter : int

    Returns
    -------
    torch.Tensor of shape (n_batch, width), int64, values in ``0..counts[b]-1``
    """
    import torch

    k_max = int(counts.max())
    centroids = batched_kmeans_plus_plus(P, fit, k_max, generator)
    missing = torch.arange(k_max, device=P.device)[None, None, :] >= counts[:, None, None]
    weights = fit.to(P.dtype)[:, :, None]

    def assign(centroids: Any) -> Any:
        half_norms = 0.5 * (centroids * centroids).sum(dim=2)
        distance = half_norms[:, None, :] - torch.bmm(P, centroids.transpose(1, 2))
        return distance.masked_fill_(missing, float("inf")).argmin(dim=2)

    labels = assign(centroids)
    for _ in range(n_iter):
        one_hot = torch.nn.functional.one_hot(labels, k_max).to(P.dtype) * weights
        sums = torch.bmm(one_hot.transpose(1, 2), P)
        sizes = one_hot.sum(dim=1)
        centroids = torch.where(sizes[:, :, None] > 0, sums / sizes.clamp(min=1)[:, :, None], centroids)
        new_labels = assign(centroids)
        changed = bool(((new_labels != labels) & fit).any())
        labels = new_labels
        if not changed:
            break
    return labels


def split_groups(
    X: Any,
    groups: Groups,
    counts: np.ndarray,
    *,
    min_size: int,
    max_size: int | None,
    generator: Any,
    n_iter: int,
    max_points_per_centroid: int,
    counters: Counters,
) -> tuple[Groups, np.ndarray]:
    """Split every group g with ``counts[g] > 1`` into about ``counts[g]`` clusters, none below ``min_size``.

    Each split is :func:`harp.hierarchy.band.cluster_group`'s: k-means, then small clusters merged into the
    nearest (preferring targets that stay <= ``max_size``), and a group k-means cannot split cut into
    ``counts[g]`` chunks along its main direction. A group with ``counts[g] <= 1`` stays whole.

    Parameters
    ----------
    X : torch.Tensor of shape (n_points, n_features), float32
    groups : Groups
    counts : ndarray of shape (n_groups,), int
    min_size, max_size : int, int or None
    generator : torch.Generator
    n_iter, max_points_per_centroid : int
    counters : Counters
        Updated: k-means calls and chunked groups.

    Returns
    -------
    pieces : Groups
        The pieces, group after group, each group's in the order of its compact cluster labels.
    piece_group : ndarray of shape (n_pieces,), int64
        The group each piece came from.
    """
    import torch

    device = X.device
    n_groups = groups.sizes.size
    pieces = np.ones(n_groups, dtype=np.int64)
    piece_label = torch.zeros(groups.rows.shape[0], dtype=torch.int64, device=device)
    selected = np.flatnonzero(counts > 1)
    counters.kmeans_calls += int(selected.size)
    row_elements = max(X.shape[1], int(counts.max(initial=1)))
    for batch in batches(groups, selected, row_elements):
        k = torch.from_numpy(counts[batch.groups].astype(np.int64)).to(device)
        P = X[batch.ids]
        fit = fit_mask(batch, k, max_points_per_centroid, generator)
        labels = batched_lloyd(P, fit, k, generator, n_iter)
        compact, kept = _merged_labels(P, batch, labels, int(k.max()), min_size, max_size)
        labels = compact.gather(1, labels)
        for b in np.flatnonzero(kept <= 1):  # k-means could not split the group: equal chunks instead
            counters.chunked_groups += 1
            size, count = int(batch.sizes[b]), int(counts[batch.groups[b]])
            rows = P[b, :size].cpu().numpy()
            chunk = np.empty(size, dtype=np.int64)
            for index, part in enumerate(chunks_along_main_direction(rows, count)):
                chunk[part] = index
            labels[b, :size] = torch.from_numpy(chunk).to(device)
            kept[b] = count
        piece_label[batch.positions[batch.valid]] = labels[batch.valid]
        pieces[batch.groups] = kept
    first_piece = torch.from_numpy(np.cumsum(pieces) - pieces).to(device)
    group_of_row = torch.repeat_interleave(
        torch.arange(n_groups, device=device), torch.from_numpy(groups.sizes).to(device)
    )
    key = first_piece[group_of_row] + piece_label
    order = torch.sort(key, stable=True).indices
    sizes = torch.bincount(key, minlength=int(pieces.sum())).cpu().numpy().astype(np.int64)
    return Groups(rows=groups.rows[order], sizes=sizes), np.repeat(
        np.arange(n_groups, dtype=np.int64), pieces
    )


def _merged_labels(
    P: Any, batch: Batch, labels: Any, k_max: int, min_size: int, max_size: int | None
) -> tuple[Any, np.ndarray]:
    """Compact labels after merging small clusters: a map (n_batch, k_max) from k-means label to compact label,
    and the clusters each group keeps."""
    import torch

    one_hot = torch.nn.functional.one_hot(labels, k_max).to(P.dtype) * batch.valid.to(P.dtype)[:, :, None]
    sizes = one_hot.sum(dim=1).round().to(torch.int64)
    sizes_host = sizes.cpu().numpy()
    alive = sizes_host > 0
    compact = np.where(alive, np.cumsum(alive, axis=1) - 1, -1).astype(np.int64)
    kept = alive.sum(axis=1).astype(np.int64)
    needs_merge = np.flatnonzero((alive & (sizes_host < min_size)).any(axis=1) & (kept > 1))
    if needs_merge.size:
        chosen = torch.from_numpy(needs_merge).to(P.device)
        sums = torch.bmm(one_hot[chosen].transpose(1, 2), P[chosen]).double()
        means = (sums / sizes[chosen].clamp(min=1)[:, :, None]).cpu().numpy()
        for row, b in enumerate(needs_merge):
            compact[b], kept[b] = merge_clusters(means[row], sizes_host[b], min_size, max_size)
    return torch.from_numpy(compact).to(P.device), kept
