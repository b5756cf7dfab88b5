"""Measurement protocols (base-anchored, continuation, in-mixture), the training noise across seeds, the
family-wise active-domain rule, and mixture validation (`harp validate`) on a tiny random Llama."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_measure import make_pool, make_store, write_pool

from harp.bayes import active_domains, family_wise_threshold
from harp.data import EvalSet
from harp.measure import (
    REFERENCE_SEED,
    MeasureConfig,
    background_points,
    training_plan,
)
from harp.store import Store

# Dropout 0 and a large learning rate, as in test_multi_lora: both training paths see the same computation.
CONFIG = MeasureConfig(steps=4, batch_size=3, max_length=40, eval_batch_size=4, max_new_tokens=3, lora_r=4,
                       lora_alpha=8, lora_dropout=0.0, learning_rate=5e-2, warmup_steps=1, max_grad_norm=0.05,
                       target_modules=("q_proj", "v_proj"), score="probability")  # fmt: skip
MIXTURE = dataclasses.replace(CONFIG, protocol="in-mixture", background_size=7)
CONTINUATION = dataclasses.replace(CONFIG, protocol="continuation", background_size=7)


# ----------------------------------------------------------------------------------------------------------------
# Plans and keys (no torch)


def test_in_mixture_plan_is_one_pass_with_the_leaf_inserted() -> None:
    plan = training_plan(MIXTURE, 4, seed=11, n_background=7)
    sequence = np.concatenate(plan)
    # One pass: every background example (0..6) and every leaf example (7..10) exactly once.
    assert sorted(sequence.tolist()) == list(range(11))
    assert [len(batch) for batch in plan] == [3, 3, 3, 2]
    # The background keeps the reference run's order; the leaf's examples sit in between.
    reference = np.concatenate(training_plan(MIXTURE, 0, seed=REFERENCE_SEED, n_background=7))
    assert sequence[sequence < 7].tolist() == reference.tolist()
    other = np.concatenate(training_plan(MIXTURE, 4, seed=12, n_background=7))
    assert other[other < 7].tolist() == reference.tolist()
    assert other.tolist() != sequence.tolist()  # another leaf id: other positions or order
    # Deterministic.
    again = np.concatenate(training_plan(MIXTURE, 4, seed=11, n_background=7))
    assert again.tolist() == sequence.tolist()


def test_continuation_plan_puts_the_leaf_after_the_background() -> None:
    sequence = np.concatenate(training_plan(CONTINUATION, 4, seed=3, n_background=7))
    assert sorted(sequence[:7].tolist()) == list(range(7))
    assert sorted(sequence[7:].tolist()) == [7, 8, 9, 10]


def test_in_mixture_rows_plan_keeps_the_background_batches() -> None:
    rows = dataclasses.replace(MIXTURE, protocol="in-mixture-rows")
    plan = training_plan(rows, 4, seed=11, n_background=7)
    reference = training_plan(rows, 0, seed=REFERENCE_SEED, n_background=7)
    assert len(plan) == len(reference) == 3  # 7 background examples in batches of 3: 3, 3, 1
    for batch, background in zip(plan, reference, strict=True):
        assert batch[: len(background)].tolist() == background.tolist()  # the background rows, unchanged
        assert (batch[len(background) :] >= 7).all()  # then the leaf's extra rows
    assert sorted(np.concatenate(plan).tolist()) == list(range(11))
    # The reference is the in-mixture reference: both protocols pair with the same background-only run.
    assert [b.tolist() for b in reference] == [
        b.tolist() for b in training_plan(MIXTURE, 0, seed=REFERENCE_SEED, n_background=7)
    ]
    with pytest.raises(ValueError, match="in-mixture-rows needs a background"):
        training_plan(rows, 3, seed=1, n_background=0)


def test_base_anchored_plan_is_the_fixed_steps() -> None:
    plan = training_plan(CONFIG, 5, seed=2)
    assert len(plan) == CONFIG.steps and all(len(batch) == CONFIG.batch_size for batch in plan)
    assert len(training_plan(CONFIG, 5, seed=2, steps=9)) == 9
    with pytest.raises(ValueError, match="n_background must be 0"):
        training_plan(CONFIG, 5, seed=2, n_background=3)
    with pytest.raises(ValueError, match="at least one training example"):
        training_plan(CONFIG, 0, seed=2)
    with pytest.raises(ValueError, match="nothing to train on"):
        training_plan(MIXTURE, 0, seed=2, n_background=0)


def test_background_sample() -> None:
    ids = background_points(20, MIXTURE)
    assert ids.size == 7 and np.unique(ids).size == 7 and ids.max() < 20
    assert background_points(20, MIXTURE).tolist() == ids.tolist()
    assert background_points(20, dataclasses.replace(MIXTURE, background_seed=1)).tolist() != ids.tolist()
    assert background_points(5, MIXTURE).tolist() == [0, 1, 2, 3, 4]  # a pool smaller than the background
    assert background_points(20, CONFIG).size == 0


def test_protocol_in_config_key() -> None:
    base = CONFIG.config_key("m", "e")
    mixture = MIXTURE.config_key("m", "e", "bg1")
    assert mixture != base
    assert MIXTURE.config_key("m", "e", "bg2") != mixture  # another background
    assert dataclasses.replace(MIXTURE, background_size=8).config_key("m", "e", "bg1") != mixture
    # Background fields mean nothing base-anchored: they leave its key alone.
    assert dataclasses.replace(CONFIG, background_seed=5).config_key("m", "e", "x") == base
    assert MeasureConfig.from_dict(MIXTURE.to_dict()) == MIXTURE
    with pytest.raises(ValueError, match="protocol must be one of 'base-anchored', 'continuation'"):
        MeasureConfig(protocol="alone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="background_size must be an integer >= 1"):
        MeasureConfig(background_size=0)


# ----------------------------------------------------------------------------------------------------------------
# The family-wise active rule


def test_family_wise_threshold_and_rule() -> None:
    assert family_wise_threshold(1.645, 1) == pytest.approx(1.645, abs=1e-9)
    assert family_wise_threshold(1.645, 266) == pytest.approx(3.5498, abs=1e-3)
    mean = np.array([[0.30, 0.10], [0.0, 0.0], [0.0, 0.0]])
    sd = np.full((3, 2), 0.1)  # z = 3.0 and 1.0
    base = np.array([0.5, 0.5])
    assert active_domains(mean, sd, base, 1.645).tolist() == [True, False]
    # Three leaves: Sidak's z is 2.12, still below 3.0.
    assert active_domains(mean, sd, base, 1.645, rule="family-wise").tolist() == [True, False]
    many = np.zeros((400, 2))
    many[0] = mean[0]
    # 400 leaves: the threshold rises to 3.66, above z = 3.0.
    assert active_domains(many, np.full((400, 2), 0.1), base, 1.645, rule="family-wise").tolist() == [
        False,
        False,
    ]
    with pytest.raises(ValueError, match="rule must be one of 'any-leaf', 'family-wise'"):
        active_domains(mean, sd, base, rule="bonferroni")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------
# Training under a background (tiny model)


@pytest.mark.train
@pytest.mark.parametrize("protocol", ["in-mixture", "in-mixture-rows"])
def test_batched_in_mixture_equals_one_at_a_time(tiny_model: Path, eval_set: EvalSet, protocol: str) -> None:
    """Leaves of different sizes under a one-pass protocol: their plans differ in length (in-mixture) or in
    batch sizes (in-mixture-rows), so the batched path pads and freezes finished adapters; each must still end
    where the one-adapter path ends."""
    from harp.measure import build_model, evaluate, train_adapter
    from harp.measure.multi_lora import build_multi_model, evaluate_adapters, train_adapters

    config = dataclasses.replace(MIXTURE, protocol=protocol)
    pool = make_pool(30)
    background = pool.subset(background_points(len(pool), config))
    leaves = [pool.subset([20, 21]), pool.subset(range(22, 30)), []]  # the last: the reference run
    seeds = [4, 9, REFERENCE_SEED]
    single = build_model(tiny_model, config)
    expected = []
    for examples, seed in zip(leaves, seeds, strict=True):
        losses = train_adapter(single, examples, config, seed=seed, background=background)
        expected.append((losses, evaluate(single, eval_set, config)))
    multi = build_multi_model(tiny_model, config, 4)
    losses = train_adapters(multi, leaves, config, seeds=seeds, background=background)
    scores = evaluate_adapters(multi, eval_set, config, 3)
    for k, (want_losses, want_scores) in enumerate(expected):
        assert len(losses[k]) == len(want_losses)
        np.testing.assert_allclose(losses[k], want_losses, atol=1e-4, rtol=0)
        np.testing.assert_allclose(scores[k], want_scores, atol=1e-4, rtol=0)
    # The runs differ: the comparison above is not vacuous.
    if protocol == "in-mixture":
        assert len(expected[0][0]) != len(expected[1][0])
    assert np.abs(expected[0][1] - expected[2][1]).max() > 1e-4


@pytest.mark.train
def test_run_measurements_in_mixture_pairs_with_the_reference(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.measure import build_model, evaluate, run_measurements, train_adapter

    store = make_store(tmp_path / "store.duckdb")
    pool = make_pool()
    report = run_measurements(store, tiny_model, pool, eval_set, [1, 3], MIXTURE, adapters_per_batch=2)
    assert report.measured == [1, 3]
    assert report.config_key != run_measurements(store, tiny_model, pool, eval_set, [1], CONFIG).config_key
    # phi is the leaf's run minus the background-only run, not minus the base model.
    model = build_model(tiny_model, MIXTURE)
    background = pool.subset(background_points(len(pool), MIXTURE))
    train_adapter(model, [], MIXTURE, seed=REFERENCE_SEED, background=background)
    reference = evaluate(model, eval_set, MIXTURE)
    members = np.array_split(np.arange(24), 4)
    train_adapter(model, pool.subset(members[3]), MIXTURE, seed=3, background=background)
    scores = evaluate(model, eval_set, MIXTURE)
    rows = store.read_table("measurements").to_pydict()
    stored = {
        (g, d): phi
        for g, d, phi, key in zip(
            rows["leaf_id"], rows["domain_id"], rows["phi"], rows["config_key"], strict=True
        )
        if key == report.config_key
    }
    for d in range(eval_set.n_domains):
        want = float(np.mean((scores - reference)[eval_set.domain == d]))
        assert stored[(3, d)] == pytest.approx(want, abs=1e-4)
    runs = store.runs()
    [measure_run] = [r for r in runs if r["run_id"] == report.run_id]
    assert measure_run["config"]["background"]["size"] == 7
    assert any(r["kind"] == "measure-reference" and r["config"]["parent_run"] == report.run_id for r in runs)
    # Resume: nothing is measured twice.
    again = run_measurements(store, tiny_model, pool, eval_set, [1, 3, 0], MIXTURE)
    assert again.measured == [0] and again.skipped == [1, 3] and again.config_key == report.config_key


@pytest.mark.train
def test_training_noise_enters_the_fit(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.load import infer_effects
    from harp.measure import run_measurements
    from harp.measure.noise import seed_family, training_noise

    store = make_store(tmp_path / "store.duckdb")
    pool = make_pool()
    main = run_measurements(store, tiny_model, pool, eval_set, [0, 1, 2, 3], MIXTURE, adapters_per_batch=4)
    other = run_measurements(
        store, tiny_model, pool, eval_set, [0, 2], dataclasses.replace(MIXTURE, seed=1), adapters_per_batch=2
    )
    assert seed_family(store, main.config_key) == [main.config_key, other.config_key]
    noise = training_noise(store, main.config_key, eval_set.n_domains)
    assert noise.leaves.tolist() == [0, 2]
    rows = store.read_table("measurements").to_pydict()
    value = {(g, d, k): phi for g, d, phi, k in zip(rows["leaf_id"], rows["domain_id"], rows["phi"],
                                                     rows["config_key"], strict=True)}  # fmt: skip
    for d in range(eval_set.n_domains):
        # Two seeds a leaf: each leaf's sample variance is half the squared difference; pooled over 2 leaves.
        diffs = [value[(g, d, main.config_key)] - value[(g, d, other.config_key)] for g in (0, 2)]
        assert noise.variance[d] == pytest.approx(sum(x**2 / 2 for x in diffs) / 2, rel=1e-9, abs=1e-15)
        assert noise.dof[d] == 2
    assert (
        training_noise(store, main.config_key, eval_set.n_domains, exclude=np.array([0, 2])).leaves.size == 0
    )
    effects, _ = infer_effects(store, config_key=main.config_key)
    assert effects.training_variance is not None
    np.testing.assert_allclose(effects.training_variance, noise.variance)
    source = store.summary(with_hash=False)["effects_source"]
    assert source["config_key"] == main.config_key and source["protocol"] == "in-mixture"
    assert source["training_noise"] is True and source["measured_leaves"] == 4
    plain, _ = infer_effects(store, config_key=main.config_key, training_noise=False, hold_out=[1])
    assert plain.training_variance is None
    source = store.summary(with_hash=False)["effects_source"]
    assert (
        source["training_noise"] is False
        and source["held_out_leaves"] == 1
        and source["measured_leaves"] == 3
    )
    plain, _ = infer_effects(store, config_key=main.config_key, training_noise=False)
    # More variance per measurement: measured leaves are shrunk more, so their posterior sd is larger.
    measured = effects.measured
    assert (effects.sd[measured] >= plain.sd[measured] - 1e-12).all()
    assert (effects.sd[measured] > plain.sd[measured] + 1e-9).any()


# ----------------------------------------------------------------------------------------------------------------
# Mixture validation


@pytest.mark.train
def test_validate_mixtures_measures_stores_and_resumes(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.measure import build_model, evaluate, run_measurements, train_adapter
    from harp.mixtures import predict_mixture
    from harp.validate import MIXTURE_SEED, validate_mixtures

    store = make_store(tmp_path / "store.duckdb")
    pool = make_pool()
    run_measurements(store, tiny_model, pool, eval_set, [0, 1, 2], MIXTURE, adapters_per_batch=3)
    report = validate_mixtures(store, tiny_model, pool, eval_set, MIXTURE, sizes=[2, 3], adapters_per_batch=2)
    assert len(report.measured) == 2 and report.skipped == []
    table = store.mixtures(report.config_key).to_pydict()
    assert sorted(set(table["leaves"])) == sorted({json.dumps(m) for m in report.measured})
    # The first mixture's measured effect: its union trained in the background, minus the reference run.
    leaves = report.measured[0]
    members = np.array_split(np.arange(24), 4)
    union = pool.subset(np.concatenate([members[g] for g in leaves]))
    background = pool.subset(background_points(len(pool), MIXTURE))
    model = build_model(tiny_model, MIXTURE)
    train_adapter(model, [], MIXTURE, seed=REFERENCE_SEED, background=background)
    reference = evaluate(model, eval_set, MIXTURE)
    assert [len(m) for m in report.measured] == [2, 3]  # in draw order: mixture k has seed MIXTURE_SEED + k
    train_adapter(model, union, MIXTURE, seed=MIXTURE_SEED + 0, background=background)
    scores = evaluate(model, eval_set, MIXTURE)
    first = [i for i, text in enumerate(table["leaves"]) if json.loads(text) == leaves]
    for i in first:
        d = table["domain_id"][i]
        assert table["phi"][i] == pytest.approx(
            float(np.mean((scores - reference)[eval_set.domain == d])), abs=1e-4
        )
        assert table["n_points"][i] == len(union)
    # The predictions are the envelopes' from the leaves' measured effects.
    rows = store.read_table("measurements").to_pydict()
    phi = np.full((4, eval_set.n_domains), np.nan)
    for g, d, value in zip(rows["leaf_id"], rows["domain_id"], rows["phi"], strict=True):
        phi[g, d] = value
    base = np.asarray(store.read_table("domains").sort_by("domain_id")["base"].to_pylist())
    want = predict_mixture(np.nan_to_num(phi), base, np.array(leaves), envelope="E")
    got = np.array([table["predicted_e"][i] for i in first])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert set(report.report["envelopes"]) == {"C", "E"} and report.report["n_mixtures"] == 2
    # Rerun: the same draws are already stored.
    again = validate_mixtures(store, tiny_model, pool, eval_set, MIXTURE, sizes=[2, 3])
    assert again.measured == [] and len(again.skipped) == 2
    assert store.mixtures(report.config_key).num_rows == 2 * eval_set.n_domains


@pytest.mark.train
def test_validate_base_anchored_gives_a_union_one_pass(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.measure import run_measurements
    from harp.validate import validate_mixtures

    store = make_store(tmp_path / "store.duckdb", n_points=24, n_leaves=4)
    pool = make_pool()
    run_measurements(store, tiny_model, pool, eval_set, [0, 1, 2, 3], CONFIG)
    report = validate_mixtures(store, tiny_model, pool, eval_set, CONFIG, sizes=[4])
    [run] = [r for r in store.runs() if r["run_id"] == report.run_id]
    assert run["kind"] == "validate" and run["status"] == "done"
    # 24 examples in batches of 3: one pass is 8 steps, more than the config's 4.
    assert report.measured == [[0, 1, 2, 3]]


def test_validate_refuses_without_measurements(eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.validate import default_sizes, validate_mixtures

    store = make_store(tmp_path / "store.duckdb")
    with pytest.raises(ValueError, match="holds 0 leaves measured under config"):
        validate_mixtures(store, "no-model", make_pool(), eval_set, MIXTURE, sizes=[2])
    assert default_sizes(5, 40, 100) == [2, 4, 9, 19, 40]
    assert default_sizes(3, 40, 6) == [2, 3, 6]
    with pytest.raises(ValueError, match="n_mixtures must be an integer >= 1"):
        default_sizes(0, 40, 10)
    with pytest.raises(ValueError, match="at least 2 measured leaves"):
        default_sizes(3, 40, 1)


@pytest.mark.train
def test_validate_regions_measures_every_parent_whole(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.measure import build_model, evaluate, run_measurements, train_adapter
    from harp.validate import MIXTURE_SEED, region_effects, region_leaves, validate_mixtures

    store = make_store(
        tmp_path / "store.duckdb"
    )  # 4 leaves of 6 points; parents {0, 1} and {2, 3}; one large node
    assert [r.tolist() for r in region_leaves(store, "parent")] == [[0, 1], [2, 3]]
    assert [r.tolist() for r in region_leaves(store, "large")] == [[0, 1, 2, 3]]
    pool = make_pool()
    with pytest.raises(ValueError, match="has no domains yet: measure at least one leaf"):
        validate_mixtures(store, tiny_model, pool, eval_set, MIXTURE, regions="parent")
    run_measurements(store, tiny_model, pool, eval_set, [0], MIXTURE)  # one leaf: the domains and base scores
    report = validate_mixtures(
        store, tiny_model, pool, eval_set, MIXTURE, regions="parent", adapters_per_batch=2
    )
    assert report.measured == [[0, 1], [2, 3]] and report.skipped == []
    [run] = [r for r in store.runs() if r["run_id"] == report.run_id]
    assert run["config"]["regions"] == "parent"
    # Region 0's effect is its union trained in the background (seed MIXTURE_SEED + 0) minus the reference run.
    background = pool.subset(background_points(len(pool), MIXTURE))
    model = build_model(tiny_model, MIXTURE)
    train_adapter(model, [], MIXTURE, seed=REFERENCE_SEED, background=background)
    reference = evaluate(model, eval_set, MIXTURE)
    train_adapter(model, pool.subset(np.arange(12)), MIXTURE, seed=MIXTURE_SEED + 0, background=background)
    union = evaluate(model, eval_set, MIXTURE)
    expected = np.array(
        [np.mean((union - reference)[eval_set.domain == d]) for d in range(eval_set.n_domains)]
    )
    phi, measured = region_effects(store, report.config_key, "parent")
    assert measured.all()
    # each leaf holds 6 of its region's 12 examples: half the region's effect
    np.testing.assert_allclose(phi[0], expected / 2, atol=1e-4)
    np.testing.assert_allclose(phi[0], phi[1], atol=1e-12)
    # no large node was measured as a whole
    large, none = region_effects(store, report.config_key, "large")
    assert not none.any() and np.isnan(large).all()
    again = validate_mixtures(store, tiny_model, pool, eval_set, MIXTURE, regions="parent")
    assert again.measured == [] and again.skipped == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="regions must be one of parent, large, got 'leaf'"):
        validate_mixtures(store, tiny_model, pool, eval_set, MIXTURE, regions="leaf")
    with pytest.raises(ValueError, match="regions must be one of parent, large, got 'leaf'"):
        region_leaves(store, "leaf")


@pytest.mark.train
def test_cli_measure_protocol_and_validate(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.cli import main

    store = make_store(tmp_path / "store.duckdb")
    del store
    pool_path = write_pool(tmp_path / "pool.jsonl")
    config = dataclasses.replace(MIXTURE, background_size=1000)
    (tmp_path / "config.json").write_text(config.to_json())
    common = ["--store", str(tmp_path / "store.duckdb"), "--model", str(tiny_model), "--pool", str(pool_path),
              "--eval", eval_set.path, "--config", str(tmp_path / "config.json")]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(
        main, ["measure", *common, "--leaves", "0,1,2", "--background-size", "5", "--adapters-per-batch", "3"]
    )
    assert result.exit_code == 0, result.output
    key = json.loads(result.stdout.strip().splitlines()[-1])["config_key"]
    (tmp_path / "config.json").write_text(dataclasses.replace(MIXTURE, background_size=5).to_json())
    result = runner.invoke(main, ["validate", *common, "--sizes", "2,3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["config_key"] == key and summary["measured"] == 2
    assert set(summary["report"]["envelopes"]) == {"C", "E"}
    result = runner.invoke(main, ["validate", *common, "--sizes", "2,x"])
    assert result.exit_code == 2 and "--sizes" in result.output
    result = runner.invoke(main, ["validate", *common, "--regions", "leaf"])
    assert result.exit_code == 2 and "--regions" in result.output
    result = runner.invoke(main, ["validate", *common, "--sizes", "9"])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "sizes" in result.output
    assert Store.open(tmp_path / "store.duckdb").mixtures(key).num_rows == 2 * eval_set.n_domains


@pytest.mark.train
@pytest.mark.ray
@pytest.mark.slow
def test_ray_cluster_of_two_cpu_workers_matches_in_process(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    """A local Ray cluster of two CPU workers (issue 15's CPU stand-in for two GPUs): the in-mixture leaves are
    spread over both workers, and the effects equal the in-process run's (same config key, same seeds)."""
    ray = pytest.importorskip("ray")
    from harp.measure import run_measurements

    pool = make_pool()
    local = run_measurements(
        make_store(tmp_path / "a.duckdb"), tiny_model, pool, eval_set, [0, 1, 2, 3], MIXTURE
    )
    repo = Path(__file__).resolve().parents[1]
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(repo)}})
    try:
        store = make_store(tmp_path / "b.duckdb")
        spread = run_measurements(
            store, tiny_model, pool, eval_set, [0, 1, 2, 3], MIXTURE, executor="ray", devices=["cpu", "cpu"]
        )
    finally:
        ray.shutdown()
    assert spread.config_key == local.config_key and sorted(spread.measured) == [0, 1, 2, 3]
    workers = {run["config"]["worker"] for run in store.runs() if run["kind"] == "measure-leaf"}
    assert len(workers) == 2
    a = Store.open(tmp_path / "a.duckdb").read_table("measurements").sort_by([("leaf_id", "ascending"),
                                                                             ("domain_id", "ascending")])  # fmt: skip
    b = store.read_table("measurements").sort_by([("leaf_id", "ascending"), ("domain_id", "ascending")])
    np.testing.assert_allclose(a.column("phi").to_numpy(), b.column("phi").to_numpy(), atol=1e-6)


