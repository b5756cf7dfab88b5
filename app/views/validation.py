"""Mixture validation: do the single-leaf effects predict what a union of leaves does? (see ``harp.mixtures``)

For each measurement config, the stored mixtures' measured effects against each envelope's prediction: the
metrics of :func:`harp.mixtures.mixture_report`, predicted vs measured utility gain, and sign agreement per domain.
The weights are the store's defaults (active domains 1, the others 0; every domain 1 when none is active).
"""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import data, figures, text
from app.data import StoreProblem
from app.state import default_view
from harp.mixtures import mixture_report, stored_mixtures

ENVELOPES = {"HARP-C": "C", "HARP-E": "E"}  # label shown: key of StoredMixtures.predicted
METRICS = {
    "gain_correlation": "gain correlation",
    "gain_rmse": "gain RMSE",
    "gain_bias": "gain bias",
    "effect_rmse": "effect RMSE",
    "mean_sign_agreement": "mean sign agreement",
}

try:
    path = data.store_path()
    token = data.file_token(path)
    table = data.mixtures(path, token)
except StoreProblem as problem:
    data.stop_with(problem)
    raise

st.markdown("### Mixture validation")
if table.num_rows == 0:
    st.info(
        "No mixture validations in this store yet. They finetune on random unions of measured leaves, measure "
        "each union's effect like a leaf's, and compare it with what HARP-C and HARP-E predict from the single "
        "effects. Make them with `harp validate --store STORE --model MODEL --pool POOL --eval EVAL` (see "
        "`harp validate --help` and docs/pipeline.md), where STORE is this store: "
        f"{text.markdown_text(path, 300)}",
        icon=":material/science:",
    )
    st.stop()

try:
    bundle, stale = data.load_bundle(path)
except StoreProblem as problem:
    data.stop_with(problem)
    raise
if stale:
    st.warning(stale, icon=":material/lock:")

columns = table.to_pydict()
config_keys = sorted({str(key) for key in columns["config_key"]})
if len(config_keys) > 1:
    config_key = st.selectbox("Measurement config", config_keys, key="validation_config")
else:
    config_key = config_keys[0]
    st.markdown(f"Measurement config: {text.markdown_text(config_key or '(none)', 200)}")

n_domains = bundle.n_domains
chosen = [i for i, key in enumerate(columns["config_key"]) if str(key) == config_key]
try:
    mixtures = stored_mixtures(
        {name: [values[i] for i in chosen] for name, values in columns.items()}, n_domains
    )
except ValueError:
    st.error(
        f"The stored mixtures of this config do not each have one row per domain ({n_domains} domains); "
        "the store is damaged: run `harp validate` again into a fresh store.",
        icon=":material/error:",
    )
    st.stop()
mixture_ids = mixtures.mixture_id
measured = mixtures.measured
predicted = {name: mixtures.predicted[code] for name, code in ENVELOPES.items()}
weights = default_view(bundle.shape()).effective_weights()
report = mixture_report(measured, predicted, weights)

weighted = [name for name, w in zip(bundle.domain_names, weights, strict=True) if w > 0]
st.caption(
    f"{report['n_mixtures']:,} mixtures. Weights: the store's default, 1 on "
    f"{len(weighted)} of {n_domains} domains ("
    + ", ".join(text.markdown_text(name, 40) for name in weighted[:10])
    + (" ..." if len(weighted) > 10 else "")
    + "), 0 on the others. The gain of a mixture is its weighted mean effect over the domains."
)

metrics = pd.DataFrame(
    [
        {
            "envelope": name,
            **{label: report["envelopes"][name][key] for key, label in METRICS.items()},
        }
        for name in ENVELOPES
    ]
)
st.dataframe(metrics, hide_index=True, key="validation_metrics")
st.caption(
    "Gain correlation: Pearson r of predicted vs measured gain over the mixtures (empty when undefined: fewer "
    "than 2 mixtures or no spread). A low r means the envelope does not rank sets of leaves the way finetuning "
    "does, so its selections deserve little trust on this pool. Gain bias > 0: the envelope over-credits mixtures. "
    "Effect RMSE: over every mixture and weighted domain. Sign agreement: share of mixtures whose predicted and "
    "measured effect have the same sign (|effect| < 1e-12 counts as 0)."
)

# Predicted vs measured gain, one trace per envelope, with the line y = x.
measured_gain = np.asarray(report["measured_gain"])
sizes = [len(leaves) for leaves in mixtures.leaves]
n_points = mixtures.n_points
figure = go.Figure()
values = [measured_gain] + [np.asarray(report["envelopes"][name]["predicted_gain"]) for name in ENVELOPES]
low = float(min(v.min() for v in values))
high = float(max(v.max() for v in values))
pad = max(high - low, 1e-6) * 0.05
figure.add_trace(
    go.Scatter(
        x=[low - pad, high + pad],
        y=[low - pad, high + pad],
        mode="lines",
        name="predicted = measured",
        line={"color": figures.BASE_COLOR, "dash": "dash", "width": 1},
        hoverinfo="skip",
    )
)
for name in ENVELOPES:
    code = name[-1]
    figure.add_trace(
        go.Scatter(
            x=measured_gain,
            y=report["envelopes"][name]["predicted_gain"],
            mode="markers",
            name=html.escape(name),
            marker={"color": figures.ENVELOPE_COLORS[code], "size": 8, "opacity": 0.8},
            customdata=np.column_stack([mixture_ids, sizes, n_points]),
            hovertemplate="mixture %{customdata[0]} (%{customdata[1]} leaves, %{customdata[2]} points)"
            "<br>measured %{x:+.4f}<br>predicted %{y:+.4f}<extra>" + html.escape(name) + "</extra>",
        )
    )
figure.update_layout(
    height=460,
    margin={"l": 10, "r": 10, "t": 30, "b": 10},
    # The same range on both axes, so that y = x runs corner to corner and distances read alike on both.
    xaxis={"title": "measured utility gain", "range": [low - pad, high + pad]},
    yaxis={"title": "predicted utility gain", "range": [low - pad, high + pad]},
    legend={"orientation": "h", "yanchor": "bottom", "y": 1.0},
)
st.plotly_chart(figure, key="validation_scatter", config={"displaylogo": False})

st.markdown("**Sign agreement per domain**")
st.dataframe(
    pd.DataFrame(
        {
            "domain": list(bundle.domain_names),
            "weight": weights,
            "mean measured effect": measured.mean(axis=0),
            **{f"{name} sign agreement": report["envelopes"][name]["sign_agreement"] for name in ENVELOPES},
        }
    ),
    hide_index=True,
    key="validation_signs",
)

with st.expander("The mixtures"):
    st.dataframe(
        pd.DataFrame(
            {
                "mixture": mixture_ids,
                "leaves": sizes,
                "points": n_points,
                "run": mixtures.run_id,
                "measured gain": measured_gain,
                **{f"{name} gain": report["envelopes"][name]["predicted_gain"] for name in ENVELOPES},
                "leaf ids": [json.dumps(leaves) for leaves in mixtures.leaves],
            }
        ),
        hide_index=True,
        key="validation_mixtures",
    )
