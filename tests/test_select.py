"""harp.select: hand-computed cases, equality with the naive reference, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reference_select import reference_order

from harp import select
from harp.select import best_prefix_cut, greedy_order, predicted_scores, sort_effects, with_budget

NONE = np.zeros(0, dtype=np.int64)


# ---- hand-computed cases ---------------------------------------------------------------------------------------


def test_harp_e_by_hand():
    # U(empty) = 0.5. Step 1 gains: leaf 0 +0.05, leaf 1 +0.10, leaf 2 -0.10 -> leaf 1.
    # Step 2 from y = (0.5, 0.7): leaf 0 +0.05, leaf 2 -0.10 -> leaf 0. Step 3: leaf 2 -0.10.
    phi = [[0.1, 0.0], [0.0, 0.2], [-0.3, 0.1]]
    result = select(phi, [0.5, 0.5], envelope="E")
    np.testing.assert_array_equal(result.order, [1, 0, 2])
    np.testing.assert_allclose(result.gains, [0.10, 0.05, -0.10])
    assert result.cut == 2  # running sums 0, .10, .15, .05
    np.testing.assert_array_equal(result.points, [1, 0])
    np.testing.assert_array_equal(result.leaves, [1, 0])
    np.testing.assert_allclose(result.predicted, [0.6, 0.7])
    assert result.utility == pytest.approx(0.65)
    assert result.base_utility == pytest.approx(0.5)


def test_harp_c_by_hand_with_budget_inside_a_leaf():
    # U(empty) = 0.5. Step 1: leaf 0 +0.1, leaf 1 +0.1, leaf 2 +0.125 (0.8 and 0.45) -> leaf 2.
    # Step 2: leaf 0 adds nothing (0.2 < max 0.3), leaf 1 lifts domain 1 to 0.55: +0.05 -> leaf 1. Step 3: 0.
    phi = [[0.2, 0.0], [0.1, 0.1], [0.3, -0.05]]
    members = [[0, 1], [2, 3, 4], [5]]
    result = select(phi, [0.5, 0.5], envelope="harp-c", members=members)
    np.testing.assert_array_equal(result.order, [2, 1, 0])
    np.testing.assert_allclose(result.gains, [0.125, 0.05, 0.0], atol=1e-15)
    assert result.cut == 2  # running sums 0, .125, .175, .175: the tie goes to the shorter prefix
    np.testing.assert_array_equal(result.points, [5, 2, 3, 4])
    np.testing.assert_array_equal(result.point_leaves, [2, 1, 1, 1])

    capped = select(phi, [0.5, 0.5], envelope="C", members=members, budget=2)
    np.testing.assert_array_equal(capped.points, [5, 2])  # the budget cuts inside leaf 1
    np.testing.assert_array_equal(capped.leaves, [2, 1])
    np.testing.assert_allclose(capped.predicted, [0.8, 0.55])

    one = select(phi, [0.5, 0.5], envelope="C", members=members, budget=1)
    np.testing.assert_array_equal(one.leaves, [2])  # leaf 1 no longer contributes a point
    np.testing.assert_allclose(one.predicted, [0.8, 0.45])

    zero = select(phi, [0.5, 0.5], envelope="C", members=members, budget=0)
    assert zero.points.size == 0 and zero.leaves.size == 0
    np.testing.assert_allclose(zero.predicted, [0.5, 0.5])


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_no_prefix_helps_selects_nothing(envelope):
    result = select([[-0.1, 0.0], [-0.2, -0.1]], [0.5, 0.5], envelope=envelope)
    assert result.cut == 0
    assert result.points.size == 0 and result.leaves.size == 0
    np.testing.assert_array_equal(result.order, [0, 1])
    np.testing.assert_allclose(result.predicted, [0.5, 0.5])
    assert result.utility == result.base_utility


def test_saturated_domain_gains_nothing_and_the_tie_keeps_the_shorter_prefix():
    result = select([[0.1], [0.1]], [0.95], envelope="E")
    np.testing.assert_allclose(result.gains, [0.05, 0.0], atol=1e-15)
    assert result.cut == 1
    np.testing.assert_allclose(result.predicted, [1.0])


def test_exact_ties_go_to_the_smaller_leaf_id():
    result = select([[0.1, 0.0], [0.0, 0.1], [0.1, 0.0]], [0.5, 0.5], envelope="E")
    np.testing.assert_array_equal(result.order, [0, 1, 2])


def test_zero_weight_domain_is_ignored():
    result = select([[0.3, -0.1], [-0.5, 0.2]], [0.5, 0.5], envelope="E", weights=[0.0, 1.0])
    np.testing.assert_array_equal(result.order, [1, 0])
    np.testing.assert_array_equal(result.leaves, [1])


def test_pinned_leaves_come_first_and_excluded_leaves_never():
    phi = [[0.1, 0.0], [0.0, 0.2], [-0.3, 0.1], [0.05, 0.05]]
    result = select(phi, [0.5, 0.5], envelope="E", pinned=[2], excluded=[1])
    assert result.order[0] == 2
    assert 1 not in result.order
    assert result.cut >= 1  # a pinned leaf is always selected, even when it hurts
    np.testing.assert_allclose(result.gains[0], -0.1)
    np.testing.assert_array_equal(result.order, [2, 0, 3])


def test_without_pins_or_exclusions_the_defaults_change_nothing(rng):
    phi = rng.normal(0, 0.1, (30, 4))
    base = rng.uniform(0, 1, 4)
    plain = select(phi, base, envelope="C")
    explicit = select(phi, base, envelope="C", pinned=[], excluded=[], weights=np.ones(4))
    np.testing.assert_array_equal(plain.order, explicit.order)
    np.testing.assert_array_equal(plain.gains, explicit.gains)


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_with_budget_equals_a_fresh_select(rng, envelope):
    phi = rng.normal(0.01, 0.05, (40, 5))
    base = rng.uniform(0.2, 0.9, 5)
    members = [np.arange(3 * g, 3 * g + 1 + g % 3) for g in range(40)]
    full = select(phi, base, envelope=envelope, members=members, pinned=[5], excluded=[6])
    for budget in [None, 0, 1, 7, 10_000]:
        fresh = select(phi, base, envelope=envelope, members=members, budget=budget, pinned=[5], excluded=[6])
        cheap = with_budget(full, budget, phi=phi, base=base, envelope=envelope, members=members)
        for field in ("order", "gains", "leaves", "points", "point_leaves", "predicted"):
            np.testing.assert_array_equal(getattr(cheap, field), getattr(fresh, field))
        assert cheap.cut == fresh.cut and cheap.utility == fresh.utility
    with pytest.raises(ValueError, match="budget must be >= 0"):
        with_budget(full, -1, phi=phi, base=base, envelope=envelope, members=members)
    with pytest.raises(ValueError, match="selection ranks leaf 39 but phi has 10 rows"):
        with_budget(full, 5, phi=phi[:10], base=base, envelope=envelope)


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_sorted_effects_kept_across_weight_changes_change_nothing(rng, envelope):
    phi = rng.normal(0, 0.05, (300, 6))
    base = rng.uniform(0.2, 0.95, 6)
    kept = sort_effects(phi)
    for weights in (np.ones(6), rng.random(6), np.array([0.0, 1.0, 0.0, 2.0, 0.5, 0.0])):
        fresh = select(phi, base, envelope=envelope, weights=weights, pinned=[4], excluded=[7])
        again = select(
            phi, base, envelope=envelope, weights=weights, pinned=[4], excluded=[7], sorted_effects=kept
        )
        np.testing.assert_array_equal(again.order, fresh.order)
        np.testing.assert_array_equal(again.gains, fresh.gains)
        assert again.cut == fresh.cut


def test_sorted_effects_of_another_phi_are_refused(rng):
    phi = rng.normal(0, 0.05, (20, 3))
    kept = sort_effects(phi)
    with pytest.raises(ValueError, match="sorted_effects was made from another phi"):
        select(phi + 0.01, [0.5, 0.5, 0.5], envelope="C", sorted_effects=kept)
    with pytest.raises(ValueError, match="sorted_effects was made from another phi"):
        select(phi[:10], [0.5, 0.5, 0.5], envelope="C", sorted_effects=kept)


def test_empty_pool():
    result = select(np.zeros((0, 3)), [0.5, 0.5, 0.5], envelope="E")
    assert result.order.size == 0 and result.cut == 0 and result.points.size == 0


def test_best_prefix_cut_respects_pins():
    assert best_prefix_cut(np.array([-1.0, 2.0, -3.0])) == 2
    assert best_prefix_cut(np.array([-1.0, -2.0])) == 0
    assert best_prefix_cut(np.array([-1.0, -2.0]), n_pinned=1) == 1


# ---- equality with the naive reference --------------------------------------------------------------------------


def reference_select(phi, base, weights, envelope, members, budget, pinned, excluded):
    """The whole of DESIGN.md's selection, by the naive definition."""
    order, gains = reference_order(phi, base, weights, envelope, pinned, excluded)
    running = np.concatenate(([0.0], np.cumsum(gains)))
    cut = len(pinned) + int(np.argmax(running[len(pinned) :]))
    points = [p for g in order[:cut] for p in members[g]]
    owners = [g for g in order[:cut] for _ in members[g]]
    if budget is not None:
        points, owners = points[:budget], owners[:budget]
    leaves = [g for g in order[:cut] if g in set(owners)]
    return order, gains, cut, points, leaves


