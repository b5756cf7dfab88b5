"""Plotly figures of the explorer: the leaf map, the running-gain curve, predicted scores, and a leaf's effects.

Notation as in ``harp.select``: leaf g, domain d, ``phi[g, d]`` the posterior mean effect of leaf g on domain d,
``sd[g, d]`` its posterior standard deviation, ``b_d`` the base score, ``w_d`` the weights. Functions take plain
numpy arrays and return ``go.Figure``; they never read the store or Streamlit state, so they are unit-tested
directly. Leaf ids travel in each trace's ``customdata`` (first column); the map component (``app.leaf_map``)
reads clicked and lassoed leaves from there, never from point indices.

One concern a module: :mod:`app.figures.palette` (colors, names, the effect color range),
:mod:`app.figures.map_figure` (the leaf map) and :mod:`app.figures.charts` (the figures beside it).
"""

from app.figures.charts import (
    gain_curve,
    leaf_effects,
    predicted_scores,
    region_heatmap,
    thin_indices,
)
from app.figures.map_figure import (
    LEAF_KINDS,
    MAP_TRACES,
    MARK_TRACES,
    RINGS,
    LeafMapData,
    assemble_map,
    example_trace,
    leaf_map,
    map_base,
    map_colors,
    mark_leaves,
    mark_templates,
    mark_traces,
    marker_sizes,
    objective_effect,
    to_json,
    typed_array,
    view_range,
)
from app.figures.palette import (
    BASE_COLOR,
    ENVELOPE_COLORS,
    ENVELOPE_DASH,
    ENVELOPE_NAMES,
    HELPS_HURTS,
    OPEN_COLOR,
    symmetric_range,
)

__all__ = [
    "BASE_COLOR",
    "ENVELOPE_COLORS",
    "ENVELOPE_DASH",
    "ENVELOPE_NAMES",
    "HELPS_HURTS",
    "LEAF_KINDS",
    "LeafMapData",
    "MAP_TRACES",
    "MARK_TRACES",
    "OPEN_COLOR",
    "RINGS",
    "assemble_map",
    "example_trace",
    "gain_curve",
    "leaf_effects",
    "leaf_map",
    "map_base",
    "map_colors",
    "mark_leaves",
    "mark_templates",
    "mark_traces",
    "marker_sizes",
    "objective_effect",
    "predicted_scores",
    "region_heatmap",
    "symmetric_range",
    "thin_indices",
    "to_json",
    "typed_array",
    "view_range",
]
