"""The public entry points: :func:`fit_effects`, :func:`active_domains` and the family-wise threshold.

The model and the estimators are written out in :mod:`harp.bayes`; each entry point checks its input once.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np

from harp._validation import is_number
from harp.bayes.effects import BayesWarning, Effects, Variances
from harp.bayes.inputs import check_measurements, check_tree
from harp.bayes.posterior import mixture, posterior, variance_grid
from harp.bayes.reml import LARGE, LEAF, PARENT, Design, blocks, maximise, measured_design, reml

ActiveRule = Literal["any-leaf", "family-wise"]


#: The rules of :func:`active_domains`.
ACTIVE_RULES = ("any-leaf", "family-wise")


_LEVEL_NAMES = ("leaf", "parent", "large")


def _check_variances(variances: Variances | None, n_domains: int) -> np.ndarray | None:
    """Given variances as an array of shape (n_domains, 3): leaf, parent, large."""
    if variances is None:
        return None
    columns = []
    for name in ("leaf", "parent", "large"):
        try:
            column = np.broadcast_to(np.asarray(getattr(variances, name), dtype=np.float64), (n_domains,))
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"variances.{name} must be a number or an array of shape ({n_domains},), got "
                f"{getattr(variances, name, None)!r}"
            ) from None
        if not np.isfinite(column).all() or (column < 0).any():
            raise ValueError(f"variances.{name} must be finite and >= 0, got {column}")
        columns.append(column)
    return np.stack(columns, axis=1)


def _number(value: Any, name: str, *, positive: bool) -> float:
    if not is_number(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not np.isfinite(number) or (number <= 0 if positive else number < 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} and finite, got {value!r}")
    return number


def fit_effects(
    phi_hat: Any,
    variance: Any,
    leaf_parent: Any,
    parent_large: Any,
    *,
    variances: Variances | None = None,
    prior_sd: float = 0.1,
    min_variance_ratio: float = 0.01,
    integrate_variances: bool = True,
    domain_names: list[str] | None = None,
) -> Effects:
    """Posterior mean and sd of ``phi[g, d]`` for every leaf g and domain d, from the measured leaves.

    Parameters
    ----------
    phi_hat : array-like of shape (n_leaves, n_domains)
        Measured effects; NaN where leaf g was not measured on domain d.
    variance : array-like of shape (n_leaves, n_domains)
        Sampling variance of each measurement (>= 0 where measured; ignored elsewhere).
    leaf_parent : array-like of int, shape (n_leaves,)
        Parent of each leaf.
    parent_large : array-like of int, shape (n_parents,)
        Large node of each parent.
    variances : Variances, optional
        Use these variance components instead of estimating them (each a number or an array per domain).
    prior_sd : float, default 0.1
        Posterior sd of a domain without measurements, and the prior sd of a leaf effect when the measurements
        identify no variance at all (one measurement).
    min_variance_ratio : float, default 0.01
        A zero sampling variance is raised to this fraction of the domain's median positive sampling variance.
    integrate_variances : bool, default True
        Average the posterior over the uncertainty of the estimated variances (see the module docstring); False
        gives the plug-in posterior at the REML estimate. Given ``variances`` are always plugged in.
    domain_names : list of str, optional
        Used in warnings.

    Returns
    -------
    Effects

    Raises
    ------
    ValueError
        Naming the argument: shapes that disagree, inf in ``phi_hat``, a missing or negative variance of a
        measurement, ids out of range.

    Warns
    -----
    BayesWarning
        Domains without measurements, confounded, unidentified or zero variance components, zero sampling
        variances (see the module docstring).
    """
    leaf_parent_array, parent_large_array, n_large = check_tree(leaf_parent, parent_large)
    n_leaves, n_parents = leaf_parent_array.size, parent_large_array.size
    phi, var, measured = check_measurements(phi_hat, variance, n_leaves)
    n_domains = phi.shape[1]
    given = _check_variances(variances, n_domains)
    prior_sd = _number(prior_sd, "prior_sd", positive=True)
    min_variance_ratio = _number(min_variance_ratio, "min_variance_ratio", positive=True)
    names = domain_names if domain_names is not None else [str(d) for d in range(n_domains)]
    if len(names) != n_domains:
        raise ValueError(f"domain_names has {len(names)} names but phi_hat has {n_domains} domains")

    mean = np.zeros((n_leaves, n_domains))
    sd = np.full((n_leaves, n_domains), prior_sd)
    parent_mean = np.zeros((n_parents, n_domains))
    parent_sd = np.full((n_parents, n_domains), prior_sd)
    large_mean = np.zeros((n_large, n_domains))
    large_sd = np.full((n_large, n_domains), prior_sd)
    mu = np.full(n_domains, np.nan)
    mu_sd = np.full(n_domains, np.nan)
    tau2 = np.zeros((n_domains, 3))
    log_likelihood = np.full(n_domains, np.nan)
    n_measured = measured.sum(axis=0).astype(np.int64)
    issues: dict[str, list[str]] = {}

    def note(kind: str, d: int) -> None:
        issues.setdefault(kind, []).append(names[d])

    for d in range(n_domains):
        leaves = np.flatnonzero(measured[:, d])
        if leaves.size == 0:
            note("unmeasured", d)
            tau2[d] = prior_sd**2 / 3.0
            continue
        y = phi[leaves, d]
        v = var[leaves, d].copy()
        if (v <= 0).any():
            positive = v[v > 0]
            v[v <= 0] = min_variance_ratio * float(np.median(positive)) if positive.size else 1e-8
            note("zero_variance", d)
        design = measured_design(leaves, leaf_parent_array, parent_large_array)
        # The fit works on the measured sub-tree sorted by (large, parent); the posterior takes leaf ids.
        position = np.searchsorted(leaves, design.leaves)
        y_sorted, v_sorted = y[position], v[position]
        blocks: list[list[int]] = []
        if given is not None:
            tau2[d] = given[d]
            log_likelihood[d] = float(reml(y_sorted, v_sorted, design, given[d][None, :])[0])
        else:
            kinds: list[str] = []
            tau2[d], log_likelihood[d], blocks = _estimate(
                y_sorted, v_sorted, design, n_leaves, n_parents, n_large, prior_sd, kinds
            )
            for kind in kinds:
                note(kind, d)
        if integrate_variances and blocks:
            grid, weights = variance_grid(y_sorted, v_sorted, design, blocks, tau2[d], tau2[d])
            post = mixture(
                [posterior(y, v, leaves, leaf_parent_array, parent_large_array, n_large, t) for t in grid],
                weights,
            )
        else:
            post = posterior(y, v, leaves, leaf_parent_array, parent_large_array, n_large, tau2[d])
        mean[:, d], sd[:, d] = post["leaf_mean"], post["leaf_sd"]
        parent_mean[:, d], parent_sd[:, d] = post["parent_mean"], post["parent_sd"]
        large_mean[:, d], large_sd[:, d] = post["large_mean"], post["large_sd"]
        mu[d], mu_sd[d] = post["mu"], post["mu_sd"]

    notes = _warn(issues, prior_sd, min_variance_ratio)
    return Effects(
        mean=mean,
        sd=sd,
        measured=measured,
        parent_mean=parent_mean,
        parent_sd=parent_sd,
        large_mean=large_mean,
        large_sd=large_sd,
        mu=mu,
        mu_sd=mu_sd,
        variances=Variances(large=tau2[:, LARGE], parent=tau2[:, PARENT], leaf=tau2[:, LEAF]),
        n_measured=n_measured,
        log_likelihood=log_likelihood,
        notes=notes,
    )


def _estimate(
    y: np.ndarray,
    v: np.ndarray,
    design: Design,
    n_leaves: int,
    n_parents: int,
    n_large: int,
    prior_sd: float,
    kinds: list[str],
) -> tuple[np.ndarray, float, list[list[int]]]:
    """REML variances of one domain (with the identifiability rules of the module docstring), the
    log-likelihood there, and the blocks of levels that were estimated."""
    closed, open_block = blocks(design.replicated)
    for block in closed:
        if len(block) > 1:
            kinds.append("confounded_" + "_".join(_LEVEL_NAMES[level] for level in block))
    fixed = np.zeros(3)
    tau2, log_likelihood = (fixed, float(reml(y, v, design, fixed[None, :])[0]))
    if closed:
        tau2, log_likelihood = maximise(y, v, design, closed, fixed)
        for block in closed:
            if tau2[block[0]] == 0.0:
                kinds.append("zero_" + _LEVEL_NAMES[block[-1]])
    if open_block:
        lowest = open_block[0]
        counts = {LEAF: (n_leaves, design.leaves.size), PARENT: (n_parents, design.parents.size),
                  LARGE: (n_large, design.larges.size)}  # fmt: skip
        total, measured_count = counts[lowest]
        if total > measured_count:  # some node of that level has no measurement: its variance matters
            identified = [float(tau2[block].sum()) for block in closed]
            fill = max(identified) if identified and max(identified) > 0 else prior_sd**2
            kinds.append("unidentified_" + _LEVEL_NAMES[lowest] if identified else "unidentified_all")
            tau2 = tau2.copy()
            for level in open_block:
                tau2[level] = fill / len(open_block)
            log_likelihood = float(reml(y, v, design, tau2[None, :])[0])
    return tau2, log_likelihood, closed


_MESSAGES = {
    "unmeasured": "no measurements in domain(s) {names}: posterior mean 0 and sd prior_sd={prior_sd:g}",
    "zero_variance": (
        "zero sampling variance in domain(s) {names}: raised to {ratio:g} x the domain's median positive "
        "sampling variance (1e-8 when none is positive)"
    ),
    "confounded_leaf_parent": (
        "no parent has two measured leaves in domain(s) {names}: the within-parent and between-parent variances "
        "cannot be told apart; their sum is estimated and split equally"
    ),
    "confounded_parent_large": (
        "no large node has two measured parents in domain(s) {names}: the between-parent and large-node "
        "variances cannot be told apart; their sum is estimated and split equally"
    ),
    "confounded_leaf_parent_large": (
        "each measured large node holds one measured leaf in domain(s) {names}: the three variances cannot be "
        "told apart; their sum is estimated and split equally"
    ),
    "zero_leaf": "within-parent variance estimated as 0 in domain(s) {names}: leaves of a parent are pooled fully",
    "zero_parent": "between-parent variance estimated as 0 in domain(s) {names}: parents are pooled fully",
    "zero_large": "large-node variance estimated as 0 in domain(s) {names}: large nodes are pooled fully",
    "unidentified_parent": (
        "all measured leaves lie in one parent in domain(s) {names}: the spread of other parents is not "
        "identified and is set to the largest identified variance (prior_sd^2 when that is 0)"
    ),
    "unidentified_large": (
        "only one large node is measured in domain(s) {names}: the spread of other large nodes is not "
        "identified and is set to the largest identified variance (prior_sd^2 when that is 0)"
    ),
    "unidentified_all": (
        "a single measured leaf in domain(s) {names}: no variance is identified; prior_sd={prior_sd:g} is used"
    ),
}


def _warn(issues: dict[str, list[str]], prior_sd: float, ratio: float) -> list[str]:
    notes = []
    for kind, domain_list in issues.items():
        shown = ", ".join(domain_list[:8]) + (
            f" (+{len(domain_list) - 8} more)" if len(domain_list) > 8 else ""
        )
        template = _MESSAGES.get(kind, kind.replace("_", " ") + " in domain(s) {names}")
        message = template.format(names=shown, prior_sd=prior_sd, ratio=ratio)
        notes.append(message)
        warnings.warn(message, BayesWarning, stacklevel=3)
    return notes


def active_domains(
    mean: Any, sd: Any, base: Any, threshold: float = 1.645, *, rule: ActiveRule = "any-leaf"
) -> np.ndarray:
    """Domains some leaf credibly helps and that are not saturated.

    Domain d is active when ``max_g mean[g, d] / sd[g, d] > z`` and ``base[d] < 1``. A leaf with ``sd == 0``
    counts as credible when its mean is positive. With ``rule="any-leaf"``, ``z = threshold``: each leaf is
    tested on its own, so a domain no leaf helps still passes when one of many leaves crosses the threshold by
    chance (with 266 leaves and z = 1.645, about 13 do in expectation). ``rule="family-wise"`` controls that
    multiplicity: ``z`` is Sidak's threshold for the L leaves at the family-wise level ``alpha = 1 -
    Phi(threshold)``, i.e. ``z = Phi^-1((1 - alpha)^(1 / L))`` (3.55 for L = 266 and threshold 1.645), so a
    domain no leaf helps is active with probability at most alpha when the leaves' z are independent.

    Parameters
    ----------
    mean, sd : array-like of shape (n_leaves, n_domains)
        Posterior mean and sd (sd >= 0).
    base : array-like of shape (n_domains,)
        Base score ``b_d`` in [0, 1].
    threshold : float, default 1.645
        One-sided z threshold (1.645: 95%).
    rule : {"any-leaf", "family-wise"}, default "any-leaf"
        Test each leaf at ``threshold``, or all leaves together at its level (see above).

    Returns
    -------
    ndarray of shape (n_domains,), bool
    """
    from harp._validation import check_base, check_matrix

    mean_array = check_matrix(mean, "mean")
    sd_array = check_matrix(sd, "sd")
    if sd_array.shape != mean_array.shape:
        raise ValueError(f"sd has shape {sd_array.shape} but mean has shape {mean_array.shape}")
    if (sd_array < 0).any():
        raise ValueError(f"sd must be >= 0, got {sd_array.min()}")
    base_array = check_base(base, mean_array.shape[1])
    if not is_number(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if rule not in ACTIVE_RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, ACTIVE_RULES))}, got {rule!r}")
    if rule == "family-wise" and mean_array.shape[0] > 1:
        threshold = family_wise_threshold(float(threshold), mean_array.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd_array > 0, mean_array / sd_array, np.where(mean_array > 0, np.inf, 0.0))
    if mean_array.shape[0] == 0:
        return np.zeros(mean_array.shape[1], dtype=bool)
    return (z.max(axis=0) > threshold) & (base_array < 1.0)


def family_wise_threshold(threshold: float, n_leaves: int) -> float:
    """Sidak's z for ``n_leaves`` one-sided tests at the family-wise level ``1 - Phi(threshold)``."""
    from statistics import NormalDist

    normal = NormalDist()
    alpha = 1.0 - normal.cdf(threshold)
    per_leaf = -np.expm1(np.log1p(-alpha) / n_leaves)  # 1 - (1 - alpha)^(1/L), without cancellation
    return float(normal.inv_cdf(1.0 - per_leaf))
