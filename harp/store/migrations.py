"""Schema migrations of the HARP store.

Each migration is a function named ``mNNN_what_it_does`` that takes a DuckDB connection and changes the schema.
Migrations are append-only: once released, a migration is never edited; a schema change is a new migration at the
end of :data:`MIGRATIONS`. The schema version of a store is the number of migrations applied to it, recorded as
``meta.schema_version``; the table ``migrations(name, applied_at)`` lists them with the time each was applied
(UTC). Every migration runs in its own transaction together with its bookkeeping, so a failing migration leaves
the store exactly as it was before it.

:data:`TABLE_KEYS` is the whitelist of table names, each with the columns that order its rows canonically (its
primary key). A migration that adds a table adds its entry there.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLE_KEYS",
    "Migration",
    "MigrationError",
    "apply_migrations",
    "latest_version",
    "utc_now",
]

#: Every table a store may hold, mapped to the columns that order its rows canonically.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "meta": ("key",),
    "migrations": ("name",),
    "large_nodes": ("large_id",),
    "parents": ("parent_id",),
    "leaves": ("leaf_id",),
    "points": ("point_id",),
    "domains": ("domain_id",),
    "measurements": ("leaf_id", "domain_id", "config_key"),
    "effects": ("leaf_id", "domain_id"),
    "layout": ("leaf_id",),
    "runs": ("run_id",),
    "selections": ("selection_id",),
    "selection_points": ("selection_id", "rank"),
    "mixtures": ("mixture_id", "domain_id"),
    "design_mixtures": ("design_id", "domain_id"),
    "point_positions": ("leaf_id", "point_id"),
}


@dataclass(frozen=True)
class Migration:
    """One named schema change; applying the first ``k`` migrations gives schema version ``k``."""

    name: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


class MigrationError(RuntimeError):
    """A migration failed; its transaction was rolled back."""


MIGRATIONS: list[Migration] = []


def _migration(
    function: Callable[[duckdb.DuckDBPyConnection], None],
) -> Callable[[duckdb.DuckDBPyConnection], None]:
    MIGRATIONS.append(Migration(function.__name__, function))
    return function


def _bootstrap(con: duckdb.DuckDBPyConnection) -> None:
    """The two bookkeeping tables, created by the migrator itself (a v0 store may lack ``migrations``)."""
    con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.execute(
        "CREATE TABLE IF NOT EXISTS migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )


@_migration
def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    """The tree, domains, measurements, effects, layout, runs and saved selections (schema version 1)."""
    statements = [
        "CREATE TABLE large_nodes (large_id INTEGER PRIMARY KEY, size BIGINT)",
        "CREATE TABLE parents (parent_id INTEGER PRIMARY KEY, large_id INTEGER NOT NULL, size BIGINT)",
        "CREATE TABLE leaves (leaf_id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL, size BIGINT NOT NULL)",
        """CREATE TABLE points (point_id BIGINT PRIMARY KEY, leaf_id INTEGER NOT NULL,
               rank_in_leaf INTEGER NOT NULL, text VARCHAR, source VARCHAR)""",
        """CREATE TABLE domains (domain_id INTEGER PRIMARY KEY, name VARCHAR UNIQUE NOT NULL,
               base DOUBLE NOT NULL, eval_size INTEGER, active BOOLEAN NOT NULL)""",
        """CREATE TABLE measurements (leaf_id INTEGER, domain_id INTEGER, phi DOUBLE, variance DOUBLE,
               n_eval INTEGER, run_id VARCHAR, config_key VARCHAR, created_at TIMESTAMP,
               PRIMARY KEY (leaf_id, domain_id, config_key))""",
        """CREATE TABLE effects (leaf_id INTEGER, domain_id INTEGER, mean DOUBLE NOT NULL, sd DOUBLE NOT NULL,
               measured BOOLEAN NOT NULL, PRIMARY KEY (leaf_id, domain_id))""",
        "CREATE TABLE layout (leaf_id INTEGER PRIMARY KEY, x DOUBLE NOT NULL, y DOUBLE NOT NULL)",
        """CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, kind VARCHAR, config VARCHAR, started_at TIMESTAMP,
               finished_at TIMESTAMP, status VARCHAR, timings VARCHAR)""",
        """CREATE TABLE selections (selection_id INTEGER PRIMARY KEY, name VARCHAR UNIQUE NOT NULL,
               created_at TIMESTAMP, envelope VARCHAR, weights VARCHAR, budget BIGINT, pinned VARCHAR,
               excluded VARCHAR, store_hash VARCHAR, n_points BIGINT)""",
        """CREATE TABLE selection_points (selection_id INTEGER, rank BIGINT, point_id BIGINT, leaf_id INTEGER,
               PRIMARY KEY (selection_id, rank))""",
    ]
    for statement in statements:
        con.execute(statement)


@_migration
def m002_mixtures(con: duckdb.DuckDBPyConnection) -> None:
    """Mixture validation: the measured and predicted effects of unions of leaves (schema version 2).

    One row per mixture and domain: ``leaves`` is the mixture's sorted leaf ids as a JSON list, ``phi`` and
    ``variance`` its measured effect on the domain, ``predicted_c`` and ``predicted_e`` the HARP-C and HARP-E
    predictions of that effect from the single-leaf effects.
    """
    con.execute(
        """CREATE TABLE mixtures (mixture_id BIGINT, domain_id INTEGER, run_id VARCHAR, config_key VARCHAR,
               leaves VARCHAR NOT NULL, n_points BIGINT, phi DOUBLE NOT NULL, variance DOUBLE,
               predicted_c DOUBLE, predicted_e DOUBLE, PRIMARY KEY (mixture_id, domain_id))"""
    )


@_migration
def m003_content_hash(con: duckdb.DuckDBPyConnection) -> None:
    """The content hash kept in ``meta`` (schema version 3): ``table_hash:<table>`` per hashed table and
    ``content_hash``, from then on updated by every write in its own transaction (see :mod:`harp.store.hashing`);
    likewise ``effects_measured_leaves``, the number of leaves with a measured effect.

    Saved selections whose ``store_hash`` is the old (version 1-2) hash of the store as it is now get the new
    hash of the same contents, so they do not look stale; others keep theirs (they describe other contents).
    """
    from harp.store import hashing

    new = hashing.record_digests(
        con, {table: hashing.table_digest(con, table) for table in hashing.HASHED_TABLES}
    )
    # The count of leaves with a measured effect, which summaries read (kept by every write of the effects).
    measured = con.execute("SELECT count(DISTINCT leaf_id) FROM effects WHERE measured").fetchall()[0][0]
    con.execute("DELETE FROM meta WHERE key = 'effects_measured_leaves'")
    con.execute("INSERT INTO meta (key, value) VALUES ('effects_measured_leaves', ?)", [str(measured)])
    if con.execute("SELECT count(*) FROM selections").fetchall()[0][0]:
        old = hashing.content_hash_v1(con)
        con.execute("UPDATE selections SET store_hash = ? WHERE store_hash = ?", [new, old])


@_migration
def m004_point_responses(con: duckdb.DuckDBPyConnection) -> None:
    """A nullable ``points.response`` beside ``points.text`` (schema version 4): the prompt (or the chat turns)
    in ``text``, the response the model is trained to give in ``response``, so the app can show them apart.

    Older stores keep their texts as they were (prompt and response joined, or the prompt alone) with no
    response. The points digest covers every column, so it and the content hash are recomputed; saved
    selections whose ``store_hash`` is the hash of the store as it was get the new hash of the same contents
    (as ``m003_content_hash`` did), others keep theirs.
    """
    from harp.store import hashing

    before = con.execute("SELECT value FROM meta WHERE key = 'content_hash'").fetchall()
    con.execute("ALTER TABLE points ADD COLUMN response VARCHAR")
    new = hashing.record_digests(con, {"points": hashing.table_digest(con, "points")})
    if before:
        con.execute("UPDATE selections SET store_hash = ? WHERE store_hash = ?", [new, before[0][0]])


@_migration
def m005_design_mixtures(con: duckdb.DuckDBPyConnection) -> None:
    """Designed mixtures: finetunes on random halves of one level's regions (schema version 5).

    One row per subset and domain: ``level`` is ``large`` or ``parent``, ``regions`` the sorted ids of the kept
    regions of that level as a JSON list, ``budget`` and ``seed`` how the subset's points were drawn from them,
    ``shares`` each region's share of the drawn points (one per region of the level) as a JSON list,
    ``n_points`` the training examples used, ``phi`` and ``variance`` the measured effect on the domain.
    """
    con.execute(
        """CREATE TABLE design_mixtures (design_id BIGINT, domain_id INTEGER, run_id VARCHAR, config_key VARCHAR,
               level VARCHAR NOT NULL, regions VARCHAR NOT NULL, budget BIGINT NOT NULL, seed BIGINT NOT NULL,
               shares VARCHAR NOT NULL, n_points BIGINT NOT NULL, phi DOUBLE NOT NULL, variance DOUBLE,
               PRIMARY KEY (design_id, domain_id))"""
    )


@_migration
def m006_point_positions(con: duckdb.DuckDBPyConnection) -> None:
    """Each example's position on the map, around its leaf's (schema version 6).

    One row per point: ``x`` and ``y`` in the coordinates of ``layout``, ``leaf_id`` the point's leaf (so the
    points of a few leaves are read without a scan: rows are kept in leaf order and DuckDB's zone maps skip the
    rest), ``layout_key`` the key of the layout they were computed around (``meta.layout_key`` when they were
    written). Derived display data like the layout: not part of the content hash, replaced or deleted with the
    layout. No primary-key index: it would make a write of 10^7 rows about seven times slower, and the write
    checks that every point appears once.
    """
    con.execute(
        """CREATE TABLE point_positions (leaf_id INTEGER NOT NULL, point_id BIGINT NOT NULL, x DOUBLE NOT NULL,
               y DOUBLE NOT NULL, layout_key VARCHAR NOT NULL)"""
    )


@_migration
def m007_selection_method(con: duckdb.DuckDBPyConnection) -> None:
    """How a saved selection was made (schema version 7): ``method`` is ``HARP-C``, ``HARP-E``,
    ``design-C`` or ``design-E``; ``design`` a design selection's settings as a JSON object (``rule``, ``level``,
    ``config_key`` and ``bootstrap_seed`` of the fit, ``budget``, ``seed`` of the draw), NULL for HARP-C/E;
    ``manifest`` the manifest that ``harp design select`` writes for it, as JSON (NULL for HARP-C/E), so that an
    export of the saved selection is the same file.

    Selections saved before have ``HARP-`` and their envelope as their method. The ``selections`` table is not
    in the content hash, so nothing is rehashed.
    """
    con.execute("ALTER TABLE selections ADD COLUMN method VARCHAR")
    con.execute("ALTER TABLE selections ADD COLUMN design VARCHAR")
    con.execute("ALTER TABLE selections ADD COLUMN manifest VARCHAR")
    con.execute("UPDATE selections SET method = 'HARP-' || upper(envelope) WHERE envelope IS NOT NULL")


#: The schema version this harp-explorer writes (the number of migrations it knows).
SCHEMA_VERSION: int = len(MIGRATIONS)


def latest_version() -> int:
    """The newest schema version known, read at call time so tests may append migrations."""
    return len(MIGRATIONS)


def utc_now() -> _dt.datetime:
    """The time as the store's TIMESTAMP columns hold it: UTC, without a time zone."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def apply_migrations(
    con: duckdb.DuckDBPyConnection,
    start: int,
    stop: int | None = None,
    *,
    record: bool = True,
    harp_version: str = "",
) -> list[str]:
    """Apply ``MIGRATIONS[start:stop]`` in order, each in its own transaction.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A read-write connection with no transaction open.
    start : int
        The store's current schema version (the number of migrations already applied).
    stop : int, optional
        The schema version to reach; the latest by default.
    record : bool, default True
        Record each migration in ``migrations`` and set ``meta.schema_version``. Import turns this off while it
        rebuilds the schema of an exported store whose own bookkeeping rows it then loads.
    harp_version : str
        Written to ``meta.harp_version`` with each recorded migration.

    Returns
    -------
    list of str
        The names of the migrations applied.

    Raises
    ------
    MigrationError
        When a migration fails; that migration's transaction is rolled back, earlier ones stay applied.
    """
    stop = latest_version() if stop is None else stop
    applied = []
    for version in range(start + 1, stop + 1):
        migration = MIGRATIONS[version - 1]
        con.begin()
        try:
            _bootstrap(con)
            migration.apply(con)
            if record:
                now = utc_now()
                con.execute("INSERT INTO migrations (name, applied_at) VALUES (?, ?)", [migration.name, now])
                values = {"schema_version": str(version), "harp_version": harp_version}
                existing = {row[0] for row in con.execute("SELECT key FROM meta").fetchall()}
                if "created_at" not in existing:
                    values["created_at"] = now.isoformat(timespec="microseconds")
                for key, value in values.items():
                    con.execute("DELETE FROM meta WHERE key = ?", [key])
                    con.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [key, value])
            con.commit()
        except Exception as error:
            con.rollback()
            raise MigrationError(
                f"migration {migration.name} failed and was rolled back "
                f"(the store stays at schema version {version - 1}): {error}"
            ) from error
        applied.append(migration.name)
    return applied
