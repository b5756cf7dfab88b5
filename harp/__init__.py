"""HARP explorer: find which regions of a finetuning pool help or hurt each evaluation domain.

The public surface: :func:`select` (greedy selection under HARP-C / HARP-E), :class:`Store` (the DuckDB store of
every stage's results) and the CSV export helpers. Everything else lives in submodules.
"""

__version__ = "0.1.0"

from harp.export import selection_csv, selection_manifest, write_selection
from harp.pipeline import HarpResult, harp
from harp.select import Selection, select, with_budget
from harp.store import (
    SelectionInputs,
    Store,
    StoreError,
    StoreIncompleteError,
    StoreLockedError,
    export_parquet,
    import_parquet,
)

__all__ = [
    "HarpResult",
    "Selection",
    "SelectionInputs",
    "Store",
    "StoreError",
    "StoreIncompleteError",
    "StoreLockedError",
    "__version__",
    "export_parquet",
    "harp",
    "import_parquet",
    "select",
    "selection_csv",
    "selection_manifest",
    "with_budget",
    "write_selection",
]
