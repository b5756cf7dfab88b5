"""Compiled pieces both greedies share: clipping, exact gains, HARP-C's max-trees and runs of sorted effects.

Everything here assumes validated input (see :func:`harp.select.select`). Notation as in :mod:`harp.select`.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

# Approximate gains drift from the exact ones by at most a few ulps per update; candidates within this of the best
# approximate gain are rescored exactly. Gains lie in [-1, 1], so an absolute tolerance is right.
_TOLERANCE = 1e-9


# Interval ends are widened by this times the magnitude of the scores involved, so rounding never hides a change.
_WIDEN = 1e-12


# Adding phi with |phi| below this times the magnitude can leave a float score bitwise unchanged.
_TINY = 1e-15


# Options for a compiled helper that takes arrays and allocates none: compiled without numba's reference counting
# (NRT). A helper with branches otherwise counts each array argument up on entry and down on every exit, with
# atomic operations; HARP-C calls its run finders millions of times, and those counts were a third of its time.
_UNCOUNTED: dict[str, Any] = {"_nrt": False}


@numba.njit(cache=True, inline="always")
def clip(value: float) -> float:
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
def tree_size(n: int) -> int:
    size = 1
    while size < max(n, 1):
        size *= 2
    return size


@numba.njit(cache=True)
def tree_set(trees: np.ndarray, k: int, size: int, index: int, value: float) -> None:
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
def tree_build(tree: np.ndarray, size: int) -> None:
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
def search(values: np.ndarray, d: int, value: float, right: bool) -> int:
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
def add_run(
    runs: np.ndarray, n_runs: int, sorted_phi: np.ndarray, d: int, low: float, high: float, sign: int
) -> int:
    """Append the index run of ``sorted_phi[d]`` with values in [low, high], restricted to one sign (zeros
    excluded)."""
    if sign < 0:
        if low >= 0.0:
            return n_runs
        start = search(sorted_phi, d, low, False)
        stop = search(sorted_phi, d, high, True) if high < 0.0 else search(sorted_phi, d, 0.0, False)
    else:
        if high <= 0.0:
            return n_runs
        start = search(sorted_phi, d, low, False) if low > 0.0 else search(sorted_phi, d, 0.0, True)
        stop = search(sorted_phi, d, high, True)
    if stop > start:
        runs[n_runs, 0] = start
        runs[n_runs, 1] = stop
        n_runs += 1
    return n_runs


@numba.njit(cache=True, **_UNCOUNTED)
def add_moved_runs(
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
        return add_run(runs, n_runs, sorted_phi, d, -b - widen + shift, 1.0 - a + widen + shift, sign)
    if flat_low + widen < 0.0 < flat_high - widen:
        n_runs = add_run(runs, n_runs, sorted_phi, d, -np.inf, flat_low + widen + shift, sign)
        n_runs = add_run(runs, n_runs, sorted_phi, d, flat_high - widen + shift, np.inf, sign)
        return add_run(runs, n_runs, sorted_phi, d, -tiny + shift, tiny + shift, sign)
    return add_run(runs, n_runs, sorted_phi, d, -np.inf, np.inf, sign)


@numba.njit(cache=True, **_UNCOUNTED)
def runs_from(runs: np.ndarray, first: int, n_runs: int, start: int) -> int:
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
def merge_runs(runs: np.ndarray, n_runs: int) -> int:
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


ZERO = 2  # no weighted domain score would change: the gain is exactly 0.0; keyed by -id


@numba.njit(cache=True)
def tree_of(g: int, changed: np.ndarray, capped: np.ndarray) -> int:
    if changed[g] == 0:
        return ZERO
    if capped[g] > 0:
        return _CAPPED
    return _EXACT


@numba.njit(cache=True)
def finish_step(
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
        home = tree_of(g, changed, capped)
        for k in range(3):
            value = -np.inf
            if k == home:
                value = -float(g) if k == ZERO else approx[g]
            if rebuild:
                trees[k, size + g] = value
            elif trees[k, size + g] != value:
                tree_set(trees, k, size, g, value)
    if rebuild:
        for k in range(3):
            tree_build(trees[k], size)


@numba.njit(cache=True)
def exact_gain(g: int, state: Any) -> float:
    """``U(S + g) - U(S)``, as the naive definition computes it (domains summed in order)."""
    envelope_e, phi, base, total, best, harm, weights, weight_sum, current = state
    acc = 0.0
    for d in range(base.size):
        if envelope_e:
            acc += weights[d] * clip(total[d] + phi[g, d])
        else:
            acc += weights[d] * score_c(base[d], best[d], harm[d], phi[g, d])
    return acc / weight_sum - current[0]


@numba.njit(cache=True)
def _best_of(leaves: np.ndarray, count: int, state: Any, best: int, best_gain: float) -> tuple[int, float]:
    """Score ``leaves[:count]`` exactly and return the best of them and the best so far."""
    for i in range(count):
        g = leaves[i]
        gain = exact_gain(g, state)
        if _better(gain, g, best_gain, best):
            best = g
            best_gain = gain
    return best, best_gain


@numba.njit(cache=True)
def pick(trees: np.ndarray, size: int, cap: float, candidates: np.ndarray, state: Any) -> tuple[int, float]:
    """The remaining leaf with the largest exact gain (ties: smaller id).

    ``cap`` bounds the gain of every leaf in the capped tree above its key. With ``low`` a gain some leaf is
    known to reach, any leaf whose bound is below ``low - _TOLERANCE`` cannot win; the rest are scored exactly.
    """
    best = -1
    best_gain = -np.inf
    if trees[ZERO, 1] > -np.inf:
        best = int(-trees[ZERO, 1])
        best_gain = 0.0
    if trees[_EXACT, 1] > -np.inf:
        low = max(best_gain, trees[_EXACT, 1])
    elif trees[_CAPPED, 1] > -np.inf:
        # Only bounds are known: score the most promising capped leaf to learn a gain that is reached.
        g = _tree_top(trees[_CAPPED], size)
        gain = exact_gain(g, state)
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
def score_c(base_d: float, best_d: float, harm_d: float, x: float) -> float:
    """``clip(b + max(best, pos) - (harm + neg))`` for one domain, written as the naive definition computes it."""
    positive = x if x > 0.0 else 0.0
    negative = -x if x < 0.0 else 0.0
    top = best_d if best_d >= positive else positive
    return clip((base_d + top) - (harm_d + negative))
