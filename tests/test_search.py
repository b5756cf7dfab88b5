"""harp.search: the examples a query finds, against hand-written texts and a plain-Python scan of the store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harp.search import MAX_QUERY_CHARS, MAX_WORDS, check_query, search_examples
from harp.store import Store

# (prompt, response) of the first points of leaf 0, leaf 1 and leaf 2; hostile on purpose.
PLANTED = {
    (0, 0): ("What is the Capital of FRANCE?", "Paris."),
    (0, 1): ("france, its capital", None),
    (1, 0): ("100% sure: 2 + 2 = 5", "<script>alert(1)</script>"),
    (1, 1): ("one hundred percent: 1005", "a_b and '); DROP TABLE points; --"),
    (2, 0): ("plain", "the capital of Spain is Madrid"),
}


@pytest.fixture
def store(tmp_store: Path) -> Store:
    s = Store.open(tmp_store)
    with s.write() as con:
        con.execute("UPDATE points SET text = 'filler', response = NULL")
        for (leaf, rank), (prompt, response) in PLANTED.items():
            con.execute(
                "UPDATE points SET text = ?, response = ? WHERE leaf_id = ? AND rank_in_leaf = ?",
                [prompt, response, leaf, rank],
            )
    return Store.open(tmp_store, read_only=True)


def found(hits) -> list[tuple[int, int]]:
    return list(zip(hits.leaf_id.tolist(), hits.rank_in_leaf.tolist(), strict=True))


@pytest.mark.parametrize(
    ("query", "mode", "want"),
    [
        pytest.param("capital france", "words", [(0, 0), (0, 1)], id="words-any-order-any-case"),
        pytest.param("  CAPITAL  ", "words", [(0, 0), (0, 1), (2, 0)], id="words-in-the-response-too"),
        pytest.param("capital of", "phrase", [(0, 0), (2, 0)], id="phrase-keeps-the-spaces"),
        pytest.param("100%", "words", [(1, 0)], id="percent-is-not-a-wildcard"),
        pytest.param("a_b", "words", [(1, 1)], id="underscore-is-not-a-wildcard"),
        pytest.param("'); drop table", "phrase", [(1, 1)], id="sql-is-text"),
        pytest.param("<script>", "words", [(1, 0)], id="markup-is-text"),
        pytest.param(r"\d+ \+ \d+", "pattern", [(1, 0)], id="pattern"),
        pytest.param(r"^paris\.$", "pattern", [(0, 0)], id="pattern-case-insensitive"),
        pytest.param("nowhere to be found", "words", [], id="nothing"),
    ],
)
def test_search_finds_exactly_the_planted_examples(store: Store, query: str, mode: str, want: list) -> None:
    hits = search_examples(store, query, mode=mode)  # type: ignore[arg-type]
    assert found(hits) == want
    assert hits.total == len(want)


def test_hits_carry_text_response_source_and_point(store: Store) -> None:
    hits = search_examples(store, "paris")
    assert len(hits) == 1
    with store.read() as con:
        point, source = con.execute(
            "SELECT point_id, source FROM points WHERE leaf_id = 0 AND rank_in_leaf = 0"
        ).fetchone()
    assert hits.point_id.tolist() == [point]
    assert hits.text == ["What is the Capital of FRANCE?"] and hits.response == ["Paris."]
    assert hits.source == [source]


def test_a_leaf_search_stays_in_its_leaf(store: Store) -> None:
    assert found(search_examples(store, "capital", leaf=2)) == [(2, 0)]
    assert found(search_examples(store, "capital", leaf=5)) == []


def test_limit_cuts_the_list_but_total_counts_every_match(store: Store) -> None:
    with store.read() as con:
        want = con.execute(
            "SELECT leaf_id, rank_in_leaf FROM points ORDER BY leaf_id, rank_in_leaf"
        ).fetchall()
    every = [(leaf, rank) for leaf, rank in want if (leaf, rank) not in PLANTED]  # 'filler' everywhere else
    hits = search_examples(store, "FILLER", limit=7)
    assert found(hits) == every[:7]
    assert hits.total == len(every)
    assert len(search_examples(store, "filler", limit=0)) == 0
    assert search_examples(store, "filler", limit=0).total == len(every)


def test_pattern_search_equals_a_python_scan(tmp_store: Path) -> None:
    store = Store.open(tmp_store, read_only=True)
    with store.read() as con:
        rows = con.execute(
            "SELECT leaf_id, rank_in_leaf, text, response FROM points ORDER BY 1, 2"
        ).fetchall()
    pattern = r"in (one|a) paragraph"
    compiled = re.compile(pattern, re.IGNORECASE)
    want = [(g, r) for g, r, t, s in rows if compiled.search(t or "") or compiled.search(s or "")]
    assert want, "the synthetic texts should hold the pattern"
    hits = search_examples(store, pattern, mode="pattern", limit=len(rows))
    assert found(hits) == want and hits.total == len(want)


@pytest.mark.parametrize(
    ("query", "mode", "message"),
    [
        pytest.param("", "words", "query is empty", id="empty"),
        pytest.param(" \t\n", "phrase", "query is empty", id="blank"),
        pytest.param("x" * (MAX_QUERY_CHARS + 1), "words", f"at most {MAX_QUERY_CHARS}", id="too-long"),
        pytest.param(" ".join(["w"] * (MAX_WORDS + 1)), "words", f"at most {MAX_WORDS}", id="too-many-words"),
        pytest.param("(unclosed", "pattern", "not a valid regular expression.*missing \\)", id="bad-pattern"),
        pytest.param("a\x00b", "words", "NUL", id="nul"),
        pytest.param("x", "fuzzy", "mode must be one of words, phrase, pattern, got 'fuzzy'", id="bad-mode"),
        pytest.param(3, "words", "query must be a string, got int", id="not-a-string"),
    ],
)
def test_bad_queries_raise_a_clear_value_error(store: Store, query: object, mode: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search_examples(store, query, mode=mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        check_query(query, mode)


def test_bad_limit_and_leaf_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit must be an integer >= 0, got -1"):
        search_examples(store, "x", limit=-1)
    with pytest.raises(ValueError, match="leaf must be an integer >= 0, got -2"):
        search_examples(store, "x", leaf=-2)


@pytest.mark.parametrize("limit", [2.7, "10", True, None])
def test_a_limit_that_is_not_an_integer_is_refused_not_truncated(store: Store, limit: object) -> None:
    # int(2.7) would silently search with limit 2, int("10") would accept text: the project's integer check.
    with pytest.raises(ValueError, match=f"limit must be an integer >= 0, got {limit!r}"):
        search_examples(store, "x", limit=limit)  # type: ignore[arg-type]
    if limit is not None:  # leaf=None searches the whole pool
        with pytest.raises(ValueError, match=f"leaf must be an integer >= 0, got {limit!r}"):
            search_examples(store, "x", leaf=limit)  # type: ignore[arg-type]


def test_the_query_reaches_sql_only_as_parameters() -> None:
    condition, parameters = check_query("it's 100% a_b \\ ?", "words")
    assert "'" not in condition.replace("ESCAPE '\\'", "") and "100" not in condition
    assert parameters == ["%it's%"] * 2 + ["%100\\%%"] * 2 + ["%a\\_b%"] * 2 + ["%\\\\%"] * 2 + ["%?%"] * 2
