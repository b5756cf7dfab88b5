"""The synthetic pool generator: determinism, structure, planted regions, texts, and the store it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harp.store import Store, StoreError
from harp.synth import SPECIAL_TEXTS, SynthPool, generate, synth_store


@pytest.fixture(scope="module")
def pool() -> SynthPool:
    return generate(2000, 12, seed=3)


def test_same_seed_same_pool_and_store(tmp_path: Path) -> None:
    first, second = generate(300, 6, seed=11), generate(300, 6, seed=11)
    for field in ("point_id", "leaf_id", "leaf_parent", "parent_large", "mean", "sd", "x", "base"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field), err_msg=field)
    assert first.text.equals(second.text) and first.source.equals(second.source)
    a = synth_store(tmp_path / "a.duckdb", leaves=60, domains=4, seed=5)
    b = synth_store(tmp_path / "b.duckdb", leaves=60, domains=4, seed=5)
    c = synth_store(tmp_path / "c.duckdb", leaves=60, domains=4, seed=6)
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_tree_structure(pool: SynthPool) -> None:
    n_parents = pool.parent_large.size
    assert pool.n_leaves == 2000
    assert np.array_equal(np.unique(pool.leaf_parent), np.arange(n_parents)), "every parent has a leaf"
    assert np.array_equal(np.unique(pool.parent_large), np.arange(pool.n_large)), (
        "every large node has a parent"
    )
    assert np.all(np.diff(pool.leaf_parent) >= 0) and np.all(np.diff(pool.parent_large) >= 0)
    assert 6 <= pool.n_leaves / n_parents <= 10
    assert 6 <= n_parents / pool.n_large <= 10


def test_points_and_leaf_sizes(pool: SynthPool) -> None:
    sizes = pool.leaf_size
    assert sizes.min() >= 1 and sizes.sum() == pool.n_points
    assert 50 <= sizes.mean() <= 80
    assert sizes.max() > 3 * np.median(sizes), "log-normal sizes have a long tail"
    assert np.array_equal(np.sort(pool.point_id), np.arange(pool.n_points)), "ids index the pool"
    assert not np.array_equal(pool.point_id, np.arange(pool.n_points)), "ids are shuffled across leaves"
    assert np.all(np.diff(pool.leaf_id) >= 0)
    starts = np.cumsum(sizes) - sizes
    np.testing.assert_array_equal(pool.rank_in_leaf, np.arange(pool.n_points) - np.repeat(starts, sizes))
    assert sum(m.size for m in pool.members) == pool.n_points


def test_domains(pool: SynthPool) -> None:
    assert len(set(pool.domain_names)) == 12 and pool.domain_names[0] == "abstract_algebra"
    assert np.all((pool.base > 0) & (pool.base < 1))
    assert (pool.base >= 0.95).sum() >= 2
    assert pool.active.any() and np.all(pool.eval_size > 0)
    many = generate(3, 70, seed=0).domain_names
    assert len(set(many)) == 70 and many[57] == "abstract_algebra_2" and many[69].endswith("_2")


def test_effects_measured_and_inferred(pool: SynthPool) -> None:
    measured = pool.measured[:, 0]
    assert np.all(pool.measured == measured[:, None]), "a leaf is measured on every domain"
    assert 0.08 <= measured.mean() <= 0.16
    np.testing.assert_array_equal(np.flatnonzero(measured), pool.measured_leaves)
    assert np.unique(pool.leaf_parent[measured]).size == pool.parent_large.size, (
        "one representative per parent"
    )
    assert pool.sd[measured].max() < pool.sd[~measured].min()
    assert np.all(pool.sd > 0) and np.all(np.isfinite(pool.mean))
    assert pool.measured_phi.shape == (measured.sum(), 12)
    residual = (pool.mean - pool.true_phi) / pool.sd
    assert abs(residual.mean()) < 0.1 and 0.9 < residual.std() < 1.1


def test_effects_are_correlated_within_parents(pool: SynthPool) -> None:
    parent_means = np.array(
        [pool.true_phi[pool.leaf_parent == p].mean(0) for p in range(pool.parent_large.size)]
    )
    within = pool.true_phi - parent_means[pool.leaf_parent]
    assert within.var() < 0.5 * pool.true_phi.var()


def test_harmful_and_helpful_regions_exist(pool: SynthPool) -> None:
    assert pool.harmful_parents.size >= 1 and pool.helpful_parents.size >= 1
    assert not set(pool.harmful_parents) & set(pool.helpful_parents)
    normal = pool.base < 0.95
    for parent in pool.harmful_parents:
        region = pool.mean[pool.leaf_parent == parent][:, normal].mean(0)
        assert (region < -0.015).mean() >= 0.5, "clearly harmful on most domains"
    helpful = np.isin(pool.leaf_parent, pool.helpful_parents)
    assert pool.mean[helpful].max() > 0.02


def test_layout_groups_clusters(pool: SynthPool) -> None:
    xy = np.stack([pool.x, pool.y], axis=1)
    n_parents = pool.parent_large.size
    parent_centre = np.array([xy[pool.leaf_parent == p].mean(0) for p in range(n_parents)])
    large_centre = np.array([parent_centre[pool.parent_large == k].mean(0) for k in range(pool.n_large)])
    leaf_spread = np.linalg.norm(xy - parent_centre[pool.leaf_parent], axis=1).mean()
    parent_spread = np.linalg.norm(parent_centre - large_centre[pool.parent_large], axis=1).mean()
    large_gap = np.linalg.norm(large_centre[:, None] - large_centre[None], axis=2)
    nearest = np.sort(large_gap, axis=1)[:, 1].mean()
    assert leaf_spread < parent_spread < nearest


def test_texts(pool: SynthPool) -> None:
    texts = pool.text.to_pylist()
    assert len(texts) == pool.n_points and all(isinstance(t, str) and t for t in texts)
    for special in SPECIAL_TEXTS:
        assert special in texts, special
    first_of_leaf_zero = texts[: min(3, pool.leaf_size[0])]
    assert any(
        "<script>" in t or "HYPERLINK" in t for t in first_of_leaf_zero + texts[pool.leaf_size[0] :][:3]
    )
    assert sum(text in SPECIAL_TEXTS for text in texts) <= len(texts) // 100, "only a few special points"
    assert len(set(texts)) > 0.5 * len(texts), "texts vary"
    assert set(pool.source.to_pylist()) <= {
        "alpaca",
        "dolly",
        "flan_v2",
        "oasst1",
        "code_alpaca",
        "sharegpt",
        "gsm8k_train",
        "lima",
    }


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        pytest.param({"n_leaves": 0}, "n_leaves must be an integer >= 1, got 0", id="no-leaves"),
        pytest.param({"n_domains": 2.5}, "n_domains must be an integer >= 1", id="float-domains"),
        pytest.param({"seed": -1}, "seed must be an integer >= 0", id="seed"),
        pytest.param({"mean_leaf_size": 0.5}, "mean_leaf_size must be >= 1", id="size"),
    ],
)
def test_generate_validates(arguments: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(**{"n_leaves": 5, "n_domains": 2, "seed": 0, **arguments})  # type: ignore[arg-type]


def test_tiny_pools_work() -> None:
    one = generate(1, 1, seed=0)
    assert one.n_leaves == 1 and one.parent_large.size == 1 and one.n_large == 1 and one.n_points >= 1
    assert one.text.to_pylist()[0] == SPECIAL_TEXTS[0]


def test_synth_store_contents(tmp_store: Path) -> None:
    store = Store.open(tmp_store, read_only=True)
    pool = generate(40, 5, seed=7)
    inputs = store.selection_inputs()
    np.testing.assert_array_equal(inputs.phi, pool.mean)
    np.testing.assert_array_equal(inputs.sd, pool.sd)
    np.testing.assert_array_equal(inputs.active, pool.active)
    assert inputs.domain_names == pool.domain_names
    assert [m.tolist() for m in inputs.members] == [m.tolist() for m in pool.members]
    x, y = store.layout()  # type: ignore[misc]
    np.testing.assert_array_equal(x, pool.x)
    assert store.layout_key() == "synth-v1:leaves=40:seed=7"
    [run] = store.runs()
    assert run["kind"] == "synth" and run["status"] == "done"
    assert run["config"] == {"leaves": 40, "domains": 5, "seed": 7, "generator": "synth-v1"}
    summary = store.summary()
    assert summary["n_measurements"] == pool.measured_leaves.size * 5
    assert summary["n_measured_leaves"] == pool.measured_leaves.size
    np.testing.assert_array_equal(store.measured_leaves(), pool.measured_leaves)


def test_synth_store_refuses_to_clobber(tmp_store: Path) -> None:
    before = tmp_store.read_bytes()
    with pytest.raises(StoreError, match="already exists; pass overwrite=True"):
        synth_store(tmp_store, leaves=10, domains=2, seed=1)
    assert tmp_store.read_bytes() == before
    assert synth_store(tmp_store, leaves=10, domains=2, seed=1, overwrite=True).summary()["n_leaves"] == 10
    assert not list(tmp_store.parent.glob(".*tmp"))


def test_synth_store_mean_leaf_size(tmp_path: Path) -> None:
    small = synth_store(tmp_path / "small.duckdb", leaves=400, domains=3, seed=2, mean_leaf_size=4)
    summary = small.summary()
    assert 2.5 < summary["n_points"] / 400 < 5.5
    assert small.runs()[0]["config"]["mean_leaf_size"] == 4.0
    assert small.content_hash() == small.content_hash(recompute=True)
    with pytest.raises(ValueError, match="mean_leaf_size must be >= 1, got 0.5"):
        synth_store(tmp_path / "bad.duckdb", leaves=10, domains=2, mean_leaf_size=0.5)
    assert not (tmp_path / "bad.duckdb").exists()


def test_harp_synth_leaf_size_option(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harp.cli import main

    out = tmp_path / "s.duckdb"
    result = CliRunner().invoke(
        main, ["-q", "synth", "--leaves", "200", "--domains", "2", "--leaf-size", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert Store.open(out).summary()["n_points"] < 200 * 5
    bad = CliRunner().invoke(main, ["synth", "--leaf-size", "0", "--out", str(tmp_path / "x.duckdb")])
    assert bad.exit_code == 2 and "--leaf-size" in bad.output
