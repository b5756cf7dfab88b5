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
:func:`sort_by_domain`) can change; when the running max of ``pos`` rises, the leaves above the old max are
updated too; when only the harm rises, the leaves at or below the max are skipped (their term is ``clip(t)``
with or without them, bitwise), which at 50,000 leaves x 64 cut the leaves visited from 48 to 12 million.
A max-tree over the approximate gains gives the best leaf; every leaf within ``_TOLERANCE`` of it is
then scored exactly and the true best (ties to the smaller id) is taken. Leaves whose every weighted domain score
is bitwise unchanged by adding them have a gain of exactly 0.0; they sit in a second tree ordered by id, so long
plateaus of zero gains cost O(log L) a step.

HARP-E (see :func:`greedy_e`) has two kinds of step. While some leaf can raise a weighted score, a full pass
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

from harp.select.selection import (
    Selection,
    SortedEffects,
    best_prefix_cut,
    greedy_order,
    predicted_scores,
    select,
    sort_effects,
    warm_up,
    with_budget,
)

__all__ = [
    "Selection",
    "SortedEffects",
    "best_prefix_cut",
    "greedy_order",
    "predicted_scores",
    "select",
    "sort_effects",
    "warm_up",
    "with_budget",
]
