"""The torch backend's tree: every level built with the features held once on the torch device.

The three levels are those of :func:`harp.hierarchy.build_hierarchy` (large nodes, parents, leaves, the same
counts and the same size band), but a level is not a loop of one k-means per node: the large level is one fit
(:func:`harp.hierarchy.torch_kmeans.lloyd_kmeans`), and the parents of all large nodes, then the leaves of all
parents, are fitted together by :func:`harp.hierarchy.batched.split_groups`. An oversized leaf is split again in
a further round, as the one-at-a-time path recurses. The order of the members of each leaf (most central first,
ties by point index) is computed on the device too, in float64, one padded batch of leaves at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harp.hierarchy.arrays import node_seed
from harp.hierarchy.band import Counters, merge_clusters, target_count, target_counts
from harp.hierarchy.batched import BATCH_ELEMENTS, Groups, batches, split_groups
from harp.hierarchy.torch_kmeans import assign_nearest, cluster_sums, lloyd_kmeans
from harp.hierarchy.tree import Levels


def build_on_device(
    X: Any,
    *,
    leaf_size: int,
    leaves_per_parent: int,
    parents_per_large: int,
    min_leaf: int,
    max_leaf: int,
    seed: int,
    n_iter: int,
    max_points_per_centroid: int,
    counters: Counters,
    timings: dict[str, float],
    say: Callable[[str], None],
    engine_name: str,
) -> Levels:
    """Build the three levels and the in-leaf order of the features X, held on a torch device.

    Parameters
    ----------
    X : torch.Tensor of shape (n_points, n_features), float32
    leaf_size, leaves_per_parent, parents_per_large, min_leaf, max_leaf, seed, n_iter, max_points_per_centroid
        As :func:`harp.hierarchy.build_hierarchy` takes them, checked.
    counters : Counters
        Updated: k-means calls, chunked groups, pools below the band.
    timings : dict
        Seconds of the stages "large", "parents", "leaves" and "order" are added.
    say : callable
        Progress messages.
    engine_name : str
        For the progress messages.
    """
    import torch

    n_points = X.shape[0]

    def split(
        groups: Groups, counts: np.ndarray, max_size: int | None, *path: int
    ) -> tuple[Groups, np.ndarray]:
        return split_groups(
            X,
            groups,
            counts,
            min_size=min_leaf,
            max_size=max_size,
            generator=_generator(X, seed, *path),
            n_iter=n_iter,
            max_points_per_centroid=max_points_per_centroid,
            counters=counters,
        )

    tick = time.perf_counter()
    large_count = target_count(n_points, leaf_size * leaves_per_parent * parents_per_large, min_leaf, None)
    say(f"large nodes: k-means of {n_points} points into {large_count} ({engine_name})")
    large = _large_nodes(X, large_count, seed, n_iter, max_points_per_centroid, min_leaf, counters)
    timings["large"] = time.perf_counter() - tick

    tick = time.perf_counter()
    parent_target = leaf_size * leaves_per_parent
    counts = target_counts(large.sizes, parent_target, min_leaf, None)
    parents, parent_large = split(large, counts, None, 2)
    say(f"parents: {parents.sizes.size} in {large.sizes.size} large nodes")
    timings["parents"] = time.perf_counter() - tick

    tick = time.perf_counter()
    counts = np.where(
        parents.sizes < min_leaf, 1, target_counts(parents.sizes, leaf_size, min_leaf, max_leaf)
    )
    counters.small_leaves += int((parents.sizes < min_leaf).sum())
    leaves, leaf_parent = split(parents, counts, max_leaf, 3, 0)
    rounds = 1
    while (leaves.sizes > max_leaf).any():  # oversized leaves are split again; every split makes them smaller
        big = leaves.sizes > max_leaf
        counts = np.where(big, target_counts(leaves.sizes, leaf_size, min_leaf, max_leaf), 1)
        leaves, piece_leaf = split(leaves, counts, max_leaf, 3, rounds)
        leaf_parent = leaf_parent[piece_leaf]
        rounds += 1
    say(f"leaves: {leaves.sizes.size} in {parents.sizes.size} parents")
    timings["leaves"] = time.perf_counter() - tick

    tick = time.perf_counter()
    order, rank_in_leaf, leaf_means = _order_members(X, leaves)
    point_leaf = torch.empty(n_points, dtype=torch.int64, device=X.device)
    point_leaf[leaves.rows] = torch.repeat_interleave(
        torch.arange(leaves.sizes.size, device=X.device), torch.from_numpy(leaves.sizes).to(X.device)
    )
    tree = Levels(
        point_leaf=point_leaf.cpu().numpy(),
        leaf_parent=leaf_parent,
        parent_large=parent_large,
        n_large=int(large.sizes.size),
        leaf_sizes=leaves.sizes,
        leaf_means=leaf_means,
        order=order,
        rank_in_leaf=rank_in_leaf,
    )
    timings["order"] = time.perf_counter() - tick
    return tree


def _generator(X: Any, seed: int, *path: int) -> Any:
    import torch

    generator = torch.Generator(device=X.device)
    generator.manual_seed(node_seed(seed, *path))
    return generator


def _large_nodes(
    X: Any,
    count: int,
    seed: int,
    n_iter: int,
    max_points_per_centroid: int,
    min_leaf: int,
    counters: Counters,
) -> Groups:
    """The large nodes: one k-means of all points (fitted on a subsample), then small clusters merged."""
    import torch

    n_points = X.shape[0]
    if count <= 1:
        return Groups(
            rows=torch.arange(n_points, device=X.device), sizes=np.array([n_points], dtype=np.int64)
        )
    counters.kmeans_calls += 1
    generator = _generator(X, seed, 1)
    limit = max_points_per_centroid * count
    if n_points > limit:
        sample = torch.randperm(n_points, generator=generator, device=X.device)[:limit].sort().values
        fit = X[sample]
    else:
        fit = X
    labels = assign_nearest(X, lloyd_kmeans(fit, count, generator, n_iter))
    sums, sizes = cluster_sums(X, labels, count)
    means = sums / sizes.clamp(min=1)[:, None]
    compact, n_large = merge_clusters(means.cpu().numpy(), sizes.cpu().numpy(), min_leaf)
    labels = torch.from_numpy(compact).to(X.device)[labels]
    order = torch.sort(labels, stable=True).indices
    sizes_host = torch.bincount(labels, minlength=n_large).cpu().numpy().astype(np.int64)
    return Groups(rows=order, sizes=sizes_host)


def _order_members(X: Any, leaves: Groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members of every leaf by squared distance (float64) to the leaf's mean, ties by point id; the ranks; and
    the leaf means."""
    import torch

    n_points, n_features = X.shape
    order = torch.empty(n_points, dtype=torch.int64, device=X.device)
    rank = torch.empty(n_points, dtype=torch.int64, device=X.device)
    means = torch.empty((leaves.sizes.size, n_features), dtype=torch.float64, device=X.device)
    # float64 temporaries are twice as wide as the float32 batch.
    for batch in batches(leaves, np.arange(leaves.sizes.size), 2 * n_features, BATCH_ELEMENTS):
        P = X[batch.ids].double()
        P = P * batch.valid[:, :, None]  # padding entries add nothing to the sums
        leaf_means = P.sum(dim=1) / batch.sizes[:, None]
        distance = ((P - leaf_means[:, None, :]) ** 2).sum(dim=2).masked_fill_(~batch.valid, float("inf"))
        ranked = torch.sort(distance, dim=1, stable=True).indices
        ids = batch.ids.gather(1, ranked)
        order[batch.positions[batch.valid]] = ids[batch.valid]
        positions = torch.arange(ids.shape[1], device=X.device).expand_as(ids)
        rank[ids[batch.valid]] = positions[batch.valid]
        means[torch.from_numpy(batch.groups).to(X.device)] = leaf_means
    return order.cpu().numpy(), rank.cpu().numpy(), means.cpu().numpy()
