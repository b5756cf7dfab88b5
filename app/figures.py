"""Plotly figures of the explorer: the leaf map, the running-gain curve, predicted scores, and a leaf's effects.

Notation as in ``harp.select``: leaf g, domain d, ``phi[g, d]`` the posterior mean effect of leaf g on domain d,
``sd[g, d]`` its posterior standard deviation, ``b_d`` the base score, ``w_d`` the weights. Functions take plain
numpy arrays and return ``go.Figure``; they never read the store or Streamlit state, so they are unit-tested
directly. Leaf ids travel in each trace's ``customdata`` (first column); the map component (``app.leaf_map``)
reads clicked and lassoed leaves from there, never from point indices.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

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
    mean = phi @ weights / total
    spread = np.sqrt((sd**2) @ (weights**2)) / total
    return mean, spread


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


def thin_indices(n: int, *, keep: Sequence[int] = (), max_points: int = 2000) -> np.ndarray:
    """At most about ``max_points`` evenly spread indices of 0..n-1, always with the first, the last and ``keep``
    (a line of 10,000 steps draws the same at 2,000 and costs a fifth to send)."""
    if n <= max_points:
        return np.arange(n)
    spread = np.linspace(0, n - 1, max_points).round().astype(np.int64)
    extra = np.asarray([k for k in keep if 0 <= k < n], dtype=np.int64)
    return np.unique(np.concatenate((spread, extra, [0, n - 1])))


def gain_curve(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, int]],
    *,
    budget: int,
    total_points: int,
    height: int = 340,
    max_points: int = 2000,
) -> go.Figure:
    """Running gain ``R_k`` against the points the first k leaves hold (log scale, so that the first few leaves,
    where the selection is decided, are as readable as the long tail), with the best-prefix cut and the budget.

    Parameters
    ----------
    curves : mapping of envelope to (cumulative points after each ranked leaf, gains, cut)
    budget, total_points : int
    """
    fig = go.Figure()
    lows: list[float] = []
    highs: list[float] = []
    for envelope, (cum_points, gains, cut) in curves.items():
        color = ENVELOPE_COLORS.get(envelope, "#111111")
        name = ENVELOPE_NAMES.get(envelope, envelope)
        # R_k at the points the first k leaves hold, k >= 1 (the log axis has no room for k = 0).
        x = np.asarray(cum_points, dtype=np.int64)
        y = np.cumsum(gains)
        if x.size == 0:
            continue
        shown = thin_indices(x.size, keep=(max(cut - 1, 0),), max_points=max_points)
        lows.append(min(float(y.min()), 0.0))
        highs.append(max(float(y.max()), 0.0))
        fig.add_trace(
            go.Scatter(
                x=x[shown], y=y[shown], mode="lines", name=f"{name} running gain", line={"color": color}
            )
        )
        at_cut = max(cut - 1, 0)
        fig.add_trace(
            go.Scatter(
                x=[x[at_cut]],
                y=[y[at_cut] if cut else 0.0],
                mode="markers",
                name=f"{name} cut: {cut} leaves",
                marker={"color": color, "size": 10, "symbol": "diamond"},
                hovertemplate=f"{name} best-prefix cut<br>{cut} leaves, %{{x:,}} points<br>gain %{{y:+.5f}}<extra></extra>",
            )
        )
    if budget < total_points and lows:
        # A trace, not add_vline: its annotation would need log10 coordinates on the log axis.
        fig.add_trace(
            go.Scatter(
                x=[max(budget, 1), max(budget, 1)],
                y=[min(lows), max(highs)],
                mode="lines",
                name=f"budget {budget:,}",
                line={"color": "#5e3c99", "dash": "dash"},
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": "points in the first k ranked leaves (log scale)", "type": "log"},
        yaxis_title="gain in U over base",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0},
        hovermode="closest",
    )
    return fig


def predicted_scores(
    domain_names: Sequence[str],
    base: np.ndarray,
    predicted: Mapping[str, np.ndarray],
    weights: np.ndarray,
) -> go.Figure:
    """Per-domain base score (grey) and predicted score with each envelope's selection, as a dumbbell chart.

    Domains with weight 0 are drawn faded and named "(weight 0)".
    """
    import html

    names = [
        html.escape(str(n)) + ("" if w > 0 else " (weight 0)")
        for n, w in zip(domain_names, weights, strict=True)
    ]
    y = np.arange(len(names))
    fig = go.Figure()
    for envelope, scores in predicted.items():
        xs: list[float | None] = []
        ys: list[float | None] = []
        for i, (b, p) in enumerate(zip(base, scores, strict=True)):
            xs += [float(b), float(p), None]
            ys += [float(i), float(i), None]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": ENVELOPE_COLORS.get(envelope, "#111"), "width": 1},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=base,
            y=y,
            mode="markers",
            name="base",
            marker={"color": BASE_COLOR, "size": 9},
            customdata=np.asarray(names, dtype=object),
            hovertemplate="%{customdata}<br>base %{x:.4f}<extra></extra>",
        )
    )
    faded = np.where(np.asarray(weights) > 0, 1.0, 0.35)
    for envelope, scores in predicted.items():
        delta = np.asarray(scores) - np.asarray(base)
        fig.add_trace(
            go.Scatter(
                x=scores,
                y=y,
                mode="markers",
                name=f"selected ({ENVELOPE_NAMES.get(envelope, envelope)})",
                marker={"color": ENVELOPE_COLORS.get(envelope, "#111"), "size": 9, "opacity": faded},
                customdata=np.column_stack([np.asarray(names, dtype=object), delta]),
                hovertemplate="%{customdata[0]}<br>predicted %{x:.4f} (%{customdata[1]:+.4f})<extra>"
                + ENVELOPE_NAMES.get(envelope, envelope)
                + "</extra>",
            )
        )
    fig.update_layout(
        height=max(260, 22 * len(names) + 90),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"tickmode": "array", "tickvals": y, "ticktext": names, "autorange": "reversed"},
        xaxis_title="score",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0},
    )
    return fig


def leaf_effects(
    domain_names: Sequence[str],
    leaf_ids: Sequence[int],
    phi: np.ndarray,
    sd: np.ndarray,
    measured: np.ndarray,
) -> go.Figure:
    """phi of a few leaves across the domains with ±1 sd error bars; measured effects filled, inferred open.

    Parameters
    ----------
    leaf_ids : sequence of int, length k
    phi, sd : ndarray of shape (k, n_domains)
    measured : bool ndarray of shape (k, n_domains)
    """
    import html

    names = [html.escape(str(n)) for n in domain_names]
    k = len(leaf_ids)
    offsets = np.linspace(-0.25, 0.25, k) if k > 1 else np.zeros(1)
    fig = go.Figure()
    fig.add_vline(x=0.0, line_color="#999999", line_width=1)
    for row, leaf in enumerate(leaf_ids):
        kinds = np.where(measured[row], "measured", "inferred")
        fig.add_trace(
            go.Scatter(
                x=phi[row],
                y=np.arange(len(names)) + offsets[row],
                mode="markers",
                name=f"leaf {int(leaf)}",
                error_x={"type": "data", "array": sd[row], "thickness": 1.2},
                marker={
                    "size": 8,
                    "symbol": np.where(measured[row], "diamond", "circle-open").tolist(),
                },
                customdata=np.column_stack([np.asarray(names, dtype=object), sd[row], kinds]),
                hovertemplate="leaf "
                + str(int(leaf))
                + " · %{customdata[0]}<br>phi %{x:+.4f} ± %{customdata[1]:.4f} (%{customdata[2]})<extra></extra>",
            )
        )
    fig.update_layout(
        height=max(240, 24 * len(names) + 90),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={
            "tickmode": "array",
            "tickvals": np.arange(len(names)),
            "ticktext": names,
            "autorange": "reversed",
        },
        xaxis_title="phi (change in domain score; filled = measured, open = inferred; bars ±1 sd)",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0},
    )
    return fig


def region_heatmap(
    region_labels: Sequence[str],
    domain_names: Sequence[str],
    mean: np.ndarray,
    sd: np.ndarray,
    points: np.ndarray,
) -> go.Figure:
    """Regions x domains: each region's mean posterior effect per domain on the map's diverging scale, its sd,
    points and the domain in the hover.

    Parameters
    ----------
    region_labels : sequence of str, length R (plain text; escaped here)
    domain_names : sequence of str, length D
    mean, sd : ndarray of shape (R, D)
    points : ndarray of shape (R,)
    """
    import html

    rows = [html.escape(str(r)) for r in region_labels]
    columns = [html.escape(str(d)) for d in domain_names]
    half = symmetric_range(np.asarray(mean, dtype=np.float64))
    custom = np.dstack(
        [
            np.asarray(sd, dtype=np.float64),
            np.repeat(np.asarray(points, dtype=np.float64)[:, None], len(columns), 1),
        ]
    )
    fig = go.Figure(
        go.Heatmap(
            z=mean,
            x=columns,
            y=rows,
            customdata=custom,
            colorscale=HELPS_HURTS,
            zmin=-half,
            zmax=half,
            zmid=0.0,
            colorbar={"title": {"text": "mean phi"}, "thickness": 12},
            hovertemplate="%{y} · %{x}<br>mean phi %{z:+.4f} ± %{customdata[0]:.4f}"
            "<br>%{customdata[1]:,.0f} points<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    fig.update_layout(
        height=max(240, 18 * len(rows) + 140),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"type": "category", "tickangle": -40},
    )
    return fig
