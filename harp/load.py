"""Moving pipeline results in and out of a store: the tree, the posterior effects, and arrays made elsewhere.

The store is touched only here (and in :mod:`harp.layout`'s cache check); :mod:`harp.hierarchy` and
:mod:`harp.bayes` work on numpy arrays. Point ids are the row numbers of ``X_feat`` (``0..N-1``).

- :func:`write_hierarchy` writes a :class:`~harp.hierarchy.Hierarchy` (tree, in-leaf order, optional texts).
- :func:`infer_effects` reads the measurements, fits :func:`harp.bayes.fit_effects` and writes the posterior
  effects and the active flags (``harp infer``).
- :func:`load_arrays` builds a whole store from the arrays another HARP run produced (``harp load``): ``phi``
  and optionally its sd, the leaf of each point, the parent of each leaf, optionally the large node of each
  parent, base scores, domain names, optional texts and optional features for the in-leaf order and the layout.
  Each input is an array or a file (``.npy``; names and base scores also ``.json`` or ``.txt``; texts ``.jsonl``
  or ``.txt``), and shapes are checked against each other before anything is written, with messages that name
  the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_finite, check_leaf_ids

if TYPE_CHECKING:
    from harp.bayes import ActiveRule, Effects
    from harp.hierarchy import Hierarchy
    from harp.store import Store

__all__ = [
    "PointTexts",
    "infer_effects",
    "load_arrays",
    "load_vector",
    "read_names",
    "read_point_texts",
    "read_texts",
    "write_hierarchy",
]

PathLike = str | os.PathLike[str]
_TEXT_KEYS = ("text", "prompt", "instruction", "question")


# ----------------------------------------------------------------------------------------------------------------
# Tree and effects of a store


def write_hierarchy(
    store: Store,
    hierarchy: Hierarchy,
    *,
    texts: Sequence[str | None] | None = None,
    sources: Sequence[str | None] | None = None,
    responses: Sequence[str | None] | None = None,
    discard_measurements: bool = False,
) -> None:
    """Write the tree and the in-leaf order of each leaf's points to the store (replacing any tree).

    Parameters
    ----------
    store : harp.Store
    hierarchy : Hierarchy
    texts, sources, responses : sequence of str or None, optional
        One per point, indexed by point id (row of ``X_feat``): the prompt (or the whole text where there is
        no separate response), where it came from, and the response (see :func:`read_point_texts`).
    discard_measurements : bool, default False
        Replacing a tree that has measurements is refused unless True.
    """
    from harp.store import points_from_members

    n_points = hierarchy.n_points
    order = np.concatenate(hierarchy.members)
    text_column = None if texts is None else _per_point(texts, "texts", n_points, order)
    source_column = None if sources is None else _per_point(sources, "sources", n_points, order)
    response_column = None if responses is None else _per_point(responses, "responses", n_points, order)
    points = points_from_members(
        hierarchy.members, text=text_column, source=source_column, response=response_column
    )
    store.write_tree(
        points,
        hierarchy.leaf_parent,
        hierarchy.parent_large,
        hierarchy.n_large,
        discard_measurements=discard_measurements,
    )


def _per_point(values: Sequence[str | None], name: str, n_points: int, order: np.ndarray) -> list[str | None]:
    if len(values) != n_points:
        raise ValueError(f"{name} has {len(values)} entries but the tree has {n_points} points")
    return [values[int(i)] for i in order]


@dataclass(frozen=True)
class _StoreTree:
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    domain_names: list[str]
    base: np.ndarray


def _read_tree(store: Store) -> _StoreTree:
    leaves = store.read_table("leaves")
    parents = store.read_table("parents")
    domains = store.read_table("domains")
    if leaves.num_rows == 0:
        raise ValueError(f"{store.path} has no tree yet: run `harp hierarchy` (or `harp load`) first")
    if domains.num_rows == 0:
        raise ValueError(
            f"{store.path} has no domains yet: the measurement stage writes them with the base scores"
        )
    return _StoreTree(
        leaf_parent=np.asarray(leaves["parent_id"].to_numpy(), dtype=np.int64),
        parent_large=np.asarray(parents["large_id"].to_numpy(), dtype=np.int64),
        domain_names=[str(name) for name in domains["name"].to_pylist()],
        base=np.asarray(domains["base"].to_numpy(), dtype=np.float64),
    )


def infer_effects(
    store: Store,
    *,
    config_key: str | None = None,
    threshold: float = 1.645,
    prior_sd: float = 0.1,
    hold_out: Sequence[int] | np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    training_noise: bool = True,
    active_rule: ActiveRule = "any-leaf",
) -> tuple[Effects, np.ndarray]:
    """Fit the empirical-Bayes model to the store's measurements; write the effects and the active flags.

    Parameters
    ----------
    store : harp.Store
        Opened read-write, with a tree, domains and measurements.
    config_key : str, optional
        Use the measurements made under this configuration. Needed when the store holds several.
    threshold : float, default 1.645
        See :func:`harp.bayes.active_domains`.
    prior_sd : float, default 0.1
        See :func:`harp.bayes.fit_effects`.
    hold_out : sequence of int, optional
        Leaf ids whose measurements the fit must not see (they stay in the store): a hold-out to check the
        posterior against. Those leaves get inferred effects like any unmeasured leaf.
    progress : callable, optional
        Called with one-line progress messages.
    training_noise : bool, default True
        Add the training noise (:mod:`harp.noise`) to every measurement's sampling variance, where the store
        holds leaves measured under several seeds of this configuration. ``effects.training_variance`` says
        what was added (None when nothing could be estimated).
    active_rule : {"any-leaf", "family-wise"}
        See :func:`harp.bayes.active_domains`.

    Returns
    -------
    effects : harp.bayes.Effects
    active : ndarray of shape (n_domains,), bool
    """
    import pyarrow.compute as pc

    from harp.bayes import active_domains, fit_effects, table_matrix
    from harp.noise import training_noise as estimate_noise

    say = progress or (lambda message: None)
    started = time.perf_counter()
    tree = _read_tree(store)
    rows = store.read_table("measurements")
    keys = sorted(set(rows["config_key"].to_pylist()))
    if config_key is None:
        if len(keys) > 1:
            raise ValueError(
                f"{store.path} holds measurements under {len(keys)} configurations ({', '.join(map(repr, keys))}); "
                "choose one with config_key (--config-key)"
            )
    else:
        if config_key not in keys:
            raise ValueError(
                f"config_key {config_key!r} has no measurements in {store.path} "
                f"(configurations: {', '.join(map(repr, keys)) or 'none'})"
            )
        mask = np.asarray([key == config_key for key in rows["config_key"].to_pylist()], dtype=bool)
        rows = rows.filter(mask)
    n_leaves, n_domains = tree.leaf_parent.size, len(tree.domain_names)
    # The newest measurement this fit sees (held-out ones included): later ones are pending (harp.runs).
    newest = pc.max(rows["created_at"]).as_py() if rows.num_rows else None
    held = None
    if hold_out is not None:
        held = check_leaf_ids(hold_out, "hold_out", n_leaves)
        rows = rows.filter(~np.isin(rows["leaf_id"].to_numpy(), held))
        say(f"holding out the measurements of {held.size} leaves")
    phi_hat, variance = table_matrix(rows, n_leaves, n_domains)
    measured_leaves = int((~np.isnan(phi_hat)).any(axis=1).sum())
    say(
        f"fitting {n_domains} domains from {rows.num_rows} measurements of {measured_leaves} of {n_leaves} leaves"
    )
    added = None
    used = config_key or (keys[0] if keys else None)  # the one key in the store when none is named
    if training_noise and used is not None:
        noise = estimate_noise(store, used, n_domains, exclude=held)
        if noise.leaves.size:
            added = np.nan_to_num(noise.variance, nan=0.0)
            variance = variance + added[None, :]
            say(
                f"training noise from {noise.leaves.size} leaves measured under {len(noise.keys)} seeds: "
                f"median sd {float(np.median(np.sqrt(added))):.4f} added to every measurement's"
            )
    effects = fit_effects(
        phi_hat,
        variance,
        tree.leaf_parent,
        tree.parent_large,
        prior_sd=prior_sd,
        domain_names=tree.domain_names,
    )
    effects = dataclasses.replace(effects, training_variance=added)
    active = active_domains(effects.mean, effects.sd, tree.base, threshold, rule=active_rule)
    store.write_effects(
        effects.mean,
        effects.sd,
        effects.measured,
        source={
            "config_key": used,
            "protocol": _protocol_of(store, used),
            "measured_leaves": measured_leaves,
            "held_out_leaves": 0 if held is None else int(held.size),
            "training_noise": added is not None,
            "active_rule": active_rule,
            "measurements_through": None if newest is None else newest.isoformat(sep=" "),
        },
    )
    store.set_active(active)
    say(
        f"wrote effects; {int(active.sum())} of {n_domains} domains active in {time.perf_counter() - started:.1f} s"
    )
    return effects, active


def _protocol_of(store: Store, config_key: str | None) -> str | None:
    """The measurement protocol recorded by the measure runs of ``config_key`` (None when no run says)."""
    for run in store.runs():
        config = run.get("config") or {}
        if run["kind"] == "measure" and config.get("config_key") == config_key:
            return str((config.get("measure_config") or {}).get("protocol", "base-anchored"))
    return None


# ----------------------------------------------------------------------------------------------------------------
# Reading files


def _label(value: Any, name: str) -> str:
    return f"{name} ({value})" if isinstance(value, str | os.PathLike) else name


def _load_npy(value: Any, name: str, *, mmap: bool = False) -> np.ndarray:
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
    return _load_npy(value, name)


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


def _ids(value: Any, name: str, length: int | None = None, what: str = "entries") -> np.ndarray:
    array = _load_npy(value, name)
    label = _label(value, name)
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


# ----------------------------------------------------------------------------------------------------------------
# Building a store from arrays


@dataclass(frozen=True)
class _Loaded:
    phi: np.ndarray
    sd: np.ndarray
    measured: np.ndarray
    point_leaf: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    base: np.ndarray
    names: list[str]
    texts: PointTexts | None
    X: np.ndarray | None


def _check_inputs(
    phi: Any,
    leaf_of_point: Any,
    parent_of_leaf: Any,
    base: Any,
    domain_names: Any,
    phi_sd: Any,
    large_of_parent: Any,
    measured: Any,
    texts: Any,
    X_feat: Any,
) -> _Loaded:
    phi_array = _load_npy(phi, "phi")
    phi_label = _label(phi, "phi")
    if phi_array.ndim != 2 or 0 in phi_array.shape:
        raise ValueError(
            f"{phi_label} must be 2-D (leaves x domains) and non-empty, got shape {phi_array.shape}"
        )
    phi_array = _finite(phi_array, phi_label)
    n_leaves, n_domains = phi_array.shape
    point_leaf = _ids(leaf_of_point, "leaf_of_point")
    if point_leaf.max() + 1 != n_leaves:
        raise ValueError(
            f"{_label(leaf_of_point, 'leaf_of_point')} uses {point_leaf.max() + 1} leaves but {phi_label} has "
            f"{n_leaves} rows"
        )
    leaf_parent = _ids(parent_of_leaf, "parent_of_leaf", n_leaves, f"leaves (rows of {phi_label})")
    n_parents = int(leaf_parent.max()) + 1
    if large_of_parent is None:
        parent_large = None
    else:
        parent_large = _ids(
            large_of_parent,
            "large_of_parent",
            n_parents,
            f"parents (used by {_label(parent_of_leaf, 'parent_of_leaf')})",
        )
    base_array = _finite(load_vector(base, "base").astype(np.float64, copy=False), _label(base, "base"))
    base_label = _label(base, "base")
    if base_array.ndim != 1 or base_array.size != n_domains:
        raise ValueError(
            f"{base_label} has shape {base_array.shape} but {phi_label} has {n_domains} domains (columns)"
        )
    if ((base_array < 0) | (base_array > 1)).any():
        raise ValueError(
            f"{base_label} must lie in [0, 1], got {base_array[(base_array < 0) | (base_array > 1)][0]}"
        )
    names = read_names(domain_names)
    names_label = _label(domain_names, "domain_names")
    if len(names) != n_domains:
        raise ValueError(
            f"{names_label} has {len(names)} names but {phi_label} has {n_domains} domains (columns)"
        )
    if phi_sd is None:
        sd = np.zeros_like(phi_array)
    else:
        sd = _finite(_load_npy(phi_sd, "phi_sd").astype(np.float64, copy=False), _label(phi_sd, "phi_sd"))
        if sd.shape != phi_array.shape:
            raise ValueError(
                f"{_label(phi_sd, 'phi_sd')} has shape {sd.shape} but {phi_label} has {phi_array.shape}"
            )
        if (sd < 0).any():
            raise ValueError(f"{_label(phi_sd, 'phi_sd')} must be >= 0, got {sd.min()}")
    measured_mask = _measured(measured, n_leaves, n_domains)
    n_points = point_leaf.size
    text_list = None
    if texts is not None:
        text_list = read_point_texts(texts)
        if len(text_list) != n_points:
            raise ValueError(
                f"{_label(texts, 'texts')} has {len(text_list)} texts but "
                f"{_label(leaf_of_point, 'leaf_of_point')} has {n_points} points"
            )
    X = None
    if X_feat is not None:
        X = _load_npy(X_feat, "X_feat", mmap=True)
        if X.ndim != 2 or X.shape[0] != n_points:
            raise ValueError(
                f"{_label(X_feat, 'X_feat')} has shape {X.shape}; expected {n_points} rows, one per point of "
                f"{_label(leaf_of_point, 'leaf_of_point')}"
            )
    return _Loaded(
        phi=phi_array.astype(np.float64),
        sd=sd,
        measured=measured_mask,
        point_leaf=point_leaf,
        leaf_parent=leaf_parent,
        parent_large=parent_large if parent_large is not None else np.zeros(0, dtype=np.int64),
        base=base_array,
        names=names,
        texts=text_list,
        X=X,
    )


def _finite(array: np.ndarray, label: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise ValueError(f"{label} must hold numbers, got dtype {array.dtype}")
    check_finite(array, label)
    return array


def _measured(value: Any, n_leaves: int, n_domains: int) -> np.ndarray:
    """Measured flags (L, D) from None, a bool mask of shape (L,) or (L, D), or leaf ids (ints)."""
    if value is None:
        return np.zeros((n_leaves, n_domains), dtype=bool)
    label = _label(value, "measured")
    array = load_vector(value, "measured") if isinstance(value, str | os.PathLike) else np.asarray(value)
    if array.dtype == bool:
        if array.shape == (n_leaves,):
            return np.repeat(array[:, None], n_domains, axis=1)
        if array.shape == (n_leaves, n_domains):
            return array.copy()
        raise ValueError(
            f"{label} is a mask of shape {array.shape}; expected ({n_leaves},) or ({n_leaves}, {n_domains})"
        )
    if array.size == 0:
        return np.zeros((n_leaves, n_domains), dtype=bool)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{label} must be a boolean mask or a 1-D list of integer leaf ids, got {array.dtype} {array.shape}"
        )
    if array.min() < 0 or array.max() >= n_leaves:
        raise ValueError(
            f"{label} holds leaf {int(array[(array < 0) | (array >= n_leaves)][0])}, outside 0..{n_leaves - 1}"
        )
    mask = np.zeros((n_leaves, n_domains), dtype=bool)
    mask[array.astype(np.int64)] = True
    return mask


def load_arrays(
    store_path: PathLike,
    *,
    phi: Any,
    leaf_of_point: Any,
    parent_of_leaf: Any,
    base: Any,
    domain_names: Any,
    phi_sd: Any = None,
    large_of_parent: Any = None,
    measured: Any = None,
    texts: Any = None,
    X_feat: Any = None,
    parents_per_large: int = 8,
    threshold: float = 1.645,
    layout_method: str = "auto",
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Store:
    """Build a store from the arrays another HARP run produced.

    Every input may be an array or a path. All shapes are checked against each other before the store is
    written; the store is built under a temporary name and renamed into place.

    Parameters
    ----------
    store_path : str or Path
        The store to create; an existing file is replaced only with ``overwrite``.
    phi : array-like or .npy, shape (n_leaves, n_domains)
        Effect of each leaf g on each domain d (posterior mean, or measured value).
    leaf_of_point : array-like or .npy of int, shape (n_points,)
        Leaf of each point; point ids are 0..N-1. Leaf ids contiguous, none empty.
    parent_of_leaf : array-like or .npy of int, shape (n_leaves,)
        Parent of each leaf; contiguous ids, none empty.
    base : array-like, .npy, .json or .txt, shape (n_domains,)
        Base-model score ``b_d`` of each domain, in [0, 1].
    domain_names : list of str, .json list or .txt (one a line), length n_domains
    phi_sd : array-like or .npy, shape (n_leaves, n_domains), optional
        Posterior sd of ``phi``; 0 when unknown.
    large_of_parent : array-like or .npy of int, shape (n_parents,), optional
        Large node of each parent. When missing: k-means of the parent centroids into about
        ``n_parents / parents_per_large`` large nodes when ``X_feat`` is given, else a single large node.
    measured : bool mask (n_leaves,) or (n_leaves, n_domains), or int leaf ids, or a file of either, optional
        Which leaves were measured (none by default).
    texts : list, .jsonl, .parquet or .txt, optional
        One text per point, kept for the app; a training pool file (records with ``prompt`` and ``response``,
        or chat ``messages``, and ``source``) gives prompt, response and source apart (:func:`read_point_texts`).
    X_feat : array-like or .npy, shape (n_points, n_features), optional
        Features: members are ordered by distance to their leaf centroid (else by point id) and the layout is
        made from the leaf centroids (else from the rows of ``phi``, standardised per domain).
    parents_per_large : int, default 8
    threshold : float, default 1.645
        Active-domain threshold (see :func:`harp.bayes.active_domains`).
    layout_method : {"auto", "umap", "pca"}, default "auto"
    seed : int, default 0
    overwrite : bool, default False
    progress : callable, optional

    Returns
    -------
    harp.Store

    Raises
    ------
    ValueError
        Naming the file (or argument) and what disagrees.
    StoreError
        ``store_path`` exists and ``overwrite`` is False.
    """
    from harp.bayes import active_domains
    from harp.hierarchy import group_means, kmeans_labels
    from harp.layout import compute_layout
    from harp.store import (
        Store,
        _check_target,
        _publish,
        _remove_quietly,
        _temporary_beside,
        points_from_members,
    )

    say = progress or (lambda message: None)
    started = time.perf_counter()
    target = Path(store_path)
    _check_target(target, overwrite)  # first removes what killed earlier writes to target left beside it
    data = _check_inputs(
        phi,
        leaf_of_point,
        parent_of_leaf,
        base,
        domain_names,
        phi_sd,
        large_of_parent,
        measured,
        texts,
        X_feat,
    )
    n_leaves, n_domains = data.phi.shape
    n_points = data.point_leaf.size
    n_parents = int(data.leaf_parent.max()) + 1
    say(f"loaded {n_points} points, {n_leaves} leaves, {n_parents} parents, {n_domains} domains")

    leaf_means = None
    if data.X is not None:
        leaf_means, _ = group_means(np.asarray(data.X), data.point_leaf, n_leaves)
    parent_large = data.parent_large
    if parent_large.size == 0:
        n_large = max(1, round(n_parents / max(1, parents_per_large)))
        if leaf_means is not None and n_large > 1:
            weights = np.bincount(data.point_leaf, minlength=n_leaves).astype(np.float64)
            parent_sums = np.zeros((n_parents, leaf_means.shape[1]))
            np.add.at(parent_sums, data.leaf_parent, leaf_means * weights[:, None])
            parent_means = parent_sums / np.bincount(data.leaf_parent, weights=weights)[:, None]
            parent_large = kmeans_labels(parent_means, n_large, seed=seed)
            say(f"grouped {n_parents} parents into {int(parent_large.max()) + 1} large nodes by k-means")
        else:
            parent_large = np.zeros(n_parents, dtype=np.int64)

    # Members in rank order: by distance to the leaf centroid when features are known, else by point id.
    if leaf_means is not None and data.X is not None:
        distance = np.empty(n_points)
        for start in range(0, n_points, 65536):
            stop = min(start + 65536, n_points)
            diff = np.asarray(data.X[start:stop], dtype=np.float64) - leaf_means[data.point_leaf[start:stop]]
            distance[start:stop] = np.einsum("ij,ij->i", diff, diff)
        order: np.ndarray = np.lexsort((np.arange(n_points), distance, data.point_leaf))
    else:
        order = np.argsort(data.point_leaf, kind="stable")
    sizes = np.bincount(data.point_leaf, minlength=n_leaves)
    members = np.split(order.astype(np.int64), np.cumsum(sizes)[:-1])

    def per_point(values: list[str | None] | None) -> list[str | None] | None:
        return None if values is None else [values[int(i)] for i in order]

    texts_of = data.texts or PointTexts([])

    active = active_domains(data.phi, data.sd, data.base, threshold)
    if leaf_means is not None:
        layout = compute_layout(leaf_means, method=layout_method, seed=seed)  # type: ignore[arg-type]
    else:
        spread = data.phi.std(axis=0)
        profile = (data.phi - data.phi.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        layout = compute_layout(profile, method=layout_method, metric="euclidean", seed=seed)  # type: ignore[arg-type]
    say(f"layout: {layout.method} of the {'leaf centroids' if leaf_means is not None else 'rows of phi'}")

    temporary = _temporary_beside(target, "load")
    try:
        store = Store.create(temporary)
        store.write_tree(
            points_from_members(
                members,
                text=per_point(data.texts.texts) if data.texts is not None else None,
                source=per_point(texts_of.sources),
                response=per_point(texts_of.responses),
            ),
            data.leaf_parent,
            parent_large,
            int(parent_large.max()) + 1,
        )
        store.write_domains(data.names, data.base, active=active)
        store.write_effects(data.phi, data.sd, data.measured)
        store.write_layout(layout.x, layout.y, layout.key)
        run_id = store.add_run(
            "load",
            {
                "inputs": {
                    name: str(value)
                    if isinstance(value, str | os.PathLike)
                    else ("array" if value is not None else None)
                    for name, value in (
                        ("phi", phi),
                        ("phi_sd", phi_sd),
                        ("leaf_of_point", leaf_of_point),
                        ("parent_of_leaf", parent_of_leaf),
                        ("large_of_parent", large_of_parent),
                        ("base", base),
                        ("domain_names", domain_names),
                        ("measured", measured),
                        ("texts", texts),
                        ("X_feat", X_feat),
                    )
                },  # fmt: skip
                "threshold": threshold,
                "layout_key": layout.key,
                "seed": seed,
            },
        )
        store.finish_run(run_id, timings={"total": time.perf_counter() - started})
        _publish(temporary, target, overwrite=overwrite)
    finally:
        _remove_quietly(temporary)
    say(f"wrote {target} in {time.perf_counter() - started:.1f} s")
    return Store.open(target)
