"""The compiled HARP-C greedy (:func:`greedy_c`) and the per-domain bucket sort it starts from.

The method is described in :mod:`harp.select`. Assumes validated input.
"""

from __future__ import annotations

import numba
import numpy as np

from harp.select.kernels import (
    ZERO,
    add_moved_runs,
    add_run,
    clip,
    exact_gain,
    finish_step,
    merge_runs,
    pick,
    runs_from,
    score_c,
    search,
    tree_build,
    tree_of,
    tree_set,
    tree_size,
)


@numba.njit(cache=True)
def sort_by_domain(by_domain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
        acc += weights[d] * clip((base[d] + best[d]) - harm[d])
    return acc / weight_sum


@numba.njit(cache=True, nogil=True)
def greedy_c(phi, base, weights, weight_sum, pinned, free, sorted_phi, sorted_leaf):  # type: ignore[no-untyped-def]
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
        gains[step] = exact_gain(g, state)
        order[step] = g
        step += 1
        for d in range(n_domains):
            x = phi[g, d]
            if x > best[d]:
                best[d] = x
            if x < 0.0:
                harm[d] = harm[d] + (-x)
        current[0] = _utility_c(base, best, harm, weights, weight_sum)

    size = tree_size(n_leaves)
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
                before = score_c(base[d], best[d], harm[d], 0.0)
                after = score_c(base[d], best[d], harm[d], phi[g, d])
                acc += weights[d] * (after - before)
                if after != before:
                    count += 1
        approx[g] = acc / weight_sum
        changed[g] = count
        home = tree_of(g, changed, capped)
        trees[home, size + g] = -float(g) if home == ZERO else approx[g]
    for k in range(3):
        tree_build(trees[k], size)

    candidates = np.empty(n_leaves, dtype=np.int64)
    dirty = np.empty(n_leaves, dtype=np.int64)
    is_dirty = np.zeros(n_leaves, dtype=np.bool_)
    runs = np.empty((8, 2), dtype=np.int64)
    n_remaining = free.size
    for _ in range(free.size):
        if 2 * n_remaining < sorted_leaf.shape[1]:
            sorted_phi, sorted_leaf = _compact(sorted_phi, sorted_leaf, remaining, n_remaining)
        n_remaining -= 1
        chosen, gain = pick(trees, size, 0.0, candidates, state)
        order[step] = chosen
        gains[step] = gain
        step += 1
        remaining[chosen] = False
        for k in range(3):
            tree_set(trees, k, size, chosen, -np.inf)
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
            n_runs = add_moved_runs(runs, 0, sorted_phi, d, old_t, new_t, 0.0, -1, magnitude)
            if new_best != old_best:
                # Every leaf above the old max has its headroom cut.
                n_runs = add_run(runs, n_runs, sorted_phi, d, old_best, np.inf, 1)
            else:
                # Leaves above the max add x - best to a score that moved. Those at or below it score
                # clip(t) with or without their x, bitwise, so nothing of theirs can change: cut them out.
                first = n_runs
                n_runs = add_moved_runs(runs, n_runs, sorted_phi, d, old_t, new_t, old_best, 1, magnitude)
                n_runs = runs_from(runs, first, n_runs, search(sorted_phi, d, old_best, True))
            n_runs = merge_runs(runs, n_runs)
            scale = weights[d] / weight_sum
            for r in range(n_runs):
                for i in range(runs[r, 0], runs[r, 1]):
                    g = sorted_leaf[d, i]
                    if not remaining[g]:
                        continue
                    x = sorted_phi[d, i]
                    before_old = score_c(base[d], old_best, old_harm, 0.0)
                    after_old = score_c(base[d], old_best, old_harm, x)
                    before_new = score_c(base[d], new_best, new_harm, 0.0)
                    after_new = score_c(base[d], new_best, new_harm, x)
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
        finish_step(dirty, n_dirty, is_dirty, approx, changed, capped, remaining, trees, size)
    return order, gains
