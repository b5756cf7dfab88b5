"""A folder of stores: list them, name a new one, import into one without ever replacing a file.

The app opens stores from one folder (``harp app --stores DIR``, by default the folder of ``--store``) and
creates new ones there. A new store's name is checked here once (:func:`new_store_path`), then the store is
built by the same library calls as ``harp import`` (:func:`harp.store.import_parquet`) and ``harp load``
(:func:`harp.load.load_arrays`), with ``overwrite`` off: both build under a temporary name and link it into
place, so an existing file is never replaced, even by a store another process creates at the same moment.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STORE_SUFFIX", "StoreFile", "list_stores", "new_store_path", "stores_folder"]

STORE_SUFFIX = ".duckdb"
# Letters, digits, dot, dash and underscore; not starting with a dot (hidden names are our temporaries).
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}")


@dataclass(frozen=True)
class StoreFile:
    """A ``.duckdb`` file in a folder of stores (not opened: whether it is a HARP store shows when it is)."""

    name: str
    path: Path
    size: int
    modified: _dt.datetime  # naive UTC


def stores_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` resolved, or ValueError saying why it cannot hold stores."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise ValueError(f"folder of stores {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"folder of stores {path} is a file, not a folder")
    return path.resolve()


def list_stores(folder: str | os.PathLike[str]) -> list[StoreFile]:
    """The ``.duckdb`` files directly in ``folder``, by name; hidden files (temporaries) are left out."""
    directory = stores_folder(folder)
    found = []
    for entry in os.scandir(directory):
        if entry.name.startswith(".") or not entry.name.endswith(STORE_SUFFIX):
            continue
        try:
            if not entry.is_file():
                continue
            stat = entry.stat()
        except OSError:  # removed while we looked
            continue
        modified = _dt.datetime.fromtimestamp(stat.st_mtime, _dt.timezone.utc).replace(tzinfo=None)
        found.append(StoreFile(entry.name, Path(entry.path), int(stat.st_size), modified))
    return sorted(found, key=lambda store: store.name)


def new_store_path(folder: str | os.PathLike[str], name: str) -> Path:
    """The path of a new store called ``name`` in ``folder``; ValueError when the name is unusable or taken.

    ``name`` may omit the ``.duckdb`` suffix. It is a plain file name: letters, digits, ``.``, ``-`` and
    ``_``, not starting with a dot, so it can never point outside the folder.
    """
    directory = stores_folder(folder)
    clean = str(name).strip()
    if clean.endswith(STORE_SUFFIX):
        clean = clean[: -len(STORE_SUFFIX)]
    if not clean or not _NAME.fullmatch(clean):
        raise ValueError(
            f"name must be a plain file name (letters, digits, '.', '-', '_', not starting with '.'), got {name!r}"
        )
    target = directory / (clean + STORE_SUFFIX)
    if target.exists() or Path(f"{target}.wal").exists():
        raise ValueError(
            f"a store named {target.name} already exists in {directory}; choose another name "
            "(nothing is replaced)"
        )
    return target
