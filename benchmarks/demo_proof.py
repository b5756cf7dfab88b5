"""Does HARP's selection help? Inference quality, selection quality and cost on the demo run.

Three steps, the middle one on a GPU:

    # 1. here: the training subsets of every method, as point ids (needs the store after `harp infer`)
    python benchmarks/demo_proof.py subsets --store run/demo.duckdb --pool run/pool.jsonl \\
        --eval run/eval.jsonl --features run/X_feat.npy --budget 2000 --out run/subsets.json
    # 2. on the GPU: finetune the base model on each subset, score it on the proxy and the held-out test set
    python benchmarks/demo_proof.py finetune --model SMOLLM2_DIR --pool run/pool.jsonl --eval run/eval.jsonl \\
        --test run/test.jsonl --subsets run/subsets.json --out run/finetunes.json
    # 3. here: the tables (markdown) from the store and the finetunes
    python benchmarks/demo_proof.py report --store run/demo.duckdb --finetunes run/finetunes.json

Methods, all with the same point budget: HARP-C and HARP-E (``harp.select`` on the posterior effects, weights =
the active domains, as ``harp select`` does), random points (seeded), embedding-centroid (the leaves nearest each
eval domain's centroid in embedding space, taken round-robin over domains until the budget is filled), and the
full pool (every example, for reference). Every finetune uses the measurement's LoRA settings, one pass over its
subset (``ceil(n / batch_size)`` steps; ``--steps N`` gives every subset N steps instead, cycling over a small
one), the same seed.

Inference quality uses the hold-out leaves of the last ``harp infer --hold-out`` run: their measured phi against
the posterior mean the fit computed without them (correlation, RMSE, share inside the 90 % posterior interval,
and inside the 90 % predictive interval that adds the measurement's own variance).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("harp-c", "harp-e", "random", "embedding-centroid", "full-pool")
Z90 = 1.6448536269514722


# ----------------------------------------------------------------------------------------------------------------
# 1. Subsets


def centroid_subset(
    features: np.ndarray,
    members: list[np.ndarray],
    eval_features: np.ndarray,
    eval_domain: np.ndarray,
    budget: int,
) -> np.ndarray:
    """Points of the leaves nearest each domain's eval centroid (cosine), round-robin over domains."""
    leaf_centroids = np.stack([features[m].mean(axis=0) for m in members])
    leaf_centroids /= np.linalg.norm(leaf_centroids, axis=1, keepdims=True)
    rankings = []
    for d in np.unique(eval_domain):
        centre = eval_features[eval_domain == d].mean(axis=0)
        rankings.append(np.argsort(-(leaf_centroids @ (centre / np.linalg.norm(centre))), kind="stable"))
    chosen: list[int] = []
    taken: set[int] = set()
    points = 0
    depth = 0
    while points < budget and depth < len(members):
        for ranking in rankings:
            leaf = int(ranking[depth])
            if leaf in taken or points >= budget:
                continue
            taken.add(leaf)
            take = members[leaf][: budget - points]
            chosen.extend(int(p) for p in take)
            points += take.size
        depth += 1
    return np.asarray(chosen, dtype=np.int64)


def subsets_command(args: argparse.Namespace) -> None:
    import harp
    from harp.cli import default_weights
    from harp.data import load_eval_set, load_training_pool
    from harp.embed import embed_texts, load_features

    store = harp.Store.open(args.store, read_only=True)
    inputs = store.selection_inputs()
    pool = load_training_pool(args.pool)
    eval_set = load_eval_set(args.eval)
    weights = default_weights(inputs.active)
    subsets: dict[str, Any] = {}
    for envelope in ("C", "E"):
        chosen = harp.select(
            inputs.phi,
            inputs.base,
            envelope=envelope,
            weights=weights,
            members=inputs.members,
            budget=args.budget,
        )
        subsets[f"harp-{envelope.lower()}"] = chosen.points.tolist()
    rng = np.random.default_rng(args.seed)
    subsets["random"] = np.sort(
        rng.choice(len(pool), size=min(args.budget, len(pool)), replace=False)
    ).tolist()
    features = load_features(args.features, len(pool))
    if args.eval_features is not None:
        eval_features = load_features(args.eval_features, len(eval_set))
    else:
        eval_features = embed_texts(eval_set.prompts)
    subsets["embedding-centroid"] = centroid_subset(
        features, inputs.members, eval_features, eval_set.domain, args.budget
    ).tolist()
    subsets["full-pool"] = list(range(len(pool)))
    record = {
        "store": str(args.store),
        "store_hash": store.content_hash(),
        "budget": args.budget,
        "weights": dict(zip(inputs.domain_names, weights.tolist(), strict=True)),
        "seed": args.seed,
        "subsets": subsets,
    }
    Path(args.out).write_text(json.dumps(record) + "\n", encoding="utf-8")
    print(json.dumps({name: len(points) for name, points in subsets.items()}))


