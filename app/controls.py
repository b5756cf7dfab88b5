"""The Explore page's controls and their glue to ``st.session_state`` and the URL.

One canonical :class:`~app.state.ViewState` lives in ``st.session_state["view"]``. Widgets have their own keys
(``ctl_*``); at the start of a run the view is pushed into any widget key that is missing (a page switch clears
them) or into all of them after a programmatic change (reset, pin from the leaf panel, a reloaded selection:
those set ``view_dirty``). At the end of the controls the view is read back from the widgets and mirrored into
``st.query_params``, so the URL always reproduces what the user sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import data, text
from app.data import StoreBundle
from app.state import (
    ENVELOPE_LABELS,
    ENVELOPES,
    OBJECTIVE,
    QUERY_KEYS,
    Envelope,
    ViewState,
    default_view,
    format_leaf_ids,
    parse_leaf_ids,
    parse_query,
    to_query,
)

LABEL_OPTIONS = {"none": "no labels", "large": "large nodes", "parent": "parents"}
# The widget keys of the Explore page's search box and kind (app.search_panel.search_inputs, where="explore_pool").
SEARCH_KEY, SEARCH_KIND_KEY = "explore_pool_search", "explore_pool_search_mode"
# The Explore page's tabs (app.views.explore) and the one that holds the search.
TABS_KEY, SEARCH_TAB = "explore_tab", "Search examples"
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
        ss["open_leaves"] = list(view.opened)
        ss["region"] = view.region
        if view.search.strip():  # a link with a search opens on its hits
            ss[TABS_KEY] = SEARCH_TAB
    ss.setdefault("open_leaves", [])
    ss.setdefault("region", "")
    _push_to_widgets(ss["view"], force=bool(ss.get("view_dirty")), bundle=bundle)
    ss["view_dirty"] = False
    return ss["view"]


def search_box_drawn() -> bool:
    """Whether this run draws the Explore page's search box (its tab is the open one)."""
    return ss.get(TABS_KEY) == SEARCH_TAB


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
    # The Explore page's search of the examples (app.search_panel) is drawn in its tab only, and a widget that is
    # not drawn forgets its value: the view's search goes back into the box whenever its tab opens again.
    reopened = search_box_drawn() and not ss.get("search_box_was_drawn")
    for key, value in ((SEARCH_KEY, view.search), (SEARCH_KIND_KEY, view.search_kind)):
        if force or reopened or key not in ss:
            ss[key] = value
    if force or "ctl_labels" not in ss:
        ss["ctl_labels"] = view.labels if view.labels in LABEL_OPTIONS else "none"
    if force or "weights_frame" not in ss:
        ss["weights_version"] = ss.get("weights_version", 0) + 1
        ss["weights_frame"] = weights_frame(bundle, view)


def _budget_from_slider(total: int) -> None:
    # The slider's right end is the end of the range where the selection changes: no cap.
    value = int(ss["ctl_budget_slider"])
    ss["ctl_budget_number"] = total if value >= int(ss.get("budget_slider_end", total)) else value


def budget_problem(value: object, total: int) -> tuple[int | None, str | None]:
    """The budget to use for a typed value, and a message when the value was not usable as typed.

    A value above the pool means no cap (the whole pool), one below 0 means 0, an emptied box keeps the budget
    (None); each says so, so the selection shown is never silently the old one.
    """
    if value is None:
        return (
            None,
            f"Budget, exact: the box was empty, so the budget stays as it was. Type a number from 0 to {total:,}.",
        )
    budget = int(value)  # type: ignore[call-overload]
    if budget > total:
        return total, (
            f"Budget, exact: {budget:,} is more than the pool's {total:,} points, so the budget is now the whole "
            f"pool (no cap). Type a number from 0 to {total:,}."
        )
    if budget < 0:
        return (
            0,
            f"Budget, exact: {budget:,} is below 0, so the budget is now 0. Type a number from 0 to {total:,}.",
        )
    return budget, None


def _budget_from_number(total: int) -> None:
    budget, problem = budget_problem(ss.get("ctl_budget_number"), total)
    if problem:
        ss["budget_error"] = problem
    if budget is None:
        budget = int(ss["view"].budget)
    ss["ctl_budget_number"] = budget


def _reset_weights(bundle: StoreBundle) -> None:
    default = default_view(bundle.shape())
    set_view(replace(ss["view"], weights=default.weights, active=default.active))


