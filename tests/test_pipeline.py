"""harp.pipeline.harp: the whole pipeline on a tiny random model (CPU), resume, and argument checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harp.pipeline import harp
from harp.select import select
from harp.store import Store

pytestmark = pytest.mark.filterwarnings("ignore::harp.bayes.BayesWarning")

N_POINTS = 48
LORA = {"steps": 3, "batch_size": 4, "max_length": 32, "eval_batch_size": 16, "r": 4, "lora_alpha": 8,
        "learning_rate": 0.05, "warmup_steps": 0, "lora_dropout": 0.0}  # fmt: skip
TREE: dict[str, Any] = {"leaf_size": 8, "leaves_per_parent": 2, "parents_per_large": 2}


def pool_records(n: int = N_POINTS) -> list[dict[str, str]]:
    return [{"prompt": f"q{i % 5} {'abc'[i % 3]}?", "response": f"{'xyz'[i % 3]} {i}"} for i in range(n)]


EVAL = [
    {"question": f"{i}+{i}?", "choices": [str(2 * i), "x", "y z"], "answer": i % 3, "domain": ["math", "sci", "art"][i % 3]}
    for i in range(9)
]  # fmt: skip


def features(n: int = N_POINTS) -> np.ndarray:
    # Three well-separated groups (the three response letters) with some spread.
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:3] * 5
    return centers[np.arange(n) % 3] + rng.normal(size=(n, 8))


def run(model: Path, checkpoint: Path | None, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "TOP_K_POINTS": 20,
        "lora_config": LORA,
        "checkpoint_dir": checkpoint,
        **TREE,
    }
    arguments.update(kwargs)
    return harp(features(), model, pool_records(), EVAL, **arguments)


@pytest.mark.train
def test_end_to_end_resume_and_outputs(tiny_model: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    reps = tmp_path / "reps.json"
    result = run(tiny_model, tmp_path / "ck", representative_leaves_path=reps, active_rounds=1, active_k=2,
                 progress=lines.append)  # fmt: skip
    info = result.info
    store = Store.open(info["store"], read_only=True)
    inputs = store.selection_inputs()
    n_leaves = inputs.n_leaves
    assert info["phi"].shape == info["phi_sd"].shape == (n_leaves, 3)
    assert info["domain_names"] == ["art", "math", "sci"] and info["leaf_of_point"].shape == (N_POINTS,)
    # Representatives: written to the file, one per parent, all measured; the active round measured 2 more.
    assert json.loads(reps.read_text()) == info["representatives"].tolist()
    assert info["representatives"].size == int(inputs.leaf_parent.max()) + 1
    assert set(info["representatives"].tolist()) <= set(info["measured_leaves"].tolist())
    assert info["measured_leaves"].size == min(n_leaves, info["representatives"].size + 2)
    assert any("active round 1" in line for line in lines)
    # Each selection is harp.select on the posterior means, capped at TOP_K_POINTS.
    for name, points in (("C", result.harp_c), ("E", result.harp_e)):
        expected = select(info["phi"], info["base"], envelope=name, weights=info["weights"],
                          members=inputs.members, budget=20)  # fmt: skip
        np.testing.assert_array_equal(points, expected.points)
        np.testing.assert_array_equal(info[f"order_{name.lower()}"], expected.order)
        assert info[f"cut_{name.lower()}"] == expected.cut
        assert points.size <= 20 and np.unique(points).size == points.size
        assert ((points >= 0) & (points < N_POINTS)).all()
    assert not np.allclose(info["phi"], 0), "training should move at least one effect"
    assert info["bayes"]["domains"][0]["domain"] == "art"
    n_rows = store.read_table("measurements").num_rows

    # Resume: same call, nothing measured again, same answer.
    lines.clear()
    again = run(tiny_model, tmp_path / "ck", representative_leaves_path=reps, progress=lines.append)
    assert store.read_table("measurements").num_rows == n_rows
    assert any("resuming" in line for line in lines) and any("0 leaves to measure" in line for line in lines)
    np.testing.assert_array_equal(again.info["phi"], info["phi"])
    # Another tree into the same checkpoint is refused, not silently replaced.
    with pytest.raises(ValueError, match=r"holds a tree built with other leaf_size"):
        run(tiny_model, tmp_path / "ck", leaf_size=12)


@pytest.mark.train
def test_in_memory_eval_subset_and_v0(tiny_model: Path) -> None:
    math_and_sci = [i for i, record in enumerate(EVAL) if record["domain"] != "art"]
    result = run(tiny_model, None, eval_indices=math_and_sci, v0={"math": 0.25, "sci": 0.75},
                 tokenizer=object(), n_representatives=2, TOP_K_POINTS=None)  # fmt: skip
    info = result.info
    assert info["store"] is None and info["ignored"] == ["tokenizer"]
    assert info["domain_names"] == ["math", "sci"]
    np.testing.assert_allclose(info["base"], [0.25, 0.75])
    assert info["measured_leaves"].size == 2


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"eval_metric": "bleu"}, r"eval_metric must be one of", id="metric"),
        pytest.param(
            {"eval_metric": "exact_match"}, r"eval_metric 'exact_match' does not fit", id="metric-kind"
        ),
        pytest.param(
            {"eval_indices": [0], "eval_indices_path": "x.npy"}, r"at most one of eval_indices", id="both"
        ),
        pytest.param(
            {"eval_indices": [0, 99]}, r"eval_indices must be question indices in 0..8, got 99", id="range"
        ),
        pytest.param({"TOP_K_POINTS": -1}, r"budget must be >= 0, got -1", id="budget"),
        pytest.param({"active_k": 0}, r"active_k must be an integer >= 1, got 0", id="active-k"),
        pytest.param({"lora_config": {"rank": 2}}, r"unknown measure config fields \['rank'\]", id="lora"),
        pytest.param({"lora_config": 3}, r"lora_config must be a MeasureConfig", id="lora-type"),
    ],
)
def test_rejects_bad_arguments(changes: dict[str, Any], match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        run(tmp_path / "no-model", None, **changes)


def test_rejects_features_of_another_pool(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"X_feat has shape \(10, 8\) but train_examples has 48 examples"):
        harp(features()[:10], tmp_path / "no-model", pool_records(), EVAL)


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_pipeline import run
run(Path({model!r}), Path({checkpoint!r}), lora_config={lora!r},
    progress=lambda message: print(message, file=sys.stderr, flush=True))
"""


