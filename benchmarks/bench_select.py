"""Speed of harp.select's greedy against the naive vectorised reference, measured in the same run.

    .venv/bin/python benchmarks/bench_select.py               # L in 1k, 10k, 50k, 100k; D = 64
    .venv/bin/python benchmarks/bench_select.py --leaves 10000 --repeats 7

The inputs imitate real posterior effects: leaves grouped 8 to a parent share a parent effect, plus leaf noise, a
few harmful parents, and base scores in (0.2, 0.97). The reference recomputes every remaining leaf's gain at
every step (tests/reference_select.py). Where running it whole would take too long, it is timed on its first
steps (at most --reference-steps, and at most --reference-work leaf-steps: 1,000 steps at 10k leaves, 100 at
100k) and the total is extrapolated from its cost per step, which is proportional to the number of remaining
leaves; the output says so. Medians over --repeats runs of the full greedy order (every leaf ranked), compile
time excluded (one warm-up call); "CPU" is the same run's process time, which a busy shared machine inflates
less than the wall clock. The reference gets one run per size, so on a noisy machine its time (and every ratio)
moves by a quarter between runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference_select import reference_order  # noqa: E402

from harp.select import greedy_order  # noqa: E402

TARGET_SECONDS = 0.1  # DESIGN.md "Performance": the full order at 10,000 x 64 under 100 ms on one core


def make_effects(n_leaves: int, n_domains: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_parents = max(1, n_leaves // 8)
    parent = rng.normal(0.0, 0.01, (n_parents, n_domains))
    harmful = rng.random(n_parents) < 0.05
    parent[harmful] -= 0.03
    phi = parent[np.arange(n_leaves) % n_parents] + rng.normal(0.0, 0.005, (n_leaves, n_domains))
    base = rng.uniform(0.2, 0.9, n_domains)
    base[:3] = 0.97
    return phi, base


def time_call(function, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process (CPU) seconds of ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def reference_seconds(phi, base, weights, envelope, max_steps: int) -> tuple[float, bool]:
    n_leaves = phi.shape[0]
    if n_leaves <= max_steps:
        start = time.perf_counter()
        reference_order(phi, base, weights, envelope)
        return time.perf_counter() - start, False
    start = time.perf_counter()
    reference_order(phi, base, weights, envelope, max_steps=max_steps)
    partial = time.perf_counter() - start
    remaining = np.arange(n_leaves, 0, -1, dtype=np.float64)
    return partial * remaining.sum() / remaining[:max_steps].sum(), True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leaves", type=int, nargs="+", default=[1000, 10000, 50000, 100000])
    parser.add_argument("--domains", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--reference-steps", type=int, default=2000, help="time the reference on at most this many steps"
    )
    parser.add_argument(
        "--reference-work",
        type=int,
        default=10_000_000,
        help="and on at most this many leaf-steps (steps x leaves), so the large pools finish in seconds",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    weights = np.ones(args.domains)
    none = np.zeros(0, dtype=np.int64)
    small_phi, small_base = make_effects(64, args.domains, args.seed)
    for envelope in "CE":  # compile once, outside the timings
        greedy_order(small_phi, small_base, weights, envelope, none, none)

    print(
        f"{'L':>7} {'D':>3} {'env':>3} {'fast (s)':>9} {'CPU (s)':>8} {'reference (s)':>14} {'ratio':>8}  same order"
    )
    for n_leaves in args.leaves:
        phi, base = make_effects(n_leaves, args.domains, args.seed)
        steps = max(1, min(args.reference_steps, args.reference_work // n_leaves))
        for envelope in "CE":
            fast, fast_cpu = time_call(
                lambda p=phi, b=base, e=envelope: greedy_order(p, b, weights, e, none, none), args.repeats
            )
            order, gains = greedy_order(phi, base, weights, envelope, none, none)
            reference, estimated = reference_seconds(phi, base, weights, envelope, steps)
            if estimated:
                checked = min(200, steps)
                ref_order, _ = reference_order(phi, base, weights, envelope, max_steps=checked)
                same = f"first {checked}: " + str(bool(np.array_equal(order[: ref_order.size], ref_order)))
            else:
                ref_order, _ = reference_order(phi, base, weights, envelope)
                same = str(bool(np.array_equal(order, ref_order)))
            mark = "~" if estimated else " "
            print(
                f"{n_leaves:>7} {args.domains:>3} {envelope:>3} {fast:>9.3f} {fast_cpu:>8.3f} "
                f"{mark}{reference:>13.2f} {reference / fast:>7.0f}x  {same}",
                flush=True,
            )
    print("~ = reference timed on its first steps (see --reference-steps, --reference-work) and extrapolated")
    print(
        f"target: the full order at 10,000 x 64 under {TARGET_SECONDS * 1000:.0f} ms on one core, both envelopes"
    )


if __name__ == "__main__":
    main()
