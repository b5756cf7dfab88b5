"""Training one adapter: the plan of every optimizer step (:func:`training_plan`), the schedule and the loop.

Each measurement starts from the same adapter initialisation (seeded, with LoRA's B = 0, so the untrained adapter
is the base model) and trains on batches drawn by :func:`training_plan`: for the base-anchored protocol ``steps``
AdamW steps on batches of ``batch_size`` examples from the leaf in a seeded order (cycling when the leaf is
small); for a background protocol one pass over a seeded background sample of the pool
(:func:`background_points`) with the leaf's examples placed as the protocol says. The loss falls on response
tokens only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

import numpy as np

from harp.data import TrainData, TrainExamples
from harp.measure.config import MeasureConfig
from harp.measure.loglik import label_token_losses
from harp.measure.model import AdapterModel
from harp.measure.tokens import pad, training_data

__all__ = [
    "background_fingerprint",
    "background_points",
    "learning_rate_at",
    "torch_seed",
    "train_adapter",
    "training_plan",
]


def learning_rate_at(step: int, config: MeasureConfig) -> float:
    """Linear warm-up over ``warmup_steps`` (step 0 gets lr / (warmup + 1)), then constant."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / (config.warmup_steps + 1)
    return config.learning_rate


def _batch_order(n_examples: int, config: MeasureConfig, seed: Sequence[int]) -> np.ndarray:
    """Indices of the examples of each step, shape (steps, batch_size): seeded permutations, cycled."""
    rng = np.random.default_rng(list(seed))
    needed = config.steps * config.batch_size
    rounds = -(-needed // n_examples)
    order = np.concatenate([rng.permutation(n_examples) for _ in range(rounds)])[:needed]
    return order.reshape(config.steps, config.batch_size)


def background_points(n_pool: int, config: MeasureConfig) -> np.ndarray:
    """Point ids of the background: ``background_size`` distinct rows of the pool, drawn with
    ``background_seed`` (all of them when the pool is smaller), sorted. Empty for the base-anchored protocol."""
    if not config.uses_background:
        return np.zeros(0, dtype=np.int64)
    size = min(config.background_size, n_pool)
    rng = np.random.default_rng([config.background_seed, 0x6B67])
    return np.sort(rng.choice(n_pool, size=size, replace=False)).astype(np.int64)


def background_fingerprint(examples: TrainExamples) -> str:
    """A short hash of the background's (prompt, response) pairs (or given tokens), for ``config_key``."""
    digest = hashlib.sha256()
    pairs = (
        zip(examples.input_ids, examples.labels, strict=True) if isinstance(examples, TrainData) else examples
    )
    for prompt, response in pairs:
        digest.update(json.dumps([prompt, response]).encode())
    return digest.hexdigest()[:16]


def training_plan(
    config: MeasureConfig, n_examples: int, seed: int, *, n_background: int = 0, steps: int | None = None
) -> list[np.ndarray]:
    """The examples of every optimizer step, as indices into ``background + examples`` (the background first).

    - base-anchored (``n_background`` must be 0): ``steps`` (default ``config.steps``) batches of
      ``batch_size`` from seeded permutations of the examples, cycled.
    - continuation: one pass over the background in a seeded order, then one pass over the examples.
    - in-mixture: one pass over the background in the same order, with the examples (in a seeded order) at
      seeded positions (the batches after the first inserted example shift).
    - in-mixture-rows: the background's batches exactly as the reference run's, each example added as an extra
      row to a seeded batch (common random numbers: the two runs differ by the examples alone).

    The background's order depends on ``config.seed`` only, so every leaf and the background-only reference
    (``n_examples = 0``) share it. ``seed`` (the leaf id) decides the examples' order and positions. One-pass
    plans end with a smaller batch when the count does not divide by ``batch_size``.
    """
    if config.protocol == "base-anchored":
        if n_background:
            raise ValueError("the base-anchored protocol trains on the leaf alone: n_background must be 0")
        if n_examples < 1:
            raise ValueError("examples must not be empty: a leaf needs at least one training example")
        planned = dataclasses.replace(config, steps=steps) if steps is not None else config
        return list(_batch_order(n_examples, planned, (config.seed, seed)))
    background = np.random.default_rng([config.seed, 0x6267]).permutation(n_background)
    examples = n_background + np.random.default_rng([config.seed, seed]).permutation(n_examples)
    if config.protocol == "in-mixture-rows":
        batches = [background[k : k + config.batch_size] for k in range(0, n_background, config.batch_size)]
        if not batches:
            raise ValueError("in-mixture-rows needs a background: background_size must be >= 1")
        where = np.random.default_rng([config.seed, seed, 2]).integers(0, len(batches), size=n_examples)
        return [np.concatenate([batch, examples[where == t]]) for t, batch in enumerate(batches)]
    if config.protocol == "continuation":
        sequence = np.concatenate([background, examples])
    else:
        total = n_background + n_examples
        slots = np.zeros(total, dtype=bool)
        slots[np.random.default_rng([config.seed, seed, 1]).choice(total, size=n_examples, replace=False)] = (
            True
        )
        sequence = np.empty(total, dtype=np.int64)
        sequence[slots] = examples
        sequence[~slots] = background
    if sequence.size == 0:
        raise ValueError("nothing to train on: the background and the examples are both empty")
    return [sequence[k : k + config.batch_size] for k in range(0, sequence.size, config.batch_size)]


def torch_seed(config: MeasureConfig, seeds: Sequence[int]) -> int:
    """The torch seed (dropout) of one training run of the leaves with ``seeds`` (one leaf, or a batched group).
    With a background every run shares it, so a leaf's run and the reference draw the same dropout masks until
    their batches differ."""
    parts = [config.seed] if config.uses_background else [config.seed, *map(int, seeds)]
    return int(np.random.default_rng(parts).integers(2**62))


def train_adapter(
    model: AdapterModel,
    examples: TrainExamples,
    config: MeasureConfig,
    *,
    seed: int = 0,
    background: TrainExamples = (),
    steps: int | None = None,
) -> list[float]:
    """Reset the adapter and train it on ``examples`` by :func:`training_plan`; returns the loss of each step.

    ``seed`` (for example the leaf id) is mixed with ``config.seed`` to pick the data order and positions.
    ``background`` is the protocol's background sample (empty for base-anchored); ``steps`` overrides
    ``config.steps`` for base-anchored runs (for example one pass over a large subset).
    """
    import torch

    data = training_data(model.tokenizer, examples, background, config)
    n_background = len(data.input_ids) - len(examples)
    plan = training_plan(config, len(examples), seed, n_background=n_background, steps=steps)
    model.reset_adapter()
    torch.manual_seed(torch_seed(config, [seed]))
    trainable = [parameter for parameter in model.model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    pad_id = int(model.tokenizer.pad_token_id)
    losses: list[float] = []
    model.model.train()
    for step, indices in enumerate(plan):
        ids = pad([data.input_ids[k] for k in indices], pad_id)
        labels = pad([data.labels[k] for k in indices], -100)
        mask = pad([[1] * len(data.input_ids[k]) for k in indices], 0)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config)
        token_loss, scored = label_token_losses(
            model.model,
            torch.from_numpy(ids).to(model.device),
            torch.from_numpy(mask).to(model.device),
            torch.from_numpy(labels).to(model.device),
        )
        loss = token_loss.sum() / scored.sum()  # the model's labels= loss: the mean over the label tokens
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.model.eval()
    return losses
