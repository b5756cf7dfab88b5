"""The objective's shared rules: the default weights, a leaf's weighted effect and a score vector's utility."""

from __future__ import annotations

import numpy as np
import pytest

from harp import select
from harp.objective import default_weights, utility, weighted_effect
from harp.prune import prune_select, utility_effects

PHI = np.array([[0.1, 0.0], [0.2, 0.2], [-0.3, -0.1], [0.5, -0.2]])


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        ([True, False, True], [1.0, 0.0, 1.0]),
        ([False, False], [1.0, 1.0]),
        ([True, True], [1.0, 1.0]),
        ([], []),
    ],
    ids=["some-active", "none-active", "all-active", "no-domains"],
)
def test_default_weights(active, expected) -> None:
    weights = default_weights(np.array(active, dtype=bool))
    assert weights.dtype == np.float64
    np.testing.assert_array_equal(weights, expected)


def test_weighted_effect_by_hand() -> None:
    # (1 * phi[:, 0] + 3 * phi[:, 1]) / 4
    np.testing.assert_allclose(weighted_effect(PHI, np.array([1.0, 3.0])), [0.025, 0.2, -0.15, -0.025])


def test_weighted_effect_does_not_depend_on_the_weights_scale() -> None:
    np.testing.assert_allclose(
        weighted_effect(PHI, np.array([2.0, 6.0])), weighted_effect(PHI, np.array([1.0, 3.0]))
    )


def test_prune_utility_effects_are_the_weighted_effect() -> None:
    weights = np.array([0.5, 2.0])
    np.testing.assert_array_equal(utility_effects(PHI, weights), weighted_effect(PHI, weights))


def test_utility_by_hand() -> None:
    # (1 * 0.4 + 3 * 0.8) / 4
    assert utility(np.array([0.4, 0.8]), np.array([1.0, 3.0])) == pytest.approx(0.7)
    assert isinstance(utility(np.array([0.4, 0.8]), np.array([1.0, 3.0])), float)


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_selection_and_prune_report_the_utility_of_their_predicted_scores(envelope) -> None:
    base = np.array([0.3, 0.6])
    weights = np.array([0.5, 2.0])
    for result in (
        select(PHI, base, envelope=envelope, weights=weights),
        prune_select(PHI, base, weights=weights, seed=0),
    ):
        assert result.utility == utility(result.predicted, weights)
        assert result.base_utility == utility(base, weights)
        assert result.utility != result.base_utility  # the selection moved the scores
