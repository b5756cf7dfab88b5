"""The explorer's view state and its round trip through the URL's query parameters.

A view is everything that decides what the Explore page shows and selects: the envelope, the point budget, the
domain weights and active toggles, the domain that colors the map, the pinned and excluded leaves, and what the analyst is looking at: the leaves open in
the leaf panel, the map's labels, the chosen region (a large node or a parent) and the search of the examples (its
query and kind). It lives in
``st.session_state`` while the user works and in the query string so that a link reproduces it. The store path is
never part of it: the app reads the store named by ``HARP_STORE`` only.

Everything here is pure (no Streamlit), so the parsing and validation are unit-tested directly. Query values
arrive as untrusted strings; each one is checked, and a bad one yields a warning and its default, never an
exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from harp.objective import default_weights
from harp.search import MAX_QUERY_CHARS as MAX_SEARCH_CHARS
from harp.search import SEARCH_MODES

Envelope = Literal["C", "E", "both"]
ENVELOPES: tuple[Envelope, ...] = ("C", "E", "both")
ENVELOPE_LABELS: dict[str, str] = {"C": "HARP-C", "E": "HARP-E", "both": "both"}
# Color the map by the weighted objective rather than by one domain.
OBJECTIVE = "objective"
# The query parameter names, in the order they are written to the URL.
QUERY_KEYS = (
    "envelope",
    "budget",
    "weights",
    "active",
    "color",
    "pin",
    "exclude",
    "open",
    "labels",
    "region",
    "search",
    "search_kind",
)
# The map's label options: none, the large nodes' ids, or the parents' ids.
LABELS = ("none", "large", "parent")
# A region is a node of the tree above the leaves: a large node or a parent.
REGION_LEVELS = ("large", "parent")
# Longest query value accepted; a longer one is refused rather than parsed.
MAX_QUERY_CHARS = 200_000


@dataclass(frozen=True)
class StoreShape:
    """What a view must agree with: the store's domains, leaves and pool size."""

    domain_names: tuple[str, ...]
    default_active: tuple[bool, ...]
    n_leaves: int
    total_points: int
    # How many large nodes and parents the tree has (ids 0..n-1); None when unknown (any id >= 0 is accepted).
    n_large: int | None = None
    n_parents: int | None = None

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    def reset_active(self) -> tuple[bool, ...]:
        """The store's active domains, or every domain when the store marks none active (all weights zero would
        select nothing): the domains :func:`harp.objective.default_weights` gives weight."""
        weights = default_weights(np.asarray(self.default_active, dtype=bool).reshape(-1))
        return tuple(bool(w) for w in weights)


@dataclass(frozen=True)
class ViewState:
    """One view of the store. ``budget`` is in points; ``weights`` and ``active`` have one entry per domain."""

    envelope: Envelope
    budget: int
    weights: tuple[float, ...]
    active: tuple[bool, ...]
    color: str
    pinned: tuple[int, ...]
    excluded: tuple[int, ...]
    opened: tuple[int, ...] = ()
    labels: str = "none"
    region: str = ""  # "" or "large:3" / "parent:17" (see :func:`parse_region`)
    # The search of the examples as typed (checked when it runs, as a typed one) and its kind (SEARCH_MODES).
    search: str = ""
    search_kind: str = "words"

    def effective_weights(self) -> np.ndarray:
        """The weights handed to ``harp.select``: a domain that is not active weighs 0."""
        return np.asarray(self.weights, dtype=np.float64) * np.asarray(self.active, dtype=np.float64)

    def envelopes(self) -> tuple[Literal["C", "E"], ...]:
        """The envelopes this view computes a selection for."""
        return ("C", "E") if self.envelope == "both" else (self.envelope,)

    def with_pins(self, pinned: Sequence[int], excluded: Sequence[int]) -> ViewState:
        return replace(self, pinned=tuple(int(g) for g in pinned), excluded=tuple(int(g) for g in excluded))


def default_view(shape: StoreShape) -> ViewState:
    """HARP-C, no budget cap (the whole pool), weight 1 on the store's active domains, colored by the objective."""
    return ViewState(
        envelope="C",
        budget=shape.total_points,
        weights=(1.0,) * shape.n_domains,
        active=shape.reset_active(),
        color=OBJECTIVE,
        pinned=(),
        excluded=(),
    )


