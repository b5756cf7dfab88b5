"""Entry point of the HARP explorer: ``streamlit run app/streamlit_app.py`` with ``HARP_STORE`` set.

``harp app --store PATH`` does that for you. The store path is read from the environment (or, for one session,
picked on the Stores page among the folder of stores), never from the URL, so a shared link cannot point the app
at another file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _import_as_app(folder: Path) -> None:
    """Make ``folder`` (this file's) the package ``app`` that the pages and helpers import (``from app.data ...``).

    In a checkout the folder is ``app/`` itself: its parent goes on sys.path, as Streamlit puts only this file's
    folder there. An installed wheel holds the folder as the package ``harp_app`` (no top-level ``app`` in
    site-packages to clash with another project's), so it is registered under the name ``app`` as well, once:
    every helper module is then loaded once, as ``app.<name>``.
    """
    if folder.name == "app":
        root = str(folder.parent)
        if root not in sys.path:
            sys.path.insert(0, root)
        return
    loaded = sys.modules.get("app")
    if loaded is not None and [str(Path(p).resolve()) for p in getattr(loaded, "__path__", [])] == [
        str(folder)
    ]:
        return
    spec = importlib.util.spec_from_file_location(
        "app", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["app"] = package
    spec.loader.exec_module(package)


_import_as_app(Path(__file__).resolve().parent)

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
