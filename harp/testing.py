"""Test and benchmark support: a randomly initialised model written to a folder, so nothing is downloaded.

Not part of the measuring library: the test suite (``tests/conftest.py``, ``tests/tiny_models.py``) and the
benchmarks (``benchmarks/bench_measure.py --preset``, ``benchmarks/profile_measure.py --preset``) build their
models with :func:`save_random_model`. It needs the ``[train]`` extra (torch, transformers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harp.measure.model import require_train

__all__ = ["save_random_model"]

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
    require_train()
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
