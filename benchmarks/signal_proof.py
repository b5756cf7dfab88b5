"""Is there a selection signal in the demo? The checks behind round 3's negative result (README "Round 3").

    .venv/bin/harp import --force data/demo/run/round3/store .dev/round3.duckdb
    .venv/bin/python benchmarks/signal_proof.py --store .dev/round3.duckdb [--json OUT.json]

Round 3 (``benchmarks/rows_proof.py gpu --plan regions``, data in ``data/demo/run/round3/``) measured every large
node and parent whole inside round 1's in-mixture mixture and selected with HARP-P on those effects; it tied
random. This script asks why, from what the runs already hold (no GPU):

1. **Large nodes measured whole, twice.** Each large node's measured effect (mean over the 10 domains, and over
   the math and the MMLU domains) under seeds 0 and 1, with the share of its examples from the planted harmful
   sources: whether the region effects repeat, and whether the harmful regions measure as harmful.
2. **Do the measurements find the planted harmful leaves?** The AUC of "a harmful leaf's utility effect (mean over
   the 10 domains) is lower than a clean leaf's", per effect source: each leaf's own measurement (base-anchored,
   in-mixture) and its region's measured effect per example (parent, large node). 0.5 is chance; above it the
   harmful leaves measure lower.
3. **Does a finetune's score follow its subset's composition?** Every finetune of rounds 1 and 3 (its subset
   rebuilt from the records) as a row: ridge regressions of the proxy score (mean over domains) on log(size) alone
   and with the subset's share in each large node or each source, cross-validated over distinct subsets (10
   folds); the held-out predictions' correlation with the test score; and the same models fitted on round 1's
   finetunes alone, ranking round 3's finetunes within each budget (test score).
4. **Noise.** The same subset and seed finetuned twice (round 3's ``random-repro`` against round 1's ``random``
   seed 0), and at each budget the sd over seeds of random (subset and order vary) against embedding-centroid
   (one subset, order varies).

"Harmful" means a source whose name starts with ``harmful/`` (``run/pool.jsonl``'s sources, stored in
``points.source``); a leaf is harmful when most of its examples are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mixture_proof as mp  # noqa: E402
import rows_proof as rp  # noqa: E402

ROUND_3 = mp.RUN / "round3"
RIDGE = (1e-2, 1e-1, 1.0)
FOLDS = 10


def point_table(store: Any) -> dict[str, np.ndarray]:
    """Per point: its leaf, large node and source (points in point-id order)."""
    points = store.read_table("points").select(["point_id", "leaf_id", "source"]).to_pydict()
    order = np.argsort(np.asarray(points["point_id"]))
    leaf = np.asarray(points["leaf_id"], dtype=np.int64)[order]
    source = np.asarray([str(s or "") for s in points["source"]], dtype=object)[order]
    parents = store.read_table("parents").select(["parent_id", "large_id"]).to_pydict()
    large_of_parent = dict(zip(parents["parent_id"], parents["large_id"], strict=True))
    leaves = store.read_table("leaves").select(["leaf_id", "parent_id"]).to_pydict()
    large_of_leaf = np.zeros(max(leaves["leaf_id"]) + 1, dtype=np.int64)
    for g, p in zip(leaves["leaf_id"], leaves["parent_id"], strict=True):
        large_of_leaf[g] = large_of_parent[p]
    return {"leaf": leaf, "large": large_of_leaf[leaf], "source": source}


def harmful_leaves(points: dict[str, np.ndarray], n_leaves: int) -> np.ndarray:
    harmful = np.array([s.startswith("harmful/") for s in points["source"]], dtype=np.float64)
    share = np.bincount(points["leaf"], harmful, n_leaves) / np.maximum(
        np.bincount(points["leaf"], None, n_leaves), 1
    )
    return share > 0.5


def large_nodes(store: Any, points: dict[str, np.ndarray], domain_names: list[str]) -> list[dict[str, Any]]:
    from harp.validate import region_effects

    math = np.array([n.startswith("math") for n in domain_names])
    sizes = np.asarray(store.read_table("leaves").to_pydict()["size"], dtype=np.float64)
    per_seed = {}
    for seed, key in rp.IN_MIXTURE_SEED_KEYS.items():
        phi, measured = region_effects(store, key, "large")
        per_seed[seed] = (phi, measured)
    harmful = np.array([s.startswith("harmful/") for s in points["source"]])
    rows = []
    for node in np.unique(points["large"]):
        in_node = points["large"] == node
        leaf = int(points["leaf"][in_node][0])
        row: dict[str, Any] = {"large": int(node), "points": int(in_node.sum()),
                               "harmful_share": float(harmful[in_node].mean())}  # fmt: skip
        for seed, (phi, measured) in per_seed.items():
            if measured[leaf]:
                effect = phi[leaf] * points["leaf"][in_node].size / sizes[leaf]  # the region's whole effect
                row[f"seed{seed}"] = {"all": float(effect.mean()), "math": float(effect[math].mean()),
                                      "mmlu": float(effect[~math].mean())}  # fmt: skip
        rows.append(row)
    return rows


def auc_lower(values: np.ndarray, harmful: np.ndarray) -> tuple[float, int, int]:
    """P(a harmful leaf's value < a clean leaf's), ties half; over the leaves with a value."""
    ok = ~np.isnan(values)
    bad, good = values[ok & harmful], values[ok & ~harmful]
    if bad.size == 0 or good.size == 0:
        return float("nan"), int(ok.sum()), int(bad.size)
    less = (bad[:, None] < good[None, :]).mean() + 0.5 * (bad[:, None] == good[None, :]).mean()
    return float(less), int(ok.sum()), int(bad.size)


def harmful_auc(store: Any, harmful: np.ndarray) -> dict[str, Any]:
    from harp.validate import measured_effects, region_effects

    n_leaves, n_domains = harmful.size, store.read_table("domains").num_rows
    sizes = np.asarray(store.read_table("leaves").to_pydict()["size"], dtype=np.float64)
    out: dict[str, Any] = {}
    for name, key in (("base-anchored leaf", mp.BASE_ANCHORED_KEY), ("in-mixture leaf", rp.IN_MIXTURE_KEY)):
        out[name] = auc_lower(measured_effects(store, key, n_leaves, n_domains).mean(axis=1), harmful)
    for level in ("parent", "large"):
        for seed, key in rp.IN_MIXTURE_SEED_KEYS.items():
            phi, measured = region_effects(store, key, level)
            if measured.any():
                out[f"in-mixture {level}, seed {seed}"] = auc_lower(phi.mean(axis=1) / sizes, harmful)
    return out


def finetune_rows(points: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every finetune of rounds 1 and 3 with its subset's composition and its per-domain scores."""
    first, third = mp._read_json(mp.RUN / "finetunes.json"), mp._read_json(ROUND_3 / "finetunes.json")
    first_subsets = mp._read_json(mp.RUN / "experiment_subsets.json")
    third_subsets = mp._read_json(ROUND_3 / "subsets.json")
    n_pool = points["leaf"].size
    sources = sorted(set(points["source"]))
    source_index = np.array([sources.index(s) for s in points["source"]])
    n_large = int(points["large"].max()) + 1
    domains = {split: np.asarray(first["domains"][split]) for split in ("eval", "test")}
    rows: dict[str, list[Any]] = {k: [] for k in ("round", "method", "budget", "seed", "subset", "log_n",
                                                   "large", "source", "eval", "test")}  # fmt: skip
    for round_, record in ((1, first), (3, third)):
        for result in record["results"]:
            method, budget, seed = result["method"], result["budget"], result["seed"]
            if method == "base":
                continue
            if method in ("random", "random-repro"):
                subset = mp.random_subset(n_pool, budget, seed)
            elif method == "embedding-centroid":
                subset = mp.centroid_subset(budget)
            elif method == "full-pool":
                subset = list(range(n_pool))
            else:
                subset = rp.harp_subset(third_subsets, first_subsets, method, budget, seed)
            chosen = np.asarray(subset, dtype=np.int64)
            rows["round"].append(round_)
            rows["method"].append(method)
            rows["budget"].append(budget)
            rows["seed"].append(seed)
            rows["subset"].append(hashlib.sha1(np.sort(chosen).tobytes()).hexdigest())
            rows["log_n"].append(np.log(chosen.size))
            rows["large"].append(np.bincount(points["large"][chosen], minlength=n_large) / chosen.size)
            rows["source"].append(np.bincount(source_index[chosen], minlength=len(sources)) / chosen.size)
            for split in ("eval", "test"):
                scores = np.asarray(result["scores"][split], dtype=np.float64)
                rows[split].append(
                    np.mean([scores[domains[split] == d].mean() for d in np.unique(domains[split])])
                )
    return {k: np.asarray(v) if k not in ("method", "budget") else v for k, v in rows.items()} | {
        "sources": sources
    }


