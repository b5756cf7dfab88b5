"""Input checks of the store's writes: each converts one argument and names it in its message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from harp._validation import check_finite

__all__ = [
    "boolean_array",
    "every_id_used",
    "finished_record",
    "float_array",
    "ids_in_range",
    "integer_array",
    "json_list",
    "json_mapping",
    "nonempty_string",
    "string_array",
    "table_column",
]


def integer_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a 1-D int64 array (an empty input gives an empty array).

    Parameters
    ----------
    value : array-like of int
    name : str
        The argument's name, for the message.

    Raises
    ------
    ValueError
        When ``value`` is not 1-D or does not hold integers.
    """
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def ids_in_range(array: np.ndarray, name: str, upper: int, what: str) -> None:
    """Refuse an id outside ``0..upper-1``; the message counts ``upper`` ``what`` (for example "4 leaves")."""
    if array.size and (array.min() < 0 or array.max() >= upper):
        bad = int(array[(array < 0) | (array >= upper)][0])
        raise ValueError(f"{name} holds {bad}, outside 0..{upper - 1} ({upper} {what})")


def every_id_used(array: np.ndarray, name: str, upper: int, what: str) -> None:
    """Refuse ids ``0..upper-1`` that leave one unused: ids are contiguous and no group is empty.

    Parameters
    ----------
    array : ndarray of shape (n,), int
        Ids already checked to lie in ``0..upper-1`` (:func:`ids_in_range`).
    name : str
        The argument's name, for the message.
    upper : int
        The number of groups.
    what : str
        What one group is called in the message ("parent", "leaf").
    """
    counts = np.bincount(array, minlength=upper)
    if (counts == 0).any():
        raise ValueError(
            f"{name}: {what} {int(np.argmin(counts))} has none (ids must be contiguous, none empty)"
        )


def float_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a finite float64 array of exactly ``shape``; a ValueError naming ``name`` otherwise."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must hold numbers: {error}") from None
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    check_finite(array, name)
    return array


def boolean_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (booleans, or integers 0 and 1) as a bool array broadcast to ``shape`` (a read-only view when
    broadcast); a ValueError naming ``name`` otherwise."""
    array = np.asarray(value)
    if array.dtype != np.bool_:
        if array.size and not (np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all()):
            raise ValueError(f"{name} must hold booleans, got dtype {array.dtype}")
        array = array.astype(bool)
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}") from None


def string_array(value: Any, name: str, length: int) -> pa.Array:
    """``value`` (strings or None) as a pyarrow string array of ``length`` entries.

    Parameters
    ----------
    value : sequence of str or None, pyarrow Array or ChunkedArray
    name : str
        The argument's name, for the message.
    length : int
        The number of entries expected.

    Raises
    ------
    ValueError
        When ``value`` holds something other than strings or None, or has another length.
    """
    try:
        if isinstance(value, pa.ChunkedArray):
            array = value.combine_chunks()
        elif isinstance(value, pa.Array):
            array = value
        else:
            array = pa.array(value, from_pandas=True)
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise ValueError(f"{name} must hold strings (or None), got {array.type}")
        array = array.cast(pa.string())
    except (pa.ArrowException, TypeError) as error:
        raise ValueError(f"{name} must hold strings (or None): {error}") from None
    if len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries, expected {length}")
    return array


def table_column(table_like: Any, column: str, name: str, *, required: bool) -> Any:
    """Column ``column`` of a pyarrow Table, pandas DataFrame or mapping; None when absent and not ``required``.

    Raises
    ------
    ValueError
        When a ``required`` column is absent.
    """
    try:
        return table_like[column]
    except (KeyError, IndexError, TypeError):
        if required:
            raise ValueError(f"{name} must have a {column!r} column") from None
        return None


def json_list(values: Any, name: str, kind: type) -> str:
    """``values`` flattened and converted by ``kind`` (``int`` or ``float``), as a JSON list (None gives ``[]``)."""
    if values is None:
        return "[]"
    try:
        return json.dumps([kind(v) for v in np.asarray(values).ravel().tolist()])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of {kind.__name__}: {error}") from None


def nonempty_string(value: Any, name: str) -> str:
    """``value`` itself when it is a non-empty string; a ValueError naming ``name`` otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def json_mapping(value: Mapping[str, Any] | None, name: str) -> str | None:
    """A run's config or timings as sorted JSON (None stays None)."""
    if value is None:
        return None
    try:
        return json.dumps(dict(value), sort_keys=True, default=str)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a JSON-serialisable mapping: {error}") from None


def finished_record(record: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    """(run_id, kind, config JSON, timings JSON) of a finished run record given to ``add_measurements``."""
    run_id = nonempty_string(record.get("run_id"), "record['run_id']")
    kind = nonempty_string(record.get("kind"), "record['kind']")
    config = json_mapping(record.get("config") or {}, "record['config']") or "{}"
    return run_id, kind, config, json_mapping(record.get("timings"), "record['timings']")
