"""The measured sub-tree of one domain and the REML log-likelihood on it, maximised over the variances.

The model and the estimator are written out in :mod:`harp.bayes`. Assumes checked input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEAF, PARENT, LARGE = 0, 1, 2


_LOG_2PI = math.log(2.0 * math.pi)


_GRID_DECADES = (-4.0, 1.0)


_GRID_POINTS = 9


_REFINE_ROUNDS = 4


_MAX_BATCH_ELEMENTS = 2_000_000  # grid points x measurements evaluated at once


@dataclass(frozen=True)
class Design:
    """Measured leaves sorted by (large, parent), with the segment starts of each level."""

    leaves: np.ndarray  # measured leaf ids, sorted by (large, parent, leaf)
    leaf_starts: np.ndarray  # start of each measured parent's run in `leaves`
    parents: np.ndarray  # measured parent ids, in run order
    parent_starts: np.ndarray  # start of each measured large node's run in `parents`
    larges: np.ndarray  # measured large-node ids
    replicated: tuple[bool, bool, bool]  # some node has >= 2 measured children at this level


def measured_design(measured_leaves: np.ndarray, leaf_parent: np.ndarray, parent_large: np.ndarray) -> Design:
    parent = leaf_parent[measured_leaves]
    large = parent_large[parent]
    order = np.lexsort((measured_leaves, parent, large))
    leaves, parent, large = measured_leaves[order], parent[order], large[order]
    leaf_starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
    parents = parent[leaf_starts]
    parent_of_large = large[leaf_starts]
    parent_starts = np.flatnonzero(np.r_[True, parent_of_large[1:] != parent_of_large[:-1]])
    larges = parent_of_large[parent_starts]
    replicated = (
        bool(np.diff(np.r_[leaf_starts, leaves.size]).max() >= 2),
        bool(np.diff(np.r_[parent_starts, parents.size]).max() >= 2),
        bool(larges.size >= 2),
    )
    return Design(leaves, leaf_starts, parents, parent_starts, larges, replicated)


def _collapse(values: np.ndarray, variances: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pool children into their parents: log R per parent, pooled precision W and mean (all batched, axis 1)."""
    weights = 1.0 / variances
    precision = np.add.reduceat(weights, starts, axis=1)
    weighted = np.add.reduceat(np.broadcast_to(weights * values, weights.shape), starts, axis=1)
    mean = weighted / precision
    counts = np.diff(np.r_[starts, variances.shape[1]])
    segment = np.repeat(np.arange(starts.size), counts)
    residual = np.add.reduceat(weights * (values - mean[:, segment]) ** 2, starts, axis=1)
    log_sum = np.add.reduceat(np.log(variances), starts, axis=1)
    log_r = -0.5 * (counts - 1) * _LOG_2PI - 0.5 * log_sum - 0.5 * np.log(precision) - 0.5 * residual
    return log_r.sum(axis=1), precision, mean


def reml(y: np.ndarray, v: np.ndarray, design: Design, tau2: np.ndarray) -> np.ndarray:
    """REML log-likelihood for each row of ``tau2`` (shape (G, 3): leaf, parent, large variances)."""
    out = np.empty(tau2.shape[0])
    batch = max(1, _MAX_BATCH_ELEMENTS // max(1, y.size))
    for start in range(0, tau2.shape[0], batch):
        t = tau2[start : start + batch]
        total, precision, mean = _collapse(y[None, :], v[None, :] + t[:, LEAF, None], design.leaf_starts)
        part, precision, mean = _collapse(mean, 1.0 / precision + t[:, PARENT, None], design.parent_starts)
        total += part
        part, _, _ = _collapse(mean, 1.0 / precision + t[:, LARGE, None], np.zeros(1, dtype=np.int64))
        out[start : start + batch] = total + part
    return out


def blocks(replicated: tuple[bool, bool, bool]) -> tuple[list[list[int]], list[int]]:
    """Identifiable blocks of consecutive levels (closed by a replicated level) and the open top block."""
    closed: list[list[int]] = []
    current: list[int] = []
    for level in (LEAF, PARENT, LARGE):
        current.append(level)
        if replicated[level]:
            closed.append(current)
            current = []
    return closed, current


def expand(block_values: np.ndarray, blocks: list[list[int]], fixed: np.ndarray) -> np.ndarray:
    """Per-level variances (G, 3) from per-block totals (G, n_blocks), each block split equally."""
    tau2 = np.repeat(fixed[None, :], block_values.shape[0], axis=0)
    for column, block in enumerate(blocks):
        for level in block:
            tau2[:, level] = block_values[:, column] / len(block)
    return tau2


def maximise(
    y: np.ndarray, v: np.ndarray, design: Design, blocks: list[list[int]], fixed: np.ndarray
) -> tuple[np.ndarray, float]:
    """Grid-refined REML estimate of the block totals; returns per-level variances and the log-likelihood."""
    scale = max(float(np.var(y)) + float(np.mean(v)), 1e-12)
    n_blocks = len(blocks)
    candidates = [np.r_[0.0, scale * np.logspace(*_GRID_DECADES, _GRID_POINTS)] for _ in range(n_blocks)]
    step = (_GRID_DECADES[1] - _GRID_DECADES[0]) / (_GRID_POINTS - 1)
    best = np.zeros(n_blocks)
    best_value = -np.inf
    for round_index in range(_REFINE_ROUNDS + 1):
        mesh = np.stack([axis.ravel() for axis in np.meshgrid(*candidates, indexing="ij")], axis=1)
        values = reml(y, v, design, expand(mesh, blocks, fixed))
        index = int(np.argmax(values))
        if values[index] > best_value:
            best, best_value = mesh[index].copy(), float(values[index])
        if round_index == _REFINE_ROUNDS:
            break
        refined = []
        for column in range(n_blocks):
            positive = candidates[column][candidates[column] > 0]
            anchor = best[column] if best[column] > 0 else positive.min()
            refined.append(np.unique(np.r_[0.0, anchor * 10.0 ** (step * np.linspace(-1.0, 1.0, 5))]))
        candidates = refined
        step /= 2.5
    return expand(best[None, :], blocks, fixed)[0], best_value
