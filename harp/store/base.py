"""What every method of a store rests on: opening the file (migrating it) and one transaction per connection.

A :class:`StoreBase` never keeps the file open: :meth:`StoreBase.read` and :meth:`StoreBase.write` open a
connection, run one transaction and close it, so the app keeps reading while ``harp measure`` writes. The
methods of :class:`harp.store.Store` come from the classes of its sibling modules, each a :class:`StoreBase`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

from harp.store import hashing, migrations
from harp.store.connection import connect, harp_version, schema_version
from harp.store.errors import StoreError
from harp.store.files import check_store_file
from harp.store.hashing import HASHED_TABLES
from harp.store.queries import record_fit_leaves

__all__ = ["StoreBase"]


class StoreBase:
    """A store file's path, mode and lock timeout, and its connections (see :class:`harp.store.Store`)."""

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, lock_timeout: float = 10.0
    ) -> None:
        self.path = Path(path)
        self.read_only = bool(read_only)
        self.lock_timeout = float(lock_timeout)
        check_store_file(self.path)
        con = connect(self.path, read_only=self.read_only, lock_timeout=self.lock_timeout)
        try:
            version = schema_version(con, self.path)
            latest = migrations.latest_version()
            if version < latest:
                if self.read_only:
                    raise StoreError(
                        f"{self.path} has schema version {version}; this harp-explorer uses version {latest}: "
                        f"run `harp migrate {self.path}` (or open it read-write once with harp.Store.open) to migrate it"
                    )
                migrations.apply_migrations(con, version, harp_version=harp_version())
        except migrations.MigrationError as error:
            raise StoreError(f"{self.path}: {error}") from error
        except duckdb.Error as error:
            raise StoreError(f"cannot read {self.path}: the file is corrupt ({error})") from error
        finally:
            con.close()

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"Store({str(self.path)!r}{mode})"

    # -- opening and creating -------------------------------------------------------------------------------------
    # -- connections ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection inside one transaction (a consistent snapshot); closed on exit.

        Read-only when the store was opened ``read_only``. DuckDB errors raised in the block become
        :class:`StoreError`.
        """
        con = self._connection(read_only=self.read_only)
        try:
            con.begin()
            yield con
        except duckdb.Error as error:
            raise StoreError(f"reading {self.path} failed: {error}") from error
        finally:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            con.close()

    @contextlib.contextmanager
    def write(self, *, rehash: Iterable[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived read-write connection inside ONE transaction.

        The transaction is committed when the block ends normally and rolled back when it raises (a DuckDB error
        is re-raised as :class:`StoreError`); the connection is closed in both cases. Before the commit, the
        content hash in ``meta`` is brought up to date in the same transaction (see :mod:`harp.store.hashing`).

        Parameters
        ----------
        rehash : iterable of str, optional
            The hashed tables (:data:`HASHED_TABLES`) the block may change, whose digests are recomputed from the
            tables before the commit; by default all of them (a block that changes none passes ``()``, and one
            that records a digest itself with :func:`harp.store.hashing.record_digests` leaves that table out).
        """
        if self.read_only:
            raise StoreError(f"{self.path} was opened read-only; open it with read_only=False to write")
        tables = HASHED_TABLES if rehash is None else tuple(rehash)
        for table in tables:
            if table not in HASHED_TABLES:
                raise ValueError(f"rehash names {table!r}, not one of {', '.join(HASHED_TABLES)}")
        con = self._connection(read_only=False)
        try:
            con.begin()
            try:
                yield con
                if tables:
                    hashing.record_digests(con, {table: hashing.table_digest(con, table) for table in tables})
                if "effects" in tables:
                    record_fit_leaves(con, None)
            except BaseException as error:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                if isinstance(error, duckdb.Error):
                    raise StoreError(f"write to {self.path} failed and was rolled back: {error}") from error
                raise
            try:
                con.commit()
            except duckdb.Error as error:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise StoreError(f"write to {self.path} failed and was rolled back: {error}") from error
        finally:
            con.close()

    def _connection(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        # A read-write connect to a missing file would silently create an empty database.
        if not self.path.is_file():
            raise StoreError(f"the store {self.path} has disappeared (moved or deleted)")
        return connect(self.path, read_only=read_only, lock_timeout=self.lock_timeout)
