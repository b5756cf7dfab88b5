"""The HARP store: one DuckDB file per project that holds every stage's results.

A store holds the points of the pool and the three levels of the tree (large node -> parent -> leaf), the
evaluation domains with their base scores ``b_d``, raw measurements ``phi[g, d]`` of measured leaves g, posterior
effects (mean and sd for every leaf g and domain d, measured or inferred), the 2-D layout of the leaves, run
records, saved selections, mixture validations (the measured and predicted effects of unions of leaves, see
:mod:`harp.mixtures`) and designed mixtures (the measured effects of finetunes on random halves of one level's
regions, from which a regression gives each region's effect). Leaf ids are contiguous ``0..L-1``, parent ids
``0..P-1``, large-node ids ``0..K-1`` and domain ids ``0..D-1``; point ids are any distinct non-negative integers.

Concurrency. DuckDB lets one process hold a read-write handle on a file, or any number of processes hold
read-only handles, never both. So a :class:`Store` never keeps the file open: every operation opens a connection,
does its work in one transaction and closes it. Opening retries on a lock conflict with backoff for up to
``lock_timeout`` seconds, so the app keeps reading while ``harp measure`` writes in short transactions.

Durability. Every write runs in one transaction; DuckDB's write-ahead log makes a committed transaction durable
and an interrupted one (an exception, or the writing process killed) leaves no trace. Whole-file operations
(:meth:`Store.create`, :func:`import_parquet`, :func:`harp.synth.synth_store`) build the file under a temporary
name beside the target and rename it into place.

Schema. ``meta.schema_version`` is the number of migrations applied (see :mod:`harp.migrations`). An older store
is migrated when opened read-write; a newer one, or one that lists migrations this version does not know, is
refused with a message that says to upgrade harp-explorer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import random
import re
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import numpy as np
import pyarrow as pa

from harp import content_hash as _hashes
from harp import migrations as _migrations
from harp._validation import check_finite
from harp.content_hash import HASHED_TABLES
from harp.members import LeafMembers

__all__ = [
    "HASHED_TABLES",
    "LeftoverFileWarning",
    "SelectionInputs",
    "Store",
    "StoreError",
    "export_parquet",
    "import_parquet",
    "discard_staged",
    "points_from_members",
    "publish_staged",
    "remove_leftover_temporaries",
    "stage_file",
    "stage_text",
]

_SOURCE_VIEW = "_harp_source"  # name under which an Arrow table is registered for one INSERT
_BATCH_ROWS = 1 << 20  # rows per batch when a big table is read column-wise


class StoreError(Exception):
    """A store file that cannot be used as asked: missing, corrupt, foreign, too new, locked, or exists."""


class StoreLockedError(StoreError):
    """Another connection held the store for longer than ``lock_timeout``; retrying later can succeed."""


class StoreIncompleteError(StoreError):
    """The store is valid but lacks what was asked for (no tree, domains or posterior effects yet)."""


@dataclass(frozen=True)
class SelectionInputs:
    """Everything :func:`harp.select` and the app need, read from a store in a few queries.

    Attributes
    ----------
    phi : ndarray of shape (n_leaves, n_domains)
        Posterior mean of the effect of leaf g on domain d.
    sd : ndarray of shape (n_leaves, n_domains)
        Posterior standard deviation.
    measured : ndarray of shape (n_leaves, n_domains), bool
        Whether ``phi[g, d]`` rests on a measurement of leaf g.
    base : ndarray of shape (n_domains,)
        Base-model score ``b_d`` of each domain, in [0, 1].
    active : ndarray of shape (n_domains,), bool
        Whether each domain is active.
    domain_names : list of str
        Name of each domain.
    point_ids : ndarray of shape (n_points,), int64
        Point ids of every leaf, leaf by leaf, each leaf's in rank order (most typical first).
    member_offsets : ndarray of shape (n_leaves + 1,), int64
        Leaf g's points are ``point_ids[member_offsets[g]:member_offsets[g + 1]]``.
    leaf_parent : ndarray of shape (n_leaves,)
        Parent id of each leaf.
    parent_large : ndarray of shape (n_parents,)
        Large-node id of each parent.
    leaf_size : ndarray of shape (n_leaves,)
        Number of points of each leaf.
    content_hash : str or None
        The store's content hash, read in the same snapshot as everything else.
    """

    phi: np.ndarray
    sd: np.ndarray
    measured: np.ndarray
    base: np.ndarray
    active: np.ndarray
    domain_names: list[str]
    point_ids: np.ndarray
    member_offsets: np.ndarray
    leaf_parent: np.ndarray
    parent_large: np.ndarray
    leaf_size: np.ndarray
    content_hash: str | None = None

    @functools.cached_property
    def members(self) -> LeafMembers:
        """Point ids of each leaf g in rank order: views into :attr:`point_ids` (no copy)."""
        return LeafMembers(self.point_ids, self.member_offsets)

    @property
    def n_leaves(self) -> int:
        return int(self.phi.shape[0])

    @property
    def n_domains(self) -> int:
        return int(self.phi.shape[1])


# ----------------------------------------------------------------------------------------------------------------
# Files and connections


def _harp_version() -> str:
    import harp

    return str(getattr(harp, "__version__", "unknown"))


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _check_file(path: Path) -> None:
    """Refuse, before DuckDB sees it, a path that cannot be a store."""
    if not path.exists():
        raise StoreError(
            f"no store at {path}: the file does not exist; create one with `harp synth`, `harp import` "
            "or the pipeline"
        )
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a store file; give the path of a .duckdb store")
    with open(path, "rb") as handle:
        header = handle.read(12)
    if not header:
        raise StoreError(
            f"{path} is empty (0 bytes), not a HARP store; delete it, or recreate the store there"
        )
    if len(header) < 12 or header[8:12] != b"DUCK":
        raise StoreError(
            f"{path} is not a DuckDB file (it is corrupt or some other kind of file), so not a HARP store"
        )


def _is_lock_error(error: Exception) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def _connect(path: Path, *, read_only: bool, lock_timeout: float) -> duckdb.DuckDBPyConnection:
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


def _table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'"
    ).fetchall()
    return {row[0] for row in rows}


def _schema_version(con: duckdb.DuckDBPyConnection, path: Path | str) -> int:
    """The schema version of an open store; refuses foreign, inconsistent and too-new stores."""
    tables = _table_names(con)
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
    known = [migration.name for migration in _migrations.MIGRATIONS]
    unknown = [name for name in applied if name not in known]
    latest = _migrations.latest_version()
    if version > latest or unknown:
        extra = f", with migrations this version does not know: {', '.join(unknown)}" if unknown else ""
        raise StoreError(
            f"{path} has schema version {version}{extra}; this harp-explorer ({_harp_version()}) reads schema "
            f"version {latest} and older: upgrade harp-explorer (pip install -U harp-explorer) to open it"
        )
    if sorted(applied) != sorted(known[:version]):
        raise StoreError(
            f"{path}: meta says schema version {version} but the migrations table lists {applied}; the store is "
            "damaged: re-create it, or import it again from a Parquet export"
        )
    return version


def _publish(temporary: Path, target: Path, *, overwrite: bool) -> None:
    """Move a finished store file into place: never over an existing file unless ``overwrite``."""
    if overwrite:
        # A write-ahead log left by a killed writer belongs to the old file; it must not be replayed on the new one.
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{target}.wal")
        os.replace(temporary, target)
    else:
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise StoreError(
                f"{target} already exists; pass overwrite=True (--force) to replace it"
            ) from None
        except OSError:  # a filesystem without hard links: check, then rename
            if target.exists():
                raise StoreError(
                    f"{target} already exists; pass overwrite=True (--force) to replace it"
                ) from None
            os.replace(temporary, target)
        else:
            os.remove(temporary)
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class LeftoverFileWarning(UserWarning):
    """Temporary files that a killed whole-file write left beside its target were removed."""


def _host_tag() -> str:
    """This machine's name as it goes into temporary names: letters and digits only, at most 32."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _temporary_beside(target: Path, purpose: str) -> Path:
    """A fresh hidden name beside ``target`` that says which process on which machine is writing it.

    ``.NAME.PURPOSE-PID@HOST-RANDOM.tmp``: :func:`remove_leftover_temporaries` removes it once that process is
    gone. DuckDB may add ``.wal`` to it, and a temporary built by :meth:`Store.create` adds its own suffix.
    """
    return target.with_name(
        f".{target.name}.{purpose}-{os.getpid()}@{_host_tag()}-{secrets.token_hex(4)}.tmp"
    )


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, someone else's; other errors: do not guess
        return True
    return True


