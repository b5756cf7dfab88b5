"""Stores: open another store of the folder of stores, or build a new one there from a Parquet export or from
``harp load``'s arrays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from app import data, store_folder, text
from app.data import StoreProblem


def _show(problem: StoreProblem) -> None:
    if problem.kind == "locked":
        st.warning(problem.message, icon=":material/lock:")
    else:
        st.error(problem.message, icon=":material/error:")


def _build(working: str, build: Callable[[], Path], source: str, open_it: bool) -> None:
    """Build a new store with ``build`` (a message for a refusal), say what was built and open it when asked."""
    try:
        with st.spinner(working):
            target = str(build())
    except StoreProblem as problem:
        _show(problem)
        return
    words = f"Built **{text.markdown_text(target)}** from {text.markdown_text(source)}."
    if open_it:
        try:
            store_folder.switch_to(target)
        except StoreProblem as problem:
            st.success(words, icon=":material/check_circle:")
            _show(problem)
            return
        words += " It is open now: the other pages show it."
    st.success(words, icon=":material/check_circle:")


st.markdown("### Stores")
try:
    current: str | None = data.store_path()
    st.markdown("Open now: " + text.markdown_text(current))
except StoreProblem as problem:
    current = None
    st.warning(problem.message, icon=":material/warning:")

where = store_folder.folder()
try:
    listed = store_folder.stores()
except StoreProblem as problem:
    _show(problem)
    listed = []
if where is not None:
    st.caption(
        f"Folder of stores: {text.markdown_text(str(where))} (`harp app --stores DIR` picks another). "
        "A store opened here is this browser tab's: a new tab starts on the app's own store."
    )
if listed:
    st.dataframe(
        pd.DataFrame(
            {
                "store": [s.name for s in listed],
                "size (MB)": [round(s.size / 1e6, 2) for s in listed],
                "modified (UTC)": [s.modified.replace(microsecond=0) for s in listed],
                "open now": [str(s.path) == current for s in listed],
            }
        ),
        hide_index=True,
        key="stores_table",
    )
    names = [s.name for s in listed]
    now_index = next((i for i, s in enumerate(listed) if str(s.path) == current), 0)
    pick = st.selectbox("Store to open", names, index=now_index, key="stores_pick")
    if st.button("Open this store", key="stores_open", icon=":material/folder_open:"):
        try:
            store_folder.switch_to(listed[names.index(pick)].path)
        except StoreProblem as problem:
            _show(problem)
        else:
            st.success(
                f"Opened **{text.markdown_text(pick)}**: the other pages show it now.",
                icon=":material/check_circle:",
            )
elif where is not None:
    st.info("The folder holds no `.duckdb` store yet; build one below.", icon=":material/folder_off:")

st.divider()
st.markdown("#### New store from a Parquet export")
if not store_folder.serves_only_this_machine():
    st.info(
        "Imports read paths on the server, so they are offered only while the app serves this machine alone "
        "(`harp app` binds 127.0.0.1 unless `--host` says otherwise). Use `harp import` or `harp load`.",
        icon=":material/lock:",
    )
    st.stop()
st.caption(
    "As `harp import FOLDER STORE`: the folder `harp export` wrote (every table, checked against its schema "
    "version). The new store goes into the folder of stores; a taken name is refused, nothing is replaced."
)
with st.form("import_form"):
    source = st.text_input(
        "Export folder (a path on this machine)", key="import_source", placeholder="data/demo"
    )
    name = st.text_input("New store's name", key="import_name", placeholder="demo")
    open_import = st.checkbox("Open it once built", value=True, key="import_open")
    imported = st.form_submit_button("Import", icon=":material/upload_file:")
if imported:
    _build("Importing ...", lambda: store_folder.import_export(source, name), source, open_import)

st.markdown("#### New store from arrays (`harp load`)")
st.caption(
    "As `harp load`: the arrays another HARP run produced, each a file on this machine. Shapes are checked "
    "against each other before anything is written, with messages that name the file."
)
with st.form("load_form"):
    given = {
        key: st.text_input(label + ("" if required else " (optional)"), key=f"load_{key}")
        for key, label, required in store_folder.ARRAY_INPUTS
    }
    load_name = st.text_input("New store's name", key="load_name")
    open_load = st.checkbox("Open it once built", value=True, key="load_open")
    loaded = st.form_submit_button("Build the store", icon=":material/data_array:")
if loaded:
    _build(
        "Checking the arrays and building the store ...",
        lambda: store_folder.load_arrays(given, load_name),
        "the arrays",
        open_load,
    )
