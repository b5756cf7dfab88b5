"""The objective's shared rules: the default weights and a leaf's weighted effect."""

from __future__ import annotations

import numpy as np
import pytest

from harp.objective import default_weights, weighted_effect
from harp.prune import utility_effects

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
