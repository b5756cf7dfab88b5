"""Greedy selection of leaves under the HARP-C and HARP-E envelopes.

Notation: leaf g, domain d, ``phi[g, d]`` the effect of finetuning on leaf g on domain d, ``b_d`` the base score,
``w_d`` the domain weights (``W = sum_d w_d``), S the selected set of leaves, ``clip`` the clip to [0, 1],
``pos = max(phi, 0)`` and ``neg = max(-phi, 0)``.

- HARP-C: ``yhat_d(S) = clip(b_d + max_{g in S} pos[g, d] - sum_{g in S} neg[g, d])``
- HARP-E: ``yhat_d(S) = clip(b_d + sum_{g in S} phi[g, d])``
- utility ``U(S) = sum_d w_d yhat_d(S) / W``.

Greedy adds, at each step, the remaining leaf with the largest marginal gain ``U(S + g) - U(S)`` (exact ties: the
smaller leaf id) until every leaf is ranked; the best-prefix cut is the smallest k maximising the running sum of
gains (k = 0 allowed); points are the members of the first ``cut`` leaves, capped at ``budget``.

How it is fast and still exact
------------------------------
The naive greedy recomputes every remaining leaf's gain at every step with array operations: O(L^2 D) work and
a pass over memory per domain. Both envelopes compute every gain they compare with the same floating-point
expression as the naive definition (domains summed in order), so orders and gains are bitwise equal.

HARP-C keeps an *approximate* gain per leaf, updated incrementally. A leaf's score on domain d does not depend on
the current score while neither side of the clip binds, so when a step moves it only the leaves whose
``phi[g, d]`` lies in a few intervals (found by binary search in ``phi[:, d]`` sorted once, by a bucket sort:
:func:`_sort_by_domain`) can change; when the running max of ``pos`` rises, the leaves above the old max are
updated too; when only the harm rises, the leaves at or below the max are skipped (their term is ``clip(t)``
with or without them, bitwise), which at 50,000 leaves x 64 cut the leaves visited from 48 to 12 million.
A max-tree over the approximate gains gives the best leaf; every leaf within ``_TOLERANCE`` of it is
then scored exactly and the true best (ties to the smaller id) is taken. Leaves whose every weighted domain score
is bitwise unchanged by adding them have a gain of exactly 0.0; they sit in a second tree ordered by id, so long
plateaus of zero gains cost O(log L) a step.

HARP-E (see :func:`_greedy_e`) has two kinds of step. While some leaf can raise a weighted score, a full pass
screens every remaining leaf in float32 over the domains outside and the leaves inside (vectorised, twice the
lanes of float64, on a domain-major copy compacted as leaves are chosen) with a proven bound on its rounding, and
scores exactly only the few leaves that may be the best (:func:`_screen_e`). Incremental books do not pay here: a
score hovering near 1 changes about a third of all gains at every step. Once no leaf can raise any weighted
score, the first leaf by id that changes nothing wins with a gain of exactly 0.0, found by a scan in id order
where each leaf before it is usually dismissed by one comparison against a remembered witness, a domain where it
surely lowers the score (:func:`_frozen_pick`). The idea that made that scan cheap: decide "surely lowers"
on one-byte codes of the effects (:func:`_quantize`) rather than on the floats. Each step turns the scores into
one threshold code per domain (:func:`_sure_drops`, no search: codes are monotone in the effect), a witness
check is one byte comparison, and finding a new witness is a branch-free pass over one cache line of codes; the
floats are read only for the rare leaf with no sure drop (it keeps every score at 1, or lowers one by less than
a code's width). Domains of zero weight are dropped before either greedy (:func:`greedy_order`).

A budget never reaches the greedy (:func:`with_budget` re-caps a ranking), and HARP-C's sort, the one costly
step no weight changes, can be kept across weight changes (:func:`sort_effects`).

Where the time goes (``benchmarks/bench_select.py``'s pool, 10,000 leaves x 64 domains, 2026-12-02 on the shared
2-core machine at load 2: medians of 0.066 s HARP-C and 0.056 s HARP-E, wall and CPU alike; in a same-process
comparison with the code before, 82 -> 61 ms HARP-C and 67 -> 59 ms HARP-E). numba's reference counts were the
largest single cost: HARP-C's run finders, inlined by numba, counted their array arguments up and down with atomic
operations at each of their millions of calls (a third of HARP-C's compiled time under ``perf``); they are now
compiled without reference counting (``_UNCOUNTED``) and search the sorted effects in place. HARP-C's sort is
about a seventh of what is left. In HARP-E (~23 ms plateau, ~27 ms full passes, ~5 ms the rest), the 7,551 plateau
steps dismiss ~850 leaves each before the winner (6.4 million witness checks in all), and ~130 of them a step need
a new witness because the score theirs watched rose (0.98 million code rows, one branch-free pass each); the
~2,450 full passes cover 218 million leaf-domain terms. Before the codes, a new witness was an argmin over 64
floats whose unpredictable branches cost ~70 ns a row, two thirds of the scan; an 8-step binary search over 256
bounds per domain and step for the thresholds then cost another ~17 ms, which the monotone code removed.
Tried and no faster: per-domain heaps that wake a leaf only when its witness fails, and (2026-12-02) the same as an
index of the dismissed leaves: each filed under its witness domain and code in O(1) lists, a threshold that falls
wakes exactly the lists it passes into a bit set of pending leaves, and a step visits only the pending ones in id
order (the 6.4 million checks become 1.4 million wakes and visits, the rows stay at 0.98 million, and it ran 7-11 ms
slower: a list entry is a dependent load to a random leaf where a check is one byte read in order); two witnesses
per leaf, witnesses chosen by how fast their score rises, a fast-math row minimum, full passes that add four domains
per sweep, rows over only the domains near 1 plus each leaf's deep negatives (the rows were never memory-bound),
a cache of each leaf's failing domains woken only when all fail (a third of the rows, more time in the
books), blocking the full pass by leaves, and rescoring only the leaves whose gain at the last full pass plus a
bound on its rise since could still win (one-sided, per-domain rise bounds prune 88 % of the first 50 steps but
under half by step 150, and a leaf scored alone costs three times its share of a vectorised pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
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

# Approximate gains drift from the exact ones by at most a few ulps per update; candidates within this of the best
# approximate gain are rescored exactly. Gains lie in [-1, 1], so an absolute tolerance is right.
_TOLERANCE = 1e-9
# Interval ends are widened by this times the magnitude of the scores involved, so rounding never hides a change.
_WIDEN = 1e-12
# Adding phi with |phi| below this times the magnitude can leave a float score bitwise unchanged.
_TINY = 1e-15
# Summing D weighted scores in [0, 1] and dividing by their weight sum rounds by at most about (D + 1) float64 eps
# in utility units; a drop in utility larger than this times (D + 2) (a margin of 16 over that) cannot be lost to
# rounding, so the computed gain is then strictly negative.
_LOST = 16 * 2.220446049250313e-16
# Options for a compiled helper that takes arrays and allocates none: compiled without numba's reference counting
# (NRT). A helper with branches otherwise counts each array argument up on entry and down on every exit, with
# atomic operations; HARP-C calls its run finders millions of times, and those counts were a third of its time.
_UNCOUNTED: dict[str, Any] = {"_nrt": False}
# The low 32 bits of an int64, where :func:`_deepest` packs a domain under a depth.
_LOW_BITS = (1 << 32) - 1


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
    values, leaves = _sort_by_domain(np.ascontiguousarray(phi.T))
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
        utility=float(np.dot(weights, predicted) / weights.sum()),
        base_utility=float(np.dot(weights, base) / weights.sum()),
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
        return _greedy_e(phi, base, weights, weight_sum, pinned.astype(np.int64), free)
    # Per-domain sorted effects, so that the leaves a step can affect are a few contiguous runs. The order of
    # equal effects does not matter (runs are ranges of values).
    if sorted_effects is None:
        sorted_phi, sorted_leaf = _sort_by_domain(np.ascontiguousarray(phi.T))
    elif np.all(weighted):
        sorted_phi, sorted_leaf = sorted_effects.values, sorted_effects.leaves  # read, never written
    else:
        sorted_phi, sorted_leaf = sorted_effects.values[weighted], sorted_effects.leaves[weighted]
    return _greedy_c(phi, base, weights, weight_sum, pinned.astype(np.int64), free, sorted_phi, sorted_leaf)


# ---------------------------------------------------------------------------------------------------------------
# Compiled core. Everything below assumes validated input.


@numba.njit(cache=True, inline="always")
def _clip(value: float) -> float:
    if value < 0.0:
        return 0.0
    if value > 1.0:
        return 1.0
    return value


@numba.njit(cache=True, inline="always")
def _better(gain: float, g: int, best_gain: float, best: int) -> bool:
    """Whether leaf g with this gain beats the best so far: a larger gain, or an equal one and a smaller id."""
    return gain > best_gain or (gain == best_gain and g < best)


@numba.njit(cache=True)
def _tree_size(n: int) -> int:
    size = 1
    while size < max(n, 1):
        size *= 2
    return size


@numba.njit(cache=True)
def _tree_set(trees: np.ndarray, k: int, size: int, index: int, value: float) -> None:
    """Set leaf ``index`` of tree ``trees[k]`` and repair its ancestors, indexing ``trees`` in place rather than
    taking a view per call (each view costs a reference count up and down, and HARP-C sets thousands a step)."""
    node = size + index
    trees[k, node] = value
    node //= 2
    while node >= 1:
        left = trees[k, 2 * node]
        right = trees[k, 2 * node + 1]
        top = left if left >= right else right
        if trees[k, node] == top:
            break  # the ancestors hold the same maxima as before
        trees[k, node] = top
        node //= 2


@numba.njit(cache=True)
def _tree_build(tree: np.ndarray, size: int) -> None:
    for node in range(size - 1, 0, -1):
        left = tree[2 * node]
        right = tree[2 * node + 1]
        tree[node] = left if left >= right else right


@numba.njit(cache=True)
def _tree_collect(tree: np.ndarray, size: int, threshold: float, out: np.ndarray) -> int:
    """Write into ``out`` every index whose value is >= threshold; return how many."""
    count = 0
    stack = np.empty(64, dtype=np.int64)
    top = 0
    stack[top] = 1
    top += 1
    while top > 0:
        top -= 1
        node = stack[top]
        if tree[node] < threshold or tree[node] == -np.inf:
            continue
        if node >= size:
            out[count] = node - size
            count += 1
        else:
            stack[top] = 2 * node
            stack[top + 1] = 2 * node + 1
            top += 2
    return count


@numba.njit(cache=True)
def _tree_top(tree: np.ndarray, size: int) -> int:
    """Index of a largest value (the tree must hold one that is not -inf)."""
    node = 1
    while node < size:
        node = 2 * node if tree[2 * node] >= tree[2 * node + 1] else 2 * node + 1
    return node - size


@numba.njit(cache=True, **_UNCOUNTED)
def _search(values: np.ndarray, d: int, value: float, right: bool) -> int:
    """``np.searchsorted(values[d], value, side="right" if right else "left")``, indexing ``values`` in place.

    Effects are never NaN, so this is the same binary search. It spares its callers a view of the row per call,
    which would need a reference count (see ``_UNCOUNTED``).
    """
    low = 0
    high = values.shape[1]
    while low < high:
        middle = (low + high) >> 1
        x = values[d, middle]
        if x < value or (right and x == value):
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(cache=True, **_UNCOUNTED)
def _add_run(
    runs: np.ndarray, n_runs: int, sorted_phi: np.ndarray, d: int, low: float, high: float, sign: int
) -> int:
    """Append the index run of ``sorted_phi[d]`` with values in [low, high], restricted to one sign (zeros
    excluded)."""
    if sign < 0:
        if low >= 0.0:
            return n_runs
        start = _search(sorted_phi, d, low, False)
        stop = _search(sorted_phi, d, high, True) if high < 0.0 else _search(sorted_phi, d, 0.0, False)
    else:
        if high <= 0.0:
            return n_runs
        start = _search(sorted_phi, d, low, False) if low > 0.0 else _search(sorted_phi, d, 0.0, True)
        stop = _search(sorted_phi, d, high, True)
    if stop > start:
        runs[n_runs, 0] = start
        runs[n_runs, 1] = stop
        n_runs += 1
    return n_runs


@numba.njit(cache=True, **_UNCOUNTED)
def _add_moved_runs(
    runs: np.ndarray,
    n_runs: int,
    sorted_phi: np.ndarray,
    d: int,
    old: float,
    new: float,
    shift: float,
    sign: int,
    magnitude: float,
) -> int:
    """Runs of effects x whose term ``clip(t + x - shift) - clip(t)`` can differ between t = old and t = new.

    With a <= b the two values of t, the change is ``o(x - shift) - o(0)`` where ``o(z)`` is the length of
    ``[a + z, b + z]`` inside [0, 1]. ``o`` is 0 outside ``(-b, 1 - a)``, rises, stays flat on
    ``[min(-a, 1 - b), max(-a, 1 - b)]`` and falls. So if ``o(0) = 0`` only ``(-b, 1 - a)`` can change; if 0 lies
    inside the flat part, everything but the flat part can; otherwise everything can. Ends are widened for
    rounding, and a band of tiny ``|x - shift|`` is added because a float sum can absorb a tiny effect.
    ``magnitude`` bounds the other terms of the float expression, which set the size of its rounding.
    """
    a = min(old, new)
    b = max(old, new)
    scale = 1.0 + abs(a) + abs(b) + abs(shift) + magnitude
    widen = _WIDEN * scale
    tiny = _TINY * scale
    flat_low = min(-a, 1.0 - b)
    flat_high = max(-a, 1.0 - b)
    if b <= 0.0 or a >= 1.0:
        return _add_run(runs, n_runs, sorted_phi, d, -b - widen + shift, 1.0 - a + widen + shift, sign)
    if flat_low + widen < 0.0 < flat_high - widen:
        n_runs = _add_run(runs, n_runs, sorted_phi, d, -np.inf, flat_low + widen + shift, sign)
        n_runs = _add_run(runs, n_runs, sorted_phi, d, flat_high - widen + shift, np.inf, sign)
        return _add_run(runs, n_runs, sorted_phi, d, -tiny + shift, tiny + shift, sign)
    return _add_run(runs, n_runs, sorted_phi, d, -np.inf, np.inf, sign)


@numba.njit(cache=True, **_UNCOUNTED)
def _runs_from(runs: np.ndarray, first: int, n_runs: int, start: int) -> int:
    """Cut the runs ``runs[first:n_runs]`` to indices >= start, dropping those left empty."""
    kept = first
    for r in range(first, n_runs):
        low = max(runs[r, 0], start)
        if runs[r, 1] > low:
            runs[kept, 0] = low
            runs[kept, 1] = runs[r, 1]
            kept += 1
    return kept


@numba.njit(cache=True, **_UNCOUNTED)
def _merge_runs(runs: np.ndarray, n_runs: int) -> int:
    """Sort runs by start and merge overlaps in place, so no leaf is visited twice."""
    for i in range(1, n_runs):
        j = i
        while j > 0 and runs[j - 1, 0] > runs[j, 0]:
            s0, s1 = runs[j - 1, 0], runs[j - 1, 1]
            runs[j - 1, 0], runs[j - 1, 1] = runs[j, 0], runs[j, 1]
            runs[j, 0], runs[j, 1] = s0, s1
            j -= 1
    merged = 0
    for i in range(n_runs):
        if merged > 0 and runs[i, 0] <= runs[merged - 1, 1]:
            if runs[i, 1] > runs[merged - 1, 1]:
                runs[merged - 1, 1] = runs[i, 1]
        else:
            runs[merged, 0] = runs[i, 0]
            runs[merged, 1] = runs[i, 1]
            merged += 1
    return merged


# Leaves live in one of three max-trees (rows of ``trees``):
_EXACT = 0  # the approximate gain is the whole gain
_CAPPED = 1  # the approximate gain leaves out saturated domains, where this leaf's terms are < 0
_ZERO = 2  # no weighted domain score would change: the gain is exactly 0.0; keyed by -id


@numba.njit(cache=True)
def _tree_of(g: int, changed: np.ndarray, capped: np.ndarray) -> int:
    if changed[g] == 0:
        return _ZERO
    if capped[g] > 0:
        return _CAPPED
    return _EXACT


@numba.njit(cache=True)
def _finish_step(
    dirty: np.ndarray,
    n_dirty: int,
    is_dirty: np.ndarray,
    approx: np.ndarray,
    changed: np.ndarray,
    capped: np.ndarray,
    remaining: np.ndarray,
    trees: np.ndarray,
    size: int,
) -> None:
    """Move every dirty leaf to its tree with its new key."""
    rebuild = n_dirty * 8 > size
    for i in range(n_dirty):
        g = dirty[i]
        is_dirty[g] = False
        if not remaining[g]:
            continue
        home = _tree_of(g, changed, capped)
        for k in range(3):
            value = -np.inf
            if k == home:
                value = -float(g) if k == _ZERO else approx[g]
            if rebuild:
                trees[k, size + g] = value
            elif trees[k, size + g] != value:
                _tree_set(trees, k, size, g, value)
    if rebuild:
        for k in range(3):
            _tree_build(trees[k], size)


@numba.njit(cache=True)
def _exact_gain(g: int, state: Any) -> float:
    """``U(S + g) - U(S)``, as the naive definition computes it (domains summed in order)."""
    envelope_e, phi, base, total, best, harm, weights, weight_sum, current = state
    acc = 0.0
    for d in range(base.size):
        if envelope_e:
            acc += weights[d] * _clip(total[d] + phi[g, d])
        else:
            acc += weights[d] * _score_c(base[d], best[d], harm[d], phi[g, d])
    return acc / weight_sum - current[0]


@numba.njit(cache=True)
def _best_of(leaves: np.ndarray, count: int, state: Any, best: int, best_gain: float) -> tuple[int, float]:
    """Score ``leaves[:count]`` exactly and return the best of them and the best so far."""
    for i in range(count):
        g = leaves[i]
        gain = _exact_gain(g, state)
        if _better(gain, g, best_gain, best):
            best = g
            best_gain = gain
    return best, best_gain


@numba.njit(cache=True)
def _pick(trees: np.ndarray, size: int, cap: float, candidates: np.ndarray, state: Any) -> tuple[int, float]:
    """The remaining leaf with the largest exact gain (ties: smaller id).

    ``cap`` bounds the gain of every leaf in the capped tree above its key. With ``low`` a gain some leaf is
    known to reach, any leaf whose bound is below ``low - _TOLERANCE`` cannot win; the rest are scored exactly.
    """
    best = -1
    best_gain = -np.inf
    if trees[_ZERO, 1] > -np.inf:
        best = int(-trees[_ZERO, 1])
        best_gain = 0.0
    if trees[_EXACT, 1] > -np.inf:
        low = max(best_gain, trees[_EXACT, 1])
    elif trees[_CAPPED, 1] > -np.inf:
        # Only bounds are known: score the most promising capped leaf to learn a gain that is reached.
        g = _tree_top(trees[_CAPPED], size)
        gain = _exact_gain(g, state)
        if _better(gain, g, best_gain, best):
            best = g
            best_gain = gain
        low = best_gain
    else:
        return best, best_gain
    for k in range(2):
        shift = 0.0 if k == _EXACT else cap
        if trees[k, 1] + shift < low - _TOLERANCE:
            continue
        count = _tree_collect(trees[k], size, low - _TOLERANCE - shift, candidates)
        best, best_gain = _best_of(candidates, count, state, best, best_gain)
    return best, best_gain


@numba.njit(cache=True, inline="always")
def _score_c(base_d: float, best_d: float, harm_d: float, x: float) -> float:
    """``clip(b + max(best, pos) - (harm + neg))`` for one domain, written as the naive definition computes it."""
    positive = x if x > 0.0 else 0.0
    negative = -x if x < 0.0 else 0.0
    top = best_d if best_d >= positive else positive
    return _clip((base_d + top) - (harm_d + negative))


# ---- HARP-E ------------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _utility_e(total: np.ndarray, weights: np.ndarray, weight_sum: float) -> float:
    acc = 0.0
    for d in range(total.size):
        acc += weights[d] * _clip(total[d])
    return acc / weight_sum


@numba.njit(cache=True)
def _compact_columns(
    ids: np.ndarray, columns: np.ndarray, remaining: np.ndarray, n_remaining: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop chosen leaves from ``ids`` (in id order) and from ``columns`` (their effects, one row per domain)."""
    keep = np.empty(n_remaining, dtype=np.int64)
    k = 0
    for j in range(ids.size):
        if remaining[ids[j]]:
            keep[k] = j
            k += 1
    kept = np.empty((columns.shape[0], n_remaining), dtype=columns.dtype)
    for d in range(columns.shape[0]):
        for k in range(n_remaining):
            kept[d, k] = columns[d, keep[k]]
    return ids[keep], kept


