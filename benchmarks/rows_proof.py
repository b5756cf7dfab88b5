"""The demo experiment, round 2: common-random-number measurements and HARP-P, with 10 seeds where it matters.

Round 1 (``benchmarks/mixture_proof.py``, data/demo/run/proof.md) found the in-mixture measurements too noisy to
rank leaves: measured again under two other seeds, the 16 repeated leaves' effects correlate at r ~ 0 on most
domains, and every effect carries the reference run's own noise as a common offset. This round measures the same
leaves under ``in-mixture-rows`` (the background's batches unchanged, the leaf's examples added as extra rows, so
the two runs of a difference share every batch and seed), and adds HARP-P (:mod:`harp.prune`: prune the leaves
predicted to lower the objective, draw the budget uniformly from the rest) next to HARP-C and HARP-E.

    # GPU (one process, resumable: rerun the same command after a stop)
    python benchmarks/rows_proof.py gpu --model SMOLLM2_DIR --work WORK
    # here: the tables, merged with round 1's finetunes (data/demo/run/finetunes.json)
    python benchmarks/rows_proof.py report --work WORK [--store WORK/demo.duckdb] [--json OUT.json]

Steps: ``measure`` (the leaves round 1 measured in-mixture but its 24 hold-out leaves, now in-mixture-rows,
seed 0), ``noise`` (16 of them
again under seeds 1 and 2), ``select`` (every variant below at budgets 500/1,000/2,000; HARP-P draws per seed),
``finetune-a`` (every new variant, seeds 0-4, and random seed 0 again as a reproducibility check of round 1's
finetunes), ``choose`` (the HARP method with the best mean *proxy* score over budgets and seeds 0-4, among round 1's
and this round's), ``finetune-b`` (seeds 5-9 of the chosen method, random and embedding-centroid), ``validate``
(8 random mixtures under in-mixture-rows) and ``export`` (the store as Parquet, before and after validate).

``--plan regions`` (round 3, run on 2026-12-02: ``data/demo/run/round3/``, README "Round 3"; designed after this
round's reliability check found single-leaf effects do not repeat under another seed): instead of ``measure``
and ``noise``, ``regions`` measures every large node and every parent whole inside round 1's in-mixture mixture
(``harp validate --regions``, round 1's key and reference) and ``region-noise`` the large nodes again under seed
1; its variants are ``harp-pm:large1``, ``harp-p0:large1``, ``harp-pm:parent1`` (HARP-P on each region's effect
per example, :func:`harp.validate.region_effects`) and ``harp-pm:im1``; the report adds how well the large nodes' effects repeat across the two seeds.

Variants (``<selection>:<effects>``): effects ``r`` = in-mixture-rows, empirical Bayes with the seed repeats'
training noise, weights = its active domains (what ``harp select`` does by default); ``r1`` = the same effects,
every domain weighing 1 (the score the experiment reports is the mean over all 10 domains); ``im1`` = round 1's
in-mixture effects, weights 1. Selections: ``harp-e``, ``harp-c`` (the two envelopes, unchanged), ``harp-p0``
(HARP-P keeping every leaf whose utility effect is > 0) and ``harp-pm`` (HARP-P keeping the leaves whose utility
effect is above the size-weighted mean over all leaves: better than an average chunk of the pool, which removes the
offset that the shared reference run adds to every in-mixture effect).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mixture_proof as mp  # noqa: E402  (the round-1 helpers: subsets, finetunes, summaries)

IN_MIXTURE_KEY = "m1-53f4f3cd54b57cb0"  # round 1's in-mixture measurements (data/demo/measurements.parquet)
FIRST_SEEDS = (0, 1, 2, 3, 4)
MORE_SEEDS = (5, 6, 7, 8, 9)
NOISE_LEAVES = 16
NOISE_SEEDS = (1, 2)
VALIDATE_MIXTURES = 8
MEASURE_LEAVES: int | None = None  # None: every leaf round 1 measured in-mixture
PLANS = {
    "rows": ("harp-e:r1", "harp-p0:r1", "harp-pm:r1", "harp-pm:im1"),
    # regions measured whole (harp validate --regions) under round 1's in-mixture config
    "regions": ("harp-pm:large1", "harp-p0:large1", "harp-pm:parent1", "harp-pm:im1"),
}
METHODS = PLANS["rows"]
ROUND_1_SEED_KEYS = (IN_MIXTURE_KEY, "m1-a4f25e0ac0019f85", "m1-f78714728d942c81")  # seeds 0, 1, 2
IN_MIXTURE_SEED_KEYS = {0: ROUND_1_SEED_KEYS[0], 1: ROUND_1_SEED_KEYS[1]}
# in-mixture-rows adds a leaf's examples to the background's batches, so a large leaf's batches grow by several
# rows: 16 such adapters side by side ran out of the H200's memory; 8 fit.
MEASURE_ADAPTERS = 8
ROWS = {**mp.IN_MIXTURE, "protocol": "in-mixture-rows"}


def _smoke_rows(work: Path) -> None:
    global FIRST_SEEDS, MORE_SEEDS, NOISE_LEAVES, VALIDATE_MIXTURES, MEASURE_LEAVES
    mp._smoke(work)
    FIRST_SEEDS, MORE_SEEDS, NOISE_LEAVES, VALIDATE_MIXTURES, MEASURE_LEAVES = (0, 1), (2,), 2, 2, 6
    ROWS.update(background_size=30, max_length=64, dtype="float32")


def variant_subsets(store: Any, rows_key: str | None, seeds: tuple[int, ...], log: mp.Log) -> dict[str, Any]:
    """Every method's subset per budget (and per seed for HARP-P), with the weights and active domains used."""
    import harp
    from harp.load import infer_effects
    from harp.objective import default_weights
    from harp.prune import prune_select, utility_effects
    from harp.validate import region_effects

    fits = {}
    for name, key in (("im", IN_MIXTURE_KEY), ("r", rows_key)):
        if key is not None:
            effects, active = infer_effects(store, config_key=key, progress=log)
            fits[name] = (effects.mean.copy(), np.asarray(active, dtype=bool))
    inputs = store.selection_inputs()  # the last fit is what the store now holds
    leaf_sizes = np.array([m.size for m in inputs.members], dtype=np.float64)
    for level in ("large", "parent"):
        # per example: a leaf's share of its region's effect over its examples, the region's effect per example
        phi, measured = region_effects(store, IN_MIXTURE_KEY, level)
        if measured.any():
            per_point = np.nan_to_num(phi, nan=0.0) / np.maximum(leaf_sizes, 1.0)[:, None]
            fits[level] = (per_point, np.ones(inputs.n_domains, dtype=bool))
    names = inputs.domain_names
    out: dict[str, Any] = {"budgets": list(mp.BUDGETS), "methods": {}, "rows_key": rows_key}
    for method in METHODS:
        selection, effects_name = method.removeprefix("harp-").split(":")
        phi, active = fits[effects_name.rstrip("1")]
        weights = np.ones(len(names)) if effects_name.endswith("1") else default_weights(active)
        record: dict[str, Any] = {
            "weights": dict(zip(names, weights.tolist(), strict=True)),
            "active": [n for n, a in zip(names, active, strict=True) if a],
            "subsets": {},
        }
        for budget in mp.BUDGETS:
            if selection in ("c", "e"):
                chosen = harp.select(phi, inputs.base, envelope=selection.upper(), weights=weights,
                                     members=inputs.members, budget=budget)  # fmt: skip
                record["subsets"][str(budget)] = chosen.points.tolist()
                continue
            effect = utility_effects(phi, weights)
            threshold = 0.0 if selection == "p0" else float(np.dot(leaf_sizes, effect) / leaf_sizes.sum())
            record["threshold"] = threshold
            for seed in seeds:
                chosen = prune_select(phi, inputs.base, weights=weights, members=inputs.members,
                                      budget=budget, seed=seed, min_effect=threshold)  # fmt: skip
                record["subsets"][f"{budget}@{seed}"] = chosen.points.tolist()
                record["kept_leaves"] = int(chosen.cut)
        out["methods"][method] = record
        log(f"{method}: active {record['active']}; kept/sizes " + ", ".join(
            f"{k} {len(v)}" for k, v in list(record["subsets"].items())[:3]))  # fmt: skip
    return out


