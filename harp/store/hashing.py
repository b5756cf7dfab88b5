"""The store's content hash: what a saved selection or a manifest says it was computed from.

The content hash is a SHA-256 over the canonical contents of :data:`HASHED_TABLES` (the points, the tree, the
domains and the posterior effects). Each table has its own digest, computed column by column over its rows in
primary-key order (values encoded by type: integers as little-endian int64, floats as float64, booleans as one
byte, texts as their lengths and UTF-8 bytes, a null mask for each column), so it depends neither on the physical
row order, nor on the file, nor on how the rows are split into batches. The content hash combines the table
digests in a fixed order.

The digests live in the store's ``meta`` table (``table_hash:<table>`` and ``content_hash``); every write updates
the digests of the tables it changed in its own transaction (see :meth:`harp.Store.write`), so reading the hash is
one row of ``meta`` and always describes the snapshot it is read in. A write recomputes only what it changed:
``set_active`` rehashes the domains (a few rows), ``write_effects`` the effects from the arrays it inserts.

:func:`content_hash_v1` is the hash of schema versions 1-2 (one SHA-256 over every table, read whole into memory);
migration ``m003_content_hash`` uses it to carry saved selections' hashes over to this one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

import duckdb
import numpy as np
import pyarrow as pa

__all__ = [
    "HASHED_TABLES",
    "arrow_digest",
    "combine",
    "content_hash_v1",
    "read_digests",
    "recompute",
    "record_digests",
    "table_digest",
]

#: Tables whose canonical contents make up the content hash, in the order they are combined.
HASHED_TABLES: tuple[str, ...] = ("large_nodes", "parents", "leaves", "points", "domains", "effects")

#: The columns that order each hashed table's rows canonically (their primary keys).
_KEYS: dict[str, tuple[str, ...]] = {
    "large_nodes": ("large_id",),
    "parents": ("parent_id",),
    "leaves": ("leaf_id",),
    "points": ("point_id",),
    "domains": ("domain_id",),
    "effects": ("leaf_id", "domain_id"),
}

_FORMAT = b"harp-content-hash-v2\n"
_FORMAT_V1 = b"harp-content-hash-v1\n"
_BATCH_ROWS = 1 << 20  # rows per batch when a table is read for hashing: bounded memory at any size
_META_PREFIX = "table_hash:"


def _is_string_view(kind: pa.DataType) -> bool:
    check = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(check(kind)) if check is not None else False


def _kind(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_string_view(kind):
        return "text"
    return "json"


class _ColumnDigest:
    """SHA-256 streams of one column's null mask and values, fed batch by batch."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.nulls = hashlib.sha256()
        self.values = hashlib.sha256()
        self.data = hashlib.sha256()  # text bytes (texts only)

    def update(self, column: pa.Array | pa.ChunkedArray) -> None:
        import pyarrow.compute as pc  # lazily: most commands never need it

        self.nulls.update(pc.is_null(column).to_numpy(zero_copy_only=False).astype(np.uint8).tobytes())
        if self.kind == "int":
            self.values.update(pc.fill_null(column, 0).to_numpy().astype("<i8").tobytes())
        elif self.kind == "float":
            self.values.update(pc.fill_null(column, 0.0).to_numpy().astype("<f8").tobytes())
        elif self.kind == "bool":
            values = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
            self.values.update(values.astype(np.uint8).tobytes())
        elif self.kind == "text":
            array = pc.fill_null(column, "").cast(pa.large_string())
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            buffers = array.buffers()
            offsets = np.frombuffer(buffers[1], dtype="<i8")[array.offset : array.offset + len(array) + 1]
            self.values.update(np.diff(offsets).astype("<i8").tobytes())
            if len(array) and buffers[2] is not None:
                self.data.update(memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])])
        else:
            for value in column.to_pylist():
                self.values.update(json.dumps(value, default=str).encode() + b"\n")

    def line(self) -> str:
        return (
            f"column {self.name} {self.kind} {self.nulls.hexdigest()} {self.values.hexdigest()} "
            f"{self.data.hexdigest()}\n"
        )


def _digest_batches(table: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch | pa.Table]) -> str:
    columns = [_ColumnDigest(field.name, _kind(field.type)) for field in schema]
    n_rows = 0
    for batch in batches:
        n_rows += batch.num_rows
        for column, values in zip(columns, batch.columns, strict=True):
            column.update(values)
    table_hash = hashlib.sha256(f"table {table} {n_rows}\n".encode())
    for column in columns:
        table_hash.update(column.line().encode())
    return table_hash.hexdigest()


def _check_table(table: str) -> str:
    if table not in _KEYS:
        raise ValueError(f"invalid table name {table!r}; the hashed tables are {', '.join(HASHED_TABLES)}")
    return table


