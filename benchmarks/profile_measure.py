"""Where batched measurement spends its device time: ``torch.profiler`` over one ``train_adapters`` and one
``evaluate_adapters`` with K adapters, on a random model of SmolLM2-135M's shape and ``bench_measure.py``'s
synthetic pool and eval set (nothing downloaded).

    python benchmarks/profile_measure.py --adapters 32 --out OUT_DIR            # on the GPU, about 3 minutes
    .venv/bin/python benchmarks/profile_measure.py --device cpu --preset tiny --adapters 2 --out /tmp/prof

Prints the wall time of two untimed-warm-up passes, then writes ``train_kK.txt`` and ``eval_kK.txt`` (the
profiler's tables, sorted by device time) to ``--out``. docs/measure.md reads the H200 tables of 2026-12-02.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_measure as bm  # noqa: E402

from harp.measure import MeasureConfig  # noqa: E402
from harp.measure.multi_lora import build_multi_model, evaluate_adapters, train_adapters  # noqa: E402
from harp.testing import save_random_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--adapters", type=int, default=32, help="K, adapters in one pass")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="smollm2-135m", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--out", required=True, help="folder for the profiler's tables")
    args = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    k, device, out = args.adapters, args.device, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    order = "cuda_time_total" if cuda else "cpu_time_total"

    config = MeasureConfig(steps=20, batch_size=16, max_length=128, dtype="bfloat16", eval_batch_size=32)
    with tempfile.TemporaryDirectory() as folder:
        model_dir = save_random_model(Path(folder) / "model", preset=args.preset)
        pool, evals = bm.synthetic(k * bm.PER_LEAF, 200, 0, 30)
        model = build_multi_model(model_dir, config, k, device)
        leaves = [pool.examples(np.arange(g * bm.PER_LEAF, (g + 1) * bm.PER_LEAF)) for g in range(k)]
        for _ in range(2):
            bm._sync(device)
            started = time.perf_counter()
            train_adapters(model, leaves, config, seeds=list(range(k)))
            bm._sync(device)
            trained = time.perf_counter()
            evaluate_adapters(model, evals, config, k)
            bm._sync(device)
            done = time.perf_counter()
            print(f"K={k}: train {trained - started:.3f} s ({(trained - started) / k:.3f} a leaf), "
                  f"eval {done - trained:.3f} s ({(done - trained) / k:.3f} a leaf)", flush=True)  # fmt: skip
        for name, work in (
            ("train", lambda: train_adapters(model, leaves, config, seeds=list(range(k)))),
            ("eval", lambda: evaluate_adapters(model, evals, config, k)),
        ):
            with profile(activities=activities) as prof:
                work()
                bm._sync(device)
            table = prof.key_averages().table(sort_by=order, row_limit=35)
            (out / f"{name}_k{k}.txt").write_text(table + "\n", encoding="utf-8")
            print(table, flush=True)


if __name__ == "__main__":
    main()