def subset_of(plan: dict[str, Any], method: str, budget: int, seed: int) -> list[int]:
    subsets = plan["methods"][method]["subsets"]
    return subsets[str(budget)] if str(budget) in subsets else subsets[f"{budget}@{seed}"]


def harp_subset(
    plan: dict[str, Any], round_1: dict[str, Any], method: str, budget: int, seed: int
) -> list[int]:
    """A HARP method's subset: this round's (``plan``, its subsets.json) or a round-1 variant's
    (``round_1``, run/experiment_subsets.json: one subset for every seed)."""
    if method in plan["methods"]:
        return subset_of(plan, method, budget, seed)
    envelope, variant = method.removeprefix("harp-").split(":")
    return [int(p) for p in round_1["variants"][variant]["subsets"][f"{envelope.upper()}@{budget}"]]


def jobs_for(
    plan: dict[str, Any], methods: list[str], seeds: tuple[int, ...], n_pool: int
) -> list[dict[str, Any]]:
    """Finetune jobs; a subset equal to another method's in the same (budget, seed) is trained once."""
    jobs: list[dict[str, Any]] = []
    for seed in seeds:
        for budget in mp.BUDGETS:
            seen: dict[str, str] = {}
            for method in methods:
                if method == "random":
                    points = mp.random_subset(n_pool, budget, seed)
                elif method == "embedding-centroid":
                    points = mp.centroid_subset(budget)
                else:
                    points = subset_of(plan, method, budget, seed)
                text = json.dumps(points)
                if text in seen:
                    jobs.append({"method": method, "budget": budget, "seed": seed, "same_as": seen[text]})
                    continue
                seen[text] = method
                jobs.append({"method": method, "budget": budget, "seed": seed, "points": points})
    return jobs


