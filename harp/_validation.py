"""Input checks shared by the public functions.

Each helper takes the argument's public name so that a message says which argument is wrong and why, for example
``budget must be >= 0, got -3``. Public functions validate once, here, and then call private cores that assume
valid input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np

Envelope = Literal["C", "E"]

_ENVELOPES = {"c": "C", "harp-c": "C", "e": "E", "harp-e": "E"}


def is_integer(value: Any) -> TypeGuard[int | np.integer]:
    """True for a Python or numpy integer; False for a bool (``True`` is not a count), a float or anything else."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def is_number(value: Any) -> TypeGuard[int | float | np.integer | np.floating]:
    """True for a Python or numpy integer or float; False for a bool or anything else."""
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def check_integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an ``int``; a ValueError naming ``name`` unless it is an integer (and ``>= minimum``)."""
    if not is_integer(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def check_envelope(envelope: Any) -> Envelope:
    """Return ``"C"`` or ``"E"`` for any accepted spelling of an envelope."""
    if isinstance(envelope, str) and envelope.strip().lower() in _ENVELOPES:
        return _ENVELOPES[envelope.strip().lower()]  # type: ignore[return-value]
    raise ValueError(f"envelope must be one of 'C', 'E', 'harp-c', 'harp-e' (any case), got {envelope!r}")


def check_matrix(value: Any, name: str) -> np.ndarray:
    """A finite 2-D float64 array, C-contiguous."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a 2-D array of numbers: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (leaves x domains), got shape {array.shape}")
    check_finite(array, name)
    return np.ascontiguousarray(array)


def check_vector(value: Any, name: str, length: int, *, what: str = "domains") -> np.ndarray:
    """A finite 1-D float64 array of the given length."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a 1-D array of numbers: {error}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.shape[0] != length:
        raise ValueError(f"{name} has {array.shape[0]} entries but there are {length} {what}")
    check_finite(array, name)
    return np.ascontiguousarray(array)


def check_finite(array: np.ndarray, name: str) -> None:
    """Raise naming the argument and the first non-finite value's index."""
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite, found {array[where]} at index {where}")


def check_base(value: Any, n_domains: int) -> np.ndarray:
    base = check_vector(value, "base", n_domains)
    check_base_range(base)
    return base


def check_base_range(
    base: np.ndarray, *, label: str = "base", domain_names: Sequence[str] | None = None
) -> None:
    """Refuse base scores outside [0, 1], naming the first such domain (and its name, where given)."""
    outside = (base < 0) | (base > 1)
    if outside.any():
        d = int(np.argmax(outside))
        name = "" if domain_names is None else f" ({domain_names[d]!r})"
        raise ValueError(f"{label} must lie in [0, 1], got {base[d]} for domain {d}{name}")


def check_weights(value: Any, n_domains: int) -> np.ndarray:
    if value is None:
        return np.ones(n_domains, dtype=np.float64)
    weights = check_vector(value, "weights", n_domains)
    if (weights < 0).any():
        d = int(np.argmax(weights < 0))
        raise ValueError(f"weights must be >= 0, got {weights[d]} for domain {d}")
    if not (weights > 0).any():
        raise ValueError("weights must not be all zero: give at least one domain a positive weight")
    return weights


def check_budget(value: Any) -> int | None:
    if value is None:
        return None
    if not is_integer(value):
        raise ValueError(f"budget must be a non-negative integer or None, got {value!r}")
    if value < 0:
        raise ValueError(f"budget must be >= 0, got {value}")
    return int(value)


def check_members(value: Any, n_leaves: int) -> Sequence[np.ndarray]:
    """Point indices of each leaf, as int64 arrays; no point may belong to two leaves.

    :class:`harp.members.LeafMembers` (what ``Store.selection_inputs`` gives) is checked in one pass over its
    array of point ids, once (its point ids are made read-only then), and returned as it is; any other sequence
    leaf by leaf.
    """
    from harp.members import LeafMembers

    if value is None:
        return [np.array([g], dtype=np.int64) for g in range(n_leaves)]
    if isinstance(value, LeafMembers):
        if len(value) != n_leaves:
            raise ValueError(f"phi has {n_leaves} rows but members has {len(value)} leaves")
        if not (value.checked_distinct and not value.point_ids.flags.writeable):
            _check_distinct(value.point_ids, value)
            value.point_ids.flags.writeable = False  # what was checked cannot change in place afterwards
            value.checked_distinct = True
        return value
    if isinstance(value, np.ndarray) and value.ndim != 2:
        raise ValueError("members must be a sequence with one array of point indices per leaf")
    if not isinstance(value, Sequence | np.ndarray):
        raise ValueError(f"members must be a sequence of arrays of point indices, got {type(value).__name__}")
    if len(value) != n_leaves:
        raise ValueError(f"phi has {n_leaves} rows but members has {len(value)} leaves")
    members = []
    for g, points in enumerate(value):
        if isinstance(points, np.ndarray) and points.dtype == np.int64 and points.ndim == 1:
            members.append(points)  # the common case (arrays from a store), checked in bulk below
            continue
        array = np.asarray(points)
        if array.size == 0:
            members.append(np.zeros(0, dtype=np.int64))
            continue
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"members[{g}] must be a 1-D array of integer point indices, got {array.dtype} {array.shape}"
            )
        members.append(array.astype(np.int64, copy=False))
    flat = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
    _check_distinct(flat, members)
    return members


