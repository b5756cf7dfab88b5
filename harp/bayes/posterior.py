"""The exact posterior of every leaf's effect on the tree, for fixed variances or integrated over a grid.

The model is written out in :mod:`harp.bayes`. Assumes checked input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harp.bayes.reml import LARGE, LEAF, PARENT, Design, expand, reml

_INTEGRATION_DROP = 8.0  # log-likelihood units: the grid covers about +-4 sd of each variance's posterior


_INTEGRATION_POINTS = {1: 25, 2: 13, 3: 9}  # grid points per axis, by the number of estimated blocks


def posterior(
    y: np.ndarray,
    v: np.ndarray,
    measured_leaves: np.ndarray,
    leaf_parent: np.ndarray,
    parent_large: np.ndarray,
    n_large: int,
    tau2: np.ndarray,
) -> dict[str, np.ndarray | float]:
    """Posterior means and sds of every leaf, parent, large node and mu (belief propagation on the tree).

    Each node passes up the precision ``W`` and precision-weighted sum ``S`` of what its subtree says about its
    own value; the message to its parent is ``(W, S) / (1 + W tau^2)``. Going down, a child's prior is its
    parent's posterior without the child's own message (the cavity), widened by the child's level variance.
    """
    n_leaves, n_parents = leaf_parent.size, parent_large.size
    t_leaf, t_parent, t_large = float(tau2[LEAF]), float(tau2[PARENT]), float(tau2[LARGE])
    leaf_w = np.zeros(n_leaves)
    leaf_s = np.zeros(n_leaves)
    leaf_w[measured_leaves] = 1.0 / v
    leaf_s[measured_leaves] = y / v
    # Upward.
    leaf_lambda = leaf_w / (1.0 + leaf_w * t_leaf)
    leaf_lambda_m = leaf_s / (1.0 + leaf_w * t_leaf)
    parent_w = np.bincount(leaf_parent, weights=leaf_lambda, minlength=n_parents)
    parent_s = np.bincount(leaf_parent, weights=leaf_lambda_m, minlength=n_parents)
    parent_lambda = parent_w / (1.0 + parent_w * t_parent)
    parent_lambda_m = parent_s / (1.0 + parent_w * t_parent)
    large_w = np.bincount(parent_large, weights=parent_lambda, minlength=n_large)
    large_s = np.bincount(parent_large, weights=parent_lambda_m, minlength=n_large)
    large_lambda = large_w / (1.0 + large_w * t_large)
    large_lambda_m = large_s / (1.0 + large_w * t_large)
    root_w = float(large_lambda.sum())
    root_s = float(large_lambda_m.sum())

    def down(
        up_w: np.ndarray,
        up_s: np.ndarray,
        prior_pi: np.ndarray,
        prior_pim: np.ndarray,
        child_lambda: np.ndarray,
        child_lambda_m: np.ndarray,
        child_group: np.ndarray,
        tau2_child: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        cavity = np.maximum(prior_pi[child_group] + (up_w[child_group] - child_lambda), 0.0)
        cavity_sum = prior_pim[child_group] + (up_s[child_group] - child_lambda_m)
        pi = cavity / (1.0 + cavity * tau2_child)
        return pi, cavity_sum / (1.0 + cavity * tau2_child)

    root_pi = np.zeros(1)
    root_pim = np.zeros(1)
    large_pi, large_pim = down(
        np.array([root_w]), np.array([root_s]), root_pi, root_pim, large_lambda, large_lambda_m,
        np.zeros(n_large, dtype=np.int64), t_large,
    )  # fmt: skip
    parent_pi, parent_pim = down(
        large_w, large_s, large_pi, large_pim, parent_lambda, parent_lambda_m, parent_large, t_parent
    )
    leaf_pi, leaf_pim = down(
        parent_w, parent_s, parent_pi, parent_pim, leaf_lambda, leaf_lambda_m, leaf_parent, t_leaf
    )

    def moments(
        pi: np.ndarray, pim: np.ndarray, w: np.ndarray, s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        precision = pi + w
        return (pim + s) / precision, 1.0 / np.sqrt(precision)

    leaf_mean, leaf_sd = moments(leaf_pi, leaf_pim, leaf_w, leaf_s)
    parent_mean, parent_sd = moments(parent_pi, parent_pim, parent_w, parent_s)
    large_mean, large_sd = moments(large_pi, large_pim, large_w, large_s)
    return {
        "leaf_mean": leaf_mean,
        "leaf_sd": leaf_sd,
        "parent_mean": parent_mean,
        "parent_sd": parent_sd,
        "large_mean": large_mean,
        "large_sd": large_sd,
        "mu": root_s / root_w,
        "mu_sd": 1.0 / math.sqrt(root_w),
    }


def variance_grid(
    y: np.ndarray,
    v: np.ndarray,
    design: Design,
    blocks: list[list[int]],
    fixed: np.ndarray,
    tau2_hat: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Grid over the block sds around the REML estimate and the posterior weight of each point.

    The prior is uniform on each block's sd and flat on mu, so the posterior of the sds is proportional to the
    REML likelihood. Along each axis (the others at the estimate) the grid spans the sds whose log-likelihood
    is within ``_INTEGRATION_DROP`` of the maximum, capped at 10 times the spread of the measurements.
    """
    scale = math.sqrt(max(float(np.var(y)) + float(np.mean(v)), 1e-12))
    s_hat = np.array([math.sqrt(float(tau2_hat[block].sum())) for block in blocks])
    best = float(reml(y, v, design, tau2_hat[None, :])[0])
    axes = []
    for column in range(len(blocks)):
        unit = max(s_hat[column], 0.05 * scale)
        steps = unit * 2.0 ** np.arange(-6, 9)
        upper = np.minimum(s_hat[column] + steps, 10.0 * scale)
        lower = np.maximum(s_hat[column] - steps, 0.0)
        trial = np.repeat(s_hat[None, :], 2 * steps.size, axis=0)
        trial[:, column] = np.r_[upper, lower]
        values = reml(y, v, design, expand(trial**2, blocks, fixed))
        low_enough = values < best - _INTEGRATION_DROP
        above, below = low_enough[: steps.size], low_enough[steps.size :]
        high = upper[np.argmax(above)] if above.any() else upper[-1]
        low = lower[np.argmax(below)] if below.any() else 0.0
        axes.append(np.linspace(low, high, _INTEGRATION_POINTS[len(blocks)]))
    mesh = np.stack([axis.ravel() for axis in np.meshgrid(*axes, indexing="ij")], axis=1)
    values = reml(y, v, design, expand(mesh**2, blocks, fixed))
    weights = np.exp(values - values.max())
    order = np.argsort(-weights, kind="stable")
    kept = order[: int(np.searchsorted(np.cumsum(weights[order]) / weights.sum(), 0.999)) + 1]
    return expand(mesh[kept] ** 2, blocks, fixed), weights[kept] / weights[kept].sum()


def mixture(posteriors: list[dict[str, Any]], weights: np.ndarray) -> dict[str, Any]:
    """Mean and sd of a mixture of Gaussian posteriors (law of total variance)."""
    out: dict[str, Any] = {}
    for level in ("leaf", "parent", "large", "mu"):
        mean_key, sd_key = (f"{level}_mean", f"{level}_sd") if level != "mu" else ("mu", "mu_sd")
        means = np.array([np.asarray(post[mean_key], dtype=np.float64) for post in posteriors])
        sds = np.array([np.asarray(post[sd_key], dtype=np.float64) for post in posteriors])
        shape = (-1,) + (1,) * (means.ndim - 1)
        first = (weights.reshape(shape) * means).sum(axis=0)
        second = (weights.reshape(shape) * (sds**2 + (means - first) ** 2)).sum(axis=0)
        out[mean_key], out[sd_key] = first, np.sqrt(second)
    return out