def normalise_envelope(value: str) -> Envelope | None:
    """``"C"``, ``"E"`` or ``"both"`` for any accepted spelling (``harp-c``, ``HARP-E``, ``Both`` ...), else None."""
    key = value.strip().lower().replace("_", "-")
    return {"c": "C", "harp-c": "C", "e": "E", "harp-e": "E", "both": "both", "c+e": "both"}.get(key)  # type: ignore[return-value]


def _last(value: str | Sequence[str]) -> str:
    """Query values may arrive as a list when a key repeats; the last one wins, as in ``st.query_params``."""
    if isinstance(value, str):
        return value
    return str(value[-1]) if len(value) else ""


def parse_leaf_ids(text: str, name: str, n_leaves: int) -> tuple[tuple[int, ...], str | None]:
    """Leaf ids separated by commas (or spaces) in [0, n_leaves); duplicates dropped, order kept.

    Returns the ids and None, or () and a message naming ``name`` and the offending part.
    """
    if not text.strip():
        return (), None
    ids: list[int] = []
    for part in text.replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or len(part) > 12:
            return (), f"{name}: {part[:20]!r} is not a leaf id"
        leaf = int(part)
        if leaf >= n_leaves:
            return (), f"{name}: leaf {leaf} does not exist (the store has leaves 0..{n_leaves - 1})"
        if leaf not in ids:
            ids.append(leaf)
    return tuple(ids), None


def parse_region(text: str, shape: StoreShape) -> tuple[str, str | None]:
    """A region as ``"large:ID"`` or ``"parent:ID"`` (also ``"large 3"``), normalised; ``""`` for none.

    Returns the region and None, or ``""`` and a message saying what is wrong.
    """
    text = text.strip().lower().replace(" ", ":")
    if not text:
        return "", None
    level, _, number = text.partition(":")
    if level not in REGION_LEVELS or not number.isdigit() or len(number) > 12:
        return "", f"region: {text[:30]!r} is not large:ID or parent:ID"
    count = shape.n_large if level == "large" else shape.n_parents
    if count is not None and int(number) >= count:
        return "", f"region: {level} {int(number)} does not exist (the store has {level} 0..{count - 1})"
    return f"{level}:{int(number)}", None


def split_region(region: str) -> tuple[str, int] | None:
    """``("parent", 17)`` for ``"parent:17"``; None for no region."""
    if not region:
        return None
    level, _, number = region.partition(":")
    return level, int(number)


def _parse_weights(text: str, n_domains: int) -> tuple[tuple[float, ...] | None, str | None]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != n_domains:
        return None, f"weights: {len(parts)} values given but the store has {n_domains} domains"
    weights = []
    for part in parts:
        try:
            w = float(part)
        except ValueError:
            return None, f"weights: {part[:20]!r} is not a number"
        if not math.isfinite(w) or w < 0:
            return None, f"weights: {part[:20]!r} must be a finite number >= 0"
        weights.append(w)
    return tuple(weights), None


def _parse_active(text: str, n_domains: int) -> tuple[tuple[bool, ...] | None, str | None]:
    text = text.strip()
    if len(text) != n_domains or set(text) - {"0", "1"}:
        return None, f"active: expected {n_domains} characters of 0 or 1, got {text[:20]!r}"
    return tuple(c == "1" for c in text), None


