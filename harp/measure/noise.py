"""Training noise of measured effects: how much a leaf's measured phi moves when only the training seed changes.

A measurement's sampling variance (:func:`harp.measure.effects.paired_effects`) is that of a mean of paired
differences over the eval questions: it holds the questions' noise but not the training run's. Under a background
protocol the run itself is noisy (the data order, the leaf's positions in the background, dropout), so two measurements
of one leaf with different ``seed`` differ by more than the question noise says. Leaf g measured under seeds
s = 1..m_g (configs equal but for ``seed``) gives, per domain d, the sample variance across seeds; pooled over
the repeated leaves::

    sigma2_train[d] = sum_g sum_s (phi_gsd - mean_s phi_gsd)^2 / sum_g (m_g - 1)

The paired questions are the same in every repeat, so this spread is the training noise alone;
:func:`harp.load.infer_effects` adds it to the sampling variance of every measurement of the configuration
before the empirical-Bayes fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harp.store import Store

__all__ = ["TrainingNoise", "seed_family", "training_noise"]


@dataclass(frozen=True)
class TrainingNoise:
    """``variance`` (n_domains,) of a measurement from the training seed alone; NaN where not estimable.

    ``keys`` are the configurations that differ only by seed (the given one first), ``leaves`` the ids of the
    leaves measured under two or more of them, ``dof`` the pooled degrees of freedom per domain.
    """

    variance: np.ndarray
    keys: list[str]
    leaves: np.ndarray
    dof: np.ndarray

    def summary(self, domain_names: list[str]) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "repeated_leaves": int(self.leaves.size),
            "sd": {
                name: (None if not np.isfinite(v) else float(np.sqrt(v)))
                for name, v in zip(domain_names, self.variance, strict=True)
            },
        }


def _without_seed(config: dict[str, Any]) -> str:
    """A config as text with the fields that do not change what is measured, and the seed, left out."""
    kept = {k: v for k, v in config.items() if k not in ("seed", "eval_batch_size")}
    return json.dumps(kept, sort_keys=True)


def seed_family(store: Store, config_key: str) -> list[str]:
    """The configuration keys of the store's measure runs that differ from ``config_key`` only by ``seed``
    (same model, eval set and background), ``config_key`` first, the others sorted."""
    runs = [run for run in store.runs() if run["kind"] == "measure" and run["config"].get("config_key")]
    identity: dict[str, str] = {}
    for run in runs:
        config = run["config"]
        background = (config.get("background") or {}).get("fingerprint", "")
        identity[config["config_key"]] = json.dumps(
            [
                _without_seed(config.get("measure_config") or {}),
                config.get("model", ""),
                config.get("eval_fingerprint", ""),
                background if config.get("background") else "",
            ]
        )
    if config_key not in identity:
        return [config_key]
    own = identity[config_key]
    return [config_key] + sorted(key for key, value in identity.items() if value == own and key != config_key)


def training_noise(
    store: Store, config_key: str, n_domains: int, *, exclude: np.ndarray | None = None
) -> TrainingNoise:
    """Pooled across-seed variance of the measured effects of ``config_key``'s seed family (module docstring).

    ``exclude`` lists leaves left out (a hold-out the fit must not learn from).
    """
    keys = seed_family(store, config_key)
    rows = store.read_table("measurements").to_pydict()
    leaf = np.asarray(rows["leaf_id"], dtype=np.int64)
    domain = np.asarray(rows["domain_id"], dtype=np.int64)
    phi = np.asarray(rows["phi"], dtype=np.float64)
    key_index = {key: k for k, key in enumerate(keys)}
    which = np.asarray([key_index.get(key, -1) for key in rows["config_key"]], dtype=np.int64)
    keep = which >= 0
    if exclude is not None:
        keep &= ~np.isin(leaf, exclude)
    leaf, domain, phi = leaf[keep], domain[keep], phi[keep]
    squares = np.zeros(n_domains)
    dof = np.zeros(n_domains, dtype=np.int64)
    repeated: set[int] = set()
    if leaf.size:
        cell = leaf * n_domains + domain
        order = np.argsort(cell, kind="stable")
        cell, phi_sorted = cell[order], phi[order]
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        counts = np.diff(np.r_[starts, cell.size])
        sums = np.add.reduceat(phi_sorted, starts)
        means = sums / counts
        deviations = (phi_sorted - np.repeat(means, counts)) ** 2
        cell_squares = np.add.reduceat(deviations, starts)
        cell_domain = cell[starts] % n_domains
        many = counts > 1
        np.add.at(squares, cell_domain[many], cell_squares[many])
        np.add.at(dof, cell_domain[many], counts[many] - 1)
        repeated = {int(g) for g in (cell[starts][many] // n_domains)}
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.where(dof > 0, squares / np.maximum(dof, 1), np.nan)
    return TrainingNoise(variance, keys, np.asarray(sorted(repeated), dtype=np.int64), dof)
