"""Empirical-Bayes effects (harp.bayes), `infer_effects` on a store and `harp infer`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from harp.bayes import (
    BayesWarning,
    Variances,
    active_domains,
    fit_effects,
    measurement_matrix,
)
from harp.bayes.reml import measured_design, reml
from harp.cli import main
from harp.load import infer_effects
from harp.store import Store

# Fits of tiny simulated designs also warn about variances estimated as 0; tests that expect a warning say so.
pytestmark = pytest.mark.filterwarnings("ignore::harp.bayes.BayesWarning")


def tree(n_large: int, parents_per_large: int, leaves_per_parent: int) -> tuple[np.ndarray, np.ndarray]:
    parent_large = np.repeat(np.arange(n_large), parents_per_large)
    leaf_parent = np.repeat(np.arange(n_large * parents_per_large), leaves_per_parent)
    return leaf_parent, parent_large


def simulate(
    rng: np.random.Generator,
    leaf_parent: np.ndarray,
    parent_large: np.ndarray,
    n_domains: int,
    tau: tuple[float, float, float],
    noise: float,
) -> tuple[np.ndarray, np.ndarray]:
    """True leaf effects and sampling variances under the model (tau = large, parent, leaf sds)."""
    n_large = parent_large.max() + 1
    mu = rng.normal(0.0, 0.01, n_domains)
    large = mu + rng.normal(0.0, tau[0], (n_large, n_domains))
    parent = large[parent_large] + rng.normal(0.0, tau[1], (parent_large.size, n_domains))
    truth = parent[leaf_parent] + rng.normal(0.0, tau[2], (leaf_parent.size, n_domains))
    variance = rng.uniform(0.5, 2.0, truth.shape) * noise**2
    return truth, variance


def measure(rng, truth, variance, measured):
    return np.where(measured, truth + rng.normal(0.0, np.sqrt(variance)), np.nan)


# ----------------------------------------------------------------------------------------------------------------
# Exactness against dense linear algebra


def dense_reml(y, v, leaf_parent, parent_large, leaves, tau2):
    """REML log-likelihood of y ~ N(1 mu, V), V built explicitly (tau2 = leaf, parent, large)."""
    parent = leaf_parent[leaves]
    large = parent_large[parent]
    V = (
        np.diag(v + tau2[0])
        + tau2[1] * (parent[:, None] == parent[None, :])
        + tau2[2] * (large[:, None] == large[None, :])
    )
    ones = np.ones(y.size)
    Vi = np.linalg.inv(V)
    mu = ones @ Vi @ y / (ones @ Vi @ ones)
    r = y - mu
    return -0.5 * (
        (y.size - 1) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.log(ones @ Vi @ ones) + r @ Vi @ r
    )


def dense_posterior(y, v, leaf_parent, parent_large, leaves, tau2):
    """Posterior of every leaf with a flat prior on mu (generalised least squares + BLUP)."""
    n_leaves = leaf_parent.size
    large = parent_large[leaf_parent]

    def cov(a, b):
        return (
            tau2[0] * (a[:, None] == b[None, :])
            + tau2[1] * (leaf_parent[a][:, None] == leaf_parent[b][None, :])
            + tau2[2] * (large[a][:, None] == large[b][None, :])
        )

    every = np.arange(n_leaves)
    V = cov(leaves, leaves) + np.diag(v)
    C = cov(every, leaves)
    G = cov(every, every)
    Vi = np.linalg.inv(V)
    ones = np.ones(leaves.size)
    precision_mu = ones @ Vi @ ones
    mu = ones @ Vi @ y / precision_mu
    mean = mu + C @ Vi @ (y - mu)
    h = 1.0 - C @ Vi @ ones
    var = np.diag(G - C @ Vi @ C.T) + h**2 / precision_mu
    return mean, np.sqrt(var)


@pytest.mark.parametrize("tau2", [(0.3, 0.5, 0.7), (0.0, 0.4, 0.2), (1.0, 0.0, 0.0)], ids=str)
def test_tree_likelihood_and_posterior_equal_dense_algebra(rng, tau2):
    leaf_parent, parent_large = tree(3, 3, 4)
    leaves = np.sort(rng.choice(leaf_parent.size, size=14, replace=False))
    y = rng.standard_normal(leaves.size)
    v = rng.uniform(0.1, 1.0, leaves.size)
    design = measured_design(leaves, leaf_parent, parent_large)
    position = np.searchsorted(leaves, design.leaves)
    ours = reml(y[position], v[position], design, np.array([tau2]))[0]
    assert ours == pytest.approx(dense_reml(y, v, leaf_parent, parent_large, leaves, tau2), rel=1e-9)

    phi_hat = np.full((leaf_parent.size, 1), np.nan)
    variance = np.full((leaf_parent.size, 1), np.nan)
    phi_hat[leaves, 0], variance[leaves, 0] = y, v
    effects = fit_effects(
        phi_hat,
        variance,
        leaf_parent,
        parent_large,
        variances=Variances(large=tau2[2], parent=tau2[1], leaf=tau2[0]),
    )
    mean, sd = dense_posterior(y, v, leaf_parent, parent_large, leaves, tau2)
    np.testing.assert_allclose(effects.mean[:, 0], mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(effects.sd[:, 0], sd, rtol=1e-8)


# ----------------------------------------------------------------------------------------------------------------
# Calibration and shrinkage on simulated data with known truth


def test_posterior_intervals_cover_the_truth_at_the_nominal_rate(rng):
    leaf_parent, parent_large = tree(5, 6, 8)
    truth, variance = simulate(rng, leaf_parent, parent_large, 60, tau=(0.01, 0.02, 0.01), noise=0.008)
    measured = np.zeros(truth.shape, dtype=bool)
    for p in range(parent_large.size):
        if p % 5 == 4:
            continue  # every fifth parent has no measured leaf
        measured[np.flatnonzero(leaf_parent == p)[: 1 + p % 2]] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesWarning)
        effects = fit_effects(measure(rng, truth, variance, measured), variance, leaf_parent, parent_large)
    inside = np.abs(effects.mean - truth) <= 1.645 * effects.sd
    assert 0.86 <= inside.mean() <= 0.94
    assert 0.83 <= inside[measured].mean() <= 0.96
    assert 0.83 <= inside[~measured].mean() <= 0.96
    # The spreads are recovered, roughly (median over domains).
    assert 0.014 <= np.median(np.sqrt(effects.variances.parent)) <= 0.026
    assert 0.006 <= np.median(np.sqrt(effects.variances.leaf)) <= 0.014
    # Inferred effects beat "no effect" as a guess of the truth.
    assert np.mean((effects.mean - truth) ** 2) < 0.6 * np.mean(truth**2)


def test_averaging_over_the_variances_widens_intervals_of_a_small_design(rng):
    leaf_parent, parent_large = tree(3, 4, 4)
    truth, variance = simulate(rng, leaf_parent, parent_large, 20, tau=(0.01, 0.02, 0.01), noise=0.008)
    measured = np.zeros(truth.shape, dtype=bool)
    measured[::2] = True
    phi_hat = measure(rng, truth, variance, measured)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesWarning)
        averaged = fit_effects(phi_hat, variance, leaf_parent, parent_large)
        plugged = fit_effects(phi_hat, variance, leaf_parent, parent_large, integrate_variances=False)
    np.testing.assert_array_equal(averaged.variances.parent, plugged.variances.parent)  # same estimates
    assert np.mean(averaged.sd) > np.mean(plugged.sd)
    assert np.corrcoef(averaged.mean.ravel(), plugged.mean.ravel())[0, 1] > 0.95


def test_measured_leaves_are_shrunk_toward_their_parent(rng):
    leaf_parent, parent_large = tree(2, 4, 6)
    truth, variance = simulate(rng, leaf_parent, parent_large, 5, tau=(0.01, 0.02, 0.01), noise=0.01)
    measured = np.zeros(truth.shape, dtype=bool)
    measured[::2] = True
    phi_hat = measure(rng, truth, variance, measured)
    effects = fit_effects(
        phi_hat, variance, leaf_parent, parent_large, variances=Variances(large=1e-4, parent=4e-4, leaf=1e-4)
    )
    parent_mean = effects.parent_mean[leaf_parent]
    gap_before = np.abs(phi_hat - parent_mean)[measured]
    gap_after = np.abs(effects.mean - parent_mean)[measured]
    assert (gap_after < gap_before).all()
    same_side = np.sign(effects.mean - parent_mean)[measured] == np.sign(phi_hat - parent_mean)[measured]
    assert same_side.all()
    # Unmeasured leaves take their parent's posterior mean, with the within-parent spread added.
    np.testing.assert_allclose(effects.mean[~measured], parent_mean[~measured])
    np.testing.assert_allclose(
        effects.sd[~measured] ** 2, (effects.parent_sd[leaf_parent] ** 2 + 1e-4)[~measured]
    )
    assert (effects.sd[measured] < np.sqrt(variance[measured])).all()


def test_a_noisier_measurement_is_shrunk_more():
    leaf_parent, parent_large = tree(1, 2, 2)
    phi_hat = np.array([[0.05, 0.05], [0.0, 0.0], [np.nan, np.nan], [0.0, 0.0]])
    variance = np.array([[1e-5, 1e-3], [1e-5, 1e-5], [np.nan, np.nan], [1e-5, 1e-5]])
    effects = fit_effects(
        phi_hat, variance, leaf_parent, parent_large, variances=Variances(large=0.0, parent=1e-4, leaf=1e-4)
    )
    assert 0 < effects.mean[0, 1] < effects.mean[0, 0] < 0.05


# ----------------------------------------------------------------------------------------------------------------
# Degenerate cases: warnings, not crashes


def fit_warning(match: str, *args, **kwargs):
    with pytest.warns(BayesWarning, match=match):
        effects = fit_effects(*args, **kwargs)
    assert np.isfinite(effects.mean).all() and np.isfinite(effects.sd).all() and (effects.sd > 0).all()
    return effects


def test_a_domain_without_measurements_gets_zero_and_prior_sd(rng):
    leaf_parent, parent_large = tree(2, 2, 3)
    phi_hat = np.full((12, 2), np.nan)
    variance = np.full((12, 2), 1e-4)
    phi_hat[[0, 1, 3, 4, 6, 7, 9, 10], 0] = rng.normal(0, 0.01, 8)
    effects = fit_warning(r"no measurements in domain\(s\) b", phi_hat, variance, leaf_parent, parent_large,
                          domain_names=["a", "b"], prior_sd=0.2)  # fmt: skip
    assert (effects.mean[:, 1] == 0).all() and (effects.sd[:, 1] == 0.2).all()
    assert np.isnan(effects.mu[1]) and effects.n_measured.tolist() == [8, 0]
    json.dumps(effects.summary(["a", "b"]))


def test_a_single_parent_tree_needs_no_between_parent_variance(rng):
    leaf_parent, parent_large = tree(1, 1, 6)
    phi_hat = np.full((6, 1), np.nan)
    phi_hat[:4, 0] = [0.05, -0.03, 0.02, 0.08]
    with warnings.catch_warnings():
        warnings.simplefilter("error", BayesWarning)  # nothing degenerate about it
        effects = fit_effects(phi_hat, np.full((6, 1), 1e-4), leaf_parent, parent_large)
    assert effects.variances.parent[0] == 0 and effects.variances.large[0] == 0
    assert np.isfinite(effects.mean).all()


def test_all_measurements_in_one_parent_of_many(rng):
    leaf_parent, parent_large = tree(1, 3, 4)
    phi_hat = np.full((12, 1), np.nan)
    phi_hat[:4, 0] = rng.normal(0.02, 0.02, 4)
    effects = fit_warning("all measured leaves lie in one parent", phi_hat, np.full((12, 1), 1e-4), leaf_parent,
                          parent_large)  # fmt: skip
    assert effects.variances.parent[0] > 0
    assert (effects.sd[4:, 0] > effects.sd[:4, 0].max()).all()  # other parents are less certain


def test_one_measurement(rng):
    leaf_parent, parent_large = tree(2, 2, 2)
    phi_hat = np.full((8, 1), np.nan)
    phi_hat[3, 0] = 0.03
    effects = fit_warning("a single measured leaf", phi_hat, np.full((8, 1), 1e-4), leaf_parent, parent_large,
                          prior_sd=0.05)  # fmt: skip
    assert effects.mean[:, 0] == pytest.approx(np.full(8, 0.03))  # nothing to shrink toward
    assert effects.sd[3, 0] == pytest.approx(0.01)
    assert (effects.sd[np.arange(8) != 3, 0] > 0.03).all()


def test_zero_between_parent_variance():
    leaf_parent, parent_large = tree(1, 4, 3)
    phi_hat = np.full((12, 1), np.nan)
    phi_hat[[0, 1, 3, 4, 6, 7, 9, 10], 0] = [0.02, -0.02, 0.02, -0.02, 0.02, -0.02, 0.02, -0.02]
    effects = fit_warning("between-parent variance estimated as 0", phi_hat, np.full((12, 1), 1e-6), leaf_parent,
                          parent_large)  # fmt: skip
    assert effects.variances.parent[0] == 0
    np.testing.assert_allclose(effects.parent_mean[:, 0], 0.0, atol=1e-12)


def test_zero_sampling_variance_is_floored():
    leaf_parent, parent_large = tree(1, 2, 2)
    phi_hat = np.array([[0.01], [0.02], [0.0], [-0.01]])
    variance = np.array([[0.0], [1e-4], [1e-4], [1e-4]])
    effects = fit_warning("zero sampling variance", phi_hat, variance, leaf_parent, parent_large)
    assert 0 < effects.sd[0, 0] < 1e-2


def test_one_leaf_per_parent_confounds_leaf_and_parent_variance(rng):
    leaf_parent, parent_large = tree(2, 4, 3)
    phi_hat = np.full((24, 1), np.nan)
    phi_hat[::3, 0] = rng.normal(0.0, 0.02, 8)
    effects = fit_warning("cannot be told apart", phi_hat, np.full((24, 1), 1e-4), leaf_parent, parent_large)
    assert effects.variances.leaf[0] == pytest.approx(effects.variances.parent[0])


# ----------------------------------------------------------------------------------------------------------------
# Inputs, active domains


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"phi_hat": np.zeros(4)}, "phi_hat must be 2-D"),
        ({"phi_hat": np.zeros((3, 1))}, "phi_hat has 3 rows but leaf_parent has 4 leaves"),
        ({"variance": np.zeros((4, 2))}, r"variance has shape \(4, 2\), expected \(4, 1\)"),
        ({"phi_hat": np.array([[np.inf], [0], [0], [0]])}, "phi_hat must be finite or NaN"),
        (
            {"variance": np.array([[np.nan], [0], [0], [0]])},
            "variance must be finite where phi_hat is measured",
        ),
        ({"variance": np.array([[-1.0], [0], [0], [0]])}, "variance must be >= 0"),
        (
            {"leaf_parent": np.array([0, 0, 1, 2])},
            "leaf_parent holds parent 2 but parent_large has 2 parents",
        ),
        ({"parent_large": np.array([0.5, 1])}, "parent_large must hold integer ids"),
        ({"prior_sd": 0}, "prior_sd must be > 0"),
        ({"variances": Variances(large=-1, parent=0, leaf=0)}, "variances.large must be finite and >= 0"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_names_the_argument(change, message):
    arguments = {
        "phi_hat": np.array([[0.01], [0.0], [np.nan], [0.02]]),
        "variance": np.full((4, 1), 1e-4),
        "leaf_parent": np.array([0, 0, 1, 1]),
        "parent_large": np.array([0, 0]),
        **change,
    }
    with pytest.raises(ValueError, match=message):
        fit_effects(**arguments)


def test_measurement_matrix_refuses_a_repeat():
    phi_hat, variance = measurement_matrix([0, 1], [1, 0], [0.1, 0.2], [1e-4, 2e-4], 3, 2)
    assert phi_hat[0, 1] == 0.1 and variance[1, 0] == 2e-4 and np.isnan(phi_hat[2]).all()
    with pytest.raises(ValueError, match="leaf 1 is measured twice on domain 0"):
        measurement_matrix([1, 1], [0, 0], [0.1, 0.2], [1e-4, 1e-4], 3, 2)
    with pytest.raises(ValueError, match="leaf_id must lie in 0..2"):
        measurement_matrix([3], [0], [0.1], [1e-4], 3, 2)


def test_active_domains():
    mean = np.array([[0.02, 0.02, 0.00, -0.05, 0.001], [0.0, 0.0, 0.0, 0.0, 0.0]])
    sd = np.array([[0.01, 0.01, 0.0, 0.01, 0.0], [0.01, 0.01, 0.0, 0.01, 0.01]])
    base = np.array([0.5, 1.0, 0.5, 0.5, 0.99])
    # z = 2 (active), saturated, zero effect with sd 0, harmful only, positive with sd 0 (credible).
    assert active_domains(mean, sd, base).tolist() == [True, False, False, False, True]
    assert active_domains(mean, sd, base, threshold=2.5).tolist() == [False, False, False, False, True]
    with pytest.raises(ValueError, match="sd has shape"):
        active_domains(mean, sd[:, :2], base)
    with pytest.raises(ValueError, match="base must lie in"):
        active_domains(mean, sd, base + 0.5)
    with pytest.raises(ValueError, match="threshold must be finite"):
        active_domains(mean, sd, base, threshold=float("nan"))


# ----------------------------------------------------------------------------------------------------------------
# On a store


def add_measurements(store: Store, config_key: str = "") -> None:
    rows = [
        {"leaf_id": g, "domain_id": d, "phi": phi, "variance": 1e-4, "config_key": config_key}
        for g, d, phi in [(0, 0, 0.03), (1, 0, 0.01), (2, 0, -0.02), (0, 1, 0.0), (2, 1, 0.01), (3, 1, 0.0)]
    ]
    store.add_measurements(rows)


def test_infer_effects_writes_effects_and_active_flags(tiny_store):
    store = Store.open(tiny_store)
    add_measurements(store)
    with pytest.warns(BayesWarning, match=r"no measurements in domain\(s\) history"):
        effects, active = infer_effects(store)
    inputs = store.selection_inputs()
    np.testing.assert_allclose(inputs.phi, effects.mean)
    np.testing.assert_allclose(inputs.sd, effects.sd)
    assert inputs.measured[:, 0].tolist() == [True, True, True, False]
    assert inputs.measured[:, 2].tolist() == [False] * 4
    np.testing.assert_array_equal(inputs.active, active)
    assert not active[2]  # unmeasured: mean 0


def test_infer_effects_needs_a_config_key_when_there_are_several(tiny_store):
    store = Store.open(tiny_store)
    add_measurements(store, "a")
    add_measurements(store, "b")
    with pytest.raises(ValueError, match="choose one with config_key"):
        infer_effects(store)
    with pytest.raises(ValueError, match="config_key 'c' has no measurements"):
        infer_effects(store, config_key="c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesWarning)
        effects, _ = infer_effects(store, config_key="b")
    assert effects.n_measured.tolist() == [3, 3, 0]


def test_harp_infer(tiny_store):
    add_measurements(Store.open(tiny_store))
    result = CliRunner().invoke(main, ["infer", "--store", str(tiny_store)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [domain["n_measured"] for domain in summary["domains"]] == [3, 3, 0]
    assert summary["measured_leaves"] == 4
    assert "warning: no measurements in domain(s) history" in result.stderr
    runs = Store.open(tiny_store, read_only=True).runs()
    assert runs[-1]["kind"] == "infer" and runs[-1]["status"] == "done"


def test_harp_infer_without_domains_is_an_error(tmp_path):
    store = Store.create(tmp_path / "empty.duckdb")
    result = CliRunner().invoke(main, ["infer", "--store", str(store.path)])
    assert result.exit_code == 1 and "has no tree yet" in result.output


def test_infer_effects_hold_out_hides_measurements_but_keeps_them(tiny_store):
    store = Store.open(tiny_store)
    add_measurements(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesWarning)
        effects, _ = infer_effects(store, hold_out=[0, 3])
    # Leaf 0 was measured on domains 0 and 1, leaf 3 on domain 1: the fit sees leaves 1 and 2 only.
    assert effects.n_measured.tolist() == [2, 1, 0]
    assert store.selection_inputs().measured[:, 0].tolist() == [False, True, True, False]
    assert store.read_table("measurements").num_rows == 6
    with pytest.raises(ValueError, match="hold_out holds leaf 9"):
        infer_effects(store, hold_out=[9])


def test_harp_infer_hold_out(tiny_store, tmp_path):
    add_measurements(Store.open(tiny_store))
    held = tmp_path / "held.json"
    held.write_text("[0]")
    for value in (str(held), "0"):
        result = CliRunner().invoke(main, ["infer", "--store", str(tiny_store), "--hold-out", value])
        assert result.exit_code == 0, result.output
        assert [domain["n_measured"] for domain in json.loads(result.stdout)["domains"]] == [2, 2, 0]
    assert Store.open(tiny_store, read_only=True).runs()[-1]["config"]["hold_out"] == [0]
    result = CliRunner().invoke(main, ["infer", "--store", str(tiny_store), "--hold-out", "0,x"])
    assert result.exit_code == 1 and "--hold-out: expected comma-separated leaf ids" in result.output
