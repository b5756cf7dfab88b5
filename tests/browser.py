"""Drive the app in a real headless Chromium: for the browser test, the benchmark and the docs screenshots.

Uses Debian's ``/usr/bin/chromium`` through Playwright's ``executable_path`` (Playwright's own browser download
does not work offline; never run ``playwright install``), a fresh profile per launch, and no network features.
Lives with the tests (the benchmarks import it as ``tests.browser``); the app never imports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harp.app_files import server_command

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The checkout's app (the one these tests are about), not an installed one.
APP = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def app_server(store: str | Path, *, port: int | None = None, timeout_s: float = 90.0) -> Iterator[str]:
    """Run ``streamlit run app/streamlit_app.py`` on 127.0.0.1 against ``store``; yield its URL."""
    port = port or free_port()
    env = dict(os.environ, HARP_STORE=str(store))
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 (closed below)
    # `harp app`'s command, from the checkout (developmentMode would serve the frontend from a dev server).
    command = [*server_command(APP, "127.0.0.1", port), "--global.developmentMode", "false"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout_s} s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


@contextlib.contextmanager
def chromium(playwright: Any, *, width: int = 1500, height: int = 1000) -> Iterator[Any]:
    """A persistent Chromium context on a fresh, throwaway profile directory."""
    profile = tempfile.mkdtemp(prefix="harp-chromium-")
    try:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def wait_idle(page: Any, timeout_ms: float = 60_000) -> None:
    """Wait until Streamlit reports that no script (or fragment) run is in progress."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def metric_value(page: Any, label: str) -> str:
    """The displayed value of the ``st.metric`` whose label is exactly ``label``."""
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)
    )
    return str(metric.first.locator('[data-testid="stMetricValue"]').inner_text()).strip()


# The leaf map is the app's own component (app/leaf_map.py): an iframe whose body reports what it draws.
MAP_FRAME = 'iframe[title="app.leaf_map.leaf_map"]'
MAP_DRAWN_JS = "() => document.body.dataset.ringsC !== undefined"
_AXES_JS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  const box = gd.getBoundingClientRect();
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  return {left: box.left + xa._offset, top: box.top + ya._offset, xm: xa._m, xb: xa._b, ym: ya._m, yb: ya._b};
}"""


def map_frame(page: Any, timeout_ms: float = 60_000) -> Any:
    """The leaf map's frame, once the map is drawn in it."""
    frame = page.wait_for_selector(MAP_FRAME, timeout=timeout_ms).content_frame()
    frame.wait_for_function(MAP_DRAWN_JS, timeout=timeout_ms)
    return frame


def data_to_page(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page pixel of the data point (x, y) on the leaf map (linear axes)."""
    handle = page.query_selector(MAP_FRAME)
    box = handle.bounding_box()
    axes = handle.content_frame().evaluate(_AXES_JS)
    return (
        box["x"] + axes["left"] + axes["xm"] * x + axes["xb"],
        box["y"] + axes["top"] + axes["ym"] * y + axes["yb"],
    )