@numba.njit(cache=True)
def _best_e(ids, columns, remaining, total, weights, weight_sum, current, acc, top, bottom):  # type: ignore[no-untyped-def]
    """The remaining leaf with the largest gain and its gain, every leaf scored as :func:`_exact_gain` does.

    Domains outer, leaves inner: each leaf's sum still runs over the domains in order (the same floating-point
    expression as the naive definition) while the inner loop vectorises. A domain whose score is at or below 0
    for every leaf (``t + top <= 0``; float addition is monotone) or has zero weight adds exactly 0.0 to sums
    that start at +0.0, so it is skipped; one at or above 1 for every leaf (``t + bottom >= 1``) adds ``w`` to
    every sum without reading its effects. ``top`` and ``bottom`` are each domain's largest and smallest effect.
    ``ids`` is in id order, so on ties the first largest gain is the smaller id.
    """
    n = ids.size
    acc[:n] = 0.0
    for d in range(total.size):
        w = weights[d]
        t = total[d]
        if w == 0.0 or t + top[d] <= 0.0:
            continue  # every term is w * 0.0
        if t + bottom[d] >= 1.0:
            for j in range(n):
                acc[j] += w  # every term is w * 1.0
            continue
        row = columns[d]
        for j in range(n):
            acc[j] += w * _clip(t + row[j])
    best = -1
    best_gain = -np.inf
    for j in range(n):
        g = ids[j]
        if remaining[g]:
            gain = acc[j] / weight_sum - current
            if gain > best_gain:
                best = g
                best_gain = gain
    return best, best_gain


