"""Mixture validation's pure parts: drawing mixtures, the envelopes' predictions, the report."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest

from harp.mixtures import (
    draw_mixtures,
    mixture_report,
    predict_mixture,
    predicted_utility_gain,
    utility_gain,
)
from harp.select import select

# 2 leaves x 2 domains. Domain 1 starts at 0.9, so both envelopes clip it at 1 when both leaves are in.
PHI = np.array([[0.2, -0.1], [0.1, 0.3]])
BASE = np.array([0.5, 0.9])


# -- draw_mixtures ------------------------------------------------------------------------------------------------


def test_draws_are_sorted_distinct_subsets_of_the_asked_sizes() -> None:
    pool = np.array([40, 3, 17, 8, 25, 11, 2])
    mixtures = draw_mixtures(pool, [1, 3, 7, 2], seed=5)
    assert [m.size for m in mixtures] == [1, 3, 7, 2]
    for mixture in mixtures:
        assert mixture.dtype == np.int64
        assert np.array_equal(mixture, np.unique(mixture)), "sorted and distinct"
        assert np.isin(mixture, pool).all()
    assert mixtures[2].tolist() == [2, 3, 8, 11, 17, 25, 40], "a draw of every leaf is the whole pool"


def test_draws_are_seeded_and_independent_of_the_pool_order() -> None:
    pool = np.arange(0, 200, 3)
    sizes = [2, 5, 10, 40]
    first = draw_mixtures(pool, sizes, seed=11)
    again = draw_mixtures(pool, sizes, seed=11)
    shuffled = draw_mixtures(np.random.default_rng(0).permutation(pool), sizes, seed=11)
    other = draw_mixtures(pool, sizes, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(first, shuffled, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    expected = [
        np.sort(np.random.default_rng([11, k]).choice(pool, size=s, replace=False))
        for k, s in enumerate(sizes)
    ]
    assert all(np.array_equal(a, b) for a, b in zip(first, expected, strict=True))


def test_appending_sizes_keeps_the_earlier_mixtures() -> None:
    pool = np.arange(30)
    short = draw_mixtures(pool, [4, 6], seed=3)
    longer = draw_mixtures(pool, [4, 6, 9], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(short, longer[:2], strict=True))


def test_no_sizes_gives_no_mixtures() -> None:
    assert draw_mixtures([1, 2], []) == []
    assert draw_mixtures([], []) == []


@pytest.mark.parametrize(
    ("pool", "sizes", "seed", "match"),
    [
        pytest.param(
            [0, 1, 2], [2, 5], 0, r"sizes\[1\] is 5 but measured_leaves holds only 3 leaves", id="too-big"
        ),
        pytest.param([], [1], 0, r"sizes\[0\] is 1 but measured_leaves holds only 0 leaves", id="empty-pool"),
        pytest.param([0, 1, 2], [1, 0], 0, r"sizes\[1\] must be >= 1, got 0", id="size-zero"),
        pytest.param([0, 1, 2], [-2], 0, r"sizes\[0\] must be >= 1, got -2", id="size-negative"),
        pytest.param([0, 1, 2], [1.5], 0, r"sizes\[0\] must be an integer >= 1, got 1.5", id="size-float"),
        pytest.param([0, 1, 2], [True], 0, r"sizes\[0\] must be an integer >= 1, got True", id="size-bool"),
        pytest.param(
            [0, 1, 2], "12", 0, r"sizes must be a sequence of integers, got '12'", id="sizes-string"
        ),
        pytest.param([0, 4, 2, 4], [1], 0, r"measured_leaves lists leaf 4 more than once", id="duplicate"),
        pytest.param([0, -3, 2], [1], 0, r"measured_leaves must be >= 0, got leaf -3", id="negative"),
        pytest.param(
            [0.0, 1.0], [1], 0, r"measured_leaves must be a 1-D sequence of integer leaf ids", id="floats"
        ),
        pytest.param(
            [[0, 1]], [1], 0, r"measured_leaves must be a 1-D sequence of integer leaf ids", id="2-D"
        ),
        pytest.param([0, 1], [1], -1, r"seed must be >= 0, got -1", id="seed-negative"),
        pytest.param([0, 1], [1], "7", r"seed must be an integer >= 0, got '7'", id="seed-string"),
    ],
)
def test_draw_mixtures_refuses_bad_input(pool: Any, sizes: Any, seed: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        draw_mixtures(pool, sizes, seed=seed)


# -- predictions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaves", "envelope", "expected"),
    [
        # C: d0 = max pos 0.2; d1 = 0.9 + 0.3 - 0.1 = 1.1, clipped to 1, so +0.1.
        pytest.param([0, 1], "C", [0.2, 0.1], id="C-both"),
        # E: d0 = 0.2 + 0.1; d1 = 0.9 - 0.1 + 0.3 = 1.1, clipped to 1, so +0.1.
        pytest.param([1, 0], "harp-e", [0.3, 0.1], id="E-both"),
        pytest.param([0], "C", [0.2, -0.1], id="C-leaf-0"),
        pytest.param([0], "e", [0.2, -0.1], id="E-leaf-0"),
        pytest.param([1], "HARP-C", [0.1, 0.1], id="C-leaf-1-clipped"),
        pytest.param([], "E", [0.0, 0.0], id="empty-set"),
    ],
)
def test_predict_mixture_by_hand(leaves: list[int], envelope: str, expected: list[float]) -> None:
    predicted = predict_mixture(PHI, BASE, leaves, envelope=envelope)
    assert predicted.shape == (2,)
    assert predicted.tolist() == pytest.approx(expected, abs=1e-15)


def test_predicted_utility_gain_by_hand() -> None:
    # Weights 3 and 1: C (3 * 0.2 + 0.1) / 4 = 0.175; E (3 * 0.3 + 0.1) / 4 = 0.25; unweighted E (0.3 + 0.1) / 2.
    assert predicted_utility_gain(PHI, BASE, [0, 1], envelope="C", weights=[3, 1]) == pytest.approx(0.175)
    assert predicted_utility_gain(PHI, BASE, [0, 1], envelope="E", weights=[3, 1]) == pytest.approx(0.25)
    assert predicted_utility_gain(PHI, BASE, [0, 1], envelope="E") == pytest.approx(0.2)
    assert utility_gain([[0.2, 0.1], [0.3, 0.1]], [3, 1]).tolist() == pytest.approx([0.175, 0.25])


@pytest.mark.parametrize("envelope", ["C", "E"])
def test_predict_mixture_matches_what_select_predicts(envelope: str, rng: np.random.Generator) -> None:
    phi = rng.normal(0.0, 0.05, size=(40, 6))
    base = np.array([0.0, 0.02, 0.5, 0.7, 0.97, 1.0])
    selection = select(phi, base, envelope=envelope)
    assert selection.leaves.size > 1
    predicted = predict_mixture(phi, base, selection.leaves, envelope=envelope)
    np.testing.assert_allclose(predicted, selection.predicted - base, atol=1e-12)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        pytest.param({"envelope": "X"}, "envelope must be one of 'C', 'E'", id="envelope"),
        pytest.param({"leaves": [0, 2]}, r"leaves holds leaf 2, outside 0..1", id="leaf-out-of-range"),
        pytest.param({"leaves": [1, 1]}, "leaves lists leaf 1 more than once", id="leaf-twice"),
        pytest.param({"leaves": [0.5]}, "leaves must be a 1-D sequence of integer leaf ids", id="leaf-float"),
        pytest.param({"base": [0.5]}, "base has 1 entries but there are 2 domains", id="base-length"),
        pytest.param({"base": [0.5, 1.5]}, r"base must lie in \[0, 1\], got 1.5", id="base-range"),
        pytest.param({"phi": [0.1, 0.2]}, r"phi must be 2-D \(leaves x domains\)", id="phi-1-D"),
        pytest.param({"phi": [[np.nan, 0.0], [0.0, 0.0]]}, "phi must be finite, found nan", id="phi-nan"),
    ],
)
def test_predict_mixture_refuses_bad_input(arguments: dict[str, Any], match: str) -> None:
    call: dict[str, Any] = {"phi": PHI, "base": BASE, "leaves": [0, 1], "envelope": "C", **arguments}
    with pytest.raises(ValueError, match=match):
        predict_mixture(call.pop("phi"), call.pop("base"), call.pop("leaves"), **call)


def test_predicted_utility_gain_refuses_bad_weights() -> None:
    with pytest.raises(ValueError, match="weights must not be all zero"):
        predicted_utility_gain(PHI, BASE, [0], envelope="C", weights=[0, 0])
    with pytest.raises(ValueError, match="weights must be >= 0, got -1.0 for domain 1"):
        utility_gain([[0.1, 0.2]], [1, -1])


# -- the report ---------------------------------------------------------------------------------------------------

# 3 mixtures x 2 domains; weight only on domain 0, so a mixture's gain is its domain-0 effect.
MEASURED = [[0.1, 0.0], [0.2, -0.1], [0.3, 0.1]]
PREDICTED_C = [[0.2, 0.5], [0.4, -0.2], [0.6, -0.3]]  # gain 2x measured: r = +1, errors 0.1, 0.2, 0.3
PREDICTED_E = [[0.3, 1e-13], [0.2, -0.3], [0.1, 0.2]]  # gain reversed: r = -1, errors 0.2, 0, -0.2


def test_report_by_hand() -> None:
    report = mixture_report(MEASURED, {"C": PREDICTED_C, "E": PREDICTED_E}, [1.0, 0.0])
    assert report["n_mixtures"] == 3 and report["n_domains"] == 2
    assert report["weights"] == [1.0, 0.0]
    assert report["measured_gain"] == pytest.approx([0.1, 0.2, 0.3])
    c, e = report["envelopes"]["C"], report["envelopes"]["E"]
    assert c["predicted_gain"] == pytest.approx([0.2, 0.4, 0.6])
    assert c["gain_correlation"] == pytest.approx(1.0)
    assert c["gain_rmse"] == pytest.approx(np.sqrt((0.01 + 0.04 + 0.09) / 3))  # 0.2160
    assert c["gain_bias"] == pytest.approx(0.2)
    assert c["effect_rmse"] == pytest.approx(np.sqrt((0.01 + 0.04 + 0.09) / 3)), "domain 1 weighs 0"
    # Domain 1 signs: measured 0, -, +; C +, -, -: one of three agrees.
    assert c["sign_agreement"] == pytest.approx([1.0, 1 / 3])
    assert c["mean_sign_agreement"] == pytest.approx(1.0), "over the weighted domain 0 only"
    assert e["gain_correlation"] == pytest.approx(-1.0)
    assert e["gain_rmse"] == pytest.approx(np.sqrt(0.08 / 3))  # 0.1633
    assert e["gain_bias"] == pytest.approx(0.0, abs=1e-15)
    # E's 1e-13 on domain 1 counts as sign 0, like the measured 0.0: all three agree.
    assert e["sign_agreement"] == pytest.approx([1.0, 1.0])


def test_report_with_equal_weights_and_no_spread() -> None:
    # Weights 1, 1: measured gains (0.1 + 0.1) / 2 and (0.3 - 0.1) / 2, both 0.1 up to rounding: no spread.
    measured = [[0.1, 0.1], [0.3, -0.1]]
    predicted = [[0.2, 0.0], [0.1, 0.1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = mixture_report(measured, {"C": predicted}, [1, 1])
    c = report["envelopes"]["C"]
    assert c["gain_correlation"] is None
    assert c["gain_rmse"] == pytest.approx(0.0, abs=1e-15)
    assert c["effect_rmse"] == pytest.approx(np.sqrt((0.01 + 0.01 + 0.04 + 0.04) / 4))  # 0.1581
    assert c["sign_agreement"] == [1.0, 0.0]  # domain 1: measured +, -; predicted 0, +
    assert c["mean_sign_agreement"] == pytest.approx(0.5)


def test_report_of_one_mixture_has_no_correlation_and_is_json() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = mixture_report([[0.1, -0.2]], {"C": [[0.0, -0.1]], "E": [[0.3, -0.4]]})
    assert report["weights"] == [1.0, 1.0], "all ones by default"
    assert [report["envelopes"][k]["gain_correlation"] for k in ("C", "E")] == [None, None]
    assert report["envelopes"]["E"]["gain_rmse"] == pytest.approx(0.0, abs=1e-15)
    assert json.loads(json.dumps(report, allow_nan=False)) == report


@pytest.mark.parametrize(
    ("measured", "predicted", "weights", "match"),
    [
        pytest.param(
            MEASURED,
            {"C": PREDICTED_C[:2]},
            None,
            r"predicted\['C'\] has shape \(2, 2\) but measured has shape \(3, 2\)",
            id="rows",
        ),
        pytest.param(
            MEASURED, {"C": [[0.1]] * 3}, None, r"predicted\['C'\] has shape \(3, 1\)", id="columns"
        ),
        pytest.param(MEASURED, {"C": [[np.inf, 0]] * 3}, None, r"predicted\['C'\] must be finite", id="inf"),
        pytest.param(MEASURED, {}, None, "predicted must be a non-empty mapping", id="no-envelope"),
        pytest.param(
            MEASURED, [PREDICTED_C], None, "predicted must be a non-empty mapping", id="not-a-mapping"
        ),
        pytest.param(
            MEASURED, {"": PREDICTED_C}, None, "envelope labels must be non-empty strings", id="label"
        ),
        pytest.param(
            np.zeros((0, 2)),
            {"C": np.zeros((0, 2))},
            None,
            "measured must hold at least one mixture",
            id="none",
        ),
        pytest.param([0.1, 0.2], {"C": [0.1, 0.2]}, None, r"measured must be 2-D", id="1-D"),
        pytest.param(
            [[np.nan, 0.0]], {"C": [[0.0, 0.0]]}, None, "measured must be finite, found nan", id="nan"
        ),
        pytest.param(MEASURED, {"C": PREDICTED_C}, [0, 0], "weights must not be all zero", id="zero-weights"),
        pytest.param(MEASURED, {"C": PREDICTED_C}, [1, -1], "weights must be >= 0", id="negative-weight"),
        pytest.param(
            MEASURED,
            {"C": PREDICTED_C},
            [1],
            "weights has 1 entries but there are 2 domains",
            id="weights-length",
        ),
    ],
)
def test_report_refuses_bad_input(measured: Any, predicted: Any, weights: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mixture_report(measured, predicted, weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_report_matches_straightforward_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_mixtures, n_domains = 12, 5
    measured = rng.normal(0, 0.05, size=(n_mixtures, n_domains))
    measured[0, 0] = 0.0
    predicted = measured + rng.normal(0, 0.03, size=measured.shape)
    weights = np.array([1.0, 0.0, 2.0, 0.5, 1.0])
    report = mixture_report(measured, {"X": predicted}, weights)["envelopes"]["X"]
    measured_gain = [
        sum(w * x for w, x in zip(weights, row, strict=True)) / weights.sum() for row in measured
    ]
    predicted_gain = [
        sum(w * x for w, x in zip(weights, row, strict=True)) / weights.sum() for row in predicted
    ]
    assert report["gain_correlation"] == pytest.approx(np.corrcoef(predicted_gain, measured_gain)[0, 1])
    errors = [
        (predicted[i, d] - measured[i, d]) ** 2
        for i in range(n_mixtures)
        for d in range(n_domains)
        if weights[d] > 0
    ]
    assert report["effect_rmse"] == pytest.approx(np.sqrt(np.mean(errors)))
    agreement = [
        np.mean([np.sign(predicted[i, d]) == np.sign(measured[i, d]) for i in range(n_mixtures)])
        for d in range(n_domains)
    ]
    assert report["sign_agreement"] == pytest.approx(agreement)
    assert report["mean_sign_agreement"] == pytest.approx(np.mean([agreement[d] for d in (0, 2, 3, 4)]))
