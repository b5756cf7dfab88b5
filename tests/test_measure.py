"""Stage 1b measurements on a tiny random Llama built locally: scoring, training, effects, the driver, resume,
executors (in-process, worker processes, Ray) and the choice of representatives."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harp.data import EvalSet, TrainingPool, load_eval_set
from harp.measure import (
    MeasureConfig,
    choose_representatives,
    leaf_centroids,
    paired_effects,
)
from harp.store import Store, points_from_members

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------------------------
# Pure parts: config, effects, representatives (no torch)


def test_config_defaults_json_and_key() -> None:
    config = MeasureConfig()
    assert (config.lora_r, config.lora_alpha) == (16, 32)
    assert MeasureConfig.from_dict(json.loads(config.to_json())) == config
    key = config.config_key("model-a", "eval-1")
    assert key.startswith("m1-") and key == MeasureConfig().config_key("model-a", "eval-1")
    assert key != MeasureConfig(steps=21).config_key("model-a", "eval-1")
    assert key != config.config_key("model-b", "eval-1")
    assert key != config.config_key("model-a", "eval-2")
    assert set(MeasureConfig.help()) == set(config.to_dict())
    assert all(MeasureConfig.help().values())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"lora_r": 0}, r"lora_r must be an integer >= 1, got 0", id="rank"),
        pytest.param({"steps": 2.5}, r"steps must be an integer >= 1", id="steps"),
        pytest.param({"lora_dropout": 1.0}, r"lora_dropout must lie in \[0, 1\)", id="dropout"),
        pytest.param({"learning_rate": 0.0}, r"learning_rate must be > 0", id="lr"),
        pytest.param({"dtype": "int8"}, r"dtype must be", id="dtype"),
        pytest.param({"target_modules": "q_proj"}, r"target_modules must be a non-empty list", id="modules"),
    ],
)
def test_config_rejects(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MeasureConfig(**changes)


# Fields added after the first keys were made; at their defaults they are left out of the hashed payload.
LATER_FIELDS = {"score", "protocol", "background_size", "background_seed"}


def test_config_score_field_keeps_old_keys() -> None:
    accuracy = MeasureConfig().config_key("model-a", "eval-1")
    # A key made before the score field existed hashed the config without it: it must not change.
    payload = json.dumps(
        {
            "config": {k: v for k, v in MeasureConfig().to_dict().items() if k not in LATER_FIELDS},
            "model": "model-a",
            "eval": "eval-1",
            "version": 1,
        },
        sort_keys=True,
    )
    assert accuracy == "m1-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert MeasureConfig(score="probability").config_key("model-a", "eval-1") != accuracy
    with pytest.raises(ValueError, match="score must be 'accuracy' or 'probability', got 'f1'"):
        MeasureConfig(score="f1")  # type: ignore[arg-type]


def test_config_key_leaves_out_eval_batch_size() -> None:
    key = MeasureConfig().config_key("model-a", "eval-1")
    # An execution detail: any eval_batch_size gives the key of the default, which is the key made before.
    assert MeasureConfig(eval_batch_size=64).config_key("model-a", "eval-1") == key
    assert MeasureConfig().legacy_config_key("model-a", "eval-1") == key
    payload = json.dumps(
        {
            "config": {
                k: v for k, v in MeasureConfig(eval_batch_size=64).to_dict().items() if k not in LATER_FIELDS
            },
            "model": "model-a",
            "eval": "eval-1",
            "version": 1,
        },
        sort_keys=True,
    )
    old = "m1-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert MeasureConfig(eval_batch_size=64).legacy_config_key("model-a", "eval-1") == old != key


def test_config_from_dict_rejects_unknown() -> None:
    with pytest.raises(ValueError, match=r"unknown measure config fields \['rank'\]"):
        MeasureConfig.from_dict({"rank": 4})


def test_paired_effects_hand_computed() -> None:
    scores = np.array([1.0, 1.0, 0.0, 1.0, 0.0])
    base = np.array([0.0, 1.0, 0.0, 0.0, 1.0])
    domain = np.array([0, 0, 0, 1, 2])
    phi, variance, n_eval = paired_effects(scores, base, domain, 4)
    # domain 0: differences 1, 0, 0 -> mean 1/3, sample variance 1/3, variance of the mean 1/9.
    np.testing.assert_allclose(phi, [1 / 3, 1.0, -1.0, 0.0])
    np.testing.assert_allclose(variance, [1 / 9, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(n_eval, [3, 1, 1, 0])


def test_representatives_nearest_then_farthest() -> None:
    # Parent 0 holds leaves 0, 1, 2 near the origin; parent 1 holds leaves 3, 4 far away.
    leaf_parent = np.array([0, 0, 0, 1, 1])
    leaves = np.array([[0.0, 0.0], [1.0, 0.0], [-3.0, 0.0], [10.0, 0.0], [10.0, 1.0]])
    parents = np.array([[-0.5, 0.0], [10.0, 0.4]])
    # Nearest to each parent centroid: leaf 0 (0.5 away) and leaf 3 (0.4); then farthest from {0, 3}: leaf 2; leaves 1 and 4 tie (1 away), smaller id first.
    np.testing.assert_array_equal(choose_representatives(leaf_parent, leaves, parents, 3), [0, 3, 2])
    np.testing.assert_array_equal(choose_representatives(leaf_parent, leaves, parents, 10), [0, 3, 2, 1, 4])
    # Budget below the number of parents: start from the per-parent leaf nearest the overall mean (x = 3.6).
    np.testing.assert_array_equal(choose_representatives(leaf_parent, leaves, parents, 1), [0])
    assert choose_representatives(leaf_parent, leaves, parents, 0).size == 0


def test_representatives_ties_and_errors() -> None:
    leaf_parent = np.array([0, 0])
    leaves = np.array([[1.0], [-1.0]])
    np.testing.assert_array_equal(choose_representatives(leaf_parent, leaves, np.array([[0.0]]), 2), [0, 1])
    with pytest.raises(ValueError, match=r"budget must be an integer >= 0, got -1"):
        choose_representatives(leaf_parent, leaves, np.array([[0.0]]), -1)
    with pytest.raises(ValueError, match=r"leaf_centroids has shape \(2, 1\) but leaf_parent has 3 leaves"):
        choose_representatives(np.array([0, 0, 0]), leaves, np.array([[0.0]]), 1)
    with pytest.raises(ValueError, match=r"leaf_parent must hold parent ids in 0..0"):
        choose_representatives(np.array([0, 1]), leaves, np.array([[0.0]]), 1)


def test_leaf_centroids() -> None:
    features = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    leaves, parents = leaf_centroids(features, np.array([0, 0, 1]), np.array([0, 0]))
    np.testing.assert_allclose(leaves, [[2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(parents, [[4 / 3, 2 / 3]])


# ----------------------------------------------------------------------------------------------------------------
# The tiny model

CONFIG = MeasureConfig(steps=4, batch_size=4, max_length=48, eval_batch_size=8, max_new_tokens=4, lora_r=4,
                       lora_alpha=8)  # fmt: skip


def make_pool(n: int = 24) -> TrainingPool:
    prompts = [f"q{i % 7} {'abc'[i % 3]}?" for i in range(n)]
    responses = [f"answer {i}" for i in range(n)]
    return TrainingPool(prompts, responses, [str(i) for i in range(n)], [None] * n)


def make_store(path: Path, n_points: int = 24, n_leaves: int = 4) -> Store:
    store = Store.create(path)
    members = np.array_split(np.arange(n_points), n_leaves)
    store.write_tree(points_from_members(members), [0, 0, 1, 1][:n_leaves], [0, 0], 1)
    return store


@pytest.mark.train
def test_option_loglik_matches_one_pair_at_a_time(tiny_model: Path, eval_set: EvalSet) -> None:
    import torch

    from harp.measure import build_model, option_loglik

    model = build_model(tiny_model, CONFIG)
    questions = np.flatnonzero(np.array(eval_set.kinds) == "choice")
    table = option_loglik(model, eval_set, questions, CONFIG)
    tokenizer = model.tokenizer
    for row, i in enumerate(questions):
        context = tokenizer(f"{eval_set.prompts[i]}\nAnswer:")["input_ids"]
        for j, option in enumerate(eval_set.choices[i]):
            continuation = tokenizer(" " + option, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([context + continuation])
            with torch.no_grad():
                logp = model.model(input_ids=ids).logits[0].log_softmax(-1)
            expected = sum(float(logp[len(context) + k - 1, t]) for k, t in enumerate(continuation))
            assert table[row, j] == pytest.approx(expected, abs=1e-4)
        assert np.isneginf(table[row, len(eval_set.choices[i]) :]).all()


@pytest.mark.train
def test_train_evaluate_reset_and_determinism(tiny_model: Path, eval_set: EvalSet) -> None:
    from harp.measure import base_scores, build_model, evaluate, measure_leaf, option_loglik, train_adapter

    model = build_model(tiny_model, CONFIG)
    questions = np.flatnonzero(np.array(eval_set.kinds) == "choice")
    before = option_loglik(model, eval_set, questions, CONFIG)
    base = base_scores(model, eval_set, CONFIG)
    assert base.shape == (5,) and set(np.unique(base)) <= {0.0, 1.0}
    examples = [("2+2?\nAnswer:", " 4"), ("sky?\nAnswer:", " blue")]
    losses = train_adapter(model, examples, CONFIG, seed=3)
    assert len(losses) == CONFIG.steps and all(np.isfinite(losses))
    after = option_loglik(model, eval_set, questions, CONFIG)
    assert not np.allclose(before[np.isfinite(before)], after[np.isfinite(after)])
    model.reset_adapter()
    np.testing.assert_allclose(option_loglik(model, eval_set, questions, CONFIG), before, atol=1e-5)
    np.testing.assert_array_equal(evaluate(model, eval_set, CONFIG), base)
    first = measure_leaf(model, examples, eval_set, base, CONFIG, seed=3)
    second = measure_leaf(model, examples, eval_set, base, CONFIG, seed=3)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert first.losses == second.losses == losses
    assert first.phi.shape == (2,) and (first.variance >= 0).all()
    np.testing.assert_array_equal(first.n_eval, [2, 3])


@pytest.mark.train
def test_probability_scores_match_the_log_likelihoods(tiny_model: Path, eval_set: EvalSet) -> None:
    from harp.measure import build_model, continuation_loglik, evaluate, option_loglik

    config = dataclasses.replace(CONFIG, score="probability")
    model = build_model(tiny_model, config)
    scores = evaluate(model, eval_set, config)
    assert ((scores > 0) & (scores < 1)).all()
    choice = np.flatnonzero(np.array(eval_set.kinds) == "choice")
    table = option_loglik(model, eval_set, choice, config)
    for row, i in enumerate(choice):
        options = table[row, : len(eval_set.choices[i])]
        expected = np.exp(options[eval_set.answers[i]]) / np.exp(options).sum()
        assert scores[i] == pytest.approx(expected, rel=1e-6)
    generate = np.flatnonzero(np.array(eval_set.kinds) == "generate")
    pairs = [(f"{eval_set.prompts[i]}\nAnswer:", f" {eval_set.answers[i]}") for i in generate]
    loglik, tokens = continuation_loglik(model, pairs, config)
    lengths = [len(model.tokenizer(answer, add_special_tokens=False)["input_ids"]) for _, answer in pairs]
    assert tokens.tolist() == lengths
    np.testing.assert_allclose(scores[generate], np.exp(loglik / tokens), rtol=1e-6)
    # The 0/1 scores of the same model are the argmax of the same table.
    accuracy = evaluate(model, eval_set, CONFIG)
    assert accuracy[choice].tolist() == [
        float(np.argmax(table[row]) == eval_set.answers[i]) for row, i in enumerate(choice)
    ]


@pytest.mark.train
def test_training_learns_the_right_option(tiny_model: Path, tmp_path: Path) -> None:
    from harp.measure import base_scores, build_model, measure_leaf

    path = tmp_path / "eval.jsonl"
    records = [{"question": "zq", "choices": ["ab", "yx"], "answer": 1, "domain": "d"}]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    evals = load_eval_set(path)
    config = MeasureConfig(steps=25, batch_size=2, learning_rate=2e-2, warmup_steps=0, lora_dropout=0.0,
                           max_length=32, target_modules=("q_proj", "v_proj", "up_proj", "down_proj"))  # fmt: skip
    model = build_model(tiny_model, config)
    base = base_scores(model, evals, config)
    good = measure_leaf(model, [("zq\nAnswer:", " yx")], evals, base, config)
    bad = measure_leaf(model, [("zq\nAnswer:", " ab")], evals, base, config)
    assert good.scores[0] == 1.0 and bad.scores[0] == 0.0


@pytest.mark.train
def test_run_measurements_writes_and_resumes(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.measure import InProcessExecutor, run_measurements

    store = make_store(tmp_path / "store.duckdb")
    pool = make_pool()
    lines: list[str] = []
    executor = InProcessExecutor(str(tiny_model), eval_set, CONFIG)
    report = run_measurements(
        store, tiny_model, pool, eval_set, [2, 0], CONFIG, executor=executor, log=lines.append
    )
    assert report.measured == [2, 0] and report.skipped == []
    np.testing.assert_array_equal(store.measured_leaves(report.config_key), [0, 2])
    rows = store.read_table("measurements").to_pylist()
    assert len(rows) == 4 and {row["run_id"] for row in rows} == {report.run_id}
    assert {row["config_key"] for row in rows} == {report.config_key}
    assert {(row["domain_id"], row["n_eval"]) for row in rows} == {(0, 2), (1, 3)}
    domains = store.read_table("domains").to_pylist()
    assert [d["name"] for d in domains] == ["math", "science"] and [d["eval_size"] for d in domains] == [2, 3]
    runs = {run["run_id"]: run for run in store.runs()}
    assert runs[report.run_id]["status"] == "done"
    assert runs[report.run_id]["config"]["measure_config"] == CONFIG.to_dict()
    assert runs[f"{report.run_id}-leaf-2"]["timings"]["train_s"] > 0
    assert any("leaf 2 measured" in line for line in lines)

    again = run_measurements(store, tiny_model, pool, eval_set, [0, 1, 2], CONFIG, executor=executor)
    assert again.measured == [1] and again.skipped == [0, 2]
    assert len(store.read_table("measurements")) == 6
    # Another config is another measurement of the same leaf.
    other = MeasureConfig(**{**CONFIG.to_dict(), "steps": 2, "target_modules": CONFIG.target_modules})
    third = run_measurements(store, tiny_model, pool, eval_set, [0], other, executor=executor)
    assert third.measured == [0] and third.config_key != report.config_key


@pytest.mark.train
def test_resume_under_a_key_that_held_eval_batch_size(
    tiny_model: Path, eval_set: EvalSet, tmp_path: Path
) -> None:
    """A store measured when config_key still hashed a non-default eval_batch_size resumes under that key."""
    from harp.measure import run_measurements
    from harp.measure.config import model_id

    config = dataclasses.replace(CONFIG, steps=1)  # eval_batch_size 8, not the default 32
    old = config.legacy_config_key(model_id(str(tiny_model)), eval_set.fingerprint())
    assert old != config.config_key(model_id(str(tiny_model)), eval_set.fingerprint())
    store = make_store(tmp_path / "store.duckdb")
    store.write_domains(eval_set.domain_names, [0.5, 0.5], [2, 3])
    store.add_measurements({"leaf_id": [1], "domain_id": [0], "phi": [0.1], "variance": [0.01], "n_eval": [2],
                            "run_id": ["old"], "config_key": [old]})  # fmt: skip
    lines: list[str] = []
    report = run_measurements(store, tiny_model, make_pool(), eval_set, [1, 2], config, log=lines.append)
    assert report.config_key == old and report.skipped == [1] and report.measured == [2]
    assert set(store.read_table("measurements").column("config_key").to_pylist()) == {old}
    assert any("older key" in line for line in lines)


@pytest.mark.train
def test_run_measurements_rejects(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.measure import run_measurements

    store = make_store(tmp_path / "store.duckdb")
    with pytest.raises(ValueError, match=r"leaves must be leaf ids in 0..3, got 9"):
        run_measurements(store, tiny_model, make_pool(), eval_set, [9], CONFIG)
    with pytest.raises(ValueError, match=r"leaves lists a leaf more than once"):
        run_measurements(store, tiny_model, make_pool(), eval_set, [1, 1], CONFIG)
    with pytest.raises(ValueError, match=r"point id 10, but the training pool has 10 examples"):
        run_measurements(store, tiny_model, make_pool(10), eval_set, [1], CONFIG)
    store.write_domains(["other"], [0.5])
    with pytest.raises(ValueError, match=r"differ from the eval set's"):
        run_measurements(store, tiny_model, make_pool(), eval_set, [1], CONFIG)


def write_pool(path: Path, n: int = 24) -> Path:
    pool = make_pool(n)
    records = [
        {"prompt": p, "response": r, "id": i}
        for p, r, i in zip(pool.prompts, pool.responses, pool.ids, strict=True)
    ]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.mark.train
@pytest.mark.slow
def test_resume_after_kill(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    """`harp measure` killed with SIGKILL after its first leaf; the rerun neither repeats nor loses a leaf."""
    store = make_store(tmp_path / "store.duckdb")
    pool_path = write_pool(tmp_path / "pool.jsonl")
    # More steps slow each leaf down, so the process is surely killed while leaves remain.
    config = MeasureConfig(**{**CONFIG.to_dict(), "steps": 40, "target_modules": CONFIG.target_modules})
    (tmp_path / "config.json").write_text(config.to_json())
    arguments = ["measure", "--store", str(store.path), "--model", str(tiny_model), "--pool", str(pool_path),
                 "--eval", eval_set.path, "--leaves", "3,1,0,2", "--config", str(tmp_path / "config.json")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "harp.cli", *arguments], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 180
    for line in process.stderr:
        if "measured (1/4)" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = store.read_table("measurements").to_pylist()
    # The kill follows the first leaf's progress line; on a fast machine a second leaf may just make it too.
    done = sorted({row["leaf_id"] for row in first})
    assert 3 in done and len(done) < 4, (
        f"expected the first leaf and not all four before the kill, got {done}"
    )
    [killed] = [run for run in store.runs() if run["kind"] == "measure"]
    assert killed["status"] == "running"  # it never finished, and the record says so

    result = subprocess.run(
        [sys.executable, "-m", "harp.cli", "-q", *arguments],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    report = json.loads(result.stdout)
    assert sorted(report["skipped"]) == done
    assert sorted(report["measured"]) == sorted({0, 1, 2, 3} - set(done))
    rows = store.read_table("measurements").to_pylist()
    assert len(rows) == 4 * 2
    by_leaf = {(row["leaf_id"], row["domain_id"]): row for row in rows}
    assert by_leaf[(3, 0)]["run_id"] == killed["run_id"]  # not repeated
    assert by_leaf[(3, 0)]["phi"] == next(row["phi"] for row in first if row["domain_id"] == 0)
    assert {row["run_id"] for row in rows if row["leaf_id"] in done} == {killed["run_id"]}
    assert {row["run_id"] for row in rows if row["leaf_id"] not in done} == {report["run_id"]}


@pytest.mark.train
def test_cli_measure_with_budget(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harp.cli import main

    store = make_store(tmp_path / "store.duckdb")
    features = np.random.default_rng(0).normal(size=(24, 8))
    np.save(tmp_path / "X_feat.npy", features)
    pool_path = write_pool(tmp_path / "pool.jsonl")
    arguments = ["measure", "--store", str(store.path), "--model", str(tiny_model), "--pool", str(pool_path),
                 "--eval", eval_set.path, "--steps", "2", "--batch-size", "2", "--max-length", "32",
                 "--features", str(tmp_path / "X_feat.npy")]  # fmt: skip
    result = CliRunner().invoke(main, ["-q", *arguments, "--budget", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["measured"]) == 2 and report["skipped"] == []
    # One per parent: leaf 0 or 1 from parent 0, leaf 2 or 3 from parent 1.
    assert {g // 2 for g in report["measured"]} == {0, 1}

    result = CliRunner().invoke(main, [*arguments, "--budget", "2", "--leaves", "1"])
    assert result.exit_code == 2 and "exactly one of --leaves, --budget and --next" in result.output
    result = CliRunner().invoke(main, [*arguments[:-2], "--budget", "2"])
    assert result.exit_code == 2 and "--budget needs --features" in result.output
    result = CliRunner().invoke(main, [*arguments, "--leaves", "7"])
    assert result.exit_code == 1 and "Error: leaves must be leaf ids in 0..3, got 7" in result.output
    result = CliRunner().invoke(main, [*arguments, "--leaves", "1,x"])
    assert result.exit_code == 2 and "expected comma-separated leaf ids or a file of ids" in result.output
    result = CliRunner().invoke(main, [*arguments, "--leaves", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "cannot read" in result.output and "--leaves" in result.output
    (tmp_path / "none.txt").write_text("\n")
    result = CliRunner().invoke(main, [*arguments, "--leaves", str(tmp_path / "none.txt")])
    assert result.exit_code == 2 and "lists no leaf ids" in result.output
    # A file of ids, as `harp infer --hold-out` takes them.
    (tmp_path / "leaves.txt").write_text("1\n0\n")
    result = CliRunner().invoke(main, ["-q", *arguments, "--leaves", str(tmp_path / "leaves.txt")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["skipped"] + report["measured"]) == [0, 1] and report["measured"]
    # Graded scores are another configuration: the same leaf is measured again under its own key.
    result = CliRunner().invoke(main, ["-q", *arguments, "--leaves", "0", "--score", "probability"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["measured"] == [0]
    rows = store.read_table("measurements").to_pylist()
    graded = [
        row
        for row in rows
        if row["leaf_id"] == 0 and row["config_key"] == json.loads(result.stdout)["config_key"]
    ]
    assert len(graded) == 2 and any(row["phi"] not in (-1.0, -0.5, 0.0, 0.5, 1.0) for row in graded)


def test_cli_embed_errors(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harp.cli import main

    pool_path = write_pool(tmp_path / "pool.jsonl")
    result = CliRunner().invoke(main, ["embed", "--pool", str(pool_path), "--out", str(tmp_path / "X.npy"),
                                       "--model", str(tmp_path / "nowhere")])  # fmt: skip
    assert result.exit_code == 1 and "is not a local sentence-transformers directory" in result.output
    result = CliRunner().invoke(main, ["embed", "--pool", str(tmp_path / "missing.jsonl"), "--out", "X.npy"])
    assert result.exit_code == 1 and "missing.jsonl does not exist" in result.output
    for command in ("embed", "measure"):
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        assert "Example:" in help_text


@pytest.mark.train
@pytest.mark.slow
def test_process_executor_matches_in_process(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    from harp.measure import run_measurements

    pool = make_pool()
    local = run_measurements(make_store(tmp_path / "a.duckdb"), tiny_model, pool, eval_set, [0, 1, 2], CONFIG)
    store = make_store(tmp_path / "b.duckdb")
    spread = run_measurements(
        store, tiny_model, pool, eval_set, [0, 1, 2], CONFIG, executor="process", devices=["cpu", "cpu"]
    )
    assert sorted(spread.measured) == [0, 1, 2]
    leaf_runs = [run for run in store.runs() if run["kind"] == "measure-leaf"]
    assert len({run["config"]["worker"] for run in leaf_runs}) == 2
    assert all(run["config"]["hardware"].startswith("cpu (") for run in leaf_runs)  # what measured each leaf
    a = (
        Store.open(tmp_path / "a.duckdb")
        .read_table("measurements")
        .sort_by([("leaf_id", "ascending"), ("domain_id", "ascending")])
    )
    b = store.read_table("measurements").sort_by([("leaf_id", "ascending"), ("domain_id", "ascending")])
    np.testing.assert_allclose(a.column("phi").to_numpy(), b.column("phi").to_numpy())
    np.testing.assert_array_equal(local.base, spread.base)


@pytest.mark.train
@pytest.mark.ray
@pytest.mark.slow
def test_ray_executor(tiny_model: Path, eval_set: EvalSet, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from harp.measure import run_measurements

    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        store = make_store(tmp_path / "store.duckdb")
        report = run_measurements(store, tiny_model, make_pool(), eval_set, [1, 3], CONFIG, executor="ray")
        assert sorted(report.measured) == [1, 3]
        np.testing.assert_array_equal(store.measured_leaves(report.config_key), [1, 3])
    finally:
        ray.shutdown()


def test_executor_name_rejected(eval_set: EvalSet) -> None:
    from harp.measure import make_executor

    with pytest.raises(ValueError, match=r"executor must be 'inprocess', 'process' or 'ray', got 'gpu'"):
        make_executor("gpu", "m", eval_set, CONFIG)  # type: ignore[arg-type]
