"""In a real headless Chromium: open a leaf, show its examples on the map, and hover one whose text is hostile.

The store is a small synthetic one with the map positions of every point (from random features); the most
isolated leaf's most central example carries HTML that would run if it were ever inserted as markup.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from browser import CHROMIUM, app_server, chromium, data_to_page, map_frame, wait_idle  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing; `make test` installs Debian's chromium (apt-get install chromium)",
    ),
]

HOSTILE = "<img src=x onerror=window.__pwned=1> look"


def _store(folder: Path) -> tuple[Path, int, int, tuple[float, float]]:
    """The store, its loneliest leaf, that leaf's size and the map position of its most central example."""
    import duckdb

    from harp.layout import point_positions
    from harp.store import Store
    from harp.synth import synth_store

    path = folder / "examples.duckdb"
    synth_store(path, leaves=120, domains=3, seed=11)
    store = Store.open(path)
    x, y = store.layout()  # type: ignore[misc]
    gaps = np.linalg.norm(np.column_stack([x, y])[:, None, :] - np.column_stack([x, y])[None, :, :], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    lonely = int(np.argmax(gaps.min(axis=1)))
    points = store.read_table("points")
    ids, leaves = points["point_id"].to_numpy(), points["leaf_id"].to_numpy()
    X = np.random.default_rng(1).standard_normal((int(ids.max()) + 1, 8))
    store.write_layout(x, y, "browser", point_positions=(ids, *point_positions(X, ids, leaves, x, y)))
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE points SET text = ? WHERE leaf_id = ? AND rank_in_leaf = 0", [HOSTILE, lonely])
    first = store.point_positions([lonely], with_texts=True)
    row = first["rank_in_leaf"].to_pylist().index(0)
    return path, lonely, first.num_rows, (first["x"][row].as_py(), first["y"][row].as_py())


def test_open_a_leaf_and_hover_one_of_its_examples(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    store, lonely, size, (ex, ey) = _store(tmp_path)
    with (
        app_server(store) as url,
        playwright_api.sync_playwright() as playwright,
        chromium(playwright) as context,
    ):
        page = context.new_page()
        page.goto(f"{url}/?open={lonely}")
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=120_000)
        wait_idle(page, 120_000)
        frame = map_frame(page)
        assert frame.evaluate("() => document.body.dataset.examples") == "0"
        page.get_by_text("Show the examples of open leaves").click()
        deadline = time.monotonic() + 60
        while frame.evaluate("() => document.body.dataset.examples") != str(size):
            assert time.monotonic() < deadline, f"the {size} examples of leaf {lonely} were not drawn"
            page.wait_for_timeout(100)
        wait_idle(page)
        px, py = data_to_page(page, ex, ey)
        label = frame.locator(".hoverlayer .hovertext")
        for dx, dy in ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1)):
            page.mouse.move(px + dx + 30, py + dy + 30)
            page.mouse.move(px + dx, py + dy)
            page.wait_for_timeout(300)
            if label.count() and "prompt:" in (label.first.text_content() or ""):
                break
        else:
            raise AssertionError(f"no hover label for the first example of leaf {lonely}")
        shown = label.first.text_content() or ""
        assert f"leaf {lonely}" in shown and "<img src=x onerror=window.__pwned=1>" in shown
        assert frame.locator(".hoverlayer img").count() == 0
        page.wait_for_timeout(300)  # an <img onerror> would have fired by now
        assert frame.evaluate("() => window.__pwned === undefined")
        assert page.locator('[data-testid="stException"]').count() == 0
        page.close()
