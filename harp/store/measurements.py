"""Writing and listing the raw measurements ``phi[g, d]`` of measured leaves g."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from harp.store.base import StoreBase
from harp.store.checks import (
    finished_record,
    float_array,
    ids_in_range,
    integer_array,
    string_array,
    table_column,
)
from harp.store.migrations import utc_now
from harp.store.queries import count_rows, first_row, insert

__all__ = ["Measurements"]


class Measurements(StoreBase):
    """The :class:`harp.store.Store` methods of the ``measurements`` table."""

    def add_measurements(self, rows: Any, *, record: Mapping[str, Any] | None = None) -> int:
        """Add (or replace) raw measurements, in one transaction.

        Parameters
        ----------
        rows : table-like or sequence of mappings
            Columns ``leaf_id``, ``domain_id``, ``phi`` (finite), ``variance`` (finite, >= 0) and optionally
            ``n_eval``, ``run_id``, ``config_key`` (default ``""``) and ``created_at`` (default now, UTC). A row
            with the same (leaf_id, domain_id, config_key) as a stored one replaces it.
        record : mapping, optional
            A finished run record written in the same transaction (``run_id``, ``kind``, ``config``, ``timings``;
            status ``done``), so that measurements and the record that says they were made land together: a run
            killed between them leaves neither. Its ``run_id`` must be new.

        Returns
        -------
        int
            The number of rows written.
        """
        import pyarrow.compute as pc  # lazily: most commands never need it

        if (
            isinstance(rows, Sequence)
            and not isinstance(rows, str)
            and (not rows or isinstance(rows[0], Mapping))
        ):
            names = (
                "leaf_id",
                "domain_id",
                "phi",
                "variance",
                "n_eval",
                "run_id",
                "config_key",
                "created_at",
            )
            rows = {
                name: [row.get(name) for row in rows] for name in names if any(name in row for row in rows)
            }
            if not rows:
                return 0
        leaf_id = integer_array(table_column(rows, "leaf_id", "rows", required=True), "rows['leaf_id']")
        n_rows = leaf_id.size
        if n_rows == 0:
            return 0
        domain_id = integer_array(table_column(rows, "domain_id", "rows", required=True), "rows['domain_id']")
        if domain_id.size != n_rows:
            raise ValueError(f"rows['domain_id'] has {domain_id.size} entries, expected {n_rows}")
        phi = float_array(table_column(rows, "phi", "rows", required=True), "rows['phi']", (n_rows,))
        variance = float_array(
            table_column(rows, "variance", "rows", required=True), "rows['variance']", (n_rows,)
        )
        if (variance < 0).any():
            raise ValueError(f"rows['variance'] must be >= 0, got {variance[np.argmax(variance < 0)]}")
        n_eval_column = table_column(rows, "n_eval", "rows", required=False)
        if n_eval_column is None:
            n_eval = pa.nulls(n_rows, pa.int32())
        else:
            values = integer_array(n_eval_column, "rows['n_eval']")
            if values.size != n_rows or (values < 0).any():
                raise ValueError(f"rows['n_eval'] must hold {n_rows} integers >= 0")
            n_eval = pa.array(values.astype(np.int32))
        run_column = table_column(rows, "run_id", "rows", required=False)
        run_id = (
            pa.nulls(n_rows, pa.string())
            if run_column is None
            else string_array(run_column, "rows['run_id']", n_rows)
        )
        key_column = table_column(rows, "config_key", "rows", required=False)
        config_key = (
            pa.array([""] * n_rows, pa.string())
            if key_column is None
            else pc.fill_null(string_array(key_column, "rows['config_key']", n_rows), "")
        )
        created_column = table_column(rows, "created_at", "rows", required=False)
        if created_column is None:
            created_at = pa.array([utc_now()] * n_rows, pa.timestamp("us"))
        else:
            try:
                created_at = pa.array(created_column, pa.timestamp("us"))
            except (pa.ArrowException, TypeError) as error:
                raise ValueError(f"rows['created_at'] must hold timestamps: {error}") from None
        keys = np.unique(np.asarray(config_key.to_pylist(), dtype=object).astype(str), return_inverse=True)[1]
        combined = np.stack([leaf_id, domain_id, keys.astype(np.int64)], axis=1)
        unique, counts = np.unique(combined, axis=0, return_counts=True)
        if (counts > 1).any():
            g, d, _ = unique[np.argmax(counts > 1)]
            raise ValueError(f"rows measure leaf {g} on domain {d} twice with the same config_key")
        table = pa.table(
            {
                "leaf_id": leaf_id.astype(np.int32),
                "domain_id": domain_id.astype(np.int32),
                "phi": phi,
                "variance": variance,
                "n_eval": n_eval,
                "run_id": run_id,
                "config_key": config_key,
                "created_at": created_at,
            }
        )
        finished = None if record is None else finished_record(record)
        with self.write(rehash=()) as con:
            ids_in_range(leaf_id, "rows['leaf_id']", count_rows(con, "leaves"), "leaves")
            ids_in_range(domain_id, "rows['domain_id']", count_rows(con, "domains"), "domains")
            insert(con, "measurements", table, verb="INSERT OR REPLACE")
            if finished is not None:
                if first_row(con, "SELECT 1 FROM runs WHERE run_id = ?", [finished[0]]):
                    raise ValueError(f"record['run_id'] {finished[0]!r} already exists in {self.path}")
                now = utc_now()
                con.execute(
                    "INSERT INTO runs (run_id, kind, config, started_at, finished_at, status, timings) "
                    "VALUES (?, ?, ?, ?, ?, 'done', ?)",
                    [finished[0], finished[1], finished[2], now, now, finished[3]],
                )
        return n_rows

    def measured_leaves(self, config_key: str | None = None) -> np.ndarray:
        """Sorted ids of the leaves with at least one measurement (under ``config_key`` when given)."""
        with self.read() as con:
            if config_key is None:
                result = con.execute(
                    "SELECT DISTINCT leaf_id FROM measurements ORDER BY leaf_id"
                ).fetchnumpy()
            else:
                result = con.execute(
                    "SELECT DISTINCT leaf_id FROM measurements WHERE config_key = ? ORDER BY leaf_id",
                    [config_key],
                ).fetchnumpy()
        return np.asarray(result["leaf_id"], dtype=np.int64)
