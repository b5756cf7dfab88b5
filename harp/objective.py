"""The selection objective's shared rules: which domains count, and by how much, when the user says nothing.

Notation as in :mod:`harp.select`: domain d, weights ``w_d >= 0``, active flags from :func:`harp.bayes.active_domains`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["default_weights"]


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