def test_cli_infer_active_rule_and_training_noise(tmp_path: Path) -> None:
    """`harp infer` on hand-made measurements: two keys that differ only by seed give the training noise (the
    spread of the repeated leaf, hand-computed), and the rule is recorded with the run and in the effects' source."""
    from harp.cli import main

    store = make_store(tmp_path / "store.duckdb")
    store.write_domains(["a", "b"], [0.5, 0.5], [10, 10], [True, True])
    config = MIXTURE.to_dict()
    for seed, key in ((0, "k0"), (1, "k1")):
        run = store.add_run(
            "measure",
            {"config_key": key, "measure_config": {**config, "seed": seed}, "model": "m", "eval_fingerprint": "e",
             "background": {"fingerprint": "bg", "size": 7, "seed": 0}},
        )  # fmt: skip
        store.finish_run(run)
    rows = []
    for leaf, values in {0: (0.04, -0.01), 1: (0.02, 0.00), 2: (-0.01, 0.03), 3: (0.00, 0.01)}.items():
        for d, phi in enumerate(values):
            rows.append({"leaf_id": leaf, "domain_id": d, "phi": phi, "variance": 1e-4, "config_key": "k0"})
    rows += [{"leaf_id": 0, "domain_id": 0, "phi": 0.08, "variance": 1e-4, "config_key": "k1"},
             {"leaf_id": 0, "domain_id": 1, "phi": -0.01, "variance": 1e-4, "config_key": "k1"}]  # fmt: skip
    store.add_measurements(rows)
    runner = CliRunner()
    result = runner.invoke(main, ["infer", "--store", str(store.path), "--config-key", "k0", "--active-rule",
                                  "family-wise"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # Leaf 0 measured twice: domain a differs by 0.04, so its sample variance is 0.04^2 / 2; domain b not at all.
    assert [d["training_sd"] for d in summary["domains"]] == pytest.approx([math.sqrt(0.04**2 / 2), 0.0])
    [run] = [r for r in Store.open(store.path).runs() if r["kind"] == "infer"]
    assert run["config"]["active_rule"] == "family-wise" and run["config"]["training_noise"] is True
    source = Store.open(store.path).summary(with_hash=False)["effects_source"]
    newest = Store.open(store.path).read_table("measurements")["created_at"].to_pylist()
    assert source.pop("measurements_through") == max(newest).isoformat(sep=" ")
    assert source == {"active_rule": "family-wise", "config_key": "k0", "held_out_leaves": 0, "measured_leaves": 4,
                      "protocol": "in-mixture", "training_noise": True}  # fmt: skip
    result = runner.invoke(
        main, ["infer", "--store", str(store.path), "--config-key", "k0", "--no-training-noise"]
    )
    assert result.exit_code == 0 and all(
        d["training_sd"] is None for d in json.loads(result.stdout)["domains"]
    )
    result = runner.invoke(main, ["infer", "--store", str(store.path), "--active-rule", "max"])
    assert result.exit_code == 2 and "--active-rule" in result.output
