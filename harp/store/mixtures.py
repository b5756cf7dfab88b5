"""Mixture validations (unions of leaves, see :mod:`harp.mixtures`) and designed mixtures (random halves of one
level's regions, see :mod:`harp.design`): adding one in a transaction, and reading them back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from harp._validation import check_integer
from harp.store.base import StoreBase
from harp.store.checks import float_array, ids_in_range, integer_array
from harp.store.queries import arrow_table, count_rows, first_row, insert, read_sorted

__all__ = ["Mixtures"]

#: The levels a designed mixture's regions come from: the table of their ids, and what a message calls them.
_DESIGN_LEVELS: dict[str, tuple[str, str]] = {
    "large": ("large_nodes", "large nodes"),
    "parent": ("parents", "parents"),
}


class Mixtures(StoreBase):
    """The :class:`harp.store.Store` methods of the ``mixtures`` and ``design_mixtures`` tables."""

    def add_mixture(
        self,
        run_id: str | None,
        config_key: str,
        leaves: Any,
        n_points: int,
        phi: Any,
        variance: Any,
        predicted_c: Any,
        predicted_e: Any,
    ) -> int:
        """Add one mixture validation: a union S of leaves, its measured effect and both envelopes' predictions.

        All the mixture's domains are written in one transaction, under a new ``mixture_id`` (one more than the
        largest stored, 0 for the first).

        Parameters
        ----------
        run_id : str or None
            The run that measured it (see :meth:`add_run`).
        config_key : str
            The measurement config, as in :meth:`add_measurements` (may be ``""``).
        leaves : array-like of int, shape (n_leaves_in_mixture,)
            The distinct leaf ids of S (at least one, each a leaf of the store); stored sorted, as a JSON list.
        n_points : int
            The number of training examples the mixture's finetune used (>= 1).
        phi : array-like of shape (n_domains,)
            Measured effect ``x_d(S)`` on each domain d; finite.
        variance : array-like of shape (n_domains,)
            Its sampling variance; finite, >= 0.
        predicted_c, predicted_e : array-like of shape (n_domains,)
            The HARP-C and HARP-E predictions ``p_d(S)`` of that effect (:func:`harp.mixtures.predict_mixture`);
            finite.

        Returns
        -------
        int
            The new mixture_id.

        Raises
        ------
        ValueError
            Naming the argument: leaf ids that are not integers, repeated or not leaves of the store; no leaf; an
            array whose length is not the store's number of domains; NaN or inf; a negative variance; bad
            ``n_points``, ``run_id`` or ``config_key``; a store without domains.
        """
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id must be a non-empty string or None, got {run_id!r}")
        if not isinstance(config_key, str):
            raise ValueError(f"config_key must be a string, got {config_key!r}")
        check_integer(n_points, "n_points", minimum=1)
        leaf_ids = np.sort(integer_array(leaves, "leaves"))
        if leaf_ids.size == 0:
            raise ValueError("leaves must not be empty: a mixture holds at least one leaf")
        repeated = leaf_ids[1:][leaf_ids[1:] == leaf_ids[:-1]]
        if repeated.size:
            raise ValueError(f"leaves lists leaf {int(repeated[0])} more than once")
        with self.write(rehash=()) as con:
            n_domains = count_rows(con, "domains")
            if n_domains == 0:
                raise ValueError("write the domains before adding a mixture (the store has none)")
            ids_in_range(leaf_ids, "leaves", count_rows(con, "leaves"), "leaves")
            shape = (n_domains,)
            phi_array = float_array(phi, "phi", shape)
            variance_array = float_array(variance, "variance", shape)
            if (variance_array < 0).any():
                d = int(np.argmax(variance_array < 0))
                raise ValueError(f"variance must be >= 0, got {variance_array[d]} for domain {d}")
            predicted_c_array = float_array(predicted_c, "predicted_c", shape)
            predicted_e_array = float_array(predicted_e, "predicted_e", shape)
            row = first_row(con, "SELECT coalesce(max(mixture_id), -1) + 1 FROM mixtures")
            mixture_id = int(row[0]) if row else 0
            insert(
                con,
                "mixtures",
                pa.table(
                    {
                        "mixture_id": pa.array(np.full(n_domains, mixture_id, dtype=np.int64)),
                        "domain_id": pa.array(np.arange(n_domains, dtype=np.int32)),
                        "run_id": pa.array([run_id] * n_domains, pa.string()),
                        "config_key": pa.array([config_key] * n_domains, pa.string()),
                        "leaves": pa.array([json.dumps(leaf_ids.tolist())] * n_domains, pa.string()),
                        "n_points": pa.array(np.full(n_domains, int(n_points), dtype=np.int64)),
                        "phi": phi_array,
                        "variance": variance_array,
                        "predicted_c": predicted_c_array,
                        "predicted_e": predicted_e_array,
                    }
                ),
            )
        return mixture_id

    def mixtures(self, config_key: str | None = None) -> pa.Table:
        """The stored mixture validations (under ``config_key`` when given), one row per mixture and domain.

        Returns
        -------
        pyarrow.Table
            The columns of the ``mixtures`` table (``mixture_id``, ``domain_id``, ``run_id``, ``config_key``,
            ``leaves`` as a JSON list, ``n_points``, ``phi``, ``variance``, ``predicted_c``, ``predicted_e``),
            sorted by mixture_id and domain_id.
        """
        if config_key is not None and not isinstance(config_key, str):
            raise ValueError(f"config_key must be a string or None, got {config_key!r}")
        with self.read() as con:
            if config_key is None:
                return read_sorted(con, "mixtures")
            return arrow_table(
                con,
                "SELECT * FROM mixtures WHERE config_key = ? ORDER BY mixture_id, domain_id",
                [config_key],
            )

    def add_design_mixture(
        self,
        run_id: str | None,
        config_key: str,
        *,
        level: str,
        regions: Any,
        budget: int,
        seed: int,
        shares: Any,
        n_points: int,
        phi: Any,
        variance: Any,
    ) -> int:
        """Add one designed mixture: a subset that keeps some regions of one level, and its measured effect.

        The subset keeps the regions R of ``level`` and draws ``budget`` points uniformly from their points; a
        finetune on them is measured like a mixture validation's (score minus the reference). All the subset's
        domains are written in one transaction, under a new ``design_id`` (one more than the largest stored, 0 for
        the first).

        Parameters
        ----------
        run_id : str or None
            The run that measured it (see :meth:`add_run`).
        config_key : str
            The measurement config, as in :meth:`add_measurements` (may be ``""``).
        level : {"large", "parent"}
            The level of the tree whose regions the subset keeps or drops.
        regions : array-like of int, shape (n_kept,)
            The distinct ids of the kept regions R (at least one, each a large-node id or parent id of the store,
            as ``level`` says); stored sorted, as a JSON list.
        budget : int
            The number of points drawn from the kept regions (>= 1).
        seed : int
            The seed of the draw (>= 0).
        shares : array-like of shape (n_regions,)
            Each region's share of the subset's points, one per large node or parent of the store (those not in
            R included); finite, >= 0, summing to 1 within 1e-6. Stored as a JSON list.
        n_points : int
            The number of training examples the subset's finetune used (>= 1).
        phi : array-like of shape (n_domains,)
            Measured effect on each domain d; finite.
        variance : array-like of shape (n_domains,)
            Its sampling variance; finite, >= 0.

        Returns
        -------
        int
            The new design_id.

        Raises
        ------
        ValueError
            Naming the argument: a level other than "large" or "parent"; region ids that are not integers,
            repeated or not regions of that level; no region; shares of the wrong length, negative or not
            summing to 1; an array whose length is not the store's number of domains; NaN or inf; a negative
            variance; bad ``budget``, ``seed``, ``n_points``, ``run_id`` or ``config_key``; a store without
            domains.
        """
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(f"run_id must be a non-empty string or None, got {run_id!r}")
        if not isinstance(config_key, str):
            raise ValueError(f"config_key must be a string, got {config_key!r}")
        if level not in _DESIGN_LEVELS:
            raise ValueError(f"level must be 'large' or 'parent', got {level!r}")
        for name, value, least in (("budget", budget, 1), ("seed", seed, 0), ("n_points", n_points, 1)):
            check_integer(value, name, minimum=least)
        region_ids = np.sort(integer_array(regions, "regions"))
        if region_ids.size == 0:
            raise ValueError("regions must not be empty: a designed mixture keeps at least one region")
        repeated = region_ids[1:][region_ids[1:] == region_ids[:-1]]
        if repeated.size:
            raise ValueError(f"regions lists region {int(repeated[0])} more than once")
        table, what = _DESIGN_LEVELS[level]
        with self.write(rehash=()) as con:
            n_domains = count_rows(con, "domains")
            if n_domains == 0:
                raise ValueError("write the domains before adding a design mixture (the store has none)")
            n_regions = count_rows(con, table)
            ids_in_range(region_ids, "regions", n_regions, what)
            share_array = float_array(shares, "shares", (n_regions,))
            if (share_array < 0).any():
                r = int(np.argmax(share_array < 0))
                raise ValueError(f"shares must be >= 0, got {share_array[r]} for region {r}")
            total = float(share_array.sum())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"shares must sum to 1 (within 1e-6), got {total!r}")
            shape = (n_domains,)
            phi_array = float_array(phi, "phi", shape)
            variance_array = float_array(variance, "variance", shape)
            if (variance_array < 0).any():
                d = int(np.argmax(variance_array < 0))
                raise ValueError(f"variance must be >= 0, got {variance_array[d]} for domain {d}")
            row = first_row(con, "SELECT coalesce(max(design_id), -1) + 1 FROM design_mixtures")
            design_id = int(row[0]) if row else 0

            def repeat(value: Any, kind: pa.DataType) -> pa.Array:
                return pa.array([value] * n_domains, kind)

            insert(
                con,
                "design_mixtures",
                pa.table(
                    {
                        "design_id": pa.array(np.full(n_domains, design_id, dtype=np.int64)),
                        "domain_id": pa.array(np.arange(n_domains, dtype=np.int32)),
                        "run_id": repeat(run_id, pa.string()),
                        "config_key": repeat(config_key, pa.string()),
                        "level": repeat(level, pa.string()),
                        "regions": repeat(json.dumps(region_ids.tolist()), pa.string()),
                        "budget": repeat(int(budget), pa.int64()),
                        "seed": repeat(int(seed), pa.int64()),
                        "shares": repeat(json.dumps(share_array.tolist()), pa.string()),
                        "n_points": repeat(int(n_points), pa.int64()),
                        "phi": phi_array,
                        "variance": variance_array,
                    }
                ),
            )
        return design_id

    def design_mixtures(self, config_key: str | None = None, level: str | None = None) -> pa.Table:
        """The stored designed mixtures (under ``config_key`` and of ``level`` when given), one row per subset and
        domain.

        Returns
        -------
        pyarrow.Table
            The columns of the ``design_mixtures`` table (``design_id``, ``domain_id``, ``run_id``,
            ``config_key``, ``level``, ``regions`` and ``shares`` as JSON lists, ``budget``, ``seed``,
            ``n_points``, ``phi``, ``variance``), sorted by design_id and domain_id.
        """
        if config_key is not None and not isinstance(config_key, str):
            raise ValueError(f"config_key must be a string or None, got {config_key!r}")
        if level is not None and level not in _DESIGN_LEVELS:
            raise ValueError(f"level must be 'large', 'parent' or None, got {level!r}")
        # Fixed SQL text; only the values are bound (a NULL parameter leaves its column unfiltered).
        query = (
            "SELECT * FROM design_mixtures WHERE (? IS NULL OR config_key = ?) AND (? IS NULL OR level = ?) "
            "ORDER BY design_id, domain_id"
        )
        with self.read() as con:
            return arrow_table(con, query, [config_key, config_key, level, level])
