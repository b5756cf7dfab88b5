"""Mixture validation: do the single-leaf effects predict what a union of leaves does?

Both envelopes add up effects measured one leaf at a time. Whether that is worth anything is an empirical question
about the pool and the measurement protocol, so ``harp validate`` finetunes on random unions of measured leaves
(*mixtures*), measures each union's effect exactly as a leaf's is measured, and compares it with what each
envelope predicts from the single-leaf effects. This module holds the pure parts: drawing the mixtures, the
predictions, and the report. It needs numpy only.

Notation. Leaf g, domain d; ``phi[g, d]`` the effect of leaf g on domain d (the change of the domain-d score
against the base model), ``b_d = base[d]`` the base model's score, ``w_d = weights[d] >= 0`` the domain weights,
S a set of leaves (a mixture). With ``pos = max(phi, 0)``, ``neg = max(-phi, 0)`` and ``clip`` to [0, 1], the
envelopes predict the score ``yhat_d(S)`` (DESIGN.md, "Selection semantics"):

- HARP-C: ``yhat_d(S) = clip(b_d + max_{g in S} pos[g, d] - sum_{g in S} neg[g, d])``
- HARP-E: ``yhat_d(S) = clip(b_d + sum_{g in S} phi[g, d])``

and so the *predicted effect* of S on domain d, ``p_d(S) = yhat_d(S) - b_d``, comparable with the *measured
effect* ``x_d(S)`` of a model finetuned on the union of S's leaves. The utility gain of an effect vector e is
``G(e) = sum_d w_d e_d / sum_d w_d``; for a prediction it equals ``U(S) - U(empty)`` of the envelope.

The report compares, per envelope and over the mixtures, the predicted gains ``G(p(S))`` with the measured gains
``G(x(S))`` (Pearson correlation, RMSE, mean error), the per-domain effects (RMSE over the weighted domains) and
their signs (per domain, the share of mixtures where ``sign(p_d(S)) == sign(x_d(S))``, an effect within
``SIGN_TOLERANCE`` of 0 counting as sign 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harp._validation import (
    check_base,
    check_envelope,
    check_leaf_ids,
    check_matrix,
    check_weights,
    is_integer,
)
from harp.objective import weighted_effect
from harp.select import predicted_scores

__all__ = [
    "SIGN_TOLERANCE",
    "SPREAD_TOLERANCE",
    "StoredMixtures",
    "draw_mixtures",
    "mixture_report",
    "predict_mixture",
    "predicted_utility_gain",
    "stored_mixtures",
    "utility_gain",
]

#: An effect whose magnitude is below this counts as sign 0 in the sign agreement.
SIGN_TOLERANCE: float = 1e-12
#: Gains whose range (max - min) is below this have no spread, so their correlation is undefined. Effects are
#: score changes in [-1, 1], so an absolute tolerance suffices; it absorbs rounding (0.3 - 0.1 != 0.2).
SPREAD_TOLERANCE: float = 1e-12


def _check_integer(value: Any, name: str, *, minimum: int) -> int:
    if not is_integer(value):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def draw_mixtures(measured_leaves: Any, sizes: Sequence[int], *, seed: int = 0) -> list[np.ndarray]:
    """Draw random mixtures: sets of distinct measured leaves of the given sizes.

    Mixture k holds ``sizes[k]`` leaves drawn uniformly without replacement from ``measured_leaves`` with the
    generator ``np.random.default_rng([seed, k])``, so a mixture depends on its seed and position only, and adding
    sizes at the end leaves the earlier mixtures as they were. The pool is sorted first, so the order in which
    ``measured_leaves`` lists the leaves does not matter.

    Parameters
    ----------
    measured_leaves : array-like of int, shape (n_measured,)
        Distinct, non-negative leaf ids to draw from.
    sizes : sequence of int
        The number of leaves of each mixture, each in 1..n_measured.
    seed : int, default 0
        Non-negative seed.

    Returns
    -------
    list of ndarray of int64
        One sorted array of leaf ids per entry of ``sizes``.

    Raises
    ------
    ValueError
        Naming the argument: leaf ids that are not integers, negative or repeated; a size below 1 or above the
        number of measured leaves; a negative seed.
    """
    pool = np.asarray(measured_leaves)
    if pool.size == 0:
        pool = np.zeros(0, dtype=np.int64)
    if pool.ndim != 1 or not np.issubdtype(pool.dtype, np.integer):
        raise ValueError(
            f"measured_leaves must be a 1-D sequence of integer leaf ids, got {measured_leaves!r}"
        )
    if pool.size and pool.min() < 0:
        raise ValueError(f"measured_leaves must be >= 0, got leaf {int(pool.min())}")
    pool = np.sort(pool.astype(np.int64))
    repeated = pool[1:][pool[1:] == pool[:-1]]
    if repeated.size:
        raise ValueError(f"measured_leaves lists leaf {int(repeated[0])} more than once")
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence | np.ndarray):
        raise ValueError(f"sizes must be a sequence of integers, got {sizes!r}")
    checked = [_check_integer(size, f"sizes[{k}]", minimum=1) for k, size in enumerate(sizes)]
    for k, size in enumerate(checked):
        if size > pool.size:
            raise ValueError(f"sizes[{k}] is {size} but measured_leaves holds only {pool.size} leaves")
    seed_value = _check_integer(seed, "seed", minimum=0)
    return [
        np.sort(np.random.default_rng([seed_value, k]).choice(pool, size=size, replace=False))
        for k, size in enumerate(checked)
    ]


def predict_mixture(phi: Any, base: Any, leaves: Any, *, envelope: str) -> np.ndarray:
    """The envelope's predicted effect ``p_d(S) = yhat_d(S) - b_d`` of the set S = ``leaves`` on every domain.

    Parameters
    ----------
    phi : array-like of shape (n_leaves, n_domains)
        Single-leaf effects ``phi[g, d]``; finite.
    base : array-like of shape (n_domains,)
        Base scores ``b_d`` in [0, 1].
    leaves : array-like of int
        The distinct leaf ids of S, each in 0..n_leaves-1 (empty: every prediction is 0).
    envelope : {"C", "E", "harp-c", "harp-e"}
        Any case.

    Returns
    -------
    ndarray of shape (n_domains,)
        The predicted change of each domain's score, in ``[-b_d, 1 - b_d]``.

    Raises
    ------
    ValueError
        Naming the argument, as :func:`harp.select` does.
    """
    envelope_code = check_envelope(envelope)
    phi_array = check_matrix(phi, "phi")
    base_array = check_base(base, phi_array.shape[1])
    leaf_ids = check_leaf_ids(leaves, "leaves", phi_array.shape[0])
    return predicted_scores(phi_array, base_array, leaf_ids, envelope_code) - base_array


def utility_gain(effects: Any, weights: Any = None) -> np.ndarray:
    """The utility gain ``G(e) = sum_d w_d e_d / sum_d w_d`` of each row of effects.

    Parameters
    ----------
    effects : array-like of shape (n_mixtures, n_domains)
        Measured or predicted effects; finite.
    weights : array-like of shape (n_domains,), optional
        ``w_d >= 0``, not all zero; all ones by default.

    Returns
    -------
    ndarray of shape (n_mixtures,)
    """
    matrix = check_matrix(effects, "effects")
    weight_array = check_weights(weights, matrix.shape[1])
    return weighted_effect(matrix, weight_array)


def predicted_utility_gain(phi: Any, base: Any, leaves: Any, *, envelope: str, weights: Any = None) -> float:
    """The envelope's predicted utility gain ``G(p(S)) = U(S) - U(empty)`` of the set S = ``leaves``.

    Parameters are those of :func:`predict_mixture`, plus ``weights`` (shape (n_domains,), ``w_d >= 0``, not all
    zero; all ones by default).
    """
    predicted = predict_mixture(phi, base, leaves, envelope=envelope)
    weight_array = check_weights(weights, predicted.shape[0])
    return float(weighted_effect(predicted[None, :], weight_array)[0])


def _sign(values: np.ndarray) -> np.ndarray:
    return np.where(np.abs(values) < SIGN_TOLERANCE, 0.0, np.sign(values))


def _correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation, or None when it is undefined (fewer than 2 values, or one side without spread)."""
    if x.size < 2 or np.ptp(x) <= SPREAD_TOLERANCE or np.ptp(y) <= SPREAD_TOLERANCE:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    return float(np.clip(float(dx @ dy) / np.sqrt(sxx * syy), -1.0, 1.0))


