"""Building a whole store from the arrays another HARP run produced (:func:`load_arrays`, ``harp load``).

Shapes are checked against each other before anything is written, with messages that name the file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_base_range, check_finite

if TYPE_CHECKING:
    from harp.store import Store

from harp.load.files import (
    PathLike,
    PointTexts,
    file_label,
    id_array,
    load_npy,
    load_vector,
    read_names,
    read_point_texts,
)


@dataclass(frozen=True)
class _Loaded:
    phi: np.ndarray
    sd: np.ndarray
    measured: np.ndarray
    point_leaf: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    base: np.ndarray
    names: list[str]
    texts: PointTexts | None
    X: np.ndarray | None


def _check_inputs(
    phi: Any,
    leaf_of_point: Any,
    parent_of_leaf: Any,
    base: Any,
    domain_names: Any,
    phi_sd: Any,
    large_of_parent: Any,
    measured: Any,
    texts: Any,
    X_feat: Any,
) -> _Loaded:
    phi_array = load_npy(phi, "phi")
    phi_label = file_label(phi, "phi")
    if phi_array.ndim != 2 or 0 in phi_array.shape:
        raise ValueError(
            f"{phi_label} must be 2-D (leaves x domains) and non-empty, got shape {phi_array.shape}"
        )
    phi_array = _finite(phi_array, phi_label)
    n_leaves, n_domains = phi_array.shape
    point_leaf = id_array(leaf_of_point, "leaf_of_point")
    if point_leaf.max() + 1 != n_leaves:
        raise ValueError(
            f"{file_label(leaf_of_point, 'leaf_of_point')} uses {point_leaf.max() + 1} leaves but {phi_label} has "
            f"{n_leaves} rows"
        )
    leaf_parent = id_array(parent_of_leaf, "parent_of_leaf", n_leaves, f"leaves (rows of {phi_label})")
    n_parents = int(leaf_parent.max()) + 1
    if large_of_parent is None:
        parent_large = None
    else:
        parent_large = id_array(
            large_of_parent,
            "large_of_parent",
            n_parents,
            f"parents (used by {file_label(parent_of_leaf, 'parent_of_leaf')})",
        )
    base_array = _finite(load_vector(base, "base").astype(np.float64, copy=False), file_label(base, "base"))
    base_label = file_label(base, "base")
    if base_array.ndim != 1 or base_array.size != n_domains:
        raise ValueError(
            f"{base_label} has shape {base_array.shape} but {phi_label} has {n_domains} domains (columns)"
        )
    check_base_range(base_array, label=base_label)
    names = read_names(domain_names)
    names_label = file_label(domain_names, "domain_names")
    if len(names) != n_domains:
        raise ValueError(
            f"{names_label} has {len(names)} names but {phi_label} has {n_domains} domains (columns)"
        )
    if phi_sd is None:
        sd = np.zeros_like(phi_array)
    else:
        sd = _finite(load_npy(phi_sd, "phi_sd").astype(np.float64, copy=False), file_label(phi_sd, "phi_sd"))
        if sd.shape != phi_array.shape:
            raise ValueError(
                f"{file_label(phi_sd, 'phi_sd')} has shape {sd.shape} but {phi_label} has {phi_array.shape}"
            )
        if (sd < 0).any():
            raise ValueError(f"{file_label(phi_sd, 'phi_sd')} must be >= 0, got {sd.min()}")
    measured_mask = _measured(measured, n_leaves, n_domains)
    n_points = point_leaf.size
    text_list = None
    if texts is not None:
        text_list = read_point_texts(texts)
        if len(text_list) != n_points:
            raise ValueError(
                f"{file_label(texts, 'texts')} has {len(text_list)} texts but "
                f"{file_label(leaf_of_point, 'leaf_of_point')} has {n_points} points"
            )
    X = None
    if X_feat is not None:
        X = load_npy(X_feat, "X_feat", mmap=True)
        if X.ndim != 2 or X.shape[0] != n_points:
            raise ValueError(
                f"{file_label(X_feat, 'X_feat')} has shape {X.shape}; expected {n_points} rows, one per point of "
                f"{file_label(leaf_of_point, 'leaf_of_point')}"
            )
    return _Loaded(
        phi=phi_array.astype(np.float64),
        sd=sd,
        measured=measured_mask,
        point_leaf=point_leaf,
        leaf_parent=leaf_parent,
        parent_large=parent_large if parent_large is not None else np.zeros(0, dtype=np.int64),
        base=base_array,
        names=names,
        texts=text_list,
        X=X,
    )


def _finite(array: np.ndarray, label: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise ValueError(f"{label} must hold numbers, got dtype {array.dtype}")
    check_finite(array, label)
    return array


def _measured(value: Any, n_leaves: int, n_domains: int) -> np.ndarray:
    """Measured flags (L, D) from None, a bool mask of shape (L,) or (L, D), or leaf ids (ints)."""
    if value is None:
        return np.zeros((n_leaves, n_domains), dtype=bool)
    label = file_label(value, "measured")
    array = load_vector(value, "measured") if isinstance(value, str | os.PathLike) else np.asarray(value)
    if array.dtype == bool:
        if array.shape == (n_leaves,):
            return np.repeat(array[:, None], n_domains, axis=1)
        if array.shape == (n_leaves, n_domains):
            return array.copy()
        raise ValueError(
            f"{label} is a mask of shape {array.shape}; expected ({n_leaves},) or ({n_leaves}, {n_domains})"
        )
    if array.size == 0:
        return np.zeros((n_leaves, n_domains), dtype=bool)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{label} must be a boolean mask or a 1-D list of integer leaf ids, got {array.dtype} {array.shape}"
        )
    if array.min() < 0 or array.max() >= n_leaves:
        raise ValueError(
            f"{label} holds leaf {int(array[(array < 0) | (array >= n_leaves)][0])}, outside 0..{n_leaves - 1}"
        )
    mask = np.zeros((n_leaves, n_domains), dtype=bool)
    mask[array.astype(np.int64)] = True
    return mask


def load_arrays(
    store_path: PathLike,
    *,
    phi: Any,
    leaf_of_point: Any,
    parent_of_leaf: Any,
    base: Any,
    domain_names: Any,
    phi_sd: Any = None,
    large_of_parent: Any = None,
    measured: Any = None,
    texts: Any = None,
    X_feat: Any = None,
    parents_per_large: int = 8,
    threshold: float = 1.645,
    layout_method: str = "auto",
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Store:
    """Build a store from the arrays another HARP run produced.

    Every input may be an array or a path. All shapes are checked against each other before the store is
    written; the store is built under a temporary name and renamed into place.

    Parameters
    ----------
    store_path : str or Path
        The store to create; an existing file is replaced only with ``overwrite``.
    phi : array-like or .npy, shape (n_leaves, n_domains)
        Effect of each leaf g on each domain d (posterior mean, or measured value).
    leaf_of_point : array-like or .npy of int, shape (n_points,)
        Leaf of each point; point ids are 0..N-1. Leaf ids contiguous, none empty.
    parent_of_leaf : array-like or .npy of int, shape (n_leaves,)
        Parent of each leaf; contiguous ids, none empty.
    base : array-like, .npy, .json or .txt, shape (n_domains,)
        Base-model score ``b_d`` of each domain, in [0, 1].
    domain_names : list of str, .json list or .txt (one a line), length n_domains
    phi_sd : array-like or .npy, shape (n_leaves, n_domains), optional
        Posterior sd of ``phi``; 0 when unknown.
    large_of_parent : array-like or .npy of int, shape (n_parents,), optional
        Large node of each parent. When missing: k-means of the parent centroids into about
        ``n_parents / parents_per_large`` large nodes when ``X_feat`` is given, else a single large node.
    measured : bool mask (n_leaves,) or (n_leaves, n_domains), or int leaf ids, or a file of either, optional
        Which leaves were measured (none by default).
    texts : list, .jsonl, .parquet or .txt, optional
        One text per point, kept for the app; a training pool file (records with ``prompt`` and ``response``,
        or chat ``messages``, and ``source``) gives prompt, response and source apart (:func:`read_point_texts`).
    X_feat : array-like or .npy, shape (n_points, n_features), optional
        Features: members are ordered by distance to their leaf centroid (else by point id) and the layout is
        made from the leaf centroids (else from the rows of ``phi``, standardised per domain).
    parents_per_large : int, default 8
    threshold : float, default 1.645
        Active-domain threshold (see :func:`harp.bayes.active_domains`).
    layout_method : {"auto", "umap", "pca"}, default "auto"
    seed : int, default 0
    overwrite : bool, default False
    progress : callable, optional

    Returns
    -------
    harp.Store

    Raises
    ------
    ValueError
        Naming the file (or argument) and what disagrees.
    StoreError
        ``store_path`` exists and ``overwrite`` is False.
    """
    from harp.bayes import active_domains
    from harp.hierarchy import group_means, kmeans_labels
    from harp.layout import compute_layout, point_positions
    from harp.store import Store, points_from_members
    from harp.store.files import check_target, publish, remove_quietly, temporary_beside

    say = progress or (lambda message: None)
    started = time.perf_counter()
    target = Path(store_path)
    check_target(target, overwrite)  # first removes what killed earlier writes to target left beside it
    data = _check_inputs(
        phi,
        leaf_of_point,
        parent_of_leaf,
        base,
        domain_names,
        phi_sd,
        large_of_parent,
        measured,
        texts,
        X_feat,
    )
    n_leaves, n_domains = data.phi.shape
    n_points = data.point_leaf.size
    n_parents = int(data.leaf_parent.max()) + 1
    say(f"loaded {n_points} points, {n_leaves} leaves, {n_parents} parents, {n_domains} domains")

    leaf_means = None
    if data.X is not None:
        leaf_means, _ = group_means(np.asarray(data.X), data.point_leaf, n_leaves)
    parent_large = data.parent_large
    if parent_large.size == 0:
        n_large = max(1, round(n_parents / max(1, parents_per_large)))
        if leaf_means is not None and n_large > 1:
            weights = np.bincount(data.point_leaf, minlength=n_leaves).astype(np.float64)
            parent_sums = np.zeros((n_parents, leaf_means.shape[1]))
            np.add.at(parent_sums, data.leaf_parent, leaf_means * weights[:, None])
            parent_means = parent_sums / np.bincount(data.leaf_parent, weights=weights)[:, None]
            parent_large = kmeans_labels(parent_means, n_large, seed=seed)
            say(f"grouped {n_parents} parents into {int(parent_large.max()) + 1} large nodes by k-means")
        else:
            parent_large = np.zeros(n_parents, dtype=np.int64)

    # Members in rank order: by distance to the leaf centroid when features are known, else by point id.
    if leaf_means is not None and data.X is not None:
        distance = np.empty(n_points)
        for start in range(0, n_points, 65536):
            stop = min(start + 65536, n_points)
            diff = np.asarray(data.X[start:stop], dtype=np.float64) - leaf_means[data.point_leaf[start:stop]]
            distance[start:stop] = np.einsum("ij,ij->i", diff, diff)
        order: np.ndarray = np.lexsort((np.arange(n_points), distance, data.point_leaf))
    else:
        order = np.argsort(data.point_leaf, kind="stable")
    sizes = np.bincount(data.point_leaf, minlength=n_leaves)
    members = np.split(order.astype(np.int64), np.cumsum(sizes)[:-1])

    def per_point(values: list[str | None] | None) -> list[str | None] | None:
        return None if values is None else [values[int(i)] for i in order]

    texts_of = data.texts or PointTexts([])

    active = active_domains(data.phi, data.sd, data.base, threshold)
    if leaf_means is not None:
        layout = compute_layout(leaf_means, method=layout_method, seed=seed)  # type: ignore[arg-type]
    else:
        spread = data.phi.std(axis=0)
        profile = (data.phi - data.phi.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        layout = compute_layout(profile, method=layout_method, metric="euclidean", seed=seed)  # type: ignore[arg-type]
    say(f"layout: {layout.method} of the {'leaf centroids' if leaf_means is not None else 'rows of phi'}")
    positions = None
    if data.X is not None:  # with features, every example's place on the map around its leaf
        point_id = np.arange(n_points, dtype=np.int64)
        positions = (
            point_id,
            *point_positions(data.X, point_id, data.point_leaf, layout.x, layout.y, seed=seed),
        )

    temporary = temporary_beside(target, "load")
    try:
        store = Store.create(temporary)
        store.write_tree(
            points_from_members(
                members,
                text=per_point(data.texts.texts) if data.texts is not None else None,
                source=per_point(texts_of.sources),
                response=per_point(texts_of.responses),
            ),
            data.leaf_parent,
            parent_large,
            int(parent_large.max()) + 1,
        )
        store.write_domains(data.names, data.base, active=active)
        store.write_effects(data.phi, data.sd, data.measured)
        store.write_layout(layout.x, layout.y, layout.key, point_positions=positions)
        run_id = store.add_run(
            "load",
            {
                "inputs": {
                    name: str(value)
                    if isinstance(value, str | os.PathLike)
                    else ("array" if value is not None else None)
                    for name, value in (
                        ("phi", phi),
                        ("phi_sd", phi_sd),
                        ("leaf_of_point", leaf_of_point),
                        ("parent_of_leaf", parent_of_leaf),
                        ("large_of_parent", large_of_parent),
                        ("base", base),
                        ("domain_names", domain_names),
                        ("measured", measured),
                        ("texts", texts),
                        ("X_feat", X_feat),
                    )
                },  # fmt: skip
                "threshold": threshold,
                "layout_key": layout.key,
                "seed": seed,
            },
        )
        store.finish_run(run_id, timings={"total": time.perf_counter() - started})
        publish(temporary, target, overwrite=overwrite)
    finally:
        remove_quietly(temporary)
    say(f"wrote {target} in {time.perf_counter() - started:.1f} s")
    return Store.open(target)