VALUES = st.one_of(
    st.sampled_from([0.0, 0.1, -0.1, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0, 0.05, -0.05]),
    st.floats(-1.5, 1.5, allow_nan=False, allow_subnormal=False),
)
BASES = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.99, 0.01]), st.floats(0.0, 1.0, allow_subnormal=False))
WEIGHTS = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 2.0]), st.floats(0.0, 3.0, allow_subnormal=False))


@st.composite
def instances(draw):
    n_leaves = draw(st.integers(1, 12))
    n_domains = draw(st.integers(1, 4))
    phi = np.array(draw(st.lists(VALUES, min_size=n_leaves * n_domains, max_size=n_leaves * n_domains)))
    phi = phi.reshape(n_leaves, n_domains)
    if draw(st.booleans()):  # exact ties: repeat a row
        phi[draw(st.integers(0, n_leaves - 1))] = phi[0]
    base = np.array(draw(st.lists(BASES, min_size=n_domains, max_size=n_domains)))
    weights = np.array(draw(st.lists(WEIGHTS, min_size=n_domains, max_size=n_domains)))
    if not (weights > 0).any():
        weights[draw(st.integers(0, n_domains - 1))] = 1.0
    chosen = draw(st.permutations(range(n_leaves)))
    n_pinned = draw(st.integers(0, min(2, n_leaves)))
    n_excluded = draw(st.integers(0, min(2, n_leaves - n_pinned)))
    pinned = list(chosen[:n_pinned])
    excluded = list(chosen[n_pinned : n_pinned + n_excluded])
    sizes = draw(st.lists(st.integers(0, 3), min_size=n_leaves, max_size=n_leaves))
    starts = np.concatenate(([0], np.cumsum(sizes)))
    members = [list(range(starts[g], starts[g + 1])) for g in range(n_leaves)]
    budget = draw(st.one_of(st.none(), st.integers(0, int(starts[-1]) + 1)))
    envelope = draw(st.sampled_from(["C", "E"]))
    return phi, base, weights, envelope, members, budget, pinned, excluded


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
@example((np.array([[0.5], [0.5]]), np.array([1.0]), np.array([1.0]), "E", [[0], [1]], None, [], []))
@example((np.array([[-0.5], [0.5]]), np.array([0.0]), np.array([1.0]), "C", [[0], [1]], 1, [], []))
@example((np.zeros((3, 2)), np.array([0.3, 0.7]), np.array([0.0, 1.0]), "C", [[0], [], [1]], None, [2], [0]))
def test_select_matches_the_naive_reference(instance):
    phi, base, weights, envelope, members, budget, pinned, excluded = instance
    result = select(
        phi,
        base,
        envelope=envelope,
        weights=weights,
        members=members,
        budget=budget,
        pinned=pinned,
        excluded=excluded,
    )
    order, gains, cut, points, leaves = reference_select(
        phi, base, weights, envelope, members, budget, pinned, excluded
    )
    np.testing.assert_array_equal(result.order, order)
    np.testing.assert_array_equal(result.gains, gains)
    assert result.cut == cut
    np.testing.assert_array_equal(result.points, points)
    np.testing.assert_array_equal(result.leaves, leaves)
    np.testing.assert_array_equal(
        result.predicted, predicted_scores(phi, base, np.array(leaves, dtype=int), envelope)
    )


