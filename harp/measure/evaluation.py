"""Scoring a model on the eval set: per-question scores in [0, 1] (:func:`evaluate`, :func:`base_scores`).

Multiple choice: 1 when the option with the largest summed log-likelihood given the question is the right one
(ties: the first option), else 0. The (question, option) pairs are batched (:mod:`harp.measure.loglik`: the LM
head only where an option token is scored; the options of a question on one forward pass of its context).
Short generation: 1 when the greedy answer (batched ``generate``, up to ``max_new_tokens``, first line) equals the
expected answer after lower-casing and collapsing white space, else 0. Prompts read ``"{question}\\nAnswer:"``;
options are scored as ``" {option}"``. With ``score="probability"`` the scores are graded instead, still in
[0, 1]: the softmax probability of the right option over the options' summed log-likelihoods, and the per-token
geometric-mean probability of the expected answer (teacher-forced, one forward pass per batch). Tokenised
questions (given ``input_ids`` and ``labels``) are scored by :mod:`harp.measure.token_eval`.

The table functions (:func:`loglik_table`, :func:`score_table`) score ``copies`` adapters side by side; with
``copies=1`` they are the one-adapter path, and :mod:`harp.measure.multi_lora` calls them with K.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harp.data import EvalSet
from harp.measure.config import MeasureConfig
from harp.measure.model import AdapterModel
from harp.measure.token_eval import token_scores
from harp.measure.tokens import encode, pad

__all__ = [
    "base_scores",
    "question_context",
    "continuation_loglik",
    "evaluate",
    "generation_scores",
    "loglik_table",
    "option_loglik",
    "option_pairs",
    "score_table",
]


def question_context(prompt: str) -> str:
    """The text a question's options and answer are scored after: ``"{prompt}\\nAnswer:"``."""
    return f"{prompt}\nAnswer:"


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .")