@pytest.mark.train
@pytest.mark.slow
def test_resume_after_kill(tiny_model: Path, tmp_path: Path) -> None:
    """harp.harp killed with SIGKILL after its first measured leaf; the rerun repeats and loses nothing."""
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    lora = {**LORA, "steps": 30}  # slower leaves, so the kill surely lands while leaves remain
    script = KILLED_RUN.format(tests=str(repo / "tests"), model=str(tiny_model), checkpoint=str(tmp_path / "ck"),
                               lora=lora)  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 300
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "measured (1/" in line or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert any("measured (1/" in line for line in seen), "".join(seen[-20:])
    [store_path] = list((tmp_path / "ck").glob("*.duckdb"))
    store = Store.open(store_path, read_only=True)
    first = store.read_table("measurements").to_pylist()
    # The kill follows the first leaf's progress line; on a fast machine a second leaf may just make it too.
    done = {row["leaf_id"] for row in first}
    assert done
    [killed] = [record for record in store.runs() if record["kind"] == "measure"]
    assert killed["status"] == "running"

    lines: list[str] = []
    resumed = run(tiny_model, tmp_path / "ck", lora_config=lora, progress=lines.append)
    rows = Store.open(store_path, read_only=True).read_table("measurements").to_pylist()
    assert {row["run_id"] for row in rows if row["leaf_id"] in done} == {killed["run_id"]}, (
        "the leaves measured before the kill must not be measured again"
    )
    assert any(f"{len(done)} already measured" in line for line in lines)
    # Killed and resumed gives what one uninterrupted run gives.
    clean = run(tiny_model, tmp_path / "clean", lora_config=lora)
    np.testing.assert_allclose(resumed.info["phi"], clean.info["phi"], atol=1e-6)
    np.testing.assert_array_equal(resumed.harp_c, clean.harp_c)
    np.testing.assert_array_equal(resumed.harp_e, clean.harp_e)


