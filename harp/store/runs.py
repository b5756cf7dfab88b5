"""Run records: a run's start, its end (status and timings), and the list of them."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from harp.store.base import StoreBase
from harp.store.checks import json_mapping, nonempty_string
from harp.store.migrations import utc_now
from harp.store.queries import arrow_table, first_row

__all__ = ["Runs", "decode_run"]


class Runs(StoreBase):
    """The :class:`harp.store.Store` methods of the ``runs`` table."""

    def add_run(
        self,
        kind: str,
        config: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        status: str = "running",
    ) -> str:
        """Record the start of a run and return its id (a random hex id unless given)."""
        nonempty_string(kind, "kind")
        run_id = nonempty_string(secrets.token_hex(8) if run_id is None else run_id, "run_id")
        config_json = json_mapping(config or {}, "config")
        with self.write(rehash=()) as con:
            if first_row(con, "SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
                raise ValueError(f"run_id {run_id!r} already exists in {self.path}")
            con.execute(
                "INSERT INTO runs (run_id, kind, config, started_at, status) VALUES (?, ?, ?, ?, ?)",
                [run_id, kind, config_json, utc_now(), status],
            )
        return run_id

    def finish_run(
        self, run_id: str, *, status: str = "done", timings: Mapping[str, Any] | None = None
    ) -> None:
        """Record the end of a run: its status (``done``, ``failed``, ...) and timings (seconds by stage)."""
        timings_json = json_mapping(timings, "timings")
        with self.write(rehash=()) as con:
            if not first_row(con, "SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
                raise ValueError(f"run_id {run_id!r} is not a run of {self.path}")
            con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, timings = ? WHERE run_id = ?",
                [utc_now(), status, timings_json, run_id],
            )

    def runs(self) -> list[dict[str, Any]]:
        """Run records, oldest first, with ``config`` and ``timings`` decoded from JSON."""
        with self.read() as con:
            table = arrow_table(con, "SELECT * FROM runs ORDER BY started_at, run_id")
        return [decode_run(record) for record in table.to_pylist()]


def decode_run(record: dict[str, Any]) -> dict[str, Any]:
    """A ``runs`` row as a dict, its ``config`` and ``timings`` decoded from JSON (in place; also returned)."""
    for field in ("config", "timings"):
        record[field] = json.loads(record[field]) if record[field] else None
    return record
