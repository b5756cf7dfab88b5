"""The results of an empirical-Bayes fit (:class:`Effects`, :class:`Variances`) and its warning.

Notation as in :mod:`harp.bayes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class BayesWarning(UserWarning):
    """A valid but degenerate empirical-Bayes fit: unmeasured domains, confounded or zero variances, ..."""


@dataclass(frozen=True)
class Variances:
    """Variance components per domain (score units squared), each of shape (n_domains,)."""

    large: np.ndarray
    parent: np.ndarray
    leaf: np.ndarray


@dataclass(frozen=True)
class Effects:
    """Posterior effects of every leaf on every domain, and what the fit estimated.

    Attributes
    ----------
    mean, sd : ndarray of shape (n_leaves, n_domains)
        Posterior mean and standard deviation of ``phi[g, d]``.
    measured : ndarray of shape (n_leaves, n_domains), bool
        Whether leaf g has a measurement on domain d.
    parent_mean, parent_sd : ndarray of shape (n_parents, n_domains)
        Posterior of the parent effects ``b_p``.
    large_mean, large_sd : ndarray of shape (n_large, n_domains)
        Posterior of the large-node means ``a_k``.
    mu, mu_sd : ndarray of shape (n_domains,)
        Posterior of the grand mean (NaN for a domain without measurements).
    variances : Variances
        The variance components used (estimated, or given).
    n_measured : ndarray of shape (n_domains,), int
    log_likelihood : ndarray of shape (n_domains,)
        REML log-likelihood at the estimate (NaN where nothing was estimated).
    notes : list of str
        The degenerate cases met, as warned.
    training_variance : ndarray of shape (n_domains,) or None
        The training noise added to every measurement's sampling variance before the fit
        (:func:`harp.load.infer_effects`, :mod:`harp.measure.noise`); None when none was added.
    """

    mean: np.ndarray
    sd: np.ndarray
    measured: np.ndarray
    parent_mean: np.ndarray
    parent_sd: np.ndarray
    large_mean: np.ndarray
    large_sd: np.ndarray
    mu: np.ndarray
    mu_sd: np.ndarray
    variances: Variances
    n_measured: np.ndarray
    log_likelihood: np.ndarray
    notes: list[str] = field(default_factory=list)
    training_variance: np.ndarray | None = None

    def summary(self, domain_names: list[str] | None = None) -> dict[str, Any]:
        """A JSON-serialisable summary: per domain the grand mean, the three spreads (sd) and the counts."""
        n_domains = self.mean.shape[1]
        names = domain_names if domain_names is not None else [str(d) for d in range(n_domains)]

        def number(value: float) -> float | None:
            return None if not np.isfinite(value) else float(value)

        return {
            "model": "nested normal, REML variances, exact posterior (harp.bayes)",
            "domains": [
                {
                    "domain": names[d],
                    "n_measured": int(self.n_measured[d]),
                    "mu": number(self.mu[d]),
                    "mu_sd": number(self.mu_sd[d]),
                    "tau_large": float(np.sqrt(self.variances.large[d])),
                    "tau_parent": float(np.sqrt(self.variances.parent[d])),
                    "tau_leaf": float(np.sqrt(self.variances.leaf[d])),
                    "log_likelihood": number(self.log_likelihood[d]),
                    "training_sd": (
                        None if self.training_variance is None else float(np.sqrt(self.training_variance[d]))
                    ),
                }
                for d in range(n_domains)
            ],
            "notes": list(self.notes),
        }
