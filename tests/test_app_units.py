"""Unit tests of the app's presentation helpers: escaping, URL state, figures. No Streamlit runtime needed."""

from __future__ import annotations

import base64
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import figures, leaf_map, text  # noqa: E402
from app.state import (  # noqa: E402
    OBJECTIVE,
    StoreShape,
    ViewState,
    default_view,
    normalise_envelope,
    parse_query,
    to_query,
)

SHAPE = StoreShape(
    domain_names=("math", "law", "bio, chem", "a:b"),
    default_active=(True, True, False, True),
    n_leaves=50,
    total_points=3000,
)

# --------------------------------------------------------------------------------------------------------------
# text


@pytest.mark.parametrize(
    ("raw", "forbidden"),
    [
        ("<script>alert(1)</script>", "<script"),
        ("<img src=x onerror=alert(1)>", "<img"),
        ('<a href="http://evil">x</a>', "<a "),
        ("</br><b>bold</b>", "<b>"),
    ],
    ids=["script", "img-onerror", "anchor", "bold"],
)
def test_hover_text_escapes_html(raw: str, forbidden: str) -> None:
    out = text.hover_text(raw, max_chars=200)
    assert forbidden not in out
    assert "<" not in out and ">" not in out
    assert "&lt;" in out


def test_hover_text_leaves_quotes_alone() -> None:
    # plotly's hover shows "&quot;" literally; quotes cannot open an attribute once "<" is escaped.
    out = text.hover_text('<a href="x">it\'s</a>', max_chars=200)
    assert out == '&lt;a href="x"&gt;it\'s&lt;/a&gt;'


def test_hover_text_breaks_markdown_and_bare_links() -> None:
    out = text.hover_text("See [the guide](http://example.com) or javascript:alert(1)", max_chars=200)
    assert "](" not in out
    assert "http://" not in out
    assert "javascript:" not in out
    assert "the guide" in out


def test_hover_text_is_one_short_line() -> None:
    out = text.hover_text("line one\nline two\r\n\tthree " + "x" * 500, max_chars=40)
    assert "\n" not in out and "\t" not in out
    assert len(out) <= 40
    assert out.endswith("\u2026")


def test_markdown_text_escapes_directives_links_and_html() -> None:
    raw = "**bold** [x](http://y) :red[alarm] $x^2$ <b>hi</b> # head"
    out = text.markdown_text(raw)
    assert "**" not in out.replace("\\*", "")
    for token in ("[", "]", "(", ")", ":", "$", "<", ">", "#"):
        assert all(out[i - 1] == "\\" for i, c in enumerate(out) if c == token), token


@pytest.mark.parametrize(
    "raw",
    ['=HYPERLINK("http://x")', "+SUM(A1:A9)", "-2+3", "@cmd", "\t=1", " =1+1", "\uff1dcmd"],
    ids=["hyperlink", "plus", "minus", "at", "tab", "space-equals", "fullwidth-equals"],
)
def test_csv_cell_neutralises_formulas(raw: str) -> None:
    assert text.csv_cell(raw).startswith("'")


@pytest.mark.parametrize(
    "raw",
    ["plain text", "a = b", "3 + 4", "", None],
    ids=["plain", "mid-equals", "mid-plus", "empty", "none"],
)
def test_csv_cell_leaves_ordinary_text(raw: str | None) -> None:
    assert text.csv_cell(raw) == ("" if raw is None else raw)


def test_examples_csv_round_trips_and_is_safe() -> None:
    rows = [(0, 17, 3, "src", '=HYPERLINK("http://x")'), (1, 18, 3, "=evil", 'quote " and, comma\nnewline')]
    out = text.examples_csv(rows, ("rank", "point_id", "leaf_id", "source", "text"))
    parsed = list(csv.reader(io.StringIO(out)))
    assert parsed[0] == ["rank", "point_id", "leaf_id", "source", "text"]
    assert parsed[1] == ["0", "17", "3", "src", '\'=HYPERLINK("http://x")']
    assert parsed[2] == ["1", "18", "3", "'=evil", 'quote " and, comma\nnewline']


def test_json_cell_makes_nested_values_one_line_of_json_and_passes_the_rest() -> None:
    value = {"b": [1, {"x": None}], "a": "<b>\u00e9\n</b>"}
    cell = text.json_cell(value)
    assert cell == '{"a":"<b>\u00e9\\n</b>","b":[1,{"x":null}]}'
    assert json.loads(cell) == value
    assert text.json_cell([1, "x"]) == '[1,"x"]'
    for plain in ("text", 3, 1.5, None, True):
        assert text.json_cell(plain) is plain


# --------------------------------------------------------------------------------------------------------------
# state: query parameters