def _check_distinct(flat: np.ndarray, members: Sequence[np.ndarray]) -> None:
    """No negative point index in ``flat`` (every leaf's points, concatenated) and none in two leaves."""
    if flat.size == 0:
        return
    if flat.min() < 0:
        g = next(g for g, m in enumerate(members) if m.size and m.min() < 0)
        raise ValueError(f"members[{g}] holds a negative point index {int(members[g].min())}")
    # Counting is linear when ids are dense (the usual case); sort otherwise.
    if int(flat.max()) < 4 * flat.size + 1024:
        counts = np.bincount(flat)
        repeated = np.flatnonzero(counts > 1)
    else:
        unique, counts = np.unique(flat, return_counts=True)
        repeated = unique[counts > 1]
    if repeated.size:
        point = int(repeated[0])
        leaves = [g for g, m in enumerate(members) if (m == point).any()]
        raise ValueError(f"members: point {point} is in more than one leaf (leaves {leaves[:5]})")


def check_leaf_ids(value: Any, name: str, n_leaves: int) -> np.ndarray:
    """Distinct leaf ids in [0, n_leaves), in the order given."""
    if value is None:
        return np.zeros(0, dtype=np.int64)
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D sequence of integer leaf ids, got {value!r}")
    outside = (array < 0) | (array >= n_leaves)
    if outside.any():
        raise ValueError(f"{name} holds leaf {int(array[np.argmax(outside)])}, outside 0..{n_leaves - 1}")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name} lists leaf {int(unique[np.argmax(counts > 1)])} more than once")
    return array.astype(np.int64)


@dataclass(frozen=True)
class SelectionArguments:
    """The checked inputs of a selection (:func:`harp.select` and :func:`harp.prune.prune_select`)."""

    phi: np.ndarray
    base: np.ndarray
    weights: np.ndarray
    members: Sequence[np.ndarray]
    budget: int | None
    pinned: np.ndarray
    excluded: np.ndarray


def check_selection(
    phi: Any, base: Any, weights: Any, members: Any, budget: Any, pinned: Any, excluded: Any
) -> SelectionArguments:
    """Check every input a selection shares, in the order of its signature, and return them as arrays."""
    phi = check_matrix(phi, "phi")
    n_leaves, n_domains = phi.shape
    if n_domains == 0:
        raise ValueError("phi must have at least one domain (column), got shape (n, 0)")
    base = check_base(base, n_domains)
    weights = check_weights(weights, n_domains)
    members_list = check_members(members, n_leaves)
    budget = check_budget(budget)
    pinned_ids = check_leaf_ids(pinned, "pinned", n_leaves)
    excluded_ids = check_leaf_ids(excluded, "excluded", n_leaves)
    both = np.intersect1d(pinned_ids, excluded_ids)
    if both.size:
        raise ValueError(f"pinned and excluded both list leaf {int(both[0])}")
    return SelectionArguments(phi, base, weights, members_list, budget, pinned_ids, excluded_ids)


#: The levels of the tree a design can be drawn over (:mod:`harp.design`).
DESIGN_LEVELS = ("large", "parent")
#: The design selection's rules: ``"C"`` keeps regions credibly better than an average chunk of the pool,
#: ``"E"`` every region estimated so.
DESIGN_RULES = ("C", "E")
DESIGN_SETTINGS = ("rule", "level", "config_key", "bootstrap_seed", "budget", "seed")


def check_design_settings(value: Any, name: str = "settings") -> dict[str, Any]:
    """A design selection's settings, checked, as a dict with the keys of ``DESIGN_SETTINGS`` in that order.

    ``rule`` one of ``DESIGN_RULES`` (any case), ``level`` one of ``DESIGN_LEVELS``, ``config_key`` the design's
    config (a non-empty string), ``bootstrap_seed`` and ``seed`` (the draw's) integers >= 0, ``budget`` an
    integer >= 1 or None (every kept point).
    """
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict with the keys {', '.join(DESIGN_SETTINGS)}, got {value!r}")
    unknown = sorted(set(value) - set(DESIGN_SETTINGS))
    missing = [key for key in DESIGN_SETTINGS if key not in value]
    if unknown or missing:
        raise ValueError(
            f"{name} must have exactly the keys {', '.join(DESIGN_SETTINGS)}; "
            f"missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}"
        )
    rule = value["rule"].upper() if isinstance(value["rule"], str) else value["rule"]
    if rule not in DESIGN_RULES:
        raise ValueError(f"{name}.rule must be one of {', '.join(DESIGN_RULES)}, got {value['rule']!r}")
    if value["level"] not in DESIGN_LEVELS:
        raise ValueError(f"{name}.level must be one of {', '.join(DESIGN_LEVELS)}, got {value['level']!r}")
    if not isinstance(value["config_key"], str) or not value["config_key"].strip():
        raise ValueError(f"{name}.config_key must be a non-empty string, got {value['config_key']!r}")
    for key in ("bootstrap_seed", "seed"):
        if not is_integer(value[key]) or value[key] < 0:
            raise ValueError(f"{name}.{key} must be an integer >= 0, got {value[key]!r}")
    budget = value["budget"]
    if budget is not None and (not is_integer(budget) or budget < 1):
        raise ValueError(f"{name}.budget must be an integer >= 1 or None (every kept point), got {budget!r}")
    return {
        "rule": rule,
        "level": value["level"],
        "config_key": value["config_key"],
        "bootstrap_seed": int(value["bootstrap_seed"]),
        "budget": None if budget is None else int(budget),
        "seed": int(value["seed"]),
    }