# ----------------------------------------------------------------------------------------------------------------
# 2. Finetunes (GPU)


def _finetune(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from harp.data import load_eval_set, load_training_pool
    from harp.measure import MeasureConfig, build_model, evaluate, train_adapter

    config = MeasureConfig.from_dict(job["config"])
    started = time.perf_counter()
    model = build_model(job["model"], config, job["device"])
    pool = load_training_pool(job["pool"])
    points = np.asarray(job["points"], dtype=np.int64)
    losses: list[float] = []
    steps = job["steps"] or math.ceil(points.size / config.batch_size)
    if points.size:
        losses = train_adapter(
            model, pool.subset(points), MeasureConfig.from_dict({**job["config"], "steps": steps})
        )
    trained = time.perf_counter()
    scores = {}
    for name in ("eval", "test"):
        eval_set = load_eval_set(job[name])
        scores[name] = evaluate(model, eval_set, config).tolist()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return {
        "method": job["method"],
        "n_points": int(points.size),
        "steps": steps if points.size else 0,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_s": trained - started,
        "eval_s": time.perf_counter() - trained,
        "scores": scores,
    }


def finetune_command(args: argparse.Namespace) -> None:
    from harp.measure import MeasureConfig

    record = json.loads(Path(args.subsets).read_text(encoding="utf-8"))
    config = MeasureConfig.from_dict(
        json.loads(Path(args.config).read_text(encoding="utf-8")) if args.config else {}
    )
    methods = args.methods.split(",") if args.methods else ["base", *METHODS]
    unknown = sorted(set(methods) - {"base", *record["subsets"]})
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; {args.subsets} has {sorted(record['subsets'])}")
    jobs = [{"method": name, "points": [] if name == "base" else record["subsets"][name]} for name in methods]
    for job in jobs:
        job.update(
            model=args.model,
            pool=args.pool,
            eval=args.eval,
            test=args.test,
            config=config.to_dict(),
            device=args.device,
            steps=args.steps,
        )
    from harp.data import load_eval_set

    started = time.perf_counter()
    out: dict[str, Any] = {
        "config": config.to_dict(),
        "model": args.model,
        "subsets_store_hash": record["store_hash"],
        "budget": record["budget"],
        "steps": args.steps,
        "domains": {name: load_eval_set(getattr(args, name)).domain.tolist() for name in ("eval", "test")},
        "domain_names": load_eval_set(args.test).domain_names,
        "results": [],
    }
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(args.workers, len(jobs))) as workers:
        for result in workers.imap_unordered(_finetune, jobs):
            print(
                f"{result['method']}: {result['n_points']} points, {result['steps']} steps, "
                f"train {result['train_s']:.0f} s, eval {result['eval_s']:.0f} s",
                flush=True,
            )
            # Written after every finetune, so a run stopped early keeps what it finished.
            out["results"] = sorted(
                [*out["results"], result], key=lambda r: ["base", *METHODS].index(r["method"])
            )
            out["wall_s"] = time.perf_counter() - started
            Path(args.out).write_text(json.dumps(out) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------
# 3. Report


def hold_out_quality(store: Any) -> dict[str, Any]:
    """The hold-out leaves of the last `harp infer --hold-out` run against the posterior of that fit."""
    runs = [run for run in store.runs() if run["kind"] == "infer" and run["status"] == "done"]
    if not runs or not runs[-1]["config"].get("hold_out"):
        return {}
    held = np.asarray(runs[-1]["config"]["hold_out"], dtype=np.int64)
    inputs = store.selection_inputs()
    rows = store.read_table("measurements").to_pydict()
    leaf = np.asarray(rows["leaf_id"])
    keep = np.isin(leaf, held)
    domain = np.asarray(rows["domain_id"])[keep]
    measured = np.asarray(rows["phi"])[keep]
    variance = np.asarray(rows["variance"])[keep]
    mean = inputs.phi[leaf[keep], domain]
    sd = inputs.sd[leaf[keep], domain]
    inside = np.abs(measured - mean) <= Z90 * sd
    predictive = np.abs(measured - mean) <= Z90 * np.sqrt(sd**2 + variance)
    per_domain = {}
    for d, name in enumerate(inputs.domain_names):
        mask = domain == d
        if mask.sum() > 2:
            per_domain[name] = {
                "r": float(np.corrcoef(measured[mask], mean[mask])[0, 1]),
                "rmse": float(np.sqrt(np.mean((measured[mask] - mean[mask]) ** 2))),
            }
    return {
        "leaves": int(held.size),
        "pairs": int(keep.sum()),
        "r": float(np.corrcoef(measured, mean)[0, 1]),
        "rmse": float(np.sqrt(np.mean((measured - mean) ** 2))),
        "rmse_zero": float(np.sqrt(np.mean(measured**2))),
        "inside_90": float(inside.mean()),
        "inside_90_predictive": float(predictive.mean()),
        "mean_measurement_sd": float(np.sqrt(variance).mean()),
        "per_domain": per_domain,
    }


def cost(store: Any) -> dict[str, Any]:
    """LoRA runs and GPU time spent measuring, against measuring every leaf at the same rate.

    GPU time is the wall time of every ``harp measure`` run: its ``total_s``, or, for a run that was killed
    (status still "running"), the time from its start to its last finished leaf.
    """
    runs = store.runs()
    leaf_runs = [run for run in runs if run["kind"] == "measure-leaf" and run["status"] == "done"]
    gpu_s = 0.0
    for run in (run for run in runs if run["kind"] == "measure"):
        total = (run.get("timings") or {}).get("total_s")
        if total is None:
            ends = [
                leaf["finished_at"] for leaf in leaf_runs if leaf["config"]["parent_run"] == run["run_id"]
            ]
            total = (max(ends) - run["started_at"]).total_seconds() if ends else 0.0
        gpu_s += float(total)
    measured = len({run["config"]["leaf_id"] for run in leaf_runs})
    n_leaves = store.selection_inputs().n_leaves
    # Seconds only: a batched leaf's timings also hold leaves_in_batch, a count.
    worker_s = [
        sum(float((run.get("timings") or {}).get(k, 0.0)) for k in ("train_s", "eval_s")) for run in leaf_runs
    ]
    return {
        "lora_runs": len(leaf_runs),
        "measured_leaves": measured,
        "leaves": n_leaves,
        "gpu_minutes": gpu_s / 60,
        "all_leaves_gpu_minutes": gpu_s / 60 * n_leaves / max(measured, 1),
        "mean_worker_s_per_leaf": float(np.mean(worker_s)) if worker_s else float("nan"),
    }


def _score_table(finetunes: dict[str, Any], split: str) -> list[str]:
    names = finetunes["domain_names"]
    domain = np.asarray(finetunes["domains"][split])
    header = "| method | examples | steps | " + " | ".join(names) + " | mean |"
    lines = [header, "|" + "---|" * (len(names) + 4)]
    for result in finetunes["results"]:
        scores = np.asarray(result["scores"][split], dtype=float)
        cells = []
        ses = []
        means = []
        for d in range(len(names)):
            s = scores[domain == d]
            se = float(s.std(ddof=1) / math.sqrt(s.size)) if s.size > 1 else float("nan")
            means.append(float(s.mean()))
            ses.append(se)
            cells.append(f"{s.mean():.2f} ± {se:.2f}")
        mean_se = math.sqrt(sum(se**2 for se in ses)) / len(ses)
        lines.append(
            f"| {result['method']} | {result['n_points']} | {result['steps']} | "
            + " | ".join(cells)
            + f" | **{np.mean(means):.3f}** ± {mean_se:.3f} |"
        )
    return lines


def report_command(args: argparse.Namespace) -> None:
    import harp

    store = harp.Store.open(args.store, read_only=True)
    quality = hold_out_quality(store)
    spent = cost(store)
    out: dict[str, Any] = {"hold_out": quality, "cost": spent}
    print("## Inference quality on the hold-out leaves\n")
    if quality:
        print(
            f"{quality['leaves']} hold-out leaves, {quality['pairs']} (leaf, domain) pairs: correlation "
            f"{quality['r']:.2f}, RMSE {quality['rmse']:.4f} (predicting 0 everywhere: {quality['rmse_zero']:.4f}); "
            f"{100 * quality['inside_90']:.0f} % of measured values inside the 90 % posterior interval, "
            f"{100 * quality['inside_90_predictive']:.0f} % inside the 90 % predictive interval "
            f"(posterior plus measurement noise; mean measurement sd {quality['mean_measurement_sd']:.3f}).\n"
        )
    else:
        print("no `harp infer --hold-out` run in the store\n")
    print("## Cost\n")
    print(
        f"{spent['lora_runs']} LoRA measurements ({spent['measured_leaves']} of {spent['leaves']} leaves) in "
        f"{spent['gpu_minutes']:.1f} GPU-minutes ({spent['mean_worker_s_per_leaf']:.1f} s a leaf per worker, "
        f"several workers at once); measuring every leaf at that rate: {spent['all_leaves_gpu_minutes']:.1f} "
        "GPU-minutes.\n"
    )
    if args.finetunes:
        finetunes = json.loads(Path(args.finetunes).read_text(encoding="utf-8"))
        out["finetunes"] = {
            r["method"]: {k: v for k, v in r.items() if k != "scores"} for r in finetunes["results"]
        }
        for split, title in (("test", "held-out test set"), ("eval", "proxy eval set")):
            print(f"## Scores on the {title} (mean ± standard error over questions)\n")
            print("\n".join(_score_table(finetunes, split)) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    subsets = commands.add_parser("subsets", help="the training subset of every method")
    subsets.add_argument("--store", type=Path, required=True)
    subsets.add_argument("--pool", type=Path, required=True)
    subsets.add_argument("--eval", type=Path, required=True)
    subsets.add_argument("--features", type=Path, required=True)
    subsets.add_argument(
        "--eval-features", type=Path, default=None, help="embeddings of the eval prompts (else computed here)"
    )
    subsets.add_argument("--budget", type=int, required=True)
    subsets.add_argument("--seed", type=int, default=0)
    subsets.add_argument("--out", type=Path, required=True)
    finetune = commands.add_parser("finetune", help="finetune on every subset and score (GPU)")
    finetune.add_argument("--model", required=True)
    finetune.add_argument("--pool", type=Path, required=True)
    finetune.add_argument("--eval", type=Path, required=True)
    finetune.add_argument("--test", type=Path, required=True)
    finetune.add_argument("--subsets", type=Path, required=True)
    finetune.add_argument(
        "--config", type=Path, default=None, help="MeasureConfig JSON (as for harp measure)"
    )
    finetune.add_argument(
        "--steps",
        type=int,
        default=None,
        help="the same number of steps for every subset (default: one pass)",
    )
    finetune.add_argument(
        "--methods", default=None, help="comma-separated subset names (default: base and all)"
    )
    finetune.add_argument("--device", default="cuda")
    finetune.add_argument("--workers", type=int, default=6)
    finetune.add_argument("--out", type=Path, required=True)
    report = commands.add_parser("report", help="markdown tables")
    report.add_argument("--store", type=Path, required=True)
    report.add_argument("--finetunes", type=Path, default=None)
    report.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    {"subsets": subsets_command, "finetune": finetune_command, "report": report_command}[args.command](args)


if __name__ == "__main__":
    main()
