"""Designed mixtures: which regions help, from a regression over many finetunes (see ``harp.design``).

For one design (a config and a level of the tree), every region's effect on the mean score over the domains,
centred on the pool (above 0: better than an average chunk of it), with its bootstrap standard error and the rules
that keep it; the leave-one-out R2 says whether the fit found anything. A selection by either rule (prune the
regions, draw the budget uniformly from the rest) can be downloaded as the CSV and manifest `harp design select`
writes, and saved into the store; the Explore page's map and overlap panel show the selection chosen here.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, design_pick, figures, saving, text
from app.data import StoreProblem
from harp.design import kept_regions
from harp.design_selection import DesignSettings
from harp.export import manifest_text, selection_csv

if TYPE_CHECKING:
    from streamlit.delta_generator import DeltaGenerator

LEVEL_NAMES = {"large": "large nodes", "parent": "parents"}
RULE_HELP = {
    "C": "keeps a region whose effect is above 0 by more than one standard error",
    "E": "keeps every region whose effect is above 0",
}
WEAK_FIT_R2 = 0.05  # below this, the regions explain (almost) nothing of the spread between finetunes

try:
    path = data.store_path()
    token = data.file_token(path)
    configs = data.design_configs(path, token)
except StoreProblem as problem:
    data.stop_with(problem)
    raise

st.markdown("### Designed mixtures")
if not configs:
    st.info(
        "No designed mixtures in this store yet. Each finetunes on a random half of the large nodes (or parents) "
        "and measures the effect; a regression over many of them gives every region's effect, and pruning the "
        "regions that do worse than the pool's average beat random selections on the demo. Make them with "
        "`harp design measure --store STORE --model MODEL --pool POOL --eval EVAL` (see `harp design --help` "
        f"and docs/measure.md), where STORE is this store: {text.markdown_text(path, 300)}",
        icon=":material/science:",
    )
    st.stop()

labels = [f"{key} ({LEVEL_NAMES.get(level, level)})" for key, level in configs]
columns: Sequence[DeltaGenerator] = st.columns([3, 1])
# The widgets start from the settings last chosen here (Streamlit forgets a page's widgets when it is left).
last = st.session_state.get(design_pick.SETTINGS_KEY) or {}
last_design = (last.get("config_key"), last.get("level"))
chosen = columns[0].selectbox(
    "Design (config and level)",
    labels,
    index=configs.index(last_design) if last_design in configs else 0,
    key="design_config",
)
config_key, level = configs[labels.index(chosen)]
seed = int(
    columns[1].number_input(
        "Bootstrap seed",
        min_value=0,
        value=int(last.get("bootstrap_seed", 0)),
        step=1,
        key="design_bootstrap_seed",
    )
)
try:
    fit, sources = data.design_fit(path, token, config_key, level, seed)
    bundle, stale = data.load_bundle(path)
except StoreProblem as problem:
    data.stop_with(problem)
    raise
except ValueError as error:
    st.error(f"The design cannot be fitted: {text.markdown_text(error, 400)}", icon=":material/error:")
    st.stop()
if stale:
    st.warning(stale, icon=":material/lock:")

region_of_leaf = bundle.leaf_large if level == "large" else bundle.leaf_parent
sizes = np.bincount(region_of_leaf, weights=bundle.leaf_size, minlength=fit.centred.size).astype(np.int64)
keeps = {rule: set(kept_regions(fit, rule).tolist()) for rule in ("C", "E")}
st.caption(
    f"{fit.n_mixtures:,} finetunes at budgets {', '.join(f'{b:,}' for b in fit.budgets)}; ridge penalty "
    f"{fit.penalty:g} (chosen by leave-one-out error); leave-one-out R2 {fit.loo_r2:.3f}. An effect is on the mean "
    "effect over all domains, centred on the pool: above 0, the region does better than an average chunk of it."
)
if not np.isfinite(fit.loo_r2) or fit.loo_r2 < WEAK_FIT_R2:
    st.warning(
        f"The regions explain almost none of the spread between these finetunes (leave-one-out R2 {fit.loo_r2:.3f}): "
        "a selection from this fit is close to a random one. More design mixtures, or another level, may help.",
        icon=":material/warning:",
    )

order = np.argsort(-fit.centred, kind="stable")
table = pd.DataFrame(
    {
        "region": order,
        "examples": sizes[order],
        "main sources": [sources[r] if r < len(sources) else "" for r in order],
        "effect": fit.centred[order],
        "se": fit.se[order],
        "kept by C": [int(r) in keeps["C"] for r in order],
        "kept by E": [int(r) in keeps["E"] for r in order],
    }
)
st.dataframe(table, hide_index=True, key="design_regions")

status = np.where(np.isin(order, list(keeps["C"])), "C", np.where(np.isin(order, list(keeps["E"])), "E", "-"))
colors = {"C": figures.ENVELOPE_COLORS["C"], "E": figures.ENVELOPE_COLORS["E"], "-": figures.BASE_COLOR}
figure = go.Figure(
    go.Bar(
        x=[str(int(r)) for r in order],
        y=fit.centred[order],
        error_y={"type": "data", "array": fit.se[order], "visible": True},
        marker={"color": [colors[s] for s in status]},
        customdata=np.column_stack([sizes[order], [text.hover_text(sources[r], 80) for r in order]]),
        hovertemplate="region %{x}: %{customdata[0]} examples<br>%{customdata[1]}"
        "<br>effect %{y:+.4f}<extra></extra>",
    )
)
figure.update_layout(
    height=360,
    margin={"l": 10, "r": 10, "t": 10, "b": 10},
    xaxis={
        "title": f"{LEVEL_NAMES.get(level, level)[:-1]} (colored by the strictest rule that keeps it)",
        "type": "category",
    },  # fmt: skip
    yaxis={"title": "effect (centred) ± se"},
)
st.plotly_chart(figure, key="design_bars", config={"displaylogo": False})

st.markdown("**A selection from this fit**")
columns = st.columns(3)
rule = columns[0].radio("Rule", ["C", "E"], index=int(last.get("rule") == "E"), horizontal=True, key="design_rule", help=RULE_HELP["C"] + "; E "
                        + RULE_HELP["E"])  # fmt: skip
kept_points = int(sizes[list(keeps[rule])].sum()) if keeps[rule] else 0
budget = int(
    columns[1].number_input(
        "Budget (points)",
        min_value=1,
        max_value=max(1, bundle.total_points),
        step=100,
        key="design_budget",
        value=min(int(last.get("budget") or 1000), max(1, bundle.total_points)),
    )  # fmt: skip
)
draw_seed = int(
    columns[2].number_input(
        "Draw seed", min_value=0, value=int(last.get("seed", 0)), step=1, key="design_draw_seed"
    )
)
if not keeps[rule]:
    st.info(f"Rule {rule} keeps no region of this fit, so it selects nothing.", icon=":material/info:")
    st.stop()
settings = DesignSettings(rule, level, config_key, seed, budget, draw_seed)
design_pick.remember(settings)  # the Explore page's map and overlap panel show this selection
picked = design_pick.pick(bundle, settings, fit)
selection = picked.selection
st.caption(
    f"Rule {rule} {RULE_HELP[rule]}: {len(keeps[rule])} regions, {kept_points:,} points, of which "
    f"{selection.points.size:,} are drawn uniformly (seed {draw_seed}). The same from the command line:"
)
st.code(
    f"harp design select --store STORE --config-key {shlex.quote(config_key)} --level {level} "
    f"--bootstrap-seed {seed} --rule {rule} --budget {budget} --seed {draw_seed} --out FILE.csv",
    language="bash",
)
stem = f"design-{rule}-{selection.points.size}"
columns = st.columns(2)
columns[0].download_button(
    "Download the selection (CSV)",
    data=selection_csv(selection),
    file_name=f"{stem}.csv",
    mime="text/csv",
    key="design_download",
    icon=":material/download:",
)
columns[1].download_button(
    "Download manifest (JSON)",
    data=manifest_text(picked.manifest),
    file_name=f"{stem}.manifest.json",
    mime="application/json",
    key="design_download_manifest",
    on_click="ignore",
    icon=":material/description:",
)

with st.form("design_save_form", clear_on_submit=False):
    st.markdown("**Save this selection into the store**")
    name = st.text_input("Name", key="design_save_name", max_chars=200)
    overwrite = st.checkbox(saving.REPLACE_LABEL, key="design_save_overwrite")
    submitted = st.form_submit_button("Save this selection", icon=":material/save:")
if submitted:
    name = str(name or "").strip()
    saving.save_with_messages(name, lambda: design_pick.save(path, name, picked, overwrite=bool(overwrite)))
