"""The demo experiment, round 4: region effects by regression over designed mixtures, then prune and draw.

Rounds 1-3 (README "Does it help?") measured an effect as the difference of two finetunes, one with a region and
one without. Each difference carries two finetunes' noise, and that noise is as large as the effects. This
round estimates every large node's effect from many finetunes at once. Each design mixture keeps a random half of
the 18 large nodes, in foldover pairs (a half and its complement), so every node is in exactly half of them.
It draws its budget uniformly from the kept nodes' points. A ridge regression of the mixture's mean *proxy* score
on its share of each node, with one intercept per budget, gives each node's effect. Every finetune informs every
coefficient, so the training noise averages out instead of entering each difference. Every finetune of this round
uses LoRA dropout 0: the rounds' 0.05 draws its masks from one stream for a whole batch of adapters, so a
finetune's result depends on its neighbours.

    python benchmarks/design_proof.py gpu --model SMOLLM2_DIR --work WORK    # about 10 GPU-minutes on an H200
    python benchmarks/design_proof.py report --work WORK [--json OUT.json]

Steps (resumable; rerun the same command after a stop):

- ``design``: 16 design mixtures at each budget (500, 1,000, 2,000), random at each budget with seeds 0-9, and
  embedding-centroid (the shipped prefix) with seeds 0-9.
- ``select``: fit the regression on the proxy scores of the design mixtures and the random finetunes, with the
  ridge penalty chosen by leave-one-out error on the proxy set. Two selections prune the large nodes and draw the
  budget uniformly (per seed) from the kept nodes' points. ``design-e`` keeps every node whose effect is above the
  size-weighted mean effect, i.e. better than an average chunk of the pool. ``design-c`` keeps only the nodes
  whose effect is above that mean by more than one standard error (bootstrap over the finetunes).
- ``finetune-a``: both selections at every budget, seeds 0-4.
- ``choose``: the selection with the best mean proxy score over budgets and seeds 0-4.
- ``finetune-b``: the chosen selection, seeds 5-9.

``--replicate-of WORK --design-seed 5`` repeats the method on a new design: new random halves and new draws,
the base, random and embedding-centroid finetunes of WORK reused, and only the selection WORK chose on the proxy
set finetuned, seeds 0-9 (about 5 GPU-minutes).

``--pool WORK WORK2 ...`` trains no design: it fits the regression on the design mixtures of all those runs at
once (each run's random finetunes once: a replicate reuses its source's), as ``harp design fit`` does on a store
that holds two ``harp design measure`` rounds, and finetunes the selection the first run chose on the proxy set,
seeds 0-9, drawn with the last run's design seed. Finetunes of a pooled run with the same draw seed and the same
kept nodes are the same jobs, so they are reused instead of trained again.

The test set is read only by ``report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mixture_proof as mp  # noqa: E402  (the round-1 helpers: subsets, finetunes, summaries)

from harp.design import region_shares  # noqa: E402

DESIGN_PER_BUDGET = 16  # 8 foldover pairs
FIRST_SEEDS = (0, 1, 2, 3, 4)
MORE_SEEDS = (5, 6, 7, 8, 9)
SELECTIONS = ("design-e", "design-c")
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
BOOTSTRAPS = 400
DESIGN_SEED = 4  # this round's number: the design's random halves
ROUND4_SEED = 4  # round 4's state.json predates its "design_seed" entry


def design_seed_of(state: dict[str, Any]) -> int:
    return int(state.get("design_seed", ROUND4_SEED))


def large_node_of_points() -> np.ndarray:
    """Each pool point's large node, from the demo store's Parquet tables (no DuckDB needed)."""
    import pyarrow.parquet as pq

    def table(name: str) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in pq.read_table(mp.DEMO / f"{name}.parquet").to_pydict().items()}

    points, leaves, parents = table("points"), table("leaves"), table("parents")
    parent_of_leaf = dict(zip(leaves["leaf_id"].tolist(), leaves["parent_id"].tolist(), strict=True))
    large_of_parent = dict(zip(parents["parent_id"].tolist(), parents["large_id"].tolist(), strict=True))
    large = np.full(points["point_id"].max() + 1, -1, dtype=np.int64)
    for point, leaf in zip(points["point_id"].tolist(), points["leaf_id"].tolist(), strict=True):
        large[point] = large_of_parent[parent_of_leaf[leaf]]
    if (large < 0).any():
        raise SystemExit("data/demo/points.parquet does not cover every pool point")
    return large


def draw(large: np.ndarray, kept: np.ndarray, budget: int, seed: int, stream: int) -> list[int]:
    """``budget`` points drawn uniformly from the points of the kept large nodes."""
    candidates = np.flatnonzero(np.isin(large, kept))
    if candidates.size < budget:
        raise ValueError(
            f"the kept large nodes hold {candidates.size} points, fewer than the budget {budget}"
        )
    rng = np.random.default_rng([DESIGN_SEED, stream, budget, seed])
    return np.sort(rng.choice(candidates, size=budget, replace=False)).tolist()


def design_jobs(large: np.ndarray) -> list[dict[str, Any]]:
    """Foldover pairs of random halves of the large nodes, at every budget; a half too small is drawn again."""
    nodes = np.unique(large)
    sizes = np.bincount(large)
    rng = np.random.default_rng([DESIGN_SEED, 0])
    jobs = []
    for budget in mp.BUDGETS:
        for pair in range(DESIGN_PER_BUDGET // 2):
            while True:
                half = rng.permutation(nodes)[: nodes.size // 2]
                other = np.setdiff1d(nodes, half)
                if min(sizes[half].sum(), sizes[other].sum()) >= budget:
                    break
            for side, kept in enumerate((np.sort(half), other)):
                number = 2 * pair + side
                jobs.append({"method": f"design:{number}", "budget": budget, "seed": 100 + number,
                             "kept": kept.tolist(), "points": draw(large, kept, budget, number, 1)})  # fmt: skip
    return jobs


def baseline_jobs(n_pool: int, seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    jobs = []
    for seed in seeds:
        for budget in mp.BUDGETS:
            jobs.append({"method": "random", "budget": budget, "seed": seed,
                         "points": mp.random_subset(n_pool, budget, seed)})  # fmt: skip
            jobs.append({"method": "embedding-centroid", "budget": budget, "seed": seed,
                         "points": mp.centroid_subset(budget)})  # fmt: skip
    return jobs


def grouped(jobs: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The jobs in groups of ``size`` of similar length (``run_finetunes`` trains one group per pass)."""
    ordered = sorted(jobs, key=lambda job: (len(job["points"]), job["method"], job["seed"]))
    return [{**job, "group": i // size} for i, job in enumerate(ordered)]


def fit_effects(rows: list[dict[str, Any]], large: np.ndarray, domains: np.ndarray) -> dict[str, Any]:
    """:func:`harp.design.fit_design` on the mean proxy score of ``rows`` (finetunes with their points)."""
    from harp.design import fit_design

    y = np.array([mp._mean_score(row["scores"]["eval"], domains) for row in rows])
    shares = np.stack([region_shares(np.asarray(row["points"]), large, int(large.max()) + 1) for row in rows])
    fit = fit_design(shares, [row["budget"] for row in rows], y, np.bincount(large) / large.size,
                     penalties=RIDGE_GRID, bootstraps=BOOTSTRAPS, seed=DESIGN_SEED)  # fmt: skip
    record = fit.to_dict()
    return {
        "penalty": record["penalty"],
        "loo_mse": record["loo_mse"],
        "loo_r2": record["loo_r2"],
        "finetunes": record["n_mixtures"],
        "intercepts": record["intercepts"],
        "effects": record["effects"],
        "centred": record["centred"],
        "se": record["se"],
        "kept": {"design-e": record["kept"]["E"], "design-c": record["kept"]["C"]},
    }


def baseline_record(work: Path) -> dict[str, Any]:
    """``work``'s finetunes record with only the base model, random and embedding-centroid: what a run that
    reuses ``work``'s baselines starts from."""
    record = mp._read_json(work / "finetunes.json")
    record["results"] = [
        r for r in record["results"] if r["method"] in ("base", "random", "embedding-centroid")
    ]
    record.pop("groups", None)
    return record


def pooled_rows(works: list[Path], large: np.ndarray) -> list[dict[str, Any]]:
    """The design mixtures of every run in ``works`` and the random finetunes of the first, with their points."""
    global DESIGN_SEED
    own_seed, rows = DESIGN_SEED, []
    for i, work in enumerate(works):
        DESIGN_SEED = design_seed_of(mp._read_json(work / "state.json"))
        points = {
            mp._job_id(j): j["points"]
            for j in design_jobs(large) + baseline_jobs(large.size, FIRST_SEEDS + MORE_SEEDS)
        }
        for row in mp._read_json(work / "finetunes.json")["results"]:
            if row["method"].startswith("design:") or (row["method"] == "random" and i == 0):
                rows.append({**row, "points": points[mp._job_id(row)], "work": str(work)})
    DESIGN_SEED = own_seed
    return rows


def seed_range(text: str) -> tuple[int, ...]:
    """``"10-29"`` as the seeds 10..29."""
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and int(low) <= int(high)):
        raise SystemExit(f"--confirm-seeds must be a range such as 10-29, got {text!r}")
    return tuple(range(int(low), int(high) + 1))


def positive_list(text: str) -> list[int]:
    if not all(part.strip().isdigit() and int(part) > 0 for part in text.split(",")):
        raise SystemExit(f"--confirm-budgets must be positive integers separated by commas, got {text!r}")
    return [int(part) for part in text.split(",")]


def selection_jobs(
    fit: dict[str, Any], large: np.ndarray, seeds: tuple[int, ...], methods: tuple[str, ...]
) -> list[dict[str, Any]]:
    jobs = []
    for method in methods:
        kept = np.asarray(fit["kept"][method], dtype=np.int64)
        for seed in seeds:
            for budget in mp.BUDGETS:
                if np.isin(large, kept).sum() < budget:  # too few kept points: the whole kept set
                    points = np.flatnonzero(np.isin(large, kept)).tolist()
                else:
                    points = draw(large, kept, budget, seed, 2)
                jobs.append({"method": method, "budget": budget, "seed": seed, "points": points})
    return jobs


def gpu_command(args: argparse.Namespace) -> None:
    from harp.data import load_training_pool

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = mp.Log(work / "log.txt")
    global DESIGN_PER_BUDGET, FIRST_SEEDS, MORE_SEEDS, DESIGN_SEED, SELECTIONS
    DESIGN_SEED = args.design_seed
    if args.smoke:
        mp._smoke(work)
        DESIGN_PER_BUDGET, FIRST_SEEDS, MORE_SEEDS = 4, (0, 1), (2,)
    large = large_node_of_points()
    pool = load_training_pool(mp.RUN / "pool.jsonl")
    if len(pool) != large.size:
        raise SystemExit(f"the pool has {len(pool)} examples, the demo store {large.size} points")
    config = mp.finetune_config(args.smoke, lora_dropout=0.0)
    finetunes = work / "finetunes.json"
    state_path = work / "state.json"
    state: dict[str, Any] = mp._read_json(state_path) if state_path.exists() else {"done": [], "seconds": {}}
    state["design_seed"] = DESIGN_SEED
    if args.replicate_of:  # the earlier round's baselines, and the selection its proxy scores chose
        earlier = Path(args.replicate_of)
        SELECTIONS = (mp._read_json(earlier / "state.json")["chosen"],)
        state["replicates"] = {"work": str(earlier), "selection": SELECTIONS[0]}
        if not finetunes.exists():
            mp._write_json(finetunes, baseline_record(earlier))

    if args.pool:
        pooled = [Path(w) for w in args.pool]
        states = [mp._read_json(w / "state.json") for w in pooled]
        SELECTIONS = (states[0]["chosen"],)
        DESIGN_SEED = design_seed_of(states[-1])
        state["design_seed"] = DESIGN_SEED
        state["pooled"] = {"works": [str(w) for w in pooled], "selection": SELECTIONS[0]}
    step = mp.stepper(state, state_path, log)

    def run(jobs: list[dict[str, Any]]) -> None:
        mp.run_finetunes(args.model, grouped(jobs, mp.ADAPTERS), finetunes, config, log, args.device)

    def design() -> None:
        jobs = design_jobs(large)
        mp._write_json(work / "design.json", [{k: v for k, v in j.items()} for j in jobs])
        run(jobs + baseline_jobs(len(pool), FIRST_SEEDS + MORE_SEEDS))

    def select() -> None:
        record = mp._read_json(finetunes)
        domains = np.asarray(record["domains"]["eval"])
        rows = [r for r in record["results"] if r["method"].startswith("design:") or r["method"] == "random"]
        points = {
            mp._job_id(j): j["points"]
            for j in design_jobs(large) + baseline_jobs(len(pool), FIRST_SEEDS + MORE_SEEDS)
        }
        for row in rows:
            row["points"] = points[mp._job_id(row)]
        fit = fit_effects(rows, large, domains)
        mp._write_json(work / "fit.json", fit)
        log(
            "fit: penalty {penalty}, leave-one-out R2 {loo_r2:.3f} over {finetunes} finetunes; kept {kept}".format(
                **fit
            )
        )

    def finetune_a() -> None:
        run(selection_jobs(mp._read_json(work / "fit.json"), large, FIRST_SEEDS, SELECTIONS))

    def choose() -> None:
        table = mp.summarise(mp._read_json(finetunes))
        proxy = {m: float(np.mean([v["eval"] for b in mp.BUDGETS for s, v in table[f"{m}@{b}"]["seeds"].items()
                                   if s in FIRST_SEEDS])) for m in SELECTIONS}  # fmt: skip
        state["chosen"], state["proxy_means"] = max(proxy, key=lambda m: proxy[m]), proxy
        log(f"chosen on the proxy set: {state['chosen']}; " + json.dumps(proxy))

    def finetune_b() -> None:
        run(selection_jobs(mp._read_json(work / "fit.json"), large, MORE_SEEDS, (state["chosen"],)))

    if args.pool:

        def pool_select() -> None:
            record = baseline_record(pooled[0])
            fit = fit_effects(pooled_rows(pooled, large), large, np.asarray(record["domains"]["eval"]))
            mp._write_json(work / "fit.json", fit)
            log("pooled fit over {n} runs: penalty {penalty}, leave-one-out R2 {loo_r2:.3f} over {finetunes} "
                "finetunes; kept {kept}".format(n=len(pooled), **fit))  # fmt: skip
            for earlier, earlier_state in zip(pooled, states, strict=True):
                same = design_seed_of(earlier_state) == DESIGN_SEED and all(
                    mp._read_json(earlier / "fit.json")["kept"][m] == fit["kept"][m] for m in SELECTIONS
                )
                if same:  # the same kept nodes drawn with the same seed: the same finetunes
                    reused = [r for r in mp._read_json(earlier / "finetunes.json")["results"]
                              if r["method"] in SELECTIONS]  # fmt: skip
                    record["results"] += reused
                    log(f"reused {len(reused)} finetunes of {earlier}: same draw seed and kept nodes")
            mp._write_json(finetunes, record)

        step("select", pool_select)
        step("finetune", lambda: run(selection_jobs(mp._read_json(work / "fit.json"), large,
                                                    FIRST_SEEDS + MORE_SEEDS, SELECTIONS)))  # fmt: skip
        if args.confirm_seeds:  # fresh seeds for random and the selection, at --confirm-budgets
            seeds, budgets = seed_range(args.confirm_seeds), set(positive_list(args.confirm_budgets))

            def confirm() -> None:
                fit = mp._read_json(work / "fit.json")
                jobs = [j for j in baseline_jobs(len(pool), seeds) if j["method"] == "random"]
                jobs += selection_jobs(fit, large, seeds, SELECTIONS)
                run([j for j in jobs if j["budget"] in budgets])

            step(f"confirm {args.confirm_seeds} at {args.confirm_budgets}", confirm)
        log("all steps done")
        return
    step("design", design)
    step("select", select)
    if args.replicate_of:  # the chosen selection alone, every seed
        step("finetune", lambda: run(selection_jobs(mp._read_json(work / "fit.json"), large,
                                                    FIRST_SEEDS + MORE_SEEDS, SELECTIONS)))  # fmt: skip
    else:
        step("finetune-a", finetune_a)
        step("choose", choose)
        step("finetune-b", finetune_b)
    log("all steps done")


def report_command(args: argparse.Namespace) -> None:
    work = Path(args.work)
    record = mp._read_json(work / "finetunes.json")
    if args.seeds:  # only these seeds' finetunes (the base model's scores stay)
        wanted = set(seed_range(args.seeds))
        record["results"] = [
            r for r in record["results"] if r["method"] == "base" or int(r["seed"]) in wanted
        ]
    table = mp.summarise(record)
    seeds = tuple(sorted({int(r["seed"]) for r in record["results"] if r["method"] != "base"}))
    mp.BUDGETS = tuple(sorted({int(r["budget"]) for r in record["results"] if r["method"] == "random"}))
    state = mp._read_json(work / "state.json")
    global DESIGN_SEED
    DESIGN_SEED = design_seed_of(state)
    fit = mp._read_json(work / "fit.json") if (work / "fit.json").exists() else None
    from harp.data import load_training_pool

    sources = [str(s or "") for s in load_training_pool(mp.RUN / "pool.jsonl").sources]
    large = large_node_of_points()
    methods = ["random", "embedding-centroid", *SELECTIONS]
    out: dict[str, Any] = {"chosen": state.get("chosen"), "proxy_means": state.get("proxy_means"), "fit": fit,
                           "table": {}, "paired": {}}  # fmt: skip
    print("| method | split | " + " | ".join(str(b) for b in mp.BUDGETS) + " |")
    print("|---|---|" + "---|" * len(mp.BUDGETS))
    for method in methods:
        for split in ("eval", "test"):
            cells = []
            for budget in mp.BUDGETS:
                cell = table.get(f"{method}@{budget}")
                if cell is None:
                    cells.append("")
                    continue
                values = np.array([v[split] for v in cell["seeds"].values()])
                sd = values.std(ddof=1) if values.size > 1 else float("nan")
                cells.append(f"{values.mean():.3f} ± {sd:.3f} ({values.size})")
                out["table"][f"{method}@{budget}:{split}"] = {"mean": float(values.mean()), "sd": float(sd),
                                                              "n": int(values.size)}  # fmt: skip
            print(f"| {method} | {split} | " + " | ".join(cells) + " |")
    for baseline in ("random", "embedding-centroid"):
        print(f"\npaired difference to {baseline}, test (95 % t interval, seeds both have):")
        for method in ["embedding-centroid", *SELECTIONS]:
            for budget in mp.BUDGETS:
                result = mp.paired(table, f"{method}@{budget}", f"{baseline}@{budget}", "test")
                if result is not None and method != baseline:
                    name = f"{method}@{budget}" if baseline == "random" else f"{method}-vs-centroid@{budget}"
                    out["paired"][name] = result
                    print(f"  {method} @ {budget}: {result['mean']:+.4f} [{result['low']:+.4f}, "
                          f"{result['high']:+.4f}] n={result['n']}")  # fmt: skip
    domains = np.asarray(record["domains"]["test"])
    names = record["domain_names"]
    print("\nper domain, test, mean over seeds (difference to random):")
    print("| method @ budget | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for method in ["random", "embedding-centroid", *SELECTIONS]:
        for budget in mp.BUDGETS:
            rows = [r for r in record["results"] if r["method"] == method and r["budget"] == budget]
            chance = [r for r in record["results"] if r["method"] == "random" and r["budget"] == budget]
            if not rows:
                continue

            def per_domain(results: list[dict[str, Any]]) -> np.ndarray:
                scores = np.array([r["scores"]["test"] for r in results], dtype=np.float64)
                return np.array([scores[:, domains == d].mean() for d in range(len(names))])

            mean, base = per_domain(rows), per_domain(chance)
            out["table"][f"{method}@{budget}:per-domain"] = dict(zip(names, mean.tolist(), strict=True))
            cells = [
                f"{m:.3f}" if method == "random" else f"{m:.3f} ({m - b:+.3f})"
                for m, b in zip(mean, base, strict=True)
            ]
            print(f"| {method} @ {budget} | " + " | ".join(cells) + " |")
    if fit is not None:
        print("\nshare of the selections' examples from the planted harmful regions (mean over seeds):")
        for method in SELECTIONS:
            for budget in mp.BUDGETS:
                jobs = [j for j in selection_jobs(fit, large, seeds, (method,)) if j["budget"] == budget
                        and f"{method}@{budget}" in table and j["seed"] in table[f"{method}@{budget}"]["seeds"]]  # fmt: skip
                if jobs:
                    share = float(np.mean([mp.harmful_share(j["points"], sources) for j in jobs]))
                    out["table"][f"{method}@{budget}:harmful"] = share
                    print(f"  {method} @ {budget}: {100 * share:.1f} %")
        print(
            f"\nfit: penalty {fit['penalty']}, leave-one-out R2 {fit['loo_r2']:.3f}, {fit['finetunes']} finetunes"
        )
        for node, (c, se) in enumerate(zip(fit["centred"], fit["se"], strict=True)):
            marks = "".join(" " + m for m, kept in fit["kept"].items() if node in kept)
            print(f"  large node {node:2d}: effect above the pool's mean {c:+.4f} (se {se:.4f}){marks}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


def ship_command(args: argparse.Namespace) -> None:
    """Add a run's design mixtures (and its random finetunes, which keep every region) to a store, in the order
    the run's fit read them, so ``harp design fit`` on the store gives the run's fit.

    ``--append`` adds a second design's mixtures to a key that holds the first's (a replicate's random finetunes
    are its source's, already there), and ``--expect POOLED`` checks the store's fit against the pooled run's."""
    from harp.data import load_eval_set
    from harp.design import fit_stored_design
    from harp.measure import paired_effects
    from harp.store import Store

    work = Path(args.work)
    record = mp._read_json(work / "finetunes.json")
    state = mp._read_json(work / "state.json")
    global DESIGN_SEED
    DESIGN_SEED = design_seed_of(state)
    large = large_node_of_points()
    eval_set = load_eval_set(mp.EVAL_PATH)
    store = Store.open(args.store)
    names = [str(n) for n in store.read_table("domains").sort_by("domain_id")["name"].to_pylist()]
    if names != eval_set.domain_names:
        raise SystemExit(f"{args.store}: its domains {names} are not the demo eval set's")
    held = store.design_mixtures(args.key).num_rows
    if held and not args.append:
        raise SystemExit(
            f"{args.store} already holds design mixtures under {args.key!r} (--append adds to them)"
        )
    if args.append and not held:
        raise SystemExit(f"{args.store} holds no design mixtures under {args.key!r} to append to")
    points = {
        mp._job_id(j): j for j in design_jobs(large) + baseline_jobs(large.size, FIRST_SEEDS + MORE_SEEDS)
    }
    base = next(np.asarray(r["scores"]["eval"]) for r in record["results"] if r["method"] == "base")
    run_id = store.add_run("design", {"config_key": args.key, "imported_from": str(work),
                                      "measure_config": record["config"], "level": "large"})  # fmt: skip
    with_random = "replicates" not in state  # a replicate's random finetunes are its source's
    rows = [r for r in record["results"]
            if r["method"].startswith("design:") or (with_random and r["method"] == "random")]  # fmt: skip
    n_regions = int(large.max()) + 1
    for row in rows:
        job = points[mp._job_id(row)]
        drawn = np.asarray(job["points"], dtype=np.int64)
        phi, variance, _ = paired_effects(np.asarray(row["scores"]["eval"]), base, eval_set.domain,
                                          eval_set.n_domains)  # fmt: skip
        store.add_design_mixture(
            run_id, args.key, level="large", regions=job.get("kept", list(range(n_regions))),
            budget=int(row["budget"]), seed=int(row["seed"]), shares=region_shares(drawn, large, n_regions).tolist(),
            n_points=int(drawn.size), phi=phi, variance=variance,
        )  # fmt: skip
    store.finish_run(run_id, timings={"mixtures": float(len(rows))})
    expected = Path(args.expect) if args.expect else work
    seed = design_seed_of(mp._read_json(expected / "state.json"))
    fit = fit_stored_design(store, level="large", config_key=args.key, seed=seed)
    shipped = mp._read_json(expected / "fit.json")
    same = (
        fit.n_mixtures == shipped["finetunes"]
        and np.allclose(fit.centred, shipped["centred"], atol=1e-9)
        and np.allclose(fit.se, shipped["se"], atol=1e-9)
    )
    print(f"{len(rows)} design mixtures added under {args.key!r}; the store's fit (bootstrap seed {seed}) equals "
          f"{expected}'s: {same}")  # fmt: skip
    if not same:
        raise SystemExit(f"the store's fit differs from {expected / 'fit.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gpu = commands.add_parser("gpu", help="the design mixtures, the fit, the selections' finetunes (GPU)")
    gpu.add_argument("--model", required=True)
    gpu.add_argument("--work", required=True)
    gpu.add_argument("--smoke", action="store_true", help="a CPU-sized rehearsal with a tiny model")
    gpu.add_argument("--device", default="cuda")
    gpu.add_argument(
        "--design-seed", type=int, default=DESIGN_SEED, help="the design's random halves and draws"
    )
    gpu.add_argument("--replicate-of", default=None, metavar="WORK",
                     help="an earlier run of this script: reuse its base, random and embedding-centroid "
                     "finetunes, and finetune only the selection it chose, seeds 0-9, on a new design")  # fmt: skip
    gpu.add_argument("--pool", nargs="+", default=None, metavar="WORK",
                     help="earlier runs of this script: fit on all their design mixtures at once and finetune "
                     "the selection the first chose, seeds 0-9 (no new design)")  # fmt: skip
    gpu.add_argument("--confirm-seeds", default=None, metavar="A-B",
                     help="with --pool: also finetune random and the selection under these fresh seeds")  # fmt: skip
    gpu.add_argument("--confirm-budgets", default="2000", help="the budgets of --confirm-seeds")
    report = commands.add_parser("report", help="the tables (the test set is read only here)")
    report.add_argument("--work", required=True)
    report.add_argument("--json", default=None)
    report.add_argument("--seeds", default=None, metavar="A-B", help="report only these seeds' finetunes")
    ship = commands.add_parser("ship", help="add the run's design mixtures to a store (the demo's)")
    ship.add_argument("--work", required=True)
    ship.add_argument("--store", required=True)
    ship.add_argument("--key", default="design-round4", help="the config_key to store them under")
    ship.add_argument("--append", action="store_true", help="add to the design mixtures already under --key")
    ship.add_argument("--expect", default=None, metavar="WORK",
                      help="the run whose fit the store's must equal (default --work; a --pool run after --append)")  # fmt: skip
    args = parser.parse_args()
    {"gpu": gpu_command, "report": report_command, "ship": ship_command}[args.command](args)


if __name__ == "__main__":
    main()
