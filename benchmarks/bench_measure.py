r"""Stage 1b throughput: leaves measured per device-minute and model FLOP utilisation, one adapter at a time vs
several at once.

Builds a random model of SmolLM2-135M's shape (nothing downloaded), a synthetic pool (leaves of 32 examples) and a
multiple-choice eval set, then measures leaves in the same run, each mode with a fresh executor:

(a) ``one_at_a_time``: in-process, one peft adapter per leaf (the reference; it measures only the first
    ``--baseline-leaves`` leaves, since its rate per leaf is steady and it is the slowest mode);
(a') ``one_at_a_time_straightforward_eval``: the same with the evaluation as it was before harp/measure/loglik.py (whole
    float32 logits at every position, every option on its own sequence), the loop the earlier ratios (4.94x
    with 8 batched adapters) were measured against (``--no-straightforward-baseline`` skips it);
(b) ``process_xW``: the process executor, ``--workers-per-device`` W adapters at once, one per process (0 skips);
(c) ``batched_xK``: in-process, K adapters side by side in one forward/backward pass, for every K of
    ``--adapters-per-batch`` (a comma list: ``8,16,32``; a K that runs out of device memory is reported as such
    and the run goes on);
(d) ``batched_xK_process_xP``: P processes (``--batched-workers``; 0 skips it), each with the first K.

For each mode: leaves per device-minute (the measuring time, without model loading, base scoring and one
warm-up leaf), its ratio to (a) and to (a'), the seconds per leaf spent training and evaluating, and the model
FLOPs it achieved: a measurement costs ``6 N T_train + 2 N T_eval`` FLOPs, N the model's parameters (the tied
embedding / LM head counted once; attention scores left out, as in the usual 6N rule), T_train the real
(non-padding) tokens the leaf trains on, T_eval the tokens the evaluation runs forward (each distinct kept
question context once, plus every option's tokens: the evaluation shares a question's context across its
options, see harp/measure/loglik.py). TFLOP/s = leaves per second x
FLOPs per leaf; MFU = TFLOP/s / ``--peak-tflops`` (989: the H200's dense bf16 peak). The FLOPs count what a
measurement needs, not what an implementation spends (padding, filler rows, whole-vocabulary logits): a faster
path never raises its MFU by doing more work.

``--eval-compare`` (on by default) also times one evaluation of the eval set, for one adapter and for the
largest K, by the straightforward path (whole float32 logits at every position; tests/reference_eval.py), with
the LM head at the scored positions only, and with options sharing their question's context: what each
evaluation change buys, with the largest score difference against the straightforward path.

No store and no duckdb: the modes drive the executors of harp.measure directly (the store's writes are not
what is measured). On the H200 (estimated 4-5 minutes; the command of docs/measure.md):

    python benchmarks/bench_measure.py --device cuda --leaves 64 --baseline-leaves 8 --workers-per-device 0 \
        --adapters-per-batch 8,16,32 --batched-workers 0

The synthetic questions have 30 words (``--question-words``), which the character-level tokenizer makes longer
than ``--max-length`` 128: every option cuts its question at its own place, so options of different lengths do
not share a context. ``--question-words 12`` makes them fit, as MMLU questions fit 256 BPE tokens.

Smoke test on a CPU (about a minute on 2 cores; the numbers mean nothing):

    python benchmarks/bench_measure.py --preset tiny --device cpu --leaves 4 --baseline-leaves 2 \
        --workers-per-device 2 --adapters-per-batch 2,4 --batched-workers 2 --steps 4 --questions 40
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference_eval import reference_loglik_table  # noqa: E402

from harp.data import EvalSet, TrainingPool  # noqa: E402
from harp.measure import (  # noqa: E402
    LeafTask,
    MeasureConfig,
    build_data,
    make_executor,
    training_plan,
)
from harp.measure.evaluation import question_context  # noqa: E402
from harp.measure.tokens import encode  # noqa: E402
from harp.testing import save_random_model  # noqa: E402

PER_LEAF = 32


def synthetic(
    n_points: int, n_questions: int, seed: int, question_words: int = 30
) -> tuple[TrainingPool, EvalSet]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "tau", "rho"]
    prompts = [" ".join(rng.choice(words, 24)) for _ in range(n_points)]
    responses = [" ".join(rng.choice(words, 40)) for _ in range(n_points)]
    pool = TrainingPool(prompts, responses, [str(i) for i in range(n_points)], [None] * n_points)
    domain = rng.integers(0, 4, n_questions)
    choices = [[" ".join(rng.choice(words, 3)) for _ in range(4)] for _ in range(n_questions)]
    evals = EvalSet(
        kinds=["choice"] * n_questions,
        prompts=[" ".join(rng.choice(words, question_words)) for _ in range(n_questions)],
        choices=choices,
        answers=[int(a) for a in rng.integers(0, 4, n_questions)],
        domain=domain.astype(np.int64),
        domain_names=[f"domain{d}" for d in range(4)],
    )
    return pool, evals


# ----------------------------------------------------------------------------------------------------------------
# Model FLOPs of a measurement


def parameter_count(model: Path) -> int:
    """N: the parameters of the base model (a tied embedding and LM head counted once)."""
    from transformers import AutoModelForCausalLM

    return int(AutoModelForCausalLM.from_pretrained(str(model)).num_parameters())


def train_tokens(tokenizer: Any, pool: TrainingPool, leaf: int, config: MeasureConfig) -> int:
    """Real tokens the leaf's adapter trains on: every row of every step of its plan, without padding."""
    examples = pool.examples(np.arange(leaf * PER_LEAF, (leaf + 1) * PER_LEAF))
    data = build_data(tokenizer, examples, config)
    plan = training_plan(config, len(data.input_ids), leaf)
    return int(sum(len(data.input_ids[k]) for step in plan for k in step))