def remove_leftover_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of whole-file writes to ``target`` whose writing process has died.

    A store build, import, export or CSV write that is killed (kill -9, power loss) leaves its hidden
    temporary (and DuckDB's ``.wal`` of it) beside the target. Each name carries the writer's PID and machine
    (see :func:`_temporary_beside`); a file is removed only when it was written on this machine by a process
    that no longer runs. Names without a machine (older versions) are judged by the PID alone. Emits one
    :class:`LeftoverFileWarning` naming what was removed.

    Returns
    -------
    list of Path
        The files removed.
    """
    path = Path(target)
    pattern = re.compile(
        r"\.+"
        + re.escape(path.name)
        + r"\.[a-z]+-(?P<pid>\d+)(?:@(?P<host>[A-Za-z0-9]*))?-[0-9a-f]+\.tmp(?:\..*)?",
        re.DOTALL,
    )
    host = _host_tag()
    removed: list[tuple[Path, int]] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or (match["host"] is not None and match["host"] != host):
            continue
        if _process_alive(int(match["pid"])):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            size = entry.stat(follow_symlinks=False).st_size
            os.remove(entry.path)
        except OSError:  # gone already (another run cleaned it), or not ours to remove
            continue
        removed.append((Path(entry.path), size))
    if removed:
        total = sum(size for _, size in removed) / 1e6
        names = ", ".join(p.name for p, _ in sorted(removed)[:4]) + (", ..." if len(removed) > 4 else "")
        warnings.warn(
            f"removed {len(removed)} temporary file(s) ({total:.1f} MB) that a killed earlier write left "
            f"beside {path}: {names}",
            LeftoverFileWarning,
            stacklevel=2,
        )
    return [p for p, _ in removed]


def stage_text(target: str | os.PathLike[str], text: str, purpose: str = "write") -> Path:
    """Write ``text`` (UTF-8, as is) to a fresh temporary beside ``target``, flushed to disk; return its path.

    The first step of a whole-file write of a small text file: :func:`publish_staged` then renames it over
    ``target`` (or :func:`discard_staged` removes it), so ``target`` holds the old or the new text, never a part.
    Leftovers of killed earlier writes to ``target`` are removed first.
    """
    data = text.encode("utf-8")
    return stage_file(target, lambda stream: stream.write(data), purpose)


def stage_file(
    target: str | os.PathLike[str], write: Callable[[BinaryIO], object], purpose: str = "write"
) -> Path:
    """:func:`stage_text` for any content: ``write(stream)`` fills a fresh binary temporary beside ``target``.

    For example ``stage_file(path, lambda f: numpy.save(f, array))``; then :func:`publish_staged`.
    """
    final = Path(target)
    remove_leftover_temporaries(final)
    temporary = _temporary_beside(final, purpose)
    try:
        with open(temporary, "xb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        discard_staged(temporary)
        raise
    return temporary


def publish_staged(temporary: Path, target: str | os.PathLike[str]) -> None:
    """Rename a file from :func:`stage_text` over ``target`` (replacing it) and make the rename durable."""
    os.replace(temporary, target)
    _sync_folder(Path(target).parent)


def discard_staged(temporary: Path) -> None:
    """Remove a staged temporary that will not be published (missing is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary)


def _remove_quietly(path: Path) -> None:
    for candidate in (path, Path(f"{path}.wal")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(candidate)


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target that may not be written; first remove what killed earlier writes to it left."""
    remove_leftover_temporaries(target)
    if target.is_dir():
        raise StoreError(f"{target} is a folder; give the path of a store file")
    if target.exists() and not overwrite:
        raise StoreError(f"{target} already exists; pass overwrite=True (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)


def _arrow(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] | None = None) -> pa.Table:
    relation = con.sql(query, params=list(params)) if params else con.sql(query)
    to_table = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return to_table()


def _nonempty_string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _json_mapping(value: Mapping[str, Any] | None, name: str) -> str | None:
    """A run's config or timings as sorted JSON (None stays None)."""
    if value is None:
        return None
    try:
        return json.dumps(dict(value), sort_keys=True, default=str)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a JSON-serialisable mapping: {error}") from None


def _finished_record(record: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    """(run_id, kind, config JSON, timings JSON) of a finished run record given to ``add_measurements``."""
    run_id = _nonempty_string(record.get("run_id"), "record['run_id']")
    kind = _nonempty_string(record.get("kind"), "record['kind']")
    config = _json_mapping(record.get("config") or {}, "record['config']") or "{}"
    return run_id, kind, config, _json_mapping(record.get("timings"), "record['timings']")


def _insert(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table, *, verb: str = "INSERT") -> None:
    """Insert an Arrow table whose columns are named as the table's; ``table`` comes from the whitelist only."""
    _whitelisted(table)
    columns = ", ".join(f'"{name}"' for name in data.column_names)
    con.register(_SOURCE_VIEW, data)
    try:
        con.execute(f"{verb} INTO {table} ({columns}) SELECT {columns} FROM {_SOURCE_VIEW}")
    finally:
        con.unregister(_SOURCE_VIEW)


def _first(con: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    """The first row of a query, or None; reads the result to the end so the connection stays usable."""
    rows = con.execute(query, list(params)).fetchall()
    return rows[0] if rows else None


def _whitelisted(table: str) -> str:
    """``table`` itself when it is one of the store's tables; the only way a name reaches SQL text."""
    if table not in _migrations.TABLE_KEYS:
        raise ValueError(f"invalid table name {table!r}; expected one of {', '.join(_migrations.TABLE_KEYS)}")
    return table


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = _first(con, f"SELECT count(*) FROM {_whitelisted(table)}")
    return int(row[0]) if row else 0


def _count_mixtures(con: duckdb.DuckDBPyConnection) -> int:
    """The number of mixture validations (a mixture has one row per domain)."""
    row = _first(con, "SELECT count(DISTINCT mixture_id) FROM mixtures")
    return int(row[0]) if row else 0


def _count_design_mixtures(con: duckdb.DuckDBPyConnection) -> int:
    """The number of designed mixtures (a subset has one row per domain)."""
    row = _first(con, "SELECT count(DISTINCT design_id) FROM design_mixtures")
    return int(row[0]) if row else 0


#: The levels a designed mixture's regions come from: the table of their ids, and what a message calls them.
_DESIGN_LEVELS: dict[str, tuple[str, str]] = {
    "large": ("large_nodes", "large nodes"),
    "parent": ("parents", "parents"),
}

_FIT_LEAVES = "effects_measured_leaves"  # meta: leaves whose effects rest on a measurement (any domain)


def _record_fit_leaves(con: duckdb.DuckDBPyConnection, count: int | None) -> None:
    """Keep ``meta.effects_measured_leaves`` with the effects, in their transaction (None: count them in SQL)."""
    if count is None:
        row = _first(con, "SELECT count(DISTINCT leaf_id) FROM effects WHERE measured")
        count = int(row[0]) if row else 0
    con.execute("DELETE FROM meta WHERE key = ?", [_FIT_LEAVES])
    con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [_FIT_LEAVES, str(count)])


def _stored_hash(con: duckdb.DuckDBPyConnection) -> str:
    """The content hash kept in ``meta`` (every write keeps it current in its own transaction)."""
    row = _first(con, "SELECT value FROM meta WHERE key = 'content_hash'")
    if row is None:  # meta lost its row (edited by hand): the slow way, still right
        return _hashes.recompute(con)
    return str(row[0])


# Arrow's fixed-width types and their numpy dtypes, for reading a column's buffer in place (:func:`_numpy`).
_FIXED_WIDTH = {
    pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
    pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
    pa.float32(): np.float32, pa.float64(): np.float64,
}  # fmt: skip


def _numpy(batch: pa.RecordBatch, index: int, dtype: type) -> np.ndarray:
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


def _read_sorted(con: duckdb.DuckDBPyConnection, table: str) -> pa.Table:
    keys = ", ".join(_migrations.TABLE_KEYS[_whitelisted(table)])
    return _arrow(con, f"SELECT * FROM {table} ORDER BY {keys}")


# ----------------------------------------------------------------------------------------------------------------
# Input checks (each names the argument)


def _integers(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _ids_in_range(array: np.ndarray, name: str, upper: int, what: str) -> None:
    if array.size and (array.min() < 0 or array.max() >= upper):
        bad = int(array[(array < 0) | (array >= upper)][0])
        raise ValueError(f"{name} holds {bad}, outside 0..{upper - 1} ({upper} {what})")


def _every_id_used(array: np.ndarray, name: str, upper: int, what: str) -> None:
    counts = np.bincount(array, minlength=upper)
    if (counts == 0).any():
        raise ValueError(
            f"{name}: {what} {int(np.argmin(counts))} has none (ids must be contiguous, none empty)"
        )


def _floats(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must hold numbers: {error}") from None
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    check_finite(array, name)
    return array


def _booleans(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.bool_:
        if array.size and not (np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all()):
            raise ValueError(f"{name} must hold booleans, got dtype {array.dtype}")
        array = array.astype(bool)
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}") from None


def _strings(value: Any, name: str, length: int) -> pa.Array:
    try:
        if isinstance(value, pa.ChunkedArray):
            array = value.combine_chunks()
        elif isinstance(value, pa.Array):
            array = value
        else:
            array = pa.array(value, from_pandas=True)
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            raise ValueError(f"{name} must hold strings (or None), got {array.type}")
        array = array.cast(pa.string())
    except (pa.ArrowException, TypeError) as error:
        raise ValueError(f"{name} must hold strings (or None): {error}") from None
    if len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries, expected {length}")
    return array


def _column(table_like: Any, column: str, name: str, *, required: bool) -> Any:
    try:
        return table_like[column]
    except (KeyError, IndexError, TypeError):
        if required:
            raise ValueError(f"{name} must have a {column!r} column") from None
        return None


def _json_list(values: Any, name: str, kind: type) -> str:
    if values is None:
        return "[]"
    try:
        return json.dumps([kind(v) for v in np.asarray(values).ravel().tolist()])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of {kind.__name__}: {error}") from None


# ----------------------------------------------------------------------------------------------------------------
# Building a points table


def points_from_members(
    members: Sequence[Any],
    *,
    text: Sequence[str | None] | None = None,
    source: Sequence[str | None] | None = None,
    response: Sequence[str | None] | None = None,
) -> pa.Table:
    """The ``points`` argument of :meth:`Store.write_tree` from per-leaf member lists.

    Parameters
    ----------
    members : sequence of 1-D integer arrays
        ``members[g]`` holds the point ids of leaf g in rank order (most typical first).
    text, source, response : sequence of str or None, optional
        One entry per point, in the order of ``np.concatenate(members)``: the prompt (or the whole example when
        it has no separate response), where it came from, and the response the model is trained to give.

    Returns
    -------
    pyarrow.Table
        Columns ``point_id``, ``leaf_id``, ``rank_in_leaf`` and, when given, ``text``, ``source`` and
        ``response``.
    """
    arrays = [_integers(points, f"members[{g}]") for g, points in enumerate(members)]
    sizes = np.array([len(points) for points in arrays], dtype=np.int64)
    point_id = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    leaf_id = np.repeat(np.arange(len(arrays), dtype=np.int32), sizes)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    rank = (np.arange(point_id.size, dtype=np.int64) - starts).astype(np.int32)
    columns: dict[str, Any] = {"point_id": point_id, "leaf_id": leaf_id, "rank_in_leaf": rank}
    if text is not None:
        columns["text"] = _strings(text, "text", point_id.size)
    if source is not None:
        columns["source"] = _strings(source, "source", point_id.size)
    if response is not None:
        columns["response"] = _strings(response, "response", point_id.size)
    return pa.table(columns)


# ----------------------------------------------------------------------------------------------------------------
# The store


class Store:
    """A HARP store file. Holds no open handle: each operation opens and closes its own connection.

    Parameters
    ----------
    path : str or Path
        The store file.
    read_only : bool, default False
        Open every connection read-only (the app does). A read-only store is never migrated.
    lock_timeout : float, default 10
        Seconds to keep retrying while another process holds a conflicting lock on the file.

    Raises
    ------
    StoreError
        The file is missing, empty, corrupt, not a HARP store, of a newer schema version, needs a migration but
        ``read_only`` was asked, or stays locked past ``lock_timeout``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, lock_timeout: float = 10.0
    ) -> None:
        self.path = Path(path)
        self.read_only = bool(read_only)
        self.lock_timeout = float(lock_timeout)
        _check_file(self.path)
        con = _connect(self.path, read_only=self.read_only, lock_timeout=self.lock_timeout)
        try:
            version = _schema_version(con, self.path)
            latest = _migrations.latest_version()
            if version < latest:
                if self.read_only:
                    raise StoreError(
                        f"{self.path} has schema version {version}; this harp-explorer uses version {latest}: "
                        f"run `harp migrate {self.path}` (or open it read-write once with harp.Store.open) to migrate it"
                    )
                _migrations.apply_migrations(con, version, harp_version=_harp_version())
        except _migrations.MigrationError as error:
            raise StoreError(f"{self.path}: {error}") from error
        except duckdb.Error as error:
            raise StoreError(f"cannot read {self.path}: the file is corrupt ({error})") from error
        finally:
            con.close()

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"Store({str(self.path)!r}{mode})"

    # -- opening and creating -------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, read_only: bool = False, lock_timeout: float = 10.0
    ) -> Store:
        """Open an existing store, migrating it when it is older (see :class:`Store`)."""
        return cls(path, read_only=read_only, lock_timeout=lock_timeout)

    @classmethod
    def create(
        cls, path: str | os.PathLike[str], *, overwrite: bool = False, lock_timeout: float = 10.0
    ) -> Store:
        """Create a new, empty store at the latest schema version.

        The file is built under a temporary name and renamed into place, so ``path`` never holds a half-made
        store. An existing file is refused unless ``overwrite``.
        """
        target = Path(path)
        _check_target(target, overwrite)
        temporary = _temporary_beside(target, "create")
        try:
            con = duckdb.connect(str(temporary))
            try:
                _migrations.apply_migrations(con, 0, harp_version=_harp_version())
            finally:
                con.close()
            _publish(temporary, target, overwrite=overwrite)
        finally:
            _remove_quietly(temporary)
        return cls(target, lock_timeout=lock_timeout)

    # -- connections ----------------------------------------------------------------------------------------------

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
        content hash in ``meta`` is brought up to date in the same transaction (see :mod:`harp.content_hash`).

        Parameters
        ----------
        rehash : iterable of str, optional
            The hashed tables (:data:`HASHED_TABLES`) the block may change, whose digests are recomputed from the
            tables before the commit; by default all of them (a block that changes none passes ``()``, and one
            that records a digest itself with :func:`harp.content_hash.record_digests` leaves that table out).
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
                    _hashes.record_digests(con, {table: _hashes.table_digest(con, table) for table in tables})
                if "effects" in tables:
                    _record_fit_leaves(con, None)
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
        return _connect(self.path, read_only=read_only, lock_timeout=self.lock_timeout)

    # -- writing --------------------------------------------------------------------------------------------------

    def write_tree(
        self,
        points: Any,
        leaves: Any,
        parents: Any,
        large_nodes: int | Sequence[int] | np.ndarray,
        *,
        discard_measurements: bool = False,
    ) -> None:
        """Replace the tree: points, leaves, parents and large nodes, in one transaction.

        The effects and the layout describe the old tree, so they are deleted with it.

        Parameters
        ----------
        points : table-like
            A pyarrow Table, pandas DataFrame or mapping of columns: ``point_id`` (distinct, >= 0), ``leaf_id``
            (0..L-1) and optionally ``rank_in_leaf`` (0..n_g-1 within each leaf g; by default the order of
            appearance), ``text`` (the prompt or the chat turns), ``source`` and ``response`` (str or None). See
            :func:`points_from_members`.
        leaves : array-like of shape (n_leaves,)
            Parent id of each leaf g (0..P-1, every parent used).
        parents : array-like of shape (n_parents,)
            Large-node id of each parent (0..K-1, every large node used).
        large_nodes : int or array-like of shape (n_large,)
            The number K of large nodes, or their ids ``0..K-1``.
        discard_measurements : bool, default False
            Measurements, mixture validations and designed mixtures refer to the leaves and regions of the current
            tree: replacing a tree that has some is refused unless this is True, which deletes them.

        Raises
        ------
        ValueError
            Naming the argument: ids not contiguous, a point twice, an empty leaf, parent or large node, ranks
            that are not 0..n-1 within a leaf, texts that are not strings.
        """
        leaf_parent = _integers(leaves, "leaves")
        parent_large = _integers(parents, "parents")
        if isinstance(large_nodes, int | np.integer) and not isinstance(large_nodes, bool):
            n_large = int(large_nodes)
        else:
            large_ids = _integers(large_nodes, "large_nodes")
            if not np.array_equal(large_ids, np.arange(large_ids.size)):
                raise ValueError("large_nodes must be a count K or the ids 0..K-1 in order")
            n_large = int(large_ids.size)
        n_leaves, n_parents = int(leaf_parent.size), int(parent_large.size)
        if n_leaves == 0:
            raise ValueError("leaves must not be empty: a tree needs at least one leaf")
        if n_parents == 0 or n_large <= 0:
            raise ValueError(
                f"parents and large_nodes must not be empty, got {n_parents} parents, {n_large} large nodes"
            )
        _ids_in_range(leaf_parent, "leaves", n_parents, "parents")
        _every_id_used(leaf_parent, "leaves", n_parents, "parent")
        _ids_in_range(parent_large, "parents", n_large, "large nodes")
        _every_id_used(parent_large, "parents", n_large, "large node")

        point_id = _integers(_column(points, "point_id", "points", required=True), "points['point_id']")
        leaf_id = _integers(_column(points, "leaf_id", "points", required=True), "points['leaf_id']")
        n_points = point_id.size
        if leaf_id.size != n_points:
            raise ValueError(
                f"points['leaf_id'] has {leaf_id.size} entries but points['point_id'] has {n_points}"
            )
        if n_points and point_id.min() < 0:
            raise ValueError(f"points['point_id'] must be >= 0, got {int(point_id.min())}")
        unique, counts = np.unique(point_id, return_counts=True)
        if (counts > 1).any():
            raise ValueError(
                f"points['point_id'] lists point {int(unique[np.argmax(counts > 1)])} more than once"
            )
        _ids_in_range(leaf_id, "points['leaf_id']", n_leaves, "leaves")
        _every_id_used(leaf_id, "points['leaf_id']", n_leaves, "leaf")
        leaf_size = np.bincount(leaf_id, minlength=n_leaves)
        order = np.argsort(leaf_id, kind="stable")
        starts = np.repeat(np.cumsum(leaf_size) - leaf_size, leaf_size)
        rank_column = _column(points, "rank_in_leaf", "points", required=False)
        if rank_column is None:
            rank = np.empty(n_points, dtype=np.int64)
            rank[order] = np.arange(n_points) - starts
        else:
            rank = _integers(rank_column, "points['rank_in_leaf']")
            if rank.size != n_points:
                raise ValueError(f"points['rank_in_leaf'] has {rank.size} entries, expected {n_points}")
            order = np.lexsort((rank, leaf_id))
            if not np.array_equal(rank[order], np.arange(n_points) - starts):
                bad = int(leaf_id[order][np.argmax(rank[order] != np.arange(n_points) - starts)])
                raise ValueError(
                    f"points['rank_in_leaf'] must number the points of each leaf 0..n-1; leaf {bad} does not"
                )
        columns: dict[str, Any] = {
            "point_id": pa.array(point_id[order], pa.int64()),
            "leaf_id": pa.array(leaf_id[order].astype(np.int32)),
            "rank_in_leaf": pa.array(rank[order].astype(np.int32)),
        }
        indices = pa.array(order)
        for column in ("text", "source", "response"):
            value = _column(points, column, "points", required=False)
            columns[column] = (
                pa.nulls(n_points, pa.string())
                if value is None
                else _strings(value, f"points[{column!r}]", n_points).take(indices)
            )
        point_table = pa.table(columns)
        parent_size = np.bincount(leaf_parent, weights=leaf_size, minlength=n_parents).astype(np.int64)
        large_size = np.bincount(parent_large, weights=parent_size, minlength=n_large).astype(np.int64)

        with self.write(rehash=("large_nodes", "parents", "leaves", "effects")) as con:
            n_measurements = _count(con, "measurements")
            n_mixtures = _count_mixtures(con)
            n_designs = _count_design_mixtures(con)
            if (n_measurements or n_mixtures or n_designs) and not discard_measurements:
                held = [f"{n_measurements} measurements"]
                held += [f"{n_mixtures} mixture validations"] if n_mixtures else []
                held += [f"{n_designs} design mixtures"] if n_designs else []
                listed = ", ".join(held[:-1]) + " and " + held[-1] if len(held) > 1 else held[0]
                raise ValueError(
                    f"the store holds {listed} of the current tree; pass "
                    "discard_measurements=True to replace the tree anyway, or write the new tree to a new store"
                )
            for table in (
                "points",
                "leaves",
                "parents",
                "large_nodes",
                "effects",
                "layout",
                "measurements",
                "mixtures",
                "design_mixtures",
            ):
                con.execute(f"DELETE FROM {table}")
            con.execute("DELETE FROM meta WHERE key = 'layout_key'")
            _insert(
                con,
                "large_nodes",
                pa.table({"large_id": np.arange(n_large, dtype=np.int32), "size": large_size}),
            )
            _insert(
                con,
                "parents",
                pa.table(
                    {
                        "parent_id": np.arange(n_parents, dtype=np.int32),
                        "large_id": parent_large.astype(np.int32),
                        "size": parent_size,
                    }
                ),
            )
            _insert(
                con,
                "leaves",
                pa.table(
                    {
                        "leaf_id": np.arange(n_leaves, dtype=np.int32),
                        "parent_id": leaf_parent.astype(np.int32),
                        "size": leaf_size.astype(np.int64),
                    }
                ),
            )
            _insert(con, "points", point_table)
            by_point_id = np.argsort(point_id[order], kind="stable")
            _hashes.record_digests(con, {"points": _hashes.arrow_digest("points", point_table, by_point_id)})

    def write_domains(
        self,
        names: Sequence[str],
        base: Any,
        eval_size: Any = None,
        active: Any = None,
    ) -> None:
        """Replace the domains.

        Parameters
        ----------
        names : sequence of str, length n_domains
            Distinct, non-empty names.
        base : array-like of shape (n_domains,)
            Base-model score ``b_d`` in [0, 1].
        eval_size : array-like of shape (n_domains,), optional
            Number of proxy-eval examples of each domain (>= 0).
        active : array-like of shape (n_domains,), optional
            Whether each domain is active; all True by default.

        Raises
        ------
        ValueError
            Naming the argument; also when the number of domains changes while the store holds effects,
            measurements, mixture validations or designed mixtures for the old domains.
        """
        if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
            raise ValueError(f"names must be a sequence of domain names, got {names!r}")
        name_list = list(names)
        n_domains = len(name_list)
        if n_domains == 0:
            raise ValueError("names must not be empty: give at least one domain")
        for d, name in enumerate(name_list):
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"names[{d}] must be a non-empty string, got {name!r}")
        if len(set(name_list)) != n_domains:
            duplicate = next(name for name in name_list if name_list.count(name) > 1)
            raise ValueError(f"names lists domain {duplicate!r} more than once")
        base_array = _floats(base, "base", (n_domains,))
        outside = (base_array < 0) | (base_array > 1)
        if outside.any():
            d = int(np.argmax(outside))
            raise ValueError(
                f"base must lie in [0, 1], got {base_array[d]} for domain {d} ({name_list[d]!r})"
            )
        if eval_size is None:
            eval_column = pa.nulls(n_domains, pa.int32())
        else:
            sizes = _integers(eval_size, "eval_size")
            if sizes.size != n_domains:
                raise ValueError(f"eval_size has {sizes.size} entries but there are {n_domains} domains")
            if (sizes < 0).any():
                raise ValueError(f"eval_size must be >= 0, got {int(sizes.min())}")
            eval_column = pa.array(sizes.astype(np.int32))
        active_array = (
            np.ones(n_domains, dtype=bool) if active is None else _booleans(active, "active", (n_domains,))
        )
        table = pa.table(
            {
                "domain_id": np.arange(n_domains, dtype=np.int32),
                "name": pa.array(name_list, pa.string()),
                "base": base_array,
                "eval_size": eval_column,
                "active": np.ascontiguousarray(active_array),
            }
        )
        with self.write(rehash=("domains",)) as con:
            current = _count(con, "domains")
            held = {
                "effects": _count(con, "effects"),
                "measurements": _count(con, "measurements"),
                "mixture validations": _count_mixtures(con),
                "design mixtures": _count_design_mixtures(con),
            }
            if current != n_domains and any(held.values()):
                listed = ", ".join(f"{count} {what}" for what, count in held.items() if count)
                raise ValueError(
                    f"names has {n_domains} domains but the store holds {listed} for its {current} domains; "
                    "write the new domains to a new store"
                )
            con.execute("DELETE FROM domains")
            _insert(con, "domains", table)

    def set_active(self, active: Any) -> None:
        """Set which domains are active.

        Parameters
        ----------
        active : array-like of bool, shape (n_domains,)
        """
        with self.write(rehash=("domains",)) as con:
            n_domains = _count(con, "domains")
            flags = _booleans(active, "active", (n_domains,))
            con.register(
                _SOURCE_VIEW, pa.table({"domain_id": np.arange(n_domains, dtype=np.int32), "active": flags})
            )
            try:
                con.execute(
                    f"UPDATE domains SET active = s.active FROM {_SOURCE_VIEW} s WHERE domains.domain_id = s.domain_id"
                )
            finally:
                con.unregister(_SOURCE_VIEW)

    def write_effects(
        self, mean: Any, sd: Any, measured: Any, *, source: Mapping[str, Any] | None = None
    ) -> None:
        """Replace the posterior effects of every leaf g on every domain d.

        Parameters
        ----------
        mean : array-like of shape (n_leaves, n_domains)
            Posterior mean of ``phi[g, d]``; finite.
        sd : array-like of shape (n_leaves, n_domains)
            Posterior standard deviation; finite and >= 0.
        measured : array-like of bool, shape (n_leaves, n_domains) or (n_leaves, 1)
            Whether each value rests on a measurement of the leaf.
        source : mapping, optional
            What produced the effects (for example the measurements' ``config_key`` and protocol), kept as JSON
            in ``meta.effects_source`` in the same transaction; None removes an older record.

        Raises
        ------
        ValueError
            Naming the argument: a shape other than the store's leaves x domains, NaN or inf, sd < 0.
        """
        with self.write(rehash=()) as con:
            shape = (_count(con, "leaves"), _count(con, "domains"))
            if 0 in shape:
                raise ValueError(
                    f"write the tree and the domains before the effects (the store has {shape[0]} "
                    f"leaves and {shape[1]} domains)"
                )
            mean_array = _floats(mean, "mean", shape)
            sd_array = _floats(sd, "sd", shape)
            if (sd_array < 0).any():
                where = tuple(int(i) for i in np.argwhere(sd_array < 0)[0])
                raise ValueError(f"sd must be >= 0, got {sd_array[where]} at index {where}")
            measured_array = np.asarray(measured)
            if measured_array.ndim == 1 and measured_array.shape[0] == shape[0]:
                measured_array = measured_array[:, None]
            measured_array = _booleans(measured_array, "measured", shape)
            n_leaves, n_domains = shape
            table = pa.table(
                {
                    "leaf_id": np.repeat(np.arange(n_leaves, dtype=np.int32), n_domains),
                    "domain_id": np.tile(np.arange(n_domains, dtype=np.int32), n_leaves),
                    "mean": mean_array.ravel(),
                    "sd": sd_array.ravel(),
                    "measured": np.ascontiguousarray(measured_array).ravel(),
                }
            )
            con.execute("DELETE FROM effects")
            _insert(con, "effects", table)
            # The rows are in key order already; the digest and the count commit with the rows.
            _hashes.record_digests(con, {"effects": _hashes.arrow_digest("effects", table)})
            _record_fit_leaves(con, int(np.ascontiguousarray(measured_array).any(axis=1).sum()))
            con.execute("DELETE FROM meta WHERE key = 'effects_source'")
            if source is not None:
                con.execute(
                    "INSERT INTO meta (key, value) VALUES ('effects_source', ?)",
                    [json.dumps(dict(source), sort_keys=True, default=str)],
                )

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
        leaf_id = _integers(_column(rows, "leaf_id", "rows", required=True), "rows['leaf_id']")
        n_rows = leaf_id.size
        if n_rows == 0:
            return 0
        domain_id = _integers(_column(rows, "domain_id", "rows", required=True), "rows['domain_id']")
        if domain_id.size != n_rows:
            raise ValueError(f"rows['domain_id'] has {domain_id.size} entries, expected {n_rows}")
        phi = _floats(_column(rows, "phi", "rows", required=True), "rows['phi']", (n_rows,))
        variance = _floats(_column(rows, "variance", "rows", required=True), "rows['variance']", (n_rows,))
        if (variance < 0).any():
            raise ValueError(f"rows['variance'] must be >= 0, got {variance[np.argmax(variance < 0)]}")
        n_eval_column = _column(rows, "n_eval", "rows", required=False)
        if n_eval_column is None:
            n_eval = pa.nulls(n_rows, pa.int32())
        else:
            values = _integers(n_eval_column, "rows['n_eval']")
            if values.size != n_rows or (values < 0).any():
                raise ValueError(f"rows['n_eval'] must hold {n_rows} integers >= 0")
            n_eval = pa.array(values.astype(np.int32))
        run_column = _column(rows, "run_id", "rows", required=False)
        run_id = (
            pa.nulls(n_rows, pa.string())
            if run_column is None
            else _strings(run_column, "rows['run_id']", n_rows)
        )
        key_column = _column(rows, "config_key", "rows", required=False)
        config_key = (
            pa.array([""] * n_rows, pa.string())
            if key_column is None
            else pc.fill_null(_strings(key_column, "rows['config_key']", n_rows), "")
        )
        created_column = _column(rows, "created_at", "rows", required=False)
        if created_column is None:
            created_at = pa.array([_utc_now()] * n_rows, pa.timestamp("us"))
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
        finished = None if record is None else _finished_record(record)
        with self.write(rehash=()) as con:
            _ids_in_range(leaf_id, "rows['leaf_id']", _count(con, "leaves"), "leaves")
            _ids_in_range(domain_id, "rows['domain_id']", _count(con, "domains"), "domains")
            _insert(con, "measurements", table, verb="INSERT OR REPLACE")
            if finished is not None:
                if _first(con, "SELECT 1 FROM runs WHERE run_id = ?", [finished[0]]):
                    raise ValueError(f"record['run_id'] {finished[0]!r} already exists in {self.path}")
                now = _utc_now()
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
        if isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 1:
            raise ValueError(f"n_points must be an integer >= 1, got {n_points!r}")
        leaf_ids = np.sort(_integers(leaves, "leaves"))
        if leaf_ids.size == 0:
            raise ValueError("leaves must not be empty: a mixture holds at least one leaf")
        repeated = leaf_ids[1:][leaf_ids[1:] == leaf_ids[:-1]]
        if repeated.size:
            raise ValueError(f"leaves lists leaf {int(repeated[0])} more than once")
        with self.write(rehash=()) as con:
            n_domains = _count(con, "domains")
            if n_domains == 0:
                raise ValueError("write the domains before adding a mixture (the store has none)")
            _ids_in_range(leaf_ids, "leaves", _count(con, "leaves"), "leaves")
            shape = (n_domains,)
            phi_array = _floats(phi, "phi", shape)
            variance_array = _floats(variance, "variance", shape)
            if (variance_array < 0).any():
                d = int(np.argmax(variance_array < 0))
                raise ValueError(f"variance must be >= 0, got {variance_array[d]} for domain {d}")
            predicted_c_array = _floats(predicted_c, "predicted_c", shape)
            predicted_e_array = _floats(predicted_e, "predicted_e", shape)
            row = _first(con, "SELECT coalesce(max(mixture_id), -1) + 1 FROM mixtures")
            mixture_id = int(row[0]) if row else 0
            _insert(
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
                return _read_sorted(con, "mixtures")
            return _arrow(
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
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        region_ids = np.sort(_integers(regions, "regions"))
        if region_ids.size == 0:
            raise ValueError("regions must not be empty: a designed mixture keeps at least one region")
        repeated = region_ids[1:][region_ids[1:] == region_ids[:-1]]
        if repeated.size:
            raise ValueError(f"regions lists region {int(repeated[0])} more than once")
        table, what = _DESIGN_LEVELS[level]
        with self.write(rehash=()) as con:
            n_domains = _count(con, "domains")
            if n_domains == 0:
                raise ValueError("write the domains before adding a design mixture (the store has none)")
            n_regions = _count(con, table)
            _ids_in_range(region_ids, "regions", n_regions, what)
            share_array = _floats(shares, "shares", (n_regions,))
            if (share_array < 0).any():
                r = int(np.argmax(share_array < 0))
                raise ValueError(f"shares must be >= 0, got {share_array[r]} for region {r}")
            total = float(share_array.sum())
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"shares must sum to 1 (within 1e-6), got {total!r}")
            shape = (n_domains,)
            phi_array = _floats(phi, "phi", shape)
            variance_array = _floats(variance, "variance", shape)
            if (variance_array < 0).any():
                d = int(np.argmax(variance_array < 0))
                raise ValueError(f"variance must be >= 0, got {variance_array[d]} for domain {d}")
            row = _first(con, "SELECT coalesce(max(design_id), -1) + 1 FROM design_mixtures")
            design_id = int(row[0]) if row else 0

            def repeat(value: Any, kind: pa.DataType) -> pa.Array:
                return pa.array([value] * n_domains, kind)

            _insert(
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
            return _arrow(con, query, [config_key, config_key, level, level])

    def write_layout(self, x: Any, y: Any, key: str) -> None:
        """Replace the 2-D layout of the leaves.

        Parameters
        ----------
        x, y : array-like of shape (n_leaves,)
            Coordinates of each leaf; finite.
        key : str
            What produced the layout (method, version, every hyperparameter), kept in ``meta.layout_key`` so a
            cached layout is recomputed when any of them changes.
        """
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string naming how the layout was made, got {key!r}")
        with self.write(rehash=()) as con:
            n_leaves = _count(con, "leaves")
            x_array = _floats(x, "x", (n_leaves,))
            y_array = _floats(y, "y", (n_leaves,))
            con.execute("DELETE FROM layout")
            _insert(
                con,
                "layout",
                pa.table({"leaf_id": np.arange(n_leaves, dtype=np.int32), "x": x_array, "y": y_array}),
            )
            con.execute("DELETE FROM meta WHERE key = 'layout_key'")
            con.execute("INSERT INTO meta (key, value) VALUES ('layout_key', ?)", [key])

    def add_run(
        self,
        kind: str,
        config: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        status: str = "running",
    ) -> str:
        """Record the start of a run and return its id (a random hex id unless given)."""
        _nonempty_string(kind, "kind")
        run_id = _nonempty_string(secrets.token_hex(8) if run_id is None else run_id, "run_id")
        config_json = _json_mapping(config or {}, "config")
        with self.write(rehash=()) as con:
            if _first(con, "SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
                raise ValueError(f"run_id {run_id!r} already exists in {self.path}")
            con.execute(
                "INSERT INTO runs (run_id, kind, config, started_at, status) VALUES (?, ?, ?, ?, ?)",
                [run_id, kind, config_json, _utc_now(), status],
            )
        return run_id

    def finish_run(
        self, run_id: str, *, status: str = "done", timings: Mapping[str, Any] | None = None
    ) -> None:
        """Record the end of a run: its status (``done``, ``failed``, ...) and timings (seconds by stage)."""
        timings_json = _json_mapping(timings, "timings")
        with self.write(rehash=()) as con:
            if not _first(con, "SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
                raise ValueError(f"run_id {run_id!r} is not a run of {self.path}")
            con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, timings = ? WHERE run_id = ?",
                [_utc_now(), status, timings_json, run_id],
            )

    def runs(self) -> list[dict[str, Any]]:
        """Run records, oldest first, with ``config`` and ``timings`` decoded from JSON."""
        with self.read() as con:
            table = _arrow(con, "SELECT * FROM runs ORDER BY started_at, run_id")
        return [_decode_run(record) for record in table.to_pylist()]

    # -- reading --------------------------------------------------------------------------------------------------

    def selection_inputs(self) -> SelectionInputs:
        """Read phi, sd, measured, base, active, domain names, members, the tree and the content hash.

        One snapshot, column-wise: the effects are scanned in batches of 2^20 rows and put in place by (leaf,
        domain) into (n_leaves, n_domains) matrices, the points into one array of point ids in (leaf, rank)
        order with the leaves' offsets into it (no sort of either table), and the content hash is read from
        ``meta`` in the same transaction, so it names exactly the contents read. Memory: 8 + 8 + 1 bytes per
        leaf x domain and 8 bytes per point, plus one batch at a time.

        Raises
        ------
        StoreError
            When the store has no tree, no domains or no effects yet.
        """
        with self.read() as con:
            leaves = con.execute("SELECT parent_id, size FROM leaves ORDER BY leaf_id").fetchnumpy()
            parents = con.execute("SELECT large_id FROM parents ORDER BY parent_id").fetchnumpy()
            domains = con.execute("SELECT name, base, active FROM domains ORDER BY domain_id").fetchnumpy()
            leaf_size = np.asarray(leaves["size"], dtype=np.int64)
            n_leaves, n_domains = leaf_size.size, len(domains["name"])
            if n_leaves == 0 or n_domains == 0:
                raise StoreIncompleteError(
                    f"{self.path} has {n_leaves} leaves and {n_domains} domains: build the tree and domains first"
                )
            n_effects = _count(con, "effects")
            if n_effects != n_leaves * n_domains:
                raise StoreIncompleteError(
                    f"{self.path} has no posterior effects for its {n_leaves} leaves x {n_domains} domains yet; "
                    "run the measurement and Bayes stages (or `harp synth` for a demo store)"
                )
            # Scanned in storage order and put in place by id: no sort of the big tables.
            phi = np.empty(n_leaves * n_domains)
            sd = np.empty(n_leaves * n_domains)
            measured = np.empty(n_leaves * n_domains, dtype=bool)
            effects = con.sql("SELECT leaf_id, domain_id, mean, sd, measured FROM effects")
            for batch in effects.to_arrow_reader(_BATCH_ROWS):
                cell = _numpy(batch, 0, np.int64) * n_domains + _numpy(batch, 1, np.int64)
                phi[cell] = _numpy(batch, 2, np.float64)
                sd[cell] = _numpy(batch, 3, np.float64)
                measured[cell] = _numpy(batch, 4, np.bool_)
            offsets = np.zeros(n_leaves + 1, dtype=np.int64)
            np.cumsum(leaf_size, out=offsets[1:])
            point_ids = np.empty(int(offsets[-1]), dtype=np.int64)
            points = con.sql("SELECT point_id, leaf_id, rank_in_leaf FROM points")
            for batch in points.to_arrow_reader(_BATCH_ROWS):
                place = offsets[_numpy(batch, 1, np.int64)] + _numpy(batch, 2, np.int64)
                point_ids[place] = _numpy(batch, 0, np.int64)
            content_hash = _stored_hash(con)
        shape = (n_leaves, n_domains)
        return SelectionInputs(
            phi=phi.reshape(shape),
            sd=sd.reshape(shape),
            measured=measured.reshape(shape),
            base=np.asarray(domains["base"], dtype=np.float64),
            active=np.asarray(domains["active"], dtype=bool),
            domain_names=[str(name) for name in domains["name"]],
            point_ids=point_ids,
            member_offsets=offsets,
            leaf_parent=np.asarray(leaves["parent_id"], dtype=np.int64),
            parent_large=np.asarray(parents["large_id"], dtype=np.int64),
            leaf_size=leaf_size,
            content_hash=content_hash,
        )

    def layout(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The (x, y) coordinates of the leaves, by leaf id, or None when no layout is stored."""
        with self.read() as con:
            result = con.execute("SELECT x, y FROM layout ORDER BY leaf_id").fetchnumpy()
        if len(result["x"]) == 0:
            return None
        return np.asarray(result["x"], dtype=np.float64), np.asarray(result["y"], dtype=np.float64)

    def layout_key(self) -> str | None:
        """The key of the stored layout (what produced it), or None."""
        return self.meta().get("layout_key")

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (schema_version, created_at, harp_version, layout_key, ...)."""
        with self.read() as con:
            return dict(con.execute("SELECT key, value FROM meta").fetchall())

    def leaf_examples(
        self, leaf_id: int, limit: int = 5, offset: int = 0, *, with_response: bool = False
    ) -> list[tuple[Any, ...]]:
        """Points of one leaf in rank order, as ``(point_id, text, source)`` tuples, or with ``with_response``
        as ``(point_id, text, source, response)``.

        Parameters
        ----------
        leaf_id : int
            The leaf g.
        limit : int, default 5
            At most this many points.
        offset : int, default 0
            Skip this many first.
        with_response : bool, default False
            Add each point's ``response`` (None where the store has none).
        """
        for name, value in (("leaf_id", leaf_id), ("limit", limit), ("offset", offset)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        with self.read() as con:
            n_leaves = _count(con, "leaves")
            if leaf_id >= n_leaves:
                raise ValueError(f"leaf_id must lie in 0..{n_leaves - 1}, got {leaf_id}")
            rows = con.execute(
                "SELECT point_id, text, source, response FROM points WHERE leaf_id = ? "
                "ORDER BY rank_in_leaf LIMIT ? OFFSET ?",
                [int(leaf_id), int(limit), int(offset)],
            ).fetchall()
        if with_response:
            return [(int(point), text, source, response) for point, text, source, response in rows]
        return [(int(point), text, source) for point, text, source, _ in rows]

    def leaf_previews(self, per_leaf: int = 3) -> pa.Table:
        """The first ``per_leaf`` points of every leaf in one query (for hover texts).

        Returns
        -------
        pyarrow.Table
            Columns ``leaf_id``, ``rank_in_leaf``, ``point_id``, ``text``, ``source``, ``response``, sorted by leaf
            and rank.
        """
        if isinstance(per_leaf, bool) or not isinstance(per_leaf, int | np.integer) or per_leaf < 0:
            raise ValueError(f"per_leaf must be an integer >= 0, got {per_leaf!r}")
        with self.read() as con:
            return _arrow(
                con,
                "SELECT leaf_id, rank_in_leaf, point_id, text, source, response FROM points WHERE rank_in_leaf < ? "
                "ORDER BY leaf_id, rank_in_leaf",
                [int(per_leaf)],
            )

    def content_hash(self, *, recompute: bool = False) -> str:
        """SHA-256 of the canonical contents of the points, tree, domains and effects.

        Rows are taken in primary-key order and values encoded by type, so the hash depends neither on the
        physical row order nor on the file (it survives Parquet export and import); runs, selections, meta,
        measurements, mixture validations and designed mixtures are left out. See :mod:`harp.content_hash`.

        Parameters
        ----------
        recompute : bool, default False
            Compute it from the tables (seconds at 10^7 points) instead of reading the value every write keeps
            in ``meta`` (one row); both are equal, which the tests check.
        """
        with self.read() as con:
            return _hashes.recompute(con) if recompute else _stored_hash(con)

    def table_names(self) -> list[str]:
        """The tables of this store, in schema order."""
        with self.read() as con:
            present = _table_names(con)
        return [name for name in _migrations.TABLE_KEYS if name in present]

    def count(self, name: str) -> int:
        """The number of rows of one of the store's tables (one SQL count).

        Raises
        ------
        ValueError
            ``invalid table name`` when ``name`` is not one of the store's tables.
        """
        _whitelisted(name)
        with self.read() as con:
            if name not in _table_names(con):
                raise ValueError(f"invalid table name {name!r}: {self.path} has no such table")
            return _count(con, name)

    def read_table(self, name: str) -> pa.Table:
        """A whole table as a pyarrow Table, rows in primary-key order.

        Raises
        ------
        ValueError
            ``invalid table name`` when ``name`` is not one of the store's tables.
        """
        if not isinstance(name, str) or name not in _migrations.TABLE_KEYS:
            raise ValueError(
                f"invalid table name {name!r}; expected one of {', '.join(_migrations.TABLE_KEYS)}"
            )
        with self.read() as con:
            if name not in _table_names(con):
                raise ValueError(f"invalid table name {name!r}: {self.path} has no such table")
            return _read_sorted(con, name)

    def summary(self, *, with_hash: bool = True) -> dict[str, Any]:
        """Counts, schema version, content hash and runs, for `harp info` and the app's header.

        Every figure is one SQL aggregate or a row of ``meta``: the memory used does not grow with the store.

        Measured leaves. ``n_measured_leaves`` counts the leaves with a measurement, ``n_held_out_leaves`` those
        of them that ``harp infer --hold-out`` left out of the empirical-Bayes fit (from ``meta.effects_source``),
        so ``n_measured_leaves - n_held_out_leaves`` leaves carry a measured posterior effect (``n_fit_leaves``).
        A store whose effects were not written by ``harp infer`` counts the leaves its effects mark measured.

        Parameters
        ----------
        with_hash : bool, default True
            Include ``content_hash`` (one row of ``meta``); None otherwise.
        """
        with self.read() as con:
            present = _table_names(con)
            counts = {name: _count(con, name) for name in _migrations.TABLE_KEYS if name in present}
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            if _FIT_LEAVES in meta:  # kept by every write of the effects
                fit_leaves = int(meta[_FIT_LEAVES])
            else:  # a store from before schema version 3's writes: one scan of the effects
                row = _first(con, "SELECT count(DISTINCT leaf_id) FROM effects WHERE measured")
                fit_leaves = int(row[0]) if row else 0
            row = _first(con, "SELECT count(*) FROM domains WHERE active")
            active = int(row[0]) if row else 0
            n_mixtures = _count_mixtures(con)
            n_design_mixtures = _count_design_mixtures(con)
            content_hash = _stored_hash(con) if with_hash else None
            runs = _arrow(con, "SELECT * FROM runs ORDER BY started_at, run_id").to_pylist()
        source = json.loads(meta["effects_source"]) if meta.get("effects_source") else None
        held_out = int(source.get("held_out_leaves") or 0) if isinstance(source, dict) else 0
        return {
            "path": str(self.path),
            "schema_version": int(meta["schema_version"]),
            "harp_version": meta.get("harp_version"),
            "created_at": meta.get("created_at"),
            "layout_key": meta.get("layout_key"),
            "effects_source": source,
            "content_hash": content_hash,
            "n_points": counts.get("points", 0),
            "n_leaves": counts.get("leaves", 0),
            "n_parents": counts.get("parents", 0),
            "n_large_nodes": counts.get("large_nodes", 0),
            "n_domains": counts.get("domains", 0),
            "n_active_domains": active,
            "n_measured_leaves": fit_leaves + held_out,
            "n_held_out_leaves": held_out,
            "n_fit_leaves": fit_leaves,
            "n_measurements": counts.get("measurements", 0),
            "has_effects": counts.get("effects", 0) > 0,
            "has_layout": counts.get("layout", 0) > 0,
            "n_selections": counts.get("selections", 0),
            "n_mixtures": n_mixtures,
            "n_design_mixtures": n_design_mixtures,
            "counts": counts,
            "runs": [_decode_run(record) for record in runs],
        }

    # -- selections -----------------------------------------------------------------------------------------------

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
        weights_json = None if weights is None else _json_list(weights, "weights", float)
        pinned_json = _json_list(pinned, "pinned", int)
        excluded_json = _json_list(excluded, "excluded", int)
        points = _integers(getattr(selection, "points", None), "selection.points")
        point_leaves = _integers(getattr(selection, "point_leaves", None), "selection.point_leaves")
        if points.size != point_leaves.size:
            raise ValueError(
                f"selection.points has {points.size} entries but selection.point_leaves has {point_leaves.size}"
            )
        if store_hash is not None and not re.fullmatch(r"[0-9a-f]{64}", str(store_hash)):
            raise ValueError(f"store_hash must be a content hash (64 hex digits), got {store_hash!r}")
        with self.write(rehash=()) as con:
            existing = _first(con, "SELECT selection_id FROM selections WHERE name = ?", [name])
            if existing is not None:
                if not overwrite:
                    raise ValueError(
                        f"name: a selection named {name!r} already exists in {self.path}; "
                        "pass overwrite=True to replace it"
                    )
                con.execute("DELETE FROM selection_points WHERE selection_id = ?", [existing[0]])
                con.execute("DELETE FROM selections WHERE selection_id = ?", [existing[0]])
            row = _first(con, "SELECT coalesce(max(selection_id), -1) + 1 FROM selections")
            selection_id = int(row[0]) if row else 0
            con.execute(
                "INSERT INTO selections (selection_id, name, created_at, envelope, weights, budget, pinned, excluded, "
                "store_hash, n_points) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    selection_id,
                    name,
                    _utc_now(),
                    envelope_name,
                    weights_json,
                    budget_value,
                    pinned_json,
                    excluded_json,
                    _stored_hash(con) if store_hash is None else str(store_hash),
                    int(points.size),
                ],
            )
            _insert(
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
            table = _arrow(con, "SELECT * FROM selections ORDER BY selection_id")
        return [_decode_selection(record) for record in table.to_pylist()]

    def load_selection(self, name: str) -> dict[str, Any]:
        """A saved selection: its settings plus ``points`` and ``point_leaves`` (int64 arrays, in order).

        Raises
        ------
        ValueError
            When no selection has that name.
        """
        with self.read() as con:
            table = _arrow(con, "SELECT * FROM selections WHERE name = ?", [name])
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


def _decode_run(record: dict[str, Any]) -> dict[str, Any]:
    for field in ("config", "timings"):
        record[field] = json.loads(record[field]) if record[field] else None
    return record


def _decode_selection(record: dict[str, Any]) -> dict[str, Any]:
    for field in ("weights", "pinned", "excluded"):
        record[field] = json.loads(record[field]) if record[field] is not None else None
    return record


# ----------------------------------------------------------------------------------------------------------------
# Parquet interchange


def _tables_at_version(version: int) -> list[str]:
    """The tables a store of this schema version holds, in schema order."""
    con = duckdb.connect(":memory:")
    try:
        _migrations.apply_migrations(con, 0, version, record=False)
        present = _table_names(con)
    finally:
        con.close()
    return [name for name in _migrations.TABLE_KEYS if name in present]


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
        tables = {name: _read_sorted(con, name) for name in names}
    written = []
    for name, table in tables.items():
        target = directory / f"{name}.parquet"
        remove_leftover_temporaries(target)
        temporary = _temporary_beside(target, "export")
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
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
    latest = _migrations.latest_version()
    if version > latest:
        raise StoreError(
            f"{source} is an export of schema version {version}; this harp-explorer ({_harp_version()}) reads "
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
    _check_target(target, overwrite)
    temporary = _temporary_beside(target, "import")
    try:
        con = duckdb.connect(str(temporary))
        try:
            _migrations.apply_migrations(con, 0, version, record=False)
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
                _insert(con, name, data.select(columns))
            con.commit()
            _schema_version(con, target)
            _migrations.apply_migrations(con, version, harp_version=_harp_version())
            # The export's hash rows are not trusted: the hash is computed from what was imported.
            con.begin()
            _hashes.record_digests(con, {table: _hashes.table_digest(con, table) for table in HASHED_TABLES})
            con.commit()
        except duckdb.Error as error:
            raise StoreError(f"cannot import {source}: {error}") from error
        except _migrations.MigrationError as error:
            raise StoreError(f"cannot import {source}: {error}") from error
        finally:
            con.close()
        _publish(temporary, target, overwrite=overwrite)
    finally:
        _remove_quietly(temporary)
    return Store(target, lock_timeout=lock_timeout)
