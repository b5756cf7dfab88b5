r"""Stage 1b: empirical-Bayes effects of every leaf on every domain from the measurements of a few leaves.

Notation. Leaf g lies in parent p(g), parent p in large node k(p). ``phi[g, d]`` is the effect of finetuning on
leaf g on the score of domain d (the change against the base score ``b_d``). A measured leaf has an estimate
``phi_hat[g, d]`` with a known sampling variance ``v[g, d]`` (the variance of a mean of paired differences).

Model, for each domain d independently (d dropped below)::

    a_k     = mu  + e_k,     e_k ~ N(0, tau_large^2)      large-node mean
    b_p     = a_k + e_p,     e_p ~ N(0, tau_parent^2)     parent effect (between-parent spread)
    phi_g   = b_p + e_g,     e_g ~ N(0, tau_leaf^2)       leaf effect (within-parent spread)
    phi_hat_g = phi_g + eps_g,  eps_g ~ N(0, v_g)         measurement, v_g known

with a flat prior on the grand mean ``mu``. The large-node means are random effects around ``mu`` rather than
free parameters, so a large node without a single measured leaf still gets a mean (``mu``, with the spread
``tau_large``) instead of none; with many measured parents ``tau_large`` is large and each large node keeps its
own mean, which is the fixed-means model as a limit.

Estimation. The hyperparameters ``(tau_large^2, tau_parent^2, tau_leaf^2)`` are estimated by restricted maximum
likelihood (REML), the standard for variance components with known, unequal sampling variances (multilevel
meta-analysis): it integrates ``mu`` out, so the variances are not biased down by the estimated mean, which
matters with a few dozen measured parents. Because the random effects are nested, the likelihood factorises over
the tree and is computed exactly in O(M) for M measurements: a node whose measured children carry values
``y_i`` with variances ``s_i`` (``s_i = v_g + tau_leaf^2`` for a leaf, ``1/W_p + tau_parent^2`` for a parent,
``1/W_k + tau_large^2`` for a large node) contributes

    log R = -(n - 1)/2 log(2 pi) - 1/2 sum_i log s_i - 1/2 log W - 1/2 sum_i (y_i - ybar)^2 / s_i,

with ``W = sum_i 1/s_i`` and ``ybar = sum_i y_i / s_i / W``, and passes ``ybar`` with variance ``1/W`` upward.
The REML log-likelihood is the sum of ``log R`` over all parents, all large nodes and the root. It is maximised
over the variances on a grid (zero and 9 values from 1e-4 to 10 times the spread of the measurements, per
variance), refined by four rounds of a finer grid around the best point. A grid is slower than Newton steps but
cannot diverge, handles the boundary ``tau^2 = 0`` exactly and is deterministic.

Posterior. Given the variances the model is a Gaussian tree, so exact posterior marginals follow from one upward
and one downward pass of belief propagation: every leaf, measured or not, gets a posterior mean and sd. Measured
leaves are shrunk toward their parent by the factor ``tau_leaf^2 / (tau_leaf^2 + v_g)`` (roughly); unmeasured leaves
take their parent's posterior mean with the within-parent spread added to the variance. The uncertainty of
``mu`` is carried (flat prior).

Uncertainty of the variances. Plugging the REML estimate in (plain empirical Bayes) makes intervals too narrow
when few parents or large nodes are measured: the variance of a level with five nodes is often estimated as 0.
So by default the posterior is averaged over the variances: with a uniform prior on each estimated standard
deviation and the flat prior on ``mu``, the posterior of the variances is proportional to the REML likelihood.
It is evaluated on a grid around the estimate (about +-4 posterior sds per axis, 9 to 25 points each), the
points holding 99.9% of the mass are kept, and the leaf posteriors at those points are mixed (law of total
variance). On simulated trees of 5 large nodes and 24 measured parents, 90% intervals cover 0.90 of the true
effects this way and about 0.85 with the plug-in; with many measured nodes the two agree.

Identifiability and degenerate cases (each raises one :class:`BayesWarning` naming the domains, never an error):

- A level whose nodes never have two measured children cannot be told apart from the level above it: with one
  measured leaf per parent, ``tau_leaf^2`` and ``tau_parent^2`` are confounded. Their sum is estimated and split
  equally between the two levels.
- A top block of levels that no replication identifies (all measured leaves in one parent, or one large node
  measured while others exist) is set to the largest variance identified in that domain (split equally), or to
  ``prior_sd^2`` when nothing is identified (a single measurement). Where such a block cannot matter (a tree
  with one large node, say), it is 0, silently.
- A variance estimated as exactly 0 (complete pooling at that level) is reported.
- A zero sampling variance is floored at ``min_variance_ratio`` times the domain's median positive sampling
  variance (1e-8 when none is positive), so no measurement is treated as exact.
- A domain without measurements gets posterior mean 0 (no effect) and sd ``prior_sd`` (default 0.1, ten score
  points: wide against the effects of a few points HARP sees, finite so that the store and the app can hold it).

Active domains: domain d is active when some leaf credibly helps it, ``max_g mean[g, d] / sd[g, d] > threshold``
(default 1.645, one-sided 95%), and its base score is below 1 (see :func:`active_domains`).
"""

from __future__ import annotations

from harp.bayes.effects import BayesWarning, Effects, Variances
from harp.bayes.fit import ACTIVE_RULES, ActiveRule, active_domains, family_wise_threshold, fit_effects
from harp.bayes.inputs import measurement_matrix, table_matrix

__all__ = [
    "ACTIVE_RULES",
    "ActiveRule",
    "BayesWarning",
    "Effects",
    "Variances",
    "active_domains",
    "family_wise_threshold",
    "fit_effects",
    "measurement_matrix",
    "table_matrix",
]