def random_instance(rng, n_leaves, n_domains):
    kind = rng.integers(4)
    scale = [0.01, 0.1, 0.5, 2.0][kind]
    phi = rng.normal(0, scale, (n_leaves, n_domains))
    if rng.random() < 0.3:
        phi = np.round(phi, 1)  # many exact ties
    if rng.random() < 0.3:
        phi[rng.random(phi.shape) < 0.3] = 0.0
    if rng.random() < 0.5:
        base = rng.choice([0.0, 1.0, 0.5, 0.97, 0.02], n_domains)  # saturated domains
    else:
        base = rng.random(n_domains)
    weights = rng.random(n_domains)
    weights[rng.random(n_domains) < 0.3] = 0.0
    if not (weights > 0).any():
        weights[0] = 1.0
    return phi, base, weights


def assert_matches_reference(phi, base, weights, envelope, pinned=NONE, excluded=NONE):
    """``greedy_order`` equals the naive reference, order and gains bitwise; returns them for further checks."""
    order, gains = greedy_order(phi, base, weights, envelope, pinned, excluded)
    expected_order, expected_gains = reference_order(phi, base, weights, envelope, pinned, excluded)
    np.testing.assert_array_equal(order, expected_order)
    np.testing.assert_array_equal(gains, expected_gains)
    return order, gains


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_greedy_order_matches_the_reference_on_thousands_of_instances(envelope):
    rng = np.random.default_rng(12345)
    for trial in range(1500):
        n_leaves = int(rng.integers(1, 60))
        n_domains = int(rng.integers(1, 8))
        phi, base, weights = random_instance(rng, n_leaves, n_domains)
        order, gains = greedy_order(phi, base, weights, envelope, NONE, NONE)
        expected_order, expected_gains = reference_order(phi, base, weights, envelope)
        assert np.array_equal(order, expected_order), f"trial {trial}"
        assert np.array_equal(gains, expected_gains), f"trial {trial}"


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_greedy_order_matches_the_reference_on_a_hierarchical_pool(envelope):
    # Effects like real posteriors: many small effects, domains that saturate, long plateaus of zero gain.
    rng = np.random.default_rng(7)
    parent = rng.normal(0, 0.02, (40, 16))
    phi = parent[np.arange(400) % 40] + rng.normal(0, 0.01, (400, 16))
    base = rng.uniform(0.3, 0.98, 16)
    weights = np.ones(16)
    assert_matches_reference(phi, base, weights, envelope)


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_greedy_order_matches_the_reference_on_a_pool_like_the_benchmarks(envelope):
    # The shape benchmarks/bench_select.py times: harmful parents, three domains near 1 at the start, then a long
    # stretch where every domain is saturated and gains are exactly 0, then the harmful leaves at the end.
    rng = np.random.default_rng(11)
    parent = rng.normal(0, 0.02, (100, 24))
    parent[rng.random(100) < 0.05] -= 0.06
    phi = parent[np.arange(800) % 100] + rng.normal(0, 0.01, (800, 24))
    base = rng.uniform(0.2, 0.9, 24)
    base[:3] = 0.97
    weights = np.ones(24)
    _, gains = assert_matches_reference(phi, base, weights, envelope)
    assert (gains > 0).sum() > 0 and (gains == 0).sum() > 200 and (gains < 0).sum() > 200


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_greedy_order_matches_the_reference_with_many_exact_ties_and_unweighted_domains(envelope):
    # Leaves in groups of 120 with identical effects (unmeasured leaves share their parent's posterior mean):
    # HARP-E's float32 screening finds more near-ties than it rescores and falls back to the exact pass; a third
    # of the domains have zero weight and are dropped before the greedy.
    rng = np.random.default_rng(3)
    group = rng.normal(0, 0.02, (5, 12))
    group[1] -= 0.05
    phi = group[np.arange(600) // 120]
    phi[::7] += rng.normal(0, 0.01, (86, 12))
    base = rng.uniform(0.3, 0.98, 12)
    weights = rng.random(12)
    weights[::3] = 0.0
    assert_matches_reference(phi, base, weights, envelope)


def test_harp_e_pick_whose_drop_is_lost_to_rounding():
    # Found while adding HARP-E's no-tracking stretch (every weighted score at or above 1): after a few picks that
    # change nothing, leaf 1 lowers domain 1 to just below 1 yet gains exactly 0.0 (the drop is lost to rounding)
    # and wins on its id; the books skipped during the stretch must then be rebuilt although no score is >= 1 on
    # every domain any more.
    phi = np.array(
        [[0.0, -0.3, -0.9], [0.0, -0.4, 0.0], [-0.2, 0.2, 0.0], [0.2, 0.2, 0.0], [0.4, 0.2, -0.9], [0.0, -0.4, -0.6],
         [0.0, 0.2, 0.9], [0.6, 0.7, 1.4], [0.0, 0.1, 0.1], [-0.2, 0.9, 1.0], [0.0, 0.1, 0.0], [0.2, 0.0, 1.1]]
    )  # fmt: skip
    base = np.array([0.02, 0.5, 0.02])
    weights = np.array([0.5642341776102571, 0.8013525089692385, 0.4363780507220125])
    order, _ = assert_matches_reference(phi, base, weights, "E")
    np.testing.assert_array_equal(order[8:], [8, 5, 9, 10])


# ---- the compiled paths of plateaus: zero gains, saturated domains, drops lost to rounding ---------------------

# Effects that keep a saturated score at 1, lower it by less than rounding can see (1 - 1.1e-16 == 1 - 2^-53 is not
# representable, so some of these round back to 1 and some do not), or by a little, or a lot.
PLATEAU_VALUES = st.sampled_from(
    [
        0.0,
        0.0,
        0.0,
        1e-17,
        -1e-17,
        -1.1e-16,
        -2.3e-16,
        -5e-16,
        1e-3,
        -1e-3,
        0.01,
        -0.01,
        0.05,
        -0.05,
        0.5,
        -0.5,
    ]
)
PLATEAU_BASES = st.sampled_from([1.0, 1.0, 0.0, 0.999, 0.97, 1.0 - 2.3e-16])


@st.composite
def plateau_instances(draw):
    n_leaves = draw(st.integers(1, 40))
    n_domains = draw(st.integers(1, 6))
    phi = np.array(
        draw(st.lists(PLATEAU_VALUES, min_size=n_leaves * n_domains, max_size=n_leaves * n_domains))
    )
    phi = phi.reshape(n_leaves, n_domains)
    for _ in range(draw(st.integers(0, 3))):  # exact ties between whole rows
        phi[draw(st.integers(0, n_leaves - 1))] = phi[draw(st.integers(0, n_leaves - 1))]
    base = np.array(draw(st.lists(PLATEAU_BASES, min_size=n_domains, max_size=n_domains)))
    weights = np.array(
        draw(st.lists(st.sampled_from([0.0, 1.0, 1.0, 0.3, 2.0]), min_size=n_domains, max_size=n_domains))
    )
    if not (weights > 0).any():
        weights[0] = 1.0
    chosen = draw(st.permutations(range(n_leaves)))
    n_pinned = draw(st.integers(0, min(3, n_leaves)))
    n_excluded = draw(st.integers(0, min(3, n_leaves - n_pinned)))
    pinned = np.array(chosen[:n_pinned], dtype=np.int64)
    excluded = np.array(chosen[n_pinned : n_pinned + n_excluded], dtype=np.int64)
    return phi, base, weights, pinned, excluded


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plateau_instances(), st.sampled_from(["C", "E"]))
@example((np.zeros((3, 1)), np.ones(1), np.ones(1), NONE, NONE), "E")  # every gain 0.0: the order is by id
@example((np.full((4, 2), -1.1e-16), np.ones(2), np.ones(2), np.array([2]), NONE), "E")
@example(
    (
        np.array([[0.5, 0.5], [-1e-17, 0.0], [0.0, -0.5]]),
        np.full(2, 0.6),
        np.ones(2),
        np.array([0]),
        np.array([2]),
    ),
    "E",
)
# After leaf 1 raises the score to 1.01, leaf 0's witness code equals the threshold code and no longer proves a drop:
# leaf 0 (1.01 - 0.01 == 1.0) wins the tie with leaf 2.
@example((np.array([[-0.01], [0.01], [0.0]]), np.ones(1), np.ones(1), NONE, NONE), "E")
def test_greedy_order_matches_the_reference_on_plateaus(instance, envelope):
    # Saturated domains from the start or after a pinned leaf: HARP-E's frozen picks (the witness scan) and
    # HARP-C's zero-gain tree decide most steps, and their results must not differ from the naive greedy's.
    phi, base, weights, pinned, excluded = instance
    assert_matches_reference(phi, base, weights, envelope, pinned, excluded)


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_a_long_plateau_with_pins_and_exclusions_matches_the_reference(envelope):
    # A pinned leaf saturates every domain, then hundreds of zero-gain steps; harmful leaves scattered among them
    # keep witnesses whose scores move as the plateau's picks add up, and a few lower a score by a rounding's width.
    rng = np.random.default_rng(21)
    phi = rng.normal(0, 0.01, (600, 10))
    phi[rng.random(600) < 0.1] -= 0.03
    phi[rng.random((600, 10)) < 0.05] = -2.3e-16
    phi[5] = 0.5
    base = rng.uniform(0.6, 0.9, 10)
    weights = np.ones(10)
    pinned, excluded = np.array([5]), np.array([0, 17, 300])
    _, gains = assert_matches_reference(phi, base, weights, envelope, pinned, excluded)
    assert (gains == 0.0).sum() > 100


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([-np.inf, -1.0, -0.5, -0.0, 0.0, 1e-300, 0.5, 1.0, np.inf]), max_size=12),
    st.sampled_from([-np.inf, -1.0, -0.75, -0.0, 0.0, 0.5, 0.75, 1.0, np.inf]),
)
def test_search_is_numpys_searchsorted(values, key):
    from harp.select.kernels import search as _search

    row = np.sort(np.array(values, dtype=np.float64))
    rows = np.stack([np.zeros_like(row), row])  # searches row 1 of a 2-D array, in place
    for right in (False, True):
        assert _search(rows, 1, key, right) == np.searchsorted(row, key, side="right" if right else "left")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 257), st.integers(0, 255)), min_size=1, max_size=70))