# ----------------------------------------------------------------------------------------------------------------
# The original release's call: tokenised examples and the base-score JSONL

SUBJECTS = ["math", "sci", "art"]
ACC01 = [1, 0, 1, 0, 0, 0, 1, 1, 0]  # math (0, 3, 6): 2/3; sci (1, 4, 7): 1/3; art (2, 5, 8): 1/3
PAD_TO = 24


def tokenise(tokenizer: Any, prompt: str, answer: str, width: int = PAD_TO) -> dict[str, Any]:
    """An SFT-style record: labels -100 on the prompt, right-padded to ``width`` (mask 0, label -100)."""
    prompt_ids = tokenizer(prompt + "\n")["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = prompt_ids + answer_ids
    labels = [-100] * len(prompt_ids) + answer_ids
    padding = max(0, width - len(ids))
    return {
        "input_ids": ids + [tokenizer.pad_token_id] * padding,
        "attention_mask": [1] * len(ids) + [0] * padding,
        "labels": labels + [-100] * padding,
        "length": len(ids),  # an extra key, as datasets carry them
    }


def tokenised_inputs(model: Path) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    train = [tokenise(tokenizer, record["prompt"], record["response"]) for record in pool_records()]
    evals = [tokenise(tokenizer, f"{i}+{i}?\nAnswer:", f" {2 * i}") for i in range(9)]
    return tokenizer, train, evals


def write_scores(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.train
def test_the_original_readme_call(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The original README's call, argument for argument: tokenised examples, the base-score JSONL, info keys."""
    from harp.measure import tokens

    tokenizer, train_examples, eval_examples = tokenised_inputs(tiny_model)
    representatives = write_scores(
        tmp_path / "representatives.jsonl",
        [{"subject": SUBJECTS[i % 3], "acc01": ACC01[i], "index": i} for i in range(9)],
    )
    eval_indices_path = tmp_path / "eval_indices_accuracy.npy"
    np.save(eval_indices_path, np.arange(9))

    def no_tokenising(*arguments: Any, **keywords: Any) -> None:
        raise AssertionError("tokenised examples must not be tokenised again")

    monkeypatch.setattr(tokens, "encode", no_tokenising)
    result = harp(
        X_feat=features(),
        base_model_name=str(tiny_model),
        train_examples=train_examples,
        eval_examples=eval_examples,
        tokenizer=tokenizer,
        eval_indices_path=str(eval_indices_path),
        representatives_path=str(representatives),
        v0=None,
        eval_metric="accuracy",
        TOP_K_POINTS=20,
        lora_config=LORA,
        checkpoint_dir=str(tmp_path / "ck"),
        **TREE,
    )
    info = result.info
    assert info["domain_names"] == ["art", "math", "sci"]
    np.testing.assert_allclose(info["base"], [1 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(info["v0"], info["base"])
    assert info["base_source"] == "representatives_path" and info["ignored"] == []
    for name, points in (("harp_c", result.harp_c), ("harp_e", result.harp_e)):
        np.testing.assert_array_equal(info[name], points)
        assert points.size <= 20 and np.unique(points).size == points.size
        assert ((points >= 0) & (points < N_POINTS)).all()
        assert info["cuts"][name] == info[f"cut_{name[-1]}"]
        np.testing.assert_array_equal(info["orders"][name], info[f"order_{name[-1]}"])
    assert set(info["active_tasks"]) <= set(info["domain_names"]) and "phi" in info and "bayes" in info
    # 0/1 token accuracy of a random tiny model is 0 before and after 3 steps, so phi may well be all 0 here;
    # tests/test_token_eval.py shows the given tokens train as the text they encode.
    assert info["measured_leaves"].size == info["representatives"].size > 0 and np.isfinite(info["phi"]).all()
    # The store's previews are the decoded tokens: the prompt (with its own newline) and the answer, apart.
    store = Store.open(info["store"], read_only=True)
    points = store.read_table("points").sort_by("point_id")
    assert (points["text"][0].as_py(), points["response"][0].as_py()) == ("q0 a?\n", "x 0")


@pytest.mark.train
def test_base_scores_are_written_when_absent(tiny_model: Path, tmp_path: Path) -> None:
    """No v0 and no file yet: the base model is scored and the per-question JSONL written; a rerun reads it."""
    tokenizer, train_examples, eval_examples = tokenised_inputs(tiny_model)
    for i, record in enumerate(eval_examples):
        record["subject"] = SUBJECTS[i % 3]
    scores = tmp_path / "base.jsonl"
    arguments: dict[str, Any] = {"representatives_path": scores, "TOP_K_POINTS": 10, "lora_config": LORA,
                                 "checkpoint_dir": tmp_path / "ck", "n_representatives": 1, **TREE}  # fmt: skip
    first = harp(features(), tiny_model, train_examples, eval_examples, **arguments)
    lines = [json.loads(line) for line in scores.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(9))
    assert [line["subject"] for line in lines] == [SUBJECTS[i % 3] for i in range(9)]
    assert all(line["acc01"] in (0.0, 1.0) for line in lines)
    assert first.info["base_source"] == "measured" and first.info["ignored"] == []
    again = harp(features(), tiny_model, train_examples, eval_examples, **arguments)
    assert again.info["base_source"] == "representatives_path"
    np.testing.assert_allclose(again.info["base"], first.info["base"])


def bad_call(tmp_path: Path, **changes: Any) -> None:
    """harp() on hand-made tokenised inputs; every check below fails before a model is needed."""
    train = [{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]} for _ in range(N_POINTS)]
    evals = [{"input_ids": [5, 9, 10], "labels": [-100, 9, 10], "subject": SUBJECTS[i % 3]} for i in range(9)]
    arguments: dict[str, Any] = {"train_examples": train, "eval_examples": evals, **changes}
    harp(features(), tmp_path / "no-model", arguments.pop("train_examples"), arguments.pop("eval_examples"),
         **arguments)  # fmt: skip


def scores_file(tmp_path: Path, lines: list[dict[str, Any]]) -> str:
    return str(write_scores(tmp_path / "reps.jsonl", lines))


PER_QUESTION = [{"subject": SUBJECTS[i % 3], "acc01": ACC01[i], "index": i} for i in range(9)]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param(
            {"train_examples": [{"input_ids": [1, 2], "labels": [1, 2, 3]}] * N_POINTS},
            r"train_examples\[0\]: field 'labels' has 3 tokens, longer than 'input_ids' \(2 tokens\)",
            id="labels-longer-than-ids",
        ),
        pytest.param(
            {"eval_examples": [{"input_ids": [4, 5, 6], "labels": [-100, 5, 6, 7], "subject": "math"}]},
            r"eval_examples\[0\]: field 'labels' has 4 tokens, longer than 'input_ids'",
            id="eval-labels-longer-than-ids",
        ),
        pytest.param(
            {"train_examples": [{"input_ids": [1, 2, 3], "attention_mask": [1, 1]}] * N_POINTS},
            r"train_examples\[0\]: field 'attention_mask' has 2 tokens, shorter than 'input_ids'",
            id="mask-shorter",
        ),
        pytest.param(
            {"train_examples": [{"text": "hello"}] * N_POINTS},
            r"train_examples\[0\]: missing fields: give 'prompt' and 'response', or chat 'messages', or "
            r"tokenised 'input_ids'",
            id="train-fits-no-format",
        ),
        pytest.param(
            {"eval_examples": [{"ids": [1, 2], "subject": "math"}]},
            r"eval_examples\[0\]: missing fields: give 'question' and 'choices'.* or tokenised 'input_ids'",
            id="eval-fits-no-format",
        ),
        pytest.param(
            {"train_examples": [{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}] * N_POINTS},
            r"train_examples\[0\]: field 'labels' marks no token to learn",
            id="no-label",
        ),
        pytest.param(
            {
                "train_examples": [{"input_ids": [1, 2, 3]}]
                + [{"prompt": "p", "response": "r"}] * (N_POINTS - 1)
            },
            r"train_examples\[1\]: a text record in a pool whose first record \(train_examples\[0\]\) is tokenised",
            id="mixed-pool",
        ),
        pytest.param(
            {
                "lines": [
                    {"subject": "math", "acc01": 0.5, "n": 3},
                    {"subject": "sci", "acc01": 0.5, "n": 3},
                    {"subject": "law", "acc01": 0.5, "n": 3},
                ]
            },
            r"reps.jsonl:3: subject 'law' has no question in eval_examples",
            id="subject-with-no-question",
        ),
        pytest.param(
            {"lines": [{"subject": "math", "acc01": 0.5, "n": 3}]},
            r"reps.jsonl\) has no line for the subject '(sci|art)'",
            id="subject-without-score",
        ),
        pytest.param(
            {"lines": [{**line, "acc01": 1.5} if k == 1 else line for k, line in enumerate(PER_QUESTION)]},
            r"reps.jsonl:2: field 'acc01' must be in \[0, 1\], got 1.5",
            id="acc01-outside-0-1",
        ),
        pytest.param(
            {"lines": [{**line, "index": 99} if k == 0 else line for k, line in enumerate(PER_QUESTION)]},
            r"reps.jsonl:1: index 99 is out of range: eval_examples has 9 questions \(0..8\)",
            id="index-out-of-range",
        ),
        pytest.param(
            {
                "lines": [
                    {**line, "subject": "law"} if k == 0 else line for k, line in enumerate(PER_QUESTION)
                ]
            },
            r"reps.jsonl:1: subject 'law' but eval_examples\[0\] has 'math'",
            id="subject-disagrees",
        ),
        pytest.param(
            {"lines": [{"subject": line["subject"], "acc01": line["acc01"]} for line in PER_QUESTION[:4]]},
            r"reps.jsonl\) has 4 lines but eval_examples has 9 questions",
            id="line-count",
        ),
        pytest.param({"v0": 0.5}, r"v0 must give one base score per domain \(3", id="v0-scalar"),
        pytest.param(
            {"v0": {"math": 0.5}}, r"v0 has no score for the domains \['art', 'sci'\]", id="v0-missing"
        ),
        pytest.param({"eval_metric": "exact_match"}, r"it holds tokenised questions", id="metric-kind"),
    ],
)
def test_rejects_bad_original_inputs(changes: dict[str, Any], match: str, tmp_path: Path) -> None:
    lines = changes.pop("lines", None)
    if lines is not None:
        changes["representatives_path"] = scores_file(tmp_path, lines)
    with pytest.raises(ValueError, match=match):
        bad_call(tmp_path, **changes)


def test_eval_examples_need_a_subject_somewhere(tmp_path: Path) -> None:
    evals = [{"input_ids": [5, 9, 10], "labels": [-100, 9, 10]} for _ in range(9)]
    with pytest.raises(ValueError, match=r"eval_examples\[0\] has no 'domain' \(or 'subject'\)"):
        bad_call(tmp_path, eval_examples=evals)
    no_line = [{"subject": "math", "acc01": 1, "index": i} for i in range(1, 9)]
    with pytest.raises(ValueError, match=r"eval_examples\[0\] has no subject: .* no line for it"):
        bad_call(tmp_path, eval_examples=evals, representatives_path=scores_file(tmp_path, no_line))


def test_default_eval_indices_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval_indices_<metric>.npy in checkpoint_dir, else in the working directory (its bad index shows it)."""
    (tmp_path / "ck").mkdir()
    np.save(tmp_path / "ck" / "eval_indices_accuracy.npy", np.array([0, 99]))
    with pytest.raises(ValueError, match=r"eval_indices in .*ck.eval_indices_accuracy.npy must be question "
                                         r"indices in 0..8, got 99"):  # fmt: skip
        bad_call(tmp_path, eval_metric="accuracy", checkpoint_dir=tmp_path / "ck")
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "eval_indices_accuracy.npy", np.array([0, 42]))
    with pytest.raises(ValueError, match=r"got 42"):
        bad_call(tmp_path, eval_metric="accuracy")
    # Without a metric no default file is looked for; past the inputs, the missing model is what fails.
    with pytest.raises((ValueError, OSError), match=r"no-model"):
        bad_call(tmp_path, TOP_K_POINTS=5, **TREE)


def test_leaf_id_list_moved_to_its_own_keyword(tmp_path: Path) -> None:
    leaves = tmp_path / "leaves.json"
    leaves.write_text("[999]")
    with pytest.warns(DeprecationWarning, match=r"pass it as representative_leaves_path"):
        with pytest.raises(ValueError, match=r"must hold leaf ids in 0\.\.\d+, got 999"):
            bad_call(tmp_path, representatives_path=leaves, **TREE)
    with pytest.raises(ValueError, match=r"representative_leaves_path \(.*leaves.json\) must hold leaf ids"):
        bad_call(tmp_path, representative_leaves_path=leaves, **TREE)
    with pytest.raises(ValueError, match=r"give the leaf ids once"):
        bad_call(tmp_path, representatives_path=leaves, representative_leaves_path=leaves)


@pytest.mark.train
def test_tokenised_pool_measures_as_the_text_it_encodes(tiny_model: Path, tmp_path: Path) -> None:
    """The pool tokenised the way harp.measure.build_data tokenises text gives the same effects, end to end."""
    from harp.measure import MeasureConfig, build_data, build_model

    config = MeasureConfig.from_dict({"lora_r" if k == "r" else k: v for k, v in LORA.items()})
    tokenizer = build_model(tiny_model, config, "cpu").tokenizer
    pairs = [(record["prompt"], record["response"]) for record in pool_records()]
    data = build_data(tokenizer, pairs, config)
    tokenised = [{"input_ids": i, "labels": lab} for i, lab in zip(data.input_ids, data.labels, strict=True)]
    text = run(tiny_model, tmp_path / "text", n_representatives=2)
    tokens = harp(features(), tiny_model, tokenised, EVAL, TOP_K_POINTS=20, lora_config=LORA,
                  checkpoint_dir=tmp_path / "tokens", n_representatives=2, **TREE)  # fmt: skip
    assert tokens.info["config_key"] == text.info["config_key"]
    np.testing.assert_allclose(tokens.info["phi"], text.info["phi"], atol=1e-9)
    np.testing.assert_array_equal(tokens.harp_c, text.harp_c)
    np.testing.assert_array_equal(tokens.harp_e, text.harp_e)


class NumpyDataset:
    """What a Hugging Face dataset in numpy format looks like to harp: ``len`` and ``[i]`` giving arrays."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            key: np.asarray(value) if isinstance(value, list) else value
            for key, value in self.rows[i].items()
        }


def test_datasets_of_arrays_are_read_like_lists(tmp_path: Path) -> None:
    train = NumpyDataset([{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}] * N_POINTS)
    evals = NumpyDataset([{"input_ids": [5, 9, 10], "labels": [-100, 9, 10], "subject": "math"}] * 2)
    # The inputs are read (v0 is checked against their one subject), so the error is v0's.
    with pytest.raises(ValueError, match=r"v0 must give one base score per domain \(1"):
        bad_call(tmp_path, train_examples=train, eval_examples=evals, v0=0.5)
    bad = NumpyDataset([{"input_ids": [5, 6]}] * 3 + [{"input_ids": [[5, 6]]}])
    with pytest.raises(ValueError, match=r"train_examples\[3\]: input_ids\[0\] must be an integer"):
        bad_call(tmp_path, train_examples=bad)
