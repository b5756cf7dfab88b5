"""Batched measurement (:mod:`harp.measure.multi_lora`): K adapters trained side by side must measure what
the one-adapter-at-a-time path measures (the reference), leaf by leaf, on a tiny random Llama built locally."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from test_measure import make_pool, make_store, write_pool

from harp.data import EvalSet
from harp.measure import MeasureConfig

pytestmark = pytest.mark.train

# Dropout 0, so both paths see the same computation; a large learning rate, so adapters move visibly; a small
# max_grad_norm, so per-adapter clipping is active at every step (a joint norm over adapters would differ).
CONFIG = MeasureConfig(steps=5, batch_size=3, max_length=40, eval_batch_size=4, max_new_tokens=3, lora_r=4,
                       lora_alpha=8, lora_dropout=0.0, learning_rate=5e-2, warmup_steps=1, max_grad_norm=0.05,
                       target_modules=("q_proj", "v_proj", "up_proj", "down_proj"))  # fmt: skip

# Leaves of different sizes: smaller than, equal to and larger than the batch size.
LEAVES = {
    7: [(f"q{i} abc?", f"answer {i}") for i in range(2)],
    2: [(f"color {i}?", f"blue {i % 2}") for i in range(3)],
    11: [(f"sum {i}+{i}?", str(2 * i)) for i in range(8)],
}


def one_at_a_time(tiny_model: Path, eval_set: EvalSet, config: MeasureConfig) -> tuple[np.ndarray, list]:
    from harp.measure import base_scores, build_model, measure_leaf

    model = build_model(tiny_model, config)
    base = base_scores(model, eval_set, config)
    return base, [
        measure_leaf(model, examples, eval_set, base, config, seed=g) for g, examples in LEAVES.items()
    ]


@pytest.mark.parametrize("score", ["accuracy", "probability"])
def test_batched_adapters_match_one_at_a_time(tiny_model: Path, eval_set: EvalSet, score: str) -> None:
    from harp.measure.multi_lora import base_scores_multi, build_multi_model, measure_leaves

    config = dataclasses.replace(CONFIG, score=score)  # type: ignore[arg-type]
    base, reference = one_at_a_time(tiny_model, eval_set, config)
    # K = 4 adapters for 3 leaves: the 4th stays idle.
    model = build_multi_model(tiny_model, config, 4)
    np.testing.assert_array_equal(base_scores_multi(model, eval_set, config), base)
    batched = measure_leaves(model, list(LEAVES.values()), eval_set, base, config, seeds=list(LEAVES))
    for ref, got in zip(reference, batched, strict=True):
        np.testing.assert_allclose(got.losses, ref.losses, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.phi, ref.phi, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.variance, ref.variance, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(got.n_eval, ref.n_eval)
    if score == "probability":  # the adapters learned, and each its own leaf: the comparison is not vacuous
        assert all(np.abs(got.scores - base).max() > 1e-3 for got in batched)
        assert np.abs(batched[0].scores - batched[1].scores).max() > 1e-3


def test_one_adapter_equals_the_single_path_and_reset(tiny_model: Path, eval_set: EvalSet) -> None:
    from harp.measure.multi_lora import build_multi_model, evaluate_adapters, measure_leaves

    config = dataclasses.replace(CONFIG, score="probability")
    base, reference = one_at_a_time(tiny_model, eval_set, config)
    model = build_multi_model(tiny_model, config, 1)
    for (g, examples), ref in zip(LEAVES.items(), reference, strict=True):
        [got] = measure_leaves(model, [examples], eval_set, base, config, seeds=[g])
        np.testing.assert_allclose(got.losses, ref.losses, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4, rtol=0)
    # Reset puts every adapter back to the untrained one (B = 0): the base model's scores again.
    model.reset_adapters()
    np.testing.assert_allclose(evaluate_adapters(model, eval_set, config, 1)[0], base, atol=1e-6, rtol=0)


def test_groups_in_turn_and_adapter_selection(tiny_model: Path, eval_set: EvalSet) -> None:
    """A model reused for a second group of leaves starts from fresh adapters; use([k]) selects adapter k."""
    from harp.measure import evaluate
    from harp.measure.multi_lora import build_multi_model, evaluate_adapters, measure_leaves, train_adapters

    config = dataclasses.replace(CONFIG, score="probability")
    base = np.zeros(len(eval_set))
    leaves, seeds = list(LEAVES.values()), list(LEAVES)
    model = build_multi_model(tiny_model, config, 2)
    first = measure_leaves(model, leaves[:2], eval_set, base, config, seeds=seeds[:2])
    second = measure_leaves(model, leaves[2:], eval_set, base, config, seeds=seeds[2:])
    fresh = build_multi_model(tiny_model, config, 2)
    [alone] = measure_leaves(fresh, leaves[2:], eval_set, base, config, seeds=seeds[2:])
    np.testing.assert_allclose(second[0].scores, alone.scores, atol=1e-6, rtol=0)
    train_adapters(model, leaves[:2], config, seeds=seeds[:2])
    table = evaluate_adapters(model, eval_set, config, 2)
    np.testing.assert_allclose(table[0], first[0].scores, atol=1e-6, rtol=0)
    with model.use([1]):  # the whole batch through adapter 1
        np.testing.assert_allclose(evaluate(model, eval_set, config), table[1], atol=1e-5, rtol=0)  # type: ignore[arg-type]


def test_bad_arguments(tiny_model: Path, eval_set: EvalSet) -> None:
    from harp.measure.multi_lora import build_multi_model, train_adapters

    with pytest.raises(ValueError, match=r"n_adapters must be an integer >= 1, got 0"):
        build_multi_model(tiny_model, CONFIG, 0)
    model = build_multi_model(tiny_model, CONFIG, 2)
    leaves = list(LEAVES.values())
    with pytest.raises(ValueError, match=r"give between 1 and 2 leaves \(the model's adapters\), got 3"):
        train_adapters(model, leaves, CONFIG, seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"seeds has 1 entries but there are 2 leaves"):
        train_adapters(model, leaves[:2], CONFIG, seeds=[0])
    with pytest.raises(ValueError, match=r"adapters must be ids in 0..1, got 2"), model.use([2]):
        pass


def test_run_measurements_batched_keeps_key_and_resumes(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    from harp.measure import run_measurements

    pool = make_pool()
    config = dataclasses.replace(CONFIG, score="probability", steps=2)
    one = run_measurements(make_store(tmp_path / "one.duckdb"), tiny_model, pool, eval_set, [2, 0, 3], config)
    store = make_store(tmp_path / "batched.duckdb")
    lines: list[str] = []
    # 3 leaves, K = 2: a group of 2, then a group of 1; another eval_batch_size: an execution detail too.
    other_batch = dataclasses.replace(config, eval_batch_size=3)
    batched = run_measurements(
        store, tiny_model, pool, eval_set, [2, 0, 3], other_batch, adapters_per_batch=2, log=lines.append
    )
    assert batched.config_key == one.config_key
    assert batched.measured == [2, 0, 3]
    assert sum(" measured (" in line for line in lines) == 3
    expected = phi_by_leaf_domain(tmp_path / "one.duckdb")
    got = phi_by_leaf_domain(store.path)
    assert expected.keys() == got.keys()
    for key, phi in expected.items():
        assert got[key] == pytest.approx(phi, abs=1e-4)
    runs = {run["run_id"]: run for run in store.runs()}
    assert runs[batched.run_id]["config"]["adapters_per_batch"] == 2
    assert runs[f"{batched.run_id}-leaf-3"]["timings"]["leaves_in_batch"] == 1.0
    # Resume with the plain path: nothing left to do.
    again = run_measurements(store, tiny_model, pool, eval_set, [0, 1, 2, 3], config, adapters_per_batch=1)
    assert again.measured == [1] and again.skipped == [0, 2, 3]


def phi_by_leaf_domain(path: Path) -> dict[tuple[int, int], float]:
    from harp.store import Store

    rows = Store.open(path).read_table("measurements").to_pylist()
    return {(row["leaf_id"], row["domain_id"]): row["phi"] for row in rows}


def test_adapters_per_batch_rejected(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.measure import InProcessExecutor, run_measurements

    store = make_store(tmp_path / "store.duckdb")
    with pytest.raises(ValueError, match=r"adapters_per_batch must be an integer >= 1, got 0"):
        run_measurements(store, tiny_model, make_pool(), eval_set, [1], CONFIG, adapters_per_batch=0)
    with pytest.raises(ValueError, match=r"adapters_per_batch=2 applies to an executor given by name"):
        run_measurements(
            store, tiny_model, make_pool(), eval_set, [1], CONFIG, executor=InProcessExecutor.__new__(InProcessExecutor),
            adapters_per_batch=2,
        )  # fmt: skip


def test_cli_adapters_per_batch(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harp.cli import main

    store = make_store(tmp_path / "store.duckdb")
    pool_path = write_pool(tmp_path / "pool.jsonl")
    arguments = ["measure", "--store", str(store.path), "--model", str(tiny_model), "--pool", str(pool_path),
                 "--eval", eval_set.path, "--steps", "2", "--batch-size", "2", "--max-length", "32",
                 "--leaves", "3,1,0"]  # fmt: skip
    result = CliRunner().invoke(main, ["-q", *arguments, "--adapters-per-batch", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["measured"] == [3, 1, 0]
    result = CliRunner().invoke(main, [*arguments, "--adapters-per-batch", "0"])
    assert result.exit_code == 2 and "--adapters-per-batch" in result.output
    assert "--adapters-per-batch" in CliRunner().invoke(main, ["measure", "--help"]).output


@pytest.mark.slow
def test_process_executor_with_batched_adapters(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    """Groups of K tasks travel to worker processes and come back leaf by leaf, equal to the in-process run."""
    from harp.measure import run_measurements

    pool = make_pool()
    config = dataclasses.replace(CONFIG, score="probability", steps=2)
    local = run_measurements(make_store(tmp_path / "a.duckdb"), tiny_model, pool, eval_set, [0, 1, 2], config)
    store = make_store(tmp_path / "b.duckdb")
    spread = run_measurements(
        store, tiny_model, pool, eval_set, [0, 1, 2], config, executor="process", devices=["cpu"],
        adapters_per_batch=2,
    )  # fmt: skip
    assert sorted(spread.measured) == [0, 1, 2] and spread.config_key == local.config_key
    expected, got = phi_by_leaf_domain(tmp_path / "a.duckdb"), phi_by_leaf_domain(store.path)
    assert expected.keys() == got.keys()
    for key, phi in expected.items():
        assert got[key] == pytest.approx(phi, abs=1e-4)


@pytest.mark.parametrize(
    ("scaling", "early"), [(2.0, True), (0.5, True), (1.0, True), (3.0, False), (0.3, False)]
)
def test_adapter_scaling_gives_peft_order_bits(scaling: float, early: bool) -> None:
    """The layer scales the rank-r product when alpha / r is a power of two (less work) and the whole update
    otherwise; either way its output and gradients are, bit for bit, peft's order: (x A^T B^T) * scaling."""
    import torch
    from torch import nn

    from harp.measure.multi_lora import MultiLoraLinear

    torch.manual_seed(0)
    layer = MultiLoraLinear(nn.Linear(24, 40), torch.randn(4, 24), 3, scaling, 0.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    assert layer.exact_early_scaling is early
    x = torch.randn(3 * 5, 24, requires_grad=True)
    weight = torch.randn(3 * 5, 40)
    (layer(x) * weight).sum().backward()
    got = [layer(x).detach(), x.grad, layer.lora_A.grad, layer.lora_B.grad]
    x_ref = x.detach().clone().requires_grad_(True)
    a, b = (
        layer.lora_A.detach().clone().requires_grad_(True),
        layer.lora_B.detach().clone().requires_grad_(True),
    )
    update = torch.bmm(torch.bmm(x_ref.reshape(3, 5, 24), a.transpose(1, 2)), b.transpose(1, 2)) * scaling
    want = layer.base_layer(x_ref) + update.reshape(15, 40)
    (want * weight).sum().backward()
    for mine, theirs in zip(got, [want.detach(), x_ref.grad, a.grad, b.grad], strict=True):
        assert torch.equal(mine, theirs)
