"""The leaf map as a small Streamlit component of our own: the 10,000 leaves are drawn once, a rerun sends marks.

``st.plotly_chart`` sends the whole figure on every rerun and remounts the chart whenever any part of it changes,
so a budget change that adds or drops one selection ring made the browser parse, theme and redraw every leaf
again (seconds at 10,000 leaves). Here the figure is split in three:

- the **base** (per-leaf positions, marker sizes and hover texts, the labels and the layout:
  :func:`app.figures.map_base`) is written once per store and labels as a JSON file into the component's
  folder, and the browser fetches it only when its name changes;
- the **colors** (per-leaf effect, sd and measured flag, the hover templates and the color bar:
  :func:`app.figures.map_colors`, about a twentieth of the base) are another file, per colored quantity; the
  browser puts the two together (as :func:`app.figures.assemble_map` does) and draws the leaves when either
  changes, so a change of the colored domain or of the objective's weights fetches only the colors;
- the **examples** of open leaves (when the user shows them: :func:`app.figures.example_trace`) are a third
  file, fetched when the open leaves change, drawn by plotly as a small-marker trace with its own hover;
- the **marks** (selection rings, open-leaf crosses: :func:`app.figures.mark_traces`) go with every rerun as
  component arguments, and the browser draws them on a canvas over the map without touching the leaves.

The frontend is a static ``index.html`` and plain ``leaf_map.js`` (in ``leaf_map_frontend/``, no npm build) that
speak Streamlit's component protocol by ``postMessage``. Clicked and lassoed leaves come back as the component's
value, ``{"leaves": [leaf ids], "at": time}``.

plotly.js is plotly's ``gl2d`` partial bundle (scattergl and scatter, with the core's color bars, hover and
box/lasso select: all the map uses), vendored as ``leaf_map_frontend/plotly-gl2d.min.js`` (see the README
there) and served from the same folder, so the map works offline. At 1.5 MB it loads and starts in about a
quarter of the time of the full 4.8 MB bundle in the plotly Python package, which the map used before.

The folder Streamlit serves is a temporary directory per server process: the two frontend files, the plotly.js
bundle as ``plotly.min.js``, and the most recent base and colors files, each named by the hash of its contents.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FRONTEND = Path(__file__).resolve().with_name("leaf_map_frontend")
FRONTEND_FILES = ("index.html", "leaf_map.js")
PLOTLY_JS = "plotly-gl2d.min.js"  # served as plotly.min.js
KEEP_BASES = 24  # files of each kind kept in the served folder (a base is about 2 MB at 10,000 leaves)
LEGEND_HEIGHT = 28  # pixels under the plot for the marks' legend


@functools.cache
def serving_dir() -> Path:
    """The folder Streamlit serves the component from, made once per process."""
    folder = Path(tempfile.mkdtemp(prefix="harp-leaf-map-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # Copies, not links: Streamlit refuses to serve a file that resolves outside the component's folder.
    for name in FRONTEND_FILES:
        shutil.copyfile(FRONTEND / name, folder / name)
    shutil.copyfile(FRONTEND / PLOTLY_JS, folder / "plotly.min.js")
    return folder


KINDS = ("base", "colors", "examples")


def base_file(payload: bytes, kind: str = "base") -> str:
    """The served file name for a map file's JSON: ``base-<hash>.json`` for a :func:`app.figures.map_base`,
    ``colors-<hash>.json`` for a :func:`app.figures.map_colors`, ``examples-<hash>.json`` for the examples of
    open leaves (:func:`app.figures.example_trace`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"{kind}-{hashlib.sha256(payload).hexdigest()[:24]}.json"


def publish(name: str, payload: bytes) -> None:
    """Make sure ``name`` (from :func:`base_file`) is served, and keep only the most recently used files of its
    kind (``KEEP_BASES`` of each).

    Called on every rerun: a file removed to make room for other settings' files is written again.
    """
    folder = serving_dir()
    path = folder / name
    if path.exists():
        os.utime(path)
        return
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(payload)
    os.replace(partial, path)
    kind = name.split("-", 1)[0]
    files = sorted(folder.glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP_BASES:]:
        if old != path:
            old.unlink(missing_ok=True)


def leaf_ids_from_value(value: Any) -> list[int]:
    """Sorted distinct leaf ids of the map component's value (``{"leaves": [...], ...}``); junk is skipped."""
    if not isinstance(value, Mapping):
        return []
    leaves: set[int] = set()
    for item in value.get("leaves") or []:
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        if np.isfinite(number) and number >= 0:
            leaves.add(int(number))
    return sorted(leaves)


def leaf_map(
    base: str,
    colors: str,
    marks: Sequence[Mapping[str, Any]],
    *,
    height: int,
    key: str,
    on_change: Callable[[], None] | None = None,
    examples: str | None = None,
) -> Any:
    """Show the map: the base served as ``base`` colored by the file ``colors`` (see :func:`publish`), with
    ``marks`` drawn over it, and the examples of open leaves from the file ``examples`` when given (a layer
    of small markers over the leaves, with its own hover).

    Returns the component's value (the last leaves clicked or lassoed, see :func:`leaf_ids_from_value`).
    """
    from streamlit.components import v1 as components

    # Declared on every run (cheap): it registers the component with this process's runtime and its folder.
    component = components.declare_component("leaf_map", path=str(serving_dir()))
    return component(
        base=base,
        colors=colors,
        marks=list(marks),
        examples=examples,
        key=key,
        default=None,
        on_change=on_change,
        height=height + LEGEND_HEIGHT,
    )
