"""Stage 1a speed and quality: build the three-level hierarchy of N random L2-normalised features.

Prints one line per (N, backend): seconds in total and per stage, the tree's shape, and its quality (leaves
outside the size band, mean within-leaf squared distance to the leaf centroid); with several runs, a side-by-side
table at the end. The DESIGN target is 10^7 x 384 in under 60 s on one H200 (backend "auto" picks faiss, else
torch on a GPU, else scikit-learn).

Features come from memory (generated with numpy, or with torch on the GPU and copied to the host), or from a
memory-mapped ``.npy`` file (``--features``), which build_hierarchy reads block by block without copying it;
``--write-features`` first writes such a file (generated on the GPU when there is one) and then reads it back.
Only the build is timed.

    python benchmarks/bench_stage1a.py                      # N in {100k, 1M}, dim 384, backend auto
    python benchmarks/bench_stage1a.py --n 100000 --backend sklearn --backend torch
    python benchmarks/bench_stage1a.py --n 10000000 --write-features /tmp/X.npy --backend torch
    python benchmarks/bench_stage1a.py --features /tmp/X.npy --n 1000000 --backend sklearn   # its first 1M rows
    python benchmarks/bench_stage1a.py --n 1000000 --blobs 15625 --backend torch --backend sklearn  # clustered data
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

import numpy as np

BLOCK_ROWS = 100_000


def random_features(n: int, dim: int, seed: int) -> np.ndarray:
    """Random unit vectors, generated in blocks so that 1M x 384 needs no float64 copy."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, BLOCK_ROWS):
        block = rng.standard_normal((min(BLOCK_ROWS, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start : start + block.shape[0]] = block
    return X


def torch_blocks(n: int, dim: int, seed: int, blobs: int = 0) -> Any:
    """Random unit vectors in blocks of float32 host arrays, drawn with torch (on the GPU when there is one):
    numpy on a CPU takes minutes for 10^7 x 384. With ``blobs``, each point is one of ``blobs`` random unit
    centres plus noise of norm about 0.5, normalised: data with clusters for k-means to find."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    if blobs:
        centres = torch.randn((blobs, dim), generator=generator, device=device)
        centres /= centres.norm(dim=1, keepdim=True)
    for start in range(0, n, BLOCK_ROWS * 10):
        rows = min(BLOCK_ROWS * 10, n - start)
        block = torch.randn((rows, dim), generator=generator, device=device, dtype=torch.float32)
        if blobs:
            which = torch.randint(blobs, (rows,), generator=generator, device=device)
            block = centres[which] + block * (0.5 / dim**0.5)
        block /= block.norm(dim=1, keepdim=True)
        yield start, block.cpu().numpy()


def torch_features(n: int, dim: int, seed: int, blobs: int = 0) -> np.ndarray:
    """Random unit vectors drawn with torch, in one host array."""
    X = np.empty((n, dim), dtype=np.float32)
    for start, block in torch_blocks(n, dim, seed, blobs):
        X[start : start + block.shape[0]] = block
    return X


def write_features(path: str, n: int, dim: int, seed: int, blobs: int = 0) -> None:
    """Random unit vectors drawn with torch, written block by block to a ``.npy`` file."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start, block in torch_blocks(n, dim, seed, blobs):
        out[start : start + block.shape[0]] = block
    out.flush()
    del out


def within_leaf_distance(X: np.ndarray, tree: Any) -> float:
    """Mean squared distance of a point to its leaf's centroid (float64), in blocks; on the GPU when there is one."""
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    total = 0.0
    if cuda:
        centroids = torch.from_numpy(tree.leaf_centroids).cuda().double()
        labels = torch.from_numpy(tree.point_leaf).cuda()
        for start in range(0, X.shape[0], BLOCK_ROWS * 4):
            block = torch.from_numpy(np.array(X[start : start + BLOCK_ROWS * 4])).cuda().double()
            diff = block - centroids[labels[start : start + block.shape[0]]]
            total += float((diff * diff).sum())
        return total / X.shape[0]
    from harp.hierarchy.arrays import squared_distances

    return float(squared_distances(X, tree.leaf_centroids.astype(np.float64), tree.point_leaf).mean())


def gpu_peak(reset: bool = False) -> float | None:
    """GiB torch has held on the GPU at most since the last reset (None without torch or a GPU)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.max_memory_allocated() / 2**30


def warm_up(backend: str) -> None:
    """Import the backend's library and start CUDA before the timed build, so that the first run of a backend
    is timed like the others."""
    import importlib

    module = {"sklearn": "sklearn.cluster", "faiss": "faiss"}.get(backend, "torch")
    try:
        library = importlib.import_module(module)
    except ImportError:
        return
    if module == "torch" and library.cuda.is_available():
        library.zeros(1, device="cuda").sum().item()


def measure(X: np.ndarray, n: int, dim: int, backend: str, seed: int, source: str, prepare: float) -> tuple:
    """Build the tree of X once with ``backend``; returns the record of the run and the tree."""
    from harp.hierarchy import build_hierarchy

    warm_up(backend)
    gpu_peak(reset=True)
    tick = time.perf_counter()
    tree = build_hierarchy(X, seed=seed, backend=backend)  # type: ignore[arg-type]
    seconds = time.perf_counter() - tick
    peak = gpu_peak()
    sizes = tree.leaf_size
    low, high = tree.config["min_leaf"], tree.config["max_leaf"]
    return {
        "n": n,
        "dim": dim,
        "backend": tree.config["backend"],
        "source": source,
        "seconds": round(seconds, 2),
        "stages": {name: round(value, 2) for name, value in tree.timings.items()},
        "large": tree.n_large,
        "parents": tree.n_parents,
        "leaves": tree.n_leaves,
        "leaf_size_min": int(sizes.min()),
        "leaf_size_median": float(np.median(sizes)),
        "leaf_size_max": int(sizes.max()),
        "band": [low, high],
        "leaves_outside_band": int(((sizes < low) | (sizes > high)).sum()),
        "within_leaf_sq_distance": round(within_leaf_distance(X, tree), 6),
        "kmeans_calls": tree.config["kmeans_calls"],
        "prepare_seconds": round(prepare, 2),
        "gpu_peak_gib": None if peak is None else round(peak, 1),
        "tree_digest": digest(tree),
    }, tree


def digest(tree: Any) -> str:
    """A short hash of the tree (leaf of each point, parents, large nodes, in-leaf ranks): equal digests from
    separate processes mean the same tree."""
    import hashlib

    content = hashlib.sha256()
    for name in ("point_leaf", "leaf_parent", "parent_large", "rank_in_leaf"):
        content.update(np.ascontiguousarray(getattr(tree, name), dtype=np.int64).tobytes())
    return content.hexdigest()[:12]


def line(record: dict) -> str:
    stages = ", ".join(f"{name} {value:.2f}" for name, value in record["stages"].items())
    low, high = record["band"]
    return (
        f"N={record['n']:>10,} dim={record['dim']} backend={record['backend']:<10} {record['seconds']:8.2f} s  "
        f"({record['large']} large, {record['parents']} parents, {record['leaves']} leaves of "
        f"{record['leaf_size_min']}..{record['leaf_size_max']} points, {record['leaves_outside_band']} outside "
        f"[{low}, {high}]; mean within-leaf squared distance {record['within_leaf_sq_distance']:.6f}; {stages}; "
        f"features {record['source']}"
        + ("" if record["gpu_peak_gib"] is None else f"; GPU peak {record['gpu_peak_gib']} GiB")
        + f"; tree {record['tree_digest']}"
        + (
            ""
            if "same_tree_as_last_run" not in record
            else f"; same tree as last run: {record['same_tree_as_last_run']}"
        )
        + ")"
    )


def table(records: list[dict]) -> str:
    header = f"{'N':>11} {'backend':<11} {'seconds':>8} {'leaves':>8} {'outside band':>12} {'within-leaf sq dist':>20}"
    rows = [
        f"{r['n']:>11,} {r['backend']:<11} {r['seconds']:>8.2f} {r['leaves']:>8} {r['leaves_outside_band']:>12} "
        f"{r['within_leaf_sq_distance']:>20.6f}"
        for r in records
    ]
    return "\n".join(["# side by side", header, *rows])


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
    parser.add_argument(
        "--features",
        metavar="PATH",
        help="read the features from this .npy, memory-mapped (the first N rows)",
    )
    parser.add_argument(
        "--write-features",
        metavar="PATH",
        help="first write max(N) random features to this .npy (torch, on the GPU when there is one), then read it",
    )
    parser.add_argument(
        "--generate",
        choices=["numpy", "torch"],
        default="numpy",
        help="where in-memory features are drawn (default numpy; torch uses the GPU when there is one)",
    )
    parser.add_argument(
        "--blobs",
        type=int,
        default=0,
        help="draw the features (with torch) around this many random centres instead of uniformly (default 0)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per run instead of text")
    args = parser.parse_args(argv)

    backends = args.backend or ["auto"]
    print(f"# python {platform.python_version()} on {platform.machine()}, dim {args.dim}", file=sys.stderr)
    path = args.features
    if args.write_features:
        tick = time.perf_counter()
        write_features(args.write_features, max(args.n or [1_000_000]), args.dim, args.seed, args.blobs)
        print(f"# wrote {args.write_features} in {time.perf_counter() - tick:.1f} s", file=sys.stderr)
        path = args.write_features
    mapped = np.load(path, mmap_mode="r") if path else None
    if mapped is not None:
        args.dim = int(mapped.shape[1])
    sizes = args.n or ([mapped.shape[0]] if mapped is not None else [100_000, 1_000_000])
    data = f"{args.blobs} blobs" if args.blobs else "uniform"
    records = []
    previous: tuple | None = None
    for n in sizes:
        tick = time.perf_counter()
        if mapped is not None:
            X, source = mapped[:n], f"memory-mapped {path}"
        elif args.generate == "torch" or args.blobs:
            X, source = torch_features(n, args.dim, args.seed, args.blobs), "in memory (torch)"
        else:
            X, source = random_features(n, args.dim, args.seed), "in memory (numpy)"
        prepare = time.perf_counter() - tick
        if mapped is None or args.write_features:
            source += f", {data}"
        for backend in backends:
            record, tree = measure(X, n, args.dim, backend, args.seed, source, prepare)
            if previous is not None and previous[0] == (n, record["backend"]):
                # The same backend twice on the same features: is the tree the same, to the last point?
                record["same_tree_as_last_run"] = all(
                    np.array_equal(getattr(tree, name), getattr(previous[1], name))
                    for name in ("point_leaf", "leaf_parent", "parent_large", "rank_in_leaf")
                )
            previous = ((n, record["backend"]), tree)
            records.append(record)
            print(json.dumps(record) if args.json else line(record), flush=True)
    if len(records) > 1 and not args.json:
        print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