def merged_finetunes(work: Path) -> dict[str, Any]:
    """Round 1's finetunes and this round's in one record (round 1's base and random-repro rows kept apart)."""
    first = mp._read_json(mp.RUN / "finetunes.json")
    second = mp._read_json(work / "finetunes.json")
    if first["domains"] != second["domains"]:  # another eval set (a --smoke rehearsal): this round alone
        return second
    results = list(first["results"])
    for result in second["results"]:
        if result["method"] == "base":
            continue
        results.append(result)
    return {**first, "results": results}


def proxy_choice(table: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The HARP method with the best mean proxy score over the budgets (seeds 0-4 only: every method has them)."""
    budgets = sorted({e["budget"] for e in table.values() if e["budget"] is not None})
    proxy: dict[str, float] = {}
    for entry in table.values():
        method = entry["method"]
        if not method.startswith("harp-") or method in proxy:
            continue
        means = []
        for budget in budgets:
            cell = table.get(f"{method}@{budget}")
            if cell is None:
                break
            means.append(np.mean([v["eval"] for s, v in cell["seeds"].items() if s in FIRST_SEEDS]))
        if len(means) == len(budgets):
            proxy[method] = float(np.mean(means))
    return max(proxy, key=lambda m: proxy[m]), proxy


def gpu_command(args: argparse.Namespace) -> None:
    from harp.data import load_eval_set, load_training_pool
    from harp.load import infer_effects  # noqa: F401  (imported early: a missing extra fails before the GPU work)
    from harp.measure import InProcessExecutor, MeasureConfig, background_points, run_measurements
    from harp.store import Store, export_parquet, import_parquet
    from harp.validate import default_sizes, validate_mixtures

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = mp.Log(work / "log.txt")
    if args.smoke:
        _smoke_rows(work)
    global METHODS
    METHODS = PLANS[args.plan]
    mp.SEEDS = FIRST_SEEDS + MORE_SEEDS  # run_finetunes blocks jobs by these seeds
    state_path = work / "state.json"
    state: dict[str, Any] = mp._read_json(state_path) if state_path.exists() else {"done": [], "seconds": {}}

    step = mp.stepper(state, state_path, log, args.only)

    store_path = work / "demo.duckdb"
    if not store_path.exists():
        import_parquet(mp.DEMO, store_path)
    store = Store.open(store_path)
    pool = load_training_pool(mp.RUN / "pool.jsonl")
    eval_set = load_eval_set(mp.EVAL_PATH)
    config = MeasureConfig.from_dict(ROWS)
    finetune = mp.finetune_config(args.smoke)
    measured = [int(g) for g in store.measured_leaves(IN_MIXTURE_KEY)]
    reps = [int(g) for g in (mp.RUN / "reps.txt").read_text().split(",") if g.strip()]
    # the representatives first (they are the leaves measured again under other seeds), then the rest
    holdout = set(int(g) for g in mp._read_json(mp.RUN / "holdout.json"))
    others = [
        g for g in measured if g not in set(reps) and g not in holdout
    ]  # the hold-out check is round 1's
    leaves = ([g for g in reps if g in set(measured)] + others)[:MEASURE_LEAVES]
    repeated = leaves[:NOISE_LEAVES]
    engine: dict[int, Any] = {}

    def measure(chosen: list[int], seed: int) -> None:
        if seed not in engine:
            background = pool.subset(background_points(len(pool), config))
            engine[seed] = InProcessExecutor(
                args.model, eval_set, dataclasses.replace(config, seed=seed), device=args.device,
                adapters_per_batch=min(MEASURE_ADAPTERS, mp.ADAPTERS), background=background,
            )  # fmt: skip
        report = run_measurements(
            store, args.model, pool, eval_set, chosen, dataclasses.replace(config, seed=seed),
            executor=engine[seed], log=log,
        )  # fmt: skip
        state.setdefault("keys", {})[str(seed)] = report.config_key
        mp._write_json(state_path, state)

    def noise() -> None:
        for seed in NOISE_SEEDS:
            measure(repeated, seed)
            engine.pop(seed).close()

    in_mixture = MeasureConfig.from_dict(mp.IN_MIXTURE)  # round 1's config: its reference and its keys

    def regions(levels: tuple[str, ...], seed: int) -> None:
        for level in levels:
            report = validate_mixtures(
                store, args.model, pool, eval_set, dataclasses.replace(in_mixture, seed=seed), regions=level,
                config_key=IN_MIXTURE_SEED_KEYS[seed], adapters_per_batch=mp.ADAPTERS, devices=[args.device],
                max_examples_per_leaf=2 if args.smoke else None, log=log,
            )  # fmt: skip
            state.setdefault("regions", {})[f"{level}@{seed}"] = len(report.measured) + len(report.skipped)
            mp._write_json(state_path, state)

    if args.plan == "rows":
        step("measure", lambda: measure(leaves, 0))
        step("noise", noise)
    else:
        step("regions", lambda: regions(("large", "parent"), 0))
        step("region-noise", lambda: regions(("large",), 1))  # the large nodes again under seed 1
    for open_engine in engine.values():
        open_engine.close()
    engine.clear()
    rows_key = state["keys"]["0"] if args.plan == "rows" else None
    seeds = FIRST_SEEDS + MORE_SEEDS
    step(
        "select", lambda: mp._write_json(work / "subsets.json", variant_subsets(store, rows_key, seeds, log))
    )

    def finetune_a() -> None:
        plan = mp._read_json(work / "subsets.json")
        jobs = jobs_for(plan, list(METHODS), FIRST_SEEDS, len(pool))
        jobs += [{**job, "method": "random-repro"} for job in jobs_for(plan, ["random"], (0,), len(pool))]
        mp.run_finetunes(args.model, jobs, work / "finetunes.json", finetune, log, args.device)

    step("finetune-a", finetune_a)

    def choose() -> None:
        table = mp.summarise(merged_finetunes(work))
        chosen, proxy = proxy_choice(table)
        state["chosen"], state["proxy_means"] = chosen, proxy
        log(f"chosen on the proxy set: {chosen} ({proxy[chosen]:.4f}); " + json.dumps(proxy))

    step("choose", choose)

    def finetune_b() -> None:
        plan = mp._read_json(work / "subsets.json")
        chosen = state["chosen"]
        if chosen not in plan["methods"]:  # a round-1 method won: its subsets are round 1's
            state["chosen_from_round_1"] = True
            log(f"{chosen} is a round-1 method: seeds 5-9 for random and embedding-centroid only")
            methods = ["random", "embedding-centroid"]
        else:
            methods = [chosen, "random", "embedding-centroid"]
        mp.run_finetunes(
            args.model, jobs_for(plan, methods, MORE_SEEDS, len(pool)), work / "finetunes.json", finetune, log,
            args.device,
        )  # fmt: skip

    step("finetune-b", finetune_b)

    def validate() -> None:
        if rows_key is None:  # the regions plan: the regions are its validation
            return
        measured = store.measured_leaves(rows_key).size
        report = validate_mixtures(
            store, args.model, pool, eval_set, config, sizes=default_sizes(VALIDATE_MIXTURES, 40, measured),
            config_key=rows_key, adapters_per_batch=min(MEASURE_ADAPTERS, mp.ADAPTERS), devices=[args.device],
            log=log,
        )  # fmt: skip
        state.setdefault("validation", {})["in-mixture-rows"] = report.report
        mp._write_json(state_path, state)

    def export() -> None:
        export_parquet(store.path, work / "export", overwrite=True)

    step("export", export)  # before validate too: the finetunes' store is safe if the device time runs out
    step("validate", validate)
    step("export-validated", export)
    log("all steps done")


def seed_agreement(tables: list[np.ndarray], names: list[str]) -> dict[str, Any] | None:
    """How well repeated measurements agree: for each pair of seeds' effect tables (n_leaves x n_domains, NaN
    where not measured), the correlation over the leaves both measured (at least 3) per domain and of the
    utility (the mean over domains); means over the pairs. None when no pair shares 3 leaves."""
    pairs = []
    for i in range(len(tables)):
        for j in range(i + 1, len(tables)):
            both = ~np.isnan(tables[i]).all(axis=1) & ~np.isnan(tables[j]).all(axis=1)
            if both.sum() >= 3:
                pairs.append((tables[i][both], tables[j][both]))
    if not pairs:
        return None
    r = [np.mean([np.corrcoef(a[:, d], b[:, d])[0, 1] for a, b in pairs]) for d in range(len(names))]
    utility = np.mean([np.corrcoef(a.mean(axis=1), b.mean(axis=1))[0, 1] for a, b in pairs])
    return {"pairs": len(pairs), "leaves": min(a.shape[0] for a, _ in pairs),
            "r": {n: float(v) for n, v in zip(names, r, strict=True)}, "utility_r": float(utility)}  # fmt: skip


def reliability(store: Any, keys: list[str], names: list[str]) -> dict[str, Any] | None:
    """:func:`seed_agreement` of the store's measurements under ``keys`` (one key per seed)."""
    from harp.validate import measured_effects

    inputs = store.selection_inputs()
    return seed_agreement(
        [measured_effects(store, key, inputs.n_leaves, inputs.n_domains) for key in keys], names
    )


