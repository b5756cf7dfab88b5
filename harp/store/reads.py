"""Reading a store: the inputs of a selection in one snapshot, the layout, texts of leaves, tables, counts and
the summary that `harp info` and the app's header show."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from harp._validation import check_integer
from harp.members import LeafMembers
from harp.store import hashing, migrations
from harp.store.base import StoreBase
from harp.store.connection import tables_present
from harp.store.errors import StoreIncompleteError
from harp.store.queries import (
    BATCH_ROWS,
    FIT_LEAVES,
    arrow_table,
    count_design_mixtures,
    count_mixtures,
    count_rows,
    first_row,
    numpy_column,
    read_sorted,
    stored_hash,
    whitelisted,
)
from harp.store.runs import decode_run

__all__ = ["Reads", "SelectionInputs"]

_UNION_RANGES = 16  # up to this many runs of consecutive leaves, one zone-map pruned range scan each


def _outer(order: str) -> str:
    """An ORDER BY over the columns of a sub-query (no table prefixes)."""
    return ", ".join(part.split(".")[-1] for part in order.split(", "))


@dataclass(frozen=True)
class SelectionInputs:
    """Everything :func:`harp.select` and the app need, read from a store in a few queries.

    Attributes
    ----------
    phi : ndarray of shape (n_leaves, n_domains)
        Posterior mean of the effect of leaf g on domain d.
    sd : ndarray of shape (n_leaves, n_domains)
        Posterior standard deviation.
    measured : ndarray of shape (n_leaves, n_domains), bool
        Whether ``phi[g, d]`` rests on a measurement of leaf g.
    base : ndarray of shape (n_domains,)
        Base-model score ``b_d`` of each domain, in [0, 1].
    active : ndarray of shape (n_domains,), bool
        Whether each domain is active.
    domain_names : list of str
        Name of each domain.
    point_ids : ndarray of shape (n_points,), int64
        Point ids of every leaf, leaf by leaf, each leaf's in rank order (most typical first).
    member_offsets : ndarray of shape (n_leaves + 1,), int64
        Leaf g's points are ``point_ids[member_offsets[g]:member_offsets[g + 1]]``.
    leaf_parent : ndarray of shape (n_leaves,)
        Parent id of each leaf.
    parent_large : ndarray of shape (n_parents,)
        Large-node id of each parent.
    leaf_size : ndarray of shape (n_leaves,)
        Number of points of each leaf.
    content_hash : str or None
        The store's content hash, read in the same snapshot as everything else.
    """

    phi: np.ndarray
    sd: np.ndarray
    measured: np.ndarray
    base: np.ndarray
    active: np.ndarray
    domain_names: list[str]
    point_ids: np.ndarray
    member_offsets: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    leaf_size: np.ndarray
    content_hash: str | None = None

    @functools.cached_property
    def members(self) -> LeafMembers:
        """Point ids of each leaf g in rank order: views into :attr:`point_ids` (no copy)."""
        return LeafMembers(self.point_ids, self.member_offsets)

    @property
    def n_leaves(self) -> int:
        return int(self.phi.shape[0])

    @property
    def n_domains(self) -> int:
        return int(self.phi.shape[1])


class Reads(StoreBase):
    """The :class:`harp.store.Store` methods that read: selection inputs, layout, texts, tables and summaries."""

    def selection_inputs(self) -> SelectionInputs:
        """Read phi, sd, measured, base, active, domain names, members, the tree and the content hash.

        One snapshot, column-wise: the effects are scanned in batches of 2^20 rows and put in place by (leaf,
        domain) into (n_leaves, n_domains) matrices, the points into one array of point ids in (leaf, rank)
        order with the leaves' offsets into it (no sort of either table), and the content hash is read from
        ``meta`` in the same transaction, so it names exactly the contents read. Memory: 8 + 8 + 1 bytes per
        leaf x domain and 8 bytes per point, plus one batch at a time.

        Raises
        ------
        StoreError
            When the store has no tree, no domains or no effects yet.
        """
        with self.read() as con:
            leaves = con.execute("SELECT parent_id, size FROM leaves ORDER BY leaf_id").fetchnumpy()
            parents = con.execute("SELECT large_id FROM parents ORDER BY parent_id").fetchnumpy()
            domains = con.execute("SELECT name, base, active FROM domains ORDER BY domain_id").fetchnumpy()
            leaf_size = np.asarray(leaves["size"], dtype=np.int64)
            n_leaves, n_domains = leaf_size.size, len(domains["name"])
            if n_leaves == 0 or n_domains == 0:
                raise StoreIncompleteError(
                    f"{self.path} has {n_leaves} leaves and {n_domains} domains: build the tree and domains first"
                )
            n_effects = count_rows(con, "effects")
            if n_effects != n_leaves * n_domains:
                raise StoreIncompleteError(
                    f"{self.path} has no posterior effects for its {n_leaves} leaves x {n_domains} domains yet; "
                    "run the measurement and Bayes stages (or `harp synth` for a demo store)"
                )
            # Scanned in storage order and put in place by id: no sort of the big tables.
            phi = np.empty(n_leaves * n_domains)
            sd = np.empty(n_leaves * n_domains)
            measured = np.empty(n_leaves * n_domains, dtype=bool)
            effects = con.sql("SELECT leaf_id, domain_id, mean, sd, measured FROM effects")
            for batch in effects.to_arrow_reader(BATCH_ROWS):
                cell = numpy_column(batch, 0, np.int64) * n_domains + numpy_column(batch, 1, np.int64)
                phi[cell] = numpy_column(batch, 2, np.float64)
                sd[cell] = numpy_column(batch, 3, np.float64)
                measured[cell] = numpy_column(batch, 4, np.bool_)
            offsets = np.zeros(n_leaves + 1, dtype=np.int64)
            np.cumsum(leaf_size, out=offsets[1:])
            point_ids = np.empty(int(offsets[-1]), dtype=np.int64)
            points = con.sql("SELECT point_id, leaf_id, rank_in_leaf FROM points")
            for batch in points.to_arrow_reader(BATCH_ROWS):
                place = offsets[numpy_column(batch, 1, np.int64)] + numpy_column(batch, 2, np.int64)
                point_ids[place] = numpy_column(batch, 0, np.int64)
            content_hash = stored_hash(con)
        shape = (n_leaves, n_domains)
        return SelectionInputs(
            phi=phi.reshape(shape),
            sd=sd.reshape(shape),
            measured=measured.reshape(shape),
            base=np.asarray(domains["base"], dtype=np.float64),
            active=np.asarray(domains["active"], dtype=bool),
            domain_names=[str(name) for name in domains["name"]],
            point_ids=point_ids,
            member_offsets=offsets,
            leaf_parent=np.asarray(leaves["parent_id"], dtype=np.int64),
            parent_large=np.asarray(parents["large_id"], dtype=np.int64),
            leaf_size=leaf_size,
            content_hash=content_hash,
        )

    def layout(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The (x, y) coordinates of the leaves, by leaf id, or None when no layout is stored."""
        with self.read() as con:
            result = con.execute("SELECT x, y FROM layout ORDER BY leaf_id").fetchnumpy()
        if len(result["x"]) == 0:
            return None
        return np.asarray(result["x"], dtype=np.float64), np.asarray(result["y"], dtype=np.float64)

    def has_point_positions(self) -> bool:
        """Whether the store holds the map positions of its points (:meth:`point_positions`)."""
        with self.read() as con:
            return first_row(con, "SELECT 1 FROM point_positions LIMIT 1") is not None

    def point_positions(self, leaf_ids: Any, *, with_texts: bool = False) -> pa.Table:
        """The map positions of the points of some leaves, read column-wise at a cost that grows with the leaves
        asked (the rows are kept in leaf order; zone maps skip the others).

        Parameters
        ----------
        leaf_ids : array-like of int
            The leaves g whose points to read (any order; repeats and ids of no leaf are ignored).
        with_texts : bool, default False
            Add each point's ``rank_in_leaf``, ``text``, ``source`` and ``response``.

        Returns
        -------
        pyarrow.Table
            Columns ``leaf_id``, ``point_id``, ``x``, ``y`` (and the texts), sorted by leaf and, with texts, by
            rank in the leaf; no rows when the store has no positions.
        """
        leaves = np.unique(np.asarray(leaf_ids, dtype=np.int64).ravel())
        leaves = leaves[(leaves >= 0) & (leaves < 2**31)]
        columns = "q.leaf_id, q.point_id, q.x, q.y"
        if with_texts:
            columns += ", p.rank_in_leaf, p.text, p.source, p.response"
        # Consecutive leaf ids as ranges: a few ranges read by a UNION of range scans (each zone-map pruned, a
        # millisecond at 10^7 points), many by one semi-join (one scan, tens of ms, but no huge statement).
        runs = np.split(leaves, np.flatnonzero(np.diff(leaves) != 1) + 1)
        ranges = [(int(run[0]), int(run[-1])) for run in runs if run.size]
        source = "point_positions q" + (" JOIN points p ON p.point_id = q.point_id" if with_texts else "")
        order = "q.leaf_id, p.rank_in_leaf" if with_texts else "q.leaf_id, q.point_id"
        with self.read() as con:
            if not ranges:
                query, params = f"SELECT {columns} FROM {source} WHERE false", []
            elif len(ranges) <= _UNION_RANGES:
                match = "q.leaf_id BETWEEN ? AND ?" + (" AND p.leaf_id BETWEEN ? AND ?" if with_texts else "")
                parts = [f"SELECT {columns} FROM {source} WHERE {match}"] * len(ranges)
                query = "SELECT * FROM (" + " UNION ALL ".join(parts) + f") q ORDER BY {_outer(order)}"
                params = [
                    v for low, high in ranges for v in ((low, high, low, high) if with_texts else (low, high))
                ]
            else:
                query = (
                    f"SELECT {columns} FROM {source} WHERE q.leaf_id IN (SELECT unnest(?::INTEGER[])) "
                    f"ORDER BY {order}"
                )
                params = [leaves.tolist()]
            return arrow_table(con, query, params)

    def layout_key(self) -> str | None:
        """The key of the stored layout (what produced it), or None."""
        return self.meta().get("layout_key")

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (schema_version, created_at, harp_version, layout_key, ...)."""
        with self.read() as con:
            return dict(con.execute("SELECT key, value FROM meta").fetchall())

    def leaf_examples(
        self, leaf_id: int, limit: int = 5, offset: int = 0, *, with_response: bool = False
    ) -> list[tuple[Any, ...]]:
        """Points of one leaf in rank order, as ``(point_id, text, source)`` tuples, or with ``with_response``
        as ``(point_id, text, source, response)``.

        Parameters
        ----------
        leaf_id : int
            The leaf g.
        limit : int, default 5
            At most this many points.
        offset : int, default 0
            Skip this many first.
        with_response : bool, default False
            Add each point's ``response`` (None where the store has none).
        """
        for name, value in (("leaf_id", leaf_id), ("limit", limit), ("offset", offset)):
            check_integer(value, name, minimum=0)
        with self.read() as con:
            n_leaves = count_rows(con, "leaves")
            if leaf_id >= n_leaves:
                raise ValueError(f"leaf_id must lie in 0..{n_leaves - 1}, got {leaf_id}")
            rows = con.execute(
                "SELECT point_id, text, source, response FROM points WHERE leaf_id = ? "
                "ORDER BY rank_in_leaf LIMIT ? OFFSET ?",
                [int(leaf_id), int(limit), int(offset)],
            ).fetchall()
        if with_response:
            return [(int(point), text, source, response) for point, text, source, response in rows]
        return [(int(point), text, source) for point, text, source, _ in rows]

    def leaf_previews(self, per_leaf: int = 3) -> pa.Table:
        """The first ``per_leaf`` points of every leaf in one query (for hover texts).

        Returns
        -------
        pyarrow.Table
            Columns ``leaf_id``, ``rank_in_leaf``, ``point_id``, ``text``, ``source``, ``response``, sorted by leaf
            and rank.
        """
        check_integer(per_leaf, "per_leaf", minimum=0)
        with self.read() as con:
            return arrow_table(
                con,
                "SELECT leaf_id, rank_in_leaf, point_id, text, source, response FROM points WHERE rank_in_leaf < ? "
                "ORDER BY leaf_id, rank_in_leaf",
                [int(per_leaf)],
            )

    def content_hash(self, *, recompute: bool = False) -> str:
        """SHA-256 of the canonical contents of the points, tree, domains and effects.

        Rows are taken in primary-key order and values encoded by type, so the hash depends neither on the
        physical row order nor on the file (it survives Parquet export and import); runs, selections, meta,
        measurements, mixture validations and designed mixtures are left out. See :mod:`harp.store.hashing`.

        Parameters
        ----------
        recompute : bool, default False
            Compute it from the tables (seconds at 10^7 points) instead of reading the value every write keeps
            in ``meta`` (one row); both are equal, which the tests check.
        """
        with self.read() as con:
            return hashing.recompute(con) if recompute else stored_hash(con)

    def table_names(self) -> list[str]:
        """The tables of this store, in schema order."""
        with self.read() as con:
            present = tables_present(con)
        return [name for name in migrations.TABLE_KEYS if name in present]

    def count(self, name: str) -> int:
        """The number of rows of one of the store's tables (one SQL count).

        Raises
        ------
        ValueError
            ``invalid table name`` when ``name`` is not one of the store's tables.
        """
        whitelisted(name)
        with self.read() as con:
            if name not in tables_present(con):
                raise ValueError(f"invalid table name {name!r}: {self.path} has no such table")
            return count_rows(con, name)

    def read_table(self, name: str) -> pa.Table:
        """A whole table as a pyarrow Table, rows in primary-key order.

        Raises
        ------
        ValueError
            ``invalid table name`` when ``name`` is not one of the store's tables.
        """
        if not isinstance(name, str) or name not in migrations.TABLE_KEYS:
            raise ValueError(
                f"invalid table name {name!r}; expected one of {', '.join(migrations.TABLE_KEYS)}"
            )
        with self.read() as con:
            if name not in tables_present(con):
                raise ValueError(f"invalid table name {name!r}: {self.path} has no such table")
            return read_sorted(con, name)

    def summary(self, *, with_hash: bool = True) -> dict[str, Any]:
        """Counts, schema version, content hash and runs, for `harp info` and the app's header.

        Every figure is one SQL aggregate or a row of ``meta``: the memory used does not grow with the store.

        Measured leaves. ``n_measured_leaves`` counts the leaves with a measurement, ``n_held_out_leaves`` those
        of them that ``harp infer --hold-out`` left out of the empirical-Bayes fit (from ``meta.effects_source``),
        so ``n_measured_leaves - n_held_out_leaves`` leaves carry a measured posterior effect (``n_fit_leaves``).
        A store whose effects were not written by ``harp infer`` counts the leaves its effects mark measured.

        Parameters
        ----------
        with_hash : bool, default True
            Include ``content_hash`` (one row of ``meta``); None otherwise.
        """
        with self.read() as con:
            present = tables_present(con)
            counts = {name: count_rows(con, name) for name in migrations.TABLE_KEYS if name in present}
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if FIT_LEAVES in meta:  # kept by every write of the effects
                fit_leaves = int(meta[FIT_LEAVES])
            else:  # a store from before schema version 3's writes: one scan of the effects
                row = first_row(con, "SELECT count(DISTINCT leaf_id) FROM effects WHERE measured")
                fit_leaves = int(row[0]) if row else 0
            row = first_row(con, "SELECT count(*) FROM domains WHERE active")
            active = int(row[0]) if row else 0
            n_mixtures = count_mixtures(con)
            n_design_mixtures = count_design_mixtures(con)
            content_hash = stored_hash(con) if with_hash else None
            runs = arrow_table(con, "SELECT * FROM runs ORDER BY started_at, run_id").to_pylist()
        source = json.loads(meta["effects_source"]) if meta.get("effects_source") else None
        held_out = int(source.get("held_out_leaves") or 0) if isinstance(source, dict) else 0
        return {
            "path": str(self.path),
            "schema_version": int(meta["schema_version"]),
            "harp_version": meta.get("harp_version"),
            "created_at": meta.get("created_at"),
            "layout_key": meta.get("layout_key"),
            "effects_source": source,
            "content_hash": content_hash,
            "n_points": counts.get("points", 0),
            "n_leaves": counts.get("leaves", 0),
            "n_parents": counts.get("parents", 0),
            "n_large_nodes": counts.get("large_nodes", 0),
            "n_domains": counts.get("domains", 0),
            "n_active_domains": active,
            "n_measured_leaves": fit_leaves + held_out,
            "n_held_out_leaves": held_out,
            "n_fit_leaves": fit_leaves,
            "n_measurements": counts.get("measurements", 0),
            "has_effects": counts.get("effects", 0) > 0,
            "has_layout": counts.get("layout", 0) > 0,
            "has_point_positions": counts.get("point_positions", 0) > 0,
            "n_selections": counts.get("selections", 0),
            "n_mixtures": n_mixtures,
            "n_design_mixtures": n_design_mixtures,
            "counts": counts,
            "runs": [decode_run(record) for record in runs],
        }
