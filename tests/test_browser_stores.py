"""In a real headless Chromium: open another store of the folder of stores, import a Parquet export into a new
store, and watch on the Runs page a measure run that another process (this test) writes, leaf by leaf, then
rerun ``harp infer`` from the page.

Each step waits for what the page shows (an event), never for a fixed time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from browser import CHROMIUM, app_server, chromium, metric_value, wait_idle  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing; `make test` installs Debian's chromium (apt-get install chromium)",
    ),
]


def _wait_text(page, text: str, timeout_ms: float = 90_000) -> None:
    page.get_by_text(text).first.wait_for(timeout=timeout_ms)


def _wait_metric(page, label: str, expected: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    shown = None
    while time.monotonic() < deadline:
        try:
            shown = metric_value(page, label)
        except Exception:  # being redrawn, or not drawn yet
            shown = None
        if shown == expected:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{label}: expected {expected!r}, page shows {shown!r}")


def _go(page, title: str) -> None:
    """Follow the sidebar's link (same session: the store opened on the Stores page stays open)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    wait_idle(page, 120_000)


def _measure(store, leaf: int, run_id: str, key: str, n_domains: int) -> None:
    store.add_measurements(
        [
            {
                "leaf_id": leaf,
                "domain_id": d,
                "phi": 0.02,
                "variance": 1e-4,
                "run_id": run_id,
                "config_key": key,
            }
            for d in range(n_domains)
        ]
    )


def test_open_import_and_watch_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    from harp.store import Store, export_parquet
    from harp.synth import synth_store

    folder = tmp_path / "stores"
    folder.mkdir()
    synth_store(folder / "a.duckdb", leaves=120, domains=3, seed=3)
    synth_store(folder / "b.duckdb", leaves=200, domains=4, seed=4)
    export = tmp_path / "b-export"
    export_parquet(folder / "b.duckdb", export)
    monkeypatch.setenv("HARP_STORES", str(folder))

    with (
        app_server(folder / "a.duckdb") as url,
        playwright_api.sync_playwright() as playwright,
        chromium(playwright) as context,
    ):
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=120_000)
        wait_idle(page, 120_000)
        _wait_text(page, "120 leaves")

        # Open b from the folder of stores: every page of this tab reads it from now on.
        _go(page, "Stores")
        page.get_by_text("Store to open").wait_for(timeout=60_000)
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Store to open").click()
        page.get_by_role("option", name="b.duckdb").click()
        wait_idle(page)
        page.get_by_role("button", name="Open this store").click()
        _wait_text(page, "the other pages show it now")
        _go(page, "Explore")
        _wait_text(page, "200 leaves")

        # Import the export of b under a new name; a taken name is refused first, and a.duckdb is untouched.
        before = (folder / "a.duckdb").read_bytes()
        _go(page, "Stores")
        page.get_by_label("Export folder (a path on this machine)").fill(str(export))
        page.get_by_label("New store's name").first.fill("a")
        page.get_by_role("button", name="Import").click()
        _wait_text(page, "A store named a.duckdb already exists")
        assert (folder / "a.duckdb").read_bytes() == before
        page.get_by_label("New store's name").first.fill("b-imported")
        page.get_by_role("button", name="Import").click()
        _wait_text(page, "It is open now")
        imported = folder / "b-imported.duckdb"
        assert (
            Store.open(imported, read_only=True).content_hash()
            == Store.open(folder / "b.duckdb").content_hash()
        )

        # Another process (this test) runs a measurement on the imported store; the Runs page follows it.
        store = Store.open(imported)
        key = str(store.read_table("measurements")["config_key"][0])
        effects = store.read_table("effects")
        measured = set(np.asarray(effects.filter(effects["measured"])["leaf_id"]).tolist())
        fresh = [g for g in range(200) if g not in measured][:3]
        _go(page, "Runs")
        _wait_text(page, "No run is running now.")
        store.add_run("measure", {"leaves": fresh, "config_key": key}, run_id="watched")
        _wait_metric(page, "Leaves done", "0 / 3")
        _measure(store, fresh[0], "watched", key, 4)
        _wait_metric(page, "Leaves done", "1 / 3")
        _wait_text(page, "1 of 3 leaves measured")
        _measure(store, fresh[1], "watched", key, 4)
        _wait_metric(page, "Leaves done", "2 / 3")
        assert float(metric_value(page, "Leaves a minute")) > 0
        _wait_text(page, "leaves were measured after the effects were fitted")
        store.finish_run("watched", timings={"total": 1.0}, status="interrupted")
        _wait_text(page, "No run is running now.")

        page.get_by_role("button", name="Rerun harp infer").click()
        _wait_text(page, "effects refitted from")
        _wait_text(page, "The effects include every measurement")
        runs = {r["run_id"]: r for r in Store.open(imported).runs()}
        assert [r["status"] for r in runs.values() if r["kind"] == "infer"] == ["done"]
        assert runs["watched"]["status"] == "interrupted"
        assert Store.open(imported).summary()["n_fit_leaves"] == len(measured) + 2  # the two new leaves
