"""The :class:`Store`: one class made of the methods of the store's modules, and how a store file is made."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from harp.store import migrations
from harp.store.connection import harp_version
from harp.store.files import check_target, publish, remove_quietly, temporary_beside
from harp.store.measurements import Measurements
from harp.store.mixtures import Mixtures
from harp.store.reads import Reads
from harp.store.runs import Runs
from harp.store.selections import Selections
from harp.store.writes import StageWrites

__all__ = ["Store"]


class Store(StageWrites, Measurements, Mixtures, Runs, Reads, Selections):
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
        check_target(target, overwrite)
        temporary = temporary_beside(target, "create")
        try:
            con = duckdb.connect(str(temporary))
            try:
                migrations.apply_migrations(con, 0, harp_version=harp_version())
            finally:
                con.close()
            publish(temporary, target, overwrite=overwrite)
        finally:
            remove_quietly(temporary)
        return cls(target, lock_timeout=lock_timeout)

    # -- connections ----------------------------------------------------------------------------------------------
