"""The leaf map's figure: per-leaf positions and sizes, the colors of one quantity, and the marks over them.

Notation as in :mod:`app.figures`. The map is sent in three parts (see :mod:`app.leaf_map`): :func:`map_base`,
:func:`map_colors` and :func:`mark_traces`; :func:`assemble_map` and :func:`leaf_map` put them together the way the
browser does, for the tests and for a static figure.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from app.figures.palette import (
    ENVELOPE_COLORS,
    ENVELOPE_DASH,
    ENVELOPE_NAMES,
    HELPS_HURTS,
    OPEN_COLOR,
    symmetric_range,
)
from harp.objective import weighted_effect


@dataclass(frozen=True)
class LeafMapData:
    """Per-leaf arrays for :func:`leaf_map`, all of length n_leaves (leaf g at index g).

    ``examples`` holds hover-ready text (already escaped with ``app.text.hover_text`` and joined with
    ``<br>``); ``large`` is each leaf's large node (for labels).
    """

    x: np.ndarray
    y: np.ndarray
    parent: np.ndarray
    large: np.ndarray
    size: np.ndarray
    measured: np.ndarray
    examples: Sequence[str]


def objective_effect(phi: np.ndarray, sd: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Effect of each leaf on the weighted objective: ``sum_d w_d phi[g, d] / W`` and its sd, treating the
    domains' posteriors as independent (``sqrt(sum_d w_d^2 sd[g, d]^2) / W``).

    Parameters
    ----------
    phi, sd : ndarray of shape (n_leaves, n_domains)
    weights : ndarray of shape (n_domains,), non-negative, not all zero
    """
    total = float(np.sum(weights))
    if total <= 0:
        return np.zeros(phi.shape[0]), np.zeros(phi.shape[0])
    mean = weighted_effect(phi, weights)
    spread = np.sqrt((sd**2) @ (weights**2)) / total
    return mean, spread


def marker_sizes(size: np.ndarray, smallest: float = 4.0, largest: float = 14.0) -> np.ndarray:
    """Marker diameters in pixels, by the square root of the leaf size (so area tracks points), shrunk as the
    number of leaves grows.

    Up to 1,000 leaves the diameters span ``smallest`` to ``largest``; beyond, both shrink by
    ``(1000 / n_leaves) ** 0.3`` (never below 2 and 4 pixels), so 10,000 leaves span about 2 to 7 pixels and
    100,000 about 2 to 4: a dense map keeps its gaps instead of becoming one blob.
    """
    root = np.sqrt(np.asarray(size, dtype=np.float64))
    if root.size == 0:
        return root
    shrink = min(1.0, (1000.0 / root.size) ** 0.3)
    smallest, largest = max(2.0, smallest * shrink), max(4.0, largest * shrink)
    low, high = float(root.min()), float(root.max())
    if high <= low:
        return np.full(root.shape, (smallest + largest) / 2)
    return smallest + (largest - smallest) * (root - low) / (high - low)