def continuation_loglik(
    model: AdapterModel, pairs: Sequence[tuple[str, str]], config: MeasureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-likelihood and token count of each ``continuation`` after its ``context``, in batches.

    A context is tokenised with the tokenizer's special tokens, a continuation without; when the pair is longer
    than ``max_length`` the context loses its start. Pairs of similar length share a forward pass, and pairs
    whose kept contexts are the same share one forward pass of it
    (:func:`harp.measure.loglik.continuation_logliks`).
    """
    loglik, tokens = loglik_table(model, pairs, config, copies=1)
    return loglik[0], tokens


def loglik_table(
    model: Any, pairs: Sequence[tuple[str, str]], config: MeasureConfig, copies: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`continuation_loglik` for ``copies`` adapters at once, shape (copies, n_pairs).

    Every batch of ``eval_batch_size`` pairs goes through the model ``copies`` times side by side (one forward
    pass of ``copies * eval_batch_size`` rows); a :class:`harp.measure.multi_lora.MultiLoraModel` routes group k
    of the rows to adapter k. With ``copies=1`` this is the one-adapter path. This function tokenises and cuts the
    pairs; :func:`harp.measure.loglik.continuation_logliks` runs them.
    """
    # Looked up at call time (as before the package), so a benchmark can swap in another path.
    from harp.measure.loglik import continuation_logliks

    tokenizer = model.tokenizer
    contexts: list[list[int]] = []
    continuations: list[list[int]] = []
    encoded: dict[str, list[int]] = {}
    for context_text, continuation_text in pairs:
        if context_text not in encoded:
            encoded[context_text] = encode(tokenizer, context_text, special=True)
        context_ids = encoded[context_text]
        continuation = encode(tokenizer, continuation_text, special=False)[: config.max_length - 1]
        contexts.append(context_ids[max(0, len(context_ids) + len(continuation) - config.max_length) :])
        continuations.append(continuation)
    loglik = continuation_logliks(
        model.model,
        contexts,
        continuations,
        pad=int(tokenizer.pad_token_id),
        batch_size=config.eval_batch_size,
        copies=copies,
    )
    return loglik, np.array([len(x) for x in continuations], dtype=np.int64)


def option_pairs(
    eval_set: EvalSet, questions: np.ndarray
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """The (context, " option") pair of every option of the multiple-choice ``questions``, with each pair's
    position in ``questions`` and its option index."""
    pairs: list[tuple[str, str]] = []
    pair_question: list[int] = []
    pair_option: list[int] = []
    for position, i in enumerate(questions):
        for j, option in enumerate(eval_set.choices[i]):
            pairs.append((question_context(eval_set.prompts[i]), " " + option))
            pair_question.append(position)
            pair_option.append(j)
    return pairs, np.array(pair_question, dtype=np.int64), np.array(pair_option, dtype=np.int64)


def _option_tables(
    model: Any, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig, copies: int
) -> np.ndarray:
    """:func:`option_loglik` for ``copies`` adapters at once, shape (copies, len(questions), max_choices)."""
    pairs, pair_question, pair_option = option_pairs(eval_set, questions)
    loglik, _ = loglik_table(model, pairs, config, copies)
    n_choices = max(len(eval_set.choices[i]) for i in questions)
    table = np.full((copies, len(questions), n_choices), -np.inf)
    table[:, pair_question, pair_option] = loglik
    return table


def option_loglik(
    model: AdapterModel, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig
) -> np.ndarray:
    """Summed log-likelihood of every option given its question, one forward pass per batch of pairs.

    Returns
    -------
    ndarray of shape (len(questions), max_choices)
        ``-inf`` where a question has fewer options.
    """
    return _option_tables(model, eval_set, questions, config, copies=1)[0]


def _choice_scores(table: np.ndarray, right: np.ndarray, config: MeasureConfig) -> np.ndarray:
    """Scores from option log-likelihoods ``table`` (..., n_questions, max_choices): 0/1 accuracy (ties: the
    first option) or, with ``config.score == "probability"``, the probability of the right option."""
    if config.score == "probability":
        shifted = table - table.max(axis=-1, keepdims=True)
        probability = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return np.take_along_axis(probability, np.broadcast_to(right[:, None], table.shape[:-1] + (1,)), -1)[
            ..., 0
        ]
    return (np.argmax(table, axis=-1) == right).astype(np.float64)


def _answer_pairs(eval_set: EvalSet, questions: np.ndarray) -> list[tuple[str, str]]:
    return [(question_context(eval_set.prompts[i]), " " + str(eval_set.answers[i])) for i in questions]


def generation_scores(
    model: AdapterModel, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig
) -> np.ndarray:
    """0/1 exact match of the greedy answers to the short-generation ``questions``, in batches.

    ``model`` generates with whichever adapters are switched on (a batched model routes them with ``use``).
    """
    import torch

    tokenizer = model.tokenizer
    pad_id = int(tokenizer.pad_token_id)
    limit = max(1, config.max_length - config.max_new_tokens)
    prompts = [
        encode(tokenizer, question_context(eval_set.prompts[i]), special=True)[-limit:] for i in questions
    ]
    scores = np.zeros(len(questions))
    with torch.no_grad():
        for start in range(0, len(prompts), config.eval_batch_size):
            rows = prompts[start : start + config.eval_batch_size]
            ids = torch.from_numpy(pad(rows, pad_id, left=True)).to(model.device)
            mask = torch.from_numpy(pad([[1] * len(row) for row in rows], 0, left=True)).to(model.device)
            output = model.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts = tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)
            for k, text in enumerate(texts):
                answer = str(eval_set.answers[int(questions[start + k])])
                first_line = text.strip().split("\n", 1)[0] if text.strip() else ""
                scores[start + k] = float(_normalise(first_line) == _normalise(answer))
    return scores


def score_table(
    model: Any,
    eval_set: EvalSet,
    config: MeasureConfig,
    copies: int,
    generation: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Per-question scores of ``copies`` adapters evaluated side by side, shape (copies, n_questions).

    ``generation(questions)`` returns the 0/1 exact-match scores of the short-generation questions for every
    copy, shape (copies, len(questions)); it is only called with ``score="accuracy"``.
    """
    kinds = np.array(eval_set.kinds)
    scores = np.zeros((copies, len(eval_set)))
    model.model.eval()
    choice = np.flatnonzero(kinds == "choice")
    generate = np.flatnonzero(kinds == "generate")
    if choice.size:
        table = _option_tables(model, eval_set, choice, config, copies)
        right = np.array([eval_set.answers[i] for i in choice], dtype=np.int64)
        scores[:, choice] = _choice_scores(table, right, config)
    if generate.size and config.score == "probability":
        # Per-token geometric-mean probability of each expected answer (" {answer}") after its prompt.
        loglik, tokens = loglik_table(model, _answer_pairs(eval_set, generate), config, copies)
        scores[:, generate] = np.exp(loglik / np.maximum(tokens, 1))
    elif generate.size:
        scores[:, generate] = generation(generate)
    tokens = np.flatnonzero(kinds == "tokens")
    if tokens.size:  # given input_ids/labels (harp.measure.token_eval): no option text, nothing generated
        scores[:, tokens] = token_scores(model, eval_set, tokens, config, copies)
    return scores


def evaluate(model: AdapterModel, eval_set: EvalSet, config: MeasureConfig) -> np.ndarray:
    """Per-question scores in [0, 1] of the model (with its current adapter), shape (n_questions,)."""

    def generation(questions: np.ndarray) -> np.ndarray:
        return generation_scores(model, eval_set, questions, config)[None]

    return score_table(model, eval_set, config, 1, generation)[0]


def base_scores(model: AdapterModel, eval_set: EvalSet, config: MeasureConfig) -> np.ndarray:
    """Per-question scores of the base model (the adapter switched off), shape (n_questions,)."""
    with model.model.disable_adapter():
        return evaluate(model, eval_set, config)
