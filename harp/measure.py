"""Stage 1b, measurements: a fresh LoRA adapter per representative leaf, scored against the base model.

Notation. Leaf g, domain d, proxy-eval question i with domain ``d(i)``. The base model scores ``s0_i`` in [0, 1]
on question i; the model with the adapter trained on leaf g scores ``s_gi``. The measured main effect of leaf g on
domain d is the mean paired difference::

    phi[g, d] = mean_{i: d(i) = d} (s_gi - s0_i)

and its sampling variance is the variance of that mean, ``var_i(s_gi - s0_i) / n_d`` (sample variance, ddof=1).
With a single question in a domain the sample variance is undefined; we then report ``1 / n_d``, the largest
variance a mean of differences in [-1, 1] can have, so a one-question domain never looks certain.

Scores. Multiple choice: 1 when the option with the largest summed log-likelihood given the question is the right
one (ties: the first option), else 0. The (question, option) pairs are batched (:mod:`harp.loglik`: the LM
head only where an option token is scored; the options of a question on one forward pass of its context).
Short generation: 1 when the greedy answer (batched ``generate``, up to ``max_new_tokens``, first line) equals the
expected answer after lower-casing and collapsing white space, else 0. Prompts read ``"{question}\\nAnswer:"``;
options are scored as ``" {option}"``. With ``score="probability"`` the scores are graded instead, still in
[0, 1]: the softmax probability of the right option over the options' summed log-likelihoods, and the per-token
geometric-mean probability of the expected answer (teacher-forced, one forward pass per batch). A small model
sits at 0 on exact match and near chance on multiple choice, where 0/1 scores hide every change a short LoRA run
makes; graded scores resolve such changes with the same number of questions.

Training. Each measurement starts from the same adapter initialisation (seeded, with LoRA's B = 0, so the
untrained adapter is the base model), trains ``steps`` AdamW steps on batches of ``batch_size`` examples drawn
from the leaf in a seeded order (cycling when the leaf is small), with the loss on response tokens only.

Resume. A measurement is keyed by ``config_key``: a hash of the :class:`MeasureConfig` (``eval_batch_size``
excepted, see :meth:`MeasureConfig.config_key`), the model and the eval set's fingerprint. :func:`run_measurements`
skips the leaves the store already holds under that key and writes each finished leaf at once (all its domains in
one transaction), so a killed run loses at most the leaves in flight.

Executors. Workers build the model once, then train and score leaf after leaf; the driver alone computes phi and
writes the store. ``"inprocess"`` runs one worker here; ``"process"`` runs one worker process per entry of
``devices`` (repeat a device, or pass ``workers_per_device``, to train several adapters at once on one GPU);
``"ray"`` runs Ray actors on a local instance or the cluster at ``address`` (``gpus_per_worker`` below 1 packs
several adapters on one GPU). With ``adapters_per_batch`` K > 1 every worker instead holds one model with K
adapters side by side (:mod:`harp.multi_lora`) and measures K leaves per training loop; like the executor, this
changes how fast leaves are measured, not what a measurement is.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from harp.data import EvalSet, TrainData, TrainExamples, TrainingPool

if TYPE_CHECKING:
    from harp.store import Store

__all__ = [
    "MEASURE_VERSION",
    "PROTOCOLS",
    "REFERENCE_SEED",
    "AdapterModel",
    "Executor",
    "InProcessExecutor",
    "LeafMeasurement",
    "LeafResult",
    "LeafTask",
    "MeasureConfig",
    "MeasureReport",
    "ProcessExecutor",
    "RayExecutor",
    "base_scores",
    "build_data",
    "background_fingerprint",
    "background_points",
    "as_train_data",
    "build_model",
    "choose_representatives",
    "continuation_loglik",
    "evaluate",
    "leaf_centroids",
    "leaf_members",
    "make_executor",
    "measure_leaf",
    "option_loglik",
    "paired_effects",
    "record_domains",
    "resolve_config_key",
    "run_measurements",
    "save_random_model",
    "train_adapter",
    "training_plan",
]

#: Bump when a change in this module changes what a measurement means; it is part of every ``config_key``.
MEASURE_VERSION = 1

#: The measurement protocols (:attr:`MeasureConfig.protocol`); docs/measure.md says what each estimates.
PROTOCOLS = ("base-anchored", "continuation", "in-mixture", "in-mixture-rows")

Device = str | int
ExecutorName = Literal["inprocess", "process", "ray"]


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class MeasureConfig:
    """Everything that decides what a measurement is; saved with every measurement (JSON and ``config_key``)."""

    lora_r: int = _help("LoRA rank r.", 16)
    lora_alpha: int = _help("LoRA scaling alpha (the update is scaled by alpha / r).", 32)
    lora_dropout: float = _help("Dropout on the LoRA input during training.", 0.05)
    target_modules: tuple[str, ...] = _help(
        "Names of the linear layers that get an adapter.", ("q_proj", "k_proj", "v_proj", "o_proj")
    )
    steps: int = _help("Optimizer steps per adapter.", 20)
    batch_size: int = _help("Training examples per step.", 8)
    learning_rate: float = _help("AdamW learning rate after warm-up.", 2e-4)
    warmup_steps: int = _help("Steps of linear learning-rate warm-up from 0.", 2)
    weight_decay: float = _help("AdamW weight decay on the adapter weights.", 0.0)
    max_grad_norm: float = _help("Clip the gradient norm to this value (0 turns clipping off).", 1.0)
    max_length: int = _help(
        "Tokens per training example or eval sequence (longer prompts lose their start).", 256
    )
    eval_batch_size: int = _help(
        "(question, option) pairs or generation prompts per forward pass (per adapter when several adapters share "
        "a pass); an execution detail, hashed as its default in config_key.",
        32,
    )
    max_new_tokens: int = _help("Greedy tokens generated for a short-answer question.", 16)
    dtype: Literal["float32", "bfloat16", "float16"] = _help("Dtype of the base model weights.", "float32")
    score: Literal["accuracy", "probability"] = _help(
        "Per-question score: 'accuracy' (0/1: argmax option, exact greedy answer) or 'probability' (the model's "
        "probability of the right option among the options; per-token geometric-mean probability of the "
        "expected answer).",
        "accuracy",
    )
    seed: int = _help("Seed of the adapter initialisation, data order and dropout.", 0)
    protocol: Literal["base-anchored", "continuation", "in-mixture", "in-mixture-rows"] = _help(
        "How a leaf's effect is measured (see docs/measure.md): 'base-anchored' (a fresh adapter trained on the "
        "leaf alone, `steps` steps, against the base model), 'continuation' (one pass over a background sample "
        "of the pool, then one pass over the leaf), 'in-mixture' (one pass over the background with the "
        "leaf's examples inserted at seeded positions) or 'in-mixture-rows' (the background's batches unchanged, "
        "the leaf's examples added to seeded batches as extra rows); all but the first are paired with the same "
        "run without the leaf.",
        "base-anchored",
    )
    background_size: int = _help(
        "Examples in the background (continuation, in-mixture): a seeded random sample of the training pool.",
        1000,
    )
    background_seed: int = _help(
        "Seed of the background sample (which examples; the order follows `seed`).", 0
    )

    def __post_init__(self) -> None:
        positive = (
            "lora_r",
            "lora_alpha",
            "steps",
            "batch_size",
            "max_length",
            "eval_batch_size",
            "max_new_tokens",
            "background_size",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout!r}")
        for name in ("learning_rate", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.score not in ("accuracy", "probability"):
            raise ValueError(f"score must be 'accuracy' or 'probability', got {self.score!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'float16', got {self.dtype!r}")
        if isinstance(self.target_modules, str) or not self.target_modules:
            raise ValueError(
                f"target_modules must be a non-empty list of layer names, got {self.target_modules!r}"
            )
        object.__setattr__(self, "target_modules", tuple(str(name) for name in self.target_modules))
        for name in ("seed", "background_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {self.protocol!r}"
            )

    @property
    def uses_background(self) -> bool:
        """Whether a measurement trains on the background too (and is paired with the background-only run)."""
        return self.protocol != "base-anchored"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown measure config fields {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)

    @staticmethod
    def help() -> dict[str, str]:
        """Help text of every field."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(MeasureConfig)}

    def config_key(self, model: str, eval_fingerprint: str, background: str = "") -> str:
        """A short hash of this config, the model id, the eval set, the background and :data:`MEASURE_VERSION`.

        ``background`` fingerprints the background examples (:func:`background_fingerprint`); it is hashed only
        when the protocol uses a background, as are ``protocol``, ``background_size`` and ``background_seed``:
        base-anchored keys made before those fields existed stay valid.

        ``eval_batch_size`` is an execution detail (how many pairs share a forward pass), not part of what a
        measurement means, so it is hashed as its default (32) whatever its value: changing it does not block a
        resume. Keys made before hashed the actual value; for the default that is the same payload, so those keys
        stay valid. A store measured with another ``eval_batch_size`` under the old rule holds the key of
        :meth:`legacy_config_key`; :func:`run_measurements` keeps resuming under that key (see there).
        """
        return self._key(model, eval_fingerprint, background, legacy=False)

    def legacy_config_key(self, model: str, eval_fingerprint: str, background: str = "") -> str:
        """The key as made before ``eval_batch_size`` left it: the hash of the actual ``eval_batch_size``."""
        return self._key(model, eval_fingerprint, background, legacy=True)

    def _key(self, model: str, eval_fingerprint: str, background: str, *, legacy: bool) -> str:
        config = self.to_dict()
        if not legacy:
            config["eval_batch_size"] = _DEFAULT_EVAL_BATCH_SIZE
        if config["score"] == "accuracy":  # the field came later: keys made before it stay valid
            del config["score"]
        content: dict[str, Any] = {
            "config": config,
            "model": model,
            "eval": eval_fingerprint,
            "version": MEASURE_VERSION,
        }
        if self.uses_background:
            content["background"] = background
        else:  # fields that came later and mean nothing without a background: older keys stay valid
            for name in ("protocol", "background_size", "background_seed"):
                del config[name]
        payload = json.dumps(content, sort_keys=True)
        return "m1-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


