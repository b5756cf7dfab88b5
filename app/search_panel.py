"""Search the examples: the query box and its kind (words, phrase, pattern), and the pool's hits, each with its
leaf's effect on the colored quantity; choosing a hit opens its leaf (on :mod:`harp.search`)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import streamlit as st

from app import controls, data, leaf_view, text
from app.data import StoreBundle, StoreProblem
from app.state import OBJECTIVE, ViewState
from harp.search import MAX_QUERY_CHARS, SEARCH_MODES, SearchHits

ss = st.session_state

MODE_LABELS = {
    "words": "all the words",
    "phrase": "the exact phrase",
    "pattern": "a regular expression",
}


def search_inputs(where: str, label: str, placeholder: str) -> tuple[str, str]:
    """The query box and its kind, side by side: ``(query, mode)``, keyed ``{where}_search`` and
    ``{where}_search_mode``."""
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    with left:
        query = st.text_input(
            label,
            key=f"{where}_search",
            placeholder=placeholder,
            max_chars=MAX_QUERY_CHARS,
            help="Case-insensitive, over each example's prompt and response. All the words: each word somewhere, "
            "in any order. The exact phrase: the text as typed. A regular expression: RE2 syntax, as DuckDB's "
            "regexp_matches.",
        )
    with right:
        mode = st.radio(
            "Find",
            SEARCH_MODES,
            key=f"{where}_search_mode",
            format_func=MODE_LABELS.__getitem__,
            horizontal=True,
        )
    return str(query or ""), str(mode or "words")


def run_search(bundle: StoreBundle, query: str, mode: str, leaf: int | None = None) -> SearchHits | None:
    """The hits, or ``None`` after showing why there are none: an empty box shows nothing, a bad query or an
    unreadable store a message (never a traceback)."""
    if not query.strip():
        return None
    try:
        return data.search_examples(bundle.path, bundle.token, query, mode, leaf)
    except ValueError as error:
        message = str(error)
        st.error(text.markdown_text(message[:1].upper() + message[1:]), icon=":material/search_off:")
    except StoreProblem as problem:
        st.warning(problem.message)
    return None


def _open_chosen_hit(where: str, table_key: str) -> None:
    rows = list(ss.get(table_key, {}).get("selection", {}).get("rows", []))
    shown, leaves = ss.get(f"{where}_search_hit_leaves", ("", []))
    if rows and shown == table_key and rows[0] < len(leaves):
        controls.set_open_leaves([int(leaves[rows[0]])])
        ss[f"{where}_search_chosen"] = (table_key, int(rows[0]))


def pool_search(bundle: StoreBundle, view: ViewState, where: str) -> None:
    """Search every example of the store; click a hit's row to open its leaf (crossed on the map, shown in the
    leaf panel) and read the hit in full below."""
    query, mode = search_inputs(
        where,
        "Search every example",
        "words to find in any example's prompt or response",
    )
    hits = run_search(bundle, query, mode)
    if hits is None:
        return
    effect, spread, label = leaf_view.colored_effect(bundle, view)
    hit_leaves = hits.leaf_id
    shown = f"the first {len(hits):,}" if hits.total > len(hits) else "all"
    st.caption(
        f"{hits.total:,} {'example matches' if hits.total == 1 else 'examples match'}; {shown} below, by leaf and most central first, in "
        f"{len(np.unique(hit_leaves)):,} leaves. Click a row to open its leaf."
    )
    if not len(hits):
        return
    # A new query or kind is a new table, so a row chosen in the last one is not carried over.
    digest = hashlib.sha1(f"{mode}\0{query.strip()}".encode()).hexdigest()[:12]
    table_key = f"{where}_search_hits_{digest}"
    # One entry per panel, not one per query: the callback maps the clicked row back to its leaf.
    ss[f"{where}_search_hit_leaves"] = (table_key, hit_leaves.tolist())
    measured = bundle.measured[hit_leaves]
    if view.color != OBJECTIVE and view.color in bundle.domain_names:
        measured = measured[:, bundle.domain_names.index(view.color)]
    else:
        measured = measured.any(axis=1)
    # st.dataframe shows cells as plain text (no HTML, no Markdown), so the untrusted text needs no escaping.
    st.dataframe(
        pd.DataFrame(
            {
                "leaf": hit_leaves,
                label: effect[hit_leaves],
                "sd": spread[hit_leaves],
                "measured": measured,
                "point id": hits.point_id,
                "rank in leaf": hits.rank_in_leaf,
                "source": [text.one_line(s, 60) for s in hits.source],
                "prompt": [text.one_line(t, 600) for t in hits.text],
                "response": [text.one_line(r, 600) for r in hits.response],
            }
        ),
        hide_index=True,
        key=table_key,
        on_select=lambda: _open_chosen_hit(where, table_key),
        selection_mode="single-row",
        column_config={
            label: st.column_config.NumberColumn(format="%+.4f"),
            "sd": st.column_config.NumberColumn(format="%.4f"),
        },
    )
    st.button(
        f"Open all {len(np.unique(hit_leaves)):,} leaves of these hits",
        key=f"{where}_search_open",
        on_click=controls.set_open_leaves,
        args=([int(g) for g in dict.fromkeys(hit_leaves.tolist())],),
    )
    chosen_in, chosen = ss.get(f"{where}_search_chosen", ("", None))
    if chosen_in == table_key and chosen is not None and chosen < len(hits):
        leaf = int(hit_leaves[chosen])
        st.markdown(
            leaf_view.leaf_effect_line(bundle, view, leaf)
            + " · open in the leaf panel and crossed on the map"
        )
        leaf_view.show_example(
            int(hits.point_id[chosen]), hits.text[chosen], hits.source[chosen], hits.response[chosen]
        )