def _rmse(difference: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(difference))))


def mixture_report(measured: Any, predicted: Mapping[str, Any], weights: Any = None) -> dict[str, Any]:
    """How well each envelope's predictions match the measured effects of the mixtures.

    Parameters
    ----------
    measured : array-like of shape (n_mixtures, n_domains)
        Measured effect ``x_d(S)`` of each mixture S on each domain; finite, at least one mixture.
    predicted : mapping of str to array-like of shape (n_mixtures, n_domains)
        Per envelope (the key is its label, for example ``"C"`` and ``"E"``), the predicted effects ``p_d(S)``
        (see :func:`predict_mixture`), rows in the order of ``measured``.
    weights : array-like of shape (n_domains,), optional
        ``w_d >= 0``, not all zero; all ones by default. Only domains with ``w_d > 0`` enter the effect RMSE
        and the mean sign agreement.

    Returns
    -------
    dict
        JSON-serialisable (floats, ints, lists, None)::

            n_mixtures, n_domains : int
            weights : list of float, (n_domains,)
            measured_gain : list of float, (n_mixtures,)    G(x(S)) of each mixture
            envelopes : {label: {
                predicted_gain : list of float, (n_mixtures,)  G(p(S))
                gain_correlation : float or None    Pearson r of predicted vs measured gain; None when
                                                    undefined (fewer than 2 mixtures, or a
                                                    range below SPREAD_TOLERANCE)
                gain_rmse : float                   RMSE of predicted vs measured gain
                gain_bias : float                   mean of predicted - measured gain (> 0: over-credits)
                effect_rmse : float                 RMSE of p_d(S) - x_d(S) over mixtures and weighted domains
                sign_agreement : list of float, (n_domains,)   share of mixtures with sign(p_d) == sign(x_d)
                mean_sign_agreement : float         mean of sign_agreement over the weighted domains
            }}

    Raises
    ------
    ValueError
        Naming the argument: not 2-D, no mixture, NaN or inf, a prediction whose shape differs from
        ``measured``'s, no envelope or an empty label, bad weights.
    """
    measured_array = check_matrix(measured, "measured")
    n_mixtures, n_domains = measured_array.shape
    if n_mixtures == 0:
        raise ValueError("measured must hold at least one mixture, got 0 rows")
    weight_array = check_weights(weights, n_domains)
    if not isinstance(predicted, Mapping) or not predicted:
        raise ValueError(
            f"predicted must be a non-empty mapping of envelope label to predictions, got {predicted!r}"
        )
    predictions: dict[str, np.ndarray] = {}
    for label, value in predicted.items():
        if not isinstance(label, str) or not label:
            raise ValueError(f"predicted: envelope labels must be non-empty strings, got {label!r}")
        array = check_matrix(value, f"predicted[{label!r}]")
        if array.shape != measured_array.shape:
            raise ValueError(
                f"predicted[{label!r}] has shape {array.shape} but measured has shape {measured_array.shape}"
            )
        predictions[label] = array

    weighted = weight_array > 0
    measured_gain = weighted_effect(measured_array, weight_array)
    measured_sign = _sign(measured_array)
    envelopes: dict[str, dict[str, Any]] = {}
    for label, array in predictions.items():
        gain = weighted_effect(array, weight_array)
        agreement = (_sign(array) == measured_sign).mean(axis=0)
        envelopes[label] = {
            "predicted_gain": gain.tolist(),
            "gain_correlation": _correlation(gain, measured_gain),
            "gain_rmse": _rmse(gain - measured_gain),
            "gain_bias": float(np.mean(gain - measured_gain)),
            "effect_rmse": _rmse(array[:, weighted] - measured_array[:, weighted]),
            "sign_agreement": [float(share) for share in agreement],
            "mean_sign_agreement": float(agreement[weighted].mean()),
        }
    return {
        "n_mixtures": int(n_mixtures),
        "n_domains": int(n_domains),
        "weights": weight_array.tolist(),
        "measured_gain": measured_gain.tolist(),
        "envelopes": envelopes,
    }


