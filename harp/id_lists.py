"""Lists of ids as people write them: ``"3,8,12"`` on a command line, or a file of ids.

The one reader of such lists (``harp infer --hold-out``, ``harp measure --leaves``, ...). Every message starts
with ``name``, the option or argument the list came from, so a caller can show it as it is.

- :func:`split_ids` parses ids separated by commas (or other separators) from text.
- :func:`read_id_file` reads ids from a ``.json`` list, a ``.txt`` file of numbers or a ``.npy`` array.
- :func:`leaf_id_list` takes either: a value naming an id file is read, anything else is parsed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harp.load.files import load_vector

__all__ = ["ID_FILE_SUFFIXES", "leaf_id_list", "read_id_file", "split_ids"]

# A value ending in one of these is the name of a file of ids, not a list of ids.
ID_FILE_SUFFIXES = (".json", ".txt", ".npy")


def split_ids(text: str, name: str, *, separators: str = ",") -> np.ndarray:
    """Integer ids separated by any of ``separators`` in ``text``; empty parts are skipped.

    Parameters
    ----------
    text : str
        For example ``"3,8,12"`` (white space around an id is allowed).
    name : str
        The option the text came from, for the message.
    separators : str, default ","
        Each character separates two ids (``", "`` takes spaces too).

    Returns
    -------
    ndarray of int64, shape (n_ids,)
        In the order given, duplicates kept.

    Raises
    ------
    ValueError
        A part is not an integer: ``{name}: expected comma-separated leaf ids or a file of ids, got ...``.
    """
    joined = text
    for separator in separators[1:]:
        joined = joined.replace(separator, separators[0])
    try:
        return np.asarray([int(part) for part in joined.split(separators[0]) if part.strip()], dtype=np.int64)
    except ValueError:
        raise ValueError(
            f"{name}: expected comma-separated leaf ids or a file of ids, got {text!r}"
        ) from None


def read_id_file(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """Integer ids from a ``.json`` list, a ``.txt`` file of numbers or a ``.npy`` array.

    Parameters
    ----------
    path : path
        The file.
    name : str
        The option the path came from, for the message.

    Returns
    -------
    ndarray of int64
        The ids in the file's order.

    Raises
    ------
    ValueError
        The file cannot be read as a list of numbers (see :func:`harp.load.load_vector`), or a number is not
        an integer: ``{name}: leaf ids must be integers``.
    """
    return _integers(load_vector(path, name), name)


def leaf_id_list(value: str, name: str) -> np.ndarray:
    """Leaf ids from ``"3,8,12"`` or from a .json/.txt/.npy file of ids; a ValueError names ``name``.

    Parameters
    ----------
    value : str
        A file name ending in one of :data:`ID_FILE_SUFFIXES`, or comma-separated ids.
    name : str
        The option the value came from, for the message.

    Returns
    -------
    ndarray of int64
        The ids, in order, duplicates kept; empty for an empty list.
    """
    if Path(value).suffix.lower() in ID_FILE_SUFFIXES:
        return read_id_file(value, name)
    return split_ids(value, name)


def _integers(ids: np.ndarray, name: str) -> np.ndarray:
    if ids.size and not np.array_equal(ids, np.round(ids)):
        raise ValueError(f"{name}: leaf ids must be integers")
    return ids.astype(np.int64)
