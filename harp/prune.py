"""HARP-P: prune the leaves that lower the objective, then spread the budget evenly over the rest.

Notation as in :mod:`harp.select`: leaf g, domain d, effects ``phi[g, d]``, weights ``w_d``. A leaf's *utility
effect* is ``u_g = sum_d w_d phi[g, d] / sum_d w_d``, the change of the weighted mean domain score that HARP-E
predicts when the leaf alone is added (before clipping).

HARP-C and HARP-E rank leaves greedily and take the best ones first, so a budget is spent on the few leaves with
the largest effects. That is right when effects add up. When they were measured inside a mixture (a leaf added
to a random background, the protocols of :mod:`harp.measure`), each effect says only whether the leaf helps *a
random-like mixture*; a selection made of the top leaves alone is no such mixture. HARP-P keeps the selection
random-like and uses the effects for what they can tell: which regions to leave out.

- ``order``: pinned leaves first (in the order given), then the others by ``u_g``, largest first (exact ties: the
  smaller leaf id); excluded leaves are left out. ``gains``: ``u_g`` of each leaf of ``order``.
- ``cut``: the pinned leaves plus every other leaf with ``u_g > 0`` (``min_effect`` moves that threshold), so
  the pruned leaves are exactly those whose predicted effect is not positive.
- ``points``: every point of the kept leaves when they fit the budget; otherwise ``budget`` of them drawn
  uniformly without replacement (``numpy.random.default_rng(seed)``), listed in the order of ``order`` and,
  within a leaf, in member order. So a selection is a random subset of the unpruned part of the pool.
- ``predicted``: ``clip(base + sum_g f_g phi[g])``, where ``f_g`` is the share of leaf g's points taken (a leaf
  half taken contributes half its effect); ``utility`` the weighted mean of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harp._validation import check_selection, is_integer
from harp.objective import utility, weighted_effect
from harp.select import Selection

__all__ = ["prune_select", "utility_effects"]


def utility_effects(phi: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``u_g = sum_d w_d phi[g, d] / sum_d w_d`` for every leaf: shape (n_leaves,)."""
    return weighted_effect(phi, weights)


def prune_select(
    phi: Any,
    base: Any,
    *,
    weights: Any = None,
    members: Any = None,
    budget: int | None = None,
    pinned: Any = None,
    excluded: Any = None,
    seed: int = 0,
    min_effect: float = 0.0,
) -> Selection:
    """Keep the leaves whose utility effect exceeds ``min_effect`` and draw the budget uniformly from them.

    Parameters
    ----------
    phi : array-like of shape (n_leaves, n_domains)
        Effect of each leaf on each domain (posterior means).
    base : array-like of shape (n_domains,)
        Base model score of each domain, in [0, 1].
    weights : array-like of shape (n_domains,), optional
        Non-negative domain weights, not all zero. Default: all ones.
    members : sequence of n_leaves integer arrays, optional
        Point indices of each leaf. Default: leaf g holds the single point g.
    budget : int, optional
        Maximum number of points; None means no cap.
    pinned : sequence of int, optional
        Leaves always kept (their points still take part in the draw).
    excluded : sequence of int, optional
        Leaves never kept; they are left out of ``order``.
    seed : int
        Seed of the uniform draw when the kept points exceed the budget.
    min_effect : float
        A leaf is kept when its utility effect is strictly above this (default 0: every leaf predicted to help).

    Returns
    -------
    Selection
        The fields of :func:`harp.select`'s result, with the meanings in this module's docstring.

    Raises
    ------
    ValueError
        For any malformed input; the message names the argument.
    """
    checked = check_selection(phi, base, weights, members, budget, pinned, excluded)
    phi, base, weights, members_list, budget = (
        checked.phi,
        checked.base,
        checked.weights,
        checked.members,
        checked.budget,
    )
    pinned_ids, excluded_ids = checked.pinned, checked.excluded
    n_leaves = phi.shape[0]
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not np.isfinite(min_effect):
        raise ValueError(f"min_effect must be finite, got {min_effect!r}")

    effect = utility_effects(phi, weights)
    rest = np.setdiff1d(np.arange(n_leaves), np.concatenate([pinned_ids, excluded_ids]))
    rest = rest[np.lexsort((rest, -effect[rest]))]  # largest effect first, ties: smaller id
    order = np.concatenate([pinned_ids, rest]).astype(np.int64)
    gains = effect[order]
    cut = int(pinned_ids.size + np.count_nonzero(effect[rest] > min_effect))

    kept = order[:cut]
    sizes = np.array([members_list[g].size for g in kept], dtype=np.int64)
    total = int(sizes.sum())
    take = np.ones(total, dtype=bool)
    if budget is not None and budget < total:
        take[:] = False
        take[np.random.default_rng(int(seed)).choice(total, size=budget, replace=False)] = True
    all_points = np.concatenate([members_list[g] for g in kept]) if kept.size else np.zeros(0, np.int64)
    all_leaves = np.repeat(kept, sizes)
    points = all_points[take].astype(np.int64)
    point_leaves = all_leaves[take].astype(np.int64)
    taken = np.bincount(np.repeat(np.arange(kept.size), sizes)[take], minlength=kept.size)
    leaves = kept[taken > 0]
    share = np.zeros(n_leaves)
    share[kept] = np.divide(taken, sizes, out=np.zeros(kept.size), where=sizes > 0)
    predicted = np.clip(base + share @ phi, 0.0, 1.0)
    return Selection(
        order=order,
        gains=gains,
        cut=cut,
        leaves=leaves,
        points=points,
        point_leaves=point_leaves,
        predicted=predicted,
        utility=utility(predicted, weights),
        base_utility=utility(base, weights),
    )