def test_default_view_uses_active_domains() -> None:
    view = default_view(SHAPE)
    assert view.envelope == "C"
    assert view.budget == SHAPE.total_points
    assert view.effective_weights().tolist() == [1.0, 1.0, 0.0, 1.0]
    assert to_query(view, SHAPE) == {}


def test_no_active_domain_means_all_active() -> None:
    shape = StoreShape(("a", "b"), (False, False), 5, 10)
    assert default_view(shape).active == (True, True)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("C", "C"),
        ("harp-e", "E"),
        ("HARP-C", "C"),
        ("Both", "both"),
        ("harp_e", "E"),
        ("x", None),
        ("", None),
    ],
)
def test_normalise_envelope(spelling: str, expected: str | None) -> None:
    assert normalise_envelope(spelling) == expected


def test_query_round_trip_example() -> None:
    view = ViewState(
        envelope="both",
        budget=1234,
        weights=(0.5, 2.0, 1.0, 0.1),
        active=(True, False, True, True),
        color="bio, chem",
        pinned=(3, 1),
        excluded=(7,),
    )
    query = to_query(view, SHAPE)
    assert query == {
        "envelope": "both",
        "budget": "1234",
        "weights": "0.5,2,1,0.1",
        "active": "1011",
        "color": "bio, chem",
        "pin": "3,1",
        "exclude": "7",
    }
    parsed, warnings = parse_query(query, SHAPE)
    assert warnings == []
    assert parsed == view


views = st.builds(
    ViewState,
    envelope=st.sampled_from(["C", "E", "both"]),
    budget=st.integers(0, SHAPE.total_points),
    weights=st.tuples(*[st.floats(0, 1e6, allow_nan=False, allow_infinity=False)] * 4),
    active=st.tuples(*[st.booleans()] * 4),
    color=st.sampled_from([OBJECTIVE, *SHAPE.domain_names]),
    pinned=st.lists(st.integers(0, 24), unique=True, max_size=6).map(tuple),
    excluded=st.lists(st.integers(25, 49), unique=True, max_size=6).map(tuple),
)


@given(views)
@example(default_view(SHAPE))
def test_query_round_trip(view: ViewState) -> None:
    parsed, warnings = parse_query(to_query(view, SHAPE), SHAPE)
    if view.effective_weights().any():
        assert warnings == []
        assert parsed == view
    else:
        # All-zero weights cannot select anything; a link with them falls back to the default weights.
        assert len(warnings) == 1 and "weight 0" in warnings[0]
        assert parsed.weights == default_view(SHAPE).weights


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"envelope": "Z"}, "envelope"),
        ({"budget": "-5"}, "budget"),
        ({"budget": "12.5"}, "budget"),
        ({"budget": "1e9"}, "budget"),
        ({"weights": "a,b,c,d"}, "weights"),
        ({"weights": "1,2"}, "weights"),
        ({"weights": "1,-1,1,1"}, "weights"),
        ({"weights": "1,nan,1,1"}, "weights"),
        ({"weights": "1,inf,1,1"}, "weights"),
        ({"active": "10"}, "active"),
        ({"active": "10x1"}, "active"),
        ({"color": "<script>"}, "color"),
        ({"pin": "1,99"}, "pin"),
        ({"pin": "-1"}, "pin"),
        ({"exclude": "abc"}, "exclude"),
        ({"pin": "1,2", "exclude": "2"}, "both"),
        ({"weights": "0,0,0,0"}, "weight 0"),
        ({"pin": "1" * 300_000}, "longer"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, str) else None,
)
def test_bad_query_params_warn_and_default(params: dict[str, str], fragment: str) -> None:
    view, warnings = parse_query(params, SHAPE)
    assert warnings, params
    assert any(fragment in w for w in warnings)
    assert isinstance(view, ViewState)
    assert view.effective_weights().any()


def test_budget_above_pool_is_clamped() -> None:
    view, warnings = parse_query({"budget": "999999"}, SHAPE)
    assert view.budget == SHAPE.total_points
    assert warnings and "more than" in warnings[0]


def test_query_lists_take_the_last_value_and_unknown_keys_are_ignored() -> None:
    view, warnings = parse_query({"envelope": ["C", "E"], "embed": "true", "store": "/etc/passwd"}, SHAPE)
    assert view.envelope == "E"
    assert warnings == []


def test_pin_and_exclude_in_both_is_neither() -> None:
    view, _ = parse_query({"pin": "1,2", "exclude": "2,3"}, SHAPE)
    assert view.pinned == (1,)
    assert view.excluded == (3,)


# --------------------------------------------------------------------------------------------------------------
# figures


