"""Tokenised examples in Stage 1b: trained on as given, and scored by teacher-forced greedy accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harp.data import TrainData, eval_set_from_records, training_pool_from_records

pytestmark = pytest.mark.train

CONFIG: dict[str, Any] = {"steps": 3, "batch_size": 2, "max_length": 32, "lora_r": 4, "lora_alpha": 8, "learning_rate": 0.05,
          "warmup_steps": 0, "lora_dropout": 0.0, "eval_batch_size": 2}  # fmt: skip
PAIRS = [("2+2?", "4"), ("sky?", "blue"), ("Say hi", "hi there")]


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Any:
    from harp.measure import MeasureConfig, build_model

    return build_model(tiny_model, MeasureConfig(**CONFIG), "cpu")


def test_given_tokens_train_exactly_as_the_text_they_encode(model: Any) -> None:
    """build_data's tokens handed over as TrainData train the same adapter, step for step, as the text pairs."""
    from harp.measure import MeasureConfig, build_data, train_adapter

    config = MeasureConfig(**CONFIG)
    data = build_data(model.tokenizer, PAIRS, config)
    from_text = train_adapter(model, PAIRS, config, seed=3)
    from_tokens = train_adapter(model, TrainData(data.input_ids, data.labels), config, seed=3)
    np.testing.assert_allclose(from_tokens, from_text, rtol=1e-6)
    # A tokenised pool hands its tokens to training as they were given.
    records = [
        {"input_ids": ids, "labels": labels} for ids, labels in zip(data.input_ids, data.labels, strict=True)
    ]
    pool = training_pool_from_records((f"r{k}", record) for k, record in enumerate(records))
    examples = pool.examples([2, 0])
    assert isinstance(examples, TrainData)
    assert examples.input_ids == [data.input_ids[2], data.input_ids[0]]


def greedy(model: Any, ids: list[int]) -> list[int]:
    import torch

    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([ids])).logits[0]
    return logits.argmax(-1).tolist()


def test_scores_are_teacher_forced_greedy_accuracy(model: Any) -> None:
    import torch

    from harp.measure import MeasureConfig
    from harp.measure.token_eval import token_scores

    model.reset_adapter()  # the adapter at its initial weights, for the greedy tokens and the scores alike
    prompt = model.tokenizer("3+3?\nAnswer:")["input_ids"]
    # Continue the prompt with the model's own greedy tokens, so each label is the argmax of the step before.
    ids = list(prompt)
    for _ in range(3):
        ids.append(greedy(model, ids)[-1])
    right = [-100] * len(prompt) + ids[len(prompt) :]
    wrong = right[:-1] + [(right[-1] + 1) % 50 + 4]
    records = [
        {"input_ids": ids, "labels": right, "domain": "d"},
        {"input_ids": ids, "labels": wrong, "domain": "d"},
        {"input_ids": ids + [0, 0], "labels": right + [-100, 7], "attention_mask": [1] * len(ids) + [0, 0],
         "domain": "d"},  # right-padded: the mask drops the padding, even a label under it
    ]  # fmt: skip
    eval_set = eval_set_from_records((f"q{k}", record) for k, record in enumerate(records))
    assert eval_set.kinds == ["tokens"] * 3
    config = MeasureConfig(**CONFIG)
    scores = token_scores(model, eval_set, np.arange(3), config, copies=2)
    np.testing.assert_array_equal(scores, [[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    # Graded: the geometric-mean probability of the label tokens, by hand.
    graded = token_scores(model, eval_set, np.arange(2), MeasureConfig(**CONFIG, score="probability"))[0]
    with torch.no_grad():
        logits = model.model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    steps = torch.arange(len(prompt) - 1, len(ids) - 1)
    for k, labels in enumerate((right, wrong)):
        targets = torch.tensor(labels[len(prompt) :])
        loglik = (logits[steps].log_softmax(-1)[torch.arange(3), targets]).mean()
        assert graded[k] == pytest.approx(float(torch.exp(loglik)), rel=1e-5)


def test_evaluate_scores_tokenised_questions_next_to_the_others(model: Any) -> None:
    """measure.evaluate routes tokenised questions to token_scores, multiple choice as before."""
    from harp.measure import MeasureConfig, evaluate
    from harp.measure.token_eval import token_scores

    ids = model.tokenizer("1+1?\nAnswer: 2")["input_ids"]
    records = [
        {"question": "2+2?", "choices": ["4", "5"], "answer": 0, "domain": "math"},
        {"input_ids": ids, "labels": [-100] * (len(ids) - 2) + ids[-2:], "subject": "math"},
    ]
    eval_set = eval_set_from_records((f"q{k}", record) for k, record in enumerate(records))
    config = MeasureConfig(**CONFIG)
    model.reset_adapter()
    scores = evaluate(model, eval_set, config)
    assert scores[1] == token_scores(model, eval_set, np.array([1]), config)[0, 0]
    assert eval_set.domain_names == ["math"]
