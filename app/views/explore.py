"""Explore: the leaf map, the controls, the live selection and the leaf panel."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import (
    controls,
    data,
    design_pick,
    example_layer,
    figures,
    leaf_map,
    leaf_view,
    panels,
    region_panel,
    search_panel,
    text,
)
from app.data import StoreBundle, StoreProblem
from app.figures.design_marks import design_mark_trace
from app.state import OBJECTIVE, ViewState


def _load() -> tuple[StoreBundle, str | None]:
    try:
        return data.load_bundle(data.store_path())
    except StoreProblem as problem:
        data.stop_with(problem)
        raise  # unreachable: st.stop() ends the run


def _on_map_select() -> None:
    leaves = leaf_map.leaf_ids_from_value(st.session_state.get("leaf_map"))
    if leaves:
        controls.set_open_leaves(leaves)


def _domain_notes(bundle: StoreBundle, view: ViewState) -> None:
    if view.color == OBJECTIVE or view.color not in bundle.domain_names:
        return
    d = bundle.domain_names.index(view.color)
    if not bundle.measured[:, d].any():
        st.info(
            f"No leaf has been measured on **{text.markdown_text(view.color)}** yet: every phi shown for it is "
            "inferred (the prior), so the colors say little. `harp measure` adds measurements.",
            icon=":material/science:",
        )


TABS = (
    "Leaf panel",
    "Regions",
    "Search examples",
    "Predicted scores",
    "Running gain",
    "Compare selections",
    "Export and save",
)


MAP_HEIGHT = 620  # pixels, the plot without the line of marks under it


def _measured(bundle: StoreBundle, view: ViewState) -> np.ndarray:
    """Which leaves were measured on the colored quantity (on any domain, for the objective)."""
    if view.color != OBJECTIVE and view.color in bundle.domain_names:
        return np.asarray(bundle.measured[:, bundle.domain_names.index(view.color)])
    return np.asarray(bundle.measured.any(axis=1))


def _map_data(bundle: StoreBundle, view: ViewState | None) -> figures.LeafMapData:
    """The map's per-leaf arrays; ``measured`` is for the view's colored quantity (all False without a view:
    the base and the marks do not depend on it)."""
    return figures.LeafMapData(
        x=bundle.x,
        y=bundle.y,
        parent=bundle.leaf_parent,
        large=bundle.leaf_large,
        size=bundle.leaf_size,
        measured=_measured(bundle, view) if view is not None else np.zeros(bundle.n_leaves, dtype=bool),
        examples=bundle.hover,
    )


@st.cache_resource(max_entries=4, show_spinner=False)
def _base_map(path: str, token: tuple[int, ...], labels: str) -> tuple[np.ndarray, str, bytes]:
    """The leaves' marker sizes, and the served file name and JSON of the map's base (shared by every session).

    Its per-leaf positions and hover texts depend only on the store and the labels: built and encoded once
    (about 0.3 s at 50,000 leaves), not on every rerun, first load or color change.
    """
    bundle = data._load_bundle(path, token)  # already read (and cached) by this run
    base = figures.map_base(_map_data(bundle, None), labels=labels)
    payload = figures.to_json(base)
    return base["leaves"]["size"], leaf_map.base_file(payload), payload


@st.cache_resource(max_entries=16, show_spinner=False)
def _map_colors(
    path: str, token: tuple[int, ...], color: str, weights: tuple[float, ...]
) -> tuple[str, bytes]:
    """The served file name and JSON of the map's colors for one colored quantity (a few hundred kilobytes at
    50,000 leaves): what a change of the colored domain, or of the weights while coloring by the objective,
    sends."""
    bundle = data._load_bundle(path, token)
    view = ViewState(
        envelope="C",
        budget=0,
        weights=weights,
        active=tuple(True for _ in weights),
        color=color,
        pinned=(),
        excluded=(),
    )
    effect, spread, label = leaf_view.colored_effect(bundle, view)
    colors = figures.map_colors(effect, spread, _measured(bundle, view), color_label=label)
    payload = figures.to_json(colors)
    return leaf_map.base_file(payload, "colors"), payload


def _design_on_map(bundle: StoreBundle) -> design_pick.DesignPick | None:
    """The design selection to mark on the map, when the store has design mixtures and the box is ticked."""
    if not data.design_configs(bundle.path, bundle.token):
        return None
    shown = st.checkbox(
        "Show the design selection on the map",
        key="show_design",
        help="The Designed mixtures page's selection (its last settings there; rule C, 1,000 points otherwise), "
        "marked by green dotted rings beside HARP-C's and HARP-E's.",
    )
    if not shown:
        return None
    chosen, problem = design_pick.explore_pick(bundle)
    if problem:
        st.warning(text.markdown_text(problem, 400), icon=":material/grid_view:")
    elif chosen is not None:
        st.caption(
            f"Green dotted rings: the {text.markdown_text(chosen.label)}, {chosen.selection.points.size:,} points "
            f"from {chosen.selection.leaves.size:,} leaves (change it on the **Designed mixtures** page)."
        )
    return chosen


def _leaf_map(bundle: StoreBundle, view: ViewState, selections: dict) -> None:
    labels = st.session_state.get("ctl_labels", "none")
    # The browser fetches the base once per store and labels and the colors once per colored quantity (files);
    # a rerun sends only the marks (rings, crosses), which it draws over the map without redrawing the leaves.
    by_domain = view.color != OBJECTIVE and view.color in bundle.domain_names
    weights_key = () if by_domain else tuple(float(w) for w in view.effective_weights())
    sizes, base_name, base_payload = _base_map(bundle.path, bundle.token, labels)
    colors_name, colors_payload = _map_colors(bundle.path, bundle.token, view.color, weights_key)
    leaf_map.publish(base_name, base_payload)
    leaf_map.publish(colors_name, colors_payload)
    opened = [g for g in st.session_state.get("open_leaves", []) if 0 <= g < bundle.n_leaves]
    marks = figures.mark_traces(
        _map_data(bundle, None),
        selected={e: s.leaves for e, s in selections.items()},
        opened=opened,
        sizes=sizes,
    )
    design = _design_on_map(bundle)
    if design is not None:
        marks.append(design_mark_trace(_map_data(bundle, None), design_pick.leaves_of(design),
                                       design.settings.rule, sizes))  # fmt: skip
    examples = example_layer.examples_layer(bundle, opened)
    leaf_map.leaf_map(
        base_name,
        colors_name,
        marks,
        height=MAP_HEIGHT,
        key="leaf_map",
        on_change=_on_map_select,
        examples=examples,
    )
    st.caption(
        "Click a leaf to open it below; use the lasso or box tool (top right of the map) to open several. "
        "Diamonds are measured leaves, circles inferred; rings mark the selection."
    )


@st.fragment
def explorer() -> None:
    bundle, _ = _load()
    controls.ensure_view(bundle)
    controls.show_view_warnings()
    weights, active = controls.weights_section(bundle)
    left, right = st.columns([1, 3], gap="medium")
    with left:
        view = controls.render(bundle, weights, active)
    with right:
        selections = panels.compute_selections(bundle, view, view.envelopes())
        panels.selection_metrics(bundle, selections, "explore")
        _domain_notes(bundle, view)
        _leaf_map(bundle, view, selections)

    # Lazy tabs: only the open tab's content runs and is sent. The charts behind the other tabs would otherwise
    # be redrawn by the browser on every budget change (a 64-domain chart alone costs it about a second).
    tabs = st.tabs(list(TABS), key="explore_tab", on_change="rerun", default=TABS[0])
    with tabs[0]:
        if tabs[0].open:
            panels.leaf_panel(bundle, view, selections, "explore")
    with tabs[1]:
        if tabs[1].open:
            region_panel.regions_panel(bundle, view, selections)
    with tabs[2]:
        if tabs[2].open:
            search_panel.pool_search(bundle, view, "explore_pool")
    with tabs[3]:
        if tabs[3].open:
            panels.predicted_panel(bundle, view, selections)
    with tabs[4]:
        if tabs[4].open:
            panels.gain_panel(bundle, view, selections)
    with tabs[5]:
        if tabs[5].open:
            panels.overlap_panel(bundle, selections, design_pick.explore_pick(bundle))
    with tabs[6]:
        if tabs[6].open:
            panels.export_panel(bundle, view, selections)


bundle, stale = _load()
controls.ensure_view(bundle)
st.markdown("### HARP explorer")
st.caption(
    f"{bundle.n_leaves:,} leaves · {bundle.total_points:,} points · {bundle.n_domains} domains · "
    f"{int(bundle.measured.any(axis=1).sum()):,} measured leaves"
)
if stale:
    st.warning(stale, icon=":material/lock:")
if data.design_configs(bundle.path, bundle.token):
    st.caption(
        ":material/grid_view: This store also holds designed mixtures. The **Designed mixtures** page shows each "
        "region's effect from them and selects by pruning regions, the selection that beat random on the demo; "
        "HARP-C and HARP-E here rank the leaves by their single-leaf effects."
    )
if not bundle.has_layout:
    st.info(
        "The store has no 2-D layout of the leaves yet, so the map places them on a grid in tree order "
        "(siblings together). `harp layout` computes the real one.",
        icon=":material/grid_on:",
    )
if not bundle.measured.any():
    st.info(
        "No leaf has been measured yet: every effect is a prior guess. Run `harp measure` to measure "
        "representative leaves; this page picks them up on refresh.",
        icon=":material/science:",
    )
if not np.any(bundle.active):
    st.info("The store marks no domain active, so every domain starts with weight 1.", icon=":material/tune:")
explorer()