def _map_data(n: int = 12) -> figures.LeafMapData:
    rng = np.random.default_rng(0)
    measured = np.zeros(n, dtype=bool)
    measured[::4] = True
    return figures.LeafMapData(
        x=rng.normal(size=n),
        y=rng.normal(size=n),
        parent=np.arange(n) // 4,
        large=np.arange(n) // 8,
        size=rng.integers(1, 100, n),
        measured=measured,
        examples=[text.hover_text(f"<b>example</b> {g}") for g in range(n)],
    )


def test_leaf_map_carries_leaf_ids_and_centres_the_scale() -> None:
    data = _map_data()
    effect = np.linspace(-0.02, 0.05, 12)
    fig = figures.leaf_map(
        data, effect, np.full(12, 0.01), color_label="phi[<i>x</i>]", selected={"C": [1, 5]}, opened=[2]
    )
    spec = json.loads(fig.to_json())
    traces = {t["name"]: t for t in spec["data"]}
    assert list(traces) == list(figures.MAP_TRACES)
    assert traces["selected (HARP-E)"]["visible"] is False  # no HARP-E selection given
    assert traces["open in leaf panel"]["visible"] is True
    ids = []
    for name in ("inferred leaf", "measured leaf"):
        custom = fig.data[[t.name for t in fig.data].index(name)].customdata
        ids += [int(row[0]) for row in custom]
    assert sorted(ids) == list(range(12))
    measured_ids = [int(r[0]) for r in fig.data[[t.name for t in fig.data].index("measured leaf")].customdata]
    assert measured_ids == [0, 4, 8]
    axis = spec["layout"]["coloraxis"]
    assert axis["cmid"] == 0.0 and axis["cmin"] == -axis["cmax"]
    assert "helps" in axis["colorbar"]["title"]["text"] and "hurts" in axis["colorbar"]["title"]["text"]
    assert "<i>" not in axis["colorbar"]["title"]["text"]  # the label is escaped
    selected = fig.data[[t.name for t in fig.data].index("selected (HARP-C)")]
    assert [int(r[0]) for r in selected.customdata] == [1, 5]
    for trace in fig.data[:2]:
        assert all("<b>" not in t for t in trace.text)


def test_mark_leaves_updates_a_cached_map_in_place() -> None:
    data = _map_data()
    fig = figures.leaf_map(data, np.zeros(12), np.zeros(12), color_label="x")
    big = fig.data[0]
    figures.mark_leaves(fig, data, selected={"C": np.array([3]), "E": np.array([3, 4])}, opened=[])
    assert fig.data[0] is big
    rings = {t.name: [int(r[0]) for r in t.customdata] for t in fig.data[2:4]}
    assert rings == {"selected (HARP-C)": [3], "selected (HARP-E)": [3, 4]}
    assert fig.data[2].visible and fig.data[3].visible and not fig.data[4].visible


