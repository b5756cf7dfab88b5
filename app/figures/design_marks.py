"""The design selection's mark on the leaf map: a ring like HARP-C's and HARP-E's, in its own color and dash.

The map component (``app.leaf_map``) draws any marking trace it is sent; this one rides after
:func:`app.figures.map_figure.mark_traces`' traces.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.figures.map_figure import LeafMapData, marker_sizes, typed_array
from app.figures.palette import DESIGN_COLOR, DESIGN_DASH

DESIGN_RING = 19.0  # wider than HARP-E's ring (13), itself wider than HARP-C's (7)


def design_trace_name(rule: str) -> str:
    return f"selected (design-{rule})"


def design_mark_trace(
    data: LeafMapData, leaves: np.ndarray, rule: str, sizes: np.ndarray | None = None
) -> dict[str, Any]:
    """The design selection's leaves as a plotly JSON trace of rings (``sizes``: the leaves' marker sizes)."""
    leaves = np.asarray(leaves, dtype=np.int64)
    if sizes is None:
        sizes = marker_sizes(data.size)
    return {
        "type": "scattergl",
        "mode": "markers",
        "name": design_trace_name(rule),
        "hoverinfo": "skip",
        "meta": {"ring": DESIGN_RING, "dash": DESIGN_DASH},
        "x": typed_array(data.x[leaves]),
        "y": typed_array(data.y[leaves]),
        "customdata": typed_array(leaves.reshape(-1, 1), "i4"),
        "visible": True,
        "marker": {
            "symbol": "circle-open",
            "color": DESIGN_COLOR,
            "line": {"width": 2.5},
            "size": typed_array(sizes[leaves] + DESIGN_RING),
        },
    }
