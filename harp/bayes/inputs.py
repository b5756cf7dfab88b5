"""Checks and shapes of the fit's inputs: the tree, and the measurements as (leaf, domain) matrices.

Notation as in :mod:`harp.bayes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_tree(leaf_parent: Any, parent_large: Any) -> tuple[np.ndarray, np.ndarray, int]:
    leaf_parent_array = np.asarray(leaf_parent)
    parent_large_array = np.asarray(parent_large)
    for name, array in (("leaf_parent", leaf_parent_array), ("parent_large", parent_large_array)):
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array of ids, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold integer ids, got dtype {array.dtype}")
        if array.min() < 0:
            raise ValueError(f"{name} must hold ids >= 0, got {int(array.min())}")
    n_parents = parent_large_array.size
    if leaf_parent_array.max() >= n_parents:
        raise ValueError(
            f"leaf_parent holds parent {int(leaf_parent_array.max())} but parent_large has {n_parents} parents"
        )
    n_large = int(parent_large_array.max()) + 1
    return leaf_parent_array.astype(np.int64), parent_large_array.astype(np.int64), n_large


def check_measurements(
    phi_hat: Any, variance: Any, n_leaves: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        phi = np.array(phi_hat, dtype=np.float64)
        var = np.array(variance, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"phi_hat and variance must be arrays of numbers: {error}") from None
    if phi.ndim != 2:
        raise ValueError(
            f"phi_hat must be 2-D (leaves x domains, NaN where not measured), got shape {phi.shape}"
        )
    if phi.shape[0] != n_leaves:
        raise ValueError(f"phi_hat has {phi.shape[0]} rows but leaf_parent has {n_leaves} leaves")
    if phi.shape[1] == 0:
        raise ValueError("phi_hat must have at least one domain column")
    if var.shape != phi.shape:
        raise ValueError(f"variance has shape {var.shape}, expected {phi.shape} like phi_hat")
    if np.isinf(phi).any():
        where = tuple(int(i) for i in np.argwhere(np.isinf(phi))[0])
        raise ValueError(f"phi_hat must be finite or NaN (not measured), found {phi[where]} at {where}")
    measured = ~np.isnan(phi)
    bad = measured & ~np.isfinite(var)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"variance must be finite where phi_hat is measured, found {var[where]} at {where}")
    negative = measured & (var < 0)
    if negative.any():
        where = tuple(int(i) for i in np.argwhere(negative)[0])
        raise ValueError(f"variance must be >= 0, found {var[where]} at {where}")
    return phi, np.where(measured, var, np.nan), measured


def measurement_matrix(
    leaf_id: Any, domain_id: Any, phi: Any, variance: Any, n_leaves: int, n_domains: int
) -> tuple[np.ndarray, np.ndarray]:
    """Long-format measurements as the ``(phi_hat, variance)`` matrices :func:`fit_effects` takes.

    Parameters
    ----------
    leaf_id, domain_id : array-like of int, shape (n_rows,)
    phi, variance : array-like of float, shape (n_rows,)
    n_leaves, n_domains : int

    Returns
    -------
    phi_hat, variance : ndarray of shape (n_leaves, n_domains), NaN where not measured

    Raises
    ------
    ValueError
        Ids out of range, or one (leaf, domain) measured twice.
    """
    leaves = np.asarray(leaf_id, dtype=np.int64).ravel()
    domains = np.asarray(domain_id, dtype=np.int64).ravel()
    values = np.asarray(phi, dtype=np.float64).ravel()
    variances = np.asarray(variance, dtype=np.float64).ravel()
    if not leaves.size == domains.size == values.size == variances.size:
        raise ValueError(
            f"leaf_id, domain_id, phi and variance must have one entry per row, got {leaves.size}, "
            f"{domains.size}, {values.size}, {variances.size}"
        )
    if leaves.size and (leaves.min() < 0 or leaves.max() >= n_leaves):
        raise ValueError(
            f"leaf_id must lie in 0..{n_leaves - 1}, got {int(leaves[(leaves < 0) | (leaves >= n_leaves)][0])}"
        )
    if domains.size and (domains.min() < 0 or domains.max() >= n_domains):
        raise ValueError(
            f"domain_id must lie in 0..{n_domains - 1}, got {int(domains[(domains < 0) | (domains >= n_domains)][0])}"
        )
    flat = leaves * n_domains + domains
    unique, counts = np.unique(flat, return_counts=True)
    if (counts > 1).any():
        twice = int(unique[np.argmax(counts > 1)])
        raise ValueError(f"leaf {twice // n_domains} is measured twice on domain {twice % n_domains}")
    phi_hat = np.full((n_leaves, n_domains), np.nan)
    var = np.full((n_leaves, n_domains), np.nan)
    phi_hat[leaves, domains] = values
    var[leaves, domains] = variances
    return phi_hat, var


def table_matrix(rows: Any, n_leaves: int, n_domains: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`measurement_matrix` of a table with the store's ``measurements`` columns (``leaf_id``,
    ``domain_id``, ``phi``, ``variance``; a pyarrow Table, already filtered to one configuration)."""
    return measurement_matrix(
        np.asarray(rows["leaf_id"].to_numpy()),
        np.asarray(rows["domain_id"].to_numpy()),
        np.asarray(rows["phi"].to_numpy()),
        np.asarray(rows["variance"].to_numpy()),
        n_leaves,
        n_domains,
    )
