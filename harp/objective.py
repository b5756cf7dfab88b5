"""The selection objective's shared rules: which domains count, and by how much, when the user says nothing, and
what a leaf, or a set of predicted scores, is worth to the weighted objective.

Notation as in :mod:`harp.select`: leaf g, domain d, effects ``phi[g, d]``, weights ``w_d >= 0``, active flags from
:func:`harp.bayes.active_domains`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["default_weights", "utility", "weighted_effect"]


def default_weights(active: np.ndarray) -> np.ndarray:
    """Active domains weigh 1, inactive 0; if no domain is active, every domain weighs 1.

    Parameters
    ----------
    active : array-like of bool, shape (n_domains,)

    Returns
    -------
    ndarray of float64, shape (n_domains,)
    """
    weights = np.asarray(active, dtype=np.float64)
    return weights if weights.any() else np.ones_like(weights)


def weighted_effect(phi: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each leaf's effect on the weighted objective: ``u_g = sum_d w_d phi[g, d] / sum_d w_d``.

    Parameters
    ----------
    phi : ndarray of shape (n_leaves, n_domains)
    weights : ndarray of shape (n_domains,)
        Non-negative and not all zero (the caller checks: the sum divides).

    Returns
    -------
    ndarray of float64, shape (n_leaves,)
    """
    return phi @ weights / weights.sum()


def utility(scores: np.ndarray, weights: np.ndarray) -> float:
    """The weighted objective of one score per domain: ``U = sum_d w_d s_d / sum_d w_d``.

    ``U(S)`` of a selection when ``scores`` are its predicted scores, the base utility when they are the base
    scores, the weighted gain when they are effects. The expression is :func:`weighted_effect`'s for one row,
    so the two agree bitwise.

    Parameters
    ----------
    scores : ndarray of shape (n_domains,)
    weights : ndarray of shape (n_domains,)
        Non-negative and not all zero (the caller checks: the sum divides).

    Returns
    -------
    float
    """
    return float(np.dot(weights, scores) / weights.sum())