def report_command(args: argparse.Namespace) -> None:
    from harp.data import load_training_pool

    work = Path(args.work)
    state = mp._read_json(work / "state.json")
    plan = mp._read_json(work / "subsets.json")
    round_1 = mp._read_json(mp.RUN / "experiment_subsets.json")
    sources = load_training_pool(mp.RUN / "pool.jsonl").sources
    table = mp.summarise(merged_finetunes(work))
    chosen, proxy = proxy_choice(table)
    out: dict[str, Any] = {"chosen_on_proxy": chosen, "proxy_means": proxy, "rows": [], "paired": {}}

    def harmful(method: str, budget: int, seeds: list[int]) -> float | None:
        if method in plan["methods"]:
            return float(
                np.mean([mp.harmful_share(subset_of(plan, method, budget, s), sources) for s in seeds])
            )
        if method.startswith("harp-"):  # a round-1 variant: the same subset for every seed
            return mp.harmful_share(harp_subset(plan, round_1, method, budget, seeds[0]), sources)
        return None

    print("| method | budget | examples | harmful | proxy mean ± sd | test mean ± sd | seeds |")
    print("|---|---:|---:|---:|---|---|---:|")
    for entry in sorted(table.values(), key=lambda e: (e["budget"] or 10**9, e["method"])):
        method, budget = entry["method"], entry["budget"]
        seeds = sorted(entry["seeds"])
        share = harmful(method, budget, seeds) if budget is not None else None
        row = {"method": method, "budget": budget, "n_points": entry["n_points"], "harmful_share": share,
               "eval": entry["eval"], "test": entry["test"]}  # fmt: skip
        out["rows"].append(row)

        def cell(stats: dict[str, Any]) -> str:
            sd = "" if stats["sd"] is None else f" ± {stats['sd']:.3f}"
            return f"{stats['mean']:.3f}{sd}"

        print(f"| {method} | {budget or '-'} | {entry['n_points']} | "
              f"{'' if share is None else f'{100 * share:.1f} %'} | {cell(entry['eval'])} | {cell(entry['test'])} | "
              f"{entry['test']['n']} |")  # fmt: skip
    print(f"\nchosen on the proxy set (seeds 0-4, mean over budgets): {chosen} ({proxy[chosen]:.4f})\n")
    print("| budget | method | seeds | test: method - random (95 % interval) | proxy: method - random |")
    print("|---:|---|---:|---|---|")
    budgets = sorted({e["budget"] for e in table.values() if e["budget"] is not None})
    others = [m for m in sorted(proxy, key=lambda m: -proxy[m]) if m != chosen]
    for budget in budgets:
        for method in [chosen, "embedding-centroid", *others]:
            test = mp.paired(table, f"{method}@{budget}", f"random@{budget}", "test")
            proxy_diff = mp.paired(table, f"{method}@{budget}", f"random@{budget}", "eval")
            out["paired"][f"{method}@{budget}"] = {"test": test, "eval": proxy_diff}
            if test and proxy_diff:
                print(f"| {budget} | {method} | {test['n']} | {test['mean']:+.3f} [{test['low']:+.3f}, "
                      f"{test['high']:+.3f}] | {proxy_diff['mean']:+.3f} [{proxy_diff['low']:+.3f}, "
                      f"{proxy_diff['high']:+.3f}] |")  # fmt: skip
    repro = []
    for budget in budgets:
        new, old = table.get(f"random-repro@{budget}"), table.get(f"random@{budget}")
        if new and old and 0 in new["seeds"] and 0 in old["seeds"]:
            repro.append((budget, new["seeds"][0]["test"], old["seeds"][0]["test"]))
    if repro:
        out["repro"] = repro
        print("\nrandom seed 0 finetuned again (test mean, this round vs round 1): "
              + "; ".join(f"{b}: {a:.4f} vs {c:.4f}" for b, a, c in repro))  # fmt: skip
    if args.store:
        import harp

        store = harp.Store.open(args.store, read_only=True)
        names = store.selection_inputs().domain_names
        keys = state.get("keys", {})
        rows_keys = [keys[k] for k in sorted(keys)]
        agreements = {"in-mixture": reliability(store, list(ROUND_1_SEED_KEYS), names),
                      "in-mixture-rows": reliability(store, rows_keys, names)}  # fmt: skip
        out["reliability"] = {protocol: rel for protocol, rel in agreements.items() if rel is not None}
        print("\n| protocol | repeated leaves | " + " | ".join(names) + " |")
        print("|---|---:|" + "---:|" * len(names))
        for protocol, rel in out["reliability"].items():
            print(
                f"| {protocol} | {rel['leaves']} | " + " | ".join(f"{rel['r'][n]:+.2f}" for n in names) + " |"
            )
        if "regions" in state:  # the regions plan: do the large nodes' effects repeat under another seed?
            from harp.validate import region_effects, region_leaves

            pair = [region_effects(store, IN_MIXTURE_SEED_KEYS[seed], "large")[0] for seed in (0, 1)]
            firsts = [int(r[0]) for r in region_leaves(store, "large")]  # one leaf stands for its region
            firsts = [g for g in firsts if not (np.isnan(pair[0][g]).any() or np.isnan(pair[1][g]).any())]
            sizes = np.array([m.size for m in store.selection_inputs().members], dtype=np.float64)
            a, b = (p[firsts] / sizes[firsts, None] for p in pair)  # each region's effect per example
            regions_r = {}
            if len(firsts) >= 3:
                regions_r = {n: float(np.corrcoef(a[:, d], b[:, d])[0, 1]) for d, n in enumerate(names)}
            out["region_reliability"] = regions_r
            print("\nlarge nodes measured whole under seeds 0 and 1, correlation per domain: "
                  + ", ".join(f"{n} {r:+.2f}" for n, r in regions_r.items()))  # fmt: skip
        labels = {mp.BASE_ANCHORED_KEY: "base-anchored", IN_MIXTURE_KEY: "in-mixture"}
        if "0" in keys:
            labels[keys["0"]] = "in-mixture-rows"
        out["validation"] = mp.validation_tables(args.store, labels)
    out["seconds"] = state.get("seconds", {})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def reliability_command(args: argparse.Namespace) -> None:
    """Seed-to-seed agreement of repeated measurements: this round's rows (a JSON of ``(config_key, leaf, domain,
    phi, variance)``, written on the device) against round 1's in-mixture seeds (the shipped store)."""
    import harp

    store = harp.Store.open(args.store, read_only=True)
    inputs = store.selection_inputs()
    names = inputs.domain_names
    rows_tables: dict[str, np.ndarray] = {}
    for key, leaf, domain, phi, _variance in mp._read_json(Path(args.measurements)):
        table = rows_tables.setdefault(key, np.full((inputs.n_leaves, inputs.n_domains), np.nan))
        table[int(leaf), int(domain)] = float(phi)
    out: dict[str, Any] = {}
    print("| protocol | seed pairs | leaves | " + " | ".join(names) + " | utility |")
    print("|---|---:|---:|" + "---:|" * (len(names) + 1))
    for protocol, agreement in (
        ("in-mixture", reliability(store, list(ROUND_1_SEED_KEYS), names)),
        ("in-mixture-rows", seed_agreement([rows_tables[k] for k in sorted(rows_tables)], names)),
    ):
        if agreement is None:
            continue
        out[protocol] = agreement
        print(f"| {protocol} | {agreement['pairs']} | {agreement['leaves']} | "
              + " | ".join(f"{agreement['r'][n]:+.2f}" for n in names) + f" | {agreement['utility_r']:+.2f} |")  # fmt: skip
    out["split_half"] = split_half(store, names)
    print(
        "\nsplit-half r of each source's mean effect (leaves halved at random, 200 draws, offsets removed):"
    )
    for protocol, values in out["split_half"].items():
        print(f"  {protocol}: " + ", ".join(f"{n} {r:+.2f}" for n, r in zip(names, values, strict=True)))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def split_half(store: Any, names: list[str], draws: int = 200) -> dict[str, list[float]]:
    """Whether effects pooled over a region repeat: split each source's measured leaves in two random halves and
    correlate the halves' mean effects across sources, per domain (round 1's seed-0 keys; each domain's mean over
    leaves removed first, so the reference run's shared offset does not count)."""
    from harp.validate import measured_effects

    inputs = store.selection_inputs()
    points = store.read_table("points").select(["leaf_id", "source"]).to_pydict()
    counts: dict[int, dict[str, int]] = {}
    for leaf, source in zip(points["leaf_id"], points["source"], strict=True):
        counts.setdefault(int(leaf), {}).setdefault(str(source), 0)
        counts[int(leaf)][str(source)] += 1
    source_of = {leaf: max(c, key=lambda s: c[s]) for leaf, c in counts.items()}
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {}
    for protocol, key in (("in-mixture", IN_MIXTURE_KEY), ("base-anchored", mp.BASE_ANCHORED_KEY)):
        table = measured_effects(store, key, inputs.n_leaves, inputs.n_domains)
        leaves = np.flatnonzero(~np.isnan(table).any(axis=1))
        phi = table[leaves] - table[leaves].mean(axis=0)
        sources = np.array([source_of[int(g)] for g in leaves])
        kinds = sorted(set(sources))
        rs = np.full((draws, len(names)), np.nan)
        for k in range(draws):
            half = rng.random(leaves.size) < 0.5
            both = [s for s in kinds if (half & (sources == s)).any() and (~half & (sources == s)).any()]
            a = np.array([phi[half & (sources == s)].mean(axis=0) for s in both])
            b = np.array([phi[~half & (sources == s)].mean(axis=0) for s in both])
            rs[k] = [np.corrcoef(a[:, d], b[:, d])[0, 1] for d in range(len(names))]
        out[protocol] = np.nanmean(rs, axis=0).tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gpu = commands.add_parser("gpu", help="measure, select, finetune, choose, finetune, validate (GPU)")
    gpu.add_argument("--model", required=True)
    gpu.add_argument("--work", required=True)
    gpu.add_argument("--only", default=None, help="comma-separated steps to run (default: all not done)")
    gpu.add_argument("--smoke", action="store_true", help="a CPU-sized rehearsal with a tiny model")
    gpu.add_argument("--device", default="cuda")
    gpu.add_argument("--plan", choices=sorted(PLANS), default="rows",
                     help="rows: leaves measured in-mixture-rows; regions: parents and large nodes measured whole "
                          "in-mixture (harp validate --regions) and HARP-P on their effects")  # fmt: skip
    report = commands.add_parser("report", help="the tables")
    report.add_argument("--work", required=True)
    report.add_argument("--json", default=None)
    report.add_argument("--store", default=None, help="the run's store: reliability and validation tables")
    agreement = commands.add_parser("reliability", help="seed-to-seed agreement of repeated measurements")
    agreement.add_argument("--store", required=True, help="the demo store (round 1's seed repeats)")
    agreement.add_argument("--measurements", default=str(mp.RUN / "round2" / "rows_reliability.json"))
    agreement.add_argument("--json", default=None)
    args = parser.parse_args()
    {"gpu": gpu_command, "report": report_command, "reliability": reliability_command}[args.command](args)


if __name__ == "__main__":
    main()
