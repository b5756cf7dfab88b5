"""Checks at the door of :mod:`harp.hierarchy`: the features and the counts a caller passes in."""

from __future__ import annotations

from typing import Any

import numpy as np

from harp._validation import is_integer
from harp.hierarchy.arrays import CHUNK_ROWS

BACKENDS = ("auto", "faiss", "torch", "sklearn")


def check_features(X_feat: Any, *, finite: bool = True) -> np.ndarray:
    """``X_feat`` as a C-contiguous float32 array, after checking it is 2-D, non-empty, numeric and finite.

    Parameters
    ----------
    X_feat : array-like of shape (n_points, n_features)
    finite : bool, default True
        Also check that every entry is finite (a caller that checks on its device passes False).

    Returns
    -------
    ndarray of shape (n_points, n_features), float32
        No copy when ``X_feat`` already is one (a memory-mapped file is read block by block, not copied).

    Raises
    ------
    ValueError
        Naming the first problem found (shape, dtype, or the first non-finite entry).
    """
    try:
        X = np.asarray(X_feat)
    except (TypeError, ValueError) as error:
        raise ValueError(f"X_feat must be a 2-D array of numbers: {error}") from None
    if X.ndim != 2:
        raise ValueError(f"X_feat must be 2-D (points x features), got shape {X.shape}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X_feat must have at least one point and one feature, got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)) or X.dtype == bool:
        raise ValueError(f"X_feat must hold numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not finite:
        return X
    for start in range(0, X.shape[0], CHUNK_ROWS):
        block = X[start : start + CHUNK_ROWS]
        bad = ~np.isfinite(block)
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"X_feat must be finite, found {block[row, column]} at row {start + row}, column {column}"
            )
    return X


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int``; a ValueError naming ``name`` unless it is an integer ``>= minimum``."""
    if not is_integer(value):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_backend(backend: Any) -> None:
    """A ValueError unless ``backend`` is one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of 'auto', 'faiss', 'torch', 'sklearn', got {backend!r}")
