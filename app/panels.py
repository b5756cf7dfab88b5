"""Panels shared by the pages: selection counts, the leaf panel, the selections' overlap, export and save.

Each takes the store bundle, the view and the computed selections, and draws with Streamlit. Widget keys carry a
``where`` prefix so the same panel can sit on two pages without key clashes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import controls, data, figures, saving, search_panel, text
from app.data import StoreBundle, StoreProblem
from app.leaf_view import colored_effect, leaf_effect_line, show_example
from app.state import ViewState, format_leaf_ids, parse_leaf_ids
from harp.export import selection_csv, selection_manifest

ss = st.session_state
EXAMPLES_PER_PAGE = 20
MAX_EFFECT_LEAVES = 8
MAX_OPEN_TABLE = 500
# A leaf's examples download is capped: a leaf holds tens to hundreds of points.
MAX_EXAMPLES_DOWNLOAD = 100_000


def budget_cap(bundle: StoreBundle, view: ViewState) -> int | None:
    """The budget handed to harp: None (no cap) when the budget is the whole pool, as ``harp select`` without
    ``--budget`` records it."""
    return None if view.budget >= bundle.total_points else int(view.budget)


def compute_selections(bundle: StoreBundle, view: ViewState, envelopes: Sequence[str]) -> dict[str, Any]:
    """``harp.select`` for each envelope of the view; an empty dict (with a message) when it cannot run."""
    weights = view.effective_weights()
    if not weights.any():
        st.warning(
            "Every domain has weight 0 (or is inactive), so nothing can be selected. "
            "Turn a domain on under **Domain weights** or press **Reset to active domains**.",
            icon=":material/warning:",
        )
        return {}
    try:
        return data.run_selections(
            bundle.path,
            bundle.token,
            list(envelopes),
            tuple(float(w) for w in weights),
            budget_cap(bundle, view),
            tuple(view.pinned),
            tuple(view.excluded),
        )
    except ValueError as error:
        st.error(f"Selection failed: {text.markdown_text(error, 300)}")
        return {}


def selection_metrics(bundle: StoreBundle, selections: Mapping[str, Any], where: str) -> None:
    total = bundle.total_points
    for envelope, sel in selections.items():
        name = figures.ENVELOPE_NAMES[envelope]
        columns = st.columns(5)
        columns[0].metric(f"{name} leaves", f"{len(sel.leaves):,}", help="Leaves that contribute a point")
        columns[1].metric(f"{name} points", f"{len(sel.points):,}")
        columns[2].metric(f"{name} share of pool", f"{100.0 * len(sel.points) / max(total, 1):.2f}%")
        columns[3].metric(
            f"{name} objective",
            f"{sel.utility:.4f}",
            delta=f"{sel.utility - sel.base_utility:+.4f} vs base",
            help="Predicted weighted mean domain score U of the selected leaves",
        )
        columns[4].metric(
            f"{name} cut",
            f"{sel.cut:,} leaves",
            help="The best-prefix cut of the greedy order, before the budget cap",
        )


def cumulative_points(bundle: StoreBundle, order: np.ndarray) -> np.ndarray:
    return np.cumsum(bundle.leaf_size[order])


# --------------------------------------------------------------------------------------------------------------
# Leaf panel


def _open_key(where: str) -> str:
    return f"{where}_open"


def _on_open_change(where: str) -> None:
    leaves, problem = parse_leaf_ids(ss[_open_key(where)], "Open leaves", ss.get("n_leaves", 0))
    if problem:
        ss["open_problem"] = problem
    else:
        ss["open_leaves"] = list(leaves)


def _status(leaf: int, view: ViewState, chosen: Mapping[str, set[int]]) -> str:
    parts = []
    if leaf in view.pinned:
        parts.append("pinned")
    if leaf in view.excluded:
        parts.append("excluded")
    parts += [f"in {figures.ENVELOPE_NAMES[e]}" for e, leaves in chosen.items() if leaf in leaves]
    return ", ".join(parts) or "not selected"


def _leaf_table(
    bundle: StoreBundle, leaves: Sequence[int] | np.ndarray, view: ViewState, selections: Mapping[str, Any]
) -> pd.DataFrame:
    effect, spread, label = colored_effect(bundle, view)
    chosen = {e: set(int(g) for g in sel.leaves) for e, sel in selections.items()}
    ids = np.asarray(leaves, dtype=np.int64)
    return pd.DataFrame(
        {
            "leaf": ids,
            "parent": bundle.leaf_parent[ids],
            "large node": bundle.leaf_large[ids],
            "points": bundle.leaf_size[ids],
            "measured domains": bundle.measured[ids].sum(axis=1),
            label: effect[ids],
            "sd": spread[ids],
            "status": [_status(int(g), view, chosen) for g in ids],
        }
    )


def leaf_panel(bundle: StoreBundle, view: ViewState, selections: Mapping[str, Any], where: str) -> None:
    """The opened leaves: facts, pin/exclude, phi across domains with error bars, examples, the parent's leaves."""
    key = _open_key(where)
    ss["n_leaves"] = bundle.n_leaves
    opened = [g for g in ss.get("open_leaves", []) if 0 <= g < bundle.n_leaves]
    if ss.get(f"{key}_synced") != opened:
        ss[key] = format_leaf_ids(opened)
        ss[f"{key}_synced"] = opened
    st.text_input(
        "Open leaves",
        key=key,
        on_change=_on_open_change,
        args=(where,),
        placeholder="leaf ids, e.g. 3, 17",
        help="Click a leaf on the map or lasso several to open them; or type leaf ids.",
    )
    if ss.get("open_problem"):
        st.warning(ss.pop("open_problem"))
    if not opened:
        st.info("Click a leaf on the map, or lasso several, to open them here.", icon=":material/ads_click:")
        return

    st.dataframe(
        _leaf_table(bundle, opened[:MAX_OPEN_TABLE], view, selections),
        hide_index=True,
        key=f"{where}_open_table",
    )
    if len(opened) > MAX_OPEN_TABLE:
        st.caption(f"Showing the first {MAX_OPEN_TABLE} of {len(opened)} open leaves.")
    buttons = st.columns(3)
    buttons[0].button("Pin open leaves", key=f"{where}_pin", on_click=controls.pin_leaves, args=(opened,))
    buttons[1].button(
        "Exclude open leaves", key=f"{where}_exclude", on_click=controls.exclude_leaves, args=(opened,)
    )
    buttons[2].button(
        "Release pins and excludes", key=f"{where}_release", on_click=controls.release_leaves, args=(opened,)
    )

    shown = opened[:MAX_EFFECT_LEAVES]
    st.markdown("**Effects across domains** (phi ± 1 sd)")
    if len(opened) > MAX_EFFECT_LEAVES:
        st.caption(f"The first {MAX_EFFECT_LEAVES} open leaves.")
    ids = np.asarray(shown, dtype=np.int64)
    st.plotly_chart(
        figures.leaf_effects(
            bundle.domain_names, shown, bundle.phi[ids], bundle.sd[ids], bundle.measured[ids]
        ),
        key=f"{where}_effects",
        config={"displaylogo": False},
    )

    leaf = st.selectbox("Examples of leaf", opened, key=f"{where}_example_leaf")
    _examples(bundle, int(leaf), where, view)
    _parent_leaves(bundle, int(leaf), view, selections, where)


