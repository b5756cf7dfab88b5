"""Leaf effects summarised over regions of the tree: its large nodes and parents.

A region is a node above the leaves. Its effect on a domain is the points-weighted mean of its leaves' posterior
means, that is the mean effect per example drawn from the region, and its standard deviation is that of the
weighted mean with the leaves' posteriors taken as independent. The measured share is the share of the region's
points that lie in measured leaves. Everything here is pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RegionEffects", "leaves_of", "rank_regions", "region_effects"]


@dataclass(frozen=True)
class RegionEffects:
    """Per-region summaries, one row per region that holds at least one leaf, in ascending region id.

    Attributes
    ----------
    region : ndarray of int, shape (R,)
        The region ids.
    n_leaves, points : ndarray of int, shape (R,)
        How many leaves and points each region holds.
    mean, sd : ndarray of float, shape (R,) or (R, D)
        The points-weighted mean of the leaves' effects and its standard deviation (independent leaves), with the
        trailing shape of the ``effect`` given; NaN for a region whose leaves hold no points.
    measured_share : ndarray of float, shape (R,) or (R, D)
        The share of the region's points in measured leaves (NaN as above); None when ``measured`` was not given.
    """

    region: np.ndarray
    n_leaves: np.ndarray
    points: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    measured_share: np.ndarray | None


def region_effects(
    effect: np.ndarray,
    sd: np.ndarray,
    region_of_leaf: np.ndarray,
    leaf_size: np.ndarray,
    measured: np.ndarray | None = None,
) -> RegionEffects:
    """Summarise leaf effects per region.

    Parameters
    ----------
    effect, sd : ndarray of shape (L,) or (L, D)
        Posterior mean and standard deviation of each leaf's effect (on one quantity, or on D domains).
    region_of_leaf : ndarray of int, shape (L,)
        The region (large node or parent id, >= 0) of each leaf.
    leaf_size : ndarray of int, shape (L,)
        Points per leaf (>= 0).
    measured : bool ndarray of shape (L,) or (L, D), optional
        Whether each leaf was measured (on each domain).

    Returns
    -------
    RegionEffects

    Raises
    ------
    ValueError
        On mismatched shapes, a negative region id or size, or a negative sd.

    Examples
    --------
    >>> out = region_effects(np.array([1.0, 3.0, -2.0]), np.array([0.1, 0.1, 0.2]), np.array([0, 0, 1]),
    ...                      np.array([1, 3, 5]))
    >>> out.mean.tolist(), out.points.tolist()
    ([2.5, -2.0], [4, 5])
    """
    effect = np.asarray(effect, dtype=np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    groups = np.asarray(region_of_leaf)
    sizes = np.asarray(leaf_size)
    if effect.ndim not in (1, 2):
        raise ValueError(f"effect must have shape (L,) or (L, D), got {effect.shape}")
    if sd.shape != effect.shape:
        raise ValueError(f"sd has shape {sd.shape} but effect has {effect.shape}")
    n = effect.shape[0]
    if groups.shape != (n,) or sizes.shape != (n,):
        raise ValueError(
            f"region_of_leaf and leaf_size must have shape ({n},), got {groups.shape} and {sizes.shape}"
        )
    if not np.issubdtype(groups.dtype, np.integer) and n:
        raise ValueError("region_of_leaf must hold integers")
    if n and (groups.min() < 0 or sizes.min() < 0):
        raise ValueError("region ids and leaf sizes must be >= 0")
    if np.any(sd < 0):
        raise ValueError("sd must be >= 0")
    groups = groups.astype(np.int64)
    sizes = sizes.astype(np.float64)
    regions, index = np.unique(groups, return_inverse=True)
    r = regions.size
    trailing = effect.shape[1:]
    weights = sizes.reshape((n,) + (1,) * len(trailing))

    def total(values: np.ndarray) -> np.ndarray:
        out = np.zeros((r,) + values.shape[1:], dtype=np.float64)
        np.add.at(out, index, values)
        return out

    points = total(sizes)
    denominator = points.reshape((r,) + (1,) * len(trailing))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total(weights * effect) / denominator
        spread = np.sqrt(total((weights * sd) ** 2)) / denominator
        share = None
        if measured is not None:
            flags = np.asarray(measured, dtype=bool)
            if flags.shape[0] != n or flags.ndim not in (1, 2):
                raise ValueError(f"measured must have shape (L,) or (L, D) with L = {n}, got {flags.shape}")
            share = total(sizes.reshape((n,) + (1,) * (flags.ndim - 1)) * flags) / points.reshape(
                (r,) + (1,) * (flags.ndim - 1)
            )
    empty = points == 0
    mean[empty] = np.nan
    spread[empty] = np.nan
    if share is not None:
        share[empty] = np.nan
    return RegionEffects(
        region=regions,
        n_leaves=np.bincount(index, minlength=r).astype(np.int64),
        points=points.astype(np.int64),
        mean=mean,
        sd=spread,
        measured_share=share,
    )


def rank_regions(mean: np.ndarray, *, harmful: bool, k: int | None = None) -> np.ndarray:
    """Positions of the regions from most harmful (lowest mean) or most helpful (highest) on.

    Ties keep the given order (ascending region id for :func:`region_effects`); NaN means come last and only
    a region whose mean is below 0 (harmful) or above 0 (helpful) is listed.

    Parameters
    ----------
    mean : ndarray of float, shape (R,)
    harmful : bool
    k : int, optional
        At most this many positions.

    Returns
    -------
    ndarray of int
    """
    values = np.asarray(mean, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"mean must have shape (R,), got {values.shape}")
    key = values if harmful else -values
    order = np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable")
    order = order[key[order] < 0]
    return order if k is None else order[: max(int(k), 0)]


def leaves_of(region_of_leaf: np.ndarray, region: int) -> np.ndarray:
    """The ids of the leaves in one region, ascending.

    Parameters
    ----------
    region_of_leaf : ndarray of int, shape (L,)
    region : int

    Returns
    -------
    ndarray of int
    """
    return np.flatnonzero(np.asarray(region_of_leaf) == int(region)).astype(np.int64)