_DEFAULT_EVAL_BATCH_SIZE = 32  # the hashed value of eval_batch_size in every config_key; never change it

#: The ``leaf_id`` (data-order seed) of the background-only reference run; no leaf has it.
REFERENCE_SEED = 2**40


def learning_rate_at(step: int, config: MeasureConfig) -> float:
    """Linear warm-up over ``warmup_steps`` (step 0 gets lr / (warmup + 1)), then constant."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / (config.warmup_steps + 1)
    return config.learning_rate


def _model_id(model_name_or_path: str | os.PathLike[str]) -> str:
    """The model's identity for ``config_key``: a hub-style name, or a local directory's name and config hash."""
    path = Path(model_name_or_path)
    config = path / "config.json"
    if config.is_file():
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
        return f"{path.name}@{digest}"
    return str(model_name_or_path)


# ----------------------------------------------------------------------------------------------------------------
# Model and data


@dataclass
class AdapterModel:
    """A causal LM wrapped with one LoRA adapter, its tokenizer, and the adapter's initial weights."""

    model: Any
    tokenizer: Any
    device: Any
    initial_adapter: dict[str, Any]

    def reset_adapter(self) -> None:
        """Put the adapter back to its initial weights (a fresh adapter, the same for every leaf)."""
        import torch

        with torch.no_grad():
            for name, parameter in self.model.named_parameters():
                if name in self.initial_adapter:
                    parameter.copy_(self.initial_adapter[name])


def _torch_device(device: Device) -> Any:
    import torch

    if isinstance(device, int) and not isinstance(device, bool):
        return torch.device(f"cuda:{device}")
    if isinstance(device, str) and device.isdigit():
        return torch.device(f"cuda:{device}")
    return torch.device(device)


def hardware_name(device: Device) -> str:
    """What ``device`` is, for run records: the GPU's model name, or the CPU's."""
    import platform

    torch_device = _torch_device(device)
    if torch_device.type == "cuda":
        import torch

        return str(torch.cuda.get_device_name(torch_device))
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _import_train() -> None:
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"measuring leaves needs torch, transformers and peft ({error}): pip install 'harp-explorer[train]'"
        ) from None


