"""Active refinement: which unmeasured leaves to measure next (``harp next``, ``harp measure --next K``).

Notation as in :mod:`harp.select`: leaf g, domain d, posterior mean ``phi[g, d]`` and sd ``sigma[g, d]``, base
score ``b_d``, weights ``w_d``, and ``U(S)`` the weighted mean predicted score of a set S of leaves under an
envelope (HARP-C or HARP-E). S is the current selection: ``order[:cut]`` of :func:`harp.select` run on the
posterior means (no point budget: the budget trims points, not the decision of which leaves help).

The rule: the expected value of measuring each leaf for its in/out decision. For leaf g, let ``R = S - {g}`` be the
rest of the selection, with every other leaf at its posterior mean. The value of g to the selection is::

    Delta_g(phi_g) = U(R + {g}) - U(R)

and, locally, the selection should hold g exactly when ``Delta_g > 0``. Measuring g reveals ``phi_g``; under the
posterior ``phi_g ~ N(phi[g], diag(sigma[g]^2))``, the expected gain of revising g's in/out decision once
``phi_g`` is known, over keeping the current decision, is the score::

    score_g = E[max(Delta_g, 0)] - E[Delta_g]    if g is in S
    score_g = E[max(Delta_g, 0)]                 if g is not in S        (both >= 0)

It is 0 for a certain leaf (sd 0) and for a leaf so far from the boundary that no plausible value of its effect
flips the decision, and it grows with the sd and with the closeness to the boundary (``|E Delta_g|`` small): a leaf
with a large sd right at the cut scores high, a leaf with a tiny sd far from it scores about 0. Where ``Delta_g``
is linear in ``phi_g`` (HARP-E away from clipping) and the current decision follows the sign of its mean,
``Delta_g ~ N(m, s^2)`` and the score is the textbook expected value of perfect information
``s * pdf(m / s) - |m| * cdf(-|m| / s)``. The clipping of HARP-E and the max of HARP-C are handled exactly
because the expectation is taken by Monte Carlo: ``n_samples`` antithetic standard-normal draws (seeded, shared by
every leaf), so the scores are deterministic for a given seed. Under HARP-C a helpful leaf whose effect stays
below the best positive effect in S cannot change the prediction and scores 0. ``envelope="both"`` (the default)
adds the C and E scores, so a leaf that matters to either selection the app shows is worth measuring.

Candidates are the leaves without a measurement (on any domain) and not excluded. They are ranked by score,
largest first, ties to the smaller leaf id; asking for more leaves than there are candidates returns all of them.
Only single-leaf effects are scored (measuring g also moves its siblings' posteriors; that is ignored), which keeps
the rule O(L x D x n_samples) and cheap enough to rerun after every measurement.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from harp._validation import check_base, check_matrix, check_weights, is_integer
from harp.objective import default_weights
from harp.select import select

if TYPE_CHECKING:
    from harp.store import SelectionInputs, Store

__all__ = ["NextLeaves", "leaf_scores", "next_leaves"]

ActiveEnvelope = Literal["C", "E", "both"]

_CHUNK_ELEMENTS = 1 << 22  # leaves x samples x domains per block, about 32 MB of float64


@dataclass(frozen=True)
class NextLeaves:
    """The outcome of :func:`next_leaves`.

    Attributes
    ----------
    leaves : ndarray of shape (n_chosen,), int64
        Leaf ids to measure next, best first (``n_chosen = min(k, n_candidates)``).
    scores : ndarray of shape (n_chosen,)
        Their scores (expected gain in utility from revising the leaf's decision once measured).
    score : ndarray of shape (n_leaves,)
        The score of every leaf; NaN for leaves that are not candidates (measured or excluded).
    n_candidates : int
        Number of leaves that could be chosen.
    cuts : dict
        The cut of the current selection per envelope scored (``{"C": 3, "E": 5}``).
    """

    leaves: np.ndarray
    scores: np.ndarray
    score: np.ndarray
    n_candidates: int
    cuts: dict[str, int] = field(default_factory=dict)


def _envelopes(envelope: str) -> list[str]:
    if not isinstance(envelope, str) or envelope.strip().upper().removeprefix("HARP-") not in (
        "C",
        "E",
        "BOTH",
    ):
        raise ValueError(f"envelope must be 'C', 'E' or 'both', got {envelope!r}")
    name = envelope.strip().upper().removeprefix("HARP-")
    return ["C", "E"] if name == "BOTH" else [name]


def _standard_normals(n_samples: int, n_domains: int, seed: int) -> np.ndarray:
    if not is_integer(n_samples) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    half = np.random.default_rng(seed).standard_normal((int(n_samples) // 2, n_domains))
    return np.concatenate([half, -half])  # antithetic: the draws have mean exactly 0


def _envelope_scores(
    phi: np.ndarray,
    sd: np.ndarray,
    base: np.ndarray,
    weights: np.ndarray,
    in_selection: np.ndarray,
    candidates: np.ndarray,
    envelope: str,
    normals: np.ndarray,
) -> np.ndarray:
    """The score of each candidate's in/out decision under one envelope; assumes valid input."""
    share = weights / weights.sum()
    n_samples, n_domains = normals.shape
    chosen = np.flatnonzero(in_selection)
    scores = np.zeros(candidates.size)
    if envelope == "E":
        total = phi[chosen].sum(axis=0)
    else:
        pos, neg = np.maximum(phi, 0.0), np.maximum(-phi, 0.0)
        neg_total = neg[chosen].sum(axis=0)
        # Best and second-best positive effect over S per domain, to take one leaf out in O(1).
        top = np.zeros((2, n_domains))
        top_leaf = np.full(n_domains, -1)
        if chosen.size:
            ranked = np.sort(pos[chosen], axis=0)[::-1]
            top[0] = ranked[0]
            top[1] = ranked[1] if chosen.size > 1 else 0.0
            top_leaf = chosen[np.argmax(pos[chosen], axis=0)]
    step = max(1, _CHUNK_ELEMENTS // max(1, n_samples * n_domains))
    for start in range(0, candidates.size, step):
        g = candidates[start : start + step]
        inside = in_selection[g][:, None]
        draws = phi[g][:, None, :] + sd[g][:, None, :] * normals[None, :, :]  # (leaves, samples, domains)
        if envelope == "E":
            rest = total[None, :] - np.where(inside, phi[g], 0.0)  # sum over R of phi
            without = np.clip(base + rest, 0.0, 1.0)
            with_g = np.clip(base + rest[:, None, :] + draws, 0.0, 1.0)
        else:
            rest_max = np.where(inside & (top_leaf[None, :] == g[:, None]), top[1], top[0])
            rest_neg = neg_total[None, :] - np.where(inside, neg[g], 0.0)
            without = np.clip(base + rest_max - rest_neg, 0.0, 1.0)
            best = np.maximum(rest_max[:, None, :], np.maximum(draws, 0.0))
            with_g = np.clip(base + best - rest_neg[:, None, :] - np.maximum(-draws, 0.0), 0.0, 1.0)
        delta = (with_g - without[:, None, :]) @ share  # (leaves, samples)
        kept = np.where(in_selection[g], delta.mean(axis=1), 0.0)  # the current decision's expected value
        scores[start : start + g.size] = np.maximum(delta, 0.0).mean(axis=1) - kept
    return np.maximum(scores, 0.0)  # rounding can leave -1e-18


def leaf_scores(
    phi: Any,
    sd: Any,
    base: Any,
    *,
    envelope: ActiveEnvelope | str = "both",
    weights: Any = None,
    candidates: Any = None,
    n_samples: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, int]]:
    """The active-refinement score of every leaf (see the module docstring).

    Parameters
    ----------
    phi, sd : array-like of shape (n_leaves, n_domains)
        Posterior mean and standard deviation (sd >= 0).
    base : array-like of shape (n_domains,)
        Base scores in [0, 1].
    envelope : {"C", "E", "both"}, default "both"
    weights : array-like of shape (n_domains,), optional
        Domain weights (default all ones).
    candidates : array-like of bool, shape (n_leaves,), optional
        Score only these leaves (the others get NaN). Default: all.
    n_samples : int, default 64
        Monte Carlo draws per leaf (antithetic pairs, so an odd number is rounded down to even).
    seed : int, default 0

    Returns
    -------
    score : ndarray of shape (n_leaves,)
    cuts : dict
        The cut of the current selection per envelope.
    """
    phi = check_matrix(phi, "phi")
    sd_array = check_matrix(sd, "sd")
    if sd_array.shape != phi.shape:
        raise ValueError(f"sd has shape {sd_array.shape} but phi has shape {phi.shape}")
    if (sd_array < 0).any():
        raise ValueError("sd must be >= 0 everywhere")
    base = check_base(base, phi.shape[1])
    weights = check_weights(weights, phi.shape[1])
    n_leaves = phi.shape[0]
    mask = np.ones(n_leaves, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    if mask.shape != (n_leaves,):
        raise ValueError(f"candidates has shape {mask.shape} but phi has {n_leaves} leaves")
    normals = _standard_normals(n_samples, phi.shape[1], seed)
    ids = np.flatnonzero(mask)
    score = np.full(n_leaves, np.nan)
    score[ids] = 0.0
    cuts: dict[str, int] = {}
    for name in _envelopes(envelope):
        result = select(phi, base, envelope=name, weights=weights)
        cuts[name] = int(result.cut)
        in_selection = np.zeros(n_leaves, dtype=bool)
        in_selection[result.order[: result.cut]] = True
        score[ids] += _envelope_scores(phi, sd_array, base, weights, in_selection, ids, name, normals)
    return score, cuts


def _inputs(source: Store | SelectionInputs | str | os.PathLike[str]) -> tuple[SelectionInputs, np.ndarray]:
    """Selection inputs and the leaves measured so far (posterior flags and raw measurements)."""
    from harp.store import SelectionInputs, Store

    if isinstance(source, SelectionInputs):
        return source, np.asarray(np.asarray(source.measured, dtype=bool).any(axis=1))
    store = source if isinstance(source, Store) else Store.open(source, read_only=True)
    inputs = store.selection_inputs()
    measured: np.ndarray = np.asarray(np.asarray(inputs.measured, dtype=bool).any(axis=1))
    raw = store.measured_leaves()
    measured[raw[raw < measured.size]] = True
    return inputs, measured


def next_leaves(
    source: Store | SelectionInputs | str | os.PathLike[str],
    k: int,
    *,
    envelope: ActiveEnvelope | str = "both",
    weights: Any = None,
    exclude: Any = None,
    n_samples: int = 64,
    seed: int = 0,
) -> NextLeaves:
    """The ``k`` unmeasured leaves whose measurement would most change the current selection.

    Parameters
    ----------
    source : Store, SelectionInputs, or path of a store
        Posterior effects (``harp infer``), base scores, active flags and which leaves are measured. A leaf with
        a measurement in the store (under any configuration) or flagged measured in the effects is never chosen.
    k : int
        How many leaves to return at most (>= 0).
    envelope : {"C", "E", "both"}, default "both"
        Score the decision under this selection; "both" adds the two.
    weights : array-like of shape (n_domains,), optional
        Domain weights; default: active domains 1, inactive 0 (all 1 when none is active).
    exclude : sequence of int, optional
        Leaves never to choose (for example leaves already queued elsewhere).
    n_samples, seed : int
        Monte Carlo draws per leaf and their seed (see the module docstring).

    Returns
    -------
    NextLeaves
    """
    if not is_integer(k) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    inputs, measured = _inputs(source)
    if weights is None:
        weights = default_weights(inputs.active)
    candidates = ~measured
    if exclude is not None:
        excluded = np.asarray(exclude, dtype=np.int64).ravel()
        bad = excluded[(excluded < 0) | (excluded >= inputs.n_leaves)]
        if bad.size:
            raise ValueError(f"exclude must hold leaf ids in 0..{inputs.n_leaves - 1}, got {int(bad[0])}")
        candidates[excluded] = False
    score, cuts = leaf_scores(
        inputs.phi,
        inputs.sd,
        inputs.base,
        envelope=envelope,
        weights=weights,
        candidates=candidates,
        n_samples=n_samples,
        seed=seed,
    )
    ids = np.flatnonzero(candidates)
    ranked = ids[np.lexsort((ids, -score[ids]))][: int(k)]
    return NextLeaves(
        leaves=ranked.astype(np.int64),
        scores=score[ranked],
        score=score,
        n_candidates=int(ids.size),
        cuts=cuts,
    )