@pytest.mark.parametrize(
    ("selected", "opened"),
    [({}, []), ({"C": np.array([3])}, [5]), ({"C": np.array([3]), "E": np.array([3, 4, 11])}, [0, 7])],
    ids=["nothing", "C-and-open", "both"],
)
def test_mark_traces_equal_the_marks_of_the_marked_figure(selected, opened) -> None:
    """The marks the map component gets on a rerun are what mark_leaves sets on a graph-object figure."""
    import plotly.io

    data = _map_data()
    effect = np.linspace(-0.02, 0.05, 12)
    base = figures.leaf_map(data, effect, np.full(12, 0.01), color_label="x").to_dict()
    before = plotly.io.to_json(base, validate=False)
    marked = figures.mark_leaves(
        figures.leaf_map(data, effect, np.full(12, 0.01), color_label="x"),
        data,
        selected=selected,
        opened=opened,
    )
    marks = json.loads(json.dumps(figures.mark_traces(data, selected=selected, opened=opened)))
    want = [t for t in json.loads(marked.to_json())["data"] if t["name"] in figures.MARK_TRACES]
    assert [t["name"] for t in marks] == [t["name"] for t in want] == list(figures.MARK_TRACES)
    for mine, theirs in zip(marks, want, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            if key in ("x", "y", "customdata", "marker"):
                np.testing.assert_allclose(
                    np.asarray(_sizes_or(_decoded(mine[key])), dtype=float),
                    np.asarray(_sizes_or(_decoded(theirs[key])), dtype=float),
                    rtol=1e-6,
                )
            else:
                assert mine[key] == theirs[key], key
        assert {k: v for k, v in mine["marker"].items() if k != "size"} == {
            k: v for k, v in theirs["marker"].items() if k != "size"
        }
    assert plotly.io.to_json(base, validate=False) == before  # the shared base is never mutated


def _decoded(value):
    """A typed-array spec as a list; a marker dict with its size decoded; anything else as it is."""
    if isinstance(value, dict) and "bdata" in value:
        return _decode(value)
    if isinstance(value, dict) and isinstance(value.get("size"), dict):
        return {**value, "size": _decode(value["size"])}
    return value


def _typed(value):
    """The JSON the map component receives, with its typed arrays decoded to lists."""
    if isinstance(value, dict) and "bdata" in value:
        return _decode(value)
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def test_base_and_colors_make_the_figure() -> None:
    """The two files the map component fetches (base per store and labels, colors per colored quantity),
    put together as leaf_map.js does (assemble_map), are the figure leaf_map draws without its marks."""
    data = _map_data()
    effect, spread = np.linspace(-1, 1, 12), np.full(12, 0.25)
    base = figures.map_base(data, labels="parent")
    colors = figures.map_colors(effect, spread, data.measured, color_label="phi[<b>x</b>]")
    base_json, colors_json = figures.to_json(base), figures.to_json(colors)
    sent_base, sent_colors = json.loads(base_json), json.loads(colors_json)
    assert sent_base["leaves"]["x"].keys() == {"dtype", "bdata"}  # typed arrays, not lists of numbers
    assert sent_colors["effect"].keys() == {"dtype", "bdata"}
    assert "effect" not in base_json.decode() and "example" not in colors_json.decode()
    assert len(colors_json) < len(base_json)
    whole = json.loads(
        figures.leaf_map(data, effect, spread, color_label="phi[<b>x</b>]", labels="parent").to_json()
    )
    assembled = json.loads(figures.to_json(figures.assemble_map(base, colors)))
    want = [t for t in whole["data"] if t["name"] not in figures.MARK_TRACES]
    assert [t["name"] for t in assembled["data"]] == ["inferred leaf", "measured leaf", "parents"]
    for mine, theirs in zip(assembled["data"], want, strict=True):
        mine, theirs = _typed(mine), _typed(theirs)
        assert mine.keys() - {"type"} == theirs.keys() - {"type"}
        for key in mine.keys() - {"type"}:
            if key in ("x", "y", "customdata"):
                np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-6)
            elif key == "marker":
                for part in mine[key]:
                    if part in ("color", "size"):
                        np.testing.assert_allclose(mine[key][part], theirs[key][part], rtol=1e-6)
                    else:
                        assert mine[key][part] == theirs[key][part]
            else:
                assert mine[key] == theirs[key], key
    assert "&lt;b&gt;x" in json.dumps(sent_colors["hovertemplate"]) and "<b>x" not in colors_json.decode()
    assert _typed(assembled["layout"]) == _typed(
        {k: v for k, v in whole["layout"].items() if k != "template"}
    )
    name = leaf_map.base_file(base_json)
    assert name.startswith("base-") and name == leaf_map.base_file(bytes(base_json))
    assert leaf_map.base_file(colors_json, "colors").startswith("colors-")
    assert leaf_map.base_file(base_json) != leaf_map.base_file(base_json + b" ")


def test_publish_serves_the_frontend_and_keeps_recent_bases(monkeypatch) -> None:
    folder = leaf_map.serving_dir()
    assert {"index.html", "leaf_map.js", "plotly.min.js"} <= {p.name for p in folder.iterdir()}
    assert 'script.src = "plotly.min.js"' in (folder / "leaf_map.js").read_text()  # served from here, no CDN
    monkeypatch.setattr(leaf_map, "KEEP_BASES", 2)
    names = []
    for k in range(4):
        payload = f'{{"data": [], "layout": {{"k": {k}}}}}'.encode()
        names.append(leaf_map.base_file(payload))
        leaf_map.publish(names[-1], payload)
    kept = {p.name for p in folder.glob("base-*.json")}
    assert names[-1] in kept and names[0] not in kept and len(kept) <= 2
    leaf_map.publish(names[0], b'{"again": true}')  # a pruned base is written again when used
    assert (folder / names[0]).read_bytes() == b'{"again": true}'


def _decode(spec: dict) -> list:
    import base64

    array = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]).newbyteorder("<"))
    if "shape" in spec:
        array = array.reshape([int(n) for n in spec["shape"].split(",")])
    return array.tolist()


def _sizes_or(value):
    return value.get("size", []) if isinstance(value, dict) else value


def test_thin_indices_keeps_ends_and_cut() -> None:
    shown = figures.thin_indices(10_001, keep=(1234,), max_points=100)
    assert shown[0] == 0 and shown[-1] == 10_000 and 1234 in shown
    assert len(shown) <= 102 and np.all(np.diff(shown) > 0)
    assert figures.thin_indices(5).tolist() == [0, 1, 2, 3, 4]