def eval_tokens(tokenizer: Any, eval_set: EvalSet, config: MeasureConfig) -> int:
    """Tokens the evaluation of the (multiple-choice) eval set runs forward: each distinct kept context of a
    question once (options cut the same way share it), plus every option's tokens; as harp.measure.loglik runs them."""
    total = 0
    for i, prompt in enumerate(eval_set.prompts):
        context = encode(tokenizer, question_context(prompt), special=True)
        kept: dict[int, int] = {}
        for option in eval_set.choices[i]:
            continuation = encode(tokenizer, " " + option, special=False)[: config.max_length - 1]
            start = max(0, len(context) + len(continuation) - config.max_length)
            kept[start] = kept.get(start, 0) + 1
            total += len(continuation)
        total += sum(len(context) - start for start in kept)
    return total


# ----------------------------------------------------------------------------------------------------------------
# Modes


def _is_out_of_memory(error: BaseException) -> bool:
    return "out of memory" in str(error).lower()


def _device_memory(device: str) -> tuple[Callable[[], None], Callable[[], float | None]]:
    """(reset, peak GB) of the device's allocator for in-process modes; peak None on the CPU."""
    import torch

    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return (lambda: None), (lambda: None)

    def reset() -> None:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    return reset, lambda: round(torch.cuda.max_memory_allocated() / 1e9, 1)


