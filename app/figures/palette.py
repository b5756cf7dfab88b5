"""The explorer's colors and names for effects and envelopes, and the color range an effect is drawn over.

Red hurts, blue helps; HARP-C is black and solid, HARP-E orange and dashed, on every figure and page.
"""

from __future__ import annotations

import numpy as np

# ColorBrewer RdBu, spelled out: plotly.js's built-in "RdBu" runs the other way round. Red hurts, blue helps.
HELPS_HURTS = [
    [0.0, "rgb(103,0,31)"],
    [0.1, "rgb(178,24,43)"],
    [0.2, "rgb(214,96,77)"],
    [0.3, "rgb(244,165,130)"],
    [0.4, "rgb(253,219,199)"],
    [0.5, "rgb(247,247,247)"],
    [0.6, "rgb(209,229,240)"],
    [0.7, "rgb(146,197,222)"],
    [0.8, "rgb(67,147,195)"],
    [0.9, "rgb(33,102,172)"],
    [1.0, "rgb(5,48,97)"],
]
ENVELOPE_COLORS = {"C": "#111111", "E": "#e66100"}
ENVELOPE_NAMES = {"C": "HARP-C", "E": "HARP-E"}
# The selection rings' line dash on the map (canvas setLineDash, in pixels): HARP-C solid, HARP-E dashed.
ENVELOPE_DASH: dict[str, list[int]] = {"C": [], "E": [4, 3]}
OPEN_COLOR = "#d4007a"
BASE_COLOR = "#8c8c8c"


def symmetric_range(values: np.ndarray) -> float:
    """Half-width of a color range centred at 0 that is not dominated by a few outliers (99th percentile of
    ``|values|``, never 0)."""
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return 1e-6
    half = float(np.quantile(finite, 0.99))
    if half <= 0:
        half = float(finite.max())
    return half if half > 0 else 1e-6


# The design selection (harp.design_selection), the third selection the map can mark: green, dotted, the widest
# ring, so that it stays apart from HARP-C's solid black and HARP-E's dashed orange rings.
DESIGN_COLOR = "#1b7837"
DESIGN_NAME = "design"
DESIGN_DASH: list[int] = [1, 3]
