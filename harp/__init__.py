"""HARP explorer: find which regions of a finetuning pool help or hurt each evaluation domain.

The public surface: :func:`select` (greedy selection under HARP-C / HARP-E), :class:`Store` (the DuckDB store of
every stage's results) and the CSV export helpers. Everything else lives in submodules.
"""

# The one source of the version: pyproject.toml reads it (dynamic), `harp --version` and the manifests print it.
__version__ = "0.1.0"

import sys
import types
from typing import TYPE_CHECKING, Any

from harp._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
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

# The public names are imported on first use (PEP 562): `harp info` and `import harp.store` do not pay for numba
# (harp.select) and the pipeline, a third of a second of every command's start.
_HOMES = {
    "HarpResult": "harp.pipeline",
    "Selection": "harp.select",
    "SelectionInputs": "harp.store",
    "Store": "harp.store",
    "StoreError": "harp.store",
    "StoreIncompleteError": "harp.store",
    "StoreLockedError": "harp.store",
    "export_parquet": "harp.store",
    "harp": "harp.pipeline",
    "import_parquet": "harp.store",
    "select": "harp.select",
    "selection_csv": "harp.export",
    "selection_manifest": "harp.export",
    "with_budget": "harp.select",
    "write_selection": "harp.export",
}


__getattr__, __dir__ = _lazy_names("harp", _HOMES, globals())


class _Package(types.ModuleType):
    """Importing the submodule harp.select must not hide the function ``harp.select`` (nor harp.harp's)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
