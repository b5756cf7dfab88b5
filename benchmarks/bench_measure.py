r"""Stage 1b throughput: leaves measured per device-minute, one adapter at a time vs several at once.

Builds a random model of SmolLM2-135M's shape (nothing downloaded), a synthetic pool and eval set, a store with
``--leaves`` leaves of 32 examples, then measures them in the same run, each mode on a fresh store:

(a) ``one_at_a_time``: in-process, one peft adapter per leaf (the reference; it measures only the first
    ``--baseline-leaves`` leaves, since its rate per leaf is steady and it is the slowest mode);
(b) ``process_xW``: the process executor, ``--workers-per-device`` W adapters at once, one per process;
(c) ``batched_xK``: in-process, ``--adapters-per-batch`` K adapters side by side in one forward/backward pass;
(d) ``batched_xK_process_xP``: P processes (``--batched-workers``; 0 skips it), each with K adapters.

Prints each mode's leaves per device-minute (the measuring time, without model loading and base scoring) and
its ratio to (a) (goal on an H200: 5x). On the H200 (about 4 minutes with the smollm2-135m preset; each mode
also prints a line to stderr as it finishes, so a cut-short run still reports the modes it completed):

    python benchmarks/bench_measure.py --device cuda --leaves 24 --baseline-leaves 8 --workers-per-device 6 \
        --adapters-per-batch 8 --batched-workers 2

Smoke test on a CPU (about a minute on 2 cores; the numbers mean nothing):

    python benchmarks/bench_measure.py --preset tiny --device cpu --leaves 4 --baseline-leaves 2 \
        --workers-per-device 2 --adapters-per-batch 2 --batched-workers 2 --steps 4 --questions 40
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    parser.add_argument("--leaves", type=int, default=24, help="Leaves measured by modes (b)-(d).")
    parser.add_argument("--baseline-leaves", type=int, default=8, help="Leaves measured by mode (a).")
    parser.add_argument("--workers-per-device", type=int, default=6, help="W of mode (b).")
    parser.add_argument("--adapters-per-batch", type=int, default=8, help="K of modes (c) and (d).")
    parser.add_argument("--batched-workers", type=int, default=2, help="P of mode (d); 0 skips it.")
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
    k, w, p = args.adapters_per_batch, args.workers_per_device, args.batched_workers
    modes: list[tuple[str, int, dict[str, Any]]] = [
        ("one_at_a_time", args.baseline_leaves, {"executor": "inprocess", "devices": [args.device]}),
        (
            f"process_x{w}",
            args.leaves,
            {"executor": "process", "devices": [args.device], "workers_per_device": w},
        ),
        (
            f"batched_x{k}",
            args.leaves,
            {"executor": "inprocess", "devices": [args.device], "adapters_per_batch": k},
        ),
    ]
    if p > 0:
        modes.append(
            (
                f"batched_x{k}_process_x{p}",
                args.leaves,
                {"executor": "process", "devices": [args.device], "workers_per_device": p,
                 "adapters_per_batch": k},
            )
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        model = save_random_model(root / "model", preset=args.preset)
        pool, evals = synthetic(args.leaves * 32, args.questions, seed=0)
        results: dict[str, dict[str, float]] = {}
        for name, n_leaves, kwargs in modes:
            store = make_store(root / f"{name}.duckdb", args.leaves, 32)
            started = time.perf_counter()
            report = run_measurements(store, model, pool, evals, list(range(n_leaves)), config, **kwargs)
            total = time.perf_counter() - started
            measuring = total - report.timings.get("start_s", 0.0) - report.timings.get("base_s", 0.0)
            results[name] = {
                "leaves": len(report.measured),
                "seconds_total": round(total, 2),
                "seconds_measuring": round(measuring, 2),
                "leaves_per_device_minute": round(60 * len(report.measured) / measuring, 2),
            }
            print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
        reference = results["one_at_a_time"]["leaves_per_device_minute"]
        for result in results.values():
            result["ratio_to_one_at_a_time"] = round(result["leaves_per_device_minute"] / reference, 2)
        print(json.dumps({"preset": args.preset, "device": args.device, **results}, indent=2))


if __name__ == "__main__":
    main()
