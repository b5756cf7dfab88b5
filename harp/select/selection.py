"""The public selection API: :func:`select`, its result :class:`Selection`, budgets and cuts.

Notation and semantics as in :mod:`harp.select`. Everything here validates its input once and calls the
compiled greedy of :mod:`harp.select.harp_c` or :mod:`harp.select.harp_e`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harp._validation import (
    check_base,
    check_budget,
    check_envelope,
    check_matrix,
    check_members,
    check_selection,
    check_weights,
)
from harp.objective import utility
from harp.select.harp_c import greedy_c, sort_by_domain
from harp.select.harp_e import greedy_e


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select`.

    Attributes
    ----------
    order : ndarray of shape (n_ranked,)
        Leaf ids in greedy order: pinned leaves first (in the order given), excluded leaves omitted.
    gains : ndarray of shape (n_ranked,)
        Marginal gain ``U(S + g) - U(S)`` of each leaf of ``order`` when it was added.
    cut : int
        Length of the best prefix of ``order`` (never shorter than the pinned leaves).
    leaves : ndarray of shape (n_selected,)
        Leaves of ``order[:cut]`` that still contribute a point after the budget.
    points : ndarray of shape (n_points,)
        Chosen point indices, in selection order.
    point_leaves : ndarray of shape (n_points,)
        The leaf of each chosen point.
    predicted : ndarray of shape (n_domains,)
        ``yhat(leaves)`` for each domain.
    utility : float
        ``U(leaves)``.
    base_utility : float
        ``U`` of the empty set, the weighted mean base score.
    """

    order: np.ndarray
    gains: np.ndarray
    cut: int
    leaves: np.ndarray
    points: np.ndarray
    point_leaves: np.ndarray
    predicted: np.ndarray
    utility: float
    base_utility: float


@dataclass(frozen=True)
class SortedEffects:
    """Each domain's effects sorted, the part of HARP-C's work that no weight, pin or budget changes.

    Made by :func:`sort_effects` once per ``phi`` and passed to :func:`select` as ``sorted_effects``, so that a
    weight change reruns only the greedy (the sort is about a sixth of HARP-C's time at 10,000 x 64). HARP-E
    has nothing this costly to keep and ignores it.

    Attributes
    ----------
    phi : ndarray of shape (n_leaves, n_domains)
        The effects it was made from (validated, float64).
    values : ndarray of shape (n_domains, n_leaves)
        Each domain's effects in increasing order.
    leaves : ndarray of shape (n_domains, n_leaves)
        The leaf of each entry of ``values``.
    """

    phi: np.ndarray
    values: np.ndarray
    leaves: np.ndarray


def sort_effects(phi: Any) -> SortedEffects:
    """Sort each domain's effects once, for :func:`select` calls on the same ``phi`` with other weights.

    Parameters
    ----------
    phi : array-like of shape (n_leaves, n_domains)
        Effect of each leaf on each domain, as passed to :func:`select`.

    Returns
    -------
    SortedEffects
    """
    phi = check_matrix(phi, "phi")
    values, leaves = sort_by_domain(np.ascontiguousarray(phi.T))
    return SortedEffects(phi=phi, values=values, leaves=leaves)


def select(
    phi: Any,
    base: Any,
    *,
    envelope: str,
    weights: Any = None,
    members: Any = None,
    budget: int | None = None,
    pinned: Any = None,
    excluded: Any = None,
    sorted_effects: SortedEffects | None = None,
) -> Selection:
    """Rank leaves greedily under an envelope, cut at the best prefix and cap at a point budget.

    Parameters
    ----------
    phi : array-like of shape (n_leaves, n_domains)
        Effect of each leaf on each domain (posterior means).
    base : array-like of shape (n_domains,)
        Base model score of each domain, in [0, 1].
    envelope : {"C", "E", "harp-c", "harp-e"}
        HARP-C (conservative: the best positive effect per domain, all negative ones) or HARP-E (expansive:
        effects add up). Any case.
    weights : array-like of shape (n_domains,), optional
        Non-negative domain weights, not all zero. Default: all ones.
    members : sequence of n_leaves integer arrays, optional
        Point indices of each leaf in the order they are taken (``SelectionInputs.members``, a
        :class:`harp.members.LeafMembers`, is checked in one pass). Default: leaf g holds the single point g.
    budget : int, optional
        Maximum number of points; None means no cap.
    pinned : sequence of int, optional
        Leaves always selected, first, in the order given.
    excluded : sequence of int, optional
        Leaves never selected; they are left out of ``order``.
    sorted_effects : SortedEffects, optional
        :func:`sort_effects` of this same ``phi``, kept by a caller that reruns with other weights (HARP-C then
        skips its sort). A budget change needs no rerun at all: see :func:`with_budget`.

    Returns
    -------
    Selection

    Raises
    ------
    ValueError
        For any malformed input; the message names the argument.
    """
    envelope_code = check_envelope(envelope)
    checked = check_selection(phi, base, weights, members, budget, pinned, excluded)
    phi, base, weights, members_list, budget = (
        checked.phi,
        checked.base,
        checked.weights,
        checked.members,
        checked.budget,
    )
    pinned_ids, excluded_ids = checked.pinned, checked.excluded
    if sorted_effects is not None and not (
        sorted_effects.phi.shape == phi.shape and np.array_equal(sorted_effects.phi, phi)
    ):
        raise ValueError("sorted_effects was made from another phi; call sort_effects(phi) again")

    order, gains = greedy_order(
        phi, base, weights, envelope_code, pinned_ids, excluded_ids, sorted_effects=sorted_effects
    )
    cut = best_prefix_cut(gains, n_pinned=pinned_ids.size)
    return _assemble(phi, base, weights, members_list, envelope_code, order, gains, cut, budget)


