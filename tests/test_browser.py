"""End to end in a real headless Chromium: load the app, change envelope and budget, download the CSV.

Starts ``streamlit run app/streamlit_app.py`` on a free 127.0.0.1 port against a small synthetic store and drives
Debian's ``/usr/bin/chromium`` through Playwright. The downloaded CSV must equal ``harp.select`` + ``harp.export``
on the same settings, and the page's URL must reproduce the view in a fresh tab.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from browser import (  # noqa: E402
    CHROMIUM,
    app_server,
    chromium,
    data_to_page,
    map_frame,
    metric_value,
    wait_idle,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing; `make test` installs Debian's chromium (apt-get install chromium)",
    ),
]


def _wait_metric(page, label: str, expected: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if metric_value(page, label) == expected:
                return
        except Exception:  # the metric is being redrawn
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{label}: expected {expected!r}, page shows {metric_value(page, label)!r}")
        page.wait_for_timeout(50)


def _load(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=120_000)
    wait_idle(page, 120_000)


def test_envelope_budget_and_csv_download(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    from harp.export import selection_csv
    from harp.select import select
    from harp.store import Store
    from harp.synth import synth_store

    store = tmp_path / "browser.duckdb"
    synth_store(store, leaves=400, domains=6, seed=11)
    inputs = Store.open(store, read_only=True).selection_inputs()
    weights = np.where(inputs.active, 1.0, 0.0) if inputs.active.any() else None

    def expected(envelope: str, budget: int | None = None):
        return select(
            inputs.phi, inputs.base, envelope=envelope, weights=weights, members=inputs.members, budget=budget
        )

    c_full, e_full = expected("C"), expected("E")
    budget = max(1, len(e_full.points) // 3)
    want = expected("E", budget)
    assert len(want.points) == budget

    with (
        app_server(store) as url,
        playwright_api.sync_playwright() as playwright,
        chromium(playwright) as context,
    ):
        page = context.new_page()
        _load(page, url)
        _wait_metric(page, "HARP-C points", f"{len(c_full.points):,}")

        # Click the most isolated leaf on the map: it opens in the leaf panel (leaf ids travel in customdata).
        map_frame(page)
        page.wait_for_timeout(500)
        x, y = Store.open(store, read_only=True).layout()
        pixels = np.array([data_to_page(page, float(a), float(b)) for a, b in zip(x, y, strict=True)])
        gaps = np.linalg.norm(pixels[:, None, :] - pixels[None, :, :], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        leaf = int(np.argmax(gaps.min(axis=1)))
        page.mouse.click(*pixels[leaf])
        opened = page.get_by_label("Open leaves", exact=True)
        deadline = time.monotonic() + 60
        while opened.input_value() != str(leaf):
            assert time.monotonic() < deadline, f"clicking leaf {leaf} opened {opened.input_value()!r}"
            page.wait_for_timeout(100)
        page.get_by_text("Effects across domains").first.wait_for(timeout=60_000)
        wait_idle(page)

        page.get_by_role("radio", name="HARP-E").click()
        _wait_metric(page, "HARP-E points", f"{len(e_full.points):,}")
        wait_idle(page)  # a box typed into while the envelope's rerun is still running can lose the text
        # The legend draws each mark as the map does: HARP-E's ring orange and dashed (the design selection's is
        # green and dotted, app.figures.palette), the open leaf's a cross.
        legend = map_frame(page).locator("#legend")
        ring = legend.locator("span", has_text="selected (HARP-E)").locator("svg circle")
        ring.wait_for(timeout=60_000)
        assert (ring.get_attribute("stroke"), ring.get_attribute("stroke-dasharray")) == ("#e66100", "4 3")
        assert legend.locator("span", has_text="open in leaf panel").locator("svg path").count() == 1

        box = page.get_by_label("Budget, exact", exact=True)
        box.fill(str(budget))
        box.press("Enter")
        _wait_metric(page, "HARP-E points", f"{budget:,}")
        _wait_metric(page, "HARP-E leaves", f"{len(want.leaves):,}")
        wait_idle(page)
        assert "envelope=E" in page.url and f"budget={budget}" in page.url

        page.get_by_role("tab", name="Export and save").click()
        button = page.get_by_role("button", name="Download CSV")
        button.wait_for(timeout=60_000)
        with page.expect_download(timeout=60_000) as download_info:
            button.click()
        downloaded = Path(download_info.value.path()).read_bytes()  # the bytes the button served
        assert downloaded == _harp_select_csv(store, tmp_path, "E", budget)
        assert downloaded == selection_csv(want).encode()
        with page.expect_download(timeout=60_000) as download_info:
            page.get_by_role("button", name="Download manifest (JSON)").click()
        manifest = json.loads(Path(download_info.value.path()).read_text())
        assert download_info.value.suggested_filename.endswith(".manifest.json")
        assert (manifest["envelope"], manifest["budget"]) == ("HARP-E", budget)
        assert manifest["store_hash"] == Store.open(store, read_only=True).content_hash()
        assert manifest["counts"]["points"] == budget

        # Edit the first domain's weight in the data editor (keyboard: first cell, two columns right, type).
        page.get_by_text("Domain weights").first.click()
        grid = page.locator('[data-testid="stDataFrame"]').first
        grid.wait_for(timeout=60_000)
        grid.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # the expander's opening animation
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 30, box["y"] + 35 + 17)
        page.wait_for_timeout(300)
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
        page.keyboard.type("7")  # opens the cell editor
        page.wait_for_timeout(300)
        page.keyboard.press("Enter")
        edited = np.where(inputs.active, 1.0, 0.0) if inputs.active.any() else np.ones(inputs.phi.shape[1])
        edited[0] = 7.0 if (inputs.active[0] or not inputs.active.any()) else 0.0
        reweighted = select(
            inputs.phi, inputs.base, envelope="E", weights=edited, members=inputs.members, budget=budget
        )
        _wait_metric(page, "HARP-E leaves", f"{len(reweighted.leaves):,}")
        wait_idle(page)
        assert "weights=7" in page.url

        # The link reproduces the view in a fresh tab.
        link = page.url
        other = context.new_page()
        _load(other, link)
        _wait_metric(other, "HARP-E points", f"{len(reweighted.points):,}")
        _wait_metric(other, "HARP-E leaves", f"{len(reweighted.leaves):,}")
        assert other.locator('[data-testid="stException"]').count() == 0

        # A page's own URL opens that page inside the app's navigation (not Streamlit's file-based one).
        other.goto(url + "/store")
        other.get_by_text("About the store").first.wait_for(timeout=60_000)
        wait_idle(other)
        nav = other.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Explore" in nav and "streamlit app" not in nav.lower()
        assert other.locator('[data-testid="stException"]').count() == 0


def _harp_select_csv(store: Path, folder: Path, envelope: str, budget: int | None) -> bytes:
    """The bytes `harp select` writes for these settings (default weights: the active domains)."""
    from click.testing import CliRunner

    from harp.cli import main

    out = folder / f"harp-select-{envelope}-{budget}.csv"
    arguments = ["-q", "select", "--store", str(store), "--envelope", envelope, "--out", str(out)]
    result = CliRunner().invoke(main, arguments + ([] if budget is None else ["--budget", str(budget)]))
    assert result.exit_code == 0, result.output
    return out.read_bytes()


def test_the_map_opens_on_the_bulk_and_marks_the_leaves_beyond_it(tmp_path: Path) -> None:
    """Two planted far-off leaves do not stretch the default view: they are arrowheads at its edge, named under
    the map; a double-click shows every leaf, another goes back to the bulk. (Placed before the tests on the
    shared server: one sync Playwright at a time.)"""
    playwright_api = pytest.importorskip("playwright.sync_api")
    from browser import MAP_FRAME

    from harp.store import Store
    from harp.synth import synth_store

    store = tmp_path / "outliers.duckdb"
    synth_store(store, leaves=300, domains=4, seed=3)
    x, y = Store.open(store, read_only=True).layout()
    with Store.open(store).write() as con:
        con.execute("UPDATE layout SET x = ? WHERE leaf_id = 0", [float(x.max() + 50 * (x.max() - x.min()))])
        con.execute("UPDATE layout SET y = ? WHERE leaf_id = 1", [float(y.min() - 40 * (y.max() - y.min()))])
    ranges = """() => { const f = document.getElementById('map')._fullLayout;
        return [f.xaxis.range[1] - f.xaxis.range[0], f.yaxis.range[1] - f.yaxis.range[0]]; }"""
    with (
        app_server(store) as url,
        playwright_api.sync_playwright() as playwright,
        chromium(playwright) as context,
    ):
        page = context.new_page()
        _load(page, url)
        frame = map_frame(page)
        outside = "() => document.body.dataset.outside"

        def wait_outside(count: str) -> None:
            deadline = time.monotonic() + 60
            while frame.evaluate(outside) != count:
                assert time.monotonic() < deadline, f"leaves beyond the view: {frame.evaluate(outside)!r}"
                page.wait_for_timeout(100)
            page.wait_for_timeout(300)  # plotly's zoom transition

        wait_outside("2")
        bulk = frame.evaluate(ranges)
        assert bulk[0] < 3 * (x.max() - x.min()) and bulk[1] < 3 * (y.max() - y.min())
        assert "2 leaves beyond the view" in frame.locator("#legend").text_content()
        box = page.query_selector(MAP_FRAME).bounding_box()
        centre = (box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
        page.mouse.dblclick(*centre)
        wait_outside("0")  # every leaf in view
        assert frame.evaluate(ranges)[0] > 40 * (x.max() - x.min())
        assert not frame.locator("#outside-note").is_visible()
        # plotly counts clicks closer than its doubleClickDelay (300 ms) as one gesture, so a double-click right
        # after the last one is read as clicks 3 and 4 of it and toggles nothing: leave a user's pause first
        page.wait_for_timeout(1000)
        page.mouse.dblclick(*centre)
        wait_outside("2")
        assert frame.evaluate(ranges) == pytest.approx(bulk)
        page.close()


# ----------------------------------------------------------------------------------------------------------------
# Map interaction, hostile hover text, and a saved selection, against one shared server.

HOSTILE_IMG = "<img src=x onerror=window.__pwned=1> look"
HOSTILE_LINK = '<a href="javascript:window.__pwned=2">go</a>'


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A small synthetic store whose most isolated leaf shows two hostile example texts; one app server and one
    browser for the tests below."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    import duckdb

    from harp.store import Store
    from harp.synth import synth_store

    store = tmp_path_factory.mktemp("browser-shared") / "shared.duckdb"
    synth_store(store, leaves=300, domains=5, seed=5)
    x, y = Store.open(store, read_only=True).layout()
    points = np.column_stack([x, y])
    gaps = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    lonely = int(np.argmax(gaps.min(axis=1)))
    with duckdb.connect(str(store)) as con:
        for rank, hostile in enumerate((HOSTILE_IMG, HOSTILE_LINK)):
            con.execute(
                "UPDATE points SET text = ? WHERE leaf_id = ? AND rank_in_leaf = ?", [hostile, lonely, rank]
            )
    with (
        app_server(store) as url,
        playwright_api.sync_playwright() as playwright,
        chromium(playwright) as context,
    ):
        yield {"store": store, "url": url, "context": context, "lonely": lonely}


def _leaf_pixels(page, store: Path) -> np.ndarray:
    from harp.store import Store

    map_frame(page)
    page.wait_for_timeout(500)
    x, y = Store.open(store, read_only=True).layout()
    return np.array([data_to_page(page, float(a), float(b)) for a, b in zip(x, y, strict=True)])


def _wait_input(page, label: str, expected: str, timeout_s: float = 60.0) -> None:
    box = page.get_by_label(label, exact=True)
    deadline = time.monotonic() + timeout_s
    while box.input_value() != expected:
        assert time.monotonic() < deadline, (
            f"{label}: expected {expected!r}, page shows {box.input_value()!r}"
        )
        page.wait_for_timeout(100)


def _selection_inputs(store: Path):
    from harp.store import Store

    inputs = Store.open(store, read_only=True).selection_inputs()
    weights = np.where(inputs.active, 1.0, 0.0) if inputs.active.any() else None
    return inputs, weights


def _computed_lasso(pixels: np.ndarray, margin: float = 12.0) -> tuple[np.ndarray, float, list[int]]:
    """A circle (centre, radius in page pixels) holding 2 to 40 leaves, every leaf at least ``margin`` / 2 px
    from its line and the whole circle inside the map's leaves' extent, and the sorted ids of the leaves in it.

    Tries circles around each leaf, most central first: sorting the other leaves by distance, a gap of at least
    ``margin`` between the k-th and the next gives radius = the gap's middle. One of 300 leaves always has one.
    """
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    for centre in pixels[np.argsort(np.linalg.norm(pixels - np.median(pixels, axis=0), axis=1))]:
        distance = np.linalg.norm(pixels - centre, axis=1)
        ordered = np.sort(distance)
        for k in range(2, min(40, ordered.size - 1) + 1):
            if ordered[k] - ordered[k - 1] < margin:
                continue
            radius = float((ordered[k] + ordered[k - 1]) / 2)
            if np.all(centre - radius > low) and np.all(centre + radius < high):
                return centre, radius, sorted(int(g) for g in np.flatnonzero(distance < radius))
    raise AssertionError(f"no lasso circle with a {margin} px gap around any of {len(pixels)} leaves")


def test_lasso_opens_leaves_then_pin_and_exclude(shared) -> None:
    from app.state import format_leaf_ids
    from harp.select import select

    store, page = shared["store"], shared["context"].new_page()
    inputs, weights = _selection_inputs(store)
    _load(page, shared["url"])
    pixels = _leaf_pixels(page, store)

    # A round lasso around a group of leaves, its radius in a gap of at least 12 px between the distances of
    # the leaves from its centre, so no leaf lies near the line and the leaves it holds are known exactly.
    centre, radius, want = _computed_lasso(pixels)
    map_frame(page).locator('.modebar-btn[data-title="Lasso Select"]').first.click()
    angles = np.linspace(0.0, 2 * np.pi, 65)
    path = centre + radius * np.column_stack([np.cos(angles), np.sin(angles)])
    page.mouse.move(*path[0])
    page.mouse.down()
    for point in path[1:]:
        page.mouse.move(*point)
    page.mouse.up()
    _wait_input(page, "Open leaves", format_leaf_ids(want))
    wait_idle(page)

    page.get_by_role("button", name="Pin open leaves").click()
    _wait_input(page, "Pinned leaves", format_leaf_ids(want))
    pinned = select(
        inputs.phi, inputs.base, envelope="C", weights=weights, members=inputs.members, pinned=want
    )
    _wait_metric(page, "HARP-C leaves", f"{len(pinned.leaves):,}")
    _wait_metric(page, "HARP-C points", f"{len(pinned.points):,}")
    assert "pin=" in page.url

    page.get_by_role("button", name="Exclude open leaves").click()
    _wait_input(page, "Excluded leaves", format_leaf_ids(want))
    _wait_input(page, "Pinned leaves", "")
    excluded = select(
        inputs.phi, inputs.base, envelope="C", weights=weights, members=inputs.members, excluded=want
    )
    _wait_metric(page, "HARP-C leaves", f"{len(excluded.leaves):,}")
    _wait_metric(page, "HARP-C points", f"{len(excluded.points):,}")
    wait_idle(page)
    assert "exclude=" in page.url and "pin=" not in page.url
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_hover_shows_hostile_example_text_as_text(shared) -> None:
    page = shared["context"].new_page()
    _load(page, shared["url"])
    pixels = _leaf_pixels(page, shared["store"])
    px, py = pixels[shared["lonely"]]
    frame = map_frame(page)  # the hover label is drawn inside the map's frame
    label = frame.locator(".hoverlayer .hovertext")
    for dx, dy in ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (2, 2)):
        page.mouse.move(px + dx + 30, py + dy + 30)
        page.mouse.move(px + dx, py + dy)
        page.wait_for_timeout(300)
        if label.count() and f"leaf {shared['lonely']}" in label.first.text_content():
            break
    else:
        raise AssertionError(f"no hover label for leaf {shared['lonely']}")
    shown = label.first.text_content()
    # The markup arrives as characters, never as elements; the link scheme is broken up.
    assert "<img src=x onerror=window.__pwned=1>" in shown
    assert '<a href="javascript' in shown
    hover = frame.locator(".hoverlayer")
    assert hover.locator("img").count() == 0 and hover.locator("a").count() == 0
    assert frame.locator(".js-plotly-plot img, .js-plotly-plot foreignObject").count() == 0
    page.wait_for_timeout(300)  # an <img onerror> would have fired by now
    assert frame.evaluate("() => window.__pwned === undefined")
    assert page.evaluate("() => window.__pwned === undefined")
    page.close()


def test_save_a_named_selection_and_reload_it(shared) -> None:
    from harp.select import select
    from harp.store import Store

    store, page = shared["store"], shared["context"].new_page()
    inputs, weights = _selection_inputs(store)
    full = select(inputs.phi, inputs.base, envelope="E", weights=weights, members=inputs.members)
    budget = max(1, len(full.points) // 2)
    want = select(
        inputs.phi, inputs.base, envelope="E", weights=weights, members=inputs.members, budget=budget
    )

    _load(page, shared["url"] + f"/?envelope=E&budget={budget}")
    _wait_metric(page, "HARP-E points", f"{len(want.points):,}")
    page.get_by_role("tab", name="Export and save").click()
    name = page.get_by_label("Name", exact=True)
    name.wait_for(timeout=60_000)
    name.fill("half budget <b>E</b>")
    page.get_by_role("button", name="Save selection").click()
    page.get_by_text("Reload it from the").first.wait_for(timeout=60_000)
    saved = {row["name"]: row for row in Store.open(store, read_only=True).list_selections()}
    assert "half budget <b>E</b>" in saved

    # Move away from the saved view, then reload it from the Selections page.
    box = page.get_by_label("Budget, exact", exact=True)
    box.fill("1")
    box.press("Enter")
    _wait_metric(page, "HARP-E points", "1")
    wait_idle(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Selections").click()
    page.get_by_role("button", name="Load into Explore").wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_text("half budget <b>E</b>").count() >= 1  # the name shows as text
    page.get_by_role("button", name="Load into Explore").click()
    _wait_metric(page, "HARP-E points", f"{len(want.points):,}")
    _wait_metric(page, "HARP-E leaves", f"{len(want.leaves):,}")
    _wait_input(page, "Budget, exact", str(budget))
    wait_idle(page)
    assert f"budget={budget}" in page.url and "envelope=E" in page.url
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_bad_link_banner_budget_error_and_weights_header_follow_each_edit(shared) -> None:
    """Three bugs of issue 13: the bad-link banner went away only on a full reload, an out-of-range exact budget
    was ignored in silence (the box kept it in red, the selection stayed), the weights header lagged an edit."""
    from harp.select import select

    store, page = shared["store"], shared["context"].new_page()
    inputs, weights = _selection_inputs(store)
    full = select(inputs.phi, inputs.base, envelope="C", weights=weights, members=inputs.members)
    half = max(1, len(full.points) // 2)
    total = int(inputs.leaf_size.sum())
    _load(page, shared["url"] + f"/?envelope=Z&budget={half}")
    banner = page.get_by_text("Some settings in the link were not usable")
    banner.first.wait_for(timeout=60_000)

    box = page.get_by_label("Budget, exact", exact=True)
    box.fill(str(total * 10))
    box.press("Enter")
    page.get_by_text(f"more than the pool's {total:,} points").first.wait_for(timeout=60_000)
    _wait_metric(page, "HARP-C points", f"{len(full.points):,}")
    _wait_input(page, "Budget, exact", str(total))
    wait_idle(page)
    assert banner.count() == 0  # a later interaction clears the bad-link banner

    n_domains = inputs.phi.shape[1]
    active = inputs.active if inputs.active.any() else np.ones(n_domains, dtype=bool)
    row = int(np.flatnonzero(active)[0])
    page.get_by_text("Domain weights").first.click()
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for(timeout=60_000)
    grid.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # the expander's opening animation
    bounds = grid.bounding_box()
    assert bounds is not None
    page.mouse.click(bounds["x"] + 30, bounds["y"] + 35 + 17 + 35 * row)
    page.wait_for_timeout(300)
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    page.keyboard.type("0")
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    header = f"Domain weights: {int(active.sum()) - 1} of {n_domains} domains weigh in"
    page.get_by_text(header).first.wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_text(header).count() >= 1  # after one edit, not after the next one
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_exclude_the_most_harmful_region_in_two_clicks(shared) -> None:
    """On the Regions tab: click the top row of "Most harmful parents", then "Exclude region"."""
    from app.state import format_leaf_ids
    from harp.regions import rank_regions, region_effects
    from harp.select import select

    store, page = shared["store"], shared["context"].new_page()
    inputs, weights = _selection_inputs(store)
    w = weights if weights is not None else np.ones(inputs.phi.shape[1])
    objective = inputs.phi @ w / w.sum()
    regions = region_effects(objective, np.zeros_like(objective), inputs.leaf_parent, inputs.leaf_size)
    worst = int(regions.region[rank_regions(regions.mean, harmful=True, k=1)[0]])
    leaves = np.flatnonzero(inputs.leaf_parent == worst).tolist()

    _load(page, shared["url"])
    page.get_by_role("tab", name="Regions").click()
    page.get_by_text("Most harmful parents").first.wait_for(timeout=60_000)
    wait_idle(page)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    bounds = grid.bounding_box()
    assert bounds is not None
    page.mouse.click(bounds["x"] + 15, bounds["y"] + 35 + 17)  # the first row's tick box
    page.get_by_role("button", name="Exclude region").click(timeout=60_000)
    _wait_input(page, "Excluded leaves", format_leaf_ids(leaves))
    excluded = select(
        inputs.phi, inputs.base, envelope="C", weights=weights, members=inputs.members, excluded=leaves
    )
    _wait_metric(page, "HARP-C points", f"{len(excluded.points):,}")
    wait_idle(page)
    assert f"region=parent%3A{worst}" in page.url or f"region=parent:{worst}" in page.url
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_wheel_scrolls_the_page_until_the_map_is_clicked(shared) -> None:
    from browser import MAP_FRAME

    page = shared["context"].new_page()
    _load(page, shared["url"])
    frame = map_frame(page)
    page.wait_for_timeout(500)
    scrolled = """() => { const main = document.querySelector('[data-testid="stMain"]');
        return (main ? main.scrollTop : 0) + window.scrollY; }"""
    x_range = "() => JSON.stringify(document.getElementById('map')._fullLayout.xaxis.range)"
    start, before = page.evaluate(scrolled), frame.evaluate(x_range)
    box = page.query_selector(MAP_FRAME).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.3)
    page.mouse.wheel(0, 250)
    page.wait_for_timeout(600)
    assert page.evaluate(scrolled) > start  # the page scrolled ...
    assert frame.evaluate(x_range) == before  # ... and the map did not zoom
    box = page.query_selector(MAP_FRAME).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.up()
    page.wait_for_timeout(300)
    assert frame.evaluate("() => document.body.dataset.wheel") == "zooms"
    page.mouse.wheel(0, 250)
    page.wait_for_timeout(600)
    assert frame.evaluate(x_range) != before  # once the map was clicked, the wheel zooms it
    page.close()


def test_an_example_in_full_and_the_leaf_search_show_hostile_text_as_text(shared) -> None:
    lonely = shared["lonely"]
    page = shared["context"].new_page()
    _load(page, shared["url"] + f"/?open={lonely}")
    page.get_by_text("Read one in full").first.wait_for(timeout=60_000)
    wait_idle(page)
    code = page.locator('[data-testid="stCode"]').first
    code.wait_for(timeout=60_000)
    assert HOSTILE_IMG in code.inner_text()  # the markup arrives as characters
    assert page.locator('[data-testid="stCode"] img, [data-testid="stMain"] img[src="x"]').count() == 0
    assert page.get_by_text(f"Leaf {lonely}").count() >= 1  # the leaf's effect line above its examples

    search = page.get_by_label("Search this leaf's examples", exact=True)
    search.fill("javascript")
    search.press("Enter")
    page.get_by_text("1 of the leaf's").first.wait_for(timeout=60_000)
    wait_idle(page)
    assert HOSTILE_LINK in page.locator('[data-testid="stCode"]').first.inner_text()
    assert page.locator('[data-testid="stMain"] a[href^="javascript"]').count() == 0
    page.wait_for_timeout(300)  # an <img onerror> would have fired by now
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_search_the_pool_and_open_a_hits_leaf(shared) -> None:
    """Explore's Search examples tab: a query finds the hostile example of the lonely leaf; clicking its row opens
    the leaf (in the Open leaves box, crossed on the map) and shows the example in full, as text."""
    lonely = shared["lonely"]
    page = shared["context"].new_page()
    _load(page, shared["url"])
    page.get_by_role("tab", name="Search examples").click()
    box = page.get_by_label("Search every example", exact=True)
    box.wait_for(timeout=60_000)
    box.fill("(unclosed")
    page.get_by_text("a regular expression").click()
    page.get_by_text("Query is not a valid regular expression").first.wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0

    page.get_by_text("all the words").click()
    wait_idle(page)
    box.fill("__PWNED=2")  # underscores are characters, not wildcards; case does not matter
    box.press("Enter")
    page.get_by_text("1 example matches").first.wait_for(timeout=60_000)
    wait_idle(page)
    grid = page.locator('[data-testid="stDataFrame"]').last
    grid.scroll_into_view_if_needed()
    frame_box = grid.bounding_box()
    # The row's selection box sits in the grid's first column; the header row is about 35 px tall.
    page.mouse.click(frame_box["x"] + 18, frame_box["y"] + 35 + 17)
    deadline = time.monotonic() + 60
    while f"open={lonely}" not in page.url:  # the open leaves travel in the link
        assert time.monotonic() < deadline, f"choosing the hit did not open leaf {lonely}: {page.url}"
        page.wait_for_timeout(100)
    frame = map_frame(page)
    deadline = time.monotonic() + 60
    while frame.evaluate("() => document.body.dataset.opened") != "1":
        assert time.monotonic() < deadline, "the hit's leaf is not crossed on the map"
        page.wait_for_timeout(100)
    page.get_by_text("open in the leaf panel and crossed on the map").first.wait_for(timeout=60_000)
    wait_idle(page)
    codes = page.locator('[data-testid="stCode"]')
    deadline = time.monotonic() + 60
    # The hit is shown in full below the table once the leaf panel's rerun has drawn it.
    while not any(HOSTILE_LINK in codes.nth(i).inner_text() for i in range(codes.count())):
        assert time.monotonic() < deadline, "the chosen hit's text is not shown in full"
        page.wait_for_timeout(100)
    assert page.locator('[data-testid="stMain"] a[href^="javascript"]').count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_a_search_travels_in_the_link_and_a_bad_one_says_why(shared) -> None:
    """A typed search (query and kind) goes into the page's URL; that link in a fresh tab reopens the Search
    examples tab on the same hits; a bad pattern in a link shows the message typing it shows, no traceback."""
    from urllib.parse import parse_qs, urlparse

    page = shared["context"].new_page()
    _load(page, shared["url"])
    page.get_by_role("tab", name="Search examples").click()
    box = page.get_by_label("Search every example", exact=True)
    box.wait_for(timeout=60_000)
    page.get_by_text("the exact phrase").click()
    wait_idle(page)
    box.fill("__PWNED=2")
    box.press("Enter")
    page.get_by_text("1 example matches").first.wait_for(timeout=60_000)
    deadline = time.monotonic() + 60
    while parse_qs(urlparse(page.url).query).get("search_kind") != ["phrase"]:
        assert time.monotonic() < deadline, f"the search is not in the link: {page.url}"
        page.wait_for_timeout(100)
    assert parse_qs(urlparse(page.url).query)["search"] == ["__PWNED=2"]
    link = page.url
    page.close()

    page = shared["context"].new_page()
    _load(page, link)
    page.get_by_text("1 example matches").first.wait_for(timeout=60_000)
    assert page.get_by_label("Search every example", exact=True).input_value() == "__PWNED=2"
    assert page.get_by_role("radio", name="the exact phrase").is_checked()
    page.close()

    page = shared["context"].new_page()
    _load(page, shared["url"] + "/?search=%28unclosed&search_kind=pattern")
    page.get_by_text("Query is not a valid regular expression").first.wait_for(timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()
