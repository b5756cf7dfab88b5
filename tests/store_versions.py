"""Turning a current store back into what an older schema version wrote, whatever migrations came after it.

The migration tests downgrade a fresh store to the version before the migration they test. A later migration
that adds a table or a column must not break them, so what to drop is found by applying the migrations, not
listed.
"""

from __future__ import annotations

import duckdb

from harp.store import migrations


def _schema_at(version: int) -> tuple[set[str], set[tuple[str, str]]]:
    """The tables, and the (table, column) pairs, of a store at schema ``version``."""
    con = duckdb.connect(":memory:")
    try:
        migrations.apply_migrations(con, 0, version, record=False)
        tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        columns = {
            (row[0], row[1])
            for row in con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall()
        }
        return tables, columns
    finally:
        con.close()


def tables_at(version: int) -> set[str]:
    return _schema_at(version)[0]


def downgrade_sql(version: int) -> list[str]:
    """SQL that turns a current store into schema ``version``: it drops the columns and the tables the migrations
    after ``version`` added, forgets those migrations and sets the store's schema version."""
    tables_then, columns_then = _schema_at(version)
    tables_now, columns_now = _schema_at(migrations.latest_version())
    added_columns = sorted(
        (table, column) for table, column in columns_now - columns_then if table in tables_then
    )
    later = [migration.name for migration in migrations.MIGRATIONS[version:]]
    names = ", ".join(f"'{name}'" for name in later) or "''"
    return [
        *(f"ALTER TABLE {table} DROP COLUMN {column}" for table, column in added_columns),
        *(f"DROP TABLE {table}" for table in sorted(tables_now - tables_then)),
        f"DELETE FROM migrations WHERE name IN ({names})",
        f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'",
    ]