def table_digest(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The digest of one hashed table as the connection sees it, read in batches of 2^20 rows."""
    keys = ", ".join(_KEYS[_check_table(table)])
    reader = con.sql(f"SELECT * FROM {table} ORDER BY {keys}").to_arrow_reader(_BATCH_ROWS)
    return _digest_batches(table, reader.schema, reader)


def arrow_digest(table: str, data: pa.Table, order: np.ndarray | None = None) -> str:
    """The digest of a hashed table from the Arrow table about to be inserted as its whole contents.

    ``data`` has the table's columns in the table's order; ``order`` (row indices into ``data``) puts its rows
    in primary-key order, or None when they already are. Equal to :func:`table_digest` after the insert.
    """
    _check_table(table)
    if order is None:
        batches: Iterable[pa.Table] = (
            data.slice(start, _BATCH_ROWS) for start in range(0, data.num_rows, _BATCH_ROWS)
        )
    else:
        batches = (
            data.take(pa.array(order[start : start + _BATCH_ROWS]))
            for start in range(0, data.num_rows, _BATCH_ROWS)
        )
    return _digest_batches(table, data.schema, batches)


def combine(digests: Mapping[str, str]) -> str:
    """The content hash from the digest of every hashed table."""
    digest = hashlib.sha256(_FORMAT)
    for table in HASHED_TABLES:
        digest.update(f"table {table} {digests[table]}\n".encode())
    return digest.hexdigest()


def read_digests(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The table digests recorded in ``meta`` (missing ones left out)."""
    rows = con.execute("SELECT key, value FROM meta WHERE starts_with(key, ?)", [_META_PREFIX]).fetchall()
    return {key[len(_META_PREFIX) :]: value for key, value in rows}


def record_digests(con: duckdb.DuckDBPyConnection, digests: Mapping[str, str]) -> str:
    """Write new table digests and the content hash they give into ``meta``; return the hash.

    Runs inside the caller's transaction, so the hash commits (or rolls back) with the write it describes.
    """
    current = read_digests(con)
    current.update({_check_table(table): value for table, value in digests.items()})
    missing = [table for table in HASHED_TABLES if table not in current]
    for table in missing:
        current[table] = table_digest(con, table)
    value = combine(current)
    rows = [(_META_PREFIX + table, current[table]) for table in HASHED_TABLES] + [("content_hash", value)]
    con.executemany("DELETE FROM meta WHERE key = ?", [[key] for key, _ in rows])
    con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [list(row) for row in rows])
    return value


def recompute(con: duckdb.DuckDBPyConnection) -> str:
    """The content hash computed from the tables themselves (not from ``meta``)."""
    return combine({table: table_digest(con, table) for table in HASHED_TABLES})


# ----------------------------------------------------------------------------------------------------------------
# Schema versions 1-2


def _canonical_column_v1(column: pa.ChunkedArray) -> tuple[str, list[bytes | memoryview]]:
    import pyarrow.compute as pc  # lazily: most commands never need it

    nulls = np.packbits(pc.is_null(column).to_numpy(zero_copy_only=False)).tobytes()
    kind = column.type
    if pa.types.is_integer(kind):
        return "int", [nulls, pc.fill_null(column, 0).to_numpy().astype("<i8").tobytes()]
    if pa.types.is_floating(kind):
        return "float", [nulls, pc.fill_null(column, 0.0).to_numpy().astype("<f8").tobytes()]
    if pa.types.is_boolean(kind):
        values = pc.fill_null(column, False).to_numpy(zero_copy_only=False).astype(np.uint8)
        return "bool", [nulls, values.tobytes()]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_string_view(kind):
        array = pc.fill_null(column, "").cast(pa.large_string()).combine_chunks()
        buffers = array.buffers()
        offsets = np.frombuffer(buffers[1], dtype="<i8")[array.offset : array.offset + len(array) + 1]
        data: bytes | memoryview = b""
        if len(array) and buffers[2] is not None:
            data = memoryview(buffers[2])[int(offsets[0]) : int(offsets[-1])]
        return "text", [nulls, np.diff(offsets).astype("<i8").tobytes(), data]
    return str(kind), [nulls, json.dumps(column.to_pylist(), default=str).encode()]


def content_hash_v1(con: duckdb.DuckDBPyConnection) -> str:
    """The content hash as schema versions 1 and 2 defined it (each hashed table read whole)."""
    digest = hashlib.sha256(_FORMAT_V1)
    for table in HASHED_TABLES:
        keys = ", ".join(_KEYS[table])
        data = con.sql(f"SELECT * FROM {table} ORDER BY {keys}").to_arrow_table()
        digest.update(f"table {table} {data.num_rows}\n".encode())
        for field, column in zip(data.schema, data.columns, strict=True):
            kind, parts = _canonical_column_v1(column)
            digest.update(f"column {field.name} {kind}\n".encode())
            for part in parts:
                size = part.nbytes if isinstance(part, memoryview) else len(part)
                digest.update(size.to_bytes(8, "little"))
                digest.update(part)
    return digest.hexdigest()
