"""The positions of the examples on the map: computing them for a pool, and reading the points of a few leaves.

    .venv/bin/python benchmarks/bench_points.py                      # 10^6 points x 384 features, 15,000 leaves
    .venv/bin/python benchmarks/bench_points.py --points 200000 --repeats 3

Prints, as medians over --repeats runs:

- ``harp.layout.point_positions`` on random L2-normalised features, against the straightforward reference measured
  in the same run: a Python loop over the leaves, each with an exact SVD of its centred features (timed on the
  first --reference-leaves leaves and scaled to all of them). Target (the issue): 10^6 points in seconds.
- ``Store.point_positions`` (a whole call: opening a read-only connection included) of 1 leaf, of 5 scattered leaves and of 200 scattered leaves in a store of --store-points
  points, against reading the whole table; the cost grows with the leaves asked, not with the store.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from harp.layout import point_positions
from harp.store import Store, points_from_members


def _median(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reference(X: np.ndarray, leaves: np.ndarray, n_leaves: int) -> None:
    for g in range(n_leaves):
        rows = X[leaves == g].astype(np.float64)
        centred = rows - rows.mean(axis=0)
        if centred.shape[0] > 1:
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            _ = centred @ vt[:2].T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=384)
    parser.add_argument("--leaves", type=int, default=15_000)
    parser.add_argument("--reference-leaves", type=int, default=300)
    parser.add_argument("--store-points", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.points, args.features)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    leaves = np.sort(rng.integers(0, args.leaves, args.points))
    leaf_x, leaf_y = rng.standard_normal(args.leaves), rng.standard_normal(args.leaves)
    ids = np.arange(args.points)
    fast = _median(lambda: point_positions(X, ids, leaves, leaf_x, leaf_y), args.repeats)
    few = args.reference_leaves
    part = _median(lambda: _reference(X[leaves < few], leaves[leaves < few], few), 1)
    reference = part * args.leaves / few
    print(
        f"point_positions  {args.points:,} points x {args.features} features, {args.leaves:,} leaves: "
        f"{fast:.2f} s (target: seconds); per-leaf SVD loop {reference:.1f} s "
        f"(from {few} leaves) = {reference / fast:.1f}x"
    )

    with tempfile.TemporaryDirectory() as folder:
        n_leaves = args.store_points // 100
        store = Store.create(Path(folder) / "points.duckdb")
        members = np.arange(args.store_points).reshape(n_leaves, 100)
        store.write_tree(points_from_members(list(members)), np.zeros(n_leaves, dtype=int), [0], 1)
        tick = time.perf_counter()
        store.write_layout(
            rng.standard_normal(n_leaves),
            rng.standard_normal(n_leaves),
            "bench",
            point_positions=(np.arange(args.store_points), *rng.standard_normal((2, args.store_points))),
        )
        print(f"write_layout with {args.store_points:,} point positions: {time.perf_counter() - tick:.1f} s")
        whole = _median(lambda: store.read_table("point_positions"), args.repeats)
        for count in (1, 5, 200):
            asked = rng.choice(n_leaves, count, replace=False)
            seconds = _median(lambda asked=asked: store.point_positions(asked), args.repeats)
            rows = store.point_positions(asked).num_rows
            print(
                f"point_positions of {count:>3} leaves ({rows:,} rows) of {args.store_points:,}: "
                f"{seconds * 1000:.1f} ms; the whole table {whole * 1000:.0f} ms = {whole / seconds:.0f}x"
            )


if __name__ == "__main__":
    main()