def _reset_view(bundle: StoreBundle) -> None:
    set_view(default_view(bundle.shape()))
    set_open_leaves([])
    ss["region"] = ""
    ss.pop("budget_error", None)


def apply_editor_edits(frame: pd.DataFrame, state: Any) -> pd.DataFrame:
    """``frame`` with the edits a data editor holds in its session state (``{"edited_rows": {row: {col: v}}}``).

    The editor reports its edits before the script draws it again, so this is how the weights are known before
    the widgets above the editor (the expander's header) are drawn.
    """
    edited = frame.copy()
    rows = (state or {}).get("edited_rows", {}) if isinstance(state, dict) else {}
    for row, changes in rows.items():
        for column, value in (changes or {}).items():
            if column in edited.columns and 0 <= int(row) < len(edited):
                edited.iloc[int(row), edited.columns.get_loc(column)] = value
    return edited


def _pending_weights(view: ViewState) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """The weights including an edit the user just made in the open editor (not yet in the view)."""
    if not ss.get("ctl_weights_open") or ss.get("weights_stale") or "weights_frame" not in ss:
        return view.weights, view.active
    state = ss.get(f"ctl_weights_{ss.get('weights_version', 0)}")
    if not state:
        return view.weights, view.active
    return view_weights_from_frame(apply_editor_edits(ss["weights_frame"], state))


def weights_section(bundle: StoreBundle) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """The domain weights and active toggles: a full-width expander with an editable table.

    The expander is lazy: the data editor (a canvas grid) is only built while it is open, which spares the
    browser a redraw of it on every budget change. While it is closed the weights are the view's, and the
    editor is rebuilt from the view when it opens again (a widget that is not drawn loses its edits).
    """
    view: ViewState = ss["view"]
    weights, active = view.weights, view.active
    pending_weights, pending_active = _pending_weights(view)
    n_active = int(np.count_nonzero(np.asarray(pending_weights) * np.asarray(pending_active)))
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


def slider_end(bundle: StoreBundle, envelopes: tuple[str, ...], weights: np.ndarray, pinned, excluded) -> int:
    """Where the budget slider ends: the most points any shown envelope's best-prefix cut holds.

    A budget at or above it selects what no cap selects, so the slider spans only the range where the selection
    changes (on a real pool the cut holds a small share of it) and its right end stands for no cap.
    """
    total = bundle.total_points
    if not weights.any():
        return total
    # Both envelopes' rankings at once (data.run_selections runs the greedies side by side): this is where a
    # weight edit first needs them, and the page's selections below reuse them from the cache.
    try:
        rankings = data.run_selections(
            bundle.path,
            bundle.token,
            list(envelopes),
            tuple(float(w) for w in weights),
            None,
            tuple(pinned),
            tuple(excluded),
        )
    except ValueError:
        return total
    end = 0
    for ranking in rankings.values():
        end = max(
            end, int(bundle.leaf_size[np.asarray(ranking.order[: int(ranking.cut)], dtype=np.int64)].sum())
        )
    return int(min(max(end, 1), total))


