"""Chosen indices as CSV, with a manifest that says how they were chosen.

The CSV has the header ``rank,point_id,leaf_id`` and one row per chosen point, in selection order. Its cells are
integers only, so a spreadsheet cannot read a formula from it; text that travels in the manifest (domain names,
paths) is JSON, which spreadsheets do not evaluate. Both files are written under a temporary name and renamed, so
an interrupted export never leaves a half-written file under the final name.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harp._validation import check_envelope
from harp.select import Selection

CSV_HEADER = "rank,point_id,leaf_id"
MANIFEST_FORMAT = "harp-selection/1"


def selection_csv(selection: Selection) -> str:
    """The chosen points as CSV text: ``rank,point_id,leaf_id`` (rank from 0)."""
    ranks = np.arange(selection.points.size)
    rows = np.column_stack((ranks, selection.points, selection.point_leaves)).astype(np.int64)
    body = "\n".join(f"{r},{p},{g}" for r, p, g in rows.tolist())
    return CSV_HEADER + "\n" + (body + "\n" if body else "")


def selection_manifest(
    selection: Selection,
    *,
    envelope: str,
    weights: Any,
    budget: int | None,
    pinned: Sequence[int] = (),
    excluded: Sequence[int] = (),
    store_hash: str | None,
    domain_names: Sequence[str],
    store_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce a selection: settings, the store's content hash, versions and counts."""
    from harp import __version__

    weights = np.ones(len(domain_names)) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(domain_names),):
        raise ValueError(f"weights has {weights.size} entries but there are {len(domain_names)} domains")
    return {
        "format": MANIFEST_FORMAT,
        "envelope": "HARP-" + check_envelope(envelope),
        "budget": budget,
        "weights": {str(name): float(w) for name, w in zip(domain_names, weights, strict=True)},
        "pinned": [int(g) for g in pinned],
        "excluded": [int(g) for g in excluded],
        "store_hash": store_hash,
        "store_path": None if store_path is None else str(store_path),
        "harp_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": {
            "points": int(selection.points.size),
            "leaves": int(selection.leaves.size),
            "ranked_leaves": int(selection.order.size),
            "cut": int(selection.cut),
        },
        "predicted": {str(n): float(v) for n, v in zip(domain_names, selection.predicted, strict=True)},
        "utility": {"base": selection.base_utility, "selected": selection.utility},
    }


def manifest_path_for(csv_path: str | os.PathLike[str]) -> Path:
    """``FILE.csv`` -> ``FILE.manifest.json``."""
    path = Path(csv_path)
    stem = path.name[: -len(".csv")] if path.name.lower().endswith(".csv") else path.name
    return path.with_name(stem + ".manifest.json")


def write_selection(
    path: str | os.PathLike[str], selection: Selection, manifest: dict[str, Any], *, overwrite: bool = True
) -> tuple[Path, Path]:
    """Write the CSV at ``path`` and the manifest beside it; return both paths."""
    csv_path = Path(path)
    manifest_path = manifest_path_for(csv_path)
    if not csv_path.parent.is_dir():
        raise ValueError(f"out: folder {csv_path.parent} does not exist")
    if not overwrite:
        for target in (csv_path, manifest_path):
            if target.exists():
                raise ValueError(f"out: {target} already exists (pass --force to replace it)")
    _write_atomically(csv_path, selection_csv(selection))
    _write_atomically(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return csv_path, manifest_path


def _write_atomically(target: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
