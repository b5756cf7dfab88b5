"""Tiny random models for tests, built from configs (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest


def save_tiny_encoder(folder: Path) -> Path:
    """A tiny random sentence-transformers model (1-layer BERT, mean pooling) saved under ``folder / "encoder"``."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from harp.testing import save_random_model

    llama = save_random_model(folder / "llama")
    bert_dir = folder / "bert"
    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, pad_token_id=0)  # fmt: skip
    BertModel(config).save_pretrained(bert_dir)
    AutoTokenizer.from_pretrained(llama).save_pretrained(bert_dir)
    word = models.Transformer(str(bert_dir))
    encoder = folder / "encoder"
    SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean")]).save(
        str(encoder)
    )
    return encoder
