"""Active refinement (harp.active): the expected-value-of-information score, candidates, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harp.active import leaf_scores, next_leaves
from harp.cli import main
from harp.store import Store

# One domain, base 0.5. Leaf 0 clearly helps (in S), leaf 2 clearly hurts (out), leaf 1 sits at the boundary
# with a large sd, leaf 3 sits near the boundary with a tiny sd, leaf 4 is six sds below it.
PHI = np.array([[0.1], [0.0], [-0.1], [0.001], [-0.3]])
SD = np.array([[0.001], [0.1], [0.001], [0.001], [0.05]])
BASE = [0.5]


def normal_evpi(m: float, s: float) -> float:
    """E[max(X, 0)] - max(E X, 0) for X ~ N(m, s^2)."""
    pdf = math.exp(-0.5 * (m / s) ** 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(-abs(m) / s / math.sqrt(2)))
    return s * pdf - abs(m) * cdf


def test_large_sd_at_the_cut_beats_tiny_sd_or_far_leaves() -> None:
    score, cuts = leaf_scores(PHI, SD, BASE, envelope="E")
    assert cuts == {"E": 2}  # leaves 0 and 3 help
    ranking = list(np.lexsort((np.arange(5), -score)))
    assert ranking[:2] == [1, 3]
    assert (
        score[4] < 1e-3 * score[3]
    )  # a large sd six sds from the boundary matters less than a tiny one at it
    assert score[0] == pytest.approx(0, abs=1e-12) and score[2] == pytest.approx(0, abs=1e-12)
    assert score[1] > 100 * score[3]


def test_linear_case_matches_the_closed_form() -> None:
    # HARP-E away from clipping: Delta_g ~ N(phi_g, sd_g^2) (weights sum to 1, one domain).
    score, _ = leaf_scores(PHI, SD, BASE, envelope="E", n_samples=20000, seed=3)
    for g in (1, 3):  # (leaf 4's score, 8e-12, is below what 20000 draws resolve)
        assert score[g] == pytest.approx(normal_evpi(PHI[g, 0], SD[g, 0]), rel=0.05)


def test_harp_c_ignores_a_positive_effect_below_the_best() -> None:
    # Under HARP-C a helpful leaf adds nothing beyond the best positive effect in S: leaf 1 (small positive, far
    # whatever its value) cannot change the selection; leaf 2 (just below the best, large sd) can.
    phi = np.array([[0.2], [0.02], [0.19]])
    sd = np.array([[0.001], [0.005], [0.05]])
    score, cuts = leaf_scores(phi, sd, BASE, envelope="C")
    assert cuts == {"C": 1}
    assert score[1] == pytest.approx(0, abs=1e-9)
    assert score[2] > 0.005


def test_zero_sd_scores_zero_and_both_adds_the_envelopes() -> None:
    score, _ = leaf_scores(PHI, np.zeros_like(SD), BASE)
    np.testing.assert_allclose(score, 0, atol=1e-15)
    both, cuts = leaf_scores(PHI, SD, BASE, envelope="both")
    c, _ = leaf_scores(PHI, SD, BASE, envelope="C")
    e, _ = leaf_scores(PHI, SD, BASE, envelope="e")
    np.testing.assert_allclose(both, c + e)
    assert set(cuts) == {"C", "E"}


def test_saturated_domain_has_no_value() -> None:
    # base 1: nothing can raise the score, and a harm is certain to show; the leaf at 0 with a large sd still
    # matters (it may hurt), a large positive one does not.
    phi = np.array([[0.3], [0.0]])
    sd = np.array([[0.01], [0.1]])
    score, _ = leaf_scores(phi, sd, [1.0], envelope="E")
    assert score[0] == pytest.approx(0, abs=1e-12)
    assert score[1] == pytest.approx(0, abs=1e-12)  # out of S; its upside is clipped away


def test_next_leaves_never_picks_measured_and_handles_large_k(tiny_store: Path) -> None:
    # The tiny store flags leaves 0 and 2 measured.
    chosen = next_leaves(tiny_store, 10)
    assert sorted(chosen.leaves.tolist()) == [1, 3] and chosen.n_candidates == 2
    assert np.isnan(chosen.score[[0, 2]]).all()
    assert (np.diff(chosen.scores) <= 0).all()
    assert next_leaves(tiny_store, 0).leaves.size == 0
    one = next_leaves(tiny_store, 1)
    assert one.leaves.tolist() == chosen.leaves[:1].tolist()
    assert next_leaves(tiny_store, 5, exclude=[1]).leaves.tolist() == [3]


def test_next_leaves_on_a_synthetic_store_is_deterministic(tmp_store: Path) -> None:
    store = Store.open(tmp_store)
    measured = set(store.measured_leaves().tolist())
    first = next_leaves(store, 6)
    second = next_leaves(tmp_store, 6)
    np.testing.assert_array_equal(first.leaves, second.leaves)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert first.leaves.size == 6 and not measured & set(first.leaves.tolist())
    assert first.n_candidates == 40 - len(measured)
    # A raw measurement not yet inferred also removes a leaf from the candidates.
    top = int(first.leaves[0])
    store.add_measurements(
        {"leaf_id": [top], "domain_id": [0], "phi": [0.0], "variance": [1e-4], "n_eval": [10],
         "run_id": ["r"], "config_key": ["k"]}
    )  # fmt: skip
    assert top not in next_leaves(store, 40).leaves.tolist()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: leaf_scores(PHI, SD, BASE, envelope="X"), r"envelope must be 'C', 'E' or 'both'", id="env"),
        pytest.param(lambda: leaf_scores(PHI, SD[:2], BASE), r"sd has shape \(2, 1\) but phi has shape \(5, 1\)", id="shape"),
        pytest.param(lambda: leaf_scores(PHI, -SD, BASE), r"sd must be >= 0", id="negative-sd"),
        pytest.param(lambda: leaf_scores(PHI, SD, BASE, n_samples=1), r"n_samples must be an integer >= 2", id="samples"),
        pytest.param(lambda: leaf_scores(PHI, SD, BASE, candidates=[True]), r"candidates has shape \(1,\)", id="cands"),
    ],
)  # fmt: skip
def test_leaf_scores_rejects(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_next_leaves_rejects(tiny_store: Path) -> None:
    with pytest.raises(ValueError, match=r"k must be an integer >= 0, got -1"):
        next_leaves(tiny_store, -1)
    with pytest.raises(ValueError, match=r"exclude must hold leaf ids in 0..3, got 9"):
        next_leaves(tiny_store, 1, exclude=[9])


def test_cli_next(tiny_store: Path) -> None:
    result = CliRunner().invoke(main, ["-q", "next", "--store", str(tiny_store), "-k", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["leaves"]) == [1, 3] and report["candidates"] == 2
    assert report["leaves"] == next_leaves(tiny_store, 5).leaves.tolist()
    result = CliRunner().invoke(main, ["next", "--store", str(tiny_store), "-k", "-1"])
    assert result.exit_code == 2
    result = CliRunner().invoke(
        main, ["next", "--store", str(tiny_store.with_name("none.duckdb")), "-k", "1"]
    )
    assert result.exit_code == 1 and result.output.startswith("Error: ")


def test_cli_measure_next_option(tiny_store: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["measure", "--help"])
    assert result.exit_code == 0 and "--next" in result.output
    arguments = ["measure", "--store", str(tiny_store), "--model", "m", "--pool", str(tmp_path / "p.jsonl"),
                 "--eval", str(tmp_path / "e.jsonl"), "--next", "2", "--leaves", "1"]  # fmt: skip
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and "exactly one of --leaves, --budget and --next" in result.output