@numba.njit(cache=True)
def _screen_e(ids, single, remaining, total, weights, top, bottom, scaled, reach, acc, state):  # type: ignore[no-untyped-def]
    """:func:`_best_e` at twice the speed: every leaf scored in float32, then only those that may be best exactly.

    ``single`` holds the effects in float32 like ``columns``, ``scaled`` the weights over the largest one in
    float32, ``reach`` each domain's largest ``|effect|``. With u = 2^-24, each active term
    ``w * clip(t + x)`` is off by at most ``u * w * (2 (|t| + |x|) + 2)`` (the rounding of t, x, their sum and
    the product; the clip is 1-Lipschitz), and the float32 sum of D terms adds ``(D - 1) u`` of their total, so
    no leaf's float32 score is farther than ``bound`` from its real one. Every leaf within ``2 * bound`` of the
    best float32 score is then scored exactly (:func:`_exact_gain`, in id order, so ties go to the smaller id);
    the best leaf is among them. Returns (-1, -inf) when more than ``max(64, n / 8)`` leaves are that close
    (many exact ties), so that the caller runs the exact pass instead.
    """
    n = ids.size
    acc[:n] = 0.0
    spread = 0.0
    active = 0.0
    for d in range(total.size):
        t = total[d]
        if weights[d] == 0.0 or t + top[d] <= 0.0:
            continue
        w = scaled[d]
        active += w
        if t + bottom[d] >= 1.0:
            for j in range(n):
                acc[j] += w
            continue
        spread += w * (abs(t) + reach[d] + 1.0)
        t32 = np.float32(t)
        row = single[d]
        for j in range(n):
            y = t32 + row[j]
            y = np.float32(0.0) if y < np.float32(0.0) else y
            y = np.float32(1.0) if y > np.float32(1.0) else y
            acc[j] += w * y
    unit = 2.0**-24
    bound = 1.01 * unit * (2.0 * spread + (total.size + 1) * active) + 1e-12 * active + 1e-30
    highest = -np.inf
    for j in range(n):
        if remaining[ids[j]] and acc[j] > highest:
            highest = acc[j]
    limit = highest - 2.0 * bound
    count = 0
    for j in range(n):
        if remaining[ids[j]] and acc[j] >= limit:
            count += 1
    if count > max(64, n // 8):
        return -1, -np.inf
    best = -1
    best_gain = -np.inf
    for j in range(n):
        g = ids[j]
        if remaining[g] and acc[j] >= limit:
            gain = _exact_gain(g, state)
            if gain > best_gain:
                best = g
                best_gain = gain
    return best, best_gain


@numba.njit(cache=True)
def _frozen(total: np.ndarray, weights: np.ndarray, top: np.ndarray, at_one: np.ndarray) -> bool:
    """Whether no leaf can raise any weighted score: each is at or above 1, or at or below 0 and out of reach.

    ``top`` is each domain's largest effect. ``at_one`` is set to the weighted domains at or above 1, the only
    ones a leaf can still lower.
    """
    for d in range(total.size):
        at_one[d] = weights[d] != 0.0 and total[d] >= 1.0
        if weights[d] != 0.0 and not at_one[d]:
            if total[d] > 0.0 or total[d] + top[d] > 0.0:
                return False
    return True


@numba.njit(cache=True)
def _near_one(weights: np.ndarray, weight_sum: float) -> np.ndarray:
    """Per domain, the score above which dropping from 1 to it lowers the utility by less than ``_LOST * (D + 2)``
    (a drop rounding may lose); +inf for domains of zero weight, which never hold a witness."""
    lost = _LOST * (weights.size + 2)
    near = np.full(weights.size, np.inf)
    for d in range(weights.size):
        if weights[d] != 0.0:
            near[d] = 1.0 - lost * weight_sum / weights[d]
    return near


@numba.njit(cache=True)
def _quantize(phi, free):  # type: ignore[no-untyped-def]
    """Each remaining leaf's effects as codes of one byte, with a sound upper bound for every code.

    Domain d's effects are cut into 256 equal-width buckets; ``code[g, d]`` is leaf g's bucket and
    ``upper[d, k]`` the largest effect with a code of at most k (nondecreasing in k, never below an effect whose
    code is k, so a score raised by it bounds the true one from above however the division rounded).
    """
    n_leaves, n_domains = phi.shape
    low = np.full(n_domains, np.inf)
    high = np.full(n_domains, -np.inf)
    for g in free:
        for d in range(n_domains):
            low[d] = min(low[d], phi[g, d])
            high[d] = max(high[d], phi[g, d])
    scale = np.zeros(n_domains)
    for d in range(n_domains):
        if high[d] > low[d]:
            scale[d] = 255.0 / (high[d] - low[d])
    code = np.zeros((n_leaves, n_domains), dtype=np.uint8)
    upper = np.full((n_domains, 256), -np.inf)
    for g in free:
        for d in range(n_domains):
            x = phi[g, d]
            k = min(max(int((x - low[d]) * scale[d]), 0), 255)
            code[g, d] = k
            upper[d, k] = max(upper[d, k], x)
    for d in range(n_domains):
        for k in range(1, 256):
            upper[d, k] = max(upper[d, k], upper[d, k - 1])
    return code, upper, low, scale


@numba.njit(cache=True)
def _sure_drops(floor, near, upper, low, scale, sure):  # type: ignore[no-untyped-def]
    """``sure[d]``: a code below which every leaf lowers score d by more than rounding can lose (0 off ``at_one``).

    With ``x`` the largest float for which ``floor[d] + x <= near[d]`` and ``k`` its code (as :func:`_quantize`
    computes codes, clamped to 0..255), every effect whose code is below k is below x (codes are monotone in the
    effect), so its score is at most ``near[d]``; so is every effect of code k if ``upper[d, k]`` passes the same
    test. No search: one code and one comparison per domain.
    """
    for d in range(floor.size):
        if floor[d] == np.inf:
            sure[d] = 0
            continue
        x = near[d] - floor[d]
        while floor[d] + x > near[d]:
            x = np.nextafter(x, -np.inf)
        k = min(max(int((x - low[d]) * scale[d]), 0), 255)
        sure[d] = k + 1 if floor[d] + upper[d, k] <= near[d] else k


@numba.njit(cache=True)
def _deepest(sure, code, g):  # type: ignore[no-untyped-def]
    """The domain d of the largest ``sure[d] - code[g, d]`` (the first of equals), or -1 if none is positive.

    One branch-free pass that vectorises: the depth and the domain are packed into one key, the depth in the
    high bits and ``2^32 - 1 - d`` in the low 32, so that the largest key names the first deepest domain. Indexes
    ``code`` rather than taking a view of its row, which costs a reference count up and down (atomic operations)
    per call: about a tenth of HARP-E's time at its million calls.
    """
    n = code.shape[1]
    best = np.int64(0)
    for d in range(n):
        best = max(best, ((sure[d] - np.int64(code[g, d])) << 32) + (_LOW_BITS - d))
    return _LOW_BITS - (best & _LOW_BITS) if best > _LOW_BITS else -1


@numba.njit(cache=True)
def _frozen_pick(ids, witness, witness_code, floor, near, at_one, state, code, upper, low, scale, sure):  # type: ignore[no-untyped-def]
    """The pick while :func:`_frozen` holds, or (-1, -inf) if no leaf keeps every score in ``at_one`` at 1.

    Every gain is then <= 0.0 (each weighted term is at most the current one, and float sums are monotone), and
    a leaf that keeps every score in ``at_one`` at 1 gains exactly 0.0 (the other weighted scores stay at 0):
    the first such leaf by id wins, unless a smaller id that lowers some score gains 0.0 too because its drop is
    lost to rounding. Only a drop below ``_LOST * (D + 2)`` can be lost; such leaves are scored exactly.

    ``ids`` lists the remaining leaves in id order (and some chosen ones, skipped by their witness). A leaf known to
    lower a score by more than rounding can lose keeps that domain and its code there as a witness (``witness[p]``,
    ``witness_code[p]`` for ``ids[p]``, read in order as the scan goes), checked first next time with one
    comparison. Witnesses come from the one-byte codes of :func:`_quantize`: the domain whose code lies deepest
    below its ``sure`` threshold (:func:`_sure_drops`), found branch-free over one cache line of codes. Only a leaf
    with no sure drop is scored on its float effects: it keeps every score at 1, or lowers one by less than a code's
    width.
    ``floor`` is scratch: each domain's score where it is in ``at_one``, +inf elsewhere. ``near`` (fixed, from
    :func:`_near_one`) is the score above which a leaf's drop on a domain, ``w_d / W * (1 - score)``, is small
    enough to be lost.
    """
    _, phi, _, total, _, _, _, _, _ = state
    n_domains = total.size
    for d in range(n_domains):
        floor[d] = total[d] if at_one[d] else np.inf
    _sure_drops(floor, near, upper, low, scale, sure)
    for p in range(ids.size):
        # Chosen leaves hold a witness whose threshold passes every code, unvisited ones one that passes none.
        if witness_code[p] < sure[witness[p]]:
            continue
        g = ids[p]
        w = _deepest(sure, code, g)
        if w >= 0:
            witness[p] = w
            witness_code[p] = code[g, w]
            continue
        lowest = np.inf
        for d in range(n_domains):
            y = floor[d] + phi[g, d]
            if y < lowest:
                lowest = y
                w = d
        if lowest >= 1.0:
            return g, 0.0
        witness[p] = n_domains + 1
        # Leaf g lowers score w; if by little, its drop in utility may be lost to rounding.
        if lowest > near[w] and _exact_gain(g, state) == 0.0:
            return g, 0.0
    return -1, -np.inf


@numba.njit(cache=True, nogil=True)
def _greedy_e(phi, base, weights, weight_sum, pinned, free):  # type: ignore[no-untyped-def]
    """HARP-E greedy.

    A step scores every remaining leaf exactly (:func:`_best_e`: compiled, vectorised over leaves, on a copy of
    the effects laid out by domain and compacted as leaves are chosen), except while no leaf can raise any
    score: then every gain is <= 0 and the first leaf by id that changes nothing wins (:func:`_frozen_pick`),
    which usually costs one comparison per leaf before it. On pools like real posteriors most steps are of
    that kind (every domain saturated, the greedy working through leaves of zero gain).
    """
    n_leaves, n_domains = phi.shape
    n_order = pinned.size + free.size
    order = np.empty(n_order, dtype=np.int64)
    gains = np.empty(n_order, dtype=np.float64)
    total = base.copy()
    current = np.empty(1, dtype=np.float64)
    current[0] = _utility_e(total, weights, weight_sum)
    empty = np.zeros(0)
    state = (True, phi, base, total, empty, empty, weights, weight_sum, current)
    step = 0
    for g in pinned:
        gains[step] = _exact_gain(g, state)
        order[step] = g
        step += 1
        for d in range(n_domains):
            total[d] = total[d] + phi[g, d]
        current[0] = _utility_e(total, weights, weight_sum)

    remaining = np.zeros(n_leaves, dtype=np.bool_)
    top = np.full(n_domains, -np.inf)
    bottom = np.full(n_domains, np.inf)
    for g in free:
        remaining[g] = True
        for d in range(n_domains):
            top[d] = max(top[d], phi[g, d])
            bottom[d] = min(bottom[d], phi[g, d])
    ids = free
    single = np.empty((n_domains, free.size), dtype=np.float32)
    for j in range(free.size):
        for d in range(n_domains):
            single[d, j] = phi[free[j], d]
    acc_single = np.empty(free.size, dtype=np.float32)
    scaled = np.empty(n_domains, dtype=np.float32)
    reach = np.empty(n_domains)
    for d in range(n_domains):
        scaled[d] = weights[d] / weights.max()
        reach[d] = max(abs(top[d]), abs(bottom[d]))
    # The float64 copy for the exact pass is made only if a screening pass finds too many near-ties.
    columns = np.empty((n_domains, 0))
    acc = np.empty(free.size)
    at_one = np.zeros(n_domains, dtype=np.bool_)
    # Witnesses by position in the scan. Two more thresholds than domains: one passes every code (the witness of
    # a chosen leaf, so the scan skips it without looking it up), one passes none (a leaf not yet visited).
    witness = np.full(free.size, n_domains + 1, dtype=np.int64)
    witness_code = np.zeros(free.size, dtype=np.uint8)
    code, upper, low, scale = _quantize(phi, free)
    sure = np.zeros(n_domains + 2, dtype=np.int64)
    sure[n_domains] = 256
    floor = np.empty(n_domains)
    near = _near_one(weights, weight_sum)
    scan = free
    n_remaining = free.size
    exact_for = 0
    for _ in range(free.size):
        # Scoring chosen leaves costs more than compacting, amortised over the steps in between.
        if 10 * n_remaining < 9 * ids.size:
            if columns.shape[1] == ids.size:
                _, columns = _compact_columns(ids, columns, remaining, n_remaining)
            ids, single = _compact_columns(ids, single, remaining, n_remaining)
        n_remaining -= 1
        best = -1
        best_gain = -np.inf
        if _frozen(total, weights, top, at_one):
            # The scan passes every chosen leaf still listed; winners here are small ids, so they gather in front.
            if 50 * (scan.size - n_remaining - 1) > scan.size:
                listed = remaining[scan]
                scan, witness, witness_code = scan[listed], witness[listed], witness_code[listed]
            best, best_gain = _frozen_pick(
                scan,
                witness,
                witness_code,
                floor,
                near,
                at_one,
                state,
                code,
                upper,
                low,
                scale,
                sure,
            )
        if best < 0 and exact_for == 0:
            best, best_gain = _screen_e(
                ids, single, remaining, total, weights, top, bottom, scaled, reach, acc_single, state
            )
            if best < 0:
                exact_for = 16  # near-ties abound: screening would only repeat the exact pass for a while
        if best < 0:
            exact_for = max(exact_for - 1, 0)
            if columns.shape[1] != ids.size:
                columns = np.empty((n_domains, ids.size))
                for j in range(ids.size):
                    for d in range(n_domains):
                        columns[d, j] = phi[ids[j], d]
            best, best_gain = _best_e(
                ids, columns, remaining, total, weights, weight_sum, current[0], acc, top, bottom
            )
        order[step] = best
        gains[step] = best_gain
        step += 1
        remaining[best] = False
        position = np.searchsorted(scan, best)
        if position < scan.size and scan[position] == best:
            witness[position] = n_domains
        for d in range(n_domains):
            total[d] = total[d] + phi[best, d]
        current[0] = _utility_e(total, weights, weight_sum)
    return order, gains


# ---- HARP-C ------------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _sort_by_domain(by_domain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``by_domain`` (one domain's effects) sorted, and the leaf of each sorted value.

    A bucket sort: each value goes to one of n buckets by a linear map of its value, which is monotone in
    floating point, so buckets follow the values' order and an insertion sort finishes each (one or two values
    a bucket on effects like posteriors). A row that crowds more than 64 values into one bucket (ties, outliers)
    is sorted by ``np.argsort`` instead. Twice as fast as ``np.argsort`` on the benchmark's pool.
    """
    n_domains, n = by_domain.shape
    sorted_phi = np.empty((n_domains, n))
    sorted_leaf = np.empty((n_domains, n), dtype=np.int64)
    bucket = np.empty(n, dtype=np.int64)
    start = np.empty(n + 1, dtype=np.int64)
    for d in range(n_domains):
        column = by_domain[d]
        row_phi = sorted_phi[d]
        row_leaf = sorted_leaf[d]
        low = np.inf
        high = -np.inf
        for j in range(n):
            low = min(low, column[j])
            high = max(high, column[j])
        scale = (n - 1) / (high - low) if high > low else 0.0
        start[:] = 0
        for j in range(n):
            k = min(int((column[j] - low) * scale), n - 1)
            bucket[j] = k
            start[k + 1] += 1
        crowded = 0
        for k in range(n):
            crowded = max(crowded, start[k + 1])
            start[k + 1] += start[k]
        if crowded > 64:
            order = np.argsort(column, kind="quicksort")
            for j in range(n):
                row_leaf[j] = order[j]
                row_phi[j] = column[order[j]]
            continue
        for j in range(n):
            p = start[bucket[j]]
            start[bucket[j]] = p + 1
            row_leaf[p] = j
            row_phi[p] = column[j]
        for i in range(1, n):
            x = row_phi[i]
            g = row_leaf[i]
            j = i
            while j > 0 and row_phi[j - 1] > x:
                row_phi[j] = row_phi[j - 1]
                row_leaf[j] = row_leaf[j - 1]
                j -= 1
            row_phi[j] = x
            row_leaf[j] = g
    return sorted_phi, sorted_leaf


@numba.njit(cache=True)
def _compact(
    sorted_phi: np.ndarray, sorted_leaf: np.ndarray, remaining: np.ndarray, n_remaining: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop chosen leaves from the per-domain sorted lists, so later steps do not walk over them."""
    n_domains = sorted_phi.shape[0]
    kept_phi = np.empty((n_domains, n_remaining))
    kept_leaf = np.empty((n_domains, n_remaining), dtype=np.int64)
    for d in range(n_domains):
        k = 0
        for i in range(sorted_leaf.shape[1]):
            g = sorted_leaf[d, i]
            if remaining[g]:
                kept_phi[d, k] = sorted_phi[d, i]
                kept_leaf[d, k] = g
                k += 1
    return kept_phi, kept_leaf


