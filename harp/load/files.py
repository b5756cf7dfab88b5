"""Reading the inputs of ``harp load`` and ``harp hierarchy`` from files: arrays, vectors, names, texts, ids.

Each reader takes an array or a file (``.npy``; names and base scores also ``.json`` or ``.txt``; texts ``.jsonl``
or ``.txt``) and names the file in its messages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    pass


PathLike = str | os.PathLike[str]


_TEXT_KEYS = ("text", "prompt", "instruction", "question")


def file_label(value: Any, name: str) -> str:
    return f"{name} ({value})" if isinstance(value, str | os.PathLike) else name


def load_npy(value: Any, name: str, *, mmap: bool = False) -> np.ndarray:
    if not isinstance(value, str | os.PathLike):
        return np.asarray(value)
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{name}: no file at {path}")
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{name}: {path} must be a .npy file (numpy.save)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name}: cannot read {path} as a .npy array: {error}") from None


def load_vector(value: Any, name: str) -> np.ndarray:
    """A 1-D array from an array, a .npy file, a JSON list or a text file of one number a line.

    Parameters
    ----------
    value : array-like or path
        The array itself, or a ``.npy``, ``.json`` (a list) or ``.txt`` (numbers separated by white space) file.
    name : str
        What the caller calls the input; every message starts with it.

    Returns
    -------
    ndarray
        The values as read (``.npy`` keeps its dtype and shape; ``.json`` and ``.txt`` give what
        :func:`numpy.asarray` makes of the list).

    Raises
    ------
    ValueError
        The file is missing or unreadable, or does not hold a list of numbers.
    """
    if isinstance(value, str | os.PathLike) and Path(value).suffix.lower() in (".json", ".txt"):
        path = Path(value)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"{name}: cannot read {path}: {error}") from None
        try:
            data = (
                json.loads(text) if path.suffix.lower() == ".json" else [float(line) for line in text.split()]
            )
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{name}: {path} does not hold a list of numbers: {error}") from None
        if isinstance(data, dict):
            raise ValueError(f"{name}: {path} must hold a JSON list, got an object")
        return np.asarray(data)
    return load_npy(value, name)


def read_names(value: PathLike | Sequence[str]) -> list[str]:
    """Domain names from a list, a JSON list or a text file with one name a line (blank lines skipped)."""
    if not isinstance(value, str | os.PathLike):
        return [str(name) for name in value]
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"domain_names: cannot read {path}: {error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"domain_names: {path} is not valid JSON: {error}") from None
        if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
            raise ValueError(f"domain_names: {path} must hold a JSON list of strings")
        return data
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class PointTexts:
    """What the store keeps of each point's example, indexed by point id: ``texts`` (the prompt, or the whole
    text), and where the input has them ``responses`` and ``sources`` (else None)."""

    texts: list[str | None]
    responses: list[str | None] | None = None
    sources: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _is_pool_file(path: Path) -> bool:
    """Whether a ``.jsonl`` or Parquet file holds training-pool records (a response or chat messages each)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return True
    if suffix != ".jsonl":
        return False
    try:
        with path.open(encoding="utf-8") as handle:
            first = next((line for line in handle if line.strip()), "")
        record = json.loads(first) if first else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # read_texts says what is wrong
    return isinstance(record, dict) and ("response" in record or "messages" in record)


def read_point_texts(value: PathLike | Sequence[str | None]) -> PointTexts:
    """The examples of the points for the store: a training pool file, or plain texts.

    A ``.jsonl`` file whose records carry a ``response`` (or chat ``messages``), or a Parquet file, is read as
    ``harp run`` reads its pool (:func:`harp.data.load_training_pool`): the prompt (a chat's earlier turns as
    ``role: content`` lines) into ``texts``, the response into ``responses`` and each record's ``source``, each
    text cut to the store's preview length. Anything else goes through :func:`read_texts` (texts only).
    """
    if isinstance(value, str | os.PathLike) and _is_pool_file(Path(value)):
        from harp.data import load_training_pool

        pool = load_training_pool(value)
        texts, responses = pool.store_texts()
        return PointTexts(texts, responses, list(pool.sources))
    return PointTexts(read_texts(value))


def read_texts(value: PathLike | Sequence[str | None]) -> list[str | None]:
    """Texts, one per point: a list, a ``.jsonl`` file (a string or an object with a ``text``, ``prompt``,
    ``instruction`` or ``question`` field each line) or a ``.txt`` file (one text a line)."""
    if not isinstance(value, str | os.PathLike):
        return [None if text is None else str(text) for text in value]
    path = Path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"texts: cannot read {path}: {error}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if path.suffix.lower() != ".jsonl":
        return [line.rstrip("\r") for line in lines]
    texts: list[str | None] = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"texts: line {number} of {path} is not valid JSON: {error}") from None
        if record is None or isinstance(record, str):
            texts.append(record)
            continue
        if isinstance(record, dict):
            key = next((key for key in _TEXT_KEYS if key in record), None)
            if key is not None:
                texts.append(None if record[key] is None else str(record[key]))
                continue
        raise ValueError(
            f"texts: line {number} of {path} must be a JSON string or an object with one of the fields "
            f"{', '.join(_TEXT_KEYS)}"
        )
    return texts


def id_array(value: Any, name: str, length: int | None = None, what: str = "entries") -> np.ndarray:
    array = load_npy(value, name)
    label = file_label(value, name)
    if array.ndim != 1:
        raise ValueError(f"{label} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{label} is empty")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{label} must hold integer ids, got dtype {array.dtype}")
    if length is not None and array.size != length:
        raise ValueError(f"{label} has {array.size} entries but there are {length} {what}")
    array = array.astype(np.int64)
    if array.min() < 0:
        raise ValueError(f"{label} holds {int(array.min())}; ids must be >= 0")
    used = np.bincount(array)
    if (used == 0).any():
        raise ValueError(
            f"{label} never uses id {int(np.argmin(used))}: ids must be contiguous 0..{array.max()} with none empty"
        )
    return array
