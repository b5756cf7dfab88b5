"""About the store: what it holds, its schema version and content hash, the domains and the runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, text
from app.data import StoreProblem

try:
    path = data.store_path()
    token = data.file_token(path)
    summary = data.summary(path, token)
except StoreProblem as problem:
    data.stop_with(problem)
    raise

st.markdown("### About the store")
st.markdown(f"File: `{path}`")
scalars = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
nested = {k: v for k, v in summary.items() if isinstance(v, dict | list)}
st.dataframe(
    pd.DataFrame({"field": list(scalars), "value": [str(v) for v in scalars.values()]}),
    hide_index=True,
    height="content",
    key="store_summary",
)
for key, value in nested.items():
    st.markdown(f"**{text.markdown_text(key)}**")
    if isinstance(value, dict):
        st.dataframe(
            pd.DataFrame({"name": list(value), "value": [str(v) for v in value.values()]}),
            hide_index=True,
            height="content",
            key=f"store_summary_{key}",
        )
    elif value and isinstance(value[0], dict):
        rows = [{field: text.json_cell(v) for field, v in row.items()} for row in value]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"store_summary_{key}")
    else:
        st.write(value)

try:
    bundle, stale = data.load_bundle(path)
except StoreProblem as problem:
    st.info(f"Effects and domains are not available: {text.markdown_text(problem.message, 400)}")
    st.stop()

st.markdown("**Domains**")
measured = bundle.measured_per_domain()
st.dataframe(
    pd.DataFrame(
        {
            "domain": list(bundle.domain_names),
            "base score": bundle.base,
            "active": bundle.active,
            "measured leaves": measured,
            "inferred leaves": bundle.n_leaves - measured,
        }
    ),
    hide_index=True,
    key="store_domains",
)
unmeasured = [n for n, m in zip(bundle.domain_names, measured, strict=True) if m == 0]
if unmeasured:
    st.info(
        f"{len(unmeasured)} domain(s) have no measurements yet; their effects are inferred only: "
        + ", ".join(text.markdown_text(n, 60) for n in unmeasured[:20])
        + (" ..." if len(unmeasured) > 20 else ""),
        icon=":material/science:",
    )
