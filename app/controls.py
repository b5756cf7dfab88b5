"""The Explore page's controls and their glue to ``st.session_state`` and the URL.

One canonical :class:`~app.state.ViewState` lives in ``st.session_state["view"]``. Widgets have their own keys
(``ctl_*``); at the start of a run the view is pushed into any widget key that is missing (a page switch clears
them) or into all of them after a programmatic change (reset, pin from the leaf panel, a reloaded selection:
those set ``view_dirty``). At the end of the controls the view is read back from the widgets and mirrored into
``st.query_params``, so the URL always reproduces what the user sees.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import text
from app.data import StoreBundle
from app.state import (
    ENVELOPE_LABELS,
    ENVELOPES,
    OBJECTIVE,
    QUERY_KEYS,
    ViewState,
    default_view,
    format_leaf_ids,
    parse_leaf_ids,
    parse_query,
    to_query,
)

LABEL_OPTIONS = {"none": "no labels", "large": "large nodes", "parent": "parents"}
ss = st.session_state


def _signature(bundle: StoreBundle) -> tuple[Any, ...]:
    return (bundle.path, bundle.shape())


def ensure_view(bundle: StoreBundle) -> ViewState:
    """The current view; on the first run for this store it comes from the URL (warnings kept for display)."""
    if ss.get("view_signature") != _signature(bundle) or "view" not in ss:
        view, warnings = parse_query(st.query_params.to_dict(), bundle.shape())
        ss["view"] = view
        ss["view_signature"] = _signature(bundle)
        ss["view_warnings"] = warnings
        ss["view_dirty"] = True
        ss.setdefault("open_leaves", [])
    _push_to_widgets(ss["view"], force=bool(ss.get("view_dirty")), bundle=bundle)
    ss["view_dirty"] = False
    return ss["view"]


def set_view(view: ViewState) -> None:
    """Change the view from code (a callback or another page); the widgets follow on the next run."""
    ss["view"] = view
    ss["view_dirty"] = True


def set_open_leaves(leaves: list[int]) -> None:
    """Open these leaves in the leaf panel (the panel's own widget follows on the next run)."""
    ss["open_leaves"] = [int(g) for g in leaves]


def weights_frame(bundle: StoreBundle, view: ViewState) -> pd.DataFrame:
    # The editable columns first: the controls column is narrow.
    return pd.DataFrame(
        {
            "domain": list(bundle.domain_names),
            "active": list(view.active),
            "weight": list(view.weights),
            "base": bundle.base,
            "measured leaves": bundle.measured_per_domain().astype(np.int64),
        }
    )


def view_weights_from_frame(frame: pd.DataFrame) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """Weights and active toggles from the edited table; an emptied or negative weight cell counts as 0."""
    weights = []
    for value in frame["weight"].tolist():
        try:
            w = float(value)
        except (TypeError, ValueError):
            w = 0.0
        weights.append(w if np.isfinite(w) and w > 0 else 0.0)
    active = tuple(bool(a) if a is not None and not pd.isna(a) else False for a in frame["active"].tolist())
    return tuple(weights), active


def _push_to_widgets(view: ViewState, *, force: bool, bundle: StoreBundle) -> None:
    values = {
        "ctl_envelope": view.envelope,
        "ctl_budget_slider": int(view.budget),
        "ctl_budget_number": int(view.budget),
        "ctl_color": view.color,
        "ctl_pinned": format_leaf_ids(view.pinned),
        "ctl_excluded": format_leaf_ids(view.excluded),
    }
    for key, value in values.items():
        if force or key not in ss:
            ss[key] = value
    ss.setdefault("ctl_labels", "none")
    if force or "weights_frame" not in ss:
        ss["weights_version"] = ss.get("weights_version", 0) + 1
        ss["weights_frame"] = weights_frame(bundle, view)


def _budget_from_slider() -> None:
    ss["ctl_budget_number"] = ss["ctl_budget_slider"]


def _budget_from_number() -> None:
    ss["ctl_budget_slider"] = ss["ctl_budget_number"]


def _reset_weights(bundle: StoreBundle) -> None:
    default = default_view(bundle.shape())
    set_view(replace(ss["view"], weights=default.weights, active=default.active))


def _reset_view(bundle: StoreBundle) -> None:
    set_view(default_view(bundle.shape()))
    set_open_leaves([])


def weights_section(bundle: StoreBundle) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """The domain weights and active toggles: a full-width expander with an editable table.

    The expander is lazy: the data editor (a canvas grid) is only built while it is open, which spares the
    browser a redraw of it on every budget change. While it is closed the weights are the view's, and the
    editor is rebuilt from the view when it opens again (a widget that is not drawn loses its edits).
    """
    view: ViewState = ss["view"]
    weights, active = view.weights, view.active
    n_active = int(np.count_nonzero(view.effective_weights()))
    expander = st.expander(
        f"Domain weights: {n_active} of {bundle.n_domains} domains weigh in",
        key="ctl_weights_open",
        on_change="rerun",
        icon=":material/tune:",
    )
    with expander:
        if expander.open:
            if ss.get("weights_stale"):
                ss["weights_version"] = ss.get("weights_version", 0) + 1
                ss["weights_frame"] = weights_frame(bundle, view)
                ss["weights_stale"] = False
            edited = st.data_editor(
                ss["weights_frame"],
                key=f"ctl_weights_{ss['weights_version']}",
                hide_index=True,
                num_rows="fixed",
                disabled=["domain", "base", "measured leaves"],
                height=min(36 + 35 * bundle.n_domains, 420),
                column_config={
                    "domain": st.column_config.TextColumn(width="large"),
                    "base": st.column_config.NumberColumn(format="%.3f", help="Base model score b_d"),
                    "active": st.column_config.CheckboxColumn(
                        help="Inactive domains weigh 0 in the objective"
                    ),
                    "weight": st.column_config.NumberColumn(min_value=0.0, step=0.1, format="%.2f"),
                    "measured leaves": st.column_config.NumberColumn(help="Leaves with a measurement on it"),
                },
            )
            weights, active = view_weights_from_frame(edited)
        else:
            ss["weights_stale"] = True
        st.button(
            "Reset to active domains",
            key="ctl_reset_weights",
            on_click=_reset_weights,
            args=(bundle,),
            help="Weight 1 on the domains the store marks active (some leaf credibly helps them), 0 elsewhere.",
        )
    return weights, active


def render(bundle: StoreBundle, weights: tuple[float, ...], active: tuple[bool, ...]) -> ViewState:
    """Draw the controls (in the current container) and return the view they describe, with the weights from
    :func:`weights_section`."""
    total = bundle.total_points
    st.segmented_control(
        "Envelope",
        ENVELOPES,
        format_func=lambda e: ENVELOPE_LABELS[e],
        key="ctl_envelope",
        required=True,
        help="HARP-C counts only the best helpful leaf per domain and every harmful one (conservative); "
        "HARP-E adds all effects up (expansive); both shows them side by side.",
    )
    st.slider(
        "Budget (points)",
        min_value=0,
        max_value=total,
        step=1,
        key="ctl_budget_slider",
        on_change=_budget_from_slider,
        help="The most points to keep. The whole pool means no cap: the best-prefix cut decides.",
    )
    st.number_input(
        "Budget, exact",
        min_value=0,
        max_value=total,
        step=1,
        key="ctl_budget_number",
        on_change=_budget_from_number,
    )
    color_options = [OBJECTIVE, *bundle.domain_names]
    st.selectbox(
        "Color the map by",
        color_options,
        key="ctl_color",
        format_func=lambda c: "weighted objective" if c == OBJECTIVE else str(c),
    )
    st.selectbox("Labels", list(LABEL_OPTIONS), key="ctl_labels", format_func=lambda k: LABEL_OPTIONS[k])

    # Text boxes, not multiselects: a multiselect over 10,000 leaf ids costs the browser seconds per rerun.
    st.text_input(
        "Pinned leaves",
        key="ctl_pinned",
        placeholder="leaf ids, e.g. 12, 40",
        help="Always selected, first, in this order. Pin from the leaf panel or type ids.",
    )
    st.text_input(
        "Excluded leaves",
        key="ctl_excluded",
        placeholder="leaf ids, e.g. 7",
        help="Never selected. Exclude from the leaf panel or type ids.",
    )
    st.button("Reset view", key="ctl_reset_view", on_click=_reset_view, args=(bundle,))

    previous: ViewState = ss["view"]
    pinned, problem = parse_leaf_ids(ss["ctl_pinned"], "Pinned leaves", bundle.n_leaves)
    if problem:
        st.warning(f"{problem}; keeping the previous pins.")
        pinned = previous.pinned
    excluded, problem = parse_leaf_ids(ss["ctl_excluded"], "Excluded leaves", bundle.n_leaves)
    if problem:
        st.warning(f"{problem}; keeping the previous exclusions.")
        excluded = previous.excluded
    overlap = sorted(set(pinned) & set(excluded))
    if overlap:
        st.warning(f"Leaf {overlap[0]} is both pinned and excluded; it is treated as neither.")
        pinned = tuple(g for g in pinned if g not in overlap)
        excluded = tuple(g for g in excluded if g not in overlap)
    view = ViewState(
        envelope=ss["ctl_envelope"] or "C",
        budget=int(ss["ctl_budget_number"]),
        weights=weights,
        active=active,
        color=ss["ctl_color"],
        pinned=tuple(pinned),
        excluded=tuple(excluded),
    )
    ss["view"] = view
    sync_query_params(view, bundle)
    return view


def sync_query_params(view: ViewState, bundle: StoreBundle) -> None:
    """Mirror the view into the URL, touching only the keys that changed (each write is a message)."""
    wanted = to_query(view, bundle.shape())
    for key in QUERY_KEYS:
        if key in wanted:
            if st.query_params.get(key) != wanted[key]:
                st.query_params[key] = wanted[key]
        elif key in st.query_params:
            del st.query_params[key]


def show_view_warnings() -> None:
    """Warnings about refused URL parameters, shown once after the view was read from the URL."""
    warnings = ss.get("view_warnings") or []
    if warnings:
        st.warning(
            "Some settings in the link were not usable and were reset to defaults:\n\n"
            + "\n".join(f"- {text.markdown_text(w, 200)}" for w in warnings),
            icon=":material/link_off:",
        )
        ss["view_warnings"] = []
