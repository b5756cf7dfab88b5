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

from app.browser import CHROMIUM, app_server, chromium, data_to_page, metric_value, wait_idle  # noqa: E402

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
        page.wait_for_selector(".js-plotly-plot .gl-container canvas", timeout=60_000)
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
        downloaded = Path(download_info.value.path()).read_text()
        assert downloaded == selection_csv(want)
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
