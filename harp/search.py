"""Search a store's examples by their text: in the whole pool or in one leaf.

An analyst looking for why a region hurts a domain wants the examples that say something: every example whose
prompt (``points.text``) or response (``points.response``) matches a query, with its leaf, so that the leaf can be
opened. Three kinds of query, all case-insensitive:

- ``"words"`` (the default): every word of the query (split on whitespace) occurs somewhere in the prompt or the
  response, in any order, each as a plain substring (``"capital france"`` finds "France's capital is ...").
- ``"phrase"``: the query, spaces and all, occurs as one plain substring of the prompt or of the response.
- ``"pattern"``: a regular expression (RE2 syntax, DuckDB's ``regexp_matches``) that matches part of the prompt
  or of the response.

The store's text is untrusted and so is the query: the query only ever reaches DuckDB as a bound parameter
(``%``, ``_`` and ``\\`` in words and phrases are escaped for ``ILIKE``, so they match themselves), never as SQL
text. DuckDB's full-text extension (``fts``) would need a download and an index written into the store; a scan
with ``ILIKE`` needs neither and takes about a second over 3 million examples on a small machine.

Bad queries raise ``ValueError`` naming what is wrong: empty, longer than :data:`MAX_QUERY_CHARS`, more than
:data:`MAX_WORDS` words, an unknown mode, or a pattern that is not a valid regular expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import duckdb
import numpy as np

from harp._validation import check_integer
from harp.store import Store

SearchMode = Literal["words", "phrase", "pattern"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)

#: The longest query accepted, in characters.
MAX_QUERY_CHARS = 500
#: The most words a ``"words"`` query may hold (each is one more condition on every row).
MAX_WORDS = 16
#: How many hits :func:`search_examples` returns by default (``total`` still counts them all).
DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class SearchHits:
    """The examples that match a query, in leaf order and, within a leaf, most central first.

    Attributes
    ----------
    point_id, leaf_id, rank_in_leaf : ndarray of shape (n_hits,), int64
        Each hit's point, its leaf and its rank in the leaf (0 = most central).
    text, response, source : list of str or None, length n_hits
        The hit's prompt, response and source as the store holds them (untrusted: escape before showing).
    total : int
        How many examples match in all; more than ``n_hits`` when ``limit`` cut the list.
    """

    point_id: np.ndarray
    leaf_id: np.ndarray
    rank_in_leaf: np.ndarray
    text: list[str | None]
    response: list[str | None]
    source: list[str | None]
    total: int

    def __len__(self) -> int:
        return int(self.point_id.shape[0])


def _like_escape(word: str) -> str:
    """``word`` for ``ILIKE ... ESCAPE '\\'``: its wildcards match themselves."""
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_query(query: object, mode: str = "words") -> tuple[str, list[str]]:
    """Validate a query and turn it into the SQL condition and its parameters.

    Returns
    -------
    condition : str
        A condition on ``points`` built only from fixed SQL text and ``?`` placeholders.
    parameters : list of str
        The values for the placeholders, in order.

    Raises
    ------
    ValueError
        ``mode`` is not one of :data:`SEARCH_MODES`; the query is empty, longer than :data:`MAX_QUERY_CHARS`
        characters, holds more than :data:`MAX_WORDS` words, or (``"pattern"``) is not a valid regular expression.
    """
    if mode not in SEARCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    stripped = query.strip()
    if not stripped:
        raise ValueError("query is empty: type some words to find")
    if len(stripped) > MAX_QUERY_CHARS:
        raise ValueError(
            f"query is {len(stripped):,} characters long; at most {MAX_QUERY_CHARS:,} are searched"
        )
    if "\x00" in stripped:
        raise ValueError("query holds a NUL character")
    if mode == "pattern":
        try:
            duckdb.connect().execute("SELECT regexp_matches('', ?)", [stripped]).fetchone()
        except duckdb.Error as error:
            reason = str(error).split("Error: ", 1)[-1]
            raise ValueError(f"query is not a valid regular expression (RE2 syntax): {reason}") from None
        condition = "(regexp_matches(text, ?, 'i') OR regexp_matches(response, ?, 'i'))"
        return condition, [stripped, stripped]
    words = stripped.split() if mode == "words" else [stripped]
    if len(words) > MAX_WORDS:
        raise ValueError(f"query has {len(words)} words; at most {MAX_WORDS} are searched at once")
    one = "(text ILIKE ? ESCAPE '\\' OR response ILIKE ? ESCAPE '\\')"
    parameters: list[str] = []
    for word in words:
        like = f"%{_like_escape(word)}%"
        parameters += [like, like]
    return " AND ".join([one] * len(words)), parameters


def search_examples(
    store: Store,
    query: str,
    *,
    mode: SearchMode = "words",
    leaf: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> SearchHits:
    """The examples whose prompt or response matches ``query`` (see the module docstring for the modes).

    Parameters
    ----------
    store : Store
        The store to search (read through :meth:`Store.read`, so read-only stores work).
    query : str
        What to find; leading and trailing whitespace is ignored.
    mode : {"words", "phrase", "pattern"}, default "words"
    leaf : int, optional
        Search only this leaf's examples; by default the whole pool.
    limit : int, default 500
        Return at most this many hits (the first in leaf and rank order); ``total`` counts every match.

    Raises
    ------
    ValueError
        A bad query (see :func:`check_query`), a ``limit`` or ``leaf`` that is not an integer >= 0.
    StoreError
        The store cannot be read.
    """
    condition, parameters = check_query(query, mode)
    limit = check_integer(limit, "limit", minimum=0)
    values: list[Any] = list(parameters)
    if leaf is not None:
        condition += " AND leaf_id = ?"
        values.append(check_integer(leaf, "leaf", minimum=0))
    # One scan: the window counts every match before LIMIT keeps the first ones.
    sql = (
        "SELECT point_id, leaf_id, rank_in_leaf, text, response, source, count(*) OVER () AS total "
        f"FROM points WHERE {condition} ORDER BY leaf_id, rank_in_leaf LIMIT ?"
    )
    with store.read() as con:
        rows = con.execute(sql, [*values, limit]).fetchall()
        if rows or limit > 0:
            total = int(rows[0][6]) if rows else 0
        else:
            counted = con.execute(f"SELECT count(*) FROM points WHERE {condition}", values).fetchone()
            total = int(counted[0]) if counted else 0
    return SearchHits(
        point_id=np.asarray([r[0] for r in rows], dtype=np.int64),
        leaf_id=np.asarray([r[1] for r in rows], dtype=np.int64),
        rank_in_leaf=np.asarray([r[2] for r in rows], dtype=np.int64),
        text=[r[3] for r in rows],
        response=[r[4] for r in rows],
        source=[r[5] for r in rows],
        total=total,
    )
