"""Saved selections: their settings, their points in order, and the content hash they were computed from."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa

from harp.store.base import StoreBase
from harp.store.checks import integer_array, json_list
from harp.store.migrations import utc_now
from harp.store.queries import arrow_table, first_row, insert, stored_hash

__all__ = ["Selections"]


class Selections(StoreBase):
    """The :class:`harp.store.Store` methods of the ``selections`` and ``selection_points`` tables."""

    def save_selection(
        self,
        name: str,
        *,
        envelope: str,
        weights: Any,
        budget: int | None,
        pinned: Any,
        excluded: Any,
        selection: Any,
        overwrite: bool = False,
        store_hash: str | None = None,
    ) -> int:
        """Save a selection with the settings that produced it and the content hash of what it was computed from.

        Parameters
        ----------
        name : str
            Unique name; an existing name is refused unless ``overwrite``.
        envelope : {"C", "E"}
            Any spelling :func:`harp.select` accepts.
        weights : array-like of shape (n_domains,) or None
        budget : int or None
        pinned, excluded : sequence of int or None
            Leaf ids.
        selection : harp.Selection
            Its ``points`` and ``point_leaves`` are stored, in order.
        overwrite : bool, default False
        store_hash : str, optional
            The content hash of the snapshot the selection was computed from (``SelectionInputs.content_hash``),
            recorded as given: a write since then (another ``harp infer``) must not be credited to it. Default:
            the store's hash in this transaction, right only when nothing was written since the inputs were read.

        Returns
        -------
        int
            The selection id.
        """
        from harp._validation import check_budget, check_envelope

        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        envelope_name = check_envelope(envelope)
        budget_value = check_budget(budget)
        weights_json = None if weights is None else json_list(weights, "weights", float)
        pinned_json = json_list(pinned, "pinned", int)
        excluded_json = json_list(excluded, "excluded", int)
        points = integer_array(getattr(selection, "points", None), "selection.points")
        point_leaves = integer_array(getattr(selection, "point_leaves", None), "selection.point_leaves")
        if points.size != point_leaves.size:
            raise ValueError(
                f"selection.points has {points.size} entries but selection.point_leaves has {point_leaves.size}"
            )
        if store_hash is not None and not re.fullmatch(r"[0-9a-f]{64}", str(store_hash)):
            raise ValueError(f"store_hash must be a content hash (64 hex digits), got {store_hash!r}")
        with self.write(rehash=()) as con:
            existing = first_row(con, "SELECT selection_id FROM selections WHERE name = ?", [name])
            if existing is not None:
                if not overwrite:
                    raise ValueError(
                        f"name: a selection named {name!r} already exists in {self.path}; "
                        "pass overwrite=True to replace it"
                    )
                con.execute("DELETE FROM selection_points WHERE selection_id = ?", [existing[0]])
                con.execute("DELETE FROM selections WHERE selection_id = ?", [existing[0]])
            row = first_row(con, "SELECT coalesce(max(selection_id), -1) + 1 FROM selections")
            selection_id = int(row[0]) if row else 0
            con.execute(
                "INSERT INTO selections (selection_id, name, created_at, envelope, weights, budget, pinned, excluded, "
                "store_hash, n_points) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    selection_id,
                    name,
                    utc_now(),
                    envelope_name,
                    weights_json,
                    budget_value,
                    pinned_json,
                    excluded_json,
                    stored_hash(con) if store_hash is None else str(store_hash),
                    int(points.size),
                ],
            )
            insert(
                con,
                "selection_points",
                pa.table(
                    {
                        "selection_id": np.full(points.size, selection_id, dtype=np.int32),
                        "rank": np.arange(points.size, dtype=np.int64),
                        "point_id": points,
                        "leaf_id": point_leaves.astype(np.int32),
                    }
                ),
            )
        return selection_id

    def list_selections(self) -> list[dict[str, Any]]:
        """Saved selections (settings, no points), oldest first."""
        with self.read() as con:
            table = arrow_table(con, "SELECT * FROM selections ORDER BY selection_id")
        return [_decode_selection(record) for record in table.to_pylist()]

    def load_selection(self, name: str) -> dict[str, Any]:
        """A saved selection: its settings plus ``points`` and ``point_leaves`` (int64 arrays, in order).

        Raises
        ------
        ValueError
            When no selection has that name.
        """
        with self.read() as con:
            table = arrow_table(con, "SELECT * FROM selections WHERE name = ?", [name])
            if table.num_rows == 0:
                names = [
                    row[0]
                    for row in con.execute("SELECT name FROM selections ORDER BY selection_id").fetchall()
                ]
                raise ValueError(
                    f"name: no selection named {name!r} in {self.path} (saved: {', '.join(names) or 'none'})"
                )
            record = _decode_selection(table.to_pylist()[0])
            points = con.execute(
                "SELECT point_id, leaf_id FROM selection_points WHERE selection_id = ? ORDER BY rank",
                [record["selection_id"]],
            ).fetchnumpy()
        record["points"] = np.asarray(points["point_id"], dtype=np.int64)
        record["point_leaves"] = np.asarray(points["leaf_id"], dtype=np.int64)
        return record


def _decode_selection(record: dict[str, Any]) -> dict[str, Any]:
    for field in ("weights", "pinned", "excluded"):
        record[field] = json.loads(record[field]) if record[field] is not None else None
    return record
