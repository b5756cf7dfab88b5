"""The search of the examples in the link: a shared link reopens the same search (query and kind), and a bad
query in a link says what typing it says (AppTest)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import make_app, run, texts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.state import StoreShape, default_view, parse_query, to_query  # noqa: E402
from harp.search import MAX_QUERY_CHARS, search_examples  # noqa: E402
from harp.store import Store  # noqa: E402
from harp.synth import synth_store  # noqa: E402

PLANTED = {(5, 0): "Needle in ONE haystack", (9, 2): "the one needle", (11, 1): "one needle (loose)"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("app-search") / "search.duckdb"
    synth_store(path, leaves=120, domains=4, seed=3)
    with Store.open(path).write() as con:
        for (leaf, rank), prompt in PLANTED.items():
            con.execute(
                "UPDATE points SET text = ? WHERE leaf_id = ? AND rank_in_leaf = ?", [prompt, leaf, rank]
            )
    return path


def param(at: AppTest, key: str) -> str | None:
    value = at.query_params.get(key)
    return value[-1] if isinstance(value, list) else value


def hits_table(at: AppTest):
    tables = [d.value for d in at.dataframe if "rank in leaf" in d.value.columns]
    return tables[0] if tables else None


def test_a_typed_search_goes_into_the_link_and_stays_there_with_its_tab_closed(monkeypatch, store) -> None:
    at = run(make_app(monkeypatch, store))
    at.session_state["explore_tab"] = "Search examples"
    run(at)
    assert param(at, "search") is None and param(at, "search_kind") is None
    at.text_input(key="explore_pool_search").set_value("one needle")
    at.radio(key="explore_pool_search_mode").set_value("phrase")
    run(at)
    assert (param(at, "search"), param(at, "search_kind")) == ("one needle", "phrase")
    assert hits_table(at)["leaf"].tolist() == [9, 11]

    # The box is drawn only in its tab: another tab keeps the search in the view and the link.
    at.session_state["explore_tab"] = "Leaf panel"
    run(at)
    assert hits_table(at) is None
    assert (param(at, "search"), param(at, "search_kind")) == ("one needle", "phrase")
    at.session_state["explore_tab"] = "Search examples"
    run(at)
    assert at.text_input(key="explore_pool_search").value == "one needle"
    assert hits_table(at)["leaf"].tolist() == [9, 11]

    at.text_input(key="explore_pool_search").set_value("")
    run(at)
    assert param(at, "search") is None and param(at, "search_kind") is None


def test_a_link_reopens_the_same_search_on_its_hits(monkeypatch, store) -> None:
    at = run(make_app(monkeypatch, store, search="needle ONE", search_kind="words"))
    assert not at.warning
    assert at.text_input(key="explore_pool_search").value == "needle ONE"
    assert at.radio(key="explore_pool_search_mode").value == "words"
    want = search_examples(Store.open(store, read_only=True), "needle ONE", mode="words")
    table = hits_table(at)  # the link opened the Search examples tab
    assert table is not None and table["point id"].tolist() == want.point_id.tolist()
    assert table["leaf"].tolist() == [5, 9, 11]
    assert param(at, "search") == "needle ONE" and param(at, "search_kind") is None  # "words" is the default

    at = run(make_app(monkeypatch, store, search="needle \\(loose", search_kind="pattern"))
    assert hits_table(at)["leaf"].tolist() == [11]


def test_a_bad_query_in_a_link_says_what_typing_it_says(monkeypatch, store) -> None:
    typed = run(make_app(monkeypatch, store))
    typed.session_state["explore_tab"] = "Search examples"
    run(typed)
    typed.radio(key="explore_pool_search_mode").set_value("pattern")
    typed.text_input(key="explore_pool_search").set_value("needle (one")
    run(typed)
    message = texts(typed.error)
    assert "Query is not a valid regular expression" in message

    linked = run(make_app(monkeypatch, store, search="needle (one", search_kind="pattern"))
    assert texts(linked.error) == message
    assert hits_table(linked) is None

    linked = run(make_app(monkeypatch, store, search="needle", search_kind="<b>fuzzy</b>"))
    warning = texts(linked.warning)
    assert "search\\_kind" in warning and "is not one of words, phrase, pattern" in warning
    assert "<b>" not in warning  # escaped: the link's text is shown as characters
    assert hits_table(linked)["leaf"].tolist() == [5, 9, 11]  # the query kept, searched as words

    linked = run(make_app(monkeypatch, store, search="x" * (MAX_QUERY_CHARS + 1)))
    assert f"search\\: the query is {MAX_QUERY_CHARS + 1:,} characters long" in texts(linked.warning)
    assert at_search_value(linked) == ""


def at_search_value(at: AppTest) -> str:
    boxes = [t for t in at.text_input if t.key == "explore_pool_search"]
    return boxes[0].value if boxes else ""


def test_search_round_trips_through_the_query_string() -> None:
    shape = StoreShape(domain_names=("a", "b"), default_active=(True, False), n_leaves=10, total_points=50)
    view, warnings = parse_query({"search": "  two words ", "search_kind": "Phrase"}, shape)
    assert not warnings and (view.search, view.search_kind) == ("  two words ", "phrase")
    assert to_query(view, shape) == {"search": "  two words ", "search_kind": "phrase"}
    assert parse_query(to_query(view, shape), shape) == (view, [])
    assert to_query(default_view(shape), shape) == {}
    # A kind without a query is not worth a link.
    assert to_query(parse_query({"search_kind": "pattern"}, shape)[0], shape) == {}
