"""Stage 1a speed: build the three-level hierarchy of N random L2-normalised features.

Prints one line per (N, backend): seconds in total and per stage, and the tree's shape. The DESIGN target is
1M x 384 in under 60 s on one GPU (backend "auto" picks faiss, else torch on a GPU, else scikit-learn).

    python benchmarks/bench_stage1a.py                      # N in {100k, 1M}, dim 384, backend auto
    python benchmarks/bench_stage1a.py --n 100000 --backend sklearn --backend torch
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np


def random_features(n: int, dim: int, seed: int) -> np.ndarray:
    """Random unit vectors, generated in blocks so that 1M x 384 needs no float64 copy."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start : start + block.shape[0]] = block
    return X


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, action="append", help="number of points (repeatable; default 100000 and 1000000)"
    )
    parser.add_argument("--dim", type=int, default=384, help="feature dimension (default 384)")
    parser.add_argument(
        "--backend",
        action="append",
        choices=["auto", "faiss", "torch", "sklearn"],
        help="k-means backend (repeatable; default auto)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per run instead of text")
    args = parser.parse_args(argv)

    from harp.hierarchy import build_hierarchy

    sizes = args.n or [100_000, 1_000_000]
    backends = args.backend or ["auto"]
    print(f"# python {platform.python_version()} on {platform.machine()}, dim {args.dim}", file=sys.stderr)
    for n in sizes:
        tick = time.perf_counter()
        X = random_features(n, args.dim, args.seed)
        generate = time.perf_counter() - tick
        for backend in backends:
            tick = time.perf_counter()
            tree = build_hierarchy(X, seed=args.seed, backend=backend)  # type: ignore[arg-type]
            seconds = time.perf_counter() - tick
            sizes_of_leaves = tree.leaf_size
            record = {
                "n": n,
                "dim": args.dim,
                "backend": tree.config["backend"],
                "seconds": round(seconds, 2),
                "stages": {name: round(value, 2) for name, value in tree.timings.items()},
                "large": tree.n_large,
                "parents": tree.n_parents,
                "leaves": tree.n_leaves,
                "leaf_size_min": int(sizes_of_leaves.min()),
                "leaf_size_median": float(np.median(sizes_of_leaves)),
                "leaf_size_max": int(sizes_of_leaves.max()),
                "generate_seconds": round(generate, 2),
            }
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                stages = ", ".join(f"{name} {value:.2f}" for name, value in record["stages"].items())
                print(
                    f"N={n:>9,} dim={args.dim} backend={record['backend']:<10} {seconds:8.2f} s  "
                    f"({record['large']} large, {record['parents']} parents, {record['leaves']} leaves of "
                    f"{record['leaf_size_min']}..{record['leaf_size_max']} points; {stages})",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
