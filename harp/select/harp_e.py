"""The compiled HARP-E greedy (:func:`greedy_e`): float32 screening passes and the coded plateau scan.

The method and where its time goes are described in :mod:`harp.select`. Assumes validated input.
"""

from __future__ import annotations

import numba
import numpy as np

from harp.select.kernels import clip, exact_gain

# Summing D weighted scores in [0, 1] and dividing by their weight sum rounds by at most about (D + 1) float64 eps
# in utility units; a drop in utility larger than this times (D + 2) (a margin of 16 over that) cannot be lost to
# rounding, so the computed gain is then strictly negative.
_LOST = 16 * 2.220446049250313e-16


# The low 32 bits of an int64, where :func:`deepest` packs a domain under a depth.
_LOW_BITS = (1 << 32) - 1


@numba.njit(cache=True)
def _utility_e(total: np.ndarray, weights: np.ndarray, weight_sum: float) -> float:
    acc = 0.0
    for d in range(total.size):
        acc += weights[d] * clip(total[d])
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
    """The remaining leaf with the largest gain and its gain, every leaf scored as :func:`exact_gain` does.

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
            acc[j] += w * clip(t + row[j])
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
    best float32 score is then scored exactly (:func:`exact_gain`, in id order, so ties go to the smaller id);
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
            gain = exact_gain(g, state)
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
def deepest(sure, code, g):  # type: ignore[no-untyped-def]
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
        w = deepest(sure, code, g)
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
        if lowest > near[w] and exact_gain(g, state) == 0.0:
            return g, 0.0
    return -1, -np.inf


@numba.njit(cache=True, nogil=True)
def greedy_e(phi, base, weights, weight_sum, pinned, free):  # type: ignore[no-untyped-def]
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
        gains[step] = exact_gain(g, state)
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