def render(bundle: StoreBundle, weights: tuple[float, ...], active: tuple[bool, ...]) -> ViewState:
    """Draw the controls (in the current container) and return the view they describe, with the weights from
    :func:`weights_section`."""
    total = bundle.total_points
    previous: ViewState = ss["view"]
    # The pins and excludes as typed (their boxes are drawn below; their values are known already), since the
    # budget slider's range depends on them.
    pinned, pin_problem = parse_leaf_ids(ss.get("ctl_pinned", ""), "Pinned leaves", bundle.n_leaves)
    if pin_problem:
        pinned = previous.pinned
    excluded, exclude_problem = parse_leaf_ids(ss.get("ctl_excluded", ""), "Excluded leaves", bundle.n_leaves)
    if exclude_problem:
        excluded = previous.excluded
    overlap = sorted(set(pinned) & set(excluded))
    pinned = tuple(g for g in pinned if g not in overlap)
    excluded = tuple(g for g in excluded if g not in overlap)

    st.segmented_control(
        "Envelope",
        ENVELOPES,
        format_func=lambda e: ENVELOPE_LABELS[e],
        key="ctl_envelope",
        required=True,
        help="HARP-C counts only the best helpful leaf per domain and every harmful one (conservative); "
        "HARP-E adds all effects up (expansive); both shows them side by side.",
    )
    envelope: Envelope = ss["ctl_envelope"] or "C"
    envelopes = ("C", "E") if envelope == "both" else (envelope,)
    effective = np.asarray(weights, dtype=np.float64) * np.asarray(active, dtype=np.float64)
    end = slider_end(bundle, envelopes, effective, pinned, excluded)
    ss["budget_slider_end"] = end
    number = ss.get("ctl_budget_number")
    ss["ctl_budget_slider"] = min(int(number if number is not None else previous.budget), end)
    st.slider(
        "Budget (points)",
        min_value=0,
        max_value=end,
        step=1,
        key="ctl_budget_slider",
        on_change=_budget_from_slider,
        args=(total,),
        help="The most points to keep. The slider spans the points where the selection changes: its right end "
        "is the best-prefix cut, beyond which a budget changes nothing (no cap). The box takes any budget.",
    )
    st.number_input(
        "Budget, exact",
        step=1,
        key="ctl_budget_number",
        on_change=_budget_from_number,
        args=(total,),
        help=f"Any number of points from 0 to the pool's {total:,}; the whole pool means no cap.",
    )
    if ss.get("budget_error"):
        st.error(ss.pop("budget_error"), icon=":material/error:")
    st.caption(
        f"Slider: 0 to {end:,} points, where the selection changes; the pool holds {total:,}."
        if end < total
        else f"The pool holds {total:,} points."
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

    if pin_problem:
        st.warning(f"{pin_problem}; keeping the previous pins.")
    if exclude_problem:
        st.warning(f"{exclude_problem}; keeping the previous exclusions.")
    if overlap:
        st.warning(f"Leaf {overlap[0]} is both pinned and excluded; it is treated as neither.")
    budget = ss.get("ctl_budget_number")
    view = ViewState(
        envelope=envelope,
        budget=int(budget if budget is not None else previous.budget),
        weights=weights,
        active=active,
        color=ss["ctl_color"],
        pinned=tuple(pinned),
        excluded=tuple(excluded),
        opened=tuple(int(g) for g in ss.get("open_leaves", []) if 0 <= int(g) < bundle.n_leaves),
        labels=str(ss.get("ctl_labels") or "none"),
        region=str(ss.get("region") or ""),
        # The search box is drawn only while its tab is open: otherwise the view keeps the last search.
        search=str(ss.get(SEARCH_KEY) or "") if search_box_drawn() else previous.search,
        search_kind=str(ss.get(SEARCH_KIND_KEY) or "words") if search_box_drawn() else previous.search_kind,
    )
    ss["search_box_was_drawn"] = search_box_drawn()
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
    """Warnings about refused URL parameters, shown once after the view was read from the URL.

    Call it inside the fragment that the controls rerun: drawn outside it, the banner would stay on the page
    through every later interaction (a fragment rerun redraws only the fragment)."""
    warnings = ss.get("view_warnings") or []
    if warnings:
        st.warning(
            "Some settings in the link were not usable and were reset to defaults:\n\n"
            + "\n".join(f"- {text.markdown_text(w, 200)}" for w in warnings),
            icon=":material/link_off:",
        )
        ss["view_warnings"] = []


def pin_leaves(leaves: Sequence[int]) -> None:
    """Pin ``leaves`` (a button's callback): they are released from the exclusions."""
    view: ViewState = ss["view"]
    pinned = list(view.pinned) + [g for g in leaves if g not in view.pinned]
    excluded = [g for g in view.excluded if g not in leaves]
    set_view(view.with_pins(pinned, excluded))


def exclude_leaves(leaves: Sequence[int]) -> None:
    """Exclude ``leaves`` (a button's callback): they are released from the pins."""
    view: ViewState = ss["view"]
    excluded = list(view.excluded) + [g for g in leaves if g not in view.excluded]
    pinned = [g for g in view.pinned if g not in leaves]
    set_view(view.with_pins(pinned, excluded))


def release_leaves(leaves: Sequence[int]) -> None:
    """Neither pin nor exclude ``leaves`` (a button's callback)."""
    view: ViewState = ss["view"]
    set_view(
        view.with_pins(
            [g for g in view.pinned if g not in leaves], [g for g in view.excluded if g not in leaves]
        )
    )
