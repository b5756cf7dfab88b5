"""Turning a current store back into what an older schema version wrote, whatever migrations came after it.

The migration tests downgrade a fresh store to the version before the migration they test. A later migration
that adds a table must not break them, so the tables to drop are found by applying the migrations, not listed.
"""

from __future__ import annotations

import duckdb

from harp.store import migrations


def tables_at(version: int) -> set[str]:
    con = duckdb.connect(":memory:")
    try:
        migrations.apply_migrations(con, 0, version, record=False)
        return {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()


def drop_newer_tables(version: int) -> list[str]:
    """SQL that drops every table the migrations after ``version`` added, and forgets those migrations."""
    added = sorted(tables_at(migrations.latest_version()) - tables_at(version))
    later = [migration.name for migration in migrations.MIGRATIONS[version:]]
    names = ", ".join(f"'{name}'" for name in later) or "''"
    return [f"DROP TABLE {table}" for table in added] + [f"DELETE FROM migrations WHERE name IN ({names})"]