def run_mode(
    model: Path,
    pool: TrainingPool,
    eval_set: EvalSet,
    config: MeasureConfig,
    n_leaves: int,
    kwargs: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    reset, peak = _device_memory(device)
    reset()
    executor = kwargs.pop("executor")
    straightforward = kwargs.pop("straightforward_eval", False)
    engine = make_executor(executor, str(model), eval_set, config, **kwargs)
    try:
        if straightforward:  # in-process only: the patch is this process's
            _patch_eval("straightforward")
        engine.base()
        # Warm-up (kernel choice, allocator growth), not timed: one leaf, a whole warm-up for one adapter at a
        # time and a partial one for K adapters, so the reference is never the mode that pays for it.
        list(engine.run([LeafTask(0, pool.examples(np.arange(PER_LEAF)))]))
        tasks = (
            LeafTask(g, pool.examples(np.arange(g * PER_LEAF, (g + 1) * PER_LEAF))) for g in range(n_leaves)
        )
        started = time.perf_counter()
        results = list(engine.run(tasks))
        measuring = time.perf_counter() - started
    finally:
        engine.close()
        _patch_eval("fast")
    return {
        "leaves": len(results),
        "seconds_measuring": round(measuring, 2),
        "leaves_per_device_minute": round(60 * len(results) / measuring, 2),
        "train_s_per_leaf": round(float(np.mean([r.timings["train_s"] for r in results])), 3),
        "eval_s_per_leaf": round(float(np.mean([r.timings["eval_s"] for r in results])), 3),
        "peak_memory_gb": peak() if executor == "inprocess" else None,  # workers' memory is not seen here
    }


def eval_compare(
    model: Path, eval_set: EvalSet, config: MeasureConfig, k: int, device: str
) -> dict[str, Any]:
    """One evaluation of the eval set by each path, for K adapters (K = 1: the peft model)."""
    from harp.measure import build_model, evaluate

    if k > 1:
        from harp.measure.multi_lora import build_multi_model, evaluate_adapters

        multi = build_multi_model(str(model), config, k, device)

        def score() -> np.ndarray:
            return evaluate_adapters(multi, eval_set, config, k)
    else:
        single = build_model(str(model), config, device)

        def score() -> np.ndarray:
            return evaluate(single, eval_set, config)[None]

    paths = {
        "straightforward": "straightforward",
        "lm_head_at_scored_positions": "unshared",
        "and_shared_contexts": "fast",
    }
    out: dict[str, Any] = {}
    reference: np.ndarray | None = None
    for name, path in paths.items():
        _patch_eval(path)
        try:
            score()  # warm-up (kernels, allocator)
            _sync(device)
            started = time.perf_counter()
            scores = score()
            _sync(device)
            seconds = time.perf_counter() - started
            reference = scores if reference is None else reference
            out[name] = {"seconds": round(seconds, 3),
                         "max_score_difference": float(np.abs(scores - reference).max())}  # fmt: skip
        except RuntimeError as error:
            if not _is_out_of_memory(error):
                raise
            out[name] = {"error": "out of device memory"}
            _free(device)
        finally:
            _patch_eval("fast")
    return out


_FAST: dict[str, Any] = {}


def _patch_eval(path: str) -> None:
    """Score options by ``path``: "fast" (harp.measure.loglik as it is), "unshared" (the LM head at the scored
    positions, every pair whole) or "straightforward" (whole float32 logits; tests/reference_eval.py)."""
    import harp.measure.evaluation
    import harp.measure.loglik

    if not _FAST:
        _FAST.update(
            table=harp.measure.evaluation.loglik_table, logliks=harp.measure.loglik.continuation_logliks
        )
    fast_logliks = _FAST["logliks"]

    def unshared(*args: Any, **kwargs: Any) -> np.ndarray:
        return fast_logliks(*args, **kwargs, share=False)

    harp.measure.evaluation.loglik_table = (
        reference_loglik_table if path == "straightforward" else _FAST["table"]
    )
    harp.measure.loglik.continuation_logliks = unshared if path == "unshared" else fast_logliks


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="smollm2-135m", choices=["tiny", "smollm2-135m"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--leaves", type=int, default=24, help="Leaves measured by modes (b)-(d).")
    parser.add_argument("--baseline-leaves", type=int, default=8, help="Leaves measured by mode (a).")
    parser.add_argument("--workers-per-device", type=int, default=6, help="W of mode (b); 0 skips it.")
    parser.add_argument(
        "--adapters-per-batch",
        default="8",
        help="The K of modes (c), a comma list (8,16,32); (d) takes the first.",
    )
    parser.add_argument("--batched-workers", type=int, default=2, help="P of mode (d); 0 skips it.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument(
        "--eval-batch-size", type=int, default=64, help="Pairs per forward pass, per adapter."
    )
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="The device's dense peak for --dtype, for MFU (989: H200 bf16).")  # fmt: skip
    parser.add_argument("--eval-compare", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--straightforward-baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="Also run (a) with the straightforward evaluation (whole float32 logits), the loop "
                             "the earlier ratios were measured against.")  # fmt: skip
    parser.add_argument("--question-words", type=int, default=30,
                        help="Words a question (30: every question is cut at max_length 128, so few options "
                             "share a context; 12: they fit, as MMLU questions do at 256 tokens).")  # fmt: skip
    args = parser.parse_args()
    config = MeasureConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        max_length=args.max_length,
        dtype=args.dtype,
        eval_batch_size=args.eval_batch_size,
    )
    ks = [int(k) for k in str(args.adapters_per_batch).split(",") if k.strip()]
    w, p, device = args.workers_per_device, args.batched_workers, args.device
    modes: list[tuple[str, int, dict[str, Any]]] = [
        ("one_at_a_time", args.baseline_leaves, {"executor": "inprocess", "devices": [device]})
    ]
    if args.straightforward_baseline:
        modes.append(("one_at_a_time_straightforward_eval", args.baseline_leaves,
                      {"executor": "inprocess", "devices": [device], "straightforward_eval": True}))  # fmt: skip
    if w > 0:
        modes.append((f"process_x{w}", args.leaves,
                      {"executor": "process", "devices": [device], "workers_per_device": w}))  # fmt: skip
    for k in ks:
        modes.append((f"batched_x{k}", args.leaves,
                      {"executor": "inprocess", "devices": [device], "adapters_per_batch": k}))  # fmt: skip
    if p > 0 and ks:
        modes.append((f"batched_x{ks[0]}_process_x{p}", args.leaves,
                      {"executor": "process", "devices": [device], "workers_per_device": p,
                       "adapters_per_batch": ks[0]}))  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        model = save_random_model(Path(folder) / "model", preset=args.preset)
        pool, evals = synthetic(args.leaves * PER_LEAF, args.questions, 0, args.question_words)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model))
        n = parameter_count(model)
        per_leaf_train = float(
            np.mean([train_tokens(tokenizer, pool, g, config) for g in range(args.leaves)])
        )
        per_leaf_eval = float(eval_tokens(tokenizer, evals, config))
        flops_per_leaf = 6 * n * per_leaf_train + 2 * n * per_leaf_eval
        flops = {
            "parameters": n,
            "train_tokens_per_leaf": per_leaf_train,
            "eval_tokens_per_leaf": per_leaf_eval,
            "tflop_per_leaf": round(flops_per_leaf / 1e12, 3),
            "train_share": round(6 * n * per_leaf_train / flops_per_leaf, 3),
            "peak_tflops": args.peak_tflops,
            "rule": "6 N T_train + 2 N T_eval per leaf; MFU = achieved TFLOP/s / peak_tflops",
        }
        print(f"flops: {json.dumps(flops)}", file=sys.stderr, flush=True)
        results: dict[str, dict[str, Any]] = {}
        for name, n_leaves, kwargs in modes:
            try:
                result = run_mode(model, pool, evals, config, n_leaves, dict(kwargs), device)
            except RuntimeError as error:
                if not _is_out_of_memory(error):
                    raise
                result = {"error": "out of device memory"}
                _free(device)
            if "leaves_per_device_minute" in result:
                tflops = result["leaves_per_device_minute"] / 60 * flops_per_leaf / 1e12
                result["achieved_tflops"] = float(f"{tflops:.3g}")
                result["mfu_percent"] = float(f"{100 * tflops / args.peak_tflops:.3g}")
            results[name] = result
            print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
        reference = results["one_at_a_time"].get("leaves_per_device_minute")
        before = results.get("one_at_a_time_straightforward_eval", {}).get("leaves_per_device_minute")
        for result in results.values():
            if reference and "leaves_per_device_minute" in result:
                result["ratio_to_one_at_a_time"] = round(result["leaves_per_device_minute"] / reference, 2)
            if before and "leaves_per_device_minute" in result:
                result["ratio_to_straightforward"] = round(result["leaves_per_device_minute"] / before, 2)
        compare: dict[str, Any] = {}
        if args.eval_compare:
            fitted = [k for k in ks if "error" not in results[f"batched_x{k}"]]
            for k in [1, *([max(fitted)] if fitted else [])]:
                try:
                    compare[f"k{k}"] = eval_compare(model, evals, config, k, device)
                except RuntimeError as error:
                    if not _is_out_of_memory(error):
                        raise
                    compare[f"k{k}"] = {"error": "out of device memory"}
                    _free(device)
                print(f"eval_compare k{k}: {json.dumps(compare[f'k{k}'])}", file=sys.stderr, flush=True)
        print(json.dumps({"preset": args.preset, "device": device, "config": dataclasses.asdict(config),
                          "flops": flops, "modes": results, "eval_compare": compare}, indent=2))  # fmt: skip
        print_table(results, flops, compare, args)  # last, so that the tail of a log is the table


