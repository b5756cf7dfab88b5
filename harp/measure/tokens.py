"""Token ids for training and scoring: text to ids (:func:`encode`), (prompt, response) pairs to training rows
(:func:`build_data`, the loss on the response only), and rows to a padded array (:func:`pad`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harp.data import TrainData, TrainExamples
from harp.measure.config import MeasureConfig

__all__ = ["as_train_data", "build_data", "encode", "pad", "training_data"]


def encode(tokenizer: Any, text: str, *, special: bool) -> list[int]:
    """The token ids of ``text``, with the tokenizer's special tokens (a beginning-of-sequence token) when
    ``special``."""
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def build_data(tokenizer: Any, examples: TrainExamples, config: MeasureConfig) -> TrainData:
    """Tokenise (prompt, response) pairs; the loss falls on the response and the end-of-sequence token.

    An example longer than ``max_length`` loses the start of its prompt first, then the end of its response.
    Examples given tokenised (a :class:`TrainData`, from a tokenised pool) are returned as they are.
    """
    if not examples:
        raise ValueError("examples must not be empty: a leaf needs at least one training example")
    if isinstance(examples, TrainData):
        return examples
    eos = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    input_ids: list[list[int]] = []
    labels: list[list[int]] = []
    for prompt, response in examples:
        prompt_ids = encode(tokenizer, prompt + "\n", special=True) if prompt else []
        response_ids = encode(tokenizer, response, special=not prompt) + eos
        excess = len(prompt_ids) + len(response_ids) - config.max_length
        if excess > 0:
            prompt_ids = prompt_ids[min(excess, len(prompt_ids)) :]
        ids = (prompt_ids + response_ids)[: config.max_length]
        label = ([-100] * len(prompt_ids) + response_ids)[: config.max_length]
        input_ids.append(ids)
        labels.append(label)
    return TrainData(input_ids, labels)


def pad(rows: Sequence[Sequence[int]], value: int, *, left: bool = False) -> np.ndarray:
    """Rows of token ids as one int64 array of shape (len(rows), longest row), filled with ``value`` on the right
    (on the left with ``left``, as generation wants its prompts)."""
    width = max(len(row) for row in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for k, row in enumerate(rows):
        if left:
            out[k, width - len(row) :] = row
        else:
            out[k, : len(row)] = row
    return out


def as_train_data(tokenizer: Any, examples: TrainExamples, config: MeasureConfig) -> TrainData:
    """:func:`build_data`, with no examples giving empty data instead of an error (a background or a leaf that
    a background protocol may leave empty)."""
    return build_data(tokenizer, examples, config) if len(examples) else TrainData([], [])


def training_data(
    tokenizer: Any,
    examples: TrainExamples,
    background: TrainExamples,
    config: MeasureConfig,
) -> TrainData:
    """Tokenised ``background + examples`` (either may be empty, not both)."""
    background = as_train_data(tokenizer, background, config)
    own = as_train_data(tokenizer, examples, config)
    return TrainData(background.input_ids + own.input_ids, background.labels + own.labels)