def test_leaf_map_labels_large_nodes() -> None:
    fig = figures.leaf_map(_map_data(), np.zeros(12), np.zeros(12), color_label="x", labels="large")
    labels = [t for t in fig.data if t.name == "large nodes"][0]
    assert list(labels.text) == ["L0", "L1"]


def test_leaf_ids_from_the_map_value() -> None:
    value = {"leaves": [9, 4.0, 4, -1, "x", None, float("nan"), 7], "at": 1700000000000}
    assert leaf_map.leaf_ids_from_value(value) == [4, 7, 9]
    assert leaf_map.leaf_ids_from_value(None) == []
    assert leaf_map.leaf_ids_from_value({"leaves": []}) == []
    assert leaf_map.leaf_ids_from_value([1, 2]) == []


def test_objective_effect_is_the_weighted_mean() -> None:
    phi = np.array([[0.1, -0.2], [0.0, 0.4]])
    sd = np.array([[0.3, 0.4], [0.0, 0.0]])
    mean, spread = figures.objective_effect(phi, sd, np.array([1.0, 3.0]))
    np.testing.assert_allclose(mean, [(0.1 - 0.6) / 4, 1.2 / 4])
    np.testing.assert_allclose(spread, [np.sqrt(0.09 + 9 * 0.16) / 4, 0.0])


def test_gain_curve_marks_cut_and_budget() -> None:
    gains = np.array([0.05, 0.02, -0.01, -0.03])
    fig = figures.gain_curve({"C": (np.array([10, 30, 35, 60]), gains, 2)}, budget=20, total_points=60)
    cut = [t for t in fig.data if "cut" in t.name][0]
    assert list(cut.x) == [30] and cut.y[0] == pytest.approx(0.07)
    assert fig.layout.xaxis.type == "log"
    budget = [t for t in fig.data if t.name == "budget 20"][0]
    assert list(budget.x) == [20, 20]


def test_predicted_scores_and_leaf_effects_build() -> None:
    names = ["<b>a</b>", "b"]
    fig = figures.predicted_scores(
        names, np.array([0.5, 0.6]), {"C": np.array([0.55, 0.6])}, np.array([1.0, 0.0])
    )
    assert "&lt;b&gt;a&lt;/b&gt;" in fig.layout.yaxis.ticktext[0]
    assert "(weight 0)" in fig.layout.yaxis.ticktext[1]
    fig = figures.leaf_effects(
        names, [3], np.array([[0.1, -0.1]]), np.array([[0.01, 0.02]]), np.array([[True, False]])
    )
    assert list(fig.data[0].marker.symbol) == ["diamond", "circle-open"]


def test_weights_frame_round_trip() -> None:
    from app.controls import view_weights_from_frame

    frame = pd.DataFrame({"active": [True, False, None], "weight": [2.0, None, -1.0]})
    weights, active = view_weights_from_frame(frame)
    assert weights == (2.0, 0.0, 0.0)
    assert active == (True, False, False)


# --------------------------------------------------------------------------------------------------------------
# state: open leaves, labels and the region in the URL; the budget box; the weights editor's pending edits

REGION_SHAPE = StoreShape(
    domain_names=("math", "law"),
    default_active=(True, True),
    n_leaves=50,
    total_points=3000,
    n_large=4,
    n_parents=12,
)


@given(
    opened=st.lists(st.integers(0, 49), unique=True, max_size=8).map(tuple),
    labels=st.sampled_from(["none", "large", "parent"]),
    region=st.one_of(
        st.just(""),
        st.integers(0, 3).map(lambda g: f"large:{g}"),
        st.integers(0, 11).map(lambda g: f"parent:{g}"),
    ),
)
@example(opened=(), labels="none", region="")
def test_open_leaves_labels_and_region_round_trip(opened, labels, region) -> None:
    view = ViewState(
        envelope="C",
        budget=3000,
        weights=(1.0, 1.0),
        active=(True, True),
        color=OBJECTIVE,
        pinned=(),
        excluded=(),
        opened=opened,
        labels=labels,
        region=region,
    )
    query = to_query(view, REGION_SHAPE)
    assert ("open" in query) == bool(opened) and ("region" in query) == bool(region)
    assert ("labels" in query) == (labels != "none")
    parsed, warnings = parse_query(query, REGION_SHAPE)
    assert warnings == [] and parsed == view


