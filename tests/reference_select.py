"""The straightforward greedy of DESIGN.md, kept as the reference the fast path must match exactly.

At every step it recomputes every remaining leaf's utility U(S + g) from scratch, vectorised over leaves.
Scores are summed over domains in order (not pairwise), the same floating-point expression as the fast path.
"""

from __future__ import annotations

import numpy as np


def _utility(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    acc = np.zeros(scores.shape[:-1])
    for d in range(scores.shape[-1]):
        acc = acc + weights[d] * scores[..., d]
    return acc / weights.sum()


def reference_order(phi, base, weights, envelope, pinned=(), excluded=(), max_steps=None):
    """Greedy order and gains by the naive definition (only the first ``max_steps`` greedy steps if given)."""
    phi = np.asarray(phi, dtype=np.float64)
    base = np.asarray(base, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n_leaves, n_domains = phi.shape
    positive, negative = np.maximum(phi, 0.0), np.maximum(-phi, 0.0)
    total = np.asarray(base, dtype=np.float64).copy()
    best = np.zeros(n_domains)
    harm = np.zeros(n_domains)

    def scores_with(rows):
        if envelope == "E":
            return np.clip(total + phi[rows], 0.0, 1.0)
        return np.clip((base + np.maximum(best, positive[rows])) - (harm + negative[rows]), 0.0, 1.0)

    def current():
        if envelope == "E":
            return _utility(np.clip(total, 0.0, 1.0), weights)
        return _utility(np.clip((base + best) - harm, 0.0, 1.0), weights)

    def add(g):
        nonlocal total, best, harm
        total = total + phi[g]
        best = np.maximum(best, positive[g])
        harm = harm + negative[g]

    order, gains = [], []
    for g in pinned:
        gains.append(float(_utility(scores_with(np.array([g])), weights)[0] - current()))
        order.append(int(g))
        add(g)
    remaining = np.array(sorted(set(range(n_leaves)) - set(pinned) - set(excluded)), dtype=np.int64)
    while remaining.size and (max_steps is None or len(order) - len(pinned) < max_steps):
        step_gains = _utility(scores_with(remaining), weights) - current()
        i = int(np.argmax(step_gains))  # first maximum: remaining is sorted, so the smaller id wins ties
        order.append(int(remaining[i]))
        gains.append(float(step_gains[i]))
        add(remaining[i])
        remaining = np.delete(remaining, i)
    return np.array(order, dtype=np.int64), np.array(gains)
