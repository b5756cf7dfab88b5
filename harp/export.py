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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harp._validation import check_envelope

if TYPE_CHECKING:  # harp.select brings numba, which writing a CSV does not need
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


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """A manifest as the file holds it: JSON indented by 2, one newline at the end."""
    return json.dumps(manifest, indent=2) + "\n"


def saved_selection_files(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """The CSV text and manifest text (None when it was saved without one: HARP-C/E) of a saved selection
    (``Store.load_selection``); for a design selection both are what ``harp design select`` wrote."""
    from types import SimpleNamespace

    csv = selection_csv(SimpleNamespace(points=record["points"], point_leaves=record["point_leaves"]))  # type: ignore[arg-type]
    manifest = record.get("manifest")
    return csv, None if manifest is None else manifest_text(manifest)


def manifest_path_for(csv_path: str | os.PathLike[str]) -> Path:
    """``FILE.csv`` -> ``FILE.manifest.json``."""
    path = Path(csv_path)
    stem = path.name[: -len(".csv")] if path.name.lower().endswith(".csv") else path.name
    return path.with_name(stem + ".manifest.json")


def _is_duckdb_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except OSError:
        return False
    return len(header) == 12 and header[8:12] == b"DUCK"


def _is_our_csv(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(CSV_HEADER) + 2)
    except OSError:
        return False
    return head == b"" or head.decode("utf-8", "replace").splitlines()[0] == CSV_HEADER


def _is_our_manifest(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # either is missing (or a dangling link): they cannot be one file
        return False


def check_outputs(
    csv_path: Path,
    manifest_path: Path,
    inputs: Mapping[str, Path | None],
    *,
    option: str = "out",
) -> None:
    """Refuse a CSV path (or the manifest beside it) where writing would destroy something the user made.

    An output may not be an input of this call (any name for the same file: links, ``..``, case), a DuckDB
    file, or an existing file that is not a selection CSV / manifest written by harp (``harp select``,
    ``harp run``, :func:`write_selection`). ``inputs`` maps each input's option name to its path; messages
    start with ``option``, the name under which the caller took ``csv_path``.

    Raises
    ------
    ValueError
        Naming ``option`` and what the write would have replaced.
    """
    if csv_path.is_dir():
        raise ValueError(f"{option}: {csv_path} is a folder; give the path of a .csv file to write")
    if not csv_path.parent.is_dir():
        raise ValueError(f"{option}: folder {csv_path.parent} does not exist; create it first")
    if not os.access(csv_path.parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"{option}: cannot write into folder {csv_path.parent} (permission denied or read-only)"
        )
    given = {name: path for name, path in inputs.items() if path is not None}
    for name, path in list(given.items()):
        given[f"{name} write-ahead log"] = Path(f"{path}.wal")
    for target, what, ours in (
        (csv_path, "the CSV", _is_our_csv),
        (manifest_path, "the manifest", _is_our_manifest),
    ):
        if not target.exists() and not target.is_symlink():
            continue
        for name, path in given.items():
            if _same_file(target, path):
                raise ValueError(
                    f"{option}: {what} would be written to {target}, which is the {name} of this command; "
                    f"choose another {option}"
                )
        if target.is_dir():
            raise ValueError(f"{option}: {what} would be written to {target}, which is a folder")
        if _is_duckdb_file(target):
            raise ValueError(
                f"{option}: {what} would replace {target}, a DuckDB database (a store?); "
                f"harp never replaces one: choose another {option}"
            )
        if not ours(target):
            raise ValueError(
                f"{option}: {what} would replace {target}, which was not written by harp select; "
                f"remove it yourself or choose another {option}"
            )


def write_selection(
    path: str | os.PathLike[str],
    selection: Selection,
    manifest: dict[str, Any],
    *,
    overwrite: bool = True,
    inputs: Mapping[str, Path | None] | None = None,
) -> tuple[Path, Path]:
    """Write the CSV at ``path`` and the manifest beside it; return both paths.

    Both are staged under PID-named temporaries (:func:`harp.store.stage_text`, which first removes what killed
    earlier writes left) and renamed into place only once both are written, so either file holds the old or
    the new text. Neither may replace a DuckDB file, a file not written by harp, or one of ``inputs`` (see
    :func:`check_outputs`); with ``overwrite`` False an existing CSV or manifest is refused too.
    """
    from harp.store import discard_staged, publish_staged, stage_text

    csv_path = Path(path)
    manifest_path = manifest_path_for(csv_path)
    check_outputs(csv_path, manifest_path, inputs or {}, option="out")
    if not overwrite:
        for target in (csv_path, manifest_path):
            if target.exists():
                raise ValueError(f"out: {target} already exists (pass --force to replace it)")
    staged: list[tuple[Path, Path]] = []
    try:
        staged.append((stage_text(csv_path, selection_csv(selection), "export"), csv_path))
        staged.append((stage_text(manifest_path, manifest_text(manifest), "export"), manifest_path))
        for temporary, target in staged:
            publish_staged(temporary, target)
    finally:
        for temporary, _ in staged:
            discard_staged(temporary)
    return csv_path, manifest_path