def view_range(values: np.ndarray, *, tail: float = 0.01, pad: float = 0.1) -> tuple[float, float]:
    """The map's default range on one axis: the bulk of the leaves, not their full extent.

    The range between the ``tail`` and ``1 - tail`` quantiles, widened by ``pad`` of its width on each side (but
    never past the full extent), then by 4% of the result so that markers at the edge are not cut. Leaves beyond
    it are at most ``tail`` of them on each side, and only those further than ``pad`` from the bulk: an island
    of the layout holding more than ``tail`` of the leaves stays in view.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = (float(v) for v in np.quantile(finite, [tail, 1.0 - tail]))
    width = high - low
    low = max(float(finite.min()), low - pad * width)
    high = min(float(finite.max()), high + pad * width)
    margin = 0.04 * (high - low) if high > low else 0.5
    return low - margin, high + margin


# Traces of the leaf map, in order. The marking traces are always present (empty when unused) so that
# :func:`mark_leaves` can update them in place on a cached figure.
MAP_TRACES = (
    "inferred leaf",
    "measured leaf",
    "selected (HARP-C)",
    "selected (HARP-E)",
    "open in leaf panel",
)
MARK_TRACES = MAP_TRACES[2:]  # the small traces a rerun changes (see :func:`mark_traces`)
# The two leaf traces: which leaves (measured on the colored quantity or not), their symbol and outline.
# Inferred leaves get a faint grey outline, so that those near 0 (near-white) still show on white; measured ones
# a thin, half-transparent dark one, so that they are marked without hiding what lies under them.
LEAF_KINDS = (
    ("inferred", "circle", 0.6, "rgba(110,110,110,0.6)", 0.9),
    ("measured", "diamond", 0.8, "rgba(30,30,30,0.55)", 0.8),
)
RINGS = {"C": 7.0, "E": 13.0}  # a selection ring's diameter over its leaf's marker


def mark_templates() -> list[dict[str, Any]]:
    """The marking traces (selection rings, open-leaf crosses) without their points, as plotly JSON dicts."""
    templates: list[dict[str, Any]] = [
        {
            "type": "scattergl",
            "mode": "markers",
            "name": f"selected ({ENVELOPE_NAMES[envelope]})",
            "hoverinfo": "skip",
            # Read by mark_leaves and by the map component's canvas: the ring's offset over the marker size, and
            # its line dash (HARP-E's wider ring is dashed, so that the envelopes stay apart where rings crowd).
            "meta": {"ring": ring, "dash": ENVELOPE_DASH[envelope]},
            "marker": {"symbol": "circle-open", "color": ENVELOPE_COLORS[envelope], "line": {"width": 2.5}},
        }
        for envelope, ring in RINGS.items()
    ]
    templates.append(
        {
            "type": "scattergl",
            "mode": "markers",
            "name": "open in leaf panel",
            "hoverinfo": "skip",
            "marker": {"size": 13, "symbol": "x-thin-open", "color": OPEN_COLOR, "line": {"width": 2.5}},
        }
    )
    return templates


def map_base(data: LeafMapData, *, labels: str = "none", height: int = 620) -> dict[str, Any]:
    """The part of the leaf map that does not depend on the colored quantity: per-leaf positions, marker sizes,
    parents, sizes and hover texts, the two leaf traces' styles, the labels and the layout (without its color
    axis). Numpy arrays stay numpy arrays (:func:`to_json` writes them as typed arrays).

    The map component fetches it once per store and labels; :func:`map_colors` is what a color change sends,
    and :func:`assemble_map` (mirrored by ``leaf_map.js``) puts the two together.
    """
    n = data.x.shape[0]
    # The default view fits the bulk of the layout (view_range); the leaves beyond it travel in the layout's
    # meta, and the map component draws each as an arrowhead at the edge while it lies outside the view.
    x_range, y_range = view_range(data.x), view_range(data.y)
    beyond = np.flatnonzero(
        (data.x < x_range[0]) | (data.x > x_range[1]) | (data.y < y_range[0]) | (data.y > y_range[1])
    )
    extra: list[dict[str, Any]] = []
    if labels in ("large", "parent") and n:
        groups = data.large if labels == "large" else data.parent
        ids, inverse = np.unique(groups, return_inverse=True)
        counts = np.bincount(inverse)
        extra.append(
            {
                "type": "scatter",
                "x": (np.bincount(inverse, weights=data.x) / counts).astype(np.float32),
                "y": (np.bincount(inverse, weights=data.y) / counts).astype(np.float32),
                "mode": "text",
                "text": [("L" if labels == "large" else "P") + str(int(i)) for i in ids],
                "textfont": {"size": 11, "color": "#222222"},
                "name": "large nodes" if labels == "large" else "parents",
                "hoverinfo": "skip",
            }
        )
    return {
        "leaves": {
            "x": data.x.astype(np.float32),
            "y": data.y.astype(np.float32),
            "size": marker_sizes(data.size).astype(np.float32),
            "parent": np.asarray(data.parent, dtype=np.int32),
            "points": np.asarray(data.size, dtype=np.int32),
            "text": list(data.examples),
        },
        "kinds": [
            {
                "kind": kind,
                "type": "scattergl",
                "mode": "markers",
                "name": f"{kind} leaf",
                "marker": {
                    "coloraxis": "coloraxis",
                    "symbol": symbol,
                    "line": {"width": line_width, "color": line_color},
                    "opacity": opacity,
                },
            }
            for kind, symbol, line_width, line_color, opacity in LEAF_KINDS
        ],
        "data": extra,
        "layout": {
            "height": height,
            "margin": {"l": 10, "r": 10, "t": 30, "b": 40},
            "meta": {
                "outside": {
                    "leaves": beyond.astype(np.int32),
                    "x": data.x[beyond].astype(np.float32),
                    "y": data.y[beyond].astype(np.float32),
                }
            },
            # Legend symbols at one size: the markers themselves are 2 pixels across on a big map.
            "legend": {
                "orientation": "h",
                "yanchor": "top",
                "y": 0.0,
                "xanchor": "left",
                "x": 0.0,
                "itemsizing": "constant",
            },
            "xaxis": {"visible": False, "range": list(x_range)},
            "yaxis": {"visible": False, "scaleanchor": "x", "range": list(y_range)},
            "plot_bgcolor": "white",
            "hoverlabel": {"align": "left"},
            "uirevision": "leaf-map",
        },
    }


def map_colors(
    effect: np.ndarray, effect_sd: np.ndarray, measured: np.ndarray, *, color_label: str
) -> dict[str, Any]:
    """The part of the leaf map that a change of the colored quantity changes: each leaf's effect, its sd and
    whether it was measured (which decides its trace), the hover templates and the color axis.

    Parameters
    ----------
    effect, effect_sd : ndarray of shape (n_leaves,)
    measured : bool ndarray of shape (n_leaves,)
    color_label : str
        What ``effect`` is, for the color bar and hover (plain text; escaped here).
    """
    import html

    half = symmetric_range(effect)
    label = html.escape(color_label)
    template = (
        "<b>leaf %{customdata[0]:d}</b> · parent %{customdata[1]:d} · %{customdata[2]:d} points<br>"
        + label
        + ": %{customdata[3]:+.4f} ± %{customdata[4]:.4f} (KIND)<br>%{text}<extra></extra>"
    )
    return {
        "effect": np.asarray(effect, dtype=np.float32),
        "sd": np.asarray(effect_sd, dtype=np.float32),
        "measured": np.asarray(measured, dtype=np.uint8),
        "hovertemplate": {kind[0]: template.replace("KIND", kind[0]) for kind in LEAF_KINDS},
        "coloraxis": {
            "colorscale": HELPS_HURTS,
            "cmin": -half,
            "cmax": half,
            "cmid": 0.0,
            "colorbar": {
                "title": {"text": f"{label}<br>▲ helps<br>▼ hurts", "side": "top"},
                "tickvals": [-half, 0.0, half],
                "ticktext": [f"{-half:+.3g} hurts", "0", f"{half:+.3g} helps"],
                "len": 0.8,
            },
        },
    }


def assemble_map(base: Mapping[str, Any], colors: Mapping[str, Any]) -> dict[str, Any]:
    """The leaf map's plotly figure (a dict, without its marks) from :func:`map_base` and :func:`map_colors`:
    one trace of inferred leaves and one of measured ones, then the labels.

    ``leaf_map.js`` does the same in the browser, so that a color change fetches only the colors. Leaf ids
    travel in the first column of each leaf trace's ``customdata``.
    """
    leaves = base["leaves"]
    measured = np.asarray(colors["measured"]).astype(bool)
    texts = np.asarray(leaves["text"], dtype=object)
    effect = np.asarray(colors["effect"], dtype=np.float32)
    custom = np.column_stack(
        [np.arange(measured.shape[0]), leaves["parent"], leaves["points"], effect, colors["sd"]]
    ).astype(np.float32)  # float32: leaf ids stay exact below 2**24
    traces: list[dict[str, Any]] = []
    for kind, mask in zip(base["kinds"], (~measured, measured), strict=True):
        trace = {key: value for key, value in kind.items() if key != "kind"}
        traces.append(
            {
                **trace,
                "x": np.asarray(leaves["x"])[mask],
                "y": np.asarray(leaves["y"])[mask],
                "customdata": custom[mask],
                "text": texts[mask].tolist(),
                "hovertemplate": colors["hovertemplate"][kind["kind"]],
                "visible": bool(mask.any()),
                "marker": {
                    **trace["marker"],
                    "color": effect[mask],
                    "size": np.asarray(leaves["size"])[mask],
                },
            }
        )
    return {
        "data": traces + list(base["data"]),
        "layout": {**base["layout"], "coloraxis": colors["coloraxis"]},
    }


def to_json(value: Any) -> bytes:
    """``value`` as JSON for the map component, with numpy arrays as plotly's typed arrays
    (:func:`typed_array`)."""
    import json

    def typed(item: Any) -> Any:
        if isinstance(item, np.ndarray):
            kind = {"f": "f4", "i": "i4", "u": "u1", "b": "u1"}[item.dtype.kind]
            return typed_array(item, kind)
        if isinstance(item, Mapping):
            return {key: typed(val) for key, val in item.items()}
        if isinstance(item, list | tuple):
            return [typed(val) for val in item]
        return item

    return json.dumps(typed(value), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def leaf_map(
    data: LeafMapData,
    effect: np.ndarray,
    effect_sd: np.ndarray,
    *,
    color_label: str,
    selected: Mapping[str, np.ndarray] | None = None,
    opened: Sequence[int] = (),
    labels: str = "none",
    height: int = 620,
) -> go.Figure:
    """The map of leaves at their 2-D layout, colored by ``effect`` on a diverging scale centred at 0, as one
    figure (:func:`assemble_map` of :func:`map_base` and :func:`map_colors`, with the marks).

    Parameters
    ----------
    data : LeafMapData
        ``data.measured`` says which leaves were measured on the colored quantity.
    effect, effect_sd : ndarray of shape (n_leaves,)
        The colored quantity (phi of one domain, or the objective) and its posterior sd.
    color_label : str
        What ``effect`` is, for the color bar and hover (plain text; escaped here).
    selected : mapping of envelope ("C" / "E") to the selected leaf ids
        Drawn as rings around the leaves, one color per envelope (see :func:`mark_leaves`).
    opened : sequence of int
        Leaves open in the leaf panel, marked with a cross.
    labels : {"none", "large", "parent"}
        Label each large node or parent at the mean position of its leaves.
    """
    spec = assemble_map(
        map_base(data, labels=labels, height=height),
        map_colors(effect, effect_sd, data.measured, color_label=color_label),
    )
    traces = spec["data"]
    marks = [{**template, "x": [], "y": []} for template in mark_templates()]
    fig = go.Figure({"data": traces[:2] + marks + traces[2:], "layout": spec["layout"]})
    mark_leaves(fig, data, selected=selected or {}, opened=opened)
    return fig


def mark_leaves(
    fig: go.Figure, data: LeafMapData, *, selected: Mapping[str, np.ndarray], opened: Sequence[int]
) -> go.Figure:
    """Set the selection rings and the open-leaf crosses of a :func:`leaf_map` figure, in place."""
    names = [trace.name for trace in fig.data]
    sizes = marker_sizes(data.size)
    for envelope in ("C", "E"):
        trace = fig.data[names.index(f"selected ({ENVELOPE_NAMES[envelope]})")]
        leaves = np.asarray(selected.get(envelope, []), dtype=np.int64)
        trace.update(
            x=data.x[leaves],
            y=data.y[leaves],
            customdata=leaves.reshape(-1, 1),
            visible=envelope in selected,
            marker_size=sizes[leaves] + float(trace.meta["ring"]),
        )
    trace = fig.data[names.index("open in leaf panel")]
    opened_ids = np.asarray(opened, dtype=np.int64)
    trace.update(
        x=data.x[opened_ids],
        y=data.y[opened_ids],
        customdata=opened_ids.reshape(-1, 1),
        visible=bool(len(opened)),
    )
    return fig


def typed_array(values: Any, dtype: str = "f4") -> dict[str, Any]:
    """plotly.js's typed-array JSON form (``{"dtype", "bdata", "shape"}``, as ``go.Figure.to_dict`` writes it):
    a quarter of the size of a list of floats, and no per-number parsing in the browser."""
    array = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    spec: dict[str, Any] = {"dtype": dtype, "bdata": base64.b64encode(array.tobytes()).decode("ascii")}
    if array.ndim > 1:
        spec["shape"] = ", ".join(str(n) for n in array.shape)
    return spec


def mark_traces(
    data: LeafMapData,
    *,
    selected: Mapping[str, np.ndarray],
    opened: Sequence[int],
    sizes: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The selection rings and open-leaf crosses as plotly JSON traces, the same as :func:`mark_leaves` sets
    on a figure (``sizes``: the leaves' marker sizes, :func:`marker_sizes` of ``data.size`` when not given).

    The app sends these on every rerun to its map component (``app.leaf_map``), which draws them over the
    leaves; the rest of the map goes to the browser once per setting. Only the marked leaves are touched.
    """
    templates = {template["name"]: template for template in mark_templates()}
    if sizes is None:
        sizes = marker_sizes(data.size)
    out: list[dict[str, Any]] = []
    for envelope, ring in RINGS.items():
        template = templates[f"selected ({ENVELOPE_NAMES[envelope]})"]
        leaves = np.asarray(selected.get(envelope, []), dtype=np.int64)
        out.append(
            {
                **template,
                "x": typed_array(data.x[leaves]),
                "y": typed_array(data.y[leaves]),
                "customdata": typed_array(leaves.reshape(-1, 1), "i4"),
                "visible": envelope in selected,
                "marker": {**template["marker"], "size": typed_array(sizes[leaves] + ring)},
            }
        )
    template = templates["open in leaf panel"]
    opened_ids = np.asarray(opened, dtype=np.int64)
    out.append(
        {
            **template,
            "x": typed_array(data.x[opened_ids]),
            "y": typed_array(data.y[opened_ids]),
            "customdata": typed_array(opened_ids.reshape(-1, 1), "i4"),
            "visible": bool(len(opened_ids)),
        }
    )
    return out


EXAMPLE_COLOR = "rgba(40, 40, 40, 0.75)"


def example_trace(
    leaf_id: np.ndarray, point_id: np.ndarray, x: np.ndarray, y: np.ndarray, hover: Sequence[str]
) -> dict[str, Any]:
    """The examples of open leaves as one small-marker scattergl trace over the leaves (plotly JSON).

    ``hover`` is hover-ready (escaped with ``app.text.hover_text``); leaf and point ids travel in ``customdata``
    (leaf first, so a click on an example opens its leaf, as a click on the leaf does).
    """
    return {
        "type": "scattergl",
        "mode": "markers",
        "name": "examples of open leaves",
        "x": typed_array(x),
        "y": typed_array(y),
        "customdata": [[int(g), int(p)] for g, p in zip(leaf_id.tolist(), point_id.tolist(), strict=True)],
        "text": list(hover),
        "hovertemplate": "%{text}<extra></extra>",
        "marker": {"size": 4, "color": EXAMPLE_COLOR, "line": {"width": 0}},
        "showlegend": False,
    }
