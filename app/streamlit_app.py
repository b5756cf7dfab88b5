"""Entry point of the HARP explorer: ``streamlit run app/streamlit_app.py`` with ``HARP_STORE`` set.

``harp app --store PATH`` does that for you. The store path is read from the environment (or, for one session,
picked on the Stores page among the folder of stores), never from the URL, so a shared link cannot point the app
at another file.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit puts this file's folder on sys.path; the pages import the helpers as the package ``app``.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

# The page files live in app/views, not app/pages: Streamlit would treat a pages/ folder as a second, file-based
# navigation and show it (with the wrong page layout) when a page's URL is opened directly.
st.set_page_config(page_title="HARP explorer", page_icon=":material/scatter_plot:", layout="wide")

pages = [
    st.Page("views/explore.py", title="Explore", icon=":material/scatter_plot:", default=True),
    st.Page("views/leaves.py", title="Leaves", icon=":material/table_rows:", url_path="leaves"),
    st.Page("views/selections.py", title="Selections", icon=":material/bookmarks:", url_path="selections"),
    st.Page(
        "views/validation.py", title="Mixture validation", icon=":material/fact_check:", url_path="validation"
    ),
    st.Page("views/design.py", title="Designed mixtures", icon=":material/grid_view:", url_path="design"),
    st.Page("views/runs.py", title="Runs", icon=":material/monitoring:", url_path="runs"),
    st.Page("views/stores.py", title="Stores", icon=":material/folder_open:", url_path="stores"),
    st.Page("views/store.py", title="About the store", icon=":material/database:", url_path="store"),
]
st.navigation(pages).run()