@numba.njit(cache=True)
def _utility_c(base, best, harm, weights, weight_sum):  # type: ignore[no-untyped-def]
    acc = 0.0
    for d in range(base.size):
        acc += weights[d] * _clip((base[d] + best[d]) - harm[d])
    return acc / weight_sum


@numba.njit(cache=True, nogil=True)
def _greedy_c(phi, base, weights, weight_sum, pinned, free, sorted_phi, sorted_leaf):  # type: ignore[no-untyped-def]
    n_leaves, n_domains = phi.shape
    n_order = pinned.size + free.size
    order = np.empty(n_order, dtype=np.int64)
    gains = np.empty(n_order, dtype=np.float64)
    best = np.zeros(n_domains)
    harm = np.zeros(n_domains)
    current = np.empty(1, dtype=np.float64)
    current[0] = _utility_c(base, best, harm, weights, weight_sum)
    empty = np.zeros(0)
    state = (False, phi, base, empty, best, harm, weights, weight_sum, current)
    step = 0
    for g in pinned:
        gains[step] = _exact_gain(g, state)
        order[step] = g
        step += 1
        for d in range(n_domains):
            x = phi[g, d]
            if x > best[d]:
                best[d] = x
            if x < 0.0:
                harm[d] = harm[d] + (-x)
        current[0] = _utility_c(base, best, harm, weights, weight_sum)

    size = _tree_size(n_leaves)
    trees = np.full((3, 2 * size), -np.inf)
    approx = np.zeros(n_leaves)
    changed = np.zeros(n_leaves, dtype=np.int64)
    capped = np.zeros(n_leaves, dtype=np.int64)
    remaining = np.zeros(n_leaves, dtype=np.bool_)
    for g in free:
        remaining[g] = True
        acc = 0.0
        count = 0
        for d in range(n_domains):
            if weights[d] != 0.0:
                before = _score_c(base[d], best[d], harm[d], 0.0)
                after = _score_c(base[d], best[d], harm[d], phi[g, d])
                acc += weights[d] * (after - before)
                if after != before:
                    count += 1
        approx[g] = acc / weight_sum
        changed[g] = count
        home = _tree_of(g, changed, capped)
        trees[home, size + g] = -float(g) if home == _ZERO else approx[g]
    for k in range(3):
        _tree_build(trees[k], size)

    candidates = np.empty(n_leaves, dtype=np.int64)
    dirty = np.empty(n_leaves, dtype=np.int64)
    is_dirty = np.zeros(n_leaves, dtype=np.bool_)
    runs = np.empty((8, 2), dtype=np.int64)
    n_remaining = free.size
    for _ in range(free.size):
        if 2 * n_remaining < sorted_leaf.shape[1]:
            sorted_phi, sorted_leaf = _compact(sorted_phi, sorted_leaf, remaining, n_remaining)
        n_remaining -= 1
        chosen, gain = _pick(trees, size, 0.0, candidates, state)
        order[step] = chosen
        gains[step] = gain
        step += 1
        remaining[chosen] = False
        for k in range(3):
            _tree_set(trees, k, size, chosen, -np.inf)
        n_dirty = 0
        for d in range(n_domains):
            x_chosen = phi[chosen, d]
            old_best = best[d]
            old_harm = harm[d]
            new_best = old_best
            new_harm = old_harm
            if x_chosen > old_best:
                new_best = x_chosen
            elif x_chosen < 0.0:
                new_harm = old_harm + (-x_chosen)
            else:
                continue
            best[d] = new_best
            harm[d] = new_harm
            if weights[d] == 0.0:
                continue
            old_t = (base[d] + old_best) - old_harm
            new_t = (base[d] + new_best) - new_harm
            magnitude = abs(base[d]) + new_best + new_harm
            # Harmful leaves see the score move from old_t to new_t.
            n_runs = _add_moved_runs(runs, 0, sorted_phi, d, old_t, new_t, 0.0, -1, magnitude)
            if new_best != old_best:
                # Every leaf above the old max has its headroom cut.
                n_runs = _add_run(runs, n_runs, sorted_phi, d, old_best, np.inf, 1)
            else:
                # Leaves above the max add x - best to a score that moved. Those at or below it score
                # clip(t) with or without their x, bitwise, so nothing of theirs can change: cut them out.
                first = n_runs
                n_runs = _add_moved_runs(runs, n_runs, sorted_phi, d, old_t, new_t, old_best, 1, magnitude)
                n_runs = _runs_from(runs, first, n_runs, _search(sorted_phi, d, old_best, True))
            n_runs = _merge_runs(runs, n_runs)
            scale = weights[d] / weight_sum
            for r in range(n_runs):
                for i in range(runs[r, 0], runs[r, 1]):
                    g = sorted_leaf[d, i]
                    if not remaining[g]:
                        continue
                    x = sorted_phi[d, i]
                    before_old = _score_c(base[d], old_best, old_harm, 0.0)
                    after_old = _score_c(base[d], old_best, old_harm, x)
                    before_new = _score_c(base[d], new_best, new_harm, 0.0)
                    after_new = _score_c(base[d], new_best, new_harm, x)
                    delta = (after_new - before_new) - (after_old - before_old)
                    moved = int(after_new != before_new) - int(after_old != before_old)
                    if delta != 0.0 or moved != 0:
                        approx[g] += scale * delta
                        changed[g] += moved
                        if not is_dirty[g]:
                            is_dirty[g] = True
                            dirty[n_dirty] = g
                            n_dirty += 1
        current[0] = _utility_c(base, best, harm, weights, weight_sum)
        _finish_step(dirty, n_dirty, is_dirty, approx, changed, capped, remaining, trees, size)
    return order, gains
