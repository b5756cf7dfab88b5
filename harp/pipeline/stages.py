"""The stages of :func:`harp.harp` against a store: the tree (reused when built from the same features and
parameters) and the representatives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from harp.data import TrainingPool
    from harp.store import Store

from harp.pipeline.arguments import PathLike, read_ids

_HIERARCHY_RUN = "harp-hierarchy"


def _fingerprint(X: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.float32).tobytes()).hexdigest()[:16]


def stored_tree(
    store: Store,
    X: np.ndarray,
    pool: TrainingPool,
    hierarchy_options: dict[str, Any],
    say: Callable[[str], None],
) -> None:
    """Build and write the tree, or check that the store's tree is the one these inputs would build."""
    from harp.hierarchy import build_hierarchy
    from harp.load import write_hierarchy

    wanted = {"n_points": int(X.shape[0]), "features": _fingerprint(X), **hierarchy_options}
    n_stored = store.read_table("points").num_rows
    if n_stored:
        if n_stored != X.shape[0]:
            raise ValueError(
                f"checkpoint_dir: {store.path} holds a tree of {n_stored} points but X_feat has {X.shape[0]} "
                "rows; use another checkpoint_dir for another pool"
            )
        earlier = [run for run in store.runs() if run["kind"] == _HIERARCHY_RUN and run["status"] == "done"]
        if earlier and earlier[-1]["config"] != json.loads(json.dumps(wanted)):
            changed = sorted(k for k in wanted if earlier[-1]["config"].get(k) != wanted[k])
            raise ValueError(
                f"checkpoint_dir: {store.path} holds a tree built with other {', '.join(changed)}; "
                "use another checkpoint_dir (its measurements describe the old leaves)"
            )
        say(f"resuming: using the tree in {store.path}")
        return
    run_id = store.add_run(_HIERARCHY_RUN, wanted)
    hierarchy = build_hierarchy(X, progress=say, **hierarchy_options)
    texts, responses = pool.store_texts()
    write_hierarchy(store, hierarchy, texts=texts, responses=responses, sources=pool.sources)
    store.finish_run(run_id, status="done", timings=hierarchy.timings)
    say(f"tree: {hierarchy.n_large} large nodes, {hierarchy.n_parents} parents, {hierarchy.n_leaves} leaves")


def read_tree(store: Store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """point id, leaf of each point (by point id) and parent of each leaf."""
    points = store.read_table("points").select(["point_id", "leaf_id"]).to_pydict()
    point_id = np.asarray(points["point_id"], dtype=np.int64)
    leaf_of_point = np.empty(point_id.size, dtype=np.int64)
    leaf_of_point[point_id] = np.asarray(points["leaf_id"], dtype=np.int64)
    leaf_parent = np.asarray(store.read_table("leaves").sort_by("leaf_id").column("parent_id").to_pylist())
    return point_id, leaf_of_point, leaf_parent.astype(np.int64)


def measured_representatives(
    store: Store,
    X: np.ndarray,
    n_representatives: int | None,
    leaves_path: PathLike | None,
    say: Callable[[str], None],
) -> np.ndarray:
    from harp.measure import choose_representatives, leaf_centroids

    _, leaf_of_point, leaf_parent = read_tree(store)
    n_leaves = leaf_parent.size
    if leaves_path is not None and Path(leaves_path).is_file():
        leaves = read_ids(leaves_path, "representative_leaves_path")
        bad = leaves[(leaves < 0) | (leaves >= n_leaves)]
        if bad.size:
            raise ValueError(
                f"representative_leaves_path ({leaves_path}) must hold leaf ids in 0..{n_leaves - 1}, "
                f"got {int(bad[0])}"
            )
        say(f"measuring the {leaves.size} representatives listed in {leaves_path}")
        return leaves
    budget = int(leaf_parent.max()) + 1 if n_representatives is None else n_representatives
    leaf_mean, parent_mean = leaf_centroids(X, leaf_of_point, leaf_parent)
    leaves = choose_representatives(leaf_parent, leaf_mean, parent_mean, budget)
    if leaves_path is not None:
        Path(leaves_path).write_text(json.dumps(leaves.tolist()) + "\n", encoding="utf-8")
        say(f"wrote the {leaves.size} representatives to {leaves_path}")
    return leaves