def test_deepest_names_the_first_deepest_domain(pairs):
    from harp.select.harp_e import deepest as _deepest

    sure = np.array([s for s, _ in pairs], dtype=np.int64)
    code = np.array([[c for _, c in pairs]] * 2, dtype=np.uint8)
    depth = sure - code[1].astype(np.int64)
    expected = int(np.argmax(depth)) if depth.max() > 0 else -1
    assert _deepest(sure, code, 1) == expected


# ---- validation -------------------------------------------------------------------------------------------------

PHI = [[0.1, 0.0], [0.0, 0.2]]
BASE = [0.5, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"envelope": "X"}, r"envelope must be one of", id="envelope"),
        pytest.param({"phi": [0.1, 0.2]}, r"phi must be 2-D", id="phi-1d"),
        pytest.param(
            {"phi": [[0.1, np.nan], [0, 0]]}, r"phi must be finite, found nan at index \(0, 1\)", id="phi-nan"
        ),
        pytest.param({"phi": [[np.inf, 0], [0, 0]]}, r"phi must be finite", id="phi-inf"),
        pytest.param({"phi": np.zeros((2, 0)), "base": []}, r"at least one domain", id="no-domains"),
        pytest.param({"base": [0.5]}, r"base has 1 entries but there are 2 domains", id="base-shape"),
        pytest.param(
            {"base": [0.5, 1.2]}, r"base must lie in \[0, 1\], got 1.2 for domain 1", id="base-range"
        ),
        pytest.param({"weights": [1.0, -1.0]}, r"weights must be >= 0, got -1.0", id="weights-negative"),
        pytest.param({"weights": [0.0, 0.0]}, r"weights must not be all zero", id="weights-zero"),
        pytest.param({"weights": [1.0]}, r"weights has 1 entries", id="weights-shape"),
        pytest.param({"budget": -3}, r"budget must be >= 0, got -3", id="budget-negative"),
        pytest.param({"budget": 2.5}, r"budget must be a non-negative integer", id="budget-float"),
        pytest.param({"members": [[0]]}, r"phi has 2 rows but members has 1 leaves", id="members-count"),
        pytest.param({"members": [[0, 1], [1]]}, r"point 1 is in more than one leaf", id="members-overlap"),
        pytest.param(
            {"members": [[0], [-1]]}, r"members\[1\] holds a negative point index", id="members-negative"
        ),
        pytest.param(
            {"members": [[0], [0.5]]}, r"members\[1\] must be a 1-D array of integer", id="members-float"
        ),
        pytest.param({"pinned": [5]}, r"pinned holds leaf 5, outside 0..1", id="pinned-range"),
        pytest.param({"excluded": [0, 0]}, r"excluded lists leaf 0 more than once", id="excluded-dup"),
        pytest.param(
            {"pinned": [1], "excluded": [1]}, r"pinned and excluded both list leaf 1", id="pin-and-exclude"
        ),
    ],
)
def test_bad_input_names_the_argument(kwargs, message):
    arguments = {"phi": PHI, "base": BASE, "envelope": "C", **kwargs}
    phi = arguments.pop("phi")
    base = arguments.pop("base")
    with pytest.raises(ValueError, match=message):
        select(phi, base, **arguments)


