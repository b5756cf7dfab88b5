"""Leaves: every leaf in one sortable table; pick rows to open them in the leaf panel; search every example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import controls, data, leaf_view, panels, search_panel
from app.data import StoreProblem

try:
    bundle, stale = data.load_bundle(data.store_path())
except StoreProblem as problem:
    data.stop_with(problem)
    raise

view = controls.ensure_view(bundle)
st.markdown("### Leaves")
if stale:
    st.warning(stale, icon=":material/lock:")
effect, spread, label = leaf_view.colored_effect(bundle, view)
selections = panels.compute_selections(bundle, view, view.envelopes())
st.caption(
    f"Colored quantity: {label}. Selection as on the Explore page. Sort by a column header; tick rows to open "
    "them in the leaf panel below."
)
in_selection = {e: np.isin(np.arange(bundle.n_leaves), s.leaves) for e, s in selections.items()}
table = pd.DataFrame(
    {
        "leaf": np.arange(bundle.n_leaves),
        "parent": bundle.leaf_parent,
        "large node": bundle.leaf_large,
        "points": bundle.leaf_size,
        "measured domains": bundle.measured.sum(axis=1),
        label: effect,
        "sd": spread,
        **{f"in HARP-{e}": chosen for e, chosen in in_selection.items()},
        "pinned": np.isin(np.arange(bundle.n_leaves), view.pinned),
        "excluded": np.isin(np.arange(bundle.n_leaves), view.excluded),
    }
)
event = st.dataframe(
    table,
    hide_index=True,
    key="leaves_table",
    on_select="rerun",
    selection_mode="multi-row",
    height=420,
)
rows = list(event.selection.rows) if event else []
if rows:
    st.button(
        f"Open {len(rows)} ticked leaves",
        key="leaves_open_rows",
        on_click=controls.set_open_leaves,
        args=([int(table["leaf"].iloc[r]) for r in rows],),
    )
st.divider()
st.markdown("#### Search the pool")
search_panel.pool_search(bundle, view, "pool")
st.divider()
st.markdown("#### Leaf panel")
panels.leaf_panel(bundle, view, selections, "leaves")
