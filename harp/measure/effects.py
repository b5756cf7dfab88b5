"""A leaf's measured effects: paired per-question differences averaged per domain (:func:`paired_effects`).

Notation. Leaf g, domain d, proxy-eval question i with domain ``d(i)``. The base model scores ``s0_i`` in [0, 1]
on question i; the model with the adapter trained on leaf g scores ``s_gi``. The measured main effect of leaf g on
domain d is the mean paired difference::

    phi[g, d] = mean_{i: d(i) = d} (s_gi - s0_i)

and its sampling variance is the variance of that mean, ``var_i(s_gi - s0_i) / n_d`` (sample variance, ddof=1).
With a single question in a domain the sample variance is undefined; we then report ``1 / n_d``, the largest
variance a mean of differences in [-1, 1] can have, so a one-question domain never looks certain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from harp.data import EvalSet, TrainExamples
from harp.measure.config import MeasureConfig
from harp.measure.evaluation import evaluate
from harp.measure.model import AdapterModel
from harp.measure.training import train_adapter

__all__ = ["LeafMeasurement", "measure_leaf", "paired_effects"]


def paired_effects(
    scores: np.ndarray, base: np.ndarray, domain: np.ndarray, n_domains: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi, its sampling variance and the question count of each domain from paired per-question scores.

    Parameters
    ----------
    scores, base : ndarray of shape (n_questions,)
        Scores with the adapter and of the base model.
    domain : ndarray of shape (n_questions,)
        Domain id of each question.
    n_domains : int

    Returns
    -------
    phi, variance : ndarray of shape (n_domains,)
        Mean paired difference and the variance of that mean (``1 / n_d`` when n_d == 1; 0 and 0 when n_d == 0).
    n_eval : ndarray of shape (n_domains,), int64
    """
    difference = np.asarray(scores, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    count = np.bincount(domain, minlength=n_domains).astype(np.int64)
    safe = np.maximum(count, 1)
    phi = np.bincount(domain, weights=difference, minlength=n_domains) / safe
    squares = np.bincount(domain, weights=(difference - phi[domain]) ** 2, minlength=n_domains)
    variance = np.where(count > 1, squares / np.maximum(count - 1, 1) / safe, 1.0 / safe)
    variance[count == 0] = 0.0
    return phi, variance, count


@dataclass
class LeafMeasurement:
    """One leaf's measurement: phi and variance of shape (n_domains,), per-question scores and timings."""

    phi: np.ndarray
    variance: np.ndarray
    n_eval: np.ndarray
    scores: np.ndarray
    losses: list[float]
    timings: dict[str, float]


def measure_leaf(
    model: AdapterModel,
    examples: TrainExamples,
    eval_set: EvalSet,
    base: np.ndarray,
    config: MeasureConfig,
    *,
    seed: int = 0,
    background: TrainExamples = (),
) -> LeafMeasurement:
    """Train a fresh adapter on one leaf's examples, evaluate it, and pair its scores with ``base``.

    With a background protocol, ``base`` is the reference: the scores of the run on ``background`` alone
    (:meth:`harp.measure.worker.Worker.reference` computes it), and ``background`` is that run's background.
    """
    started = time.perf_counter()
    losses = train_adapter(model, examples, config, seed=seed, background=background)
    trained = time.perf_counter()
    scores = evaluate(model, eval_set, config)
    done = time.perf_counter()
    phi, variance, n_eval = paired_effects(scores, base, eval_set.domain, eval_set.n_domains)
    timings = {"train_s": trained - started, "eval_s": done - trained}
    return LeafMeasurement(phi, variance, n_eval, scores, losses, timings)
