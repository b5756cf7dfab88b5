"""Speed of harp.select's greedy against the naive vectorised reference, measured in the same run.

    .venv/bin/python benchmarks/bench_select.py               # L in 1k, 10k, 50k; D = 64
    .venv/bin/python benchmarks/bench_select.py --leaves 10000 --repeats 5

The inputs imitate real posterior effects: leaves grouped 8 to a parent share a parent effect, plus leaf noise, a
few harmful parents, and base scores in (0.2, 0.97). The reference recomputes every remaining leaf's gain at
every step (tests/reference_select.py). Where running it whole would take too long (--reference-steps), it is
timed on its first steps and the total is extrapolated from its cost per step, which is proportional to the
number of remaining leaves; the output says so. Medians over --repeats runs; compile time is excluded (one
warm-up call).
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


def time_call(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    parser.add_argument("--leaves", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--domains", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reference-steps", type=int, default=2000, help="time the reference on at most this many steps"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    weights = np.ones(args.domains)
    none = np.zeros(0, dtype=np.int64)
    small_phi, small_base = make_effects(64, args.domains, args.seed)
    for envelope in "CE":  # compile once, outside the timings
        greedy_order(small_phi, small_base, weights, envelope, none, none)

    print(f"{'L':>7} {'D':>3} {'env':>3} {'fast (s)':>10} {'reference (s)':>14} {'ratio':>8}  same order")
    for n_leaves in args.leaves:
        phi, base = make_effects(n_leaves, args.domains, args.seed)
        for envelope in "CE":
            fast = time_call(
                lambda p=phi, b=base, e=envelope: greedy_order(p, b, weights, e, none, none), args.repeats
            )
            order, gains = greedy_order(phi, base, weights, envelope, none, none)
            reference, estimated = reference_seconds(phi, base, weights, envelope, args.reference_steps)
            if estimated:
                ref_order, _ = reference_order(phi, base, weights, envelope, max_steps=min(200, n_leaves))
                same = "first 200: " + str(bool(np.array_equal(order[: ref_order.size], ref_order)))
            else:
                ref_order, _ = reference_order(phi, base, weights, envelope)
                same = str(bool(np.array_equal(order, ref_order)))
            mark = "~" if estimated else " "
            print(
                f"{n_leaves:>7} {args.domains:>3} {envelope:>3} {fast:>10.3f} {mark}{reference:>13.2f} "
                f"{reference / fast:>7.1f}x  {same}",
                flush=True,
            )
    print("~ = reference timed on its first --reference-steps steps and extrapolated")


if __name__ == "__main__":
    main()
