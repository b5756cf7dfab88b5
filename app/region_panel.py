"""The Regions tab: the tree's large nodes or parents with their effect on the colored quantity.

A region's effect is the points-weighted mean of its leaves' posterior means (``harp.regions``), on the domain the
map is colored by or on the weighted objective, with its sd. The tab lists the most harmful and most helpful
regions, a sortable table of all of them, and a regions x domains heatmap. Choosing a region (a row of a table or
the picker) opens its leaves on the map and in the leaf panel and puts it in the URL; pin, exclude and release
act on all its leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pandas as pd
import streamlit as st

from app import controls, figures, leaf_view, text
from app.data import StoreBundle
from app.state import OBJECTIVE, REGION_LEVELS, ViewState, split_region
from harp.regions import RegionEffects, leaves_of, rank_regions, region_effects

ss = st.session_state
LEVEL_NAMES = {"parent": "parents", "large": "large nodes"}
TOP_REGIONS = 5
MAX_HEATMAP_REGIONS = 40


def region_of_leaf(bundle: StoreBundle, level: str) -> np.ndarray:
    return bundle.leaf_parent if level == "parent" else bundle.leaf_large


def summarise(bundle: StoreBundle, view: ViewState, level: str) -> tuple[RegionEffects, str]:
    """The regions of one level with their effect on the view's colored quantity, and that quantity's label."""
    effect, spread, label = leaf_view.colored_effect(bundle, view)
    by_domain = view.color != OBJECTIVE and view.color in bundle.domain_names
    # numpy's stubs type ``any(axis=1)`` as possibly a scalar; with an axis it is always an array.
    measured = cast(
        np.ndarray,
        bundle.measured[:, bundle.domain_names.index(view.color)]
        if by_domain
        else bundle.measured.any(axis=1),
    )
    return region_effects(effect, spread, region_of_leaf(bundle, level), bundle.leaf_size, measured), label


def choose_region(bundle: StoreBundle, region: str) -> None:
    """Make ``region`` ("parent:17", or "" for none) the chosen one and open its leaves."""
    ss["region"] = region
    parts = split_region(region)
    if parts is not None:
        controls.set_open_leaves([int(g) for g in leaves_of(region_of_leaf(bundle, parts[0]), parts[1])])


def _on_pick(bundle: StoreBundle) -> None:
    choose_region(bundle, str(ss.get("regions_pick") or ""))


def _on_row(bundle: StoreBundle, key: str, level: str) -> None:
    state = ss.get(key)
    selection = getattr(state, "selection", None) or (state or {}).get("selection", {})
    rows = list(getattr(selection, "rows", None) or (selection or {}).get("rows", []))
    ids = ss.get(f"{key}_ids") or []
    if rows and 0 <= int(rows[0]) < len(ids):
        choose_region(bundle, f"{level}:{int(ids[int(rows[0])])}")


def _frame(
    bundle: StoreBundle,
    summary: RegionEffects,
    positions: np.ndarray,
    level: str,
    label: str,
    view: ViewState,
    selections: Mapping[str, Any],
) -> pd.DataFrame:
    groups = region_of_leaf(bundle, level)
    width = int(summary.region.max()) + 1 if summary.region.size else 0
    frame = pd.DataFrame(
        {
            level: summary.region[positions],
            "leaves": summary.n_leaves[positions],
            "points": summary.points[positions],
            "measured share": summary.measured_share[positions]
            if summary.measured_share is not None
            else np.nan,
            f"mean {label}": summary.mean[positions],
            "sd": summary.sd[positions],
        }
    )
    for envelope, selection in selections.items():
        chosen = np.asarray(selection.leaves, dtype=np.int64)
        picked = np.bincount(groups[chosen], weights=bundle.leaf_size[chosen], minlength=width)
        frame[f"points in {figures.ENVELOPE_NAMES[envelope]}"] = picked[summary.region[positions]].astype(
            np.int64
        )
    for name, leaves in (("pinned", view.pinned), ("excluded", view.excluded)):
        ids = np.asarray(leaves, dtype=np.int64)
        frame[f"{name} leaves"] = np.bincount(groups[ids], minlength=width)[summary.region[positions]]
    return frame


def _table(frame: pd.DataFrame, key: str, level: str, bundle: StoreBundle, height: int | None = None) -> None:
    ss[f"{key}_ids"] = [int(r) for r in frame[level].tolist()]
    sizing: dict[str, Any] = {} if height is None else {"height": height}
    st.dataframe(
        frame,
        hide_index=True,
        key=key,
        on_select=lambda: _on_row(bundle, key, level),
        selection_mode="single-row",
        **sizing,
        column_config={
            "measured share": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
            **{
                c: st.column_config.NumberColumn(format="%+.4f")
                for c in frame.columns
                if c.startswith("mean ")
            },
            "sd": st.column_config.NumberColumn(format="%.4f"),
        },
    )


def regions_panel(bundle: StoreBundle, view: ViewState, selections: Mapping[str, Any]) -> None:
    """The Regions tab (see the module docstring)."""
    chosen = split_region(str(ss.get("region") or ""))
    if ss.get("regions_pick_synced") != ss.get("region"):
        ss["regions_pick"] = ss.get("region") or ""
        ss["regions_pick_synced"] = ss.get("region")
        if chosen is not None:
            ss["regions_level"] = chosen[0]
    ss.setdefault("regions_level", "parent")
    level = st.segmented_control(
        "Regions",
        list(REGION_LEVELS)[::-1],
        format_func=lambda k: LEVEL_NAMES[k],
        key="regions_level",
        required=True,
    )
    level = str(level or "parent")
    summary, label = summarise(bundle, view, level)
    quantity = (
        "the weighted objective" if label.endswith("objective)") else f"**{text.markdown_text(view.color)}**"
    )
    st.caption(
        f"Each region's effect on {quantity} (pick another under **Color the map by**): the points-weighted mean "
        "of its leaves' posterior phi, ± its sd (leaves taken as independent). Click a row to choose a region: "
        "its leaves open on the map and in the leaf panel."
    )

    columns = st.columns(2)
    for column, harmful, title in ((columns[0], True, "Most harmful"), (columns[1], False, "Most helpful")):
        with column:
            st.markdown(f"**{title} {LEVEL_NAMES[level]}**")
            top = rank_regions(summary.mean, harmful=harmful, k=TOP_REGIONS)
            if top.size == 0:
                st.caption(f"No region {'hurts' if harmful else 'helps'} it.")
                continue
            frame = _frame(bundle, summary, top, level, label, view, {})
            _table(
                frame[[level, "leaves", "points", f"mean {label}", "sd"]],
                f"regions_{title.split()[1]}",
                level,
                bundle,
            )

    options = [""] + [f"{level}:{int(r)}" for r in summary.region]
    if ss.get("regions_pick") not in options:
        ss["regions_pick"] = ""
    st.selectbox(
        "Chosen region",
        options,
        key="regions_pick",
        on_change=_on_pick,
        args=(bundle,),
        format_func=lambda r: "none" if not r else r.replace(":", " "),
    )
    chosen = split_region(str(ss.get("region") or ""))
    if chosen is not None and chosen[0] == level:
        position = np.searchsorted(summary.region, chosen[1])
        if position < summary.region.size and summary.region[position] == chosen[1]:
            leaves = [int(g) for g in leaves_of(region_of_leaf(bundle, level), chosen[1])]
            share = summary.measured_share[position] if summary.measured_share is not None else np.nan
            st.markdown(
                f"**{level} {chosen[1]}**: {len(leaves)} leaves, {int(summary.points[position]):,} points, "
                f"mean {text.markdown_text(label)} {summary.mean[position]:+.4f} ± {summary.sd[position]:.4f}, "
                f"{100 * share:.0f}% of its points measured"
            )
            buttons = st.columns(3)
            buttons[0].button("Pin region", key="regions_pin", on_click=controls.pin_leaves, args=(leaves,))
            buttons[1].button(
                "Exclude region", key="regions_exclude", on_click=controls.exclude_leaves, args=(leaves,)
            )
            buttons[2].button(
                "Release region", key="regions_release", on_click=controls.release_leaves, args=(leaves,)
            )

    st.markdown(f"**All {LEVEL_NAMES[level]}** (sort by a column header)")
    order = np.argsort(np.where(np.isnan(summary.mean), np.inf, summary.mean), kind="stable")
    _table(
        _frame(bundle, summary, order, level, label, view, selections), "regions_table", level, bundle, 360
    )

    _heatmap(bundle, view, level, summary, order, chosen)


def _heatmap(
    bundle: StoreBundle,
    view: ViewState,
    level: str,
    summary: RegionEffects,
    order: np.ndarray,
    chosen: tuple[str, int] | None,
) -> None:
    groups = region_of_leaf(bundle, level)
    shown = order
    if order.size > MAX_HEATMAP_REGIONS:
        half = MAX_HEATMAP_REGIONS // 2
        shown = np.concatenate([order[:half], order[-half:]])
        if chosen is not None and chosen[0] == level:
            at = np.flatnonzero(summary.region == chosen[1])
            if at.size and at[0] not in shown:
                shown = np.concatenate([shown[:half], at, shown[half:]])
    every = region_effects(bundle.phi, bundle.sd, groups, bundle.leaf_size)
    st.markdown(f"**{LEVEL_NAMES[level].capitalize()} x domains**: mean posterior phi (sd on hover)")
    if order.size > MAX_HEATMAP_REGIONS:
        st.caption(
            f"The {MAX_HEATMAP_REGIONS // 2} most harmful and most helpful of {order.size} {LEVEL_NAMES[level]} "
            "on the colored quantity, in its order."
        )
    st.plotly_chart(
        figures.region_heatmap(
            [f"{level} {int(r)}" for r in every.region[shown]],
            bundle.domain_names,
            every.mean[shown],
            every.sd[shown],
            every.points[shown],
        ),
        key="regions_heatmap",
        config={"displaylogo": False},
    )
