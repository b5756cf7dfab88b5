"""The result of Stage 1a: :class:`Hierarchy`, the nested three-level tree, and :class:`HierarchyWarning`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Bumped whenever the same inputs would give a different tree (v2: the torch backend fits a level's nodes together).
HIERARCHY_VERSION = "harp-hierarchy-v2"


class HierarchyWarning(UserWarning):
    """The tree is valid but degenerate: a leaf outside the size band, or groups k-means could not split."""


@dataclass(frozen=True)
class Hierarchy:
    """A nested three-level tree over N points.

    Attributes
    ----------
    point_leaf : ndarray of shape (n_points,), int64
        Leaf g of each point.
    leaf_parent : ndarray of shape (n_leaves,), int64
        Parent p of each leaf; leaves of one parent have consecutive ids.
    parent_large : ndarray of shape (n_parents,), int64
        Large node k of each parent; parents of one large node have consecutive ids.
    members : list of ndarray of int64
        ``members[g]`` holds the points of leaf g, most central first.
    rank_in_leaf : ndarray of shape (n_points,), int64
        Position of each point in its leaf's ``members`` (0 = most central).
    leaf_centroids : ndarray of shape (n_leaves, n_features), float32
        Mean feature vector of each leaf.
    parent_centroids : ndarray of shape (n_parents, n_features), float32
    large_centroids : ndarray of shape (n_large, n_features), float32
    config : dict
        Version, parameters and the backend that produced the tree (JSON-serialisable).
    timings : dict
        Seconds spent per stage.
    """

    point_leaf: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    members: list[np.ndarray]
    rank_in_leaf: np.ndarray
    leaf_centroids: np.ndarray
    parent_centroids: np.ndarray
    large_centroids: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return int(self.point_leaf.size)

    @property
    def n_leaves(self) -> int:
        return int(self.leaf_parent.size)

    @property
    def n_parents(self) -> int:
        return int(self.parent_large.size)

    @property
    def n_large(self) -> int:
        return int(self.large_centroids.shape[0])

    @property
    def leaf_size(self) -> np.ndarray:
        """Number of points of each leaf, shape (n_leaves,)."""
        return np.bincount(self.point_leaf, minlength=self.n_leaves)


@dataclass
class Levels:
    """The levels and the in-leaf order, as either way of building them hands them to the final assembly.

    Attributes
    ----------
    point_leaf : ndarray of shape (n_points,), int64
    leaf_parent : ndarray of shape (n_leaves,), int64
    parent_large : ndarray of shape (n_parents,), int64
    n_large : int
    leaf_sizes : ndarray of shape (n_leaves,), int64
    leaf_means : ndarray of shape (n_leaves, n_features), float64
    order : ndarray of shape (n_points,), int64
        Point ids leaf after leaf, each leaf's most central first (ties by point id).
    rank_in_leaf : ndarray of shape (n_points,), int64
    """

    point_leaf: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    n_large: int
    leaf_sizes: np.ndarray
    leaf_means: np.ndarray
    order: np.ndarray
    rank_in_leaf: np.ndarray
