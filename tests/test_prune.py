"""harp.prune (HARP-P): hand-computed cases, properties of the draw, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harp.prune import prune_select, utility_effects

PHI = [[0.2, 0.0], [-0.1, 0.3], [0.0, -0.2], [0.05, -0.05]]
MEMBERS = [[0, 1], [2, 3, 4], [5], [6, 7]]


def test_by_hand_without_budget():
    # u = (0.1, 0.1, -0.1, 0.0): leaves 0 and 1 tie (the smaller id first), 3 is not > 0, 2 is pruned last.
    result = prune_select(PHI, [0.5, 0.5], members=MEMBERS)
    np.testing.assert_array_equal(result.order, [0, 1, 3, 2])
    np.testing.assert_allclose(result.gains, [0.1, 0.1, 0.0, -0.1])
    assert result.cut == 2
    np.testing.assert_array_equal(result.points, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(result.point_leaves, [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(result.leaves, [0, 1])
    np.testing.assert_allclose(result.predicted, [0.6, 0.8])  # base + phi[0] + phi[1]
    assert result.utility == pytest.approx(0.7)
    assert result.base_utility == pytest.approx(0.5)


def test_weights_change_what_is_pruned():
    # Domain 1 alone: u = (0, 0.3, -0.2, -0.05): only leaf 1 helps.
    result = prune_select(PHI, [0.5, 0.5], members=MEMBERS, weights=[0, 1])
    assert result.cut == 1
    np.testing.assert_array_equal(result.points, [2, 3, 4])


def test_min_effect_moves_the_threshold():
    assert prune_select(PHI, [0.5, 0.5], members=MEMBERS, min_effect=-0.01).cut == 3  # leaf 3 (u = 0) kept
    assert prune_select(PHI, [0.5, 0.5], members=MEMBERS, min_effect=0.1).cut == 0  # strictly above
    empty = prune_select(PHI, [0.5, 0.5], members=MEMBERS, min_effect=0.1)
    assert empty.points.size == 0 and empty.leaves.size == 0
    np.testing.assert_allclose(empty.predicted, [0.5, 0.5])


def test_budget_draws_uniformly_from_the_kept_points_and_scales_the_prediction():
    result = prune_select(PHI, [0.5, 0.5], members=MEMBERS, budget=3, seed=7)
    assert result.points.size == 3
    assert set(result.points.tolist()) <= {0, 1, 2, 3, 4}
    # listed in the order of the kept leaves, members in order within a leaf
    kept_order = [0, 1, 2, 3, 4]
    assert result.points.tolist() == sorted(result.points.tolist(), key=kept_order.index)
    share = np.array([np.isin(MEMBERS[g], result.points).mean() for g in (0, 1)])
    expected = np.clip(np.array([0.5, 0.5]) + share @ np.array(PHI)[[0, 1]], 0, 1)
    np.testing.assert_allclose(result.predicted, expected)
    again = prune_select(PHI, [0.5, 0.5], members=MEMBERS, budget=3, seed=7)
    np.testing.assert_array_equal(result.points, again.points)


def test_different_seeds_draw_different_subsets():
    members = [list(range(g * 50, g * 50 + 50)) for g in range(4)]
    phi = np.full((4, 1), 0.1)
    draws = {tuple(prune_select(phi, [0.2], members=members, budget=20, seed=s).points) for s in range(5)}
    assert len(draws) == 5


def test_pinned_and_excluded():
    result = prune_select(PHI, [0.5, 0.5], members=MEMBERS, pinned=[2], excluded=[1])
    np.testing.assert_array_equal(result.order, [2, 0, 3])  # pinned first, excluded left out
    assert result.cut == 2  # the pinned leaf and leaf 0
    np.testing.assert_array_equal(result.points, [5, 0, 1])


def test_utility_effects():
    np.testing.assert_allclose(
        utility_effects(np.array(PHI), np.array([1.0, 3.0])), [0.05, 0.2, -0.15, -0.025]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"phi": [[np.nan]]}, "phi"),
        ({"base": [1.5]}, "base"),
        ({"weights": [-1.0]}, "weights"),
        ({"budget": -1}, "budget"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": True}, "seed must be a non-negative integer"),
        ({"min_effect": float("inf")}, "min_effect must be finite"),
        ({"pinned": [0], "excluded": [0]}, "pinned and excluded both list leaf 0"),
        ({"members": [[0], [0]]}, "members"),
    ],
    ids=[
        "nan-phi",
        "base",
        "weights",
        "budget",
        "seed",
        "bool-seed",
        "min-effect",
        "pin-and-exclude",
        "members",
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    args = {"phi": [[0.1]], "base": [0.5], **kwargs}
    if "members" in kwargs:
        args["phi"], args["base"] = [[0.1], [0.2]], [0.5]
    phi, base = args.pop("phi"), args.pop("base")
    with pytest.raises(ValueError, match=message):
        prune_select(phi, base, **args)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 12),
    st.integers(1, 4),
    st.integers(0, 40),
    st.integers(0, 2**31),
)
def test_properties(n_leaves, n_domains, budget, seed):
    rng = np.random.default_rng(seed)
    phi = rng.normal(0, 0.1, size=(n_leaves, n_domains))
    sizes = rng.integers(1, 6, size=n_leaves)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    members = [list(range(s, s + k)) for s, k in zip(starts, sizes, strict=True)]
    result = prune_select(phi, np.full(n_domains, 0.5), members=members, budget=budget, seed=seed)
    effect = phi.mean(axis=1)
    kept = set(np.flatnonzero(effect > 0).tolist())
    assert set(result.order[: result.cut].tolist()) == kept
    assert sorted(result.order.tolist()) == list(range(n_leaves))
    available = sum(int(sizes[g]) for g in kept)
    assert result.points.size == min(budget, available)
    assert len(set(result.points.tolist())) == result.points.size
    assert set(result.point_leaves.tolist()) <= kept
    assert set(result.leaves.tolist()) == set(result.point_leaves.tolist())
    for point, leaf in zip(result.points, result.point_leaves, strict=True):
        assert point in members[leaf]
