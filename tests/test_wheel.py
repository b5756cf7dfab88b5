"""The package as a user installs it: build the wheel, install it with ``[app]`` into a fresh virtual environment
outside the checkout, and run ``harp synth``, ``harp select`` and ``harp app`` from a folder outside it too.

The wheel is built from a copy of the sources (``harp/``, ``app/`` and the packaging files), so a stale
``build/`` folder in the checkout cannot slip old modules into it. Installing ``[app]`` takes its dependencies
from the package registry (pip's cache makes a second run quick). Nothing of the checkout is on the installed
commands' path: ``PYTHONPATH`` is dropped and they run in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("harp", "app", "pyproject.toml", "setup.py", "README.md")
SERVE_TIMEOUT_S = 120.0


def run(command: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | dict[str, str]]:
    """A fresh virtual environment with the wheel installed with ``[app]``, and a folder outside the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    assert ROOT not in work.resolve().parents
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("HARP_STORE", None)
    env.pop("HARP_STORES", None)

    source = work / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source], work, env)
    (wheel,) = dist.glob("harp_explorer-*.whl")

    venv = work / "venv"
    run([sys.executable, "-m", "venv", venv], work, env)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[app]"], work, env)

    outside = work / "outside"
    outside.mkdir()
    return {"bin": venv / "bin", "outside": outside, "env": env}


def harp(user, *args: str | Path) -> str:
    return run([user["bin"] / "harp", *args], user["outside"], user["env"])


def test_the_installed_package_is_the_wheel_not_the_checkout(user) -> None:
    where = run(
        [
            user["bin"] / "python",
            "-c",
            "import harp, harp_app; print(harp.__file__); print(harp_app.__file__)",
        ],
        user["outside"],
        user["env"],
    ).split()
    for path in where:
        assert "site-packages" in path and not Path(path).resolve().is_relative_to(ROOT)
    assert (
        harp(user, "--version")
        .strip()
        .endswith(
            run(
                [user["bin"] / "python", "-c", "import harp; print(harp.__version__)"],
                user["outside"],
                user["env"],
            ).strip()
        )
    )


def test_synth_then_select(user) -> None:
    store = user["outside"] / "synth.duckdb"
    summary = json.loads(
        harp(user, "-q", "synth", "--leaves", "30", "--domains", "3", "--seed", "2", "--out", store)
    )
    assert summary["counts"]["leaves"] == 30
    chosen = user["outside"] / "chosen.csv"
    summary = json.loads(
        harp(user, "-q", "select", "--store", store, "--envelope", "C", "--budget", "200", "--out", chosen)
    )
    assert chosen.read_text().startswith("rank,point_id,leaf_id")
    assert summary


def wait_until_served(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """Poll ``url`` until it answers 200 (the event), or fail at the deadline or when the server exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"harp app exited with {process.returncode} before serving"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return bytes(response.read())
        except OSError:
            pass
        assert time.monotonic() < deadline, f"harp app did not serve {url} within {timeout_s} s"
        time.sleep(0.2)  # between polls only; the wait ends on the answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_app_serves_the_page(user) -> None:
    store = user["outside"] / "app.duckdb"
    harp(user, "-q", "synth", "--leaves", "30", "--domains", "3", "--seed", "3", "--out", store)
    port = free_port()
    server = subprocess.Popen(
        [str(user["bin"] / "harp"), "app", "--store", str(store), "--port", str(port)],
        cwd=user["outside"],
        env=user["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until_served(f"http://127.0.0.1:{port}/_stcore/health", server, SERVE_TIMEOUT_S) == b"ok"
        page = wait_until_served(f"http://127.0.0.1:{port}/", server, SERVE_TIMEOUT_S)
        assert b'<div id="root">' in page
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_the_installed_app_runs_its_pages(user) -> None:
    """The server only runs the app's script for a browser session, so run it as Streamlit's AppTest does: the
    installed entry script, its pages and their ``from app.<module> import ...`` must all work from the wheel."""
    store = user["outside"] / "pages.duckdb"
    harp(user, "-q", "synth", "--leaves", "30", "--domains", "3", "--seed", "4", "--out", store)
    script = (
        "from streamlit.testing.v1 import AppTest\n"
        "from harp.app_files import app_entry\n"
        "entry = app_entry()\n"
        "at = AppTest.from_file(str(entry), default_timeout=120).run()\n"
        "assert not at.exception, [e.message for e in at.exception]\n"
        "assert not at.error, [e.value for e in at.error]\n"
        "import app\n"
        "print(entry)\n"
        "print(app.__path__[0])\n"
        "print(len(at.metric))\n"
    )
    out = run(
        [user["bin"] / "python", "-c", script], user["outside"], {**user["env"], "HARP_STORE": str(store)}
    )
    entry, package, metrics = out.split()
    assert Path(entry).parent == Path(package) and Path(package).name == "harp_app"
    assert "site-packages" in entry
    assert int(metrics) > 0
