"""The examples of open leaves on the map: the toggle near the map, the store read, and the served layer file.

Where the store holds the map positions of its points (``harp layout --features``, ``harp hierarchy``,
``harp load`` with features), each open leaf can be expanded into its examples: a layer of small markers around
the leaf, hover = the example's prompt and response (untrusted text, escaped). At most :data:`MAX_EXAMPLES`
points are drawn, the most central of each open leaf first, with a note when the cap cuts some off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

from app import figures, leaf_map, text
from app.data import StoreBundle, StoreProblem, open_store, problem_from

MAX_EXAMPLES = 5000  # points drawn at most (a lasso of many leaves shows the most central of each)
TOGGLE_KEY = "ctl_show_examples"
TOGGLE_LABEL = "Show the examples of open leaves"
NO_POSITIONS = (
    "This store holds no map positions of its examples, so a leaf cannot be expanded into them. Compute them "
    "from the features the tree was built from: `harp layout --store STORE --features X_feat.npy` "
    "(`harp hierarchy` and `harp load --features` write them too), then refresh."
)


def read_examples(path: str, leaves: Sequence[int], cap: int) -> tuple[dict[str, Any], int]:
    """The positions and texts of the open leaves' examples, at most ``cap`` (the most central of each leaf
    first), and how many the leaves hold. Uncached."""
    store = open_store(path)
    try:
        table = store.point_positions(list(leaves), with_texts=True)
    except Exception as error:  # a StoreError, or a store of an older harp opened read-only
        raise problem_from(error) from error
    total = table.num_rows
    rank = table["rank_in_leaf"].to_numpy()
    keep = np.arange(total)
    if total > cap:
        quota = max(1, cap // max(1, len(set(int(g) for g in leaves))))
        keep = np.flatnonzero(rank < quota)[:cap]
    rows = table.take(keep)
    hover = [
        f"point {point} · leaf {leaf}<br>prompt: {text.hover_text(prompt)}"
        + (f"<br>response: {text.hover_text(response)}" if response else "")
        for point, leaf, prompt, response in zip(
            rows["point_id"].to_pylist(),
            rows["leaf_id"].to_pylist(),
            rows["text"].to_pylist(),
            rows["response"].to_pylist(),
            strict=True,
        )
    ]
    columns = {
        "leaf_id": rows["leaf_id"].to_numpy(),
        "point_id": rows["point_id"].to_numpy(),
        "x": rows["x"].to_numpy(),
        "y": rows["y"].to_numpy(),
        "hover": hover,
    }
    return columns, total


@st.cache_data(max_entries=32, show_spinner=False)
def _examples_file(path: str, token: tuple[int, ...], leaves: tuple[int, ...]) -> tuple[str, bytes, int, int]:
    columns, total = read_examples(path, leaves, MAX_EXAMPLES)
    trace = figures.example_trace(columns["leaf_id"], columns["point_id"], columns["x"], columns["y"],
                                  columns["hover"])  # fmt: skip
    payload = figures.to_json(trace)
    return leaf_map.base_file(payload, "examples"), payload, len(columns["hover"]), total


@st.cache_data(max_entries=16, show_spinner=False)
def has_positions(path: str, token: tuple[int, ...]) -> bool:
    """Whether the store holds the map positions of its points."""
    try:
        return bool(open_store(path).has_point_positions())
    except StoreProblem:
        return False


def examples_layer(bundle: StoreBundle, opened: Sequence[int]) -> str | None:
    """The toggle near the map; the served examples file of the open leaves when it is on (None otherwise)."""
    on = st.toggle(
        TOGGLE_LABEL,
        key=TOGGLE_KEY,
        help="Draws each open leaf's examples around it on the map (hover: prompt and response).",
    )
    if not on:
        return None
    if not has_positions(bundle.path, bundle.token):
        st.info(NO_POSITIONS, icon=":material/scatter_plot:")
        return None
    if not opened:
        st.caption("Open a leaf (click it, or lasso several) to see its examples on the map.")
        return None
    try:
        name, payload, shown, total = _examples_file(bundle.path, bundle.token, tuple(sorted(opened)))
    except StoreProblem as problem:
        st.warning(problem.message)
        return None
    leaf_map.publish(name, payload)
    if shown < total:
        st.caption(
            f"Showing {shown:,} of the {total:,} examples of the {len(opened):,} open leaves (at most "
            f"{MAX_EXAMPLES:,}: the most central of each leaf). Open fewer leaves to see them all."
        )
    else:
        st.caption(f"Showing the {total:,} examples of the open leaves as small dots around them.")
    return name
