"""Selections: the selections saved in the store; reload one into Explore, or download it as it was saved."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app import controls, data, text
from app.data import StoreProblem
from app.state import ViewState, normalise_envelope
from harp.export import saved_selection_files

try:
    path = data.store_path()
    token = data.file_token(path)
    saved = data.saved_selections(path, token)
except StoreProblem as problem:
    data.stop_with(problem)
    raise

st.markdown("### Saved selections")
if not saved:
    st.info(
        "No selection saved yet. On the Explore page, open **Export and save** and save one by name.",
        icon=":material/bookmark_add:",
    )
    st.stop()

table = pd.DataFrame(saved)
# How each was made first after its name: HARP-C, HARP-E, or a design rule (its settings in `design`).
table = table[[c for c in ("selection_id", "name", "method") if c in table] + [c for c in table if c not in
              ("selection_id", "name", "method", "manifest")]]  # fmt: skip
for column in ("weights", "pinned", "excluded", "design"):
    if column in table:
        table[column] = [json.dumps(v) if v is not None else "" for v in table[column]]
st.dataframe(table, hide_index=True, key="saved_table")
names = [str(row["name"]) for row in saved]
default_index = (
    names.index(st.session_state["last_saved"]) if st.session_state.get("last_saved") in names else 0
)
name = st.selectbox("Selection", names, index=default_index, key="saved_pick")
try:
    record = data.saved_selection(path, token, name)
    current_hash = data.content_hash(path, token)
except StoreProblem as problem:
    data.stop_with(problem)
    raise

if record.get("store_hash") and record["store_hash"] != current_hash:
    st.warning(
        "The store's contents changed since this selection was saved (different content hash). Reloading its "
        "settings recomputes the selection on today's effects, which may differ; the download below is the "
        "selection exactly as saved.",
        icon=":material/difference:",
    )


def _load_into_explore(record: dict) -> None:
    try:
        bundle, _ = data.load_bundle(path)
    except StoreProblem as problem:
        st.session_state["reload_error"] = problem.message
        return
    shape = bundle.shape()
    weights = record.get("weights")
    if isinstance(weights, str):
        weights = json.loads(weights)
    if isinstance(weights, dict):
        weights = [float(weights.get(n, 0.0)) for n in bundle.domain_names]
    weights = [float(w) for w in (weights or [1.0] * shape.n_domains)]
    if len(weights) != shape.n_domains:
        st.session_state["reload_error"] = (
            f"The saved selection has {len(weights)} weights but the store has {shape.n_domains} domains."
        )
        return
    budget = record.get("budget")
    view = ViewState(
        envelope=normalise_envelope(str(record.get("envelope") or "C")) or "C",
        budget=shape.total_points if budget is None else min(int(budget), shape.total_points),
        weights=tuple(w if w > 0 else 1.0 for w in weights),
        active=tuple(w > 0 for w in weights),
        color=st.session_state["view"].color if "view" in st.session_state else "objective",
        pinned=tuple(g for g in data.parse_id_list(record.get("pinned")) if g < shape.n_leaves),
        excluded=tuple(g for g in data.parse_id_list(record.get("excluded")) if g < shape.n_leaves),
    )
    controls.set_view(view)
    st.session_state["view_signature"] = (bundle.path, shape)
    st.session_state["reloaded"] = record.get("name")


points = np.asarray(record.get("points", []), dtype=np.int64)
point_leaves = np.asarray(record.get("point_leaves", []), dtype=np.int64)
budget_text = "no cap" if record.get("budget") is None else f"{int(record['budget']):,} points"
method = str(record.get("method") or f"HARP-{record.get('envelope')}")
design = record.get("design")
st.markdown(
    f"**{text.markdown_text(name)}**: {text.markdown_text(method)}, budget {budget_text}, "
    f"{points.size:,} points saved"
)
columns = st.columns(3)
if design:
    st.caption(
        f"A design selection: rule {text.markdown_text(design['rule'])} over the {text.markdown_text(design['level'])}"
        f" regions of design {text.code_span(design['config_key'])} (bootstrap seed {int(design['bootstrap_seed'])}"
        f", draw seed {int(design['seed'])}). The **Designed mixtures** page makes it again from these settings."
    )
elif columns[0].button("Load into Explore", key="saved_load", on_click=_load_into_explore, args=(record,)):
    if st.session_state.pop("reload_error", None) is None:
        st.switch_page("views/explore.py")
if st.session_state.get("reload_error"):
    st.error(st.session_state.pop("reload_error"))


csv_text, saved_manifest = saved_selection_files(record)


def _saved_csv() -> str:
    return csv_text


columns[1].download_button(
    "Download as saved (CSV)",
    data=_saved_csv,
    file_name=f"saved-selection-{record.get('selection_id', 'x')}.csv",
    mime="text/csv",
    key="saved_download",
    on_click="ignore",
)
if saved_manifest is not None:
    columns[2].download_button(
        "Download its manifest (JSON)",
        data=saved_manifest,
        file_name=f"saved-selection-{record.get('selection_id', 'x')}.manifest.json",
        mime="application/json",
        key="saved_download_manifest",
        on_click="ignore",
    )
