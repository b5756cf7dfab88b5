"""The explorer's charts beside the map: the running-gain curve, predicted scores, a leaf's effects, and the
regions' heatmap.

Notation as in :mod:`app.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from app.figures.palette import BASE_COLOR, ENVELOPE_COLORS, ENVELOPE_NAMES, HELPS_HURTS, symmetric_range


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
