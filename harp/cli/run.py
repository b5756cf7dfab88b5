"""``harp run CONFIG.toml`` and ``harp next``: thin shells over :mod:`harp.pipeline` and :mod:`harp.active`.

The config is read and checked by :mod:`harp.run_config`. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from harp.cli.common import LIBRARY_ERRORS, LIBRARY_OR_IMPORT_ERRORS, errors, is_quiet, log, progress_logger
from harp.run_config import features_path, read_run_config

__all__ = ["next_command", "run_command"]


def _write_selections(out: str, result: Any, store_path: str) -> list[str]:
    """Both selections as CSV and manifest; the manifests name the hash of the snapshot the selections were
    computed from (``info["store_hash"]``), not the store's hash now, which a write since may have moved."""
    from harp.export import selection_manifest, write_selection

    info = result.info
    written = []
    for envelope in ("C", "E"):
        selection = info[f"selection_{envelope.lower()}"]
        manifest = selection_manifest(
            selection, envelope=envelope, weights=info["weights"], budget=info["budget"],
            store_hash=info["store_hash"], domain_names=info["domain_names"], store_path=store_path,
        )  # fmt: skip
        csv_path, _ = write_selection(f"{out}-{envelope.lower()}.csv", selection, manifest)
        written.append(str(csv_path))
    return written


@click.command("run")
@click.argument("config_path", metavar="CONFIG.toml", type=click.Path(dir_okay=False, path_type=Path))
def run_command(config_path: Path) -> None:
    """Run the whole pipeline from a TOML config: embed, hierarchy, measure, infer, select.

    Progress goes to stderr, a JSON summary to stdout. Rerunning the same config resumes: the tree is reused
    and leaves already measured are not measured again. Paths in the config are relative to its folder. Keys:
    store; [data] pool, eval, features or embedding_model, eval_indices, representatives; [model] path;
    [hierarchy] leaf_size, leaves_per_parent, parents_per_large, min_leaf, max_leaf, seed, backend; [measure]
    budget, active_rounds, active_k, executor, devices, workers_per_device, address, max_examples_per_leaf;
    [measure.config] any MeasureConfig field; [select] budget, out.

    \b
    Example (pool.toml):
      store = "pool.duckdb"
      [data]
      pool = "pool.jsonl"
      eval = "eval.jsonl"
      features = "X_feat.npy"
      [model]
      path = "./SmolLM2-135M-Instruct"
      [measure]
      budget = 64
      [select]
      budget = 50000
      out = "chosen"
    \b
      harp run pool.toml
    """
    from harp.pipeline import harp

    started = time.perf_counter()
    with errors((ValueError,), record_warnings=False, words=False):
        config = read_run_config(config_path)
    data, measure, hierarchy = config["data"], config["measure"], config["hierarchy"]
    try:
        with errors(LIBRARY_OR_IMPORT_ERRORS, record_warnings=False, words=False):
            features = features_path(config, progress_logger(), show_progress=not is_quiet())
            result = harp(
                features,
                config["model"]["path"],
                data["pool"],
                data["eval"],
                eval_indices_path=data.get("eval_indices"),
                representative_leaves_path=data.get("representatives"),
                TOP_K_POINTS=config["select"].get("budget"),
                lora_config=measure["config"],
                checkpoint_dir=config[""]["store"],
                n_representatives=measure.get("budget"),
                active_rounds=measure.get("active_rounds", 0),
                active_k=measure.get("active_k", 4),
                executor=measure.get("executor", "inprocess"),
                devices=measure.get("devices"),
                workers_per_device=measure.get("workers_per_device", 1),
                address=measure.get("address"),
                max_examples_per_leaf=measure.get("max_examples_per_leaf"),
                progress=progress_logger(),
                **hierarchy,
            )
            written = (
                _write_selections(config["select"]["out"], result, config[""]["store"])
                if "out" in config["select"]
                else []
            )
    except TypeError as error:  # a [hierarchy] key the library rejects by type
        raise click.ClickException(f"{config_path}: [hierarchy]: {error}") from None
    info = result.info
    summary = {
        "store": info["store"],
        "points": int(info["leaf_of_point"].size),
        "leaves": int(info["leaf_parent"].size),
        "measured_leaves": int(info["measured_leaves"].size),
        "domains": len(info["domain_names"]),
        "active_tasks": info["active_tasks"],
        "harp_c": {"points": int(result.harp_c.size), "leaves": int(info["leaves_c"].size),
                   "cut": info["cut_c"], "utility": info["utility_c"]},
        "harp_e": {"points": int(result.harp_e.size), "leaves": int(info["leaves_e"].size),
                   "cut": info["cut_e"], "utility": info["utility_e"]},
        "base_utility": info["base_utility"],
        "csv": written,
        "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip
    log(
        f"done in {summary['seconds']:.1f} s: {summary['measured_leaves']} of {summary['leaves']} leaves measured; "
        f"HARP-C keeps {result.harp_c.size} points (utility {info['utility_c']:.4f}), HARP-E {result.harp_e.size} "
        f"(utility {info['utility_e']:.4f}), base {info['base_utility']:.4f}"
    )
    click.echo(json.dumps(summary))


@click.command("next")
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Store to read.",
)
@click.option("-k", "k", type=click.IntRange(min=0), required=True, help="How many leaves to propose.")
@click.option(
    "--envelope",
    type=click.Choice(["C", "E", "both"], case_sensitive=False),
    default="both",
    show_default=True,
    help="Score the leaves against the HARP-C selection, the HARP-E one, or both (summed).",
)
@click.option("--exclude", "excludes", type=int, multiple=True, help="Leaf never proposed (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the Monte Carlo draws.")
def next_command(store_path: Path, k: int, envelope: str, excludes: tuple[int, ...], seed: int) -> None:
    """Propose the K unmeasured leaves whose measurement would most change the selection.

    Each leaf scores the expected value of information of its in/out decision in the current selection
    (posterior sd near the cut scores high; see docs/run.md). Prints JSON: leaves (best first), scores, cuts.
    Measure them with `harp measure ... --leaves L1,L2` or `harp measure ... --next K`, then `harp infer`.

    \b
    Example:
      harp next --store pool.duckdb -k 8
    """
    from harp.active import next_leaves

    with errors(LIBRARY_ERRORS, record_warnings=False, words=False):
        chosen = next_leaves(store_path, k, envelope=envelope, exclude=list(excludes), seed=seed)
    log(f"{chosen.leaves.size} of {chosen.n_candidates} unmeasured leaves proposed")
    click.echo(
        json.dumps(
            {
                "leaves": chosen.leaves.tolist(),
                "scores": [round(float(s), 8) for s in chosen.scores],
                "candidates": chosen.n_candidates,
                "cuts": chosen.cuts,
            }
        )
    )
