"""The points of every leaf as one array: point ids in (leaf, rank) order and each leaf's offset into it.

``Store.selection_inputs`` reads the members this way (8 bytes a point, no Python object per leaf), and
:func:`harp.select` takes them as they are: checking them is one pass over the array instead of one per leaf.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

__all__ = ["LeafMembers"]


class LeafMembers(Sequence[np.ndarray]):
    """A sequence of n_leaves int64 arrays, leaf g's being ``point_ids[offsets[g]:offsets[g + 1]]`` (a view).

    Parameters
    ----------
    point_ids : ndarray of shape (n_points,), int64
        The point ids of every leaf, leaf by leaf.
    offsets : ndarray of shape (n_leaves + 1,), int64
        Non-decreasing, from 0 to n_points.

    Raises
    ------
    ValueError
        When the offsets do not cut ``point_ids`` into leaves (naming which rule they break).
    """

    __slots__ = ("checked_distinct", "offsets", "point_ids")

    def __init__(self, point_ids: np.ndarray, offsets: np.ndarray) -> None:
        point_ids = np.asarray(point_ids)
        offsets = np.asarray(offsets)
        if point_ids.ndim != 1 or point_ids.dtype != np.int64:
            raise ValueError(f"point_ids must be a 1-D int64 array, got {point_ids.dtype} {point_ids.shape}")
        if offsets.ndim != 1 or offsets.dtype != np.int64 or offsets.size == 0:
            raise ValueError(
                f"offsets must be a non-empty 1-D int64 array, got {offsets.dtype} {offsets.shape}"
            )
        if offsets[0] != 0 or offsets[-1] != point_ids.size or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"offsets must rise from 0 to the {point_ids.size} point ids, got {offsets[0]}..{offsets[-1]}"
                + (" (decreasing somewhere)" if np.any(np.diff(offsets) < 0) else "")
            )
        self.point_ids = point_ids
        self.offsets = offsets
        # Set by harp._validation.check_members once no point is in two leaves; the point ids are then made
        # read-only, so a selection rerun on other weights (the app's weight edits) need not check them again.
        self.checked_distinct = False

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[g] for g in range(*index.indices(len(self)))]
        g = int(index)
        if g < 0:
            g += len(self)
        if not 0 <= g < len(self):
            raise IndexError(f"leaf {index} is outside 0..{len(self) - 1}")
        return self.point_ids[self.offsets[g] : self.offsets[g + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        if len(self) == 0:
            return iter(())
        return iter(np.split(self.point_ids, self.offsets[1:-1]))

    def __repr__(self) -> str:
        return f"LeafMembers({len(self)} leaves, {self.point_ids.size} points)"