@pytest.mark.parametrize(
    ("raw", "region", "problem"),
    [
        ("parent:3", "parent:3", None),
        ("Large 2", "large:2", None),
        ("", "", None),
        ("parent:12", "", "parent 12 does not exist"),
        ("leaf:1", "", "not large:ID or parent:ID"),
        ("parent:-1", "", "not large:ID or parent:ID"),
    ],
    ids=["parent", "spaced-upper", "none", "too-big", "wrong-level", "negative"],
)
def test_parse_region(raw: str, region: str, problem: str | None) -> None:
    from app.state import parse_region, split_region

    got, message = parse_region(raw, REGION_SHAPE)
    assert got == region
    assert (message is None) if problem is None else (problem in str(message))
    if region:
        level, number = split_region(region)  # type: ignore[misc]
        assert f"{level}:{number}" == region


@pytest.mark.parametrize(
    ("typed", "budget", "says"),
    [
        (100, 100, None),
        (0, 0, None),
        (3000, 3000, None),
        (3001, 3000, "more than"),
        (-1, 0, "below 0"),
        (None, None, "empty"),
    ],
    ids=["inside", "zero", "whole-pool", "above-pool", "negative", "emptied"],
)
def test_budget_problem(typed, budget, says) -> None:
    from app.controls import budget_problem

    got, message = budget_problem(typed, 3000)
    assert got == budget
    assert (message is None) if says is None else (says in str(message) and "3,000" in str(message))


def test_apply_editor_edits_gives_the_weights_before_the_editor_is_drawn() -> None:
    from app.controls import apply_editor_edits, view_weights_from_frame

    frame = pd.DataFrame(
        {"domain": ["a", "b", "c"], "active": [True, True, False], "weight": [1.0, 1.0, 1.0]}
    )
    state = {"edited_rows": {1: {"weight": 0.0}, "2": {"active": True, "weight": 2.5}}, "added_rows": []}
    weights, active = view_weights_from_frame(apply_editor_edits(frame, state))
    assert weights == (1.0, 0.0, 2.5) and active == (True, True, True)
    assert frame["weight"].tolist() == [1.0, 1.0, 1.0]  # the base frame is not touched
    assert view_weights_from_frame(apply_editor_edits(frame, None)) == ((1.0, 1.0, 1.0), (True, True, False))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/a_b", "`https://example.com/a_b`"),
        ("a `tick` b", "``a `tick` b``"),
        ("`edge", "`` `edge ``"),
        ("[x](javascript:alert(1)) **b** :red[c]", "`[x](javascript:alert(1)) **b** :red[c]`"),
    ],
    ids=["url", "inner-backticks", "edge-backtick", "markdown"],
)
def test_code_span_shows_text_verbatim(raw: str, expected: str) -> None:
    out = text.code_span(raw)
    assert out == expected and "\u200b" not in out


@pytest.mark.parametrize(
    ("raw", "turns"),
    [
        (
            "user: hi\nassistant: yo\nuser: 2+2?\n4",
            [("user", "hi"), ("assistant", "yo"), ("user", "2+2?\n4")],
        ),
        ("Calculate 5.\n3", [("", "Calculate 5.\n3")]),
        ("preamble\nSystem: be brief\nuser:x", [("", "preamble"), ("system", "be brief"), ("user", "x")]),
        (None, [("", "")]),
        ("a user: is not a turn", [("", "a user: is not a turn")]),
    ],
    ids=["chat", "prompt-response", "preamble-and-case", "none", "mid-line"],
)
def test_chat_turns(raw, turns) -> None:
    assert text.chat_turns(raw) == turns


def test_map_styles_keep_inferred_leaves_visible_and_envelopes_apart() -> None:
    n = 6
    data = figures.LeafMapData(
        x=np.arange(n, dtype=float),
        y=np.zeros(n),
        parent=np.zeros(n, dtype=int),
        large=np.zeros(n, dtype=int),
        size=np.full(n, 10),
        measured=np.array([True, False] * 3),
        examples=[""] * n,
    )
    fig = figures.leaf_map(data, np.zeros(n), np.zeros(n), color_label="phi")
    traces = {t.name: t for t in fig.data}
    assert traces["inferred leaf"].marker.line.width > 0  # a near-0 effect is near-white: outline it
    assert traces["measured leaf"].marker.opacity < 1  # diamonds do not hide the circles under them
    marks = figures.mark_traces(data, selected={"C": np.array([0]), "E": np.array([1])}, opened=[2])
    dashes = {m["name"]: (m.get("meta") or {}).get("dash") for m in marks}
    assert dashes["selected (HARP-C)"] == [] and dashes["selected (HARP-E)"]


# --------------------------------------------------------------------------------------------------------------
# export: the manifest and the save name what the selection was computed from


