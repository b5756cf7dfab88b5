"""``harp design``: measure region effects by designed mixtures, fit them, and select by pruning regions.

A thin shell over :mod:`harp.design`. Torch and the model load inside ``harp design measure`` only.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from harp.cli.common import LIBRARY_ERRORS, LIBRARY_OR_IMPORT_ERRORS, errors, progress_logger
from harp.cli.options import (
    RUN_LOCK_TIMEOUT_S,
    measure_config_from,
    parse_devices,
    positive_ints,
    set_executor_options,
)

__all__ = ["design_group"]


_store_option = click.option(
    "--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The store."
)
_level_option = click.option(
    "--level", type=click.Choice(["large", "parent"]), default="large", show_default=True,
    help="The level of the tree whose regions the design keeps or drops.",
)  # fmt: skip
_bootstrap_option = click.option(
    "--bootstrap-seed", type=click.IntRange(min=0), default=0, show_default=True,
    help="Seed of the bootstrap behind the standard errors (rule C reads them).",
)  # fmt: skip
_key_option = click.option(
    "--config-key",
    default=None,
    help="The config the design was measured under (when the store holds several).",
)


@click.group("design")
def design_group() -> None:
    """Region effects from designed mixtures (docs/measure.md, "Designed mixtures").

    `measure` finetunes on mixtures that each keep a random half of the regions (GPU); `fit` estimates every
    region's effect from them by ridge regression; `select` keeps the regions that do better than an average
    chunk of the pool and draws the budget uniformly from their points.

    \b
    Example:
      harp design measure --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --config finetune.json --adapters-per-batch 16
      harp design fit --store pool.duckdb
      harp design select --store pool.duckdb --rule C --budget 1000 --out chosen.csv
    """


@design_group.command("measure")
@_store_option
@click.option("--model", required=True, help="Base model: a local directory or a name in the local HF cache.")
@click.option("--pool", "pool_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Training pool (the store's points, in order).")  # fmt: skip
@click.option("--eval", "eval_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Proxy eval set.")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="MeasureConfig JSON (learning rate, batch size, LoRA rank, ...); base-anchored protocol.")  # fmt: skip
@click.option("--lora-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on the LoRA input (overrides --config). 0 keeps adapters batched together independent.")  # fmt: skip
@_level_option
@click.option("--budgets", default="500,1000,2000", show_default=True,
              help="Point budgets of the mixtures (the budgets you will select at).")  # fmt: skip
@click.option("--per-budget", type=click.IntRange(min=2), default=16, show_default=True,
              help="Mixtures per budget, an even number (foldover pairs).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the design. Another seed adds a second design that `fit` pools with the first.")  # fmt: skip
@set_executor_options
def measure_command(
    store_path: Path,
    model: str,
    pool_path: Path,
    eval_path: Path,
    config_path: Path | None,
    lora_dropout: float,
    level: str,
    budgets: str,
    per_budget: int,
    seed: int,
    executor: str,
    devices: str | None,
    workers_per_device: int,
    adapters_per_batch: int,
    address: str | None,
) -> None:
    """Finetune on designed mixtures and store their effects (table `design_mixtures`).

    Each mixture keeps a random half of the regions at --level (with its complement as the next mixture) and
    draws its budget uniformly from their points; it trains one pass from the base model and is scored on the
    eval set against the base model. Rerunning resumes: mixtures already stored are skipped. 16 mixtures at
    each of 3 budgets took about 4 GPU-minutes for SmolLM2-135M on one H200 with 16 adapters per batch.

    \b
    Example:
      harp design measure --store pool.duckdb --model ./SmolLM2-135M-Instruct --pool pool.jsonl \\
          --eval eval.jsonl --config finetune.json --budgets 500,1000,2000 --adapters-per-batch 16
    """
    from harp.data import load_eval_set, load_training_pool
    from harp.design import run_design
    from harp.store import Store

    budget_list = positive_ints(budgets, "--budgets", "point budgets", "500,1000,2000")
    if per_budget % 2:
        raise click.BadParameter(
            f"{per_budget} is odd: mixtures come in foldover pairs", param_hint="--per-budget"
        )
    with errors(LIBRARY_OR_IMPORT_ERRORS, record_warnings=False, words=False):
        config = measure_config_from(config_path, {"lora_dropout": lora_dropout})
        store = Store.open(store_path, lock_timeout=RUN_LOCK_TIMEOUT_S)
        pool = load_training_pool(pool_path)
        eval_set = load_eval_set(eval_path)
        report = run_design(
            store, model, pool, eval_set, config, level=level, budgets=budget_list, per_budget=per_budget,
            seed=seed, executor=executor, devices=parse_devices(devices),  # type: ignore[arg-type]
            workers_per_device=workers_per_device, address=address, adapters_per_batch=adapters_per_batch,
            log=progress_logger(),
        )  # fmt: skip
    click.echo(json.dumps({"run_id": report.run_id, "config_key": report.config_key, "measured": report.measured,
                           "skipped": report.skipped}))  # fmt: skip


def _fit(store_path: Path, level: str, config_key: str | None, bootstrap_seed: int) -> tuple[Any, Any]:
    from harp.design import fit_stored_design
    from harp.store import Store

    store = Store.open(store_path, read_only=True)
    return store, fit_stored_design(store, level=level, config_key=config_key, seed=bootstrap_seed)


@design_group.command("fit")
@_store_option
@_level_option
@_key_option
@_bootstrap_option
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON instead of a table.")
def fit_command(
    store_path: Path, level: str, config_key: str | None, bootstrap_seed: int, as_json: bool
) -> None:
    """Estimate every region's effect from the stored design mixtures and print them.

    The effect is on the mean effect over all domains, centred on the pool (above 0: better than an average
    chunk of the pool), with a bootstrap standard error; `kept` says which regions each rule keeps (C: above 0
    by more than one standard error; E: above 0). Leave-one-out R2 says how much of the spread between the
    finetunes the regions explain out of sample: near 0 means the fit has found nothing to select on.

    \b
    Example:
      harp design fit --store pool.duckdb --level large
    """
    from harp.design import kept_regions, region_sources

    with errors(LIBRARY_ERRORS, record_warnings=False, words=False):
        store, fit = _fit(store_path, level, config_key, bootstrap_seed)
        sources = region_sources(store, level)
    if as_json:
        click.echo(json.dumps(fit.to_dict()))
        return
    keeps = {rule: set(kept_regions(fit, rule).tolist()) for rule in ("C", "E")}
    click.echo(f"{fit.n_mixtures} design mixtures at level {level}; ridge penalty {fit.penalty:g}; "
               f"leave-one-out R2 {fit.loo_r2:.3f}")  # fmt: skip
    click.echo(f"{'region':>6}  {'effect':>8}  {'se':>6}  kept  top source")
    for r in np.argsort(-fit.centred):
        kept = "".join(rule if r in keeps[rule] else "." for rule in ("C", "E"))
        click.echo(f"{r:>6}  {fit.centred[r]:+8.4f}  {fit.se[r]:6.4f}  {kept:>4}  {sources[r]}")


@design_group.command("select")
@_store_option
@_level_option
@_key_option
@_bootstrap_option
@click.option("--rule", type=click.Choice(["C", "E"], case_sensitive=False), default="C", show_default=True,
              help="C: keep regions credibly better than an average chunk of the pool; E: every one estimated so.")  # fmt: skip
@click.option(
    "--budget", type=click.IntRange(min=1), default=None, help="Points to draw (default: every kept point)."
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the uniform draw."
)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="CSV to write (rank,point_id,leaf_id) with FILE.manifest.json beside it.")  # fmt: skip
def select_command(
    store_path: Path,
    level: str,
    config_key: str | None,
    bootstrap_seed: int,
    rule: str,
    budget: int | None,
    seed: int,
    out: Path,
) -> None:
    """Keep the regions the design fit says help, and draw the budget uniformly from their points.

    Writes the CSV as `harp select` does and a manifest with the rule, the fit and the store's content hash.

    \b
    Example:
      harp design select --store pool.duckdb --rule C --budget 1000 --seed 0 --out chosen.csv
    """
    from harp import __version__
    from harp.design import design_select, kept_regions, region_of_leaves
    from harp.export import MANIFEST_FORMAT, write_selection
    from harp.measure import leaf_members

    rule = rule.upper()
    with errors(LIBRARY_ERRORS, record_warnings=False, words=False):
        store, fit = _fit(store_path, level, config_key, bootstrap_seed)
        region_of_leaf = region_of_leaves(store, level)
        members = leaf_members(store, store.count("points"))
        selection = design_select(fit, members, region_of_leaf, rule=rule, budget=budget, seed=seed)
        manifest = {
            "format": MANIFEST_FORMAT,
            "envelope": f"design-{rule}",
            "budget": budget,
            "design": {
                "level": level,
                "rule": rule,
                "seed": seed,
                "bootstrap_seed": bootstrap_seed,
                "fit": fit.to_dict(),
            },
            "store_hash": store.content_hash(),
            "store_path": str(store_path.resolve()),
            "harp_version": __version__,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "counts": {
                "points": int(selection.points.size),
                "leaves": int(selection.leaves.size),
                "kept_regions": int(kept_regions(fit, rule).size),
            },  # fmt: skip
        }
        csv_path, manifest_path = write_selection(out, selection, manifest, inputs={"--store": store_path})
    click.echo(json.dumps({"csv": str(csv_path), "manifest": str(manifest_path), **manifest["counts"]}))