def warm_up(envelope: str = "C") -> None:
    """Load the compiled greedy of ``envelope`` now, by a :func:`select` on a three-leaf pool.

    A process's first compiled call loads the machine code from numba's cache and sets numba up, about a quarter
    of a second that does not depend on the pool. A caller with other work to do first (`harp select` reading
    the store) runs this on a thread meanwhile, so the real call finds it done.
    """
    phi = np.array([[0.1, -0.2], [-0.1, 0.3], [0.0, 0.05]])
    select(phi, np.full(2, 0.5), envelope=envelope, members=[np.array([g], dtype=np.int64) for g in range(3)])


def with_budget(
    selection: Selection,
    budget: int | None,
    *,
    phi: Any,
    base: Any,
    envelope: str,
    weights: Any = None,
    members: Any = None,
) -> Selection:
    """The same selection under another point budget, without rerunning the greedy.

    The greedy order and the cut do not depend on the budget, so this equals ``select(..., budget=budget)`` with
    the arguments that produced ``selection`` (which the caller must pass again, pins and exclusions aside).
    """
    envelope_code = check_envelope(envelope)
    phi = check_matrix(phi, "phi")
    base = check_base(base, phi.shape[1])
    weights = check_weights(weights, phi.shape[1])
    members_list = check_members(members, phi.shape[0])
    budget = check_budget(budget)
    if selection.order.size and int(selection.order.max()) >= phi.shape[0]:
        raise ValueError(f"selection ranks leaf {int(selection.order.max())} but phi has {phi.shape[0]} rows")
    return _assemble(
        phi,
        base,
        weights,
        members_list,
        envelope_code,
        selection.order,
        selection.gains,
        selection.cut,
        budget,
    )


def _assemble(
    phi: np.ndarray,
    base: np.ndarray,
    weights: np.ndarray,
    members: Sequence[np.ndarray],
    envelope: str,
    order: np.ndarray,
    gains: np.ndarray,
    cut: int,
    budget: int | None,
) -> Selection:
    """Points, kept leaves and predicted scores of the first ``cut`` leaves of ``order`` under ``budget``."""
    points, point_leaves = _take_points(members, order[:cut], budget)
    kept = np.isin(order[:cut], np.unique(point_leaves))
    leaves = order[:cut][kept]
    predicted = predicted_scores(phi, base, leaves, envelope)
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


def best_prefix_cut(gains: np.ndarray, *, n_pinned: int = 0) -> int:
    """Smallest k >= n_pinned maximising ``R_k = gains[0] + ... + gains[k-1]`` (``R_0 = 0``)."""
    running = np.concatenate(([0.0], np.cumsum(gains)))
    return n_pinned + int(np.argmax(running[n_pinned:]))


def predicted_scores(phi: np.ndarray, base: np.ndarray, leaves: np.ndarray, envelope: str) -> np.ndarray:
    """``yhat_d(leaves)`` for every domain, accumulated in the order of ``leaves``."""
    if envelope == "E":
        total = base.copy()
        for g in leaves:
            total = total + phi[g]
        return np.clip(total, 0.0, 1.0)
    best = np.zeros_like(base)
    harm = np.zeros_like(base)
    for g in leaves:
        best = np.maximum(best, np.maximum(phi[g], 0.0))
        harm = harm + np.maximum(-phi[g], 0.0)
    return np.clip((base + best) - harm, 0.0, 1.0)


def _take_points(
    members: Sequence[np.ndarray], leaves: np.ndarray, budget: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if leaves.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    chosen = [members[g] for g in leaves]
    points = np.concatenate(chosen)
    point_leaves = np.repeat(leaves, [m.size for m in chosen])
    if budget is not None:
        points, point_leaves = points[:budget], point_leaves[:budget]
    return points, point_leaves


def greedy_order(
    phi: np.ndarray,
    base: np.ndarray,
    weights: np.ndarray,
    envelope: str,
    pinned: np.ndarray,
    excluded: np.ndarray,
    *,
    sorted_effects: SortedEffects | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy order and gains; assumes validated inputs (see :func:`select`; ``sorted_effects`` of this phi).

    Domains of zero weight are dropped first: each adds ``0.0 * score = +0.0`` to every utility sum, which leaves
    it bitwise unchanged, so the greedy on the weighted domains alone is the same greedy (``W`` is still summed
    over all weights, as the naive definition does). Zeroing the weights of inactive domains, the app's default,
    so speeds every step up in proportion.
    """
    n_leaves = phi.shape[0]
    eligible = np.ones(n_leaves, dtype=np.bool_)
    eligible[excluded] = False
    eligible[pinned] = False
    free = np.flatnonzero(eligible).astype(np.int64)
    weight_sum = float(weights.sum())
    weighted = weights > 0.0
    if not np.all(weighted):
        phi, base, weights = np.ascontiguousarray(phi[:, weighted]), base[weighted], weights[weighted]
    if envelope == "E":
        return greedy_e(phi, base, weights, weight_sum, pinned.astype(np.int64), free)
    # Per-domain sorted effects, so that the leaves a step can affect are a few contiguous runs. The order of
    # equal effects does not matter (runs are ranges of values).
    if sorted_effects is None:
        sorted_phi, sorted_leaf = sort_by_domain(np.ascontiguousarray(phi.T))
    elif np.all(weighted):
        sorted_phi, sorted_leaf = sorted_effects.values, sorted_effects.leaves  # read, never written
    else:
        sorted_phi, sorted_leaf = sorted_effects.values[weighted], sorted_effects.leaves[weighted]
    return greedy_c(phi, base, weights, weight_sum, pinned.astype(np.int64), free, sorted_phi, sorted_leaf)
