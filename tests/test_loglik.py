"""The fast evaluation path (:mod:`harp.measure.loglik`: the LM head only at scored positions, options sharing
their question's context) gives the scores of the straightforward path (``tests/reference_eval.py``), for one
adapter and for several batched adapters, with truncated, shared and unshared contexts."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reference_eval import reference_loglik_table, reference_token_scores

from harp.data import EvalSet, eval_set_from_records
from harp.measure import MeasureConfig

pytestmark = pytest.mark.train

# max_length 24: the longer questions lose their start, by a different cut for options of different lengths.
CONFIG = MeasureConfig(steps=3, batch_size=2, max_length=24, eval_batch_size=5, lora_r=4, lora_alpha=8,
                       lora_dropout=0.0, learning_rate=5e-2, warmup_steps=0, max_grad_norm=0.0,
                       target_modules=("q_proj", "v_proj", "up_proj"))  # fmt: skip
LEAVES = [[("2+2?", "4"), ("sky?", "blue")], [("say hi", "hi there"), ("3+3?", "6")], [("x?", "y")]]


def random_eval_set(seed: int = 0) -> EvalSet:
    rng = np.random.default_rng(seed)
    letters = list("abcdefgh")
    records: list[dict[str, Any]] = []
    for k in range(14):
        words = "".join(rng.choice(letters, int(rng.integers(1, 20))))
        n_options = int(rng.integers(2, 5))
        # Options of equal length share a context even when it is cut; others, only when it is not.
        choices = ["".join(rng.choice(letters, int(rng.integers(1, 5)))) for _ in range(n_options)]
        records.append({"question": words, "choices": choices, "answer": int(rng.integers(n_options)),
                        "domain": f"d{k % 3}"})  # fmt: skip
    records.append({"prompt": "name?", "answer": "bob", "domain": "d0"})
    return eval_set_from_records((f"q{k}", record) for k, record in enumerate(records))


def trained_single(tiny_model: Path) -> Any:
    from harp.measure import build_model, train_adapter

    model = build_model(tiny_model, CONFIG)
    train_adapter(model, LEAVES[0], CONFIG, seed=1)
    return model


def trained_multi(tiny_model: Path) -> Any:
    from harp.measure.multi_lora import build_multi_model, train_adapters

    model = build_multi_model(tiny_model, CONFIG, 3)
    train_adapters(model, LEAVES, CONFIG, seeds=[0, 1, 2])
    return model


@pytest.mark.parametrize("copies", [1, 3], ids=["one-adapter", "three-batched"])
def test_option_logliks_equal_the_straightforward_path(
    tiny_model: Path, copies: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harp.measure.loglik
    from harp.measure.evaluation import loglik_table, option_pairs

    model = trained_single(tiny_model) if copies == 1 else trained_multi(tiny_model)
    eval_set = random_eval_set()
    choice = np.flatnonzero(np.array(eval_set.kinds) == "choice")
    pairs, _, _ = option_pairs(eval_set, choice)
    shared_rows: list[int] = []
    real_shared = harp.measure.loglik._shared

    def spy(model: Any, groups: Any, *args: Any) -> None:
        shared_rows.extend(k for _, members in groups for k in members)
        real_shared(model, groups, *args)

    monkeypatch.setattr(harp.measure.loglik, "_shared", spy)
    with model.use(range(copies)) if copies > 1 else _nothing():
        expected, expected_tokens = reference_loglik_table(model, pairs, CONFIG, copies)
        got, tokens = loglik_table(model, pairs, CONFIG, copies)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(tokens, expected_tokens)
    # Not vacuous: some pairs ran on a shared context, others whole; the adapters differ from each other.
    assert 0 < len(shared_rows) < len(pairs)
    if copies > 1:
        assert np.abs(got[0] - got[1]).max() > 1e-3


@pytest.mark.parametrize("score", ["accuracy", "probability"])
def test_scores_equal_the_straightforward_path(
    tiny_model: Path, score: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole evaluations, fast against the straightforward path, for one adapter and three batched."""
    import harp.measure.evaluation
    from harp.measure import evaluate
    from harp.measure.multi_lora import evaluate_adapters

    config = dataclasses.replace(CONFIG, score=score)  # type: ignore[arg-type]
    eval_set = random_eval_set(1)
    single, multi = trained_single(tiny_model), trained_multi(tiny_model)
    fast = evaluate(single, eval_set, config), evaluate_adapters(multi, eval_set, config, 3)
    monkeypatch.setattr(harp.measure.evaluation, "loglik_table", reference_loglik_table)
    slow = evaluate(single, eval_set, config), evaluate_adapters(multi, eval_set, config, 3)
    np.testing.assert_allclose(fast[0], slow[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast[1], slow[1], atol=1e-5, rtol=0)


def test_unshared_path_equals_the_shared(tiny_model: Path) -> None:
    from harp.measure.loglik import continuation_logliks

    model = trained_single(tiny_model)
    contexts = [[1, 5, 6, 7], [1, 5, 6, 7], [1, 5, 6, 7], [1, 9], [1, 9], [4]]
    continuations = [[8, 9], [10], [], [11, 12, 13], [7], [5, 5]]
    shared = continuation_logliks(model.model, contexts, continuations, pad=0, batch_size=3)
    whole = continuation_logliks(model.model, contexts, continuations, pad=0, batch_size=2, share=False)
    np.testing.assert_allclose(shared, whole, atol=1e-5, rtol=0)
    assert shared[0, 2] == 0.0  # an empty continuation scores 0


@pytest.mark.parametrize("score", ["accuracy", "probability"])
def test_token_scores_equal_the_straightforward_path(tiny_model: Path, score: str) -> None:
    from harp.measure.token_eval import token_scores

    config = dataclasses.replace(CONFIG, score=score, eval_batch_size=2)  # type: ignore[arg-type]
    model = trained_multi(tiny_model)
    rng = np.random.default_rng(3)
    records = []
    for k in range(7):
        ids = [1, *map(int, rng.integers(4, 60, int(rng.integers(3, 12))))]
        cut = int(rng.integers(1, len(ids)))
        labels = [-100] * cut + ids[cut:]
        records.append((f"t{k}", {"input_ids": ids, "labels": labels, "domain": "d"}))
    eval_set = eval_set_from_records(records)
    questions = np.arange(len(eval_set))
    with model.use(range(3)):
        got = token_scores(model, eval_set, questions, config, copies=3)
        expected = reference_token_scores(model, eval_set, questions, config, copies=3)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def test_models_without_logits_to_keep_get_the_same_scores(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forward that takes no ``logits_to_keep``: whole logits, sliced, and no shared contexts."""
    import harp.measure.loglik
    from harp.measure.loglik import continuation_logliks

    model = trained_single(tiny_model)
    contexts = [[1, 5, 6, 7], [1, 5, 6, 7], [1, 9], [4, 4, 4]]
    continuations = [[8, 9], [10], [11, 12, 13], [5, 5]]
    fast = continuation_logliks(model.model, contexts, continuations, pad=0, batch_size=4)
    monkeypatch.setattr(harp.measure.loglik, "_forward_parameters", lambda model: set())
    plain = continuation_logliks(model.model, contexts, continuations, pad=0, batch_size=4)
    np.testing.assert_allclose(plain, fast, atol=1e-5, rtol=0)


def test_a_model_returning_no_usable_cache_runs_pairs_whole(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harp.measure.loglik
    from harp.measure.loglik import continuation_logliks

    model = trained_single(tiny_model)
    contexts = [[1, 5, 6, 7], [1, 5, 6, 7], [1, 9], [1, 9]]
    continuations = [[8, 9], [10], [11, 12, 13], [5]]
    fast = continuation_logliks(model.model, contexts, continuations, pad=0, batch_size=4, copies=1)
    monkeypatch.setattr(harp.measure.loglik, "_cache_names", lambda model: ("cache", "no_such_output"))
    plain = continuation_logliks(model.model, contexts, continuations, pad=0, batch_size=4)
    np.testing.assert_allclose(plain, fast, atol=1e-5, rtol=0)


def test_training_loss_equals_the_models_own(tiny_model: Path) -> None:
    """label_token_losses (the LM head over the label span only) gives the model's labels= loss and gradients."""
    import torch

    from harp.measure import build_data
    from harp.measure.loglik import label_token_losses
    from harp.measure.tokens import pad

    model = trained_single(tiny_model)
    model.model.train()
    data = build_data(model.tokenizer, [("a long prompt here", "x"), ("hi", "a longer one"), ("qq", "r")],
                      dataclasses.replace(CONFIG, max_length=24))  # fmt: skip
    ids = torch.from_numpy(pad(data.input_ids, 0))
    labels = torch.from_numpy(pad(data.labels, -100))
    mask = torch.from_numpy(pad([[1] * len(row) for row in data.input_ids], 0))
    trainable = [p for p in model.model.parameters() if p.requires_grad]

    def gradients(loss: Any) -> list[Any]:
        grads = torch.autograd.grad(loss, trainable)
        return [g.detach().clone() for g in grads]

    expected = model.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    expected_grads = gradients(expected)
    token_loss, scored = label_token_losses(model.model, ids, mask, labels)
    assert token_loss.shape[1] < ids.shape[1] - 1  # the prompt of every row starts the span later
    got = token_loss.sum() / scored.sum()
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    for g, e in zip(gradients(got), expected_grads, strict=True):
        torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)
