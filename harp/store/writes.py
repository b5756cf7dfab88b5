"""Writes that replace a whole stage's results: the tree, the domains and their active flags, the effects, the
layout; and :func:`points_from_members`, which builds the points table a tree write takes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from harp._validation import check_base_range, check_integer, is_integer
from harp.store import hashing
from harp.store.base import StoreBase
from harp.store.checks import (
    boolean_array,
    every_id_used,
    float_array,
    ids_in_range,
    integer_array,
    string_array,
    table_column,
)
from harp.store.queries import (
    SOURCE_VIEW,
    count_design_mixtures,
    count_mixtures,
    count_rows,
    insert,
    record_fit_leaves,
)

__all__ = ["StageWrites", "points_from_members"]


def points_from_members(
    members: Sequence[Any],
    *,
    text: Sequence[str | None] | None = None,
    source: Sequence[str | None] | None = None,
    response: Sequence[str | None] | None = None,
) -> pa.Table:
    """The ``points`` argument of :meth:`Store.write_tree` from per-leaf member lists.

    Parameters
    ----------
    members : sequence of 1-D integer arrays
        ``members[g]`` holds the point ids of leaf g in rank order (most typical first).
    text, source, response : sequence of str or None, optional
        One entry per point, in the order of ``np.concatenate(members)``: the prompt (or the whole example when
        it has no separate response), where it came from, and the response the model is trained to give.

    Returns
    -------
    pyarrow.Table
        Columns ``point_id``, ``leaf_id``, ``rank_in_leaf`` and, when given, ``text``, ``source`` and
        ``response``.
    """
    arrays = [integer_array(points, f"members[{g}]") for g, points in enumerate(members)]
    sizes = np.array([len(points) for points in arrays], dtype=np.int64)
    point_id = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    leaf_id = np.repeat(np.arange(len(arrays), dtype=np.int32), sizes)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rank = (np.arange(point_id.size, dtype=np.int64) - starts).astype(np.int32)
    columns: dict[str, Any] = {"point_id": point_id, "leaf_id": leaf_id, "rank_in_leaf": rank}
    if text is not None:
        columns["text"] = string_array(text, "text", point_id.size)
    if source is not None:
        columns["source"] = string_array(source, "source", point_id.size)
    if response is not None:
        columns["response"] = string_array(response, "response", point_id.size)
    return pa.table(columns)


class StageWrites(StoreBase):
    """The :class:`harp.store.Store` methods that replace the tree, the domains, the effects or the layout."""

    def write_tree(
        self,
        points: Any,
        leaves: Any,
        parents: Any,
        large_nodes: int | Sequence[int] | np.ndarray,
        *,
        discard_measurements: bool = False,
    ) -> None:
        """Replace the tree: points, leaves, parents and large nodes, in one transaction.

        The effects and the layout describe the old tree, so they are deleted with it.

        Parameters
        ----------
        points : table-like
            A pyarrow Table, pandas DataFrame or mapping of columns: ``point_id`` (distinct, >= 0), ``leaf_id``
            (0..L-1) and optionally ``rank_in_leaf`` (0..n_g-1 within each leaf g; by default the order of
            appearance), ``text`` (the prompt or the chat turns), ``source`` and ``response`` (str or None). See
            :func:`points_from_members`.
        leaves : array-like of shape (n_leaves,)
            Parent id of each leaf g (0..P-1, every parent used).
        parents : array-like of shape (n_parents,)
            Large-node id of each parent (0..K-1, every large node used).
        large_nodes : int or array-like of shape (n_large,)
            The number K of large nodes, or their ids ``0..K-1``.
        discard_measurements : bool, default False
            Measurements, mixture validations and designed mixtures refer to the leaves and regions of the current
            tree: replacing a tree that has some is refused unless this is True, which deletes them.

        Raises
        ------
        ValueError
            Naming the argument: ids not contiguous, a point twice, an empty leaf, parent or large node, ranks
            that are not 0..n-1 within a leaf, texts that are not strings.
        """
        leaf_parent = integer_array(leaves, "leaves")
        parent_large = integer_array(parents, "parents")
        if is_integer(large_nodes):
            n_large = check_integer(
                large_nodes, "large_nodes"
            )  # an int for the type checker; cannot fail here
        else:
            large_ids = integer_array(large_nodes, "large_nodes")
            if not np.array_equal(large_ids, np.arange(large_ids.size)):
                raise ValueError("large_nodes must be a count K or the ids 0..K-1 in order")
            n_large = int(large_ids.size)
        n_leaves, n_parents = int(leaf_parent.size), int(parent_large.size)
        if n_leaves == 0:
            raise ValueError("leaves must not be empty: a tree needs at least one leaf")
        if n_parents == 0 or n_large <= 0:
            raise ValueError(
                f"parents and large_nodes must not be empty, got {n_parents} parents, {n_large} large nodes"
            )
        ids_in_range(leaf_parent, "leaves", n_parents, "parents")
        every_id_used(leaf_parent, "leaves", n_parents, "parent")
        ids_in_range(parent_large, "parents", n_large, "large nodes")
        every_id_used(parent_large, "parents", n_large, "large node")

        point_id = integer_array(
            table_column(points, "point_id", "points", required=True), "points['point_id']"
        )
        leaf_id = integer_array(table_column(points, "leaf_id", "points", required=True), "points['leaf_id']")
        n_points = point_id.size
        if leaf_id.size != n_points:
            raise ValueError(
                f"points['leaf_id'] has {leaf_id.size} entries but points['point_id'] has {n_points}"
            )
        if n_points and point_id.min() < 0:
            raise ValueError(f"points['point_id'] must be >= 0, got {int(point_id.min())}")
        unique, counts = np.unique(point_id, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"points['point_id'] lists point {int(unique[np.argmax(counts > 1)])} more than once"
            )
        ids_in_range(leaf_id, "points['leaf_id']", n_leaves, "leaves")
        every_id_used(leaf_id, "points['leaf_id']", n_leaves, "leaf")
        leaf_size = np.bincount(leaf_id, minlength=n_leaves)
        order = np.argsort(leaf_id, kind="stable")
        starts = np.repeat(np.cumsum(leaf_size) - leaf_size, leaf_size)
        rank_column = table_column(points, "rank_in_leaf", "points", required=False)
        if rank_column is None:
            rank = np.empty(n_points, dtype=np.int64)
            rank[order] = np.arange(n_points) - starts
        else:
            rank = integer_array(rank_column, "points['rank_in_leaf']")
            if rank.size != n_points:
                raise ValueError(f"points['rank_in_leaf'] has {rank.size} entries, expected {n_points}")
            order = np.lexsort((rank, leaf_id))
            if not np.array_equal(rank[order], np.arange(n_points) - starts):
                bad = int(leaf_id[order][np.argmax(rank[order] != np.arange(n_points) - starts)])
                raise ValueError(
                    f"points['rank_in_leaf'] must number the points of each leaf 0..n-1; leaf {bad} does not"
                )
        columns: dict[str, Any] = {
            "point_id": pa.array(point_id[order], pa.int64()),
            "leaf_id": pa.array(leaf_id[order].astype(np.int32)),
            "rank_in_leaf": pa.array(rank[order].astype(np.int32)),
        }
        indices = pa.array(order)
        for column in ("text", "source", "response"):
            value = table_column(points, column, "points", required=False)
            columns[column] = (
                pa.nulls(n_points, pa.string())
                if value is None
                else string_array(value, f"points[{column!r}]", n_points).take(indices)
            )
        point_table = pa.table(columns)
        parent_size = np.bincount(leaf_parent, weights=leaf_size, minlength=n_parents).astype(np.int64)
        large_size = np.bincount(parent_large, weights=parent_size, minlength=n_large).astype(np.int64)

        with self.write(rehash=("large_nodes", "parents", "leaves", "effects")) as con:
            n_measurements = count_rows(con, "measurements")
            n_mixtures = count_mixtures(con)
            n_designs = count_design_mixtures(con)
            if (n_measurements or n_mixtures or n_designs) and not discard_measurements:
                held = [f"{n_measurements} measurements"]
                held += [f"{n_mixtures} mixture validations"] if n_mixtures else []
                held += [f"{n_designs} design mixtures"] if n_designs else []
                listed = ", ".join(held[:-1]) + " and " + held[-1] if len(held) > 1 else held[0]
                raise ValueError(
                    f"the store holds {listed} of the current tree; pass "
                    "discard_measurements=True to replace the tree anyway, or write the new tree to a new store"
                )
            for table in (
                "points",
                "leaves",
                "parents",
                "large_nodes",
                "effects",
                "layout",
                "point_positions",
                "measurements",
                "mixtures",
                "design_mixtures",
            ):
                con.execute(f"DELETE FROM {table}")
            con.execute("DELETE FROM meta WHERE key = 'layout_key'")
            insert(
                con,
                "large_nodes",
                pa.table({"large_id": np.arange(n_large, dtype=np.int32), "size": large_size}),
            )
            insert(
                con,
                "parents",
                pa.table(
                    {
                        "parent_id": np.arange(n_parents, dtype=np.int32),
                        "large_id": parent_large.astype(np.int32),
                        "size": parent_size,
                    }
                ),
            )
            insert(
                con,
                "leaves",
                pa.table(
                    {
                        "leaf_id": np.arange(n_leaves, dtype=np.int32),
                        "parent_id": leaf_parent.astype(np.int32),
                        "size": leaf_size.astype(np.int64),
                    }
                ),
            )
            insert(con, "points", point_table)
            by_point_id = np.argsort(point_id[order], kind="stable")
            hashing.record_digests(con, {"points": hashing.arrow_digest("points", point_table, by_point_id)})

    def write_domains(
        self,
        names: Sequence[str],
        base: Any,
        eval_size: Any = None,
        active: Any = None,
    ) -> None:
        """Replace the domains.

        Parameters
        ----------
        names : sequence of str, length n_domains
            Distinct, non-empty names.
        base : array-like of shape (n_domains,)
            Base-model score ``b_d`` in [0, 1].
        eval_size : array-like of shape (n_domains,), optional
            Number of proxy-eval examples of each domain (>= 0).
        active : array-like of shape (n_domains,), optional
            Whether each domain is active; all True by default.

        Raises
        ------
        ValueError
            Naming the argument; also when the number of domains changes while the store holds effects,
            measurements, mixture validations or designed mixtures for the old domains.
        """
        if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
            raise ValueError(f"names must be a sequence of domain names, got {names!r}")
        name_list = list(names)
        n_domains = len(name_list)
        if n_domains == 0:
            raise ValueError("names must not be empty: give at least one domain")
        for d, name in enumerate(name_list):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"names[{d}] must be a non-empty string, got {name!r}")
        if len(set(name_list)) != n_domains:
            duplicate = next(name for name in name_list if name_list.count(name) > 1)
            raise ValueError(f"names lists domain {duplicate!r} more than once")
        base_array = float_array(base, "base", (n_domains,))
        check_base_range(base_array, domain_names=name_list)
        if eval_size is None:
            eval_column = pa.nulls(n_domains, pa.int32())
        else:
            sizes = integer_array(eval_size, "eval_size")
            if sizes.size != n_domains:
                raise ValueError(f"eval_size has {sizes.size} entries but there are {n_domains} domains")
            if (sizes < 0).any():
                raise ValueError(f"eval_size must be >= 0, got {int(sizes.min())}")
            eval_column = pa.array(sizes.astype(np.int32))
        active_array = (
            np.ones(n_domains, dtype=bool)
            if active is None
            else boolean_array(active, "active", (n_domains,))
        )
        table = pa.table(
            {
                "domain_id": np.arange(n_domains, dtype=np.int32),
                "name": pa.array(name_list, pa.string()),
                "base": base_array,
                "eval_size": eval_column,
                "active": np.ascontiguousarray(active_array),
            }
        )
        with self.write(rehash=("domains",)) as con:
            current = count_rows(con, "domains")
            held = {
                "effects": count_rows(con, "effects"),
                "measurements": count_rows(con, "measurements"),
                "mixture validations": count_mixtures(con),
                "design mixtures": count_design_mixtures(con),
            }
            if current != n_domains and any(held.values()):
                listed = ", ".join(f"{count} {what}" for what, count in held.items() if count)
                raise ValueError(
                    f"names has {n_domains} domains but the store holds {listed} for its {current} domains; "
                    "write the new domains to a new store"
                )
            con.execute("DELETE FROM domains")
            insert(con, "domains", table)

    def set_active(self, active: Any) -> None:
        """Set which domains are active.

        Parameters
        ----------
        active : array-like of bool, shape (n_domains,)
        """
        with self.write(rehash=("domains",)) as con:
            n_domains = count_rows(con, "domains")
            flags = boolean_array(active, "active", (n_domains,))
            con.register(
                SOURCE_VIEW, pa.table({"domain_id": np.arange(n_domains, dtype=np.int32), "active": flags})
            )
            try:
                con.execute(
                    f"UPDATE domains SET active = s.active FROM {SOURCE_VIEW} s WHERE domains.domain_id = s.domain_id"
                )
            finally:
                con.unregister(SOURCE_VIEW)

    def write_effects(
        self, mean: Any, sd: Any, measured: Any, *, source: Mapping[str, Any] | None = None
    ) -> None:
        """Replace the posterior effects of every leaf g on every domain d.

        Parameters
        ----------
        mean : array-like of shape (n_leaves, n_domains)
            Posterior mean of ``phi[g, d]``; finite.
        sd : array-like of shape (n_leaves, n_domains)
            Posterior standard deviation; finite and >= 0.
        measured : array-like of bool, shape (n_leaves, n_domains) or (n_leaves, 1)
            Whether each value rests on a measurement of the leaf.
        source : mapping, optional
            What produced the effects (for example the measurements' ``config_key`` and protocol), kept as JSON
            in ``meta.effects_source`` in the same transaction; None removes an older record.

        Raises
        ------
        ValueError
            Naming the argument: a shape other than the store's leaves x domains, NaN or inf, sd < 0.
        """
        with self.write(rehash=()) as con:
            shape = (count_rows(con, "leaves"), count_rows(con, "domains"))
            if 0 in shape:
                raise ValueError(
                    f"write the tree and the domains before the effects (the store has {shape[0]} "
                    f"leaves and {shape[1]} domains)"
                )
            mean_array = float_array(mean, "mean", shape)
            sd_array = float_array(sd, "sd", shape)
            if (sd_array < 0).any():
                where = tuple(int(i) for i in np.argwhere(sd_array < 0)[0])
                raise ValueError(f"sd must be >= 0, got {sd_array[where]} at index {where}")
            measured_array = np.asarray(measured)
            if measured_array.ndim == 1 and measured_array.shape[0] == shape[0]:
                measured_array = measured_array[:, None]
            measured_array = boolean_array(measured_array, "measured", shape)
            n_leaves, n_domains = shape
            table = pa.table(
                {
                    "leaf_id": np.repeat(np.arange(n_leaves, dtype=np.int32), n_domains),
                    "domain_id": np.tile(np.arange(n_domains, dtype=np.int32), n_leaves),
                    "mean": mean_array.ravel(),
                    "sd": sd_array.ravel(),
                    "measured": np.ascontiguousarray(measured_array).ravel(),
                }
            )
            con.execute("DELETE FROM effects")
            insert(con, "effects", table)
            # The rows are in key order already; the digest and the count commit with the rows.
            hashing.record_digests(con, {"effects": hashing.arrow_digest("effects", table)})
            record_fit_leaves(con, int(np.ascontiguousarray(measured_array).any(axis=1).sum()))
            con.execute("DELETE FROM meta WHERE key = 'effects_source'")
            if source is not None:
                con.execute(
                    "INSERT INTO meta (key, value) VALUES ('effects_source', ?)",
                    [json.dumps(dict(source), sort_keys=True, default=str)],
                )

    def write_layout(
        self,
        x: Any,
        y: Any,
        key: str,
        *,
        point_positions: tuple[Any, Any, Any] | None = None,
    ) -> None:
        """Replace the 2-D layout of the leaves, and with it the positions of their points, in one transaction.

        Parameters
        ----------
        x, y : array-like of shape (n_leaves,)
            Coordinates of each leaf; finite.
        key : str
            What produced the layout (method, version, every hyperparameter), kept in ``meta.layout_key`` so a
            cached layout is recomputed when any of them changes.
        point_positions : (point_id, x, y), optional
            Three arrays of shape (n_points,): every point of the store once, and its position on the map
            around its leaf's (see :func:`harp.layout.point_positions`), written to ``point_positions`` under
            ``key``. Without them the store keeps no point positions (old ones described another layout).
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string naming how the layout was made, got {key!r}")
        with self.write(rehash=()) as con:
            n_leaves = count_rows(con, "leaves")
            x_array = float_array(x, "x", (n_leaves,))
            y_array = float_array(y, "y", (n_leaves,))
            con.execute("DELETE FROM layout")
            insert(
                con,
                "layout",
                pa.table({"leaf_id": np.arange(n_leaves, dtype=np.int32), "x": x_array, "y": y_array}),
            )
            con.execute("DELETE FROM meta WHERE key = 'layout_key'")
            con.execute("INSERT INTO meta (key, value) VALUES ('layout_key', ?)", [key])
            con.execute("DELETE FROM point_positions")
            if point_positions is not None:
                _insert_point_positions(con, point_positions, key)


def _insert_point_positions(con: Any, positions: tuple[Any, Any, Any], key: str) -> None:
    """Insert every point's map position in leaf and rank order (so zone maps find a leaf's rows)."""
    if not isinstance(positions, tuple | list) or len(positions) != 3:
        raise ValueError("point_positions must be three arrays (point_id, x, y)")
    point_id = integer_array(positions[0], "point_positions point_id")
    n_points = count_rows(con, "points")
    if point_id.size != n_points:
        raise ValueError(
            f"point_positions has {point_id.size} points but the store has {n_points}: give every point once"
        )
    x_array = float_array(positions[1], "point_positions x", (n_points,))
    y_array = float_array(positions[2], "point_positions y", (n_points,))
    if np.unique(point_id).size != n_points:
        raise ValueError("point_positions lists a point id twice: give every point once")
    con.register(
        "new_point_positions", pa.table({"point_id": point_id.astype(np.int64), "x": x_array, "y": y_array})
    )
    try:
        con.execute(
            "INSERT INTO point_positions SELECT p.leaf_id, q.point_id, q.x, q.y, ? FROM new_point_positions q "
            "JOIN points p ON p.point_id = q.point_id ORDER BY p.leaf_id, p.rank_in_leaf",
            [key],
        )
    finally:
        con.unregister("new_point_positions")
    written = count_rows(con, "point_positions")
    if written != n_points:
        raise ValueError(
            f"point_positions names {n_points - written} point ids the store does not hold: give the store's points"
        )
