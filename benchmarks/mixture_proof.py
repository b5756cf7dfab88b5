"""Do HARP's selections beat random once effects are measured inside a mixture? The demo experiment, with seeds.

Two steps, the first on a GPU machine (one process, resumable: rerun the same command after a stop):

    # 1. GPU: measure the demo's leaves in-mixture (representatives, hold-out leaves, two active rounds, seed
    #    repeats for the training noise), select under every variant at budgets 500/1,000/2,000, finetune every
    #    method with 5 seeds, and validate both protocols on random mixtures
    python benchmarks/mixture_proof.py gpu --model SMOLLM2_DIR --work WORK
    # 2. here: the tables (markdown, and JSON with --json)
    python benchmarks/mixture_proof.py report --work WORK

``ship`` re-makes data/demo from a GPU run; ``texts`` re-makes only its example texts (prompt, response and
source of every point, from ``run/pool.jsonl``) in place.

Protocols. ``base-anchored`` is the shipped demo's measurements (``data/demo``, 20 steps of 8 from the base
model); ``in-mixture`` trains a fresh adapter for one pass over a background of 1,000 random pool examples with
the leaf's examples inserted at seeded positions, minus the same run without the leaf (batch 16, lr 1e-3 and
LoRA dropout 0, the finetunes' settings).

Variants (each selects HARP-C and HARP-E; weights = its active domains, as ``harp select`` weighs them):

- ``ba``: base-anchored effects, empirical Bayes over every measured leaf (``harp infer``), any-leaf active rule;
- ``im``: in-mixture effects, empirical Bayes with the training noise of the seed repeats, any-leaf rule;
- ``im-fw``: the same effects, family-wise active rule (Sidak over the leaves);
- ``im-raw``: the raw measured in-mixture effects, unmeasured leaves excluded, ``im``'s weights.

Baselines: ``random`` (subset seed = finetune seed), ``embedding-centroid`` (the prefix of the shipped
``run/subsets.json`` list: the round-robin over domains makes a smaller budget's subset a prefix of a larger's),
``full-pool`` and ``base`` (no finetune). Every finetune: one pass over its subset in a seeded order (the seed
0..4), the demo's finetune config (LoRA r 16, batch 16, lr 1e-3), scored on the proxy eval and the held-out test
set (graded scores). HARP subsets smaller than the budget get fewer steps, as in the original demo.

A variant is chosen on the proxy set (mean proxy score over budgets and seeds); the report gives its test
scores with the paired difference to random (by seed) and its 95 % t interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
RUN = DEMO / "run"
BUDGETS = (500, 1000, 2000)
SEEDS = (0, 1, 2, 3, 4)
VARIANTS = ("ba", "im", "im-fw", "im-raw")
BASE_ANCHORED_KEY = "m1-27e7945473cde3f9"  # the shipped demo's measurements (data/demo/measurements.parquet)
ADAPTERS = 16  # K adapters side by side on the H200
NOISE_LEAVES = 16  # leaves measured again under seeds 1 and 2 for the training noise
NOISE_SEEDS = (1, 2)
ACTIVE_ROUNDS = 2
ACTIVE_K = 16
VALIDATE_IN_MIXTURE = 16  # mixtures, 2..40 leaves
VALIDATE_BASE_ANCHORED = 12
REPRESENTATIVES: int | None = None  # None: all of run/reps.txt
HOLD_OUT: int | None = None
EVAL_PATH = RUN / "eval.jsonl"
TEST_PATH = RUN / "test.jsonl"
FULL_POOL: int | None = None  # None: every example

IN_MIXTURE = {
    "protocol": "in-mixture",
    "background_size": 1000,
    "background_seed": 0,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "lora_r": 16,
    "lora_dropout": 0.0,
    "max_length": 256,
    "dtype": "bfloat16",
    "score": "probability",
    "eval_batch_size": 32,
}


def _smoke(work: Path) -> None:
    """Shrink the plan to a CPU-sized rehearsal of every step (a tiny model, few leaves, short eval sets)."""
    global BUDGETS, SEEDS, ADAPTERS, NOISE_LEAVES, ACTIVE_ROUNDS, ACTIVE_K, VALIDATE_IN_MIXTURE
    global VALIDATE_BASE_ANCHORED, EVAL_PATH, TEST_PATH, FULL_POOL, REPRESENTATIVES, HOLD_OUT
    BUDGETS, SEEDS, ADAPTERS, NOISE_LEAVES, ACTIVE_ROUNDS, ACTIVE_K = (40, 80, 120), (0, 1, 2, 3), 4, 2, 1, 2
    VALIDATE_IN_MIXTURE, VALIDATE_BASE_ANCHORED, FULL_POOL, REPRESENTATIVES, HOLD_OUT = 3, 2, 100, 6, 2
    IN_MIXTURE.update(background_size=30, max_length=64, dtype="float32")
    for name in ("eval", "test"):
        lines = (RUN / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        picked = lines[::50]  # every domain keeps a few questions
        (work / f"{name}.jsonl").write_text("\n".join(picked) + "\n", encoding="utf-8")
    EVAL_PATH, TEST_PATH = work / "eval.jsonl", work / "test.jsonl"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, data: Any) -> None:
    """Write by rename, so a stopped run never leaves half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data) + "\n", encoding="utf-8")
    temporary.replace(path)


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - self.started:6.0f}s] {message}"
        print(line, flush=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def stepper(state: dict[str, Any], state_path: Path, log: Log, only: str | None = None) -> Any:
    """``step(name, action)``: run ``action`` once, recording it as done (with its seconds) in ``state``, written
    to ``state_path`` after each step, so a stopped run resumes after its last finished step. ``only`` (names,
    comma-separated) skips the other steps."""

    def step(name: str, action: Any) -> None:
        if name in state["done"] or (only and name not in only.split(",")):
            return
        log(f"== {name}")
        started = time.perf_counter()
        action()
        state["done"].append(name)
        state["seconds"][name] = time.perf_counter() - started
        _write_json(state_path, state)
        log(f"== {name} done in {state['seconds'][name]:.0f}s")

    return step


# ----------------------------------------------------------------------------------------------------------------
# Subsets


def random_subset(n_pool: int, budget: int, seed: int) -> list[int]:
    rng = np.random.default_rng([seed, budget])
    return np.sort(rng.choice(n_pool, size=min(budget, n_pool), replace=False)).tolist()


def centroid_subset(budget: int) -> list[int]:
    shipped = _read_json(RUN / "subsets.json")
    # Since round 1 the shipped record holds one list per budget (each a prefix of the next).
    if "subsets" not in shipped:
        points = max(shipped["embedding-centroid"].values(), key=len)
    else:
        points = shipped["subsets"]["embedding-centroid"]
    if budget > len(points):
        raise SystemExit(f"run/subsets.json's embedding-centroid list holds {len(points)} points, < {budget}")
    return [int(p) for p in points[:budget]]


def harp_subsets(store: Any, mix_key: str, log: Log) -> dict[str, Any]:
    """Every variant's HARP-C and HARP-E subsets at every budget, with the weights and fits that made them."""
    import harp
    from harp.bayes import active_domains
    from harp.load import infer_effects
    from harp.objective import default_weights
    from harp.validate import measured_effects

    out: dict[str, Any] = {"budgets": list(BUDGETS), "variants": {}}
    fits: dict[str, Any] = {}
    for name, key in (("ba", BASE_ANCHORED_KEY), ("im", mix_key)):
        effects, active = infer_effects(store, config_key=key, progress=log)
        fits[name] = (effects, active)
    inputs = store.selection_inputs()
    names = inputs.domain_names
    for variant in VARIANTS:
        effects, active = fits["ba" if variant == "ba" else "im"]
        phi = effects.mean
        excluded = None
        if variant == "im-fw":
            active = active_domains(effects.mean, effects.sd, inputs.base, 1.645, rule="family-wise")
        if variant == "im-raw":
            raw = measured_effects(store, mix_key, inputs.n_leaves, len(names))
            measured = ~np.isnan(raw).all(axis=1)
            phi = np.nan_to_num(raw, nan=0.0)
            excluded = np.flatnonzero(~measured)
        weights = default_weights(active)
        record: dict[str, Any] = {
            "weights": dict(zip(names, weights.tolist(), strict=True)),
            "active": [n for n, a in zip(names, active, strict=True) if a],
            "subsets": {},
        }
        if effects.training_variance is not None and variant != "ba":
            record["training_sd"] = dict(zip(names, np.sqrt(effects.training_variance).tolist(), strict=True))
        for envelope in ("C", "E"):
            for budget in BUDGETS:
                chosen = harp.select(
                    phi,
                    inputs.base,
                    envelope=envelope,
                    weights=weights,
                    members=inputs.members,
                    budget=budget,
                    excluded=excluded,
                )
                record["subsets"][f"{envelope}@{budget}"] = chosen.points.tolist()
        out["variants"][variant] = record
        log(
            f"variant {variant}: active {record['active']}; sizes "
            + ", ".join(f"{k} {len(v)}" for k, v in record["subsets"].items())
        )
    return out


# ----------------------------------------------------------------------------------------------------------------
# Finetunes (batched adapters)


def finetune_jobs(subsets: dict[str, Any], n_pool: int) -> list[dict[str, Any]]:
    """Every (method, budget, seed) finetune, seeds 0-2 first, identical subsets listed once per seed."""
    jobs: list[dict[str, Any]] = []
    for block in (SEEDS[:3], SEEDS[3:]):
        for seed in block:
            for budget in BUDGETS:
                jobs.append({"method": "random", "budget": budget, "seed": seed,
                             "points": random_subset(n_pool, budget, seed)})  # fmt: skip
                jobs.append({"method": "embedding-centroid", "budget": budget, "seed": seed,
                             "points": centroid_subset(budget)})  # fmt: skip
                seen: dict[str, str] = {}
                for variant, record in subsets["variants"].items():
                    for envelope in ("C", "E"):
                        points = record["subsets"][f"{envelope}@{budget}"]
                        method = f"harp-{envelope.lower()}:{variant}"
                        text = json.dumps(points)
                        if text in seen:
                            jobs.append(
                                {"method": method, "budget": budget, "seed": seed, "same_as": seen[text]}
                            )
                            continue
                        seen[text] = method
                        jobs.append({"method": method, "budget": budget, "seed": seed, "points": points})
    for seed in SEEDS:
        jobs.append(
            {"method": "full-pool", "budget": None, "seed": seed, "points": list(range(FULL_POOL or n_pool))}
        )
    return jobs


def _job_id(job: dict[str, Any]) -> str:
    return f"{job['method']}|{job['budget']}|{job['seed']}"


def _groups(jobs: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Groups of up to ``size`` jobs of similar length (sorted by points within each seed block)."""
    ordered = sorted(jobs, key=lambda job: len(job["points"]))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def finetune_config(smoke: bool = False, **overrides: Any) -> Any:
    """The config every finetune of the experiments uses (``run/finetune_config.json``, evaluation batches of 32),
    with ``overrides``; a ``--smoke`` rehearsal's is CPU-sized (float32, 64 tokens)."""
    from harp.measure import MeasureConfig

    config = MeasureConfig.from_dict(
        {**_read_json(RUN / "finetune_config.json"), "eval_batch_size": 32, **overrides}
    )
    return dataclasses.replace(config, max_length=64, dtype="float32") if smoke else config


def run_finetunes(
    model_dir: str, jobs: list[dict[str, Any]], out_path: Path, config: Any, log: Log, device: str = "cuda"
) -> None:
    import torch

    from harp.data import load_eval_set, load_training_pool
    from harp.measure.multi_lora import (
        base_scores_multi,
        build_multi_model,
        evaluate_adapters,
        train_adapters,
    )

    pool = load_training_pool(RUN / "pool.jsonl")
    sets = {"eval": load_eval_set(EVAL_PATH), "test": load_eval_set(TEST_PATH)}
    record = _read_json(out_path) if out_path.exists() else {"results": []}
    record.update(
        config=config.to_dict(),
        domains={name: s.domain.tolist() for name, s in sets.items()},
        domain_names=sets["test"].domain_names,
    )
    done = {_job_id(result) for result in record["results"]}
    model = build_multi_model(model_dir, config, ADAPTERS, device)
    if "base|None|0" not in done:
        scores = {name: base_scores_multi(model, s, config).tolist() for name, s in sets.items()}
        record["results"].append({"method": "base", "budget": None, "seed": 0, "n_points": 0, "steps": 0,
                                  "scores": scores})  # fmt: skip
        _write_json(out_path, record)
    base = next(result for result in record["results"] if result["method"] == "base")
    for job in jobs:  # a variant that selects nothing: its model is the base model
        if "points" in job and not job["points"] and _job_id(job) not in done:
            record["results"].append(
                {**base, "method": job["method"], "budget": job["budget"], "seed": job["seed"]}
            )
    trained = [job for job in jobs if job.get("points") and _job_id(job) not in done]
    if any("group" in job for job in jobs):  # the caller chose the groups (and each job's place in its group)
        chosen: dict[Any, list[dict[str, Any]]] = {}
        for job in trained:
            chosen.setdefault(job["group"], []).append(job)
        groups: Iterable[list[dict[str, Any]]] = list(chosen.values())
    else:
        blocks = [[job for job in trained if job["seed"] in block] for block in (SEEDS[:3], SEEDS[3:])]
        long_jobs = [job for job in trained if job["method"] == "full-pool"]
        groups = (
            group
            for block in [[job for job in b if job["method"] != "full-pool"] for b in blocks] + [long_jobs]
            for group in _groups(block, ADAPTERS)
        )
    for group in groups:
        started = time.perf_counter()
        examples = [pool.subset(job["points"]) for job in group]
        steps = [max(1, math.ceil(len(job["points"]) / config.batch_size)) for job in group]
        losses = train_adapters(
            model, examples, config, seeds=[int(job["seed"]) for job in group], steps=steps
        )
        trained_s = time.perf_counter() - started
        scores = {name: evaluate_adapters(model, s, config, len(group)) for name, s in sets.items()}
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        for k, job in enumerate(group):
            record["results"].append(
                {
                    "method": job["method"],
                    "budget": job["budget"],
                    "seed": job["seed"],
                    "n_points": len(job["points"]),
                    "steps": steps[k],
                    "first_loss": losses[k][0],
                    "last_loss": losses[k][-1],
                    "scores": {name: table[k].tolist() for name, table in scores.items()},
                }
            )
        record.setdefault("groups", []).append(
            {
                "adapters": len(group),
                "max_steps": max(steps),
                "train_s": trained_s,
                "eval_s": time.perf_counter() - started - trained_s,
            }  # fmt: skip
        )
        _write_json(out_path, record)
        log(
            f"finetuned {len(group)} ({min(steps)}-{max(steps)} steps) in "
            f"{time.perf_counter() - started:.0f}s; {len(record['results'])} results"
        )
    # Jobs whose subset equals another method's: the same finetune, recorded under both names.
    by_id = {_job_id(result): result for result in record["results"]}
    for job in jobs:
        if "same_as" in job and _job_id(job) not in by_id:
            source = by_id.get(f"{job['same_as']}|{job['budget']}|{job['seed']}")
            if source is not None:
                record["results"].append({**source, "method": job["method"], "same_as": job["same_as"]})
    _write_json(out_path, record)


# ----------------------------------------------------------------------------------------------------------------
# The GPU pipeline


def gpu_command(args: argparse.Namespace) -> None:
    from harp.active import next_leaves
    from harp.data import load_eval_set, load_training_pool
    from harp.load import infer_effects
    from harp.measure import InProcessExecutor, MeasureConfig, background_points, run_measurements
    from harp.store import Store, import_parquet
    from harp.validate import default_sizes, validate_mixtures

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = Log(work / "log.txt")
    if args.smoke:
        _smoke(work)
    IN_MIXTURE["protocol"] = args.protocol
    state_path = work / "state.json"
    state: dict[str, Any] = _read_json(state_path) if state_path.exists() else {"done": [], "seconds": {}}

    step = stepper(state, state_path, log, args.only)

    store_path = work / "demo.duckdb"
    if not store_path.exists():
        import_parquet(DEMO, store_path)
    store = Store.open(store_path)
    pool = load_training_pool(RUN / "pool.jsonl")
    eval_set = load_eval_set(EVAL_PATH)
    config = MeasureConfig.from_dict(IN_MIXTURE)
    base_anchored = MeasureConfig.from_dict(_read_json(RUN / "measure_config.json"))
    finetune = finetune_config(args.smoke)
    if args.smoke:
        base_anchored = dataclasses.replace(base_anchored, max_length=64, dtype="float32")
    reps = [int(g) for g in (RUN / "reps.txt").read_text().split(",") if g.strip()][:REPRESENTATIVES]
    holdout = [int(g) for g in _read_json(RUN / "holdout.json")][:HOLD_OUT]
    engine: dict[str, Any] = {}

    def executor(seed: int = 0) -> Any:
        if seed not in engine:
            background = pool.subset(background_points(len(pool), config))
            engine[seed] = InProcessExecutor(
                args.model, eval_set, dataclasses.replace(config, seed=seed), device=args.device,
                adapters_per_batch=ADAPTERS, background=background,
            )  # fmt: skip
        return engine[seed]

    def measure(leaves: list[int], seed: int = 0) -> str:
        report = run_measurements(
            store, args.model, pool, eval_set, leaves, dataclasses.replace(config, seed=seed),
            executor=executor(seed), log=log,
        )  # fmt: skip
        state.setdefault("keys", {})[str(seed)] = report.config_key
        return report.config_key

    step("measure", lambda: measure(reps + holdout))

    def active_rounds() -> None:
        key = state["keys"]["0"]
        for round_ in range(ACTIVE_ROUNDS):
            infer_effects(store, config_key=key, hold_out=holdout, progress=log)
            taken = set(store.measured_leaves(key).tolist()) | set(holdout)
            proposed = next_leaves(store, ACTIVE_K, exclude=sorted(taken)).leaves
            log(f"active round {round_ + 1}: {proposed.tolist()}")
            measure([int(g) for g in proposed])

    step("active", active_rounds)

    def noise() -> None:
        for seed in NOISE_SEEDS:
            measure(reps[:NOISE_LEAVES], seed=seed)
            engine.pop(seed).close()

    step("noise", noise)
    mix_key = state["keys"]["0"]
    step("select", lambda: _write_json(work / "subsets.json", harp_subsets(store, mix_key, log)))
    for open_engine in engine.values():
        open_engine.close()
    engine.clear()

    def finetunes() -> None:
        subsets = _read_json(work / "subsets.json")
        run_finetunes(
            args.model, finetune_jobs(subsets, len(pool)), work / "finetunes.json", finetune, log, args.device
        )

    step("finetune", finetunes)

    def validate() -> None:
        for name, measure_config, key, count in (
            ("in-mixture", config, None, VALIDATE_IN_MIXTURE),
            (
                "base-anchored",
                dataclasses.replace(base_anchored, eval_batch_size=32),
                BASE_ANCHORED_KEY,
                VALIDATE_BASE_ANCHORED,
            ),
        ):
            measured = store.measured_leaves(key or mix_key).size
            report = validate_mixtures(
                store, args.model, pool, eval_set, measure_config, sizes=default_sizes(count, 40, measured),
                config_key=key, adapters_per_batch=ADAPTERS, devices=[args.device], log=log,
            )  # fmt: skip
            state.setdefault("validation", {})[name] = report.report
            _write_json(state_path, state)

    step("validate", validate)
    log("all steps done")


# ----------------------------------------------------------------------------------------------------------------
# The report (here)


def _mean_score(scores: list[float], domain: np.ndarray) -> float:
    values = np.asarray(scores, dtype=float)
    return float(np.mean([values[domain == d].mean() for d in np.unique(domain)]))


def summarise(finetunes: dict[str, Any]) -> dict[str, Any]:
    """Mean and sd over seeds of the mean domain score, per (method, budget) and split."""
    domains = {name: np.asarray(values) for name, values in finetunes["domains"].items()}
    table: dict[str, dict[str, Any]] = {}
    for result in finetunes["results"]:
        key = f"{result['method']}@{result['budget']}"
        entry = table.setdefault(key, {"method": result["method"], "budget": result["budget"], "seeds": {}})
        entry["seeds"][int(result["seed"])] = {
            split: _mean_score(result["scores"][split], domains[split]) for split in ("eval", "test")
        }
        entry["n_points"] = result["n_points"]
    for entry in table.values():
        for split in ("eval", "test"):
            values = np.array([v[split] for v in entry["seeds"].values()])
            entry[split] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1 else None,
                            "n": int(values.size)}  # fmt: skip
    return table


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95 % Student t interval (n - 1 degrees of freedom)."""
    from scipy import stats

    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def paired(table: dict[str, Any], method: str, other: str, split: str) -> dict[str, Any] | None:
    """Mean paired difference ``method - other`` over the seeds both have, with a 95 % t interval."""
    a, b = table.get(method), table.get(other)
    if a is None or b is None:
        return None
    seeds = sorted(set(a["seeds"]) & set(b["seeds"]))
    if len(seeds) < 2:
        return None
    diff = np.array([a["seeds"][s][split] - b["seeds"][s][split] for s in seeds])
    mean, low, high = t_interval(diff)
    return {"mean": mean, "low": low, "high": high, "n": int(diff.size)}


def harmful_share(points: list[int], sources: list[str | None]) -> float:
    if not points:
        return 0.0
    return float(np.mean([str(sources[p] or "").startswith("harmful/") for p in points]))


def report_command(args: argparse.Namespace) -> None:
    from harp.data import load_training_pool

    work = Path(args.work)
    finetunes = _read_json(work / "finetunes.json")
    subsets = _read_json(work / "subsets.json")
    sources = load_training_pool(RUN / "pool.jsonl").sources
    table = summarise(finetunes)
    harp_methods = sorted({e["method"] for e in table.values() if e["method"].startswith("harp-")})
    budgets = sorted({e["budget"] for e in table.values() if e["budget"] is not None})
    # Choose on the proxy set: the HARP method with the best mean proxy score over budgets and seeds.
    proxy = {
        method: float(
            np.mean([table[f"{method}@{b}"]["eval"]["mean"] for b in budgets if f"{method}@{b}" in table])
        )
        for method in harp_methods
    }
    chosen = max(proxy, key=lambda m: proxy[m])
    out: dict[str, Any] = {"chosen_on_proxy": chosen, "proxy_means": proxy, "rows": [], "paired": {}}
    lines = [
        "| method | budget | examples | harmful | proxy mean ± sd | test mean ± sd | seeds |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for entry in sorted(table.values(), key=lambda e: (e["budget"] or 10**9, e["method"])):
        method, budget = entry["method"], entry["budget"]
        share = None
        if method.startswith("harp-"):
            envelope, variant = method.removeprefix("harp-").split(":")
            share = harmful_share(
                subsets["variants"][variant]["subsets"][f"{envelope.upper()}@{budget}"], sources
            )
        elif method == "random" or method == "embedding-centroid":
            share = None
        row = {"method": method, "budget": budget, "n_points": entry["n_points"], "harmful_share": share,
               "eval": entry["eval"], "test": entry["test"]}  # fmt: skip
        out["rows"].append(row)

        def cell(stats: dict[str, Any]) -> str:
            sd = "" if stats["sd"] is None else f" ± {stats['sd']:.3f}"
            return f"{stats['mean']:.3f}{sd}"

        lines.append(
            f"| {method} | {budget or '-'} | {entry['n_points']} | "
            f"{'' if share is None else f'{100 * share:.1f} %'} | {cell(entry['eval'])} | {cell(entry['test'])} | "
            f"{entry['test']['n']} |"
        )
    print("\n".join(lines) + "\n")
    print(f"chosen on the proxy set: {chosen} (mean proxy score {proxy[chosen]:.4f})\n")
    print("| budget | method | test: method - random (95 % interval) | proxy: method - random |")
    print("|---:|---|---|---|")
    for budget in budgets:
        for method in [chosen, *(m for m in harp_methods if m != chosen)]:
            test = paired(table, f"{method}@{budget}", f"random@{budget}", "test")
            proxy_diff = paired(table, f"{method}@{budget}", f"random@{budget}", "eval")
            out["paired"][f"{method}@{budget}"] = {"test": test, "eval": proxy_diff}
            if test and proxy_diff:
                print(
                    f"| {budget} | {method} | {test['mean']:+.3f} [{test['low']:+.3f}, {test['high']:+.3f}] | "
                    f"{proxy_diff['mean']:+.3f} [{proxy_diff['low']:+.3f}, {proxy_diff['high']:+.3f}] |"
                )
    if args.store:
        out["validation"] = validation_tables(args.store)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def validation_tables(store_path: str, protocols: dict[str, str] | None = None) -> dict[str, Any]:
    """Print each protocol's mixture validation, weighing every domain 1 and the math skills + mmlu_social.

    ``protocols`` names each config key's protocol (default: the base-anchored key; any other is "in-mixture").
    """
    import harp
    from harp.mixtures import mixture_report, stored_mixtures

    store = harp.Store.open(store_path, read_only=True)
    names = [str(n) for n in store.read_table("domains").sort_by("domain_id")["name"].to_pylist()]
    table = store.mixtures().to_pydict()
    protocols = protocols or {BASE_ANCHORED_KEY: "base-anchored"}
    out: dict[str, Any] = {}
    print("\n| protocol | weights | mixtures | envelope | gain r | gain RMSE | gain bias | sign agreement |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for key in sorted(set(table["config_key"])):
        mixtures = stored_mixtures(store.mixtures(key).to_pydict(), len(names))
        ids = mixtures.mixture_id
        predicted_c, predicted_e, measured = (
            mixtures.predicted["C"],
            mixtures.predicted["E"],
            mixtures.measured,
        )
        chosen = np.array([1.0 if n.startswith("math") or n == "mmlu_social" else 0.0 for n in names])
        for label, weights in (("all 10", np.ones(len(names))), ("math + mmlu_social", chosen)):
            report = mixture_report(measured, {"HARP-C": predicted_c, "HARP-E": predicted_e}, weights)
            out[f"{protocols.get(key, 'in-mixture')}|{label}"] = report
            for envelope, stats in report["envelopes"].items():
                r = stats["gain_correlation"]
                print(
                    f"| {protocols.get(key, 'in-mixture')} | {label} | {len(ids)} | {envelope} | "
                    f"{'n/a' if r is None else f'{r:+.2f}'} | {stats['gain_rmse']:.3f} | {stats['gain_bias']:+.3f} | "
                    f"{stats['mean_sign_agreement']:.2f} |"
                )
    return out


def holdout_quality(
    store: Any, config_key: str, held: list[int], training_variance: np.ndarray | None = None
) -> dict[str, Any]:
    """The measured effects of the hold-out leaves against the posterior of a fit that did not see them (run
    ``infer_effects(..., hold_out=held)`` first): correlation, RMSE, and coverage of the 90 % intervals. The
    predictive interval adds the measurement's variance (and the training noise, when the fit estimated one)."""
    from harp.validate import measured_effects

    inputs = store.selection_inputs()
    measured = measured_effects(store, config_key, inputs.n_leaves, inputs.n_domains)
    rows = store.read_table("measurements").to_pydict()
    variance = np.full_like(measured, np.nan)
    for g, d, v, key in zip(
        rows["leaf_id"], rows["domain_id"], rows["variance"], rows["config_key"], strict=True
    ):
        if key == config_key:
            variance[g, d] = v
    if training_variance is not None:
        variance = variance + training_variance[None, :]
    leaves = np.asarray(held, dtype=np.int64)
    leaves = leaves[~np.isnan(measured[leaves]).all(axis=1)]  # the hold-out leaves this key measured
    x, mean, sd, var = measured[leaves], inputs.phi[leaves], inputs.sd[leaves], variance[leaves]
    keep = ~np.isnan(x)
    x, mean, sd, var = x[keep], mean[keep], sd[keep], var[keep]
    z90 = 1.6448536269514722
    return {
        "leaves": int(leaves.size),
        "pairs": int(x.size),
        "r": float(np.corrcoef(x, mean)[0, 1]),
        "rmse": float(np.sqrt(np.mean((x - mean) ** 2))),
        "rmse_zero": float(np.sqrt(np.mean(x**2))),
        "inside_90": float(np.mean(np.abs(x - mean) <= z90 * sd)),
        "inside_90_predictive": float(np.mean(np.abs(x - mean) <= z90 * np.sqrt(sd**2 + var))),
    }


def write_pool_texts(store: Any, pool: Any) -> None:
    """Give every point of ``store`` its prompt (``text``), response and source from the training pool, as
    ``harp run`` writes them (:meth:`harp.data.TrainingPool.store_texts`), in one write; point id i is pool
    record i."""
    import pyarrow as pa

    texts, responses = pool.store_texts()
    table = pa.table(
        {
            "point_id": pa.array(range(len(pool)), pa.int64()),
            "text": pa.array(texts, pa.string()),
            "response": pa.array(responses, pa.string()),
            "source": pa.array(pool.sources, pa.string()),
        }
    )
    with store.write(rehash=("points",)) as con:
        n_points = con.execute("SELECT count(*) FROM points").fetchall()[0][0]
        if n_points != len(pool):
            raise SystemExit(f"the store holds {n_points} points but the pool {len(pool)} examples")
        con.register("pool_texts", table)
        con.execute(
            "UPDATE points SET text = t.text, response = t.response, source = t.source FROM pool_texts t "
            "WHERE points.point_id = t.point_id"
        )
        con.unregister("pool_texts")


def texts_command(args: argparse.Namespace) -> None:
    """Re-make the example texts of the shipped demo (--out) from run/pool.jsonl: prompt, response, source."""
    import tempfile

    import harp
    from harp.data import load_training_pool

    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="harp-texts-") as scratch:
        store = harp.import_parquet(out, Path(scratch) / "demo.duckdb")
        write_pool_texts(store, load_training_pool(RUN / "pool.jsonl"))
        for old in out.glob("*.parquet"):
            old.unlink()
        harp.export_parquet(store.path, out, overwrite=True)
        print(json.dumps({"out": str(out), "content_hash": store.content_hash()}))


