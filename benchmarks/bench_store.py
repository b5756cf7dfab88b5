"""Store reads at scale: wall time and peak memory of a whole `harp info` and `harp select` run.

    .venv/bin/python benchmarks/bench_store.py                          # 50k, 100k and 1M leaves x 64 domains
    .venv/bin/python benchmarks/bench_store.py --sizes 50000 --repeats 5
    .venv/bin/python benchmarks/bench_store.py --old /tmp/harp_old       # also an older checkout, same stores
    .venv/bin/python benchmarks/bench_store.py --app STORE.duckdb         # `harp app` on STORE in Chromium

Each command runs as its own process (what a user runs, Python start and imports included) under
``/usr/bin/time -v``, which reports the wall time and the peak resident memory of the whole process; figures are
medians over --repeats runs. `harp select` is the default selection (HARP-C, active domains, no budget) written
to a fresh CSV. The line `selected ... in X s` that select prints is the greedy's own time: the rest is
reading the store, the imports and the CSV. Stores are made with `harp synth` (seed 0) in --folder and kept, so
a second run measures only the reads; sizes given as LEAVES:LEAF_SIZE use that mean leaf size (1M leaves of 10
points make the 10^7-point pool). With --old, the same commands run from the older checkout (PYTHONPATH) on
stores it made itself, so that "today's" figures come from the same machine in the same hour.

With --app, `harp app --store STORE` is started as a user would, Debian's Chromium (tests/browser.py) opens the
page, and the script reports the seconds until the first metric shows and until the leaf map is drawn, and the
peak resident memory of the server (`VmHWM` of the Streamlit process) after that first load.

Targets (DESIGN.md "Performance"): at 50k leaves x 64 domains, `harp info` under 1 s and 300 MB, a whole
`harp select` under 3 s and 800 MB. On a machine shared with other work the wall times move by a factor of two
between runs; peak memory does not.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME = "/usr/bin/time"
TARGETS = {"info": (1.0, 300.0), "select": (3.0, 800.0)}  # seconds, MB at 50k x 64


def timed(arguments: list[str], *, env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak resident MB and stderr of one child process."""
    result = subprocess.run(
        [TIME, "-v", *arguments], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    assert wall and peak, result.stderr
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds, int(peak.group(1)) / 1024, result.stderr


def harp_command(code: Path) -> tuple[list[str], dict[str, str]]:
    """How to run `harp` from the checkout at ``code`` (this one by default)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    return [sys.executable, "-c", "from harp.cli import main; main()"], env


def make_store(code: Path, path: Path, leaves: int, leaf_size: float) -> None:
    if path.exists():
        return
    command, env = harp_command(code)
    extra = [] if leaf_size == 64 else ["--leaf-size", str(leaf_size)]
    print(f"  making {path.name} ...", file=sys.stderr, flush=True)
    seconds, peak, _ = timed(
        [*command, "-q", "synth", "--leaves", str(leaves), "--domains", "64", *extra, "--out", str(path)],
        env=env,
        cwd=code,
    )
    print(f"  synth {path.name}: {seconds:.1f} s, {peak:.0f} MB", file=sys.stderr, flush=True)


def measure(code: Path, store: Path, repeats: int, folder: Path) -> dict[str, tuple[float, float, float]]:
    """Median wall s and peak MB of info and select, and the median greedy time select reports."""
    command, env = harp_command(code)
    figures: dict[str, list[tuple[float, float, float]]] = {"info": [], "select": []}
    out = folder / f"{store.stem}-{code.name}.csv"
    for _ in range(repeats):
        seconds, peak, _ = timed([*command, "info", str(store)], env=env, cwd=code)
        figures["info"].append((seconds, peak, 0.0))
        for leftover in (out, out.with_name(out.stem + ".manifest.json")):
            leftover.unlink(missing_ok=True)
        seconds, peak, stderr = timed(
            [*command, "select", "--store", str(store), "--envelope", "C", "--out", str(out)],
            env=env,
            cwd=code,
        )
        greedy = re.search(r"selected \d+ points from \d+ leaves in ([0-9.]+) s", stderr)
        figures["select"].append((seconds, peak, float(greedy.group(1)) if greedy else float("nan")))
    return {
        name: tuple(statistics.median(run[i] for run in runs) for i in range(3))  # type: ignore[misc]
        for name, runs in figures.items()
    }


def _peak_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (VmHWM of each, summed), in MB."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) / 1024 if match else 0.0
        pending.extend(int(child) for child in children)
    return total


def app_load(store: Path, timeout_s: float = 590.0) -> None:
    """Start `harp app` on ``store``, load the page in Chromium, print the times and the server's peak memory."""
    import time

    sys.path.insert(0, str(REPO))
    from playwright.sync_api import sync_playwright

    from tests.browser import chromium, free_port, map_frame, wait_idle

    port = free_port()
    command, env = harp_command(REPO)
    started = time.monotonic()
    server = subprocess.Popen(
        [*command, "app", "--store", str(store), "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        line = server.stderr.readline()  # "serving STORE at http://127.0.0.1:PORT" once the port answers
        if "http://" not in line:
            raise SystemExit(f"harp app did not start: {line}{server.stderr.read()[-2000:]}")
        serving = time.monotonic() - started
        with sync_playwright() as playwright, chromium(playwright) as context:
            page = context.new_page()
            opened = time.monotonic()
            page.goto(f"http://127.0.0.1:{port}", timeout=timeout_s * 1000)
            page.wait_for_selector('[data-testid="stMetricValue"]', timeout=timeout_s * 1000)
            metric = time.monotonic() - opened
            map_frame(page, timeout_ms=timeout_s * 1000)
            drawn = time.monotonic() - opened
            wait_idle(page, timeout_s * 1000)
            errors = page.locator('[data-testid="stException"]').count()
        print(
            f"harp app --store {store}: serving after {serving:.1f} s; in Chromium the first metric after "
            f"{metric:.1f} s, the leaf map drawn after {drawn:.1f} s; server peak {_peak_mb(server.pid):.0f} MB; "
            f"{errors} exceptions on the page"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["50000", "100000", "1000000:10"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/harp-bench-store"))
    parser.add_argument("--old", type=Path, default=None, help="An older checkout to measure side by side.")
    parser.add_argument("--old-sizes", nargs="+", default=["50000", "100000"])
    parser.add_argument("--app", type=Path, default=None, help="Only time `harp app` on this store.")
    args = parser.parse_args()
    if args.app is not None:
        app_load(args.app)
        return
    if not Path(TIME).exists() or shutil.which(TIME) is None:
        raise SystemExit(f"{TIME} is needed (GNU time, for the peak memory of a child process)")
    args.folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        leaves_text, _, leaf_size_text = size.partition(":")
        leaves, leaf_size = int(leaves_text), float(leaf_size_text or 64)
        versions = [("now", REPO)]
        if args.old is not None and size in args.old_sizes:
            versions.insert(0, ("before", args.old.resolve()))
        for label, code in versions:
            store = args.folder / f"{label}-{leaves}-{leaf_size:g}.duckdb"
            make_store(code, store, leaves, leaf_size)
            figures = measure(code, store, args.repeats, args.folder)
            rows.append((label, leaves, leaf_size, figures))
            info, select = figures["info"], figures["select"]
            print(
                f"  {label} {leaves}: info {info[0]:.2f} s {info[1]:.0f} MB; select {select[0]:.2f} s "
                f"{select[1]:.0f} MB (greedy {select[2]:.2f} s)",
                file=sys.stderr,
                flush=True,
            )
    print(f"medians of {args.repeats} runs; each a whole process under /usr/bin/time -v; 64 domains")
    print(
        f"{'code':<7} {'leaves':>9} {'points/leaf':>11}  {'info s':>7} {'info MB':>8}  {'select s':>8} "
        f"{'select MB':>9} {'(greedy s)':>10}"
    )
    for label, leaves, leaf_size, figures in rows:
        info, select = figures["info"], figures["select"]
        print(
            f"{label:<7} {leaves:>9} {leaf_size:>11g}  {info[0]:>7.2f} {info[1]:>8.0f}  {select[0]:>8.2f} "
            f"{select[1]:>9.0f} {select[2]:>10.2f}"
        )
    (info_s, info_mb), (select_s, select_mb) = TARGETS["info"], TARGETS["select"]
    print(
        f"targets at 50k x 64: info < {info_s:g} s and {info_mb:g} MB; select < {select_s:g} s and {select_mb:g} MB"
    )


if __name__ == "__main__":
    main()