def _design(rows: dict[str, Any], features: str) -> np.ndarray:
    columns = [np.ones(len(rows["log_n"])), rows["log_n"]]
    if features != "log n":
        columns += list(np.asarray(rows[features]).T)
    return np.column_stack(columns)


def _ridge(a: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    penalty = lam * np.eye(a.shape[1])
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(a.T @ a + penalty, a.T @ y)


def composition(rows: dict[str, Any]) -> list[dict[str, Any]]:
    groups = np.unique(rows["subset"])
    np.random.default_rng(0).shuffle(groups)
    third = rows["round"] == 3
    out = []
    for features in ("log n", "large", "source"):
        a = _design(rows, features)
        for lam in RIDGE:
            predicted = np.zeros(len(a))
            for k in range(FOLDS):
                held = np.isin(rows["subset"], groups[k::FOLDS])
                predicted[held] = a[held] @ _ridge(a[~held], rows["eval"][~held], lam)
            y = rows["eval"]
            r2 = 1.0 - ((y - predicted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
            from_first = a @ _ridge(a[~third], rows["eval"][~third], lam)
            within = {}
            for budget in mp.BUDGETS:
                at = third & (np.asarray([b == budget for b in rows["budget"]]))
                within[budget] = (
                    float(np.corrcoef(from_first[at], rows["test"][at])[0, 1])
                    if np.ptp(from_first[at]) > 0
                    else None
                )
            out.append({"features": features, "ridge": lam, "proxy_cv_r2": float(r2),
                        "cv_corr_test": float(np.corrcoef(predicted, rows["test"])[0, 1]),
                        "round1_fit_round3_within_budget_corr_test": within})  # fmt: skip
    return out


def noise(rows: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"repro": {}, "sd": {}}
    methods = rows["method"]
    for budget in mp.BUDGETS:

        def pick(method: str, round_: int, seed: int | None = None, budget: int = budget) -> np.ndarray:
            mask = [m == method and b == budget and r == round_ and (seed is None or s == seed)
                    for m, b, r, s in zip(methods, rows["budget"], rows["round"], rows["seed"], strict=True)]  # fmt: skip
            return rows["test"][np.asarray(mask)]

        repro, original = pick("random-repro", 3, 0), pick("random", 1, 0)
        if repro.size and original.size:
            out["repro"][budget] = [float(original[0]), float(repro[0])]
        random = np.concatenate([pick("random", 1), pick("random", 3)])
        centroid = np.concatenate([pick("embedding-centroid", 1), pick("embedding-centroid", 3)])
        out["sd"][budget] = {"random": float(random.std(ddof=1)), "random_n": int(random.size),
                             "centroid": float(centroid.std(ddof=1)), "centroid_n": int(centroid.size)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--store", required=True, help="round 3's store (harp import data/demo/run/round3/store)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import harp

    store = harp.Store.open(args.store, read_only=True)
    names = list(store.read_table("domains").to_pydict()["name"])
    points = point_table(store)
    harmful = harmful_leaves(points, store.read_table("leaves").num_rows)
    out: dict[str, Any] = {"large_nodes": large_nodes(store, points, names)}

    print("1. large nodes measured whole inside the mixture (effect: mean over all / math / MMLU domains)\n")
    print("| large node | points | harmful share | seed 0 | seed 1 |")
    print("|---:|---:|---:|---|---|")
    for row in out["large_nodes"]:
        cells = [f"{row[s]['all']:+.3f} ({row[s]['math']:+.3f} / {row[s]['mmlu']:+.3f})" if s in row else "-"
                 for s in ("seed0", "seed1")]  # fmt: skip
        print(f"| {row['large']} | {row['points']} | {row['harmful_share']:.0%} | {cells[0]} | {cells[1]} |")

    out["harmful_auc"] = harmful_auc(store, harmful)
    print(
        f"\n2. AUC that the {int(harmful.sum())} harmful leaves measure lower than the clean ones (0.5 = chance)\n"
    )
    for name, (auc, leaves, bad) in out["harmful_auc"].items():
        print(f"  {name}: {auc:.2f} ({leaves} leaves, {bad} harmful)")

    rows = finetune_rows(points)
    out["composition"] = composition(rows)
    print(f"\n3. {len(rows['log_n'])} finetunes, {np.unique(rows['subset']).size} distinct subsets: ridge on the proxy "
          "score, cross-validated over subsets\n")  # fmt: skip
    print("| features | ridge | proxy CV R² | corr(CV prediction, test) | round-1 fit ranks round 3 (test r) 500 / 1000 / 2000 |")  # fmt: skip
    print("|---|---:|---:|---:|---|")
    for row in out["composition"]:
        within = " / ".join("-" if v is None else f"{v:+.2f}" for v in row["round1_fit_round3_within_budget_corr_test"].values())  # fmt: skip
        print(f"| {row['features']} | {row['ridge']:g} | {row['proxy_cv_r2']:+.2f} | {row['cv_corr_test']:+.2f} | {within} |")  # fmt: skip

    out["noise"] = noise(rows)
    print("\n4. noise (test mean over domains)\n")
    for budget, (first, again) in out["noise"]["repro"].items():
        print(f"  the same subset and seed finetuned twice, budget {budget}: {first:.3f} and {again:.3f}")
    for budget, sd in out["noise"]["sd"].items():
        print(f"  budget {budget}: sd over seeds, random {sd['random']:.3f} ({sd['random_n']} finetunes), "
              f"embedding-centroid {sd['centroid']:.3f} ({sd['centroid_n']})")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