def ship_command(args: argparse.Namespace) -> None:
    """Re-make data/demo from a GPU run's store export with the chosen variant's effects (see --help)."""
    import shutil
    import tempfile

    import harp
    from harp.data import load_training_pool
    from harp.load import infer_effects
    from harp.objective import default_weights

    results = Path(args.results)
    state = _read_json(results / "state.json")
    mix_key = state["keys"]["0"]
    variant = args.variant
    keys = {"ba": BASE_ANCHORED_KEY, "im": mix_key, "im-fw": mix_key}
    if variant not in keys:
        raise SystemExit(
            f"--variant must be one of {sorted(keys)} (effects a store can hold), got {variant!r}"
        )
    scratch = Path(tempfile.mkdtemp(prefix="harp-ship-"))
    export = scratch / "export"
    shutil.copytree(results / "export", export)
    pool = load_training_pool(RUN / "pool.jsonl")
    store = harp.import_parquet(export, scratch / "demo.duckdb")
    write_pool_texts(store, pool)
    holdout = [int(g) for g in _read_json(RUN / "holdout.json")]
    quality = {}
    for name, key in (("base-anchored", BASE_ANCHORED_KEY), ("in-mixture", mix_key)):
        effects, _ = infer_effects(store, config_key=key, hold_out=holdout)
        quality[name] = holdout_quality(store, key, holdout, effects.training_variance)
    rule = "family-wise" if variant == "im-fw" else "any-leaf"
    run_id = store.add_run(
        "infer", {"config_key": keys[variant], "active_rule": rule, "training_noise": True}
    )
    infer_effects(store, config_key=keys[variant], active_rule=rule)  # type: ignore[arg-type]
    store.finish_run(run_id)
    inputs = store.selection_inputs()
    weights = default_weights(inputs.active)
    plan = _read_json(results / "subsets.json")
    budgets = [int(b) for b in plan["budgets"]]
    finetuned = plan["variants"][variant]["subsets"]
    shipped: dict[str, Any] = {}
    for envelope in ("C", "E"):
        for budget in budgets:
            chosen = harp.select(inputs.phi, inputs.base, envelope=envelope, weights=weights,
                                 members=inputs.members, budget=budget)  # fmt: skip
            name = f"{envelope}@{budget}"
            shipped[name] = chosen.points.tolist()
            if shipped[name] != finetuned[name]:
                raise SystemExit(f"{name}: the shipped effects select another subset than the one finetuned")
    report = {"variant": variant, "hold_out": quality, "validation": state.get("validation", {})}
    record = store.add_run("demo-proof", report)
    store.finish_run(record)
    out = Path(args.out)
    for old in out.glob("*.parquet"):
        old.unlink()
    harp.export_parquet(store.path, out, overwrite=True)
    subsets = {
        "store_hash": store.content_hash(),
        "variant": variant,
        "weights": dict(zip(inputs.domain_names, weights.tolist(), strict=True)),
        "budgets": budgets,
        "harp": shipped,
        "random": {f"{b}@{s}": random_subset(len(pool), b, s) for b in budgets for s in SEEDS},
        "embedding-centroid": {str(b): centroid_subset(b) for b in budgets},
    }
    _write_json(out / "run" / "subsets.json", subsets)
    _write_json(out / "run" / "quality.json", report)
    print(
        json.dumps({"variant": variant, "hold_out": quality, "store_hash": subsets["store_hash"]}, indent=2)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gpu = commands.add_parser("gpu", help="measure, select, finetune and validate (GPU)")
    gpu.add_argument("--model", required=True)
    gpu.add_argument("--work", required=True)
    gpu.add_argument(
        "--only", default=None, help="comma-separated steps to run (default: all that are not done)"
    )
    gpu.add_argument(
        "--smoke", action="store_true", help="a CPU-sized rehearsal (tiny model: tests/ builds one)"
    )
    gpu.add_argument("--device", default="cuda")
    gpu.add_argument("--protocol", default="in-mixture", choices=["in-mixture", "in-mixture-rows", "continuation"],
                     help="the background protocol measured next to the shipped base-anchored one")  # fmt: skip
    ship = commands.add_parser(
        "ship", help="re-make data/demo from a GPU run with the chosen variant's effects"
    )
    ship.add_argument(
        "--results", required=True, help="folder with the run's export/, state.json, subsets.json"
    )
    ship.add_argument("--variant", required=True, help="ba, im or im-fw (chosen on the proxy set)")
    ship.add_argument("--out", default=str(DEMO))
    texts = commands.add_parser(
        "texts", help="re-make data/demo's example texts (prompt, response, source) from run/pool.jsonl"
    )
    texts.add_argument("--out", default=str(DEMO))
    report = commands.add_parser("report", help="the tables")
    report.add_argument("--work", required=True)
    report.add_argument("--json", default=None)
    report.add_argument("--store", default=None, help="a store with the run's mixtures: print the validation")
    args = parser.parse_args()
    commands_by_name = {
        "gpu": gpu_command,
        "report": report_command,
        "ship": ship_command,
        "texts": texts_command,
    }
    commands_by_name[args.command](args)


if __name__ == "__main__":
    main()
