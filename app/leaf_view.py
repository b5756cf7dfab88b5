"""What a leaf shows wherever it appears: the quantity the map is colored by, a leaf's one-line effect, and one
example in full.

The leaf panel (:mod:`app.panels`), the pool search (:mod:`app.search_panel`) and the region panel all draw
these; they live here so that those panels need not import one another.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import data, text
from app.data import StoreBundle
from app.state import OBJECTIVE, ViewState


def colored_effect(bundle: StoreBundle, view: ViewState) -> tuple[np.ndarray, np.ndarray, str]:
    """The quantity the map is colored by: (effect, sd, label)."""
    if view.color != OBJECTIVE and view.color in bundle.domain_names:
        d = bundle.domain_names.index(view.color)
        return bundle.phi[:, d], bundle.sd[:, d], f"phi[{view.color}]"
    weights = tuple(float(w) for w in view.effective_weights())
    mean, spread = data.objective_effect(bundle.path, bundle.token, weights)
    return mean, spread, "phi (weighted objective)"


def leaf_effect_line(bundle: StoreBundle, view: ViewState, leaf: int) -> str:
    """One Markdown line: the leaf's effect on the colored quantity with its sd, and whether it was measured."""
    effect, spread, label = colored_effect(bundle, view)
    by_domain = view.color != OBJECTIVE and view.color in bundle.domain_names
    measured = (
        bool(bundle.measured[leaf, bundle.domain_names.index(view.color)])
        if by_domain
        else bool(bundle.measured[leaf].any())
    )
    verdict = "helps" if effect[leaf] > 0 else "hurts" if effect[leaf] < 0 else "neutral"
    return (
        f"**Leaf {leaf}**: {text.markdown_text(label)} = {effect[leaf]:+.4f} ± {spread[leaf]:.4f} ({verdict}, "
        f"{'measured' if measured else 'inferred'}), {int(bundle.leaf_size[leaf]):,} examples, parent "
        f"{int(bundle.leaf_parent[leaf])}, large node {int(bundle.leaf_large[leaf])}"
    )


def show_example(point_id: int, example: object, source: object, response: object = None) -> None:
    """One example in full: its prompt's chat turns (or its text), then its response, verbatim in code blocks,
    which show untrusted text as plain characters (no Markdown, no HTML, no links), and its source."""
    turns = text.chat_turns(example)
    st.caption(
        f"Point {int(point_id)} · source: " + (text.code_span(source, 200) if source else "not recorded")
    )
    if response is not None:
        st.caption("**prompt**")
    for role, content in turns:
        if role:
            st.caption(f"**{text.markdown_text(role)}**")
        st.code(content or "(empty)", language=None, wrap_lines=True)
    if response is not None:
        st.caption("**response**")
        st.code(str(response) or "(empty)", language=None, wrap_lines=True)
