"""Parquet interchange: a store's tables as one folder of Parquet files, and a store built from such a folder."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from harp.store import hashing, migrations
from harp.store.connection import harp_version, schema_version, tables_present
from harp.store.core import Store
from harp.store.errors import StoreError
from harp.store.files import check_target, publish, remove_quietly, temporary_beside, write_atomically
from harp.store.hashing import HASHED_TABLES
from harp.store.queries import insert, read_sorted

__all__ = ["export_parquet", "import_parquet"]


def _tables_at_version(version: int) -> list[str]:
    """The tables a store of this schema version holds, in schema order."""
    con = duckdb.connect(":memory:")
    try:
        migrations.apply_migrations(con, 0, version, record=False)
        present = tables_present(con)
    finally:
        con.close()
    return [name for name in migrations.TABLE_KEYS if name in present]


def export_parquet(
    store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """Write every table of a store to ``out_dir/<table>.parquet``, meta and migrations included.

    All tables are read in one snapshot. Each file is written under a temporary name and renamed.

    Parameters
    ----------
    store_path : str or Path
        The store (opened read-only).
    out_dir : str or Path
        Created when missing. It must not hold other ``.parquet`` files, and existing table files are replaced
        only with ``overwrite``.

    Returns
    -------
    list of Path
        The files written.
    """
    import pyarrow.parquet as pq  # lazily: most commands never need it

    store = Store.open(store_path, read_only=True)
    directory = Path(out_dir)
    if directory.exists() and not directory.is_dir():
        raise StoreError(f"{directory} is a file; give a folder to export into")
    directory.mkdir(parents=True, exist_ok=True)
    names = store.table_names()
    strangers = sorted(p.name for p in directory.glob("*.parquet") if p.stem not in names)
    if strangers:
        raise StoreError(
            f"{directory} holds {', '.join(strangers)}, not tables of a HARP store; export into an empty folder"
        )
    clashes = sorted(p.name for p in directory.glob("*.parquet"))
    if clashes and not overwrite:
        raise StoreError(
            f"{directory} already holds an export ({', '.join(clashes[:3])}, ...); pass overwrite=True (--force)"
        )
    with store.read() as con:
        tables = {name: read_sorted(con, name) for name in names}
    written = []
    for name, table in tables.items():
        target = directory / f"{name}.parquet"
        write_atomically(target, functools.partial(pq.write_table, table), "export")
        written.append(target)
    return written


def import_parquet(
    in_dir: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    lock_timeout: float = 10.0,
) -> Store:
    """Build a store from a folder written by :func:`export_parquet`.

    The folder must hold exactly the tables of its schema version (read from ``meta.parquet``); an older export
    is migrated to the current schema. The store is built under a temporary name and renamed into place.

    Parameters
    ----------
    in_dir : str or Path
        The exported folder.
    store_path : str or Path
        The store to create; an existing file is replaced only with ``overwrite``.

    Returns
    -------
    Store

    Raises
    ------
    StoreError
        The folder is missing, lacks a table or holds a foreign file, a table has the wrong columns, the export
        is of a newer schema version, or ``store_path`` exists and ``overwrite`` is False.
    """
    import pyarrow.parquet as pq  # lazily: most commands never need it

    source = Path(in_dir)
    target = Path(store_path)
    if not source.is_dir():
        raise StoreError(f"{source} is not a folder; give the folder that `harp export` wrote")
    files = {p.stem: p for p in sorted(source.glob("*.parquet"))}
    if "meta" not in files:
        raise StoreError(f"{source} has no meta.parquet, so it is not an export of a HARP store")
    try:
        meta_table = pq.read_table(files["meta"])
        meta = dict(zip(meta_table["key"].to_pylist(), meta_table["value"].to_pylist(), strict=True))
        version = int(meta["schema_version"])
    except (KeyError, ValueError, pa.ArrowException) as error:
        raise StoreError(
            f"{files['meta']} is not the meta table of a HARP store (no usable schema_version: {error})"
        ) from None
    latest = migrations.latest_version()
    if version > latest:
        raise StoreError(
            f"{source} is an export of schema version {version}; this harp-explorer ({harp_version()}) reads "
            f"version {latest} and older: upgrade harp-explorer (pip install -U harp-explorer) to import it"
        )
    expected = _tables_at_version(version)
    missing = [name for name in expected if name not in files]
    if missing:
        raise StoreError(
            f"{source} lacks {', '.join(n + '.parquet' for n in missing)}; export the store again"
        )
    extra = sorted(name for name in files if name not in expected)
    if extra:
        raise StoreError(
            f"{source} holds {', '.join(n + '.parquet' for n in extra)}, which a store of schema version "
            f"{version} does not have; remove them or export again"
        )
    check_target(target, overwrite)
    temporary = temporary_beside(target, "import")
    try:
        con = duckdb.connect(str(temporary))
        try:
            migrations.apply_migrations(con, 0, version, record=False)
            con.begin()
            for name in expected:
                try:
                    data = pq.read_table(files[name])
                except (OSError, pa.ArrowException) as error:
                    raise StoreError(
                        f"{files[name]} is not a readable Parquet file ({error}); export the store again"
                    ) from None
                columns = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
                if sorted(data.column_names) != sorted(columns):
                    raise StoreError(
                        f"{files[name]} has columns {data.column_names}, expected {columns}; export the store again"
                    )
                con.execute(f"DELETE FROM {name}")  # meta may hold rows its migrations wrote
                insert(con, name, data.select(columns))
            con.commit()
            schema_version(con, target)
            migrations.apply_migrations(con, version, harp_version=harp_version())
            # The export's hash rows are not trusted: the hash is computed from what was imported.
            con.begin()
            hashing.record_digests(con, {table: hashing.table_digest(con, table) for table in HASHED_TABLES})
            con.commit()
        except duckdb.Error as error:
            raise StoreError(f"cannot import {source}: {error}") from error
        except migrations.MigrationError as error:
            raise StoreError(f"cannot import {source}: {error}") from error
        finally:
            con.close()
        publish(temporary, target, overwrite=overwrite)
    finally:
        remove_quietly(temporary)
    return Store(target, lock_timeout=lock_timeout)
