"""Cached, read-only access to the store for the app, and the one write (saving a selection).

The store path comes from the ``HARP_STORE`` environment variable (``harp app --store`` sets it), or from the
store this session opened on the Stores page (one of the folder of stores, see ``app.store_folder``), never from
the URL. Reads are cached under the path plus a cheap *token*: the modification time and size of the DuckDB file and
of its write-ahead log. A ``harp measure`` that writes new effects changes the token, so the next rerun (or a
browser refresh) reads them; an unchanged store is never read twice.

The large per-store bundle (phi, members, layout, hover previews) is cached with ``st.cache_resource``, not
``st.cache_data``: ``cache_data`` would unpickle a fresh copy of some tens of megabytes on every rerun at 10,000
leaves, which alone would break the 0.5 s redraw target. The bundle is never mutated. Small reads (examples, the
summary, saved selections, mixture validations) use ``st.cache_data``.

Connections are short-lived (``Store`` opens one per operation), so a running ``harp measure`` can take the write
lock between our reads. When the store is locked the app keeps showing the last bundle it read, with a warning.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from app import figures, text
from app.state import StoreShape
from harp import search
from harp.search import SearchHits
from harp.select import select, sort_effects, with_budget
from harp.store import Store, StoreError, StoreIncompleteError, StoreLockedError

ENV_VAR = "HARP_STORE"
# The store this session opened on the Stores page (a path in the folder of stores), in st.session_state.
CHOSEN_KEY = "store_chosen"
# The folder of stores (``harp app --stores``) that the Stores page opens and imports within.
FOLDER_VAR = "HARP_STORES"
# Wait at most this long for a writer to release the store before telling the user to retry.
LOCK_TIMEOUT_S = 2.0
HOVER_EXAMPLES = 2
HOVER_CHARS = 50
HOVER_RESPONSE_CHARS = 30


class StoreProblem(Exception):
    """Why the app cannot show a store. ``kind`` picks how the page presents it."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "unset", "missing", "locked", "broken", "empty"
        self.message = message


@dataclass(frozen=True)
class StoreBundle:
    """Everything the Explore page reads from one version of the store (see ``Store.selection_inputs``).

    Arrays are indexed by leaf id g (0..n_leaves-1) or domain id d.
    """

    path: str
    token: tuple[int, ...]
    phi: np.ndarray  # (L, D) posterior mean
    sd: np.ndarray  # (L, D) posterior sd
    measured: np.ndarray  # (L, D) bool
    base: np.ndarray  # (D,)
    active: np.ndarray  # (D,) bool
    domain_names: tuple[str, ...]
    members: Sequence[np.ndarray]  # L arrays of point ids, in the order they are taken (a LeafMembers)
    leaf_parent: np.ndarray  # (L,)
    leaf_large: np.ndarray  # (L,)
    leaf_size: np.ndarray  # (L,)
    x: np.ndarray  # (L,) layout
    y: np.ndarray
    has_layout: bool
    hover: list[str]  # (L,) escaped example snippets joined with <br>
    has_effects: bool
    content_hash: str | None = None  # of the snapshot the arrays were read in: what a manifest of them names

    @property
    def n_leaves(self) -> int:
        return int(self.phi.shape[0])

    @property
    def n_domains(self) -> int:
        return int(self.phi.shape[1])

    @property
    def total_points(self) -> int:
        return int(self.leaf_size.sum())

    def shape(self) -> StoreShape:
        return StoreShape(
            domain_names=self.domain_names,
            default_active=tuple(bool(a) for a in self.active),
            n_leaves=self.n_leaves,
            total_points=self.total_points,
            n_large=int(self.leaf_large.max()) + 1 if self.leaf_large.size else 0,
            n_parents=int(self.leaf_parent.max()) + 1 if self.leaf_parent.size else 0,
        )

    def measured_per_domain(self) -> np.ndarray:
        return self.measured.sum(axis=0)


