"""The next GPU run after round 3: is a finetune reproducible, and are the planted harmful regions harmful?

Round 3 (README "Round 3", ``benchmarks/signal_proof.py``) found the same subset with the same seed scoring 0.375
and 0.330 when finetuned in two batches of adapters, and the planted harmful regions measuring no lower than clean
ones. Both have to be settled before another selection experiment means anything. One GPU process, resumable:

    python benchmarks/noise_proof.py gpu --model SMOLLM2_DIR --work WORK     # about 8 GPU-minutes on an H200
    python benchmarks/noise_proof.py report --work WORK

Steps:

- ``repeat``: one subset (random, 1,000 examples, seed 0, the finetune config of rounds 1-3) finetuned 8 times
  with the same seed: twice in each of 4 groups of 8 adapters, at other places and beside other subsets (random
  subsets of other seeds), under the rounds' LoRA dropout 0.05 (its masks come from one stream for the whole
  batch, :mod:`harp.measure.multi_lora`) and again under dropout 0. The report gives the spread of the 8 test scores,
  and of the pairs that shared a group: what the neighbours and the place cost, with and without dropout.
- ``harm``: 5 seeds of a background (1,000 random examples, none from the planted sources) plus 600 examples of
  one kind: the wrong-answer arithmetic, clean arithmetic (the same four operations), the wrong-option MMLU
  questions, clean MMLU questions, or 600 random examples; plus the background alone. Dropout 0. The report gives
  each kind's paired difference (by seed) to its clean twin and to the random 600, on the math and the MMLU
  domains, proxy and test, with 95 % t intervals: whether a planted region hurts, and by how much.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mixture_proof as mp  # noqa: E402

TARGET_BUDGET, TARGET_SEED = 1000, 0
GROUPS, GROUP_SIZE = 4, 8
DROPOUTS = (0.05, 0.0)
HARM_SEEDS = (0, 1, 2, 3, 4)
BACKGROUND, ADDED = 1000, 600
ARITHMETIC = ("math/add", "math/sub", "math/mul", "math/div")
KINDS = {  # kind: sources its 600 examples are drawn from (None: any source but the planted ones)
    "wrong-arithmetic": ("harmful/wrong-arithmetic",),
    "clean-arithmetic": ARITHMETIC,
    "wrong-option": ("harmful/wrong-option",),
    "clean-mmlu": ("mmlu/humanities", "mmlu/other", "mmlu/social", "mmlu/stem"),
    "random": None,
}
PAIRS = (("wrong-arithmetic", "clean-arithmetic"), ("wrong-option", "clean-mmlu"),
         ("wrong-arithmetic", "random"), ("wrong-option", "random"))  # fmt: skip


def repeat_jobs(n_pool: int) -> list[dict[str, Any]]:
    """Groups of GROUP_SIZE: the target twice (at places g and g + 4), neighbours of other seeds elsewhere."""
    target = mp.random_subset(n_pool, TARGET_BUDGET, TARGET_SEED)
    jobs = []
    for g in range(GROUPS):
        places = {g: "a", (g + GROUP_SIZE // 2) % GROUP_SIZE: "b"}
        for place in range(GROUP_SIZE):
            if place in places:
                jobs.append({"method": f"target:g{g}{places[place]}", "budget": TARGET_BUDGET, "seed": TARGET_SEED,
                             "points": target, "group": g})  # fmt: skip
            else:
                seed = 100 + g * GROUP_SIZE + place
                jobs.append({"method": f"neighbour:g{g}p{place}", "budget": TARGET_BUDGET, "seed": seed,
                             "points": mp.random_subset(n_pool, TARGET_BUDGET, seed), "group": g})  # fmt: skip
    return jobs


def harm_jobs(sources: list[str | None]) -> list[dict[str, Any]]:
    source = np.asarray([str(s or "") for s in sources], dtype=object)
    planted = np.array([s.startswith("harmful/") for s in source])
    clean = np.flatnonzero(~planted)
    jobs = []
    for seed in HARM_SEEDS:
        rng = np.random.default_rng([7, seed])
        background = rng.choice(clean, size=BACKGROUND, replace=False)
        rest = np.setdiff1d(np.arange(source.size), background)
        jobs.append({"method": "background", "budget": BACKGROUND, "seed": seed,
                     "points": np.sort(background).tolist(), "group": f"harm{seed // 3}"})  # fmt: skip
        for kind, kinds in KINDS.items():
            pick = rest[~planted[rest]] if kinds is None else rest[np.isin(source[rest], kinds)]
            added = rng.choice(pick, size=min(ADDED, pick.size), replace=False)
            jobs.append({"method": kind, "budget": BACKGROUND + ADDED, "seed": seed,
                         "points": np.sort(np.concatenate([background, added])).tolist(), "group": f"harm{seed // 3}"})  # fmt: skip
    return jobs


def gpu_command(args: argparse.Namespace) -> None:
    from harp.data import load_training_pool

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = mp.Log(work / "log.txt")
    global TARGET_BUDGET, BACKGROUND, ADDED, HARM_SEEDS
    if args.smoke:
        mp._smoke(work)
        TARGET_BUDGET, BACKGROUND, ADDED, HARM_SEEDS = 40, 30, 20, (0, 1)
    # a repeat group, or a harm group: 3 seeds of every kind and the background
    mp.ADAPTERS = max(GROUP_SIZE, 3 * (len(KINDS) + 1))
    pool = load_training_pool(mp.RUN / "pool.jsonl")
    started = time.perf_counter()
    for dropout in DROPOUTS:
        log(f"== repeat, lora_dropout {dropout}")
        mp.run_finetunes(args.model, repeat_jobs(len(pool)), work / f"repeat_dropout{dropout:g}.json",
                         mp.finetune_config(args.smoke, lora_dropout=dropout), log, args.device)  # fmt: skip
    log("== harm, lora_dropout 0")
    harm = mp.finetune_config(args.smoke, lora_dropout=0.0)
    mp.run_finetunes(args.model, harm_jobs(list(pool.sources)), work / "harm.json", harm, log, args.device)
    log(f"all steps done in {time.perf_counter() - started:.0f}s")


def _domain_means(result: dict[str, Any], domains: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
    out = {}
    math = np.array([n.startswith("math") for n in names])
    for split in ("eval", "test"):
        scores = np.asarray(result["scores"][split], dtype=np.float64)
        per = np.array([scores[domains[split] == d].mean() for d in range(len(names))])
        out[split] = {
            "all": float(per.mean()),
            "math": float(per[math].mean()),
            "mmlu": float(per[~math].mean()),
        }
    return out


def report_command(args: argparse.Namespace) -> None:
    work = Path(args.work)
    for dropout in DROPOUTS:
        path = work / f"repeat_dropout{dropout:g}.json"
        if not path.exists():
            continue
        record = mp._read_json(path)
        domains = {k: np.asarray(v) for k, v in record["domains"].items()}
        means = {r["method"]: _domain_means(r, domains, record["domain_names"])["test"]["all"]
                 for r in record["results"] if r["method"].startswith("target:")}  # fmt: skip
        values = np.array(list(means.values()))
        pairs = [abs(means[f"target:g{g}a"] - means[f"target:g{g}b"]) for g in range(GROUPS)
                 if f"target:g{g}a" in means and f"target:g{g}b" in means]  # fmt: skip
        print(f"lora_dropout {dropout:g}: the same subset and seed finetuned {values.size} times, test mean "
              f"{values.mean():.4f}, sd {values.std(ddof=1):.4f}, range {values.min():.4f}-{values.max():.4f}; "
              f"within a group |difference| {', '.join(f'{p:.4f}' for p in pairs)}")  # fmt: skip
    path = work / "harm.json"
    if not path.exists():
        return
    record = mp._read_json(path)
    domains = {k: np.asarray(v) for k, v in record["domains"].items()}
    table = {(r["method"], r["seed"]): _domain_means(r, domains, record["domain_names"])
             for r in record["results"] if r["method"] != "base"}  # fmt: skip
    print("\n| kind minus | split | domains | paired difference (95 % interval) | seeds |")
    print("|---|---|---|---|---:|")
    for kind, other in PAIRS + tuple((k, "background") for k in KINDS):
        seeds = [s for s in HARM_SEEDS if (kind, s) in table and (other, s) in table]
        if len(seeds) < 2:
            continue
        for split in ("test", "eval"):
            for part in ("math", "mmlu"):
                diff = np.array(
                    [table[(kind, s)][split][part] - table[(other, s)][split][part] for s in seeds]
                )
                mean, low, high = mp.t_interval(diff)
                print(
                    f"| {kind} - {other} | {split} | {part} | {mean:+.4f} [{low:+.4f}, {high:+.4f}] | {len(seeds)} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gpu = commands.add_parser("gpu", help="the repeat and harm finetunes (GPU)")
    gpu.add_argument("--model", required=True)
    gpu.add_argument("--work", required=True)
    gpu.add_argument("--smoke", action="store_true", help="a CPU-sized rehearsal with a tiny model")
    gpu.add_argument("--device", default="cuda")
    report = commands.add_parser("report", help="the tables")
    report.add_argument("--work", required=True)
    args = parser.parse_args()
    {"gpu": gpu_command, "report": report_command}[args.command](args)


if __name__ == "__main__":
    main()
