"""The tree and the posterior effects of a store: :func:`write_hierarchy` and :func:`infer_effects` (``harp infer``).

Point ids are the row numbers of ``X_feat`` (``0..N-1``), as in :mod:`harp.load`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harp._validation import check_leaf_ids

if TYPE_CHECKING:
    from harp.bayes import ActiveRule, Effects
    from harp.hierarchy import Hierarchy
    from harp.store import Store


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
        Add the training noise (:mod:`harp.measure.noise`) to every measurement's sampling variance, where the store
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
    from harp.measure.noise import training_noise as estimate_noise

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
