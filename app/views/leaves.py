"""Leaves: every leaf in one sortable table; pick rows to open them in the leaf panel; search every example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import controls, data, panels, text
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
effect, spread, label = panels.colored_effect(bundle, view)
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
query = st.text_input(
    "Search every example",
    key="pool_search",
    placeholder="words to find in any example's prompt or response (case-insensitive)",
    help="A plain substring search over the store's prompts and responses (DuckDB), not a pattern.",
)
if str(query or "").strip():
    try:
        hits, count = data.search_examples(bundle.path, bundle.token, str(query))
    except StoreProblem as problem:
        st.warning(problem.message)
        hits, count = [], 0
    hit_leaves = np.asarray([int(h[1]) for h in hits], dtype=np.int64)
    shown = f"the first {len(hits):,}" if count > len(hits) else "all"
    st.caption(
        f"{count:,} examples contain it; {shown} below, by leaf. Their leaves: "
        f"{len(np.unique(hit_leaves)):,}."
    )
    if hits:
        st.dataframe(
            pd.DataFrame(
                {
                    "point id": [int(h[0]) for h in hits],
                    "leaf": hit_leaves,
                    "parent": bundle.leaf_parent[hit_leaves],
                    "rank in leaf": [int(h[2]) for h in hits],
                    label: effect[hit_leaves],
                    "sd": spread[hit_leaves],
                    "source": [text.one_line(h[4], 60) for h in hits],
                    "prompt": [text.one_line(h[3], 600) for h in hits],
                    "response": [text.one_line(h[5], 600) for h in hits],
                }
            ),
            hide_index=True,
            key="pool_search_hits",
        )
        st.button(
            "Open the leaves of these examples",
            key="pool_search_open",
            on_click=controls.set_open_leaves,
            args=([int(g) for g in dict.fromkeys(hit_leaves.tolist())],),
        )
st.divider()
st.markdown("#### Leaf panel")
panels.leaf_panel(bundle, view, selections, "leaves")
