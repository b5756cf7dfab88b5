"""Runs: the store's runs as they happen (a running ``harp measure``'s leaves done, rate and time left,
refreshed while it writes), and a rerun of ``harp infer`` once new measurements have landed."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import data, runs_watch, text
from app.data import StoreProblem
from harp.runs import PendingMeasurements, RunProgress, utc_now

REFRESH_S = 2.0

try:
    path = data.store_path()
except StoreProblem as problem:
    data.stop_with(problem)
    raise
_OUTCOME = f"infer_outcome::{path}"


def _progress(run: RunProgress) -> None:
    now = utc_now()
    st.markdown(
        f"**{text.markdown_text(run.kind)}** run {text.markdown_text(run.run_id)}, started "
        f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC"
        if run.started_at
        else f"**{text.markdown_text(run.kind)}** run {text.markdown_text(run.run_id)}"
    )
    if run.planned:
        st.progress(min(run.done / run.planned, 1.0), text=f"{run.done:,} of {run.planned:,} leaves measured")
    columns = st.columns(4)
    columns[0].metric(
        "Leaves done", f"{run.done:,}" + (f" / {run.planned:,}" if run.planned is not None else "")
    )
    columns[1].metric("Leaves a minute", "\u2013" if run.rate is None else f"{run.rate * 60:.2f}")
    columns[2].metric("Time left", runs_watch.duration_words(run.seconds_left(now)))
    columns[3].metric("Last leaf landed", runs_watch.ago_words(run.last_write, now))


def _quiet(runs: list[RunProgress]) -> None:
    now = utc_now()
    lines = [
        f"- **{text.markdown_text(r.kind)}** run {text.markdown_text(r.run_id)}: {r.done:,}"
        + (f" of {r.planned:,}" if r.planned is not None else "")
        + f" leaves, last written {runs_watch.ago_words(r.last_write or r.started_at, now)}"
        for r in runs
    ]
    st.warning(
        "These runs say *running* but have written nothing for far longer than their leaves take, so they most "
        "likely stopped without recording their end (killed, power lost). `harp measure` run again resumes "
        "where they stopped.\n\n" + "\n".join(lines),
        icon=":material/hourglass_disabled:",
    )


def _pending(pending: PendingMeasurements) -> None:
    # Kept (with its time) until the next rerun of infer: the panel redraws every few seconds.
    outcome = st.session_state.get(_OUTCOME)
    if outcome is not None:
        kind, message = outcome
        (st.success if kind == "done" else st.error)(message)
    if pending.leaves == 0:
        st.caption("The effects include every measurement: nothing new for `harp infer`.")
        return
    st.info(
        f"**{pending.leaves:,}** leaves were measured after the effects were fitted. Rerunning `harp infer` "
        "updates every leaf's posterior effect (and the active domains) from all the measurements.",
        icon=":material/science:",
    )
    key = pending.config_key
    if key is None and len(pending.config_keys) > 1:
        key = st.selectbox(
            "Measurement configuration to fit", list(pending.config_keys), key="runs_infer_key"
        )
    if st.button("Rerun harp infer", key="runs_infer", icon=":material/refresh:"):
        try:
            with st.spinner("Fitting the effects ..."):
                summary = runs_watch.rerun(path, key)
        except StoreProblem as problem:
            st.session_state[_OUTCOME] = ("failed", f"{utc_now():%H:%M:%S} UTC: {problem.message}")
        else:
            notes = "".join(f"\n\n- {text.markdown_text(w, 300)}" for w in summary["warnings"])
            st.session_state[_OUTCOME] = (
                "done",
                f"{utc_now():%H:%M:%S} UTC: effects refitted from {summary['measured_leaves']:,} measured leaves; "
                f"{summary['active_domains']:,} domains active.{notes}",
            )
        st.rerun()


def _table(runs: list[RunProgress]) -> None:
    now = utc_now()
    st.dataframe(
        pd.DataFrame(
            {
                "run": [r.run_id for r in runs],
                "kind": [r.kind for r in runs],
                "status": [f"{r.status} (quiet)" if r.quiet(now) else r.status for r in runs],
                "started (UTC)": [r.started_at for r in runs],
                "finished (UTC)": [r.finished_at for r in runs],
                "duration": [runs_watch.duration_words(r.elapsed(now)) for r in runs],
                "leaves": [
                    f"{r.done:,}" + (f" / {r.planned:,}" if r.planned is not None else "") for r in runs
                ],
                "config key": [r.config_key or "" for r in runs],
            }
        ),
        hide_index=True,
        key="runs_table",
    )


st.markdown("### Runs")
st.caption("Store: " + text.markdown_text(path))
watch = st.toggle(f"Watch: refresh every {REFRESH_S:g} s", value=True, key="runs_watch")


@st.fragment(run_every=REFRESH_S if watch else None)
def runs_panel() -> None:
    try:
        runs, pending, note = runs_watch.read(path)
    except StoreProblem as problem:
        data.stop_with(problem)
        return
    if note:
        st.warning(note, icon=":material/lock:")
    now = utc_now()
    running = [r for r in runs if r.running and not r.quiet(now)]
    for run in running:
        _progress(run)
    if runs and not running:
        st.caption("No run is running now.")
    quiet = [r for r in runs if r.quiet(now)]
    if quiet:
        _quiet(quiet)
    _pending(pending)
    if runs:
        st.markdown("#### Every run, newest first")
        _table(runs)
    else:
        st.info("No run recorded yet: `harp measure` and the other pipeline commands record theirs here.")


runs_panel()
