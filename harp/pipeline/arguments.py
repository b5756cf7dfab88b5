"""The original HARP release's arguments, checked and turned into this library's inputs.

Train and eval examples, eval indices, the metric, LoRA settings, representatives and base-score files, the
checkpoint folder: each read and checked here, with messages naming the argument (see :func:`harp.harp`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_base
from harp.original import (
    BaseScores,
    is_base_scores_path,
    read_base_scores,
)

if TYPE_CHECKING:
    from harp.data import EvalSet, TrainingPool
    from harp.measure import MeasureConfig


PathLike = str | os.PathLike[str]


STORE_NAME = "harp.duckdb"


# The eval kinds each metric fits (None: any). "accuracy" on tokenised examples is the original release's:
# every label token the greedy prediction under teacher forcing (harp.measure.token_eval).
_METRICS: dict[str, tuple[str, ...] | None] = {
    "auto": None,
    "accuracy": ("choice", "tokens"),
    "multiple_choice": ("choice",),
    "exact_match": ("generate",),
}


# Names the original release used for LoRA settings, mapped to MeasureConfig fields.
_LORA_ALIASES = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout"}


def training_pool_argument(value: Any, tokenizer: Any) -> TrainingPool:
    from harp.data import TrainingPool, load_training_pool, training_pool_from_records
    from harp.original import is_collection, records

    if isinstance(value, TrainingPool):
        return value
    if isinstance(value, str | os.PathLike):
        return load_training_pool(value, tokenizer=tokenizer)
    if is_collection(value):
        if not len(value):
            raise ValueError("train_examples is empty")
        return training_pool_from_records(records(value, "train_examples"), tokenizer=tokenizer)
    raise ValueError(
        "train_examples must be a TrainingPool, a .jsonl/.parquet path, or a list (or dataset) of records "
        f"(prompt/response, messages, or tokenised input_ids/labels), got {type(value).__name__}"
    )


def eval_set_argument(value: Any, tokenizer: Any) -> EvalSet:
    from harp.data import EvalSet, eval_set_from_records, read_records
    from harp.original import is_collection, records

    if isinstance(value, EvalSet):
        return value
    if isinstance(value, str | os.PathLike):
        return eval_set_from_records(
            read_records(value), path=str(value), tokenizer=tokenizer, require_domain=False
        )
    if is_collection(value):
        if not len(value):
            raise ValueError("eval_examples is empty")
        return eval_set_from_records(
            records(value, "eval_examples"), path="eval_examples", tokenizer=tokenizer, require_domain=False
        )
    raise ValueError(
        "eval_examples must be an EvalSet, a .jsonl/.parquet path, or a list (or dataset) of records, "
        f"got {type(value).__name__}"
    )


def read_ids(path: PathLike, name: str) -> np.ndarray:
    file = Path(path)
    try:
        if file.suffix == ".npy":
            values = np.load(file, allow_pickle=False)
        elif file.suffix == ".json":
            values = np.asarray(json.loads(file.read_text(encoding="utf-8")))
        else:
            values = np.asarray(file.read_text(encoding="utf-8").replace(",", " ").split(), dtype=np.int64)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name}: cannot read integer ids from {file} ({error})") from None
    return id_array(values, f"{name} ({file})")


def id_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D list of integers, got shape {array.shape} of {array.dtype}")
    return array.astype(np.int64)


def proxy_indices(eval_set: EvalSet, indices: np.ndarray, name: str) -> np.ndarray:
    n = len(eval_set)
    bad = indices[(indices < 0) | (indices >= n)]
    if bad.size:
        raise ValueError(f"{name} must be question indices in 0..{n - 1}, got {int(bad[0])}")
    if np.unique(indices).size != indices.size:
        raise ValueError(f"{name} lists a question more than once")
    if indices.size == 0:
        raise ValueError(f"{name} is empty")
    return indices


def check_metric(eval_metric: str | None, eval_set: EvalSet) -> None:
    key = "auto" if eval_metric is None else str(eval_metric).strip().lower()
    if key not in _METRICS:
        raise ValueError(
            f"eval_metric must be one of {sorted(_METRICS)} (the score follows the eval records: multiple "
            f"choice by option log-likelihood, short answers by exact match), got {eval_metric!r}"
        )
    fits = _METRICS[key]
    if fits is not None:
        other = sorted({kind for kind in eval_set.kinds if kind not in fits})
        if other:
            names = {"choice": "multiple-choice", "generate": "short-answer", "tokens": "tokenised"}
            raise ValueError(
                f"eval_metric {eval_metric!r} does not fit the eval set: it holds {names[other[0]]} questions"
            )


def measure_config(lora_config: Any) -> MeasureConfig:
    from harp.measure import MeasureConfig

    if lora_config is None:
        return MeasureConfig()
    if isinstance(lora_config, MeasureConfig):
        return lora_config
    if isinstance(lora_config, Mapping):
        values = {_LORA_ALIASES.get(str(key), str(key)): value for key, value in lora_config.items()}
        return MeasureConfig.from_dict(values)
    # A peft LoraConfig (or anything with its attribute names).
    values = {}
    for attribute, name in (("r", "lora_r"), ("lora_alpha", "lora_alpha"), ("lora_dropout", "lora_dropout")):
        if getattr(lora_config, attribute, None) is not None:
            values[name] = getattr(lora_config, attribute)
    modules = getattr(lora_config, "target_modules", None)
    if modules:
        values["target_modules"] = tuple(sorted(modules)) if isinstance(modules, set) else tuple(modules)
    if not values:
        raise ValueError(
            "lora_config must be a MeasureConfig, a dict of its fields, or a peft LoraConfig, "
            f"got {type(lora_config).__name__}"
        )
    return MeasureConfig.from_dict(values)


def representatives_paths(
    representatives_path: PathLike | None, representative_leaves_path: PathLike | None
) -> tuple[Path | None, Path | None]:
    """(base-score JSONL, leaf-id list): a ``representatives_path`` not ending in ``.jsonl`` is the older
    leaf-id list."""
    if representatives_path is None or is_base_scores_path(representatives_path):
        scores = None if representatives_path is None else Path(representatives_path)
        leaves = None if representative_leaves_path is None else Path(representative_leaves_path)
        return scores, leaves
    if representative_leaves_path is not None:
        raise ValueError(
            f"representatives_path ({representatives_path}) is not a .jsonl file of base scores, and "
            "representative_leaves_path is given too: give the leaf ids once"
        )
    warnings.warn(
        f"representatives_path ({representatives_path}) does not end in .jsonl, so it is read as leaf ids to "
        "measure; pass it as representative_leaves_path (representatives_path is the base-score JSONL of the "
        "original HARP release)",
        DeprecationWarning,
        stacklevel=3,
    )
    return None, Path(representatives_path)


def proxy_eval(
    full: EvalSet, proxy: np.ndarray, scores_path: Path | None
) -> tuple[EvalSet, BaseScores | None]:
    """The proxy eval set with its domains, and the base-score file's contents when it exists."""
    subset = proxy.size != len(full) or bool((proxy != np.arange(len(full))).any())
    label = f"{full.path}[{proxy.size} of {len(full)} questions]" if subset else full.path
    if scores_path is not None and scores_path.is_file():
        scores = read_base_scores(scores_path, full, proxy)
        return full.take(proxy, label).with_domains(scores.subjects), scores
    for q in proxy.tolist():
        if not full.domain_names[int(full.domain[q])]:
            raise ValueError(
                f"eval_examples[{q}] has no 'domain' (or 'subject'): give every eval example one, or a "
                "representatives_path JSONL that gives each question's subject"
            )
    return full.take(proxy, label), None


def check_v0(v0: Any, domain_names: list[str]) -> np.ndarray | None:
    if v0 is None:
        return None
    if isinstance(v0, Mapping):
        missing = [name for name in domain_names if name not in v0]
        if missing:
            raise ValueError(f"v0 has no score for the domains {missing[:5]}")
        v0 = [v0[name] for name in domain_names]
    elif np.ndim(v0) == 0:
        raise ValueError(
            f"v0 must give one base score per domain ({len(domain_names)}: a list in sorted name order or "
            f"{{name: score}}), got the single number {v0!r}"
        )
    return check_base(v0, len(domain_names))


def store_path(checkpoint_dir: PathLike) -> Path:
    path = Path(checkpoint_dir)
    if path.suffix == ".duckdb":
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    path.mkdir(parents=True, exist_ok=True)
    return path / STORE_NAME
