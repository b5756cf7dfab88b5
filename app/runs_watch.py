"""The Runs page's reads and its one write (rerunning ``harp infer``), over :mod:`harp.runs`.

Reads are cached under the store's file token (``app.data.file_token``: a stat, no connection), so the page can
poll every few seconds while ``harp measure`` writes and still open the store only when something changed. When
the store is locked by the writer at that moment, the last reading is shown.

The rerun opens one read-write :class:`~harp.store.Store` with a short lock timeout and writes in the
library's short transactions (a run record, the effects, the active flags, the run's end); a running
``harp measure`` waits for each of them (it retries its locks for seconds) and is never stopped.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from typing import Any

import streamlit as st

from app import data
from app.data import StoreProblem
from harp.runs import PendingMeasurements, RunProgress, pending_measurements, rerun_infer, run_progress
from harp.store import Store, StoreError

# How long the rerun waits for a writer (harp measure between two leaves) before asking to retry.
WRITE_LOCK_TIMEOUT_S = 10.0


@st.cache_data(max_entries=8, show_spinner=False)
def _read(path: str, token: tuple[int, ...]) -> tuple[list[RunProgress], PendingMeasurements]:
    store = data.open_store(path)
    try:
        return run_progress(store), pending_measurements(store)
    except StoreError as error:
        raise data.problem_from(error) from error


def read(path: str) -> tuple[list[RunProgress], PendingMeasurements, str | None]:
    """The runs and the pending measurements, and a note when they are the last reading (store locked)."""
    key = f"_runs::{path}"
    try:
        runs, pending = _read(path, data.file_token(path))
    except StoreProblem as problem:
        last = st.session_state.get(key)
        if problem.kind == "locked" and last is not None:
            return (*last, "The store is being written right now; showing the last reading.")
        raise
    st.session_state[key] = (runs, pending)
    return runs, pending, None


def rerun(path: str, config_key: str | None) -> dict[str, Any]:
    """Rerun the empirical-Bayes fit on the store (as ``harp infer [--config-key KEY]``); a short summary."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = Store.open(path, lock_timeout=WRITE_LOCK_TIMEOUT_S)
            effects, active = rerun_infer(store, config_key=config_key)
    except StoreError as error:
        raise data.problem_from(error) from error
    except ValueError as error:
        raise StoreProblem("broken", str(error)[:1].upper() + str(error)[1:]) from None
    return {
        "measured_leaves": int(effects.measured.any(axis=1).sum()),
        "active_domains": int(active.sum()),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, UserWarning)],
    }


def duration_words(seconds: float | None) -> str:
    """Seconds as a person reads them: ``"45 s"``, ``"about 12 min"``, ``"about 2 h 5 min"``, ``"about 3 d"``;
    a dash for None."""
    if seconds is None:
        return "\u2013"
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours >= 24:
        return f"about {round(minutes / 1440)} d"
    return f"about {hours} h" + (f" {rest} min" if rest else "")


def ago_words(then: _dt.datetime | None, now: _dt.datetime) -> str:
    """How long ago ``then`` was, short enough for a metric: ``"45 s ago"``, ``"3 min ago"``; a dash for None."""
    if then is None:
        return "\u2013"
    return duration_words((now - then).total_seconds()).removeprefix("about ") + " ago"
