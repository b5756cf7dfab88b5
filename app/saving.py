"""Saving a selection into the store from a page: one set of checks and messages for every kind of selection.

The Explore page saves HARP-C or HARP-E, the Designed mixtures page a design selection; both go through
:func:`save_with_messages`, so a missing name, a taken name or a store that cannot be written reads the same.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import text
from app.data import StoreProblem

REPLACE_LABEL = "Replace a saved selection of the same name"


def save_with_messages(name: str, save: Callable[[], int]) -> bool:
    """Run ``save`` (which writes the selection under ``name`` and returns its id) and say how it went.

    Returns True when it was saved. Nothing is raised: every refusal is an ``st.error`` that names what to do.
    """
    if not name:
        st.error("Give the selection a name.")
        return False
    try:
        selection_id = save()
    except StoreProblem as problem:
        st.error(f"Not saved: {text.markdown_text(problem.message, 400)}")
        return False
    except ValueError as error:
        if "already exists" in str(error):
            st.error(
                f"Not saved: a selection named {text.code_span(name)} already exists in this store. Tick "
                f"**{REPLACE_LABEL}** to replace it, or give this one another name.",
                icon=":material/error:",
            )
        else:
            st.error(f"Not saved: {text.markdown_text(error, 400)}")
        return False
    st.session_state["last_saved"] = name
    st.success(
        f"Saved as {text.code_span(name)} (selection {selection_id}). Reload it from the **Selections** page.",
        icon=":material/check:",
    )
    return True
