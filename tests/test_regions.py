"""harp.regions: hand-computed cases, the fast path against plain loops, ranking and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from harp.regions import leaves_of, rank_regions, region_effects


def test_hand_computed_two_regions() -> None:
    # Region 0: leaves of 1 and 3 points, effects 1 and 3 -> (1*1 + 3*3) / 4 = 2.5; sd sqrt(0.1^2 + 0.3^2) / 4.
    # Region 2: one leaf of 5 points -> its own effect and sd; region 1 holds no leaf and is not listed.
    out = region_effects(
        np.array([1.0, 3.0, -2.0]),
        np.array([0.1, 0.1, 0.2]),
        np.array([0, 0, 2]),
        np.array([1, 3, 5]),
        measured=np.array([True, False, True]),
    )
    assert out.region.tolist() == [0, 2]
    assert out.n_leaves.tolist() == [2, 1] and out.points.tolist() == [4, 5]
    np.testing.assert_allclose(out.mean, [2.5, -2.0])
    np.testing.assert_allclose(out.sd, [np.sqrt(0.1**2 + 0.3**2) / 4, 0.2])
    assert out.measured_share is not None
    np.testing.assert_allclose(out.measured_share, [0.25, 1.0])


def test_a_region_without_points_is_nan() -> None:
    out = region_effects(np.array([1.0, 2.0]), np.array([0.1, 0.1]), np.array([0, 1]), np.array([0, 4]))
    assert np.isnan(out.mean[0]) and np.isnan(out.sd[0]) and out.mean[1] == 2.0


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_matches_loops_per_domain(seed: int) -> None:
    rng = np.random.default_rng(seed)
    leaves, domains = 60, 4
    phi = rng.normal(size=(leaves, domains))
    sd = rng.uniform(0.01, 0.5, size=(leaves, domains))
    groups = rng.integers(0, 9, size=leaves)
    sizes = rng.integers(1, 40, size=leaves)
    measured = rng.random((leaves, domains)) < 0.4
    out = region_effects(phi, sd, groups, sizes, measured)
    for row, region in enumerate(out.region):
        inside = groups == region
        w = sizes[inside].astype(float)
        for d in range(domains):
            assert out.mean[row, d] == pytest.approx(np.sum(w * phi[inside, d]) / w.sum())
            assert out.sd[row, d] == pytest.approx(np.sqrt(np.sum((w * sd[inside, d]) ** 2)) / w.sum())
            assert out.measured_share[row, d] == pytest.approx(np.sum(w * measured[inside, d]) / w.sum())
        assert out.points[row] == sizes[inside].sum() and out.n_leaves[row] == inside.sum()
    one = region_effects(phi[:, 2], sd[:, 2], groups, sizes)
    np.testing.assert_allclose(one.mean, out.mean[:, 2])
    assert one.measured_share is None


@given(st.lists(st.floats(-5, 5, allow_nan=False) | st.just(float("nan")), max_size=12), st.booleans())
@example([0.0, -1.0, -1.0, 2.0], True)
@example([], False)
def test_rank_regions_orders_and_filters(means: list[float], harmful: bool) -> None:
    values = np.array(means, dtype=float)
    order = rank_regions(values, harmful=harmful)
    picked = values[order]
    assert np.all(picked < 0) if harmful else np.all(picked > 0)
    assert np.all(np.diff(picked) >= 0) if harmful else np.all(np.diff(picked) <= 0)
    wanted = (values < 0) if harmful else (values > 0)
    assert sorted(order.tolist()) == np.flatnonzero(wanted).tolist()
    ties = [list(order[picked == v]) for v in np.unique(picked)]
    assert all(t == sorted(t) for t in ties)  # ties keep region order
    assert rank_regions(values, harmful=harmful, k=2).tolist() == order[:2].tolist()


def test_leaves_of() -> None:
    assert leaves_of(np.array([3, 1, 3, 0]), 3).tolist() == [0, 2]
    assert leaves_of(np.array([3, 1]), 7).tolist() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sd": np.zeros(2)}, "sd has shape"),
        ({"region_of_leaf": np.array([0, 1])}, "must have shape"),
        ({"region_of_leaf": np.array([0, -1, 0])}, "must be >= 0"),
        ({"sd": -np.ones(3)}, "sd must be >= 0"),
        ({"measured": np.ones(2, dtype=bool)}, "measured must have shape"),
        ({"region_of_leaf": np.array([0.5, 1.0, 0.0])}, "integers"),
    ],
    ids=["sd-shape", "groups-shape", "negative-region", "negative-sd", "measured-shape", "float-groups"],
)
def test_bad_inputs_are_refused(kwargs: dict, message: str) -> None:
    args = {
        "effect": np.zeros(3),
        "sd": np.zeros(3),
        "region_of_leaf": np.array([0, 0, 1]),
        "leaf_size": np.ones(3, dtype=int),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        region_effects(**args)


def test_rank_regions_refuses_a_matrix() -> None:
    with pytest.raises(ValueError, match="shape"):
        rank_regions(np.zeros((2, 2)), harmful=True)
