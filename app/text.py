"""Make untrusted training text safe to show: in plotly hovers, in Markdown, and in CSV cells.

Training text comes from a crawl or a user's files. Shown raw, it could inject HTML into a plotly hover label
(plotly renders ``<a href>``, ``<span style>`` and friends), a link or a Streamlit directive into Markdown, or a
formula into a spreadsheet that opens an exported CSV. Every path from the store to the screen or to a file goes
through one of the functions below (and nested run records through :func:`json_cell`).
"""

from __future__ import annotations

import csv
import html
import io
import json
import numbers
import re
from collections.abc import Iterable, Sequence

_WHITESPACE = re.compile(r"\s+")
# A Markdown link or image, [text](target) or ![alt](target): the "](" is what makes it one.
_MARKDOWN_LINK = re.compile(r"\]\s*\(")
# Bare URLs and autolinks that Markdown renderers (and some hover renderers) turn into links.
_URL_SCHEME = re.compile(r"\b(https?|ftp|file|javascript|data|mailto):", re.IGNORECASE)
# CommonMark lets a backslash escape any ASCII punctuation; Streamlit adds :colour[...] and :material/icon:
# directives and $...$ LaTeX, all of which a backslash neutralises too.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&\"'^%@])")
# Spreadsheet programs evaluate a cell that starts with one of these (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def one_line(text: object, max_chars: int | None = None) -> str:
    """``text`` as a single line (runs of whitespace become one space), cut to ``max_chars`` with an ellipsis."""
    flat = _WHITESPACE.sub(" ", "" if text is None else str(text)).strip()
    if max_chars is not None and len(flat) > max_chars:
        flat = flat[: max(max_chars - 1, 0)].rstrip() + "\u2026"
    return flat


def neutralise_links(text: str) -> str:
    """Break Markdown link syntax and URL schemes so no renderer turns them into clickable links.

    ``[x](http://y)`` becomes ``[x] (http\u200b://y)`` (a zero-width space before the scheme's colon): readable,
    never a link.
    """
    text = _MARKDOWN_LINK.sub("] (", text)
    return _URL_SCHEME.sub(lambda m: m.group(1) + "\u200b:", text)


def hover_text(text: object, max_chars: int = 80) -> str:
    """Untrusted text for a plotly hover label: one line, short, links broken, HTML-escaped.

    Plotly splits a label on its own tags and then inserts the rest as text nodes, decoding entities; so after
    :func:`html.escape` a ``<script>`` shows as the characters ``<script>`` and never becomes an element. Quotes
    stay as they are: with ``<`` escaped no tag (and so no attribute) can form, and plotly does not decode
    ``&quot;``, so escaping them would show the entity itself (a real browser showed ``href=&quot;...``).
    """
    return html.escape(neutralise_links(one_line(text, max_chars)), quote=False)


def markdown_text(text: object, max_chars: int | None = None) -> str:
    """Untrusted text for ``st.markdown`` or a widget label: one line, links broken, every Markdown character
    backslash-escaped (Streamlit does not render raw HTML unless told to, so ``<`` is escaped for Markdown only)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", neutralise_links(one_line(text, max_chars)))


def code_span(text: object, max_chars: int | None = 200) -> str:
    """Untrusted text as a Markdown code span: shown verbatim (a URL stays a readable, copyable URL with no
    zero-width space in it) and never a link, emphasis, directive or HTML, since nothing inside a code span is
    parsed. The fence is one backtick longer than the longest run of backticks in the text."""
    flat = one_line(text, max_chars)
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


_ROLE_LINE = re.compile(r"^(system|user|assistant|tool|human|gpt)\s*:\s?(.*)$", re.IGNORECASE)


def chat_turns(text: object) -> list[tuple[str, str]]:
    """An example's text split into ``(role, content)`` turns where its lines start with ``user:``,
    ``assistant:``, ``system:`` ... (how ``harp.data`` renders a chat's prompt); one ``("", text)`` turn
    otherwise. Text before the first role line, and the last assistant response (which ``harp run`` appends after
    a newline, without a role), stay in the turn they follow. The pieces are untrusted text, not escaped here."""
    value = "" if text is None else str(text)
    turns: list[tuple[str, list[str]]] = []
    for line in value.split("\n"):
        match = _ROLE_LINE.match(line)
        if match:
            turns.append((match.group(1).lower(), [match.group(2)]))
        elif turns:
            turns[-1][1].append(line)
        else:
            turns.append(("", [line]))
    if len(turns) <= 1 and not (turns and turns[0][0]):
        return [("", value)]
    return [(role, "\n".join(lines)) for role, lines in turns]


def json_cell(value: object) -> object:
    """A table cell Arrow can serialise: a nested value (a run's config or timings) as one line of compact JSON.

    Run configs differ in shape from one kind of run to the next (a list of leaves in one, a number in another),
    which Arrow cannot put in one column; Streamlit then logs a traceback and shows Python reprs. ``st.dataframe``
    shows strings as plain text, so a user string inside a config stays text. Other values pass unchanged.
    """
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
    return value


def csv_cell(value: object) -> str:
    """A text cell that a spreadsheet will show, not evaluate: a leading ``=``, ``+``, ``-``, ``@``, tab or
    carriage return (ASCII or full-width) gets a ``'`` in front, as OWASP recommends."""
    text = "" if value is None else str(value)
    if text.lstrip(" ").startswith(_FORMULA_START):
        return "'" + text
    return text


def examples_csv(rows: Iterable[Sequence[object]], header: Sequence[str]) -> str:
    """CSV of example rows; text columns are passed through :func:`csv_cell`, numbers are written as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [v if isinstance(v, numbers.Number) and not isinstance(v, bool) else csv_cell(v) for v in row]
        )
    return out.getvalue()
