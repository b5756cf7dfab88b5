"""Stage 1b throughput: leaves measured per device-minute, one adapter at a time vs several at once.

Builds a random model of SmolLM2-135M's shape (nothing downloaded), a synthetic pool and eval set, a store with
``--leaves`` leaves, then measures them twice in the same run: in-process (the one-adapter-at-a-time loop) and
with the process executor (``--workers-per-device`` adapters at once on each device). Prints both rates and their
ratio (goal on an H200: 5x).

    python benchmarks/bench_measure.py --device cuda --workers-per-device 6 --leaves 24
    python benchmarks/bench_measure.py --preset tiny --device cpu --leaves 4 --workers-per-device 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from harp.data import EvalSet, TrainingPool
from harp.measure import MeasureConfig, run_measurements, save_random_model
from harp.store import Store, points_from_members


def synthetic(n_points: int, n_questions: int, seed: int) -> tuple[TrainingPool, EvalSet]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "tau", "rho"]
    prompts = [" ".join(rng.choice(words, 24)) for _ in range(n_points)]
    responses = [" ".join(rng.choice(words, 40)) for _ in range(n_points)]
    pool = TrainingPool(prompts, responses, [str(i) for i in range(n_points)], [None] * n_points)
    domain = rng.integers(0, 4, n_questions)
    choices = [[" ".join(rng.choice(words, 3)) for _ in range(4)] for _ in range(n_questions)]
    evals = EvalSet(
        kinds=["choice"] * n_questions,
        prompts=[" ".join(rng.choice(words, 30)) for _ in range(n_questions)],
        choices=choices,
        answers=[int(a) for a in rng.integers(0, 4, n_questions)],
        domain=domain.astype(np.int64),
        domain_names=[f"domain{d}" for d in range(4)],
    )
    return pool, evals


def make_store(path: Path, n_leaves: int, per_leaf: int) -> Store:
    store = Store.create(path, overwrite=True)
    members = [np.arange(g * per_leaf, (g + 1) * per_leaf) for g in range(n_leaves)]
    store.write_tree(
        points_from_members(members), np.arange(n_leaves) // 2, np.zeros((n_leaves + 1) // 2, int), 1
    )
    return store


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="smollm2-135m", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--leaves", type=int, default=24)
    parser.add_argument("--workers-per-device", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    config = MeasureConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        dtype=args.dtype,
        eval_batch_size=64,
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = save_random_model(root / "model", preset=args.preset)
        pool, evals = synthetic(args.leaves * 32, args.questions, seed=0)
        leaves = list(range(args.leaves))
        results = {}
        for name, kwargs in (
            ("one_at_a_time", {"executor": "inprocess", "devices": [args.device]}),
            (
                f"{args.workers_per_device}_at_once",
                {
                    "executor": "process",
                    "devices": [args.device],
                    "workers_per_device": args.workers_per_device,
                },
            ),
        ):
            store = make_store(root / f"{name}.duckdb", args.leaves, 32)
            started = time.perf_counter()
            report = run_measurements(store, model, pool, evals, leaves, config, **kwargs)  # type: ignore[arg-type]
            total = time.perf_counter() - started
            measuring = total - report.timings.get("start_s", 0.0) - report.timings.get("base_s", 0.0)
            results[name] = {
                "seconds_total": round(total, 2),
                "seconds_measuring": round(measuring, 2),
                "leaves_per_device_minute": round(60 * len(report.measured) / measuring, 2),
            }
        rates = [result["leaves_per_device_minute"] for result in results.values()]
        print(
            json.dumps(
                {
                    "preset": args.preset,
                    "device": args.device,
                    **results,
                    "ratio": round(rates[1] / rates[0], 2),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
