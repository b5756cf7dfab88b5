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

Schema. ``meta.schema_version`` is the number of migrations applied (see :mod:`harp.store.migrations`). An older store
is migrated when opened read-write; a newer one, or one that lists migrations this version does not know, is
refused with a message that says to upgrade harp-explorer.

The package. The :class:`Store` class is made of one class per concern (:mod:`~harp.store.base`: opening and
transactions; :mod:`~harp.store.writes`, :mod:`~harp.store.measurements`, :mod:`~harp.store.mixtures`,
:mod:`~harp.store.runs`, :mod:`~harp.store.selections` and :mod:`~harp.store.reads`: the methods of their tables);
:mod:`~harp.store.files` holds the whole-file writes, :mod:`~harp.store.connection` the lock retries and schema
checks, :mod:`~harp.store.hashing` the content hash and :mod:`~harp.store.interchange` the Parquet export and
import.
"""

from typing import TYPE_CHECKING

from harp._lazy import lazy_names as _lazy_names

# The exceptions come without DuckDB: the command line imports StoreError at its top, and `harp --help` must not
# pay for DuckDB. Everything else is imported on first use (PEP 562).
from harp.store.errors import StoreError, StoreIncompleteError, StoreLockedError

if TYPE_CHECKING:
    from harp.store.core import Store
    from harp.store.files import (
        LeftoverFileWarning,
        discard_staged,
        publish_staged,
        remove_leftover_temporaries,
        stage_file,
        stage_text,
    )
    from harp.store.hashing import HASHED_TABLES
    from harp.store.interchange import export_parquet, import_parquet
    from harp.store.reads import SelectionInputs
    from harp.store.writes import points_from_members

_HOMES = {
    "HASHED_TABLES": "harp.store.hashing",
    "LeftoverFileWarning": "harp.store.files",
    "SelectionInputs": "harp.store.reads",
    "Store": "harp.store.core",
    "discard_staged": "harp.store.files",
    "export_parquet": "harp.store.interchange",
    "import_parquet": "harp.store.interchange",
    "points_from_members": "harp.store.writes",
    "publish_staged": "harp.store.files",
    "remove_leftover_temporaries": "harp.store.files",
    "stage_file": "harp.store.files",
    "stage_text": "harp.store.files",
}


__getattr__, __dir__ = _lazy_names("harp.store", _HOMES, globals())


__all__ = [
    "HASHED_TABLES",
    "LeftoverFileWarning",
    "SelectionInputs",
    "Store",
    "StoreError",
    "StoreIncompleteError",
    "StoreLockedError",
    "discard_staged",
    "export_parquet",
    "import_parquet",
    "points_from_members",
    "publish_staged",
    "remove_leftover_temporaries",
    "stage_file",
    "stage_text",
]