def _examples(bundle: StoreBundle, leaf: int, where: str, view: ViewState | None = None) -> None:
    if view is not None:
        st.markdown(leaf_effect_line(bundle, view, leaf))
    st.caption(
        "Each example's prompt (a chat's turns as `role: content` lines) and its response, as the pool gave "
        "them (`harp run`, or `harp hierarchy --texts` / `harp load --texts` with a training pool file). Stores "
        "made before responses were kept apart hold prompt and response joined in the prompt, or the prompt alone."
    )
    query, mode = search_panel.search_inputs(
        f"{where}_example", "Search this leaf's examples", "words to find in a prompt or response"
    )
    hits = search_panel.run_search(bundle, query, mode, leaf)  # None for an empty box, or after a message
    if query.strip() and hits is None:
        return
    if hits is not None:
        st.caption(f"{hits.total:,} of the leaf's {int(bundle.leaf_size[leaf]):,} examples match.")
        rows = list(zip(hits.point_id.tolist(), hits.text, hits.source, hits.response, strict=True))
        ranks = hits.rank_in_leaf.tolist()
        page_key = f"{where}_examples_{leaf}_search"
    else:
        size = int(bundle.leaf_size[leaf])
        pages = max(1, -(-size // EXAMPLES_PER_PAGE))
        page = st.number_input(
            f"Page (of {pages}, {EXAMPLES_PER_PAGE} examples each; most central first)",
            min_value=1,
            max_value=pages,
            value=1,
            step=1,
            key=f"{where}_example_page_{leaf}",
        )
        try:
            rows = data.leaf_examples(
                bundle.path, bundle.token, leaf, EXAMPLES_PER_PAGE, (int(page) - 1) * EXAMPLES_PER_PAGE
            )
        except StoreProblem as problem:
            st.warning(problem.message)
            return
        start = (int(page) - 1) * EXAMPLES_PER_PAGE
        ranks = list(range(start, start + len(rows)))
        page_key = f"{where}_examples_{leaf}_{page}"
    # st.dataframe shows cells as plain text (no HTML, no Markdown), so the untrusted text needs no escaping.
    st.dataframe(
        pd.DataFrame(
            {
                "rank": np.asarray(ranks, dtype=np.int64),
                "point id": [r[0] for r in rows],
                "source": [text.one_line(r[2], 60) for r in rows],
                "prompt": [text.one_line(r[1], 600) for r in rows],
                "response": [text.one_line(r[3], 600) for r in rows],
            }
        ),
        hide_index=True,
        key=page_key,
    )
    if rows:
        ids = [int(r[0]) for r in rows]
        chosen = st.selectbox(
            "Read one in full", ids, key=f"{where}_example_full_{leaf}", format_func=lambda p: f"point {p}"
        )
        row = rows[ids.index(int(chosen))] if chosen in ids else rows[0]
        show_example(int(row[0]), row[1], row[2], row[3])
    path = bundle.path

    def examples_csv() -> str:
        every = data.read_leaf_examples(path, leaf, MAX_EXAMPLES_DOWNLOAD, 0)
        return text.examples_csv(
            [(i, r[0], leaf, r[2], r[1], r[3]) for i, r in enumerate(every)],
            ("rank", "point_id", "leaf_id", "source", "text", "response"),
        )

    st.download_button(
        f"Download leaf {leaf}'s examples (CSV)",
        data=examples_csv,
        file_name=f"leaf-{leaf}-examples.csv",
        mime="text/csv",
        key=f"{where}_examples_download",
        on_click="ignore",
    )


def _parent_leaves(
    bundle: StoreBundle, leaf: int, view: ViewState, selections: Mapping[str, Any], where: str
) -> None:
    parent = int(bundle.leaf_parent[leaf])
    siblings = np.flatnonzero(bundle.leaf_parent == parent)
    st.markdown(
        f"**Parent {parent}**: {len(siblings)} leaves, {int(bundle.leaf_size[siblings].sum()):,} points"
    )
    st.dataframe(_leaf_table(bundle, siblings, view, selections), hide_index=True, key=f"{where}_siblings")
    st.button(
        "Open the parent's leaves",
        key=f"{where}_open_parent",
        on_click=controls.set_open_leaves,
        args=([int(g) for g in siblings],),
    )


# --------------------------------------------------------------------------------------------------------------
# Predicted scores and the running gain

MAX_CHART_DOMAINS = 24


def predicted_panel(bundle: StoreBundle, view: ViewState, selections: Mapping[str, Any]) -> None:
    """Base vs predicted score per domain: a chart of the domains that change most, and a table of all."""
    if not selections:
        return
    weights = view.effective_weights()
    change = np.max(np.abs(np.stack([s.predicted - bundle.base for s in selections.values()])), axis=0)
    shown = np.arange(bundle.n_domains)
    if bundle.n_domains > MAX_CHART_DOMAINS:
        shown = np.sort(np.argsort(-change, kind="stable")[:MAX_CHART_DOMAINS])
        st.caption(
            f"The {MAX_CHART_DOMAINS} of {bundle.n_domains} domains whose predicted score changes most; "
            "the table below lists every domain."
        )
    st.plotly_chart(
        figures.predicted_scores(
            [bundle.domain_names[d] for d in shown],
            bundle.base[shown],
            {e: s.predicted[shown] for e, s in selections.items()},
            weights[shown],
        ),
        key="predicted_scores",
        config={"displaylogo": False},
    )
    table = pd.DataFrame({"domain": list(bundle.domain_names), "weight": weights, "base": bundle.base})
    for envelope, selection in selections.items():
        name = figures.ENVELOPE_NAMES[envelope]
        table[name] = selection.predicted
        table[f"{name} change"] = selection.predicted - bundle.base
    st.dataframe(
        table,
        hide_index=True,
        key="predicted_table",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if c != "domain"
        },
    )


def gain_panel(bundle: StoreBundle, view: ViewState, selections: Mapping[str, Any]) -> None:
    if not selections:
        return
    curves = {e: (cumulative_points(bundle, s.order), s.gains, int(s.cut)) for e, s in selections.items()}
    st.plotly_chart(
        figures.gain_curve(curves, budget=view.budget, total_points=bundle.total_points),
        key="gain_curve",
        config={"displaylogo": False},
    )
    st.caption(
        "The running gain R_k of the first k leaves in greedy order (pinned leaves first). The diamond is the "
        "best-prefix cut; the dashed line is the budget, which can stop the selection earlier."
    )


# --------------------------------------------------------------------------------------------------------------
# Compare selections: HARP-C vs HARP-E, and the design selection against each


def overlap_panel(
    bundle: StoreBundle, selections: Mapping[str, Any], design: tuple[Any, str | None] = (None, None)
) -> None:
    """HARP-C vs HARP-E, and the design selection (``design``: a ``design_pick.DesignPick`` or None, and why
    not) against each of them."""
    if set(selections) == {"C", "E"}:
        _envelope_overlap(selections)
    else:
        st.info("Choose **both** envelopes to compare HARP-C with HARP-E.", icon=":material/compare:")
    chosen, problem = design
    if problem:
        st.warning(f"No design selection to compare: {text.markdown_text(problem, 400)}")
    if chosen is None or not selections:
        return
    st.markdown(f"**The design selection** ({text.markdown_text(chosen.label)}) **against** "
                + " and ".join(figures.ENVELOPE_NAMES[e] for e in selections))  # fmt: skip
    rows = {}
    for unit, ours in (
        ("leaves", {int(g) for g in chosen.selection.leaves}),
        ("points", set(chosen.selection.points.tolist())),
    ):
        row: dict[str, Any] = {"design": len(ours)}
        for envelope, selection in selections.items():
            name = figures.ENVELOPE_NAMES[envelope]
            theirs = (
                {int(g) for g in selection.leaves} if unit == "leaves" else set(selection.points.tolist())
            )
            union = len(ours | theirs)
            row[name] = len(theirs)
            row[f"design and {name}"] = len(ours & theirs)
            row[f"Jaccard with {name}"] = round(len(ours & theirs) / union, 4) if union else 1.0
        rows[unit] = row
    st.dataframe(pd.DataFrame.from_dict(rows, orient="index"), key="design_overlap_table")
    st.caption(
        "The design selection keeps whole regions whose fitted effect beats the pool's average and draws its "
        "points uniformly from them; HARP-C and HARP-E rank single leaves by their own effects."
    )


def _envelope_overlap(selections: Mapping[str, Any]) -> None:
    leaves_c, leaves_e = (set(int(g) for g in selections[e].leaves) for e in ("C", "E"))
    points_c, points_e = (set(selections[e].points.tolist()) for e in ("C", "E"))

    def row(a: set[int], b: set[int]) -> dict[str, Any]:
        union = len(a | b)
        return {
            "HARP-C": len(a),
            "HARP-E": len(b),
            "both": len(a & b),
            "only HARP-C": len(a - b),
            "only HARP-E": len(b - a),
            "Jaccard": round(len(a & b) / union, 4) if union else 1.0,
        }

    table = pd.DataFrame([row(leaves_c, leaves_e), row(points_c, points_e)], index=["leaves", "points"])
    st.dataframe(table, key="overlap_table")
    st.caption(
        "HARP-C takes only the single best helpful leaf per domain at full value, so it usually picks fewer, "
        "broader-helping leaves; HARP-E lets helpful effects add up."
    )


# --------------------------------------------------------------------------------------------------------------
# Export and save


def manifest_json(bundle: StoreBundle, view: ViewState, envelope: str, selection: Any) -> str:
    """The manifest the download button serves for ``selection``, computed from ``bundle``.

    It names ``bundle.content_hash``, the hash read in the snapshot the selection's inputs came from: a hash read
    when the button is pressed would name whatever a writer (`harp infer`, `harp measure`) has made of the
    store since, contents the selection was not computed from.
    """
    manifest = selection_manifest(
        selection,
        envelope=envelope,
        weights=[float(w) for w in view.effective_weights()],
        budget=budget_cap(bundle, view),
        pinned=list(view.pinned),
        excluded=list(view.excluded),
        store_hash=bundle.content_hash,
        domain_names=list(bundle.domain_names),
    )
    return json.dumps(manifest, indent=2) + "\n"


def export_panel(bundle: StoreBundle, view: ViewState, selections: Mapping[str, Any]) -> None:
    if not selections:
        st.info("Nothing to export: no selection could be computed for this view.")
        return
    for envelope, selection in selections.items():
        name = figures.ENVELOPE_NAMES[envelope]
        stem = f"harp-selection-{envelope}-{len(selection.points)}"
        st.markdown(f"**{name}**: {len(selection.points):,} points from {len(selection.leaves):,} leaves")
        columns = st.columns(2)

        def csv_data(selection: Any = selection) -> str:
            return selection_csv(selection)

        def manifest_data(selection: Any = selection, envelope: str = envelope) -> str:
            return manifest_json(bundle, view, envelope, selection)

        columns[0].download_button(
            "Download CSV",
            data=csv_data,
            file_name=f"{stem}.csv",
            mime="text/csv",
            key=f"export_csv_{envelope}",
            on_click="ignore",
            icon=":material/download:",
        )
        columns[1].download_button(
            "Download manifest (JSON)",
            data=manifest_data,
            file_name=f"{stem}.manifest.json",
            mime="application/json",
            key=f"export_manifest_{envelope}",
            on_click="ignore",
            icon=":material/description:",
        )

    st.divider()
    with st.form("save_form", clear_on_submit=False):
        st.markdown("**Save this selection into the store**")
        name = st.text_input("Name", key="save_name", max_chars=200)
        envelope = st.radio(
            "Envelope to save",
            list(selections),
            format_func=lambda e: figures.ENVELOPE_NAMES[e],
            horizontal=True,
            key="save_envelope",
        )
        overwrite = st.checkbox(saving.REPLACE_LABEL, key="save_overwrite")
        submitted = st.form_submit_button("Save selection", icon=":material/save:")
    if submitted:
        _save(bundle, view, selections, str(name or "").strip(), str(envelope), bool(overwrite))


def _save(
    bundle: StoreBundle,
    view: ViewState,
    selections: Mapping[str, Any],
    name: str,
    envelope: str,
    overwrite: bool,
) -> None:
    saving.save_with_messages(
        name,
        lambda: data.save_selection(
            bundle.path,
            name,
            envelope=envelope,
            weights=view.effective_weights().tolist(),
            budget=budget_cap(bundle, view),
            pinned=view.pinned,
            excluded=view.excluded,
            selection=selections[envelope],
            overwrite=overwrite,
            store_hash=bundle.content_hash,
        ),
    )
