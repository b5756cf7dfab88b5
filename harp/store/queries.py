"""SQL helpers shared by the store's methods: reads into Arrow and numpy, inserts, counts and ``meta`` rows.

Table names reach SQL text only through :func:`whitelisted` (the tables of :data:`harp.store.migrations.TABLE_KEYS`);
values are always bound as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from harp.store import hashing, migrations

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "BATCH_ROWS",
    "FIT_LEAVES",
    "SOURCE_VIEW",
    "arrow_table",
    "count_design_mixtures",
    "count_mixtures",
    "count_rows",
    "first_row",
    "insert",
    "numpy_column",
    "read_sorted",
    "record_fit_leaves",
    "stored_hash",
    "whitelisted",
]

SOURCE_VIEW = "_harp_source"  # name under which an Arrow table is registered for one INSERT
BATCH_ROWS = 1 << 20  # rows per batch when a big table is read column-wise


def arrow_table(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] | None = None) -> pa.Table:
    """The result of ``query`` (with ``params`` bound) as a pyarrow Table."""
    relation = con.sql(query, params=list(params)) if params else con.sql(query)
    to_table = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return to_table()


def insert(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, *, verb: str = "INSERT") -> None:
    """Insert an Arrow table whose columns are named as the table's; ``table`` comes from the whitelist only."""
    whitelisted(table)
    columns = ", ".join(f'"{name}"' for name in data.column_names)
    con.register(SOURCE_VIEW, data)
    try:
        con.execute(f"{verb} INTO {table} ({columns}) SELECT {columns} FROM {SOURCE_VIEW}")
    finally:
        con.unregister(SOURCE_VIEW)


def first_row(
    con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()
) -> tuple[Any, ...] | None:
    """The first row of a query, or None; reads the result to the end so the connection stays usable."""
    rows = con.execute(query, list(params)).fetchall()
    return rows[0] if rows else None


def whitelisted(table: str) -> str:
    """``table`` itself when it is one of the store's tables; the only way a name reaches SQL text."""
    if table not in migrations.TABLE_KEYS:
        raise ValueError(f"invalid table name {table!r}; expected one of {', '.join(migrations.TABLE_KEYS)}")
    return table


def count_rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """The number of rows of one of the store's tables (``table`` is checked against the whitelist)."""
    row = first_row(con, f"SELECT count(*) FROM {whitelisted(table)}")
    return int(row[0]) if row else 0


def count_mixtures(con: duckdb.DuckDBPyConnection) -> int:
    """The number of mixture validations (a mixture has one row per domain)."""
    row = first_row(con, "SELECT count(DISTINCT mixture_id) FROM mixtures")
    return int(row[0]) if row else 0


def count_design_mixtures(con: duckdb.DuckDBPyConnection) -> int:
    """The number of designed mixtures (a subset has one row per domain)."""
    row = first_row(con, "SELECT count(DISTINCT design_id) FROM design_mixtures")
    return int(row[0]) if row else 0


FIT_LEAVES = "effects_measured_leaves"  # meta: leaves whose effects rest on a measurement (any domain)


def record_fit_leaves(con: duckdb.DuckDBPyConnection, count: int | None) -> None:
    """Keep ``meta.effects_measured_leaves`` with the effects, in their transaction (None: count them in SQL)."""
    if count is None:
        row = first_row(con, "SELECT count(DISTINCT leaf_id) FROM effects WHERE measured")
        count = int(row[0]) if row else 0
    con.execute("DELETE FROM meta WHERE key = ?", [FIT_LEAVES])
    con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [FIT_LEAVES, str(count)])


def stored_hash(con: duckdb.DuckDBPyConnection) -> str:
    """The content hash kept in ``meta`` (every write keeps it current in its own transaction)."""
    row = first_row(con, "SELECT value FROM meta WHERE key = 'content_hash'")
    if row is None:  # meta lost its row (edited by hand): the slow way, still right
        return hashing.recompute(con)
    return str(row[0])


# Arrow's fixed-width types and their numpy dtypes, for reading a column's buffer in place (:func:`numpy_column`).
_FIXED_WIDTH = {
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
    pa.float32(): np.float32, pa.float64(): np.float64,
}  # fmt: skip


def numpy_column(batch: pa.RecordBatch, index: int, dtype: type) -> np.ndarray:
    """Column ``index`` of a record batch as a numpy array of ``dtype`` (no Python object per row).

    A column without nulls is read from its Arrow buffer directly: pyarrow's own ``to_numpy`` imports pandas on
    its first call (a fifth of a second of every `harp select`), and the store's columns are NOT NULL.
    """
    column = batch.column(index)
    if column.null_count == 0:
        n, start = len(column), column.offset
        data = column.buffers()[1]
        if column.type == pa.bool_():
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=start + n, bitorder="little")
            return bits[start:].view(np.bool_).astype(dtype, copy=False)
        native = _FIXED_WIDTH.get(column.type)
        if native is not None:
            width = np.dtype(native).itemsize
            return np.frombuffer(data, dtype=native, count=n, offset=start * width).astype(dtype, copy=False)
    return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def read_sorted(con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
    """A whole table as a pyarrow Table, rows in primary-key order (:data:`harp.store.migrations.TABLE_KEYS`)."""
    keys = ", ".join(migrations.TABLE_KEYS[whitelisted(table)])
    return arrow_table(con, f"SELECT * FROM {table} ORDER BY {keys}")