@pytest.mark.parametrize("spelling", ["c", "C", "harp-c", "HARP-C", " Harp-C "])
def test_envelope_spellings(spelling):
    assert np.array_equal(select(PHI, BASE, envelope=spelling).order, select(PHI, BASE, envelope="C").order)


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_warm_up_loads_the_very_code_a_real_select_runs(envelope):
    # In a fresh process: after warm_up, a select on another pool (zero weights, pins, a budget) compiles or
    # loads nothing more, so `harp select` may run warm_up on a thread while it reads the store.
    import subprocess
    import sys

    script = f"""
import importlib
import numpy as np
sel = importlib.import_module("harp.select")  # the module (harp.select the attribute is the function)
sel.warm_up({envelope!r})
from harp.select.harp_c import greedy_c, sort_by_domain
from harp.select.harp_e import greedy_e
core = greedy_e if {envelope!r} == "E" else greedy_c
loaded = (list(core.signatures), list(sort_by_domain.signatures))
rng = np.random.default_rng(0)
phi = rng.normal(0, 0.1, (300, 8))
weights = np.r_[np.ones(6), 0.0, 0.0]
members = [np.arange(3 * g, 3 * g + 3) for g in range(300)]
sel.select(phi, np.full(8, 0.6), envelope={envelope!r}, weights=weights, members=members, pinned=[4], budget=50)
assert loaded == (list(core.signatures), list(sort_by_domain.signatures)), loaded
assert loaded[0], "warm_up loaded no compiled greedy"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_writing_a_csv_does_not_import_numba():
    import subprocess
    import sys

    script = "import sys, harp.cli, harp.export; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
