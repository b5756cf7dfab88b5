"""Saved selections: their settings, their points in order, and the content hash they were computed from."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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
        _check_hash(store_hash, required=False)
        return self._insert_selection(
            name,
            overwrite,
            points,
            point_leaves,
            {
                "envelope": envelope_name,
                "method": "HARP-" + envelope_name,
                "weights": weights_json,
                "budget": budget_value,
                "pinned": pinned_json,
                "excluded": excluded_json,
                "store_hash": store_hash,
            },
        )

    def save_design_selection(
        self,
        name: str,
        *,
        settings: Mapping[str, Any],
        selection: Any,
        manifest: Mapping[str, Any],
        store_hash: str,
        overwrite: bool = False,
    ) -> int:
        """Save a design selection (:mod:`harp.design_selection`) with its settings and its manifest.

        Parameters
        ----------
        name : str
            Unique name; an existing name is refused unless ``overwrite``.
        settings : dict
            ``rule`` ("C" or "E"), ``level`` ("large" or "parent"), ``config_key`` and ``bootstrap_seed`` of the
            fit, ``budget`` (None: every kept point) and ``seed`` of the draw (``DesignSettings.to_dict()``).
        selection : harp.Selection
            Its ``points`` and ``point_leaves`` are stored, in order.
        manifest : dict
            The manifest ``harp design select`` writes for it (``design_manifest``), kept as given so an export
            of the saved selection is that file; it must name the same rule, budget, store hash and point count.
        store_hash : str
            The content hash of the store the fit was read from.

        Returns
        -------
        int
            The selection id.

        Raises
        ------
        ValueError
            Naming the argument: an empty name, settings with a missing, unknown or bad entry, a manifest that
            does not describe this selection, a malformed hash, or a name taken without ``overwrite``.
        """
        from harp._validation import check_design_settings

        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        checked = check_design_settings(dict(settings) if isinstance(settings, Mapping) else settings)
        points = integer_array(getattr(selection, "points", None), "selection.points")
        point_leaves = integer_array(getattr(selection, "point_leaves", None), "selection.point_leaves")
        if points.size != point_leaves.size:
            raise ValueError(
                f"selection.points has {points.size} entries but selection.point_leaves has {point_leaves.size}"
            )
        _check_hash(store_hash, required=True)
        manifest_json = _design_manifest_json(manifest, checked, store_hash, int(points.size))
        return self._insert_selection(
            name,
            overwrite,
            points,
            point_leaves,
            {
                "envelope": None,
                "method": f"design-{checked['rule']}",
                "design": json.dumps(checked),
                "manifest": manifest_json,
                "weights": None,
                "budget": checked["budget"],
                "pinned": "[]",
                "excluded": "[]",
                "store_hash": store_hash,
            },
        )

    def _insert_selection(
        self,
        name: str,
        overwrite: bool,
        points: np.ndarray,
        point_leaves: np.ndarray,
        columns: dict[str, Any],
    ) -> int:
        """Write one selection row (``columns``: its settings, checked) and its points, replacing ``name`` only
        when ``overwrite``."""
        store_hash = columns.pop("store_hash")
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
            values = {
                "selection_id": selection_id,
                "name": name,
                "created_at": utc_now(),
                **columns,
                "store_hash": stored_hash(con) if store_hash is None else str(store_hash),
                "n_points": int(points.size),
            }
            # The column names are this module's own, never the caller's text.
            con.execute(
                f"INSERT INTO selections ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                list(values.values()),
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
        """Saved selections (settings, no points), oldest first.

        Each has ``method`` (``HARP-C``, ``HARP-E``, ``design-C`` or ``design-E``); a design selection also its
        ``design`` settings and its ``manifest`` (dicts), None for the others.
        """
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


def _check_hash(store_hash: Any, *, required: bool) -> None:
    if store_hash is None and not required:
        return
    if not isinstance(store_hash, str) or not re.fullmatch(r"[0-9a-f]{64}", store_hash):
        raise ValueError(f"store_hash must be a content hash (64 hex digits), got {store_hash!r}")


def _design_manifest_json(manifest: Any, settings: dict[str, Any], store_hash: str, n_points: int) -> str:
    """The manifest as JSON, once it is seen to describe this design selection."""
    if not isinstance(manifest, Mapping) or manifest.get("format") != "harp-selection/1":
        raise ValueError(
            f"manifest must be a harp-selection/1 manifest (design_manifest), got {manifest!r:.200}"
        )
    design: Mapping[str, Any] = manifest["design"] if isinstance(manifest.get("design"), Mapping) else {}
    expected = {
        "envelope": (manifest.get("envelope"), f"design-{settings['rule']}"),
        "budget": (manifest.get("budget"), settings["budget"]),
        "store_hash": (manifest.get("store_hash"), store_hash),
        "counts.points": ((manifest.get("counts") or {}).get("points"), n_points),
        **{
            f"design.{key}": (design.get(key), settings[key])
            for key in ("rule", "level", "config_key", "seed", "bootstrap_seed")
        },
    }
    for key, (given, wanted) in expected.items():
        if given != wanted:
            raise ValueError(f"manifest.{key} is {given!r} but the selection's is {wanted!r}")
    try:
        return json.dumps(dict(manifest))
    except (TypeError, ValueError) as error:
        raise ValueError(f"manifest must be JSON-serialisable: {error}") from None


def _decode_selection(record: dict[str, Any]) -> dict[str, Any]:
    for field in ("weights", "pinned", "excluded", "design", "manifest"):
        record[field] = json.loads(record[field]) if record[field] is not None else None
    return record