def test_download_manifest_and_save_name_the_snapshot_the_selection_came_from(tmp_store: Path) -> None:
    from app import data, panels
    from harp.store import Store

    path = str(tmp_store)
    bundle = data._load_bundle(path, data.file_token(path))
    store = Store.open(tmp_store)
    computed_from = store.content_hash()
    assert bundle.content_hash == computed_from
    view = default_view(bundle.shape())
    [selection] = panels.compute_selections(bundle, view, ["C"]).values()
    # A `harp infer` lands after the selection is shown and before its buttons are pressed.
    store.write_effects(bundle.phi + 0.01, bundle.sd, bundle.measured)
    now = store.content_hash()
    assert now != computed_from

    manifest = json.loads(panels.manifest_json(bundle, view, "C", selection))
    assert manifest["store_hash"] == computed_from
    assert manifest["counts"]["points"] == selection.points.size
    data.save_selection(path, "kept", envelope="C", weights=view.effective_weights().tolist(), budget=None,
                        pinned=(), excluded=(), selection=selection, store_hash=bundle.content_hash)  # fmt: skip
    [saved] = store.list_selections()
    assert saved["store_hash"] == computed_from  # so the Selections page says it was made on other contents


def test_a_budget_change_reruns_no_greedy_and_a_weight_change_keeps_the_sort(tmp_store, monkeypatch) -> None:
    # DESIGN.md "Performance": a budget change reruns nothing; HARP-C's sort, which no weight changes, is kept.
    from app import data

    calls = {"select": 0, "sort_effects": 0}

    def counted(name):
        original = getattr(data, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(data, "select", counted("select"))
    monkeypatch.setattr(data, "sort_effects", counted("sort_effects"))
    for cached in (data._ranking, data._sorted_effects, data.run_selection):
        cached.clear()
    path = str(tmp_store)
    token = data.file_token(path)
    weights = (1.0,) * 5
    ten = data.run_selection(path, token, "C", weights, 10, (), ())
    three, uncapped = (data.run_selection(path, token, "C", weights, budget, (), ()) for budget in (3, None))
    assert calls == {"select": 1, "sort_effects": 1}
    np.testing.assert_array_equal(ten.points, uncapped.points[:10])
    np.testing.assert_array_equal(three.points, uncapped.points[:3])
    data.run_selection(path, token, "C", (2.0, 1.0, 1.0, 1.0, 0.5), 10, (), ())
    assert calls == {"select": 2, "sort_effects": 1}


def test_map_view_fits_the_bulk_and_keeps_the_leaves_beyond_it() -> None:
    """A few far-off leaves do not stretch the default view; they travel in the layout's meta, which the map
    component draws as arrowheads at the edge."""
    rng = np.random.default_rng(3)
    n = 1000
    x, y = rng.normal(size=n), rng.normal(size=n)
    x[:3] = [40.0, -55.0, 60.0]  # planted outliers
    y[3] = 80.0
    data = figures.LeafMapData(
        x=x,
        y=y,
        parent=np.arange(n) // 4,
        large=np.arange(n) // 32,
        size=np.full(n, 50),
        measured=np.zeros(n, dtype=bool),
        examples=[""] * n,
    )
    spec = figures.leaf_map(data, np.zeros(n), np.zeros(n), color_label="x").to_dict()
    x0, x1 = spec["layout"]["xaxis"]["range"]
    y0, y1 = spec["layout"]["yaxis"]["range"]
    bulk_x, bulk_y = x[4:], np.delete(y, 3)
    assert x0 <= np.quantile(bulk_x, 0.01) and x1 >= np.quantile(bulk_x, 0.99)  # the bulk is in view
    assert y0 <= np.quantile(bulk_y, 0.01) and y1 >= np.quantile(bulk_y, 0.99)
    assert x1 - x0 < 12 and y1 - y0 < 12  # and the outliers (spanning 115 and 80) are not
    outside = spec["layout"]["meta"]["outside"]
    leaves = np.frombuffer(base64.b64decode(outside["leaves"]["bdata"]), dtype="<i4")
    assert {0, 1, 2, 3} <= set(leaves.tolist())
    beyond = (x < x0) | (x > x1) | (y < y0) | (y > y1)
    assert sorted(leaves.tolist()) == np.flatnonzero(beyond).tolist()
    assert beyond.sum() <= 0.03 * n  # the tails only


def test_map_view_keeps_an_island_of_the_layout() -> None:
    """An island holding more than 1% of the leaves is part of the bulk (the demo's far islands hold 7% each)."""
    x = np.concatenate([np.zeros(90), np.full(10, 20.0)]) + np.linspace(0, 1, 100)
    low, high = figures.view_range(x)
    assert low < 0 and high > 21
    assert figures.view_range(np.full(5, 2.0)) == (1.5, 2.5)  # one position: a unit-wide view around it


def test_marker_sizes_shrink_with_the_number_of_leaves() -> None:
    rng = np.random.default_rng(0)
    few = figures.marker_sizes(rng.integers(10, 300, 100))
    many = figures.marker_sizes(rng.integers(10, 300, 100_000))
    assert few.min() == pytest.approx(4.0) and few.max() == pytest.approx(14.0)
    assert many.max() <= 5.0 and many.min() >= 2.0  # 100,000 leaves stay apart
    assert many.max() > many.min()  # and still by leaf size
    mid = figures.marker_sizes(rng.integers(10, 300, 10_000))
    assert many.max() < mid.max() < few.max()


def test_both_envelopes_run_side_by_side_and_match_one_at_a_time(tmp_store: Path) -> None:
    from app import data

    """``run_selections`` runs HARP-C and HARP-E in worker threads: each result equals ``harp.select``'s own on
    the store, a bad budget still raises the ``ValueError`` the page turns into a message, and the greedies
    are compiled to release the GIL (without it the threads would take turns and win nothing)."""

    from harp.select import select
    from harp.select.harp_c import greedy_c
    from harp.select.harp_e import greedy_e

    for cached in (data._ranking, data._sorted_effects, data.run_selection):
        cached.clear()
    path = str(tmp_store)
    token = data.file_token(path)
    weights = (1.0, 0.5, 1.0, 2.0, 1.0)
    both = data.run_selections(path, token, ["C", "E"], weights, 25, (1,), (2,))
    assert set(both) == {"C", "E"}
    bundle, problem = data.load_bundle(path)
    assert problem is None
    for envelope, got in both.items():
        want = select(
            bundle.phi,
            bundle.base,
            envelope=envelope,
            weights=np.asarray(weights),
            members=bundle.members,
            budget=25,
            pinned=[1],
            excluded=[2],
        )
        np.testing.assert_array_equal(got.points, want.points)
        np.testing.assert_array_equal(got.leaves, want.leaves)
    with pytest.raises(ValueError, match="budget"):
        data.run_selections(path, token, ["C", "E"], weights, -3, (), ())
    for greedy in (greedy_c, greedy_e):
        assert greedy.targetoptions.get("nogil") is True


def test_hover_snippets_show_prompt_and_response_escaped(tmp_path: Path) -> None:
    """The map's hover shows each preview example's prompt and its response, both escaped (hostile texts)."""
    from app import data
    from harp.store import Store, points_from_members

    store = Store.create(tmp_path / "s.duckdb")
    points = points_from_members(
        [np.arange(2), np.arange(2, 3)],
        text=["What is 2+2?", "<script>alert(1)</script>", "no answer here"],
        response=["4", "<b>bold</b>", None],
    )
    store.write_tree(points, [0, 0], [0], 1)
    snippets = data._hover_snippets(store, 2)
    assert snippets[0].startswith("\u201cWhat is 2+2?\u201d \u2192 \u201c4\u201d<br>")
    assert "<script>" not in snippets[0] and "<b>" not in snippets[0] and "&lt;b&gt;" in snippets[0]
    assert snippets[1] == "\u201cno answer here\u201d"  # no response: the prompt alone


def test_the_budget_slider_ends_at_the_larger_cut_and_ranks_both_envelopes_at_once(monkeypatch) -> None:
    """The slider's end is the most points a shown envelope's cut holds. With both envelopes shown it asks for
    both rankings in one data.run_selections call, which runs the two greedies side by side (a weight edit's
    first need of them), never one envelope after the other."""
    from types import SimpleNamespace

    from app import controls, data

    bundle = SimpleNamespace(
        path="s.duckdb", token=(1,), total_points=100, leaf_size=np.array([10, 20, 30, 40])
    )
    rankings = {
        "C": SimpleNamespace(order=np.array([3, 0, 1]), cut=1),  # 40 points
        "E": SimpleNamespace(order=np.array([1, 2, 0]), cut=2),  # 50 points
    }
    calls = []

    def run_selections(path, token, envelopes, weights, budget, pinned, excluded):
        calls.append((tuple(envelopes), budget))
        return {e: rankings[e] for e in envelopes}

    def one_at_a_time(*args):
        raise AssertionError("slider_end ranked one envelope at a time")

    monkeypatch.setattr(data, "run_selections", run_selections)
    monkeypatch.setattr(data, "run_selection", one_at_a_time)
    assert controls.slider_end(bundle, ("C", "E"), np.array([1.0, 0.0]), (), ()) == 50
    assert controls.slider_end(bundle, ("C",), np.array([1.0, 0.0]), (), ()) == 40
    assert calls == [(("C", "E"), None), (("C",), None)]
    assert controls.slider_end(bundle, ("C", "E"), np.zeros(2), (), ()) == 100  # nothing weighs: no cap
