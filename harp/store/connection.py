"""Opening a store file: connections that wait out lock conflicts, and the schema-version checks.

DuckDB lets one process hold a read-write handle on a file, or any number of processes hold read-only handles,
never both: :func:`connect` retries with backoff until the conflict clears or ``lock_timeout`` passes.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import duckdb

from harp.store import migrations
from harp.store.errors import StoreError, StoreLockedError

__all__ = ["connect", "harp_version", "schema_version", "tables_present"]


def harp_version() -> str:
    """The version of harp-explorer that writes, as recorded in ``meta.harp_version``."""
    import harp

    return str(getattr(harp, "__version__", "unknown"))


def _is_lock_error(error: Exception) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def connect(path: Path, *, read_only: bool, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    """Open ``path``, retrying with jittered exponential backoff while the file is held in a conflicting mode.

    Two conflicts are waited out: another process holding a lock (one writer or several readers at a time), and,
    inside this process, a connection of the other mode (read-only versus read-write) on another thread.
    """
    deadline = time.monotonic() + lock_timeout
    delay = 0.005
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            # No progress bar: DuckDB draws it on the terminal for long queries, into our stdout data.
            con.execute("SET enable_progress_bar = false")
            return con
        except duckdb.ConnectionException as error:
            conflict: duckdb.Error = error
            message = (
                f"{path} stayed open {'read-write' if read_only else 'read-only'} in this process for "
                f"{lock_timeout:g} s, so it cannot be opened {'read-only' if read_only else 'read-write'}; "
                "close the other connection first"
            )
        except duckdb.Error as error:
            if not _is_lock_error(error):
                raise StoreError(
                    f"cannot read {path}: the file is corrupt or not a usable DuckDB file ({error})"
                ) from error
            conflict = error
            message = (
                f"{path} is locked by another process (DuckDB allows one writer or several readers at a time; "
                f"waited {lock_timeout:g} s): wait for it to finish, or raise lock_timeout"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StoreLockedError(message) from conflict
        time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
        delay = min(delay * 2, 0.25)


def tables_present(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of the tables in an open database's main schema."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    return {row[0] for row in rows}


def schema_version(con: duckdb.DuckDBPyConnection, path: Path | str) -> int:
    """The schema version of an open store; refuses foreign, inconsistent and too-new stores."""
    tables = tables_present(con)
    if "meta" not in tables:
        held = f" (it holds {', '.join(sorted(tables)[:5])})" if tables else " (it holds no tables)"
        raise StoreError(
            f"{path} is a DuckDB database but not a HARP store{held}; give the path of a store made by "
            "`harp synth`, `harp import` or the pipeline"
        )
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    raw = meta.get("schema_version")
    if raw is None:
        raise StoreError(
            f"{path} is a DuckDB database but not a HARP store: its meta table has no schema_version"
        )
    try:
        version = int(raw)
    except ValueError:
        raise StoreError(
            f"{path}: meta.schema_version is {raw!r}, not a number; the store is damaged"
        ) from None
    applied: list[str] = []
    if "migrations" in tables:
        applied = [row[0] for row in con.execute("SELECT name FROM migrations ORDER BY name").fetchall()]
    known = [migration.name for migration in migrations.MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    latest = migrations.latest_version()
    if version > latest or unknown:
        extra = f", with migrations this version does not know: {', '.join(unknown)}" if unknown else ""
        raise StoreError(
            f"{path} has schema version {version}{extra}; this harp-explorer ({harp_version()}) reads schema "
            f"version {latest} and older: upgrade harp-explorer (pip install -U harp-explorer) to open it"
        )
    if sorted(applied) != sorted(known[:version]):
        raise StoreError(
            f"{path}: meta says schema version {version} but the migrations table lists {applied}; the store is "
            "damaged: re-create it, or import it again from a Parquet export"
        )
    return version