def parse_query(params: Mapping[str, str | Sequence[str]], shape: StoreShape) -> tuple[ViewState, list[str]]:
    """The view a URL asks for, and one warning per parameter that was refused (that one keeps its default).

    Unknown parameters are ignored (Streamlit adds its own, such as ``embed``).
    """
    view = default_view(shape)
    warnings: list[str] = []
    values: dict[str, str] = {}
    for key in QUERY_KEYS:
        if key in params:
            text = _last(params[key])
            if len(text) > MAX_QUERY_CHARS:
                warnings.append(f"{key}: value longer than {MAX_QUERY_CHARS} characters ignored")
                continue
            values[key] = text

    if "envelope" in values:
        envelope = normalise_envelope(values["envelope"])
        if envelope is None:
            warnings.append(f"envelope: {values['envelope'][:20]!r} is not one of C, E, both")
        else:
            view = replace(view, envelope=envelope)

    if "budget" in values:
        text = values["budget"].strip()
        if not text.isdigit() or len(text) > 15:
            warnings.append(f"budget: {text[:20]!r} is not a whole number of points >= 0")
        elif int(text) > shape.total_points:
            warnings.append(
                f"budget: {int(text)} is more than the pool's {shape.total_points} points; using all"
            )
            view = replace(view, budget=shape.total_points)
        else:
            view = replace(view, budget=int(text))

    if "weights" in values:
        weights, problem = _parse_weights(values["weights"], shape.n_domains)
        if problem:
            warnings.append(problem)
        else:
            assert weights is not None
            view = replace(view, weights=weights)

    if "active" in values:
        active, problem = _parse_active(values["active"], shape.n_domains)
        if problem:
            warnings.append(problem)
        else:
            assert active is not None
            view = replace(view, active=active)

    if "color" in values:
        color = values["color"]
        if color == OBJECTIVE or color in shape.domain_names:
            view = replace(view, color=color)
        else:
            warnings.append(f"color: {color[:40]!r} is not a domain of this store")

    pinned, problem = parse_leaf_ids(values.get("pin", ""), "pin", shape.n_leaves)
    if problem:
        warnings.append(problem)
    excluded, problem = parse_leaf_ids(values.get("exclude", ""), "exclude", shape.n_leaves)
    if problem:
        warnings.append(problem)
    both = sorted(set(pinned) & set(excluded))
    if both:
        warnings.append(f"pin and exclude both list leaf {both[0]}; it is neither pinned nor excluded")
        pinned = tuple(g for g in pinned if g not in both)
        excluded = tuple(g for g in excluded if g not in both)
    view = view.with_pins(pinned, excluded)

    opened, problem = parse_leaf_ids(values.get("open", ""), "open", shape.n_leaves)
    if problem:
        warnings.append(problem)
    view = replace(view, opened=opened)
    if "labels" in values:
        if values["labels"] in LABELS:
            view = replace(view, labels=values["labels"])
        else:
            warnings.append(f"labels: {values['labels'][:20]!r} is not one of {', '.join(LABELS)}")
    if "region" in values:
        region, problem = parse_region(values["region"], shape)
        if problem:
            warnings.append(problem)
        view = replace(view, region=region)

    if "search" in values:
        query = values["search"]
        if len(query) > MAX_SEARCH_CHARS:  # more than the search box holds
            warnings.append(
                f"search: the query is {len(query):,} characters long; at most {MAX_SEARCH_CHARS:,} are searched"
            )
        else:
            view = replace(view, search=query)
    if "search_kind" in values:
        kind = values["search_kind"].strip().lower()
        if kind in SEARCH_MODES:
            view = replace(view, search_kind=kind)
        else:
            warnings.append(
                f"search_kind: {values['search_kind'][:20]!r} is not one of {', '.join(SEARCH_MODES)}"
            )

    if not view.effective_weights().any():
        warnings.append("weights: every active domain has weight 0; using the default weights")
        default = default_view(shape)
        view = replace(view, weights=default.weights, active=default.active)
    return view, warnings


def _format_weight(w: float) -> str:
    # repr is the shortest text that reads back as the same float, so a link reproduces the weights exactly.
    text = repr(float(w))
    return text[:-2] if text.endswith(".0") else text


def to_query(view: ViewState, shape: StoreShape) -> dict[str, str]:
    """The query parameters that reproduce ``view``; a setting equal to its default is left out."""
    default = default_view(shape)
    query: dict[str, str] = {}
    if view.envelope != default.envelope:
        query["envelope"] = view.envelope
    if view.budget != default.budget:
        query["budget"] = str(int(view.budget))
    if view.weights != default.weights:
        query["weights"] = ",".join(_format_weight(w) for w in view.weights)
    if view.active != default.active:
        query["active"] = "".join("1" if a else "0" for a in view.active)
    if view.color != default.color:
        query["color"] = view.color
    if view.pinned:
        query["pin"] = ",".join(str(g) for g in view.pinned)
    if view.excluded:
        query["exclude"] = ",".join(str(g) for g in view.excluded)
    if view.opened:
        query["open"] = ",".join(str(g) for g in view.opened)
    if view.labels != default.labels:
        query["labels"] = view.labels
    if view.region:
        query["region"] = view.region
    if view.search.strip():
        query["search"] = view.search
        if view.search_kind != default.search_kind:
            query["search_kind"] = view.search_kind
    return query


def format_leaf_ids(leaves: Sequence[int]) -> str:
    """The text form :func:`parse_leaf_ids` reads back."""
    return ", ".join(str(int(g)) for g in leaves)
