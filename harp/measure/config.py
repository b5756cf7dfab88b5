"""What a measurement is: :class:`MeasureConfig` (every field that decides it, with help text) and its key.

A measurement is keyed by ``config_key``: a hash of the config (``eval_batch_size`` excepted, see
:meth:`MeasureConfig.config_key`), the model's identity (:func:`model_id`), the eval set's fingerprint, the
background's fingerprint (background protocols only) and :data:`MEASURE_VERSION`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harp._validation import check_integer

__all__ = [
    "MEASURE_VERSION",
    "PROTOCOLS",
    "REFERENCE_SEED",
    "Device",
    "ExecutorName",
    "MeasureConfig",
    "model_id",
]

#: Bump when a change in this package changes what a measurement means; it is part of every ``config_key``.
MEASURE_VERSION = 1

#: The measurement protocols (:attr:`MeasureConfig.protocol`); docs/measure.md says what each estimates.
PROTOCOLS = ("base-anchored", "continuation", "in-mixture", "in-mixture-rows")

#: A device as the executors take it: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a GPU index.
Device = str | int
#: The executors :func:`harp.measure.executors.make_executor` builds by name.
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
        # Counts are stored as Python ints: a numpy integer would not survive to_json (nor config_key).
        for name in positive:
            object.__setattr__(self, name, check_integer(getattr(self, name), name, minimum=1))
        object.__setattr__(self, "warmup_steps", check_integer(self.warmup_steps, "warmup_steps", minimum=0))
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
            object.__setattr__(self, name, check_integer(getattr(self, name), name))
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


def model_id(model_name_or_path: str | os.PathLike[str]) -> str:
    """The model's identity for ``config_key``: a hub-style name, or a local directory's name and config hash."""
    path = Path(model_name_or_path)
    config = path / "config.json"
    if config.is_file():
        digest = hashlib.sha256(config.read_bytes()).hexdigest()[:12]
        return f"{path.name}@{digest}"
    return str(model_name_or_path)