def store_path() -> str:
    """The store this session opened on the Stores page, else the one named by ``HARP_STORE``; raises
    StoreProblem when it is unset or the file is missing."""
    value = str(st.session_state.get(CHOSEN_KEY) or os.environ.get(ENV_VAR, "")).strip()
    if not value and os.environ.get(FOLDER_VAR, "").strip():
        raise StoreProblem(
            "unset", "No store is open yet: open one of the folder of stores on the **Stores** page."
        )
    if not value:
        raise StoreProblem(
            "unset", f"No store given. Start the app with `harp app --store PATH` (it sets {ENV_VAR})."
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise StoreProblem(
            "missing",
            f"Store file {path} does not exist. Create one with `harp synth --out {path}` or import the demo with "
            f"`harp import data/demo {path}`.",
        )
    if path.is_dir():
        raise StoreProblem("broken", f"{path} is a directory, not a store file.")
    return str(path.resolve())


def file_token(path: str) -> tuple[int, ...]:
    """Modification time and size of the store file and of its write-ahead log (0, 0 when there is none)."""
    token: list[int] = []
    for candidate in (path, path + ".wal"):
        try:
            stat = os.stat(candidate)
            token += [stat.st_mtime_ns, stat.st_size]
        except FileNotFoundError:
            token += [0, 0]
    return tuple(token)


def open_store(path: str, *, read_only: bool = True) -> Any:
    """Open the store, turning library errors into a StoreProblem the page can show."""
    try:
        return Store.open(path, read_only=read_only, lock_timeout=LOCK_TIMEOUT_S)
    except StoreError as error:
        raise problem_from(error) from error


def problem_from(error: Exception) -> StoreProblem:
    message = str(error)
    if isinstance(error, StoreIncompleteError):
        return StoreProblem("empty", message[:1].upper() + message[1:])
    if isinstance(error, StoreLockedError):
        return StoreProblem(
            "locked",
            "The store is being written by another process (a running `harp measure`?). "
            f"Retry in a moment. ({message})",
        )
    return StoreProblem("broken", message)


def _hover_snippets(store: Any, n_leaves: int) -> list[str]:
    """The first ``HOVER_EXAMPLES`` examples of every leaf, escaped for a plotly hover, one string a leaf: each
    example's prompt and, where the store has it, its response (``"prompt" -> "response"``)."""
    previews = store.leaf_previews(per_leaf=HOVER_EXAMPLES)
    leaves = previews.column("leaf_id").to_numpy()
    prompts = previews.column("text").to_pylist()
    responses = previews.column("response").to_pylist()
    snippets: list[list[str]] = [[] for _ in range(n_leaves)]
    for leaf, prompt, response in zip(leaves.tolist(), prompts, responses, strict=True):
        if 0 <= leaf < n_leaves:
            shown = "\u201c" + text.hover_text(prompt, HOVER_CHARS) + "\u201d"
            if response:
                shown += " \u2192 \u201c" + text.hover_text(response, HOVER_RESPONSE_CHARS) + "\u201d"
            snippets[leaf].append(shown)
    return ["<br>".join(parts) if parts else "(no example text)" for parts in snippets]


def _grid_layout(leaf_large: np.ndarray, leaf_parent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stand-in layout when the store has none: leaves on a square grid in tree order, so that siblings sit
    together. Positions carry no meaning beyond that; the page says so."""
    n = leaf_parent.shape[0]
    order = np.lexsort((np.arange(n), leaf_parent, leaf_large))
    side = max(int(np.ceil(np.sqrt(n))), 1)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    return (position % side).astype(np.float64), -(position // side).astype(np.float64)


@st.cache_resource(max_entries=3, show_spinner="Reading the store ...")
def _load_bundle(path: str, token: tuple[int, ...]) -> StoreBundle:
    store = open_store(path)
    try:
        inputs = store.selection_inputs()
    except StoreError as error:
        raise problem_from(error) from error
    phi = np.asarray(inputs.phi, dtype=np.float64)
    n_leaves = phi.shape[0] if phi.ndim == 2 else 0
    if n_leaves == 0:
        raise StoreProblem(
            "empty",
            "The store holds no leaves yet. Build the hierarchy first (`harp hierarchy ...`, see docs).",
        )
    if phi.shape[1] == 0:
        raise StoreProblem(
            "empty", "The store has leaves but no evaluation domains yet (`harp measure` adds them)."
        )
    leaf_parent = np.asarray(inputs.leaf_parent, dtype=np.int64)
    parent_large = np.asarray(inputs.parent_large, dtype=np.int64)
    leaf_large = parent_large[leaf_parent] if parent_large.size else np.zeros(n_leaves, dtype=np.int64)
    layout = store.layout()
    if layout is None:
        x, y = _grid_layout(leaf_large, leaf_parent)
        has_layout = False
    else:
        x, y = (np.asarray(v, dtype=np.float64) for v in layout)
        has_layout = True
    measured = np.asarray(inputs.measured, dtype=bool)
    sd = np.asarray(inputs.sd, dtype=np.float64)
    return StoreBundle(
        path=path,
        token=token,
        phi=phi,
        sd=sd,
        measured=measured,
        base=np.asarray(inputs.base, dtype=np.float64),
        active=np.asarray(inputs.active, dtype=bool),
        domain_names=tuple(str(n) for n in inputs.domain_names),
        members=inputs.members,  # offsets into one array: harp.select checks it in one pass, not per leaf
        leaf_parent=leaf_parent,
        leaf_large=leaf_large,
        leaf_size=np.asarray(inputs.leaf_size, dtype=np.int64),
        x=x,
        y=y,
        has_layout=has_layout,
        hover=_hover_snippets(store, n_leaves),
        has_effects=bool(measured.any() or np.any(phi != 0) or np.any(sd != 0)),
        content_hash=inputs.content_hash,
    )


def load_bundle(path: str) -> tuple[StoreBundle, str | None]:
    """The current bundle, and a warning when it is a stale one kept because the store is locked by a writer."""
    key = f"_bundle::{path}"
    try:
        bundle = _load_bundle(path, file_token(path))
    except StoreProblem as problem:
        last = st.session_state.get(key)
        if problem.kind == "locked" and last is not None:
            return (
                last,
                "The store is being written right now; showing the data read before. Refresh to update.",
            )
        raise
    st.session_state[key] = bundle
    return bundle, None


@st.cache_resource(max_entries=16, show_spinner=False)
def _ranking(
    path: str,
    token: tuple[int, ...],
    envelope: str,
    weights: tuple[float, ...],
    pinned: tuple[int, ...],
    excluded: tuple[int, ...],
) -> Any:
    """The uncapped selection: its greedy order and cut do not depend on the budget."""
    bundle = _load_bundle(path, token)
    return select(
        bundle.phi,
        bundle.base,
        envelope=envelope,
        weights=np.asarray(weights, dtype=np.float64),
        members=bundle.members,
        pinned=list(pinned),
        excluded=list(excluded),
        # HARP-C's per-domain sort depends on phi alone: kept across weight, pin and exclusion changes.
        sorted_effects=_sorted_effects(path, token) if envelope.upper().endswith("C") else None,
    )


@st.cache_resource(max_entries=3, show_spinner=False)
def _sorted_effects(path: str, token: tuple[int, ...]) -> Any:
    """Each domain's effects sorted once per store snapshot (:func:`harp.select.sort_effects`)."""
    return sort_effects(_load_bundle(path, token).phi)


@st.cache_resource(max_entries=16, show_spinner=False)
def objective_effect(
    path: str, token: tuple[int, ...], weights: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Each leaf's effect on the weighted objective and its sd (:func:`app.figures.objective_effect`), once per
    store snapshot and weights: the leaf panel, the regions and the map's colors ask for it on every rerun, and at
    50,000 leaves x 64 domains it costs 15 ms each time. Shared: never mutate the arrays."""
    bundle = _load_bundle(path, token)
    return figures.objective_effect(bundle.phi, bundle.sd, np.asarray(weights, dtype=np.float64))


@st.cache_resource(max_entries=64, show_spinner=False)
def run_selection(
    path: str,
    token: tuple[int, ...],
    envelope: str,
    weights: tuple[float, ...],
    budget: int | None,
    pinned: tuple[int, ...],
    excluded: tuple[int, ...],
) -> Any:
    """``harp.select`` on the store's posterior means; cached, since the user flips back and forth.

    A budget change reuses the cached uncapped ranking (``with_budget`` re-caps it without rerunning the greedy).
    """
    bundle = _load_bundle(path, token)
    ranking = _ranking(path, token, envelope, weights, pinned, excluded)
    if budget is None:
        return ranking
    return with_budget(
        ranking,
        int(budget),
        phi=bundle.phi,
        base=bundle.base,
        envelope=envelope,
        weights=np.asarray(weights, dtype=np.float64),
        members=bundle.members,
    )


def run_selections(
    path: str,
    token: tuple[int, ...],
    envelopes: Sequence[str],
    weights: tuple[float, ...],
    budget: int | None,
    pinned: tuple[int, ...],
    excluded: tuple[int, ...],
) -> dict[str, Any]:
    """:func:`run_selection` for each envelope, side by side.

    The greedies release the GIL (``nogil`` in :mod:`harp.select`), so when a weight edit leaves neither envelope
    cached, HARP-C and HARP-E run on two cores at once: 1.09 s in a row, 0.65 s side by side at 50,000 leaves x
    64 domains here. Each worker carries the script's run context, which Streamlit's caches read. The first
    envelope's error (a ``ValueError`` for bad input) is raised, as the loop would raise it.
    """
    if len(envelopes) < 2:
        return {e: run_selection(path, token, e, weights, budget, pinned, excluded) for e in envelopes}
    context = get_script_run_ctx()

    def one(envelope: str) -> Any:
        if context is not None:
            add_script_run_ctx(threading.current_thread(), context)
        return run_selection(path, token, envelope, weights, budget, pinned, excluded)

    with ThreadPoolExecutor(max_workers=len(envelopes), thread_name_prefix="harp-select") as workers:
        futures = {envelope: workers.submit(one, envelope) for envelope in envelopes}
        return {envelope: future.result() for envelope, future in futures.items()}


def read_leaf_examples(path: str, leaf: int, limit: int, offset: int) -> list[tuple[Any, ...]]:
    """Examples of one leaf, in rank order: (point id, text, source, response) tuples. Uncached."""
    store = open_store(path)
    try:
        rows = store.leaf_examples(int(leaf), limit=int(limit), offset=int(offset), with_response=True)
        return [tuple(row) for row in rows]
    except StoreError as error:
        raise problem_from(error) from error


@st.cache_data(max_entries=256, show_spinner=False)
def leaf_examples(
    path: str, token: tuple[int, ...], leaf: int, limit: int, offset: int
) -> list[tuple[Any, ...]]:
    """Cached :func:`read_leaf_examples` (``token`` keys the cache to the store's current version)."""
    return read_leaf_examples(path, leaf, limit, offset)


MAX_SEARCH_HITS = 500


def read_search_examples(
    path: str, query: str, mode: str = "words", leaf: int | None = None, limit: int = MAX_SEARCH_HITS
) -> SearchHits:
    """:func:`harp.search.search_examples` on the store at ``path``. Uncached.

    A bad query raises ``ValueError`` (the page shows its message); a store that cannot be read, a
    :class:`StoreProblem`.
    """
    store = open_store(path)
    try:
        return search.search_examples(store, query, mode=mode, leaf=leaf, limit=limit)  # type: ignore[arg-type]
    except StoreError as error:
        raise problem_from(error) from error


@st.cache_data(max_entries=64, show_spinner="Searching the examples ...")
def search_examples(
    path: str,
    token: tuple[int, ...],
    query: str,
    mode: str = "words",
    leaf: int | None = None,
    limit: int = MAX_SEARCH_HITS,
) -> SearchHits:
    """Cached :func:`read_search_examples` (``token`` keys the cache to the store's current version)."""
    return read_search_examples(path, query, mode, leaf, limit)


@st.cache_data(max_entries=16, show_spinner=False)
def summary(path: str, token: tuple[int, ...]) -> dict[str, Any]:
    store = open_store(path)
    try:
        return dict(store.summary())
    except StoreError as error:
        raise problem_from(error) from error


def read_content_hash(path: str) -> str:
    """The store's content hash (what a manifest and a saved selection record). Uncached."""
    store = open_store(path)
    try:
        return str(store.content_hash())
    except StoreError as error:
        raise problem_from(error) from error


@st.cache_data(max_entries=16, show_spinner="Hashing the store contents ...")
def content_hash(path: str, token: tuple[int, ...]) -> str:
    return read_content_hash(path)


@st.cache_data(max_entries=16, show_spinner=False)
def mixtures(path: str, token: tuple[int, ...]) -> pa.Table:
    """The store's mixture validations (``Store.mixtures``): one row per mixture and domain."""
    store = open_store(path)
    try:
        return store.mixtures()
    except StoreError as error:
        raise problem_from(error) from error


@st.cache_data(max_entries=16, show_spinner=False)
def design_configs(path: str, token: tuple[int, ...]) -> list[tuple[str, str]]:
    """The (config_key, level) pairs the store holds design mixtures under, sorted."""
    store = open_store(path)
    try:
        table = store.design_mixtures().select(["config_key", "level"]).to_pydict()
    except StoreError as error:
        raise problem_from(error) from error
    return sorted({(str(k), str(v)) for k, v in zip(table["config_key"], table["level"], strict=True)})


@st.cache_data(max_entries=16, show_spinner="Fitting the region effects ...")
def design_fit(
    path: str, token: tuple[int, ...], config_key: str, level: str, seed: int
) -> tuple[Any, list[str]]:
    """:func:`harp.design.fit_stored_design` of one config and level, and each region's main sources."""
    from harp.design import fit_stored_design, region_sources

    store = open_store(path)
    try:
        return fit_stored_design(store, level=level, config_key=config_key, seed=seed), region_sources(
            store, level
        )
    except StoreError as error:
        raise problem_from(error) from error


@st.cache_data(max_entries=16, show_spinner=False)
def saved_selections(path: str, token: tuple[int, ...]) -> list[dict[str, Any]]:
    store = open_store(path)
    try:
        return [dict(row) for row in store.list_selections()]
    except StoreError as error:
        raise problem_from(error) from error


@st.cache_data(max_entries=16, show_spinner=False)
def saved_selection(path: str, token: tuple[int, ...], name: str) -> dict[str, Any]:
    store = open_store(path)
    try:
        return dict(store.load_selection(name))
    except StoreError as error:
        raise problem_from(error) from error


def save_selection(
    path: str,
    name: str,
    *,
    envelope: str,
    weights: Sequence[float],
    budget: int | None,
    pinned: Sequence[int],
    excluded: Sequence[int],
    selection: Any,
    overwrite: bool = False,
    store_hash: str | None = None,
) -> int:
    """Save a named selection: the app's one write, through its own short read-write connection.

    ``store_hash`` is the content hash of the bundle the selection was computed from (``Store.save_selection``).
    """
    store = open_store(path, read_only=False)
    try:
        return int(
            store.save_selection(
                name,
                envelope=envelope,
                weights=[float(w) for w in weights],
                budget=None if budget is None else int(budget),
                pinned=[int(g) for g in pinned],
                excluded=[int(g) for g in excluded],
                selection=selection,
                overwrite=overwrite,
                store_hash=store_hash,
            )
        )
    except StoreError as error:
        raise problem_from(error) from error


def parse_id_list(value: Any) -> list[int]:
    """Leaf ids as saved in the store (JSON list, comma-separated text, or a list); [] for None or ''."""
    if value is None:
        return []
    if isinstance(value, list | tuple | np.ndarray):
        return [int(v) for v in value]
    textual = str(value).strip()
    if not textual:
        return []
    if textual.startswith("["):
        return [int(v) for v in json.loads(textual)]
    return [int(v) for v in textual.split(",") if v.strip()]


def stop_with(problem: StoreProblem) -> None:
    """Show a store problem in the page and stop the script (or fragment): never a traceback."""
    if problem.kind == "locked":
        st.warning(problem.message, icon=":material/lock:")
        if st.button("Retry", key="store_retry"):
            st.rerun()
    elif problem.kind == "empty":
        st.info(problem.message, icon=":material/info:")
    elif problem.kind == "unset" and os.environ.get(FOLDER_VAR, "").strip():
        st.info(problem.message, icon=":material/folder_open:")
        st.page_link("views/stores.py", label="Open a store", icon=":material/folder_open:")
    else:
        st.error(problem.message, icon=":material/error:")
    st.stop()
