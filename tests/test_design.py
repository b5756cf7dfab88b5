"""Designed mixtures (harp.design): the foldover draw, the ridge fit of region effects, the prune-and-draw rule."""

from __future__ import annotations

import numpy as np
import pytest

from harp.design import (
    DesignFit,
    design_select,
    draw_design,
    fit_design,
    kept_regions,
    loo_mse,
    region_shares,
    ridge_coefficients,
)


def _regions(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def test_every_region_is_in_half_of_each_budgets_mixtures_and_points_come_from_the_kept_regions() -> None:
    region = _regions([40, 25, 60, 30, 45, 50, 35, 20])
    mixtures = draw_design(region, [30, 60], 6, seed=3)
    assert len(mixtures) == 12
    for budget in (30, 60):
        of_budget = [m for m in mixtures if m.budget == budget]
        counts = np.zeros(8, dtype=int)
        for m in of_budget:
            counts[m.regions] += 1
            assert m.points.size == budget and np.unique(m.points).size == budget
            assert np.isin(region[m.points], m.regions).all()  # drawn only from the kept regions
        assert (counts == len(of_budget) // 2).all()  # foldover: a half and its complement
    for first, second in zip(mixtures[::2], mixtures[1::2], strict=True):
        assert np.array_equal(np.sort(np.concatenate([first.regions, second.regions])), np.arange(8))
    assert [m.seed for m in mixtures] == list(range(12))


def test_the_draw_is_fixed_by_its_seed() -> None:
    region = _regions([40, 25, 60, 30, 45, 50])
    a, b = draw_design(region, [40], 4, seed=1), draw_design(region, [40], 4, seed=1)
    c = draw_design(region, [40], 4, seed=2)
    assert all(
        np.array_equal(x.points, y.points) and np.array_equal(x.regions, y.regions)
        for x, y in zip(a, b, strict=True)
    )
    assert any(not np.array_equal(x.points, z.points) for x, z in zip(a, c, strict=True))


@pytest.mark.parametrize(
    ("budgets", "per_budget", "match"),
    [([30], 3, "per_budget"), ([30], 0, "per_budget"), ([0], 2, "budgets"), ([500], 2, "more than half")],
)
def test_bad_design_arguments_are_refused_by_name(budgets: list[int], per_budget: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        draw_design(_regions([40, 25, 60, 30]), budgets, per_budget)


def test_a_tree_of_one_region_cannot_be_designed() -> None:
    with pytest.raises(ValueError, match="at least 2 regions"):
        draw_design(np.zeros(50, dtype=np.int64), [10], 2)


def _planted(seed: int, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shares of a real design, gains from planted effects: what the fit should find."""
    region = _regions([300, 200, 400, 250, 350, 300, 150, 250])
    mixtures = draw_design(region, [100, 200, 400], 16, seed=seed)
    shares = np.stack([region_shares(m.points, region, 8) for m in mixtures])
    budgets = np.array([m.budget for m in mixtures])
    beta = np.array([0.10, -0.08, 0.02, 0.00, 0.06, -0.12, 0.04, -0.02])
    intercept = {100: 0.30, 200: 0.34, 400: 0.37}
    rng = np.random.default_rng(seed)
    gains = (
        np.array([intercept[int(b)] for b in budgets]) + shares @ beta + rng.normal(0, noise, budgets.size)
    )
    pool_share = np.bincount(region) / region.size
    return shares, budgets, gains, pool_share, beta - pool_share @ beta


def test_the_fit_recovers_planted_region_effects_and_their_ranking() -> None:
    shares, budgets, gains, pool_share, truth = _planted(0, noise=0.002)
    fit = fit_design(shares, budgets, gains, pool_share, bootstraps=200)
    assert fit.budgets == (100, 200, 400) and fit.n_mixtures == 48
    assert np.corrcoef(fit.centred, truth)[0, 1] > 0.95
    assert np.max(np.abs(fit.centred - truth)) < 0.03
    assert abs(float(pool_share @ fit.centred)) < 1e-12  # centred on the pool's mean
    assert fit.loo_r2 > 0.5 and (fit.se > 0).all()
    assert set(kept_regions(fit, "E")) == set(np.flatnonzero(fit.centred > 0))
    assert set(kept_regions(fit, "C")) <= set(kept_regions(fit, "E"))
    assert {0, 4} <= set(kept_regions(fit, "C")) and not {1, 5} & set(kept_regions(fit, "E"))


def test_pure_noise_explains_nothing_out_of_sample() -> None:
    shares, budgets, _, pool_share, _ = _planted(1, noise=0.0)
    gains = np.random.default_rng(5).normal(0.3, 0.02, budgets.size)
    fit = fit_design(shares, budgets, gains, pool_share, bootstraps=100)
    assert fit.loo_r2 < 0.1


def test_leave_one_out_error_equals_refitting_without_each_finetune() -> None:
    shares, budgets, gains, _, _ = _planted(2, noise=0.01)
    x_budget = (budgets[:, None] == np.array([100, 200, 400])[None, :]).astype(float)
    penalty = 0.01
    errors = []
    for i in range(budgets.size):
        keep = np.arange(budgets.size) != i
        coef = ridge_coefficients(x_budget[keep], shares[keep], gains[keep], penalty)
        errors.append(gains[i] - np.r_[x_budget[i], shares[i]] @ coef)
    assert loo_mse(x_budget, shares, gains, penalty) == pytest.approx(np.mean(np.square(errors)), rel=1e-8)


def test_fit_arguments_of_the_wrong_shape_are_refused() -> None:
    shares, budgets, gains, pool_share, _ = _planted(0, noise=0.01)
    with pytest.raises(ValueError, match="shares must be"):
        fit_design(shares, budgets[:-1], gains, pool_share)
    with pytest.raises(ValueError, match="pool_share"):
        fit_design(shares, budgets, gains, pool_share[:-1])
    with pytest.raises(ValueError, match="finite"):
        fit_design(shares, budgets, np.where(np.arange(gains.size) == 3, np.nan, gains), pool_share)


def _fit(centred: list[float], se: list[float]) -> DesignFit:
    c = np.asarray(centred)
    return DesignFit("large", (10,), np.zeros(1), c, c, np.asarray(se), 0.1, {0.1: 0.0}, 0.5, 10)


def test_the_selection_draws_only_from_the_regions_the_rule_keeps() -> None:
    fit = _fit([0.05, 0.01, -0.03, 0.2], [0.02, 0.02, 0.01, 0.05])
    region_of_leaf = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    members = [np.arange(10 * g, 10 * g + 10) for g in range(8)]
    conservative = design_select(fit, members, region_of_leaf, rule="C", budget=15, seed=0)
    assert set(region_of_leaf[conservative.leaves]) <= {0, 3} and conservative.points.size == 15
    expansive = design_select(fit, members, region_of_leaf, rule="E", budget=100, seed=0)
    assert sorted(expansive.points.tolist()) == [p for g in (0, 1, 2, 3, 6, 7) for p in members[g]]
    other = design_select(fit, members, region_of_leaf, rule="C", budget=15, seed=1)
    assert not np.array_equal(np.sort(conservative.points), np.sort(other.points))  # the draw is seeded
    with pytest.raises(ValueError, match="rule"):
        design_select(fit, members, region_of_leaf, rule="X")
    with pytest.raises(ValueError, match="region_of_leaf"):
        design_select(fit, members, region_of_leaf[:-1])
