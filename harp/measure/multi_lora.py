"""Stage 1b, batched: K LoRA adapters side by side on one frozen base model, trained in one forward/backward pass.

Why. One small LoRA step (16 sequences of 128 tokens on a 135M model) leaves a large GPU mostly idle; running
several worker processes per GPU helps (3.2x with 6 on an H200) but each holds its own model and CUDA context.
Here the K adapters of K leaves share every forward and backward pass of one model instead.

Layout. Every target ``nn.Linear`` (``config.target_modules``, matched as peft matches them) is replaced by a
:class:`MultiLoraLinear` holding ``A`` of shape (K, r, in) and ``B`` of shape (K, out, r). A batch of N rows is
read as ``n`` equal groups of N / n consecutive rows; group j goes through adapter ``adapters[j]``::

    y = base(x) + (alpha / r) * B_k A_k dropout(x)        (batched matmuls over the groups)

``MultiLoraModel.use(adapters)`` picks the adapters of the groups: ``range(n)`` (the default, all K), one
adapter ``[k]`` for the whole batch, or ``[]`` for the base model alone.

Equivalence with the one-adapter path (:func:`harp.measure.effects.measure_leaf`). Adapter initialisation is
peft's: the model is first wrapped by peft exactly as :func:`harp.measure.model.build_model` does (same seed), so
every adapter starts from the very ``A`` (kaiming-uniform, ``a = sqrt(5)``) the one-adapter path uses, with
``B = 0``; the scale is ``alpha / r``; dropout acts on the LoRA input only. Training: adapter k draws its batches
exactly as ``_batch_order(n_k, config, (config.seed, leaf_id_k))`` in :mod:`harp.measure.training` (leaves of
different sizes cycle on their own); the loss is the sum over groups of each group's mean token loss, so adapter
k's gradient is that of its own loss; the gradient norm is clipped per adapter (each adapter's own norm over all
its layers, as ``clip_grad_norm_`` does for one adapter); AdamW is elementwise and the optimizer is fresh for
every group of leaves, so every adapter is optimised as if alone; the learning rate follows
:func:`harp.measure.training.learning_rate_at`. With dropout 0 the losses, log-likelihoods and scores equal the
one-adapter path's up to float reordering (the matmuls differ in shape); with dropout > 0 the masks are drawn from
one stream for the whole batch, so they differ from the one-adapter path's masks (same distribution, not the same
draws).

Evaluation. Option log-likelihoods (multiple choice, and the graded answer probability of ``score="probability"``)
are batched: each batch of ``eval_batch_size`` pairs is repeated for the n adapters and scored in one forward pass
of ``n * eval_batch_size`` rows (:mod:`harp.measure.loglik`: the LM head only at the scored positions; a question's
context runs once for all its options, once per adapter, since the adapters change its keys and values).
Short-answer generation (``score="accuracy"`` on generation questions) loops over the adapters, selecting one
at a time with ``use([k])`` and calling the same batched ``generate`` as the one-adapter path: batching
``generate`` over adapters would need the K groups to stop together.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as error:  # pragma: no cover - the [train] extra is missing
    raise ImportError(
        f"batched adapters need torch, transformers and peft ({error}): pip install 'harp-explorer[train]'"
    ) from None

from harp._validation import check_integer
from harp.data import EvalSet, TrainExamples
from harp.measure.config import Device, MeasureConfig
from harp.measure.effects import LeafMeasurement, paired_effects
from harp.measure.evaluation import generation_scores, score_table
from harp.measure.loglik import label_token_losses
from harp.measure.model import AdapterModel, build_model
from harp.measure.tokens import as_train_data, pad, training_data
from harp.measure.training import learning_rate_at, torch_seed, training_plan

__all__ = [
    "MultiLoraLinear",
    "MultiLoraModel",
    "base_scores_multi",
    "build_multi_model",
    "evaluate_adapters",
    "measure_leaves",
    "train_adapters",
    "train_and_score",
]


@dataclass
class _Routing:
    """Which adapter serves each group of the batch; shared by every layer of one model."""

    n_groups: int
    index: Any = None  # None: adapters 0..n_groups-1 (a view, no copy); else a LongTensor of adapter ids


class MultiLoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus K LoRA adapters; see the module docstring for the grouping of rows."""

    initial_a: torch.Tensor

    def __init__(
        self, base: nn.Linear, initial_a: torch.Tensor, n_adapters: int, scaling: float, dropout: float
    ) -> None:
        super().__init__()
        self.base_layer = base
        rank = initial_a.shape[0]
        # (K, r, in) and (K, out, r); the adapter weights keep peft's dtype (float32 under a bf16 base).
        self.lora_A = nn.Parameter(initial_a.detach().clone().unsqueeze(0).repeat(n_adapters, 1, 1))
        self.lora_B = nn.Parameter(
            torch.zeros(n_adapters, base.out_features, rank, dtype=initial_a.dtype, device=initial_a.device)
        )
        self.register_buffer("initial_a", initial_a.detach().clone(), persistent=False)
        self.scaling = scaling
        # A power of two commutes with every rounding of the products and sums (barring overflow), so scaling
        # the (K, rows, r) product instead of the (K, rows, out) update gives the same bits for less work
        # (the default alpha / r = 32 / 16 = 2); any other scaling keeps peft's order, scaling the update.
        self.exact_early_scaling = scaling > 0 and math.frexp(scaling)[0] == 0.5
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.routing = _Routing(n_adapters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        routing = self.routing
        if routing.n_groups == 0:
            return result
        if routing.index is None:
            a, b = self.lora_A[: routing.n_groups], self.lora_B[: routing.n_groups]
        else:
            a, b = self.lora_A[routing.index], self.lora_B[routing.index]
        rows = x.shape[0]
        if rows % routing.n_groups:
            raise ValueError(f"a batch of {rows} rows does not split into {routing.n_groups} equal groups")
        grouped = self.dropout(x.to(a.dtype)).reshape(routing.n_groups, -1, x.shape[-1])
        low = torch.bmm(grouped, a.transpose(1, 2))  # (K, rows, r)
        if self.exact_early_scaling:  # scale the rank-r product: r/out of the work, the same bits
            update = torch.bmm(low * self.scaling, b.transpose(1, 2))
        else:
            update = torch.bmm(low, b.transpose(1, 2)) * self.scaling
        return result + update.reshape(result.shape).to(result.dtype)

    def reset(self) -> None:
        with torch.no_grad():
            self.lora_A.copy_(self.initial_a.expand_as(self.lora_A))
            self.lora_B.zero_()


@dataclass
class MultiLoraModel:
    """A causal LM whose target layers carry K adapters (:class:`MultiLoraLinear`), with its tokenizer.

    ``model``, ``tokenizer`` and ``device`` read like :class:`harp.measure.model.AdapterModel`'s, so the
    evaluation helpers of :mod:`harp.measure.evaluation` take it as it is once :meth:`use` has chosen the
    adapters of the groups.
    """

    model: Any
    tokenizer: Any
    device: Any
    n_adapters: int
    layers: list[Any] = field(default_factory=list)
    routing: _Routing = field(default_factory=lambda: _Routing(0))

    def reset_adapters(self) -> None:
        """Put every adapter back to its initial weights (peft's A, B = 0): fresh adapters for the next leaves."""
        for layer in self.layers:
            layer.reset()

    def parameters(self) -> list[Any]:
        """The trainable tensors: A and B of every layer (each holds all K adapters)."""
        return [p for layer in self.layers for p in (layer.lora_A, layer.lora_B)]

    @contextlib.contextmanager
    def use(self, adapters: Sequence[int] | None = None) -> Iterator[None]:
        """Route group j of every batch to adapter ``adapters[j]`` (None: all K in order; ``[]``: the base model)."""
        chosen = list(range(self.n_adapters)) if adapters is None else [int(k) for k in adapters]
        for k in chosen:
            if not 0 <= k < self.n_adapters:
                raise ValueError(f"adapters must be ids in 0..{self.n_adapters - 1}, got {k}")
        index = None if chosen == list(range(len(chosen))) else torch.tensor(chosen, device=self.device)
        saved = (self.routing.n_groups, self.routing.index)
        self.routing.n_groups, self.routing.index = len(chosen), index
        try:
            yield
        finally:
            self.routing.n_groups, self.routing.index = saved


def build_multi_model(
    model_name_or_path: Any, config: MeasureConfig, n_adapters: int, device: Device = "cpu"
) -> MultiLoraModel:
    """Load the model as :func:`harp.measure.model.build_model` does, then give every target layer ``n_adapters``
    adapters initialised like that one adapter (so the two paths start from the same weights).

    Parameters
    ----------
    model_name_or_path : str or Path
    config : MeasureConfig
    n_adapters : int
        K, the adapters trained side by side (>= 1).
    device : str or int
    """
    n_adapters = check_integer(n_adapters, "n_adapters", minimum=1)
    from peft.tuners.lora import LoraLayer

    single: AdapterModel = build_model(model_name_or_path, config, device)
    initial: dict[str, Any] = {}
    for name, module in single.model.named_modules():
        lora_a: Any = getattr(module, "lora_A", {})
        if isinstance(module, LoraLayer) and "default" in lora_a:
            initial[name.removeprefix("base_model.model.")] = lora_a["default"].weight.detach().clone()
    base = single.model.unload()  # the plain model: each LoRA layer replaced by its base Linear again
    for parameter in base.parameters():
        parameter.requires_grad_(False)
    routing = _Routing(n_adapters)  # one object for all layers: use() switches every layer at once
    layers = []
    for name, initial_a in initial.items():
        parent_name, _, child = name.rpartition(".")
        parent = base.get_submodule(parent_name)
        target = getattr(parent, child)
        if type(target) is not nn.Linear:
            raise ValueError(
                f"batched adapters need nn.Linear target layers, but {name} is a {type(target).__name__}: "
                "measure this model with adapters_per_batch=1"
            )
        layer = MultiLoraLinear(
            target, initial_a, n_adapters, config.lora_alpha / config.lora_r, config.lora_dropout
        )
        layer.routing = routing
        setattr(parent, child, layer)
        layers.append(layer)
    base.eval()
    return MultiLoraModel(base, single.tokenizer, single.device, n_adapters, layers, routing)


def _check_leaves(model: MultiLoraModel, count: int, seeds: Sequence[int]) -> None:
    if not 1 <= count <= model.n_adapters:
        raise ValueError(f"give between 1 and {model.n_adapters} leaves (the model's adapters), got {count}")
    if len(seeds) != count:
        raise ValueError(f"seeds has {len(seeds)} entries but there are {count} leaves")


def train_adapters(
    model: MultiLoraModel,
    leaves: Sequence[TrainExamples],
    config: MeasureConfig,
    *,
    seeds: Sequence[int],
    background: TrainExamples = (),
    steps: Sequence[int | None] | None = None,
) -> list[list[float]]:
    """Reset the adapters and train adapter k on ``leaves[k]`` (k < n) by its own plan, all at once.

    Parameters
    ----------
    model : MultiLoraModel
    leaves : sequence of n lists of (prompt, response), or of n TrainData (a tokenised pool)
        n <= K; adapters n..K-1 stay at their initial weights. With a background a leaf may be empty (the
        background-only reference run).
    config : MeasureConfig
    seeds : sequence of n ints
        Each leaf's seed (its leaf id), as ``seed`` in :func:`harp.measure.training.train_adapter`.
    background : sequence of (prompt, response) or TrainData, optional
        The protocol's background, shared by every adapter (empty for base-anchored).
    steps : sequence of n (int or None), optional
        Per-adapter ``steps`` of a base-anchored run, as in :func:`harp.measure.training.train_adapter`.

    Returns
    -------
    list of n lists of float
        The loss of every step, per adapter.

    Notes
    -----
    Plans of different lengths (leaves of different sizes under a one-pass protocol, or different ``steps``)
    run side by side: a step gives each adapter as many rows as the largest batch of the step, a shorter batch
    is filled with rows that carry no loss, and an adapter whose plan has ended is put back, after the loop, to
    the weights it had at its last step (AdamW would otherwise keep moving it on its momentum). So every adapter
    ends as if trained alone.
    """
    _check_leaves(model, len(leaves), seeds)
    n = len(leaves)
    steps_of = list(steps) if steps is not None else [None] * n
    if len(steps_of) != n:
        raise ValueError(f"steps has {len(steps_of)} entries but there are {n} leaves")
    shared = as_train_data(model.tokenizer, background, config)  # tokenised once for the K adapters
    data = [training_data(model.tokenizer, examples, shared, config) for examples in leaves]
    plans = [
        training_plan(config, len(examples), int(seed), n_background=len(shared.input_ids), steps=count)
        for examples, seed, count in zip(leaves, seeds, steps_of, strict=True)
    ]
    model.reset_adapters()
    torch.manual_seed(torch_seed(config, seeds))
    trainable = model.parameters()
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    pad_id = int(model.tokenizer.pad_token_id)
    filler = ([pad_id], [-100])  # a row with one attended token and no loss
    length = [len(plan) for plan in plans]
    losses: list[list[float]] = [[] for _ in range(n)]
    finished: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    model.model.train()
    with model.use(range(n)):
        for step in range(max(length)):
            for k in range(n):
                if length[k] == step:  # adapter k has taken its last step: keep its weights
                    finished[k] = [(layer.lora_A[k].detach().clone(), layer.lora_B[k].detach().clone())
                                   for layer in model.layers]  # fmt: skip
            rows: list[tuple[list[int], list[int]]] = []
            width = max(
                len(plan[step]) for plan in plans if step < len(plan)
            )  # rows of every group this step
            for d, plan in zip(data, plans, strict=True):
                chosen: np.ndarray | list[int] = plan[step] if step < len(plan) else []
                rows.extend((d.input_ids[i], d.labels[i]) for i in chosen)
                rows.extend([filler] * (width - len(chosen)))
            ids = torch.from_numpy(pad([row[0] for row in rows], pad_id)).to(model.device)
            labels = torch.from_numpy(pad([row[1] for row in rows], -100)).to(model.device)
            mask = torch.from_numpy(pad([[1] * len(row[0]) for row in rows], 0)).to(model.device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, config)
            # The LM head only over the positions that predict a label token (harp.measure.loglik).
            token_loss, scored = label_token_losses(model.model, ids, mask, labels)
            token_loss = token_loss.reshape(n, -1)
            counted = scored.reshape(n, -1).sum(-1).clamp(min=1)
            group_loss = (
                token_loss.sum(-1) / counted
            )  # each adapter's mean token loss, as the one-adapter path
            group_loss.sum().backward()
            if config.max_grad_norm > 0:
                _clip_per_adapter(trainable, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss = group_loss.detach().cpu().tolist()
            for k in range(n):
                if step < length[k]:
                    losses[k].append(float(step_loss[k]))
    with torch.no_grad():
        for k, weights in finished.items():
            for layer, (a, b) in zip(model.layers, weights, strict=True):
                layer.lora_A[k].copy_(a)
                layer.lora_B[k].copy_(b)
    model.model.eval()
    return losses


def _clip_per_adapter(parameters: Sequence[Any], max_norm: float) -> None:
    """Scale adapter k's gradients so that their joint norm is at most ``max_norm`` (``clip_grad_norm_``'s rule,
    ``max_norm / (norm + 1e-6)`` capped at 1), each adapter on its own norm. Dimension 0 indexes the adapter."""
    squares = torch.stack([p.grad.float().pow(2).flatten(1).sum(1) for p in parameters if p.grad is not None])
    coefficient = (max_norm / (squares.sum(0).sqrt() + 1e-6)).clamp(max=1.0)
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(coefficient.to(p.grad.dtype).view(-1, *([1] * (p.grad.dim() - 1))))


def _generation(
    model: MultiLoraModel, eval_set: EvalSet, config: MeasureConfig, routes: Sequence[Sequence[int]]
) -> Callable[[np.ndarray], np.ndarray]:
    """Short-answer scores of the given questions, one row per entry of ``routes`` (adapter ids; ``[]`` is the
    base model), generated one route at a time."""

    def score(questions: np.ndarray) -> np.ndarray:
        view = AdapterModel(model.model, model.tokenizer, model.device, {})
        table = np.empty((len(routes), questions.size))
        for k, route in enumerate(routes):
            with model.use(route):
                table[k] = generation_scores(view, eval_set, questions, config)
        return table

    return score


def evaluate_adapters(model: MultiLoraModel, eval_set: EvalSet, config: MeasureConfig, n: int) -> np.ndarray:
    """Per-question scores in [0, 1] of adapters 0..n-1, shape (n, n_questions).

    Log-likelihood scores are batched over the n adapters; short-answer generation loops over them (see the
    module docstring).
    """
    if not 1 <= n <= model.n_adapters:
        raise ValueError(f"n must lie in 1..{model.n_adapters}, got {n}")
    with model.use(range(n)):
        return score_table(
            model, eval_set, config, n, _generation(model, eval_set, config, [[k] for k in range(n)])
        )


def base_scores_multi(model: MultiLoraModel, eval_set: EvalSet, config: MeasureConfig) -> np.ndarray:
    """Per-question scores of the base model (every adapter off), shape (n_questions,)."""
    with model.use([]):
        return score_table(model, eval_set, config, 1, _generation(model, eval_set, config, [[]]))[0]


def train_and_score(
    model: MultiLoraModel,
    leaves: Sequence[TrainExamples],
    eval_set: EvalSet,
    config: MeasureConfig,
    *,
    seeds: Sequence[int],
    background: TrainExamples = (),
    steps: Sequence[int | None] | None = None,
) -> tuple[list[list[float]], np.ndarray, dict[str, float]]:
    """Train adapters 0..n-1 on ``leaves`` and score them: per-adapter losses, scores (n, n_questions), timings.

    ``background`` and ``steps`` as in :func:`train_adapters`. The timings are the group's times divided by the
    number of leaves (so the leaves' timings add up to the device time), plus ``leaves_in_batch``; every leaf
    of the group gets the same.
    """
    started = time.perf_counter()
    losses = train_adapters(model, leaves, config, seeds=seeds, background=background, steps=steps)
    trained = time.perf_counter()
    scores = evaluate_adapters(model, eval_set, config, len(leaves))
    n = len(leaves)
    timings = {
        "train_s": (trained - started) / n,
        "eval_s": (time.perf_counter() - trained) / n,
        "leaves_in_batch": float(n),
    }
    return losses, scores, timings


def measure_leaves(
    model: MultiLoraModel,
    leaves: Sequence[TrainExamples],
    eval_set: EvalSet,
    base: np.ndarray,
    config: MeasureConfig,
    *,
    seeds: Sequence[int],
    background: TrainExamples = (),
) -> list[LeafMeasurement]:
    """:func:`harp.measure.effects.measure_leaf` for up to K leaves at once: train, evaluate, pair with ``base``
    (the reference run's scores under a background protocol).

    Timings as in :func:`train_and_score`.
    """
    losses, scores, timings = train_and_score(
        model, leaves, eval_set, config, seeds=seeds, background=background
    )
    results = []
    for k in range(len(leaves)):
        phi, variance, n_eval = paired_effects(scores[k], base, eval_set.domain, eval_set.n_domains)
        results.append(LeafMeasurement(phi, variance, n_eval, scores[k], losses[k], dict(timings)))
    return results