def build_model(
    model_name_or_path: str | os.PathLike[str], config: MeasureConfig, device: Device = "cpu"
) -> AdapterModel:
    """Load a causal LM and its tokenizer (local files only) and add a LoRA adapter.

    Parameters
    ----------
    model_name_or_path : str or Path
        A local directory (``save_pretrained`` layout) or a name already in the local Hugging Face cache.
    config : MeasureConfig
    device : str or int
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a GPU index.
    """
    _import_train()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_device = _torch_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_name_or_path), local_files_only=True)
        with warnings.catch_warnings():  # transformers' own deprecations, raised from inside peft and itself
            warnings.simplefilter("ignore", FutureWarning)
            base = AutoModelForCausalLM.from_pretrained(
                str(model_name_or_path), dtype=getattr(torch, config.dtype), local_files_only=True
            )
    except OSError as error:
        raise ValueError(f"cannot load the model {model_name_or_path!r} from local files: {error}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    base.to(torch_device)
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(base, lora)
    except ValueError as error:
        raise ValueError(f"cannot add LoRA adapters to {model_name_or_path!r}: {error}") from None
    initial = {
        name: parameter.detach().clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }
    return AdapterModel(model=model, tokenizer=tokenizer, device=torch_device, initial_adapter=initial)


def _encode(tokenizer: Any, text: str, *, special: bool) -> list[int]:
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
        prompt_ids = _encode(tokenizer, prompt + "\n", special=True) if prompt else []
        response_ids = _encode(tokenizer, response, special=not prompt) + eos
        excess = len(prompt_ids) + len(response_ids) - config.max_length
        if excess > 0:
            prompt_ids = prompt_ids[min(excess, len(prompt_ids)) :]
        ids = (prompt_ids + response_ids)[: config.max_length]
        label = ([-100] * len(prompt_ids) + response_ids)[: config.max_length]
        input_ids.append(ids)
        labels.append(label)
    return TrainData(input_ids, labels)


def _pad(rows: Sequence[Sequence[int]], value: int, *, left: bool = False) -> np.ndarray:
    width = max(len(row) for row in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for k, row in enumerate(rows):
        if left:
            out[k, width - len(row) :] = row
        else:
            out[k, : len(row)] = row
    return out


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


def _torch_seed(config: MeasureConfig, seeds: Sequence[int]) -> int:
    """The torch seed (dropout) of one training run of the leaves with ``seeds`` (one leaf, or a batched group).
    With a background every run shares it, so a leaf's run and the reference draw the same dropout masks until
    their batches differ."""
    parts = [config.seed] if config.uses_background else [config.seed, *map(int, seeds)]
    return int(np.random.default_rng(parts).integers(2**62))


def as_train_data(tokenizer: Any, examples: TrainExamples, config: MeasureConfig) -> TrainData:
    """:func:`build_data`, with no examples giving empty data instead of an error (a background or a leaf that
    a background protocol may leave empty)."""
    return build_data(tokenizer, examples, config) if len(examples) else TrainData([], [])


def _training_data(
    tokenizer: Any,
    examples: TrainExamples,
    background: TrainExamples,
    config: MeasureConfig,
) -> TrainData:
    """Tokenised ``background + examples`` (either may be empty, not both)."""
    background = as_train_data(tokenizer, background, config)
    own = as_train_data(tokenizer, examples, config)
    return TrainData(background.input_ids + own.input_ids, background.labels + own.labels)


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

    from harp.loglik import label_token_losses

    data = _training_data(model.tokenizer, examples, background, config)
    n_background = len(data.input_ids) - len(examples)
    plan = training_plan(config, len(examples), seed, n_background=n_background, steps=steps)
    model.reset_adapter()
    torch.manual_seed(_torch_seed(config, [seed]))
    trainable = [parameter for parameter in model.model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    pad = int(model.tokenizer.pad_token_id)
    losses: list[float] = []
    model.model.train()
    for step, indices in enumerate(plan):
        ids = _pad([data.input_ids[k] for k in indices], pad)
        labels = _pad([data.labels[k] for k in indices], -100)
        mask = _pad([[1] * len(data.input_ids[k]) for k in indices], 0)
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


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


def _context(prompt: str) -> str:
    return f"{prompt}\nAnswer:"


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .")


def continuation_loglik(
    model: AdapterModel, pairs: Sequence[tuple[str, str]], config: MeasureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-likelihood and token count of each ``continuation`` after its ``context``, in batches.

    A context is tokenised with the tokenizer's special tokens, a continuation without; when the pair is longer
    than ``max_length`` the context loses its start. Pairs of similar length share a forward pass, and pairs
    whose kept contexts are the same share one forward pass of it (:func:`harp.loglik.continuation_logliks`).
    """
    loglik, tokens = _loglik_table(model, pairs, config, copies=1)
    return loglik[0], tokens


def _loglik_table(
    model: Any, pairs: Sequence[tuple[str, str]], config: MeasureConfig, copies: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`continuation_loglik` for ``copies`` adapters at once, shape (copies, n_pairs).

    Every batch of ``eval_batch_size`` pairs goes through the model ``copies`` times side by side (one forward
    pass of ``copies * eval_batch_size`` rows); a :class:`harp.multi_lora.MultiLoraModel` routes group k of the
    rows to adapter k. With ``copies=1`` this is the one-adapter path. This function tokenises and cuts the
    pairs; :func:`harp.loglik.continuation_logliks` runs them.
    """
    from harp.loglik import continuation_logliks

    tokenizer = model.tokenizer
    contexts: list[list[int]] = []
    continuations: list[list[int]] = []
    encoded: dict[str, list[int]] = {}
    for context_text, continuation_text in pairs:
        if context_text not in encoded:
            encoded[context_text] = _encode(tokenizer, context_text, special=True)
        context = encoded[context_text]
        continuation = _encode(tokenizer, continuation_text, special=False)[: config.max_length - 1]
        contexts.append(context[max(0, len(context) + len(continuation) - config.max_length) :])
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


def _option_pairs(
    eval_set: EvalSet, questions: np.ndarray
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    pairs: list[tuple[str, str]] = []
    pair_question: list[int] = []
    pair_option: list[int] = []
    for position, i in enumerate(questions):
        for j, option in enumerate(eval_set.choices[i]):
            pairs.append((_context(eval_set.prompts[i]), " " + option))
            pair_question.append(position)
            pair_option.append(j)
    return pairs, np.array(pair_question, dtype=np.int64), np.array(pair_option, dtype=np.int64)


def _option_tables(
    model: Any, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig, copies: int
) -> np.ndarray:
    """:func:`option_loglik` for ``copies`` adapters at once, shape (copies, len(questions), max_choices)."""
    pairs, pair_question, pair_option = _option_pairs(eval_set, questions)
    loglik, _ = _loglik_table(model, pairs, config, copies)
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
    return [(_context(eval_set.prompts[i]), " " + str(eval_set.answers[i])) for i in questions]


def _generation_scores(
    model: AdapterModel, eval_set: EvalSet, questions: np.ndarray, config: MeasureConfig
) -> np.ndarray:
    """0/1 exact match of the greedy answers to the short-generation ``questions``, in batches."""
    import torch

    tokenizer = model.tokenizer
    pad = int(tokenizer.pad_token_id)
    limit = max(1, config.max_length - config.max_new_tokens)
    prompts = [_encode(tokenizer, _context(eval_set.prompts[i]), special=True)[-limit:] for i in questions]
    scores = np.zeros(len(questions))
    with torch.no_grad():
        for start in range(0, len(prompts), config.eval_batch_size):
            rows = prompts[start : start + config.eval_batch_size]
            ids = torch.from_numpy(_pad(rows, pad, left=True)).to(model.device)
            mask = torch.from_numpy(_pad([[1] * len(row) for row in rows], 0, left=True)).to(model.device)
            output = model.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=config.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts = tokenizer.batch_decode(output[:, ids.shape[1] :], skip_special_tokens=True)
            for k, text in enumerate(texts):
                answer = str(eval_set.answers[int(questions[start + k])])
                first_line = text.strip().split("\n", 1)[0] if text.strip() else ""
                scores[start + k] = float(_normalise(first_line) == _normalise(answer))
    return scores


def _score_table(
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
        loglik, tokens = _loglik_table(model, _answer_pairs(eval_set, generate), config, copies)
        scores[:, generate] = np.exp(loglik / np.maximum(tokens, 1))
    elif generate.size:
        scores[:, generate] = generation(generate)
    tokens = np.flatnonzero(kinds == "tokens")
    if tokens.size:  # given input_ids/labels (harp.token_eval): no option text, nothing generated
        from harp.token_eval import token_scores

        scores[:, tokens] = token_scores(model, eval_set, tokens, config, copies)
    return scores


def evaluate(model: AdapterModel, eval_set: EvalSet, config: MeasureConfig) -> np.ndarray:
    """Per-question scores in [0, 1] of the model (with its current adapter), shape (n_questions,)."""

    def generation(questions: np.ndarray) -> np.ndarray:
        return _generation_scores(model, eval_set, questions, config)[None]

    return _score_table(model, eval_set, config, 1, generation)[0]


def base_scores(model: AdapterModel, eval_set: EvalSet, config: MeasureConfig) -> np.ndarray:
    """Per-question scores of the base model (the adapter switched off), shape (n_questions,)."""
    with model.model.disable_adapter():
        return evaluate(model, eval_set, config)


def paired_effects(
    scores: np.ndarray, base: np.ndarray, domain: np.ndarray, n_domains: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi, its sampling variance and the question count of each domain from paired per-question scores.

    Parameters
    ----------
    scores, base : ndarray of shape (n_questions,)
        Scores with the adapter and of the base model.
    domain : ndarray of shape (n_questions,)
        Domain id of each question.
    n_domains : int

    Returns
    -------
    phi, variance : ndarray of shape (n_domains,)
        Mean paired difference and the variance of that mean (``1 / n_d`` when n_d == 1; 0 and 0 when n_d == 0).
    n_eval : ndarray of shape (n_domains,), int64
    """
    difference = np.asarray(scores, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    count = np.bincount(domain, minlength=n_domains).astype(np.int64)
    safe = np.maximum(count, 1)
    phi = np.bincount(domain, weights=difference, minlength=n_domains) / safe
    squares = np.bincount(domain, weights=(difference - phi[domain]) ** 2, minlength=n_domains)
    variance = np.where(count > 1, squares / np.maximum(count - 1, 1) / safe, 1.0 / safe)
    variance[count == 0] = 0.0
    return phi, variance, count


@dataclass
class LeafMeasurement:
    """One leaf's measurement: phi and variance of shape (n_domains,), per-question scores and timings."""

    phi: np.ndarray
    variance: np.ndarray
    n_eval: np.ndarray
    scores: np.ndarray
    losses: list[float]
    timings: dict[str, float]


def measure_leaf(
    model: AdapterModel,
    examples: TrainExamples,
    eval_set: EvalSet,
    base: np.ndarray,
    config: MeasureConfig,
    *,
    seed: int = 0,
    background: TrainExamples = (),
) -> LeafMeasurement:
    """Train a fresh adapter on one leaf's examples, evaluate it, and pair its scores with ``base``.

    With a background protocol, ``base`` is the reference: the scores of the run on ``background`` alone
    (:meth:`_Worker.reference` computes it), and ``background`` is that run's background.
    """
    started = time.perf_counter()
    losses = train_adapter(model, examples, config, seed=seed, background=background)
    trained = time.perf_counter()
    scores = evaluate(model, eval_set, config)
    done = time.perf_counter()
    phi, variance, n_eval = paired_effects(scores, base, eval_set.domain, eval_set.n_domains)
    timings = {"train_s": trained - started, "eval_s": done - trained}
    return LeafMeasurement(phi, variance, n_eval, scores, losses, timings)


# ----------------------------------------------------------------------------------------------------------------
# Workers and executors


@dataclass(frozen=True)
class LeafTask:
    """Train on ``examples`` (the leaf's (prompt, response) pairs) and score the eval set.

    ``leaf_id`` seeds the data order; ``steps`` overrides ``config.steps`` for a base-anchored run (a mixture
    of many leaves gets one pass over its examples, see :mod:`harp.validate`).
    """

    leaf_id: int
    examples: TrainExamples
    steps: int | None = None


@dataclass(frozen=True)
class LeafResult:
    leaf_id: int
    scores: np.ndarray
    timings: dict[str, float]
    worker: str = ""
    hardware: str = ""


class _Worker:
    """Builds the model once, then scores the base model or trains and scores leaves.

    With ``adapters_per_batch`` K > 1 the model carries K adapters side by side (:mod:`harp.multi_lora`) and
    :meth:`run_group` measures up to K leaves in one training loop; with K = 1 it is the one-adapter peft path.
    ``background`` holds the protocol's background examples (empty for base-anchored), tokenised once.
    """

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        device: Device,
        threads: int = 0,
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        started = time.perf_counter()
        self.eval_set = eval_set
        self.config = config
        self.name = f"{os.getpid()}:{device}"
        self.hardware = hardware_name(device)
        self.adapters_per_batch = adapters_per_batch
        self.model: Any
        if adapters_per_batch > 1:
            from harp.multi_lora import build_multi_model

            self.model = build_multi_model(model_name_or_path, config, adapters_per_batch, device)
        else:
            self.model = build_model(model_name_or_path, config, device)
        self.background = as_train_data(self.model.tokenizer, background, config)
        self._reference: np.ndarray | None = None
        self._base: np.ndarray | None = None
        self.load_s = time.perf_counter() - started

    def base(self) -> np.ndarray:
        if self._base is None:  # one evaluation per worker, however often a driver asks
            if self.adapters_per_batch > 1:
                from harp.multi_lora import base_scores_multi

                self._base = base_scores_multi(self.model, self.eval_set, self.config)
            else:
                self._base = base_scores(self.model, self.eval_set, self.config)
        return self._base

    def reference(self) -> np.ndarray:
        """Per-question scores that a leaf's are paired with: the base model's (base-anchored), or those of the
        same training run on the background alone (continuation, in-mixture)."""
        if not self.config.uses_background:
            return self.base()
        if self._reference is None:  # one run per worker: a driver may ask again for every batch of leaves
            [result] = self.run_group([LeafTask(REFERENCE_SEED, [])])
            self._reference = result.scores
        return self._reference

    def run_group(self, tasks: Sequence[LeafTask]) -> list[LeafResult]:
        """Measure up to ``adapters_per_batch`` leaves; their results come back together."""
        if self.adapters_per_batch > 1:
            from harp.multi_lora import train_and_score

            seeds = [task.leaf_id for task in tasks]
            _, table, timings = train_and_score(
                self.model,
                [task.examples for task in tasks],
                self.eval_set,
                self.config,
                seeds=seeds,
                background=self.background,
                steps=[task.steps for task in tasks],
            )
            return [
                LeafResult(t.leaf_id, table[k], dict(timings), self.name, self.hardware)
                for k, t in enumerate(tasks)
            ]
        results = []
        for task in tasks:
            started = time.perf_counter()
            train_adapter(
                self.model,
                task.examples,
                self.config,
                seed=task.leaf_id,
                background=self.background,
                steps=task.steps,
            )
            trained = time.perf_counter()
            scores = evaluate(self.model, self.eval_set, self.config)
            timings = {"train_s": trained - started, "eval_s": time.perf_counter() - trained}
            results.append(LeafResult(task.leaf_id, scores, timings, self.name, self.hardware))
        return results


def _groups(tasks: Iterable[LeafTask], size: int) -> Iterator[list[LeafTask]]:
    """Consecutive groups of ``size`` tasks (the last may be smaller)."""
    group: list[LeafTask] = []
    for task in tasks:
        group.append(task)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _check_adapters_per_batch(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"adapters_per_batch must be an integer >= 1, got {value!r}")
    return int(value)


class Executor(Protocol):
    """Where the training runs. The driver calls :meth:`base` and :meth:`reference` once, then :meth:`run`
    with all the tasks."""

    def base(self) -> np.ndarray:
        """Per-question base-model scores."""
        ...

    def reference(self) -> np.ndarray:
        """Per-question scores a leaf's are paired with (see :meth:`_Worker.reference`)."""
        ...

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        """Yield each task's result as soon as it is done, in any order."""
        ...

    def close(self) -> None: ...


class InProcessExecutor:
    """One worker in this process; ``adapters_per_batch`` leaves trained side by side in one model."""

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        *,
        device: Device = "cpu",
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        self.adapters_per_batch = _check_adapters_per_batch(adapters_per_batch)
        self.worker = _Worker(
            model_name_or_path, eval_set, config, device, 0, self.adapters_per_batch, background
        )

    def base(self) -> np.ndarray:
        return self.worker.base()

    def reference(self) -> np.ndarray:
        return self.worker.reference()

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        for group in _groups(tasks, self.adapters_per_batch):
            yield from self.worker.run_group(group)

    def close(self) -> None:
        pass


_PROCESS_WORKER: _Worker | None = None


def _process_init(
    model: str,
    eval_set: EvalSet,
    config: MeasureConfig,
    device: Device,
    threads: int,
    adapters_per_batch: int,
    background: TrainExamples,
) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = _Worker(model, eval_set, config, device, threads, adapters_per_batch, background)


def _process_base() -> np.ndarray:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.base()


def _process_reference() -> np.ndarray:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.reference()


def _process_ready() -> bool:
    return _PROCESS_WORKER is not None


def _process_run(tasks: list[LeafTask]) -> list[LeafResult]:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.run_group(tasks)


class ProcessExecutor:
    """One worker process per entry of ``devices`` (times ``workers_per_device``), started with ``spawn``.

    Each worker keeps one group of ``adapters_per_batch`` tasks in flight and gets the next as soon as it
    finishes, so fast and slow devices balance themselves. Several workers on one GPU train several adapters at
    once; ``adapters_per_batch`` > 1 makes each of them train that many side by side in one model.
    """

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        *,
        devices: Sequence[Device],
        workers_per_device: int = 1,
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        if not devices:
            raise ValueError("devices must name at least one device, for example [0, 1] or ['cpu']")
        if workers_per_device < 1:
            raise ValueError(f"workers_per_device must be >= 1, got {workers_per_device}")
        self.adapters_per_batch = _check_adapters_per_batch(adapters_per_batch)
        slots = [device for device in devices for _ in range(workers_per_device)]
        cpu_slots = sum(1 for device in slots if str(device).startswith("cpu"))
        threads = max(1, (os.cpu_count() or 1) // cpu_slots) if cpu_slots else 0
        context = multiprocessing.get_context("spawn")
        self.pools = [
            futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_process_init,
                initargs=(
                    model_name_or_path,
                    eval_set,
                    config,
                    device,
                    threads if str(device).startswith("cpu") else 0,
                    self.adapters_per_batch,
                    background if isinstance(background, TrainData) else list(background),
                ),
            )
            for device in slots
        ]

        # Start every worker now (model loaded), so start-up is not counted as measuring time.
        for ready in [pool.submit(_process_ready) for pool in self.pools]:
            ready.result()

    def base(self) -> np.ndarray:
        return self.pools[0].submit(_process_base).result()

    def reference(self) -> np.ndarray:
        return self.pools[0].submit(_process_reference).result()

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        pending = _groups(tasks, self.adapters_per_batch)
        in_flight: dict[futures.Future[list[LeafResult]], int] = {}

        def feed(slot: int) -> None:
            group = next(pending, None)
            if group is not None:
                in_flight[self.pools[slot].submit(_process_run, group)] = slot

        for slot in range(len(self.pools)):
            feed(slot)
        while in_flight:
            done, _ = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
            for future in done:
                slot = in_flight.pop(future)
                results = future.result()
                feed(slot)
                yield from results

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """``num_workers`` Ray actors, each with ``gpus_per_worker`` GPUs (a fraction packs several per GPU).

    Connects to the cluster at ``address`` (None: the running or a new local instance). ``runtime_env`` is passed
    to ``ray.init`` (for example ``{"py_modules": [harp]}`` when the cluster's nodes lack harp-explorer).
    """

    def __init__(
        self,
        model_name_or_path: str,
        eval_set: EvalSet,
        config: MeasureConfig,
        *,
        address: str | None = None,
        num_workers: int = 1,
        gpus_per_worker: float | None = None,
        runtime_env: dict[str, Any] | None = None,
        adapters_per_batch: int = 1,
        background: TrainExamples = (),
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("the Ray executor needs Ray: pip install 'harp-explorer[cluster]'") from None
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.adapters_per_batch = _check_adapters_per_batch(adapters_per_batch)
        if not ray.is_initialized():
            ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        device = "cuda" if gpus_per_worker > 0 else "cpu"
        remote = ray.remote(num_cpus=0 if gpus_per_worker > 0 else 1, num_gpus=gpus_per_worker)(_Worker)
        self.ray: Any = ray
        self.actors: list[Any] = [
            remote.remote(
                model_name_or_path,
                eval_set,
                config,
                device,
                0,
                self.adapters_per_batch,
                background if isinstance(background, TrainData) else list(background),
            )
            for _ in range(num_workers)
        ]

    def base(self) -> np.ndarray:
        return self.ray.get(self.actors[0].base.remote())

    def reference(self) -> np.ndarray:
        return self.ray.get(self.actors[0].reference.remote())

    def run(self, tasks: Iterable[LeafTask]) -> Iterator[LeafResult]:
        pending = _groups(tasks, self.adapters_per_batch)
        in_flight: dict[Any, Any] = {}

        def feed(actor: Any) -> None:
            group = next(pending, None)
            if group is not None:
                in_flight[actor.run_group.remote(group)] = actor

        for actor in self.actors:
            feed(actor)
        while in_flight:
            ready, _ = self.ray.wait(list(in_flight), num_returns=1)
            actor = in_flight.pop(ready[0])
            results = self.ray.get(ready[0])
            feed(actor)
            yield from results

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def make_executor(
    executor: ExecutorName,
    model_name_or_path: str,
    eval_set: EvalSet,
    config: MeasureConfig,
    *,
    devices: Sequence[Device] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    adapters_per_batch: int = 1,
    background: TrainExamples = (),
) -> Executor:
    """Build an executor by name (see the module docstring)."""
    if executor == "inprocess":
        device = devices[0] if devices else ("cuda" if _cuda_available() else "cpu")
        return InProcessExecutor(
            model_name_or_path,
            eval_set,
            config,
            device=device,
            adapters_per_batch=adapters_per_batch,
            background=background,
        )
    if executor == "process":
        return ProcessExecutor(
            model_name_or_path,
            eval_set,
            config,
            devices=list(devices) if devices else ["cpu"],
            workers_per_device=workers_per_device,
            adapters_per_batch=adapters_per_batch,
            background=background,
        )
    if executor == "ray":
        return RayExecutor(
            model_name_or_path,
            eval_set,
            config,
            address=address,
            num_workers=max(1, len(devices or [0])) * workers_per_device,
            gpus_per_worker=gpus_per_worker,
            adapters_per_batch=adapters_per_batch,
            background=background,
        )
    raise ValueError(f"executor must be 'inprocess', 'process' or 'ray', got {executor!r}")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------------------------
# The driver


@dataclass
class MeasureReport:
    """What :func:`run_measurements` did."""

    run_id: str
    config_key: str
    measured: list[int]
    skipped: list[int]
    base: np.ndarray
    timings: dict[str, float]


def leaf_members(store: Store, n_pool: int) -> list[np.ndarray]:
    """The point ids of every leaf, most central first, checked to be rows of a pool of ``n_pool`` examples."""
    points = store.read_table("points").select(["point_id", "leaf_id", "rank_in_leaf"]).to_pydict()
    point_id = np.asarray(points["point_id"], dtype=np.int64)
    leaf_id = np.asarray(points["leaf_id"], dtype=np.int64)
    order = np.lexsort((np.asarray(points["rank_in_leaf"]), leaf_id))
    point_id, leaf_id = point_id[order], leaf_id[order]
    if point_id.size and (point_id.max() >= n_pool):
        bad = int(point_id[np.argmax(point_id >= n_pool)])
        raise ValueError(
            f"the store holds point id {bad}, but the training pool has {n_pool} examples: point ids must be "
            "row numbers of the training pool"
        )
    n_leaves = int(leaf_id.max()) + 1 if leaf_id.size else 0
    return np.split(point_id, np.cumsum(np.bincount(leaf_id, minlength=n_leaves))[:-1])


def record_domains(store: Store, eval_set: EvalSet, base: np.ndarray) -> np.ndarray:
    """Write the eval set's domains and base scores b_d to the store; keep the active flags when names match."""
    import pyarrow as pa

    b = np.bincount(eval_set.domain, weights=base, minlength=eval_set.n_domains) / eval_set.eval_size()
    stored: pa.Table = store.read_table("domains").sort_by("domain_id")
    names = [str(name) for name in stored.column("name").to_pylist()]
    if names and names != eval_set.domain_names:
        raise ValueError(
            f"the store's domains {names[:5]}... differ from the eval set's {eval_set.domain_names[:5]}...: "
            "measure with the same eval set, or use a new store"
        )
    stored_base = np.asarray(stored.column("base").to_pylist(), dtype=np.float64)
    if not names or not np.allclose(stored_base, b, rtol=0, atol=1e-12):
        active = stored.column("active").to_pylist() if names else None
        store.write_domains(eval_set.domain_names, np.clip(b, 0, 1), eval_set.eval_size(), active)
    return b


def run_measurements(
    store: Store,
    model_name_or_path: str | os.PathLike[str],
    train: TrainingPool,
    eval_set: EvalSet,
    leaves: Sequence[int] | np.ndarray,
    config: MeasureConfig | None = None,
    *,
    executor: ExecutorName | Executor = "inprocess",
    devices: Sequence[Device] | None = None,
    workers_per_device: int = 1,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    max_examples_per_leaf: int | None = None,
    adapters_per_batch: int = 1,
    log: Callable[[str], None] | None = None,
) -> MeasureReport:
    """Measure ``leaves`` (skipping those the store holds under the same ``config_key``) and store each at once.

    Parameters
    ----------
    store : Store
        Holds the tree (its point ids are rows of ``train``); the domains are written from ``eval_set``.
    model_name_or_path : str or Path
    train : TrainingPool
    eval_set : EvalSet
    leaves : sequence of int
        Leaf ids to measure, in order (for example from :func:`choose_representatives`).
    config : MeasureConfig, optional
    executor : {"inprocess", "process", "ray"} or Executor
        Where to train; see the module docstring. An Executor instance is used as given (and not closed).
    devices : sequence of str or int, optional
        Devices of the workers (``[0, 1]``, ``["cpu", "cpu"]``); for Ray, its length is the number of workers.
    workers_per_device : int, default 1
        Adapters trained at once on each device.
    address : str, optional
        The Ray cluster's address.
    max_examples_per_leaf : int, optional
        Train on at most the first this many (most central) examples of a leaf.
    adapters_per_batch : int, default 1
        K: each worker trains K leaves' adapters side by side in one forward/backward pass
        (:mod:`harp.multi_lora`) and writes the K results when the group finishes. An execution detail like the
        executor: the measurements keep the same ``config_key``. Only with an executor given by name (an Executor
        instance carries its own).
    log : callable, optional
        Receives one line of progress per event.

    Returns
    -------
    MeasureReport
    """
    config = MeasureConfig() if config is None else config
    adapters_per_batch = _check_adapters_per_batch(adapters_per_batch)
    if not isinstance(executor, str) and adapters_per_batch != 1:
        raise ValueError(
            f"adapters_per_batch={adapters_per_batch} applies to an executor given by name; pass it to the "
            "executor you built instead"
        )
    say = log or (lambda message: None)
    model = str(model_name_or_path)
    key, background_ids, background, background_key = resolve_config_key(
        store, model, train, eval_set, config, say
    )
    members = leaf_members(store, len(train))
    wanted = [int(g) for g in np.asarray(leaves, dtype=np.int64).ravel()]
    for g in wanted:
        if not 0 <= g < len(members):
            raise ValueError(f"leaves must be leaf ids in 0..{len(members) - 1}, got {g}")
    if len(set(wanted)) != len(wanted):
        raise ValueError("leaves lists a leaf more than once")
    done = set(store.measured_leaves(key).tolist())
    todo = [g for g in wanted if g not in done]
    skipped = [g for g in wanted if g in done]
    say(f"config {key}: {len(todo)} leaves to measure, {len(skipped)} already measured")
    run_config = {
        "measure_config": config.to_dict(),
        "config_key": key,
        "model": model,
        "eval_set": eval_set.path,
        "eval_fingerprint": eval_set.fingerprint(),
        "executor": executor if isinstance(executor, str) else type(executor).__name__,
        "devices": [str(device) for device in devices or []],
        "workers_per_device": workers_per_device,
        "adapters_per_batch": adapters_per_batch,
        "leaves": todo,
    }
    if config.uses_background:
        run_config["background"] = {
            "size": int(background_ids.size),
            "seed": config.background_seed,
            "fingerprint": background_key,
        }
    run_id = store.add_run("measure", run_config)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    measured: list[int] = []
    status = "failed"
    owned = isinstance(executor, str)
    engine: Executor | None = None
    try:
        engine = (
            make_executor(
                executor,  # type: ignore[arg-type]
                model,
                eval_set,
                config,
                devices=devices,
                workers_per_device=workers_per_device,
                address=address,
                gpus_per_worker=gpus_per_worker,
                adapters_per_batch=adapters_per_batch,
                background=background,
            )
            if owned
            else executor  # type: ignore[assignment]
        )
        assert engine is not None
        timings["start_s"] = time.perf_counter() - started
        base = engine.base()
        timings["base_s"] = time.perf_counter() - started - timings["start_s"]
        record_domains(store, eval_set, base)
        say(f"base model scored on {len(eval_set)} questions in {timings['base_s']:.1f}s")
        reference = base
        if config.uses_background and todo:
            tick = time.perf_counter()
            reference = engine.reference()
            timings["reference_s"] = time.perf_counter() - tick
            _record_reference(store, run_id, key, reference, base, eval_set)
            say(
                f"reference run ({config.protocol}: {background_ids.size} background examples, no leaf) in "
                f"{timings['reference_s']:.1f}s"
            )
        tasks = (
            LeafTask(
                g, train.examples(members[g][:max_examples_per_leaf] if max_examples_per_leaf else members[g])
            )
            for g in todo
        )
        for result in engine.run(tasks):
            phi, variance, n_eval = paired_effects(
                result.scores, reference, eval_set.domain, eval_set.n_domains
            )
            keep = n_eval > 0
            rows = {
                "leaf_id": np.full(int(keep.sum()), result.leaf_id),
                "domain_id": np.flatnonzero(keep),
                "phi": phi[keep],
                "variance": variance[keep],
                "n_eval": n_eval[keep],
                "run_id": [run_id] * int(keep.sum()),
                "config_key": [key] * int(keep.sum()),
            }
            record = {
                "run_id": f"{run_id}-leaf-{result.leaf_id}",
                "kind": "measure-leaf",
                "config": {
                    "leaf_id": result.leaf_id,
                    "config_key": key,
                    "parent_run": run_id,
                    "worker": result.worker,
                    "hardware": result.hardware,
                },
                "timings": result.timings,
            }
            store.add_measurements(rows, record=record)  # the leaf's values and its record, together
            measured.append(result.leaf_id)
            say(
                f"leaf {result.leaf_id} measured ({len(measured)}/{len(todo)}) in "
                f"{result.timings.get('train_s', 0.0) + result.timings.get('eval_s', 0.0):.1f}s; "
                f"mean phi {phi[keep].mean():+.4f}"
            )
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if owned and engine is not None:
            engine.close()
        timings["total_s"] = time.perf_counter() - started
        timings["leaves"] = float(len(measured))
        store.finish_run(run_id, status=status, timings=timings)
    return MeasureReport(run_id, key, measured, skipped, base, timings)


def resolve_config_key(
    store: Store,
    model_name_or_path: str | os.PathLike[str],
    train: TrainingPool,
    eval_set: EvalSet,
    config: MeasureConfig,
    say: Callable[[str], None] | None = None,
) -> tuple[str, np.ndarray, TrainExamples, str]:
    """The ``config_key`` measurements of ``config`` are stored under, the background's point ids, its examples
    and their fingerprint (:func:`background_fingerprint`, hashed into the key).

    A store measured before ``eval_batch_size`` left the key keeps its older key (see
    :meth:`MeasureConfig.config_key`), so the store holds one key per configuration.
    """
    model = str(model_name_or_path)
    background_ids = background_points(len(train), config)
    background = train.examples(background_ids)
    background_key = background_fingerprint(background)
    key = config.config_key(_model_id(model), eval_set.fingerprint(), background_key)
    legacy = config.legacy_config_key(_model_id(model), eval_set.fingerprint(), background_key)
    if legacy != key and store.measured_leaves(legacy).size and not store.measured_leaves(key).size:
        if say is not None:
            say(f"resuming under the older key {legacy} (made when eval_batch_size was part of config_key)")
        key = legacy
    return key, background_ids, background, background_key


def _record_reference(
    store: Store, run_id: str, key: str, reference: np.ndarray, base: np.ndarray, eval_set: EvalSet
) -> None:
    """A run record of the background-only reference: its mean score per domain, next to the base model's."""
    count = np.maximum(np.bincount(eval_set.domain, minlength=eval_set.n_domains), 1)
    means = np.bincount(eval_set.domain, weights=reference, minlength=eval_set.n_domains) / count
    base_means = np.bincount(eval_set.domain, weights=base, minlength=eval_set.n_domains) / count
    record = store.add_run(
        "measure-reference",
        {
            "config_key": key,
            "parent_run": run_id,
            "domains": eval_set.domain_names,
            "reference": [float(x) for x in means],
            "base": [float(x) for x in base_means],
        },
        run_id=f"{run_id}-reference",
    )
    store.finish_run(record, status="done")


# ----------------------------------------------------------------------------------------------------------------
# Representatives


def leaf_centroids(
    features: np.ndarray, point_leaf: np.ndarray, leaf_parent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean feature vector of each leaf and of each parent.

    Parameters
    ----------
    features : ndarray of shape (n_points, dim)
        ``X_feat``; row i belongs to the point with id i.
    point_leaf : ndarray of shape (n_points,)
        Leaf of each row.
    leaf_parent : ndarray of shape (n_leaves,)

    Returns
    -------
    leaf_centroids : ndarray of shape (n_leaves, dim)
    parent_centroids : ndarray of shape (n_parents, dim)
    """
    features = np.asarray(features, dtype=np.float64)
    point_leaf = np.asarray(point_leaf, dtype=np.int64)
    leaf_parent = np.asarray(leaf_parent, dtype=np.int64)
    if features.ndim != 2 or features.shape[0] != point_leaf.size:
        raise ValueError(f"features has shape {features.shape} but point_leaf has {point_leaf.size} points")
    n_leaves, n_parents = leaf_parent.size, int(leaf_parent.max()) + 1
    leaf_sum = np.zeros((n_leaves, features.shape[1]))
    np.add.at(leaf_sum, point_leaf, features)
    leaf_size = np.bincount(point_leaf, minlength=n_leaves).astype(np.float64)
    parent_sum = np.zeros((n_parents, features.shape[1]))
    np.add.at(parent_sum, leaf_parent, leaf_sum)
    parent_size = np.bincount(leaf_parent, weights=leaf_size, minlength=n_parents)
    return leaf_sum / np.maximum(leaf_size, 1)[:, None], parent_sum / np.maximum(parent_size, 1)[:, None]


def choose_representatives(
    leaf_parent: np.ndarray, leaf_centroids: np.ndarray, parent_centroids: np.ndarray, budget: int
) -> np.ndarray:
    """Leaves to measure, in the order to measure them.

    First, per parent, the leaf nearest the parent centroid (ties: the smaller leaf id); then more leaves in
    farthest-point order (each next leaf the one farthest from every leaf chosen so far; ties: the smaller id)
    until ``budget`` leaves. When ``budget`` is below the number of parents, the per-parent leaves themselves are
    taken in farthest-point order, starting from the one nearest the mean of all leaf centroids.

    Parameters
    ----------
    leaf_parent : ndarray of shape (n_leaves,)
    leaf_centroids : ndarray of shape (n_leaves, dim)
    parent_centroids : ndarray of shape (n_parents, dim)
    budget : int
        How many leaves to return at most (>= 0).

    Returns
    -------
    ndarray of int64, shape (min(budget, n_leaves),)
    """
    leaf_parent = np.asarray(leaf_parent, dtype=np.int64)
    leaves = np.asarray(leaf_centroids, dtype=np.float64)
    parents = np.asarray(parent_centroids, dtype=np.float64)
    if leaves.ndim != 2 or leaves.shape[0] != leaf_parent.size:
        raise ValueError(
            f"leaf_centroids has shape {leaves.shape} but leaf_parent has {leaf_parent.size} leaves"
        )
    if parents.ndim != 2 or parents.shape[1] != leaves.shape[1]:
        raise ValueError(
            f"parent_centroids has shape {parents.shape}, expected (n_parents, {leaves.shape[1]})"
        )
    if leaf_parent.size and (leaf_parent.min() < 0 or leaf_parent.max() >= parents.shape[0]):
        raise ValueError(f"leaf_parent must hold parent ids in 0..{parents.shape[0] - 1}")
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
        raise ValueError(f"budget must be an integer >= 0, got {budget!r}")
    n_leaves = leaf_parent.size
    budget = min(int(budget), n_leaves)
    distance_to_parent = np.linalg.norm(leaves - parents[leaf_parent], axis=1)
    order = np.lexsort((np.arange(n_leaves), distance_to_parent, leaf_parent))
    first_of_parent = np.ones(n_leaves, dtype=bool)
    first_of_parent[1:] = leaf_parent[order][1:] != leaf_parent[order][:-1]
    seeds = np.sort(order[first_of_parent])
    if budget <= seeds.size:
        start = int(seeds[np.argmin(np.linalg.norm(leaves[seeds] - leaves.mean(axis=0), axis=1))])
        return _farthest_points(leaves, seeds, [start], budget)
    return _farthest_points(leaves, np.arange(n_leaves), list(seeds), budget)


def _farthest_points(
    points: np.ndarray, candidates: np.ndarray, chosen: list[int], budget: int
) -> np.ndarray:
    """Extend ``chosen`` with ``candidates`` in farthest-point order until ``budget`` (ties: the smaller id)."""
    chosen = list(chosen[:budget])
    if not chosen or len(chosen) >= budget:
        return np.asarray(chosen, dtype=np.int64)
    candidates = np.sort(candidates)
    nearest = np.full(candidates.size, np.inf)
    for g in chosen:
        nearest = np.minimum(nearest, np.linalg.norm(points[candidates] - points[g], axis=1))
    taken = np.isin(candidates, chosen)
    while len(chosen) < budget:
        score = np.where(taken, -np.inf, nearest)
        k = int(np.argmax(score))  # first maximum: the smaller id
        chosen.append(int(candidates[k]))
        taken[k] = True
        nearest = np.minimum(nearest, np.linalg.norm(points[candidates] - points[candidates[k]], axis=1))
    return np.asarray(chosen, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# A random model, for tests and benchmarks


_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": None},
    # The shape of SmolLM2-135M (random weights): GPU timings without downloading anything.
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                     "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152},
}  # fmt: skip


def save_random_model(path: str | os.PathLike[str], *, preset: str = "tiny", seed: int = 0) -> Path:
    """Write a randomly initialised Llama model and a character-level tokenizer to ``path``.

    For tests and benchmarks: nothing is downloaded. ``preset`` is ``"tiny"`` (2 layers, hidden 32) or
    ``"smollm2-135m"`` (the shape of SmolLM2-135M).
    """
    _import_train()
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if preset not in _PRESETS:
        raise ValueError(f"preset must be one of {sorted(_PRESETS)}, got {preset!r}")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for character in [chr(code) for code in range(32, 127)] + ["\n"]:
        vocab[character] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    shape = dict(_PRESETS[preset])
    shape["vocab_size"] = shape["vocab_size"] or len(vocab)
    llama = LlamaConfig(
        **shape,
        max_position_embeddings=2048,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama)
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target