@dataclass(frozen=True)
class StoredMixtures:
    """Rows of the store's ``mixtures`` table as one row per mixture (sorted by ``mixture_id``).

    ``measured`` and ``predicted[envelope]`` ("C", "E") have shape (n_mixtures, n_domains): the inputs of
    :func:`mixture_report`.
    """

    mixture_id: np.ndarray
    leaves: list[list[int]]
    n_points: np.ndarray
    run_id: list[Any]
    measured: np.ndarray
    predicted: dict[str, np.ndarray]


def stored_mixtures(columns: Mapping[str, Sequence[Any]], n_domains: int) -> StoredMixtures:
    """Reshape the ``mixtures`` table's columns (``Store.mixtures(key).to_pydict()``, one configuration) into
    per-mixture arrays.

    Raises
    ------
    ValueError
        A mixture without exactly one row for each of the ``n_domains`` domains (a damaged table).
    """
    mixture = np.asarray(columns["mixture_id"], dtype=np.int64)
    domain = np.asarray(columns["domain_id"], dtype=np.int64)
    order = np.lexsort((domain, mixture))
    ids, first, counts = np.unique(mixture[order], return_index=True, return_counts=True)
    if (counts != n_domains).any() or not np.array_equal(
        domain[order], np.tile(np.arange(n_domains), ids.size)
    ):
        raise ValueError(f"the stored mixtures do not each have one row per domain ({n_domains} domains)")
    rows = order[first]  # the first row of each mixture carries its leaves, points and run

    def matrix(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)[order].reshape(ids.size, n_domains)

    return StoredMixtures(
        mixture_id=ids,
        leaves=[json.loads(columns["leaves"][i]) for i in rows],
        n_points=np.asarray(columns["n_points"], dtype=np.int64)[rows],
        run_id=[columns["run_id"][i] for i in rows],
        measured=matrix("phi"),
        predicted={"C": matrix("predicted_c"), "E": matrix("predicted_e")},
    )