def print_table(
    results: dict[str, dict[str, Any]],
    flops: dict[str, Any],
    compare: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    print(
        f"Stage 1b, {args.preset} on {args.device} ({args.dtype}): {args.steps} steps of {args.batch_size} x "
        f"{args.max_length} tokens, {args.questions} questions; {flops['tflop_per_leaf']} TFLOP a leaf "
        f"({flops['train_share']:.0%} training); MFU against {args.peak_tflops:g} TFLOP/s. ratio: to "
        "one_at_a_time; vs old: to one_at_a_time_straightforward_eval (whole float32 logits)"
    )
    columns = ["mode", "leaves/min", "ratio", "vs old", "TFLOP/s", "MFU %", "train s", "eval s", "peak GB"]
    rows = [columns]
    for name, r in results.items():
        if "error" in r:
            rows.append([name, r["error"]] + [""] * (len(columns) - 2))
            continue
        ratio, old = r.get("ratio_to_one_at_a_time"), r.get("ratio_to_straightforward")
        rows.append([
            name,
            f"{r['leaves_per_device_minute']:.1f}",
            "" if ratio is None else f"{ratio:.2f}x",
            "" if old is None else f"{old:.2f}x",
            f"{r['achieved_tflops']:.3g}",
            f"{r['mfu_percent']:.3g}",
            f"{r['train_s_per_leaf']:.3f}",
            f"{r['eval_s_per_leaf']:.3f}",
            "" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}",
        ])  # fmt: skip
    widths = [max(len(row[c]) for row in rows) for c in range(len(columns))]
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) if c == 0 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for k, paths in compare.items():
        if "error" in paths:
            print(f"one evaluation, {k}: {paths['error']}")
            continue
        base = paths.get("straightforward", {}).get("seconds")
        parts = []
        for name, value in paths.items():
            if "error" in value:
                parts.append(f"{name} {value['error']}")
            else:
                speed = f" ({base / value['seconds']:.2f}x)" if base and value["seconds"] else ""
                parts.append(f"{name} {value['seconds']:.3f} s{speed}")
        print(f"one evaluation, {k}: " + ", ".join(parts))
    print()


if __name__ == "__main__":
    main()
